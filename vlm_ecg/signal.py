"""Decomposition of ECG leads into trend, seasonal and residual components, and patching.

The time-series branch of the model (TEMPO-style) reads each lead as three additive components:

- **trend**: baseline wander below `trend_cutoff_hz` (0.5 Hz by default): electrode drift, sweat, movement and
  the respiratory sway of the baseline;
- **seasonal**: narrow-band periodic interference: the powerline fundamental and its harmonics (50 Hz and 60 Hz
  families up to the Nyquist frequency, +-`powerline_halfwidth_hz`), and optionally a respiration band;
- **residual**: everything else, i.e. the cardiac component (P-QRS-T), the default input of the branch.

``trend + seasonal + residual == signal`` exactly (the residual is what is left). The trend is a zero-phase
Butterworth low-pass (the magnitude response of `scipy.signal.filtfilt` with a Butterworth filter of
`trend_order`) applied in the frequency domain to the mirror extension of the lead, whose periodic continuation
has no step at the record's ends. The seasonal part is then cut from the detrended lead's own spectrum with
narrow masks: powerline tones with a whole number of cycles in the record (50 and 60 Hz over 10 s) fall exactly on
their bins, which a mirror extension would spoil (it turns each tone into a broadband phase jump). The frequency
responses come from `trend_response` and `seasonal_mask`, shared with the differentiable torch version in
`vlm_ecg.modeling.timeseries`, so both decompositions agree.

Pure numpy; this module must stay importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import EcgSignalError

__all__ = [
    "COMPONENTS",
    "Decomposition",
    "DecompositionSettings",
    "decompose",
    "seasonal_mask",
    "trend_response",
    "num_patches",
    "patch_signal",
]

COMPONENTS: tuple[str, ...] = ("trend", "seasonal", "residual")


@dataclass(frozen=True)
class DecompositionSettings:
    """Where the spectrum is cut.

    Attributes:
        trend_cutoff_hz: -3 dB frequency of the trend low-pass. 0.5 Hz sits under the slowest heart rate of interest
            (30 bpm = 0.5 Hz) and at the top of the respiration band (0.1-0.5 Hz).
        trend_order: Butterworth order of the trend low-pass (its response is applied forward and backward).
        powerline_hz: powerline fundamentals whose harmonics (k * f0 <= Nyquist) are seasonal interference.
        powerline_halfwidth_hz: half-width of the band kept around each powerline harmonic.
        respiration_band_hz: optional (low, high) band of the detrended lead counted as seasonal; use it with a
            `trend_cutoff_hz` at or below `low`, so that the trend leaves respiration to the seasonal part.
    """

    trend_cutoff_hz: float = 0.5
    trend_order: int = 2
    powerline_hz: tuple[float, ...] = (50.0, 60.0)
    powerline_halfwidth_hz: float = 0.5
    respiration_band_hz: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.trend_cutoff_hz > 0:
            raise ValueError(f"trend_cutoff_hz must be > 0, got {self.trend_cutoff_hz}")
        if self.trend_order < 1:
            raise ValueError(f"trend_order must be >= 1, got {self.trend_order}")
        if self.powerline_halfwidth_hz < 0:
            raise ValueError(f"powerline_halfwidth_hz must be >= 0, got {self.powerline_halfwidth_hz}")
        if any(f <= 0 for f in self.powerline_hz):
            raise ValueError(f"powerline_hz must be positive frequencies, got {self.powerline_hz}")
        object.__setattr__(self, "powerline_hz", tuple(float(f) for f in self.powerline_hz))
        if self.respiration_band_hz is not None:
            low, high = (float(f) for f in self.respiration_band_hz)
            if not 0 <= low < high:
                raise ValueError(f"respiration_band_hz must be (low, high) with 0 <= low < high, got {(low, high)}")
            if self.trend_cutoff_hz > low:
                raise ValueError(
                    f"respiration_band_hz starts at {low} Hz, below trend_cutoff_hz={self.trend_cutoff_hz}: "
                    "the trend would take the respiration band; lower trend_cutoff_hz"
                )
            object.__setattr__(self, "respiration_band_hz", (low, high))


@dataclass
class Decomposition:
    """The three additive components of a signal, each with the input's shape (..., n) in the input's units."""

    trend: np.ndarray
    seasonal: np.ndarray
    residual: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in COMPONENTS:
            raise KeyError(f"unknown component {name!r}; components are {COMPONENTS}")
        return getattr(self, name)


@lru_cache(maxsize=32)
def trend_response(
    n_fft: int, sampling_rate_hz: float, settings: DecompositionSettings = DecompositionSettings()
) -> np.ndarray:
    """Zero-phase low-pass gain over the `np.fft.rfftfreq(n_fft)` bins: 1 / (1 + (f / f_c) ** (2 * order)).

    Args:
        n_fft: length of the transformed sequence (twice the record length: the mirror extension).
        sampling_rate_hz: sampling rate of the signal.
        settings: the cut points.

    Returns:
        (n_fft // 2 + 1,) float64 gains in [0, 1] (read-only).
    """
    freqs_hz = _rfftfreq(n_fft, sampling_rate_hz)
    gain = 1.0 / (1.0 + (freqs_hz / settings.trend_cutoff_hz) ** (2 * settings.trend_order))
    gain.setflags(write=False)
    return gain


@lru_cache(maxsize=32)
def seasonal_mask(
    n_fft: int, sampling_rate_hz: float, settings: DecompositionSettings = DecompositionSettings()
) -> np.ndarray:
    """Boolean mask over the `np.fft.rfftfreq(n_fft)` bins of the seasonal bands (powerline harmonics, respiration).

    Args:
        n_fft: length of the transformed sequence (the record length).
        sampling_rate_hz: sampling rate of the signal.
        settings: the cut points.

    Returns:
        (n_fft // 2 + 1,) bool mask (read-only).
    """
    freqs_hz = _rfftfreq(n_fft, sampling_rate_hz)
    mask = np.zeros(freqs_hz.shape, dtype=bool)
    for f0 in settings.powerline_hz:
        for harmonic_hz in np.arange(f0, sampling_rate_hz / 2.0 + 1e-9, f0):
            mask |= np.abs(freqs_hz - harmonic_hz) <= settings.powerline_halfwidth_hz
    if settings.respiration_band_hz is not None:
        low, high = settings.respiration_band_hz
        mask |= (freqs_hz >= low) & (freqs_hz < high)
    mask.setflags(write=False)
    return mask


def _rfftfreq(n_fft: int, sampling_rate_hz: float) -> np.ndarray:
    if n_fft < 2:
        raise ValueError(f"n_fft must be >= 2, got {n_fft}")
    if not sampling_rate_hz > 0:
        raise ValueError(f"sampling_rate_hz must be > 0, got {sampling_rate_hz}")
    return np.fft.rfftfreq(n_fft, d=1.0 / sampling_rate_hz)


def decompose(
    signal: np.ndarray,
    sampling_rate_hz: float = 500.0,
    settings: DecompositionSettings | None = None,
    source: object = "<array>",
) -> Decomposition:
    """Split each lead into trend, seasonal and residual components (see the module docstring).

    Args:
        signal: (..., n) float array, e.g. (12, 5000) mV; the last axis is time.
        sampling_rate_hz: sampling rate of `signal`.
        settings: cut points; defaults to `DecompositionSettings()`.
        source: file or record id named in errors.

    Returns:
        A `Decomposition` whose three arrays have `signal`'s shape and sum back to `signal`.

    Raises:
        EcgSignalError: empty, non-finite or non-numeric input.
    """
    settings = settings or DecompositionSettings()
    x = np.asarray(signal)
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 1 or x.shape[-1] < 2:
        raise EcgSignalError(source, f"decompose needs a numeric (..., n) array with n >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise EcgSignalError(source, "decompose got NaN or inf samples; fill or drop them first")
    x = x.astype(np.float64, copy=False)
    n = x.shape[-1]
    fs = float(sampling_rate_hz)
    extended = np.concatenate([x, x[..., ::-1]], axis=-1)  # (..., n) -> (..., 2n): no step at the ends
    trend = np.fft.irfft(np.fft.rfft(extended, axis=-1) * trend_response(2 * n, fs, settings), n=2 * n)[..., :n]
    detrended = x - trend
    seasonal = np.fft.irfft(np.fft.rfft(detrended, axis=-1) * seasonal_mask(n, fs, settings), n=n, axis=-1)
    residual = detrended - seasonal
    dtype = np.result_type(np.asarray(signal).dtype, np.float32)
    return Decomposition(trend.astype(dtype), seasonal.astype(dtype), residual.astype(dtype))


def num_patches(n_samples: int, patch_len: int, stride: int | None = None) -> int:
    """Number of patches `patch_signal` makes of `n_samples` (the last one padded if the stride does not fit)."""
    stride = stride or patch_len
    if patch_len < 1 or stride < 1:
        raise ValueError(f"patch_len and stride must be >= 1, got {patch_len} and {stride}")
    if n_samples < patch_len:
        return 1
    return 1 + int(np.ceil((n_samples - patch_len) / stride))


def patch_signal(signal: np.ndarray, patch_len: int = 50, stride: int | None = None) -> np.ndarray:
    """Cut the time axis into patches (PatchTST): 5000 samples at 500 Hz -> 100 patches of 50 samples (100 ms).

    The end is padded by repeating the last sample when the patches do not tile the record exactly.

    Args:
        signal: (..., n) array.
        patch_len: samples per patch.
        stride: hop between patch starts (defaults to `patch_len`: non-overlapping).

    Returns:
        (..., num_patches, patch_len) array (a copy).
    """
    stride = stride or patch_len
    x = np.asarray(signal)
    n = x.shape[-1]
    count = num_patches(n, patch_len, stride)
    padded_len = (count - 1) * stride + patch_len
    if padded_len > n:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, padded_len - n)]
        x = np.pad(x, pad, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(x, patch_len, axis=-1)  # (..., n', patch_len)
    return np.ascontiguousarray(windows[..., ::stride, :][..., :count, :])
