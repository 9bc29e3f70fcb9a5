"""The `Ecg` record: the one type every part of vlm_ecg speaks.

An `Ecg` always holds the 12 standard leads in the standard order (I, II, III, aVR, aVL, aVF, V1-V6), as
float32 millivolts, shape ``(12, n)``. Readers build it with `Ecg.from_leads`, which maps lead-name
variants, derives missing limb leads where the Einthoven / Goldberger identities make that exact, and
refuses what cannot be mapped. Validation (NaN gaps, inf, flat or absurd amplitudes) happens once, here,
so every downstream part can trust the record.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np

from .errors import EcgLeadError, EcgSignalError

logger = logging.getLogger(__name__)

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_LEADS: tuple[str, ...] = LEADS[:6]
PRECORDIAL_LEADS: tuple[str, ...] = LEADS[6:]
TARGET_FS_HZ = 500
TARGET_DURATION_S = 10.0

MAX_ABS_MV = 20.0  # no surface ECG reaches 20 mV; larger values are unit errors or saturation
FLAT_PEAK_TO_PEAK_MV = 1e-3  # a lead that moves less than 1 uV over the whole record is disconnected
MAX_NAN_GAP_S = 0.050  # shorter NaN gaps (dropped samples) are interpolated, longer ones refused

# Leads some systems record beside the 12 standard ones and that we drop with a note: the Frank
# orthogonal leads of the PTB Diagnostic database. Anything else unknown is refused.
SUPPLEMENTARY_LEADS: frozenset[str] = frozenset({"VX", "VY", "VZ"})

_ALIASES: dict[str, str] = {
    **{name.upper(): name for name in LEADS},
    "DI": "I",
    "DII": "II",
    "DIII": "III",
    "LI": "I",
    "LII": "II",
    "LIII": "III",
    "LEADI": "I",
    "LEADII": "II",
    "LEADIII": "III",
    "1": "I",
    "2": "II",
    "3": "III",
    "AVR": "aVR",
    "AVL": "aVL",
    "AVF": "aVF",
}


def normalize_lead_name(name: str, source: object = "<array>") -> str:
    """Map a lead-name variant ("avr", "AVR", "DII", "v1", "Lead I") to its canonical spelling.

    Raises:
        EcgLeadError: if the name is not one of the 12 standard leads in any spelling we know.
    """
    key = re.sub(r"[\s_\-]", "", str(name)).upper()
    if key in _ALIASES:
        return _ALIASES[key]
    raise EcgLeadError(source, f"lead {name!r} is not one of the 12 standard leads ({', '.join(LEADS)})")


def derive_limb_leads(present: dict[str, np.ndarray], source: object = "<array>") -> dict[str, np.ndarray]:
    """Fill in missing limb leads from any two independent ones (exact, by Einthoven and Goldberger).

    The six limb leads span a 2-D space, so I and II determine the rest: III = II - I, aVR = -(I + II)/2,
    aVL = I - II/2, aVF = II - I/2. We first recover I and II from whichever pair is present.
    """
    have = {k: v for k, v in present.items() if k in LIMB_LEADS}
    if all(k in have for k in LIMB_LEADS):
        return present
    # each limb lead as coefficients (a, b) of (I, II)
    coeff = {
        "I": (1.0, 0.0),
        "II": (0.0, 1.0),
        "III": (-1.0, 1.0),
        "aVR": (-0.5, -0.5),
        "aVL": (1.0, -0.5),
        "aVF": (-0.5, 1.0),
    }
    names = [k for k in LIMB_LEADS if k in have]
    basis = None
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            m = np.array([coeff[a], coeff[b]])
            if abs(np.linalg.det(m)) > 1e-9:
                basis = (a, b, m)
                break
        if basis:
            break
    if basis is None:
        raise EcgLeadError(
            source,
            f"limb leads {', '.join(k for k in LIMB_LEADS if k not in have)} are missing and cannot be derived: "
            f"need two independent limb leads, found {names or 'none'}",
        )
    a, b, m = basis
    lead_i, lead_ii = np.linalg.solve(m, np.stack([have[a], have[b]]).astype(np.float64))
    out = dict(present)
    for name, (ca, cb) in coeff.items():
        if name not in out:
            out[name] = (ca * lead_i + cb * lead_ii).astype(np.float32)
    return out


def _check_fs(fs: object, source: object) -> float:
    """The sampling rate as a positive finite float, or a typed error naming the source."""
    try:
        value = float(fs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise EcgSignalError(source, f"sampling rate must be a positive number of Hz, got {fs!r}")
    return value


def _interpolate_short_gaps(x: np.ndarray, fs: float, lead: str, source: object, notes: list[str]) -> np.ndarray:
    """Linearly bridge NaN runs shorter than `MAX_NAN_GAP_S`; refuse longer ones."""
    bad = np.isnan(x)
    if not bad.any():
        return x
    n_bad = int(bad.sum())
    if n_bad == x.size:
        raise EcgSignalError(source, f"lead {lead} is all NaN")
    edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    longest = int((stops - starts).max())
    max_gap = int(np.floor(MAX_NAN_GAP_S * fs))
    if longest > max_gap:
        raise EcgSignalError(
            source,
            f"{n_bad} NaN samples in lead {lead}, the longest gap {longest / fs * 1000:.0f} ms "
            f"(only gaps shorter than {MAX_NAN_GAP_S * 1000:.0f} ms are interpolated)",
        )
    idx = np.arange(x.size)
    y = x.copy()
    y[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    notes.append(f"interpolated {n_bad} NaN samples in lead {lead} ({len(starts)} gaps)")
    return y


@dataclass(eq=False)
class Ecg:
    """A validated 12-lead ECG.

    Attributes:
        signal: float32 array (12, n) in millivolts, leads in `LEADS` order.
        fs: sampling rate in Hz.
        meta: free-form record facts; by convention ``id`` (record id), ``source`` (file or generator) and
            ``notes`` (list of what was done to the data: interpolation, derivation, resampling, cropping).
    """

    signal: np.ndarray
    fs: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = self.source
        sig = np.asarray(self.signal)
        if sig.ndim != 2 or sig.shape[0] != len(LEADS):
            raise EcgLeadError(src, f"signal must have shape (12, n) in {', '.join(LEADS)} order, got {sig.shape}")
        self.fs = _check_fs(self.fs, src)
        if sig.shape[1] < 2:
            raise EcgSignalError(src, f"signal has {sig.shape[1]} samples")
        if not np.issubdtype(sig.dtype, np.number) or np.iscomplexobj(sig):
            raise EcgSignalError(src, f"samples must be real numbers, got dtype {sig.dtype}")
        self.signal = np.ascontiguousarray(sig, dtype=np.float32)
        self.meta = dict(self.meta)
        self.meta.setdefault("notes", [])
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_leads(
        cls,
        signal: np.ndarray,
        leads: list[str] | tuple[str, ...],
        fs: float,
        meta: dict | None = None,
        extra_leads: Literal["error", "drop"] = "error",
    ) -> Ecg:
        """Build an `Ecg` from leads in any order and spelling.

        Args:
            signal: (n_leads, n) samples in mV, rows matching `leads`.
            leads: lead names as the source spells them.
            fs: sampling rate in Hz.
            meta: record facts (``id``, ``source``, ...); ``source`` names the file in error messages.
            extra_leads: what to do with leads that are not standard: "error" refuses them (Frank leads
                VX/VY/VZ are always dropped with a note), "drop" drops any unknown lead with a note.
        """
        if extra_leads not in ("error", "drop"):
            raise ValueError(f"extra_leads must be 'error' or 'drop', got {extra_leads!r}")
        meta = dict(meta or {})
        meta["notes"] = list(meta.get("notes", []))
        src = meta.get("source", meta.get("id", "<array>"))
        sig = np.asarray(signal)
        if sig.ndim != 2:
            raise EcgLeadError(src, f"signal must be 2-D (leads, samples), got shape {sig.shape}")
        if sig.shape[0] != len(leads):
            raise EcgLeadError(src, f"{len(leads)} lead names for {sig.shape[0]} signal rows")
        present: dict[str, np.ndarray] = {}
        for row, name in zip(sig, leads, strict=True):
            key = re.sub(r"[\s_\-]", "", str(name)).upper()
            if key in SUPPLEMENTARY_LEADS or (extra_leads == "drop" and key not in _ALIASES):
                meta["notes"].append(f"dropped non-standard lead {name}")
                continue
            canon = normalize_lead_name(name, src)
            if canon in present:
                raise EcgLeadError(src, f"lead {canon} appears twice (as {name!r} and an earlier column)")
            present[canon] = np.asarray(row, dtype=np.float32)
        missing_precordial = [k for k in PRECORDIAL_LEADS if k not in present]
        if missing_precordial:
            raise EcgLeadError(
                src,
                f"precordial leads {', '.join(missing_precordial)} are missing; they cannot be derived from "
                f"other leads (found {len(present)} leads: {', '.join(present)})",
            )
        derived = [k for k in LIMB_LEADS if k not in present]
        present = derive_limb_leads(present, src)
        if derived:
            meta["notes"].append(f"derived {', '.join(derived)} from the other limb leads (Einthoven/Goldberger)")
        return cls(np.stack([present[k] for k in LEADS]), fs, meta)

    # ------------------------------------------------------------------ properties
    @property
    def source(self) -> str:
        return str(self.meta.get("source", self.meta.get("id", "<array>")))

    @property
    def leads(self) -> tuple[str, ...]:
        return LEADS

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def lead(self, name: str) -> np.ndarray:
        """The samples (mV) of one lead, by any accepted spelling of its name."""
        return self.signal[LEADS.index(normalize_lead_name(name, self.source))]

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        src, sig, notes = self.source, self.signal, self.meta["notes"]
        if np.isinf(sig).any():
            bad = [LEADS[i] for i in np.flatnonzero(np.isinf(sig).any(axis=1))]
            raise EcgSignalError(src, f"{int(np.isinf(sig).sum())} infinite samples in lead(s) {', '.join(bad)}")
        if np.isnan(sig).any():
            sig = sig.copy()
            for i, name in enumerate(LEADS):
                sig[i] = _interpolate_short_gaps(sig[i], self.fs, name, src, notes)
            self.signal = sig
        peak = np.abs(sig).max(axis=1)
        if (peak > MAX_ABS_MV).any():
            i = int(np.argmax(peak))
            raise EcgSignalError(
                src,
                f"lead {LEADS[i]} reaches {peak[i]:.1f} mV, beyond the {MAX_ABS_MV:.0f} mV of any surface ECG "
                "(wrong units? the file should be in mV, uV or V with the unit stated)",
            )
        ptp = np.ptp(sig, axis=1)
        flat = [LEADS[i] for i in np.flatnonzero(ptp < FLAT_PEAK_TO_PEAK_MV)]
        if flat:
            raise EcgSignalError(src, f"lead(s) {', '.join(flat)} are flat (peak-to-peak < 1 uV): disconnected?")

    # ------------------------------------------------------------------ transforms (return new records)
    def copy(self) -> Ecg:
        return Ecg(self.signal.copy(), self.fs, copy.deepcopy(self.meta))

    def resample(self, fs: float = TARGET_FS_HZ) -> Ecg:
        """Polyphase resampling (scipy `resample_poly`, anti-aliased) to `fs` Hz; a no-op when already there.

        The anti-aliasing filter is run over a linear extrapolation of each lead (``padtype="line"``), not
        over zeros, so a lead with a baseline offset does not get a step transient at either end.
        """
        fs = _check_fs(fs, self.source)
        if abs(fs - self.fs) < 1e-9:
            return self.copy()
        from scipy.signal import resample_poly

        ratio = Fraction(fs / self.fs).limit_denominator(1000)
        out = resample_poly(self.signal.astype(np.float64), ratio.numerator, ratio.denominator, axis=1, padtype="line")
        meta = copy.deepcopy(self.meta)
        meta["notes"].append(
            f"resampled {self.fs:g} Hz -> {fs:g} Hz (polyphase {ratio.numerator}/{ratio.denominator})"
        )
        error = abs(self.fs * ratio.numerator / ratio.denominator - fs) / fs
        if error > 1e-9:  # rates without a ratio of small integers, e.g. 499.7 Hz
            meta["notes"].append(f"the polyphase ratio approximates the rate change to {error:.1e} (relative)")
        return Ecg(out.astype(np.float32), float(fs), meta)

    def fit_length(
        self,
        duration_s: float = TARGET_DURATION_S,
        crop: Literal["start", "center", "error"] = "start",
        pad_tolerance_s: float = 0.1,
    ) -> Ecg:
        """Crop or pad to exactly ``round(duration_s * fs)`` samples.

        Longer records are cropped to their first (``crop="start"``, the convention of 10 s clinical
        exports) or central window, with a note in ``meta``, or refused (``crop="error"``). Records short
        by at most `pad_tolerance_s` (a few samples lost at a resampling boundary) are padded by repeating
        the last sample of each lead, which adds no step; anything shorter is refused, because padding
        seconds of invented signal would be lost data dressed up as a record.

        Raises:
            EcgSignalError: record too short, or too long with ``crop="error"``.
        """
        if crop not in ("start", "center", "error"):
            raise ValueError(f"crop must be 'start', 'center' or 'error', got {crop!r}")
        if not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s!r}")
        n = int(round(duration_s * self.fs))
        meta = copy.deepcopy(self.meta)
        if self.n_samples == n:
            return self.copy()
        if self.n_samples > n:
            if crop == "error":
                raise EcgSignalError(
                    self.source, f"record is {self.duration_s:.1f} s, longer than the {duration_s:g} s expected"
                )
            start = 0 if crop == "start" else (self.n_samples - n) // 2
            meta["notes"].append(
                f"cropped {self.duration_s:.2f} s to {duration_s:g} s ({crop}, from {start / self.fs:.2f} s)"
            )
            return Ecg(self.signal[:, start : start + n].copy(), self.fs, meta)
        short_s = (n - self.n_samples) / self.fs
        if short_s > pad_tolerance_s + 1e-9:
            raise EcgSignalError(
                self.source,
                f"record is {self.duration_s:.2f} s, shorter than the {duration_s:g} s required "
                f"(at most {pad_tolerance_s:g} s is padded)",
            )
        pad = np.repeat(self.signal[:, -1:], n - self.n_samples, axis=1)
        meta["notes"].append(f"padded {n - self.n_samples} samples ({short_s * 1000:.0f} ms) by edge repetition")
        return Ecg(np.concatenate([self.signal, pad], axis=1), self.fs, meta)

    def standardize(
        self,
        fs: float = TARGET_FS_HZ,
        duration_s: float = TARGET_DURATION_S,
        crop: Literal["start", "center", "error"] = "start",
    ) -> Ecg:
        """Resample to `fs` and fit to `duration_s`: the model's input convention (500 Hz, 10 s, 5 000 samples)."""
        return self.resample(fs).fit_length(duration_s, crop=crop)

    def __repr__(self) -> str:
        return f"Ecg(id={self.meta.get('id')!r}, fs={self.fs:g} Hz, {self.duration_s:.2f} s, source={self.source!r})"
