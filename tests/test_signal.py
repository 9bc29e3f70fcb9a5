"""Decomposition and patching (vlm_ecg.signal): pure numpy, no torch import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vlm_ecg.errors import EcgSignalError
from vlm_ecg.signal import (
    DecompositionSettings,
    decompose,
    num_patches,
    patch_signal,
    seasonal_mask,
    trend_response,
)

FS_HZ = 500.0
T_S = np.arange(5000) / FS_HZ


def _beats(rate_s: float = 0.83) -> np.ndarray:
    """A crude beat train (R spike + T wave) in mV, zero-mean, no content below 1 Hz except its mean."""
    beats = sum(
        1.0 * np.exp(-(((T_S - r) / 0.012) ** 2)) + 0.25 * np.exp(-(((T_S - r - 0.3) / 0.05) ** 2))
        for r in np.arange(0.4, 10.0, rate_s)
    )
    return beats - beats.mean()


def test_components_sum_back_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5000)).astype(np.float32)
    parts = decompose(x, FS_HZ)
    assert parts.trend.shape == parts.seasonal.shape == parts.residual.shape == x.shape
    assert parts.trend.dtype == np.float32
    np.testing.assert_allclose(parts.trend + parts.seasonal + parts.residual, x, atol=1e-5)


def test_separates_baseline_wander_powerline_and_cardiac():
    wander = 0.3 * np.sin(2 * np.pi * 0.2 * T_S + 0.7) + 0.5 + 0.02 * T_S  # mV: respiration sway + drift
    mains = (
        0.1 * np.sin(2 * np.pi * 50 * T_S)
        + 0.05 * np.sin(2 * np.pi * 150 * T_S + 1)
        + 0.03 * np.sin(2 * np.pi * 60 * T_S)
    )
    cardiac = _beats()
    parts = decompose(wander + mains + cardiac, FS_HZ)
    inner = slice(500, -500)  # away from the record's ends
    assert np.abs(parts.seasonal - mains).max() < 0.01
    assert np.abs(parts.trend - wander)[inner].max() < 0.03
    assert np.abs(parts.residual - cardiac)[inner].max() < 0.03
    # the R peaks survive in the residual at full height
    assert parts.residual.max() > 0.9 * cardiac.max()


def test_respiration_band_moves_to_seasonal():
    respiration = 0.2 * np.sin(2 * np.pi * 0.3 * T_S)
    settings = DecompositionSettings(trend_cutoff_hz=0.1, respiration_band_hz=(0.15, 0.5))
    with_band = decompose(respiration, FS_HZ, settings)
    default = decompose(respiration, FS_HZ)
    assert np.abs(with_band.seasonal).max() > 0.15 > np.abs(default.seasonal).max()
    with pytest.raises(ValueError, match="trend_cutoff_hz"):
        DecompositionSettings(trend_cutoff_hz=0.5, respiration_band_hz=(0.15, 0.5))


def test_masks_cover_the_powerline_harmonics_only():
    freqs = np.fft.rfftfreq(5000, 1 / FS_HZ)
    mask = seasonal_mask(5000, FS_HZ)
    selected = set(np.round(freqs[mask]).astype(int))
    assert selected == {50, 60, 100, 120, 150, 180, 200, 240, 250}
    gain = trend_response(10000, FS_HZ)
    assert gain[0] == 1.0 and abs(np.interp(0.5, np.fft.rfftfreq(10000, 1 / FS_HZ), gain) - 0.5) < 1e-9


def test_bad_input_raises_typed_error():
    with pytest.raises(EcgSignalError, match="rec7.*NaN"):
        decompose(np.array([0.0, np.nan, 1.0]), FS_HZ, source="rec7")
    with pytest.raises(EcgSignalError, match="shape"):
        decompose(np.array([1.0]), FS_HZ)


def test_patching_shapes_and_padding():
    x = np.arange(12 * 5000, dtype=np.float32).reshape(12, 5000)
    patches = patch_signal(x, 50)
    assert patches.shape == (12, 100, 50)
    np.testing.assert_array_equal(patches[3, 7], x[3, 350:400])
    assert num_patches(5020, 50) == 101
    padded = patch_signal(np.arange(120.0), 50)
    assert padded.shape == (3, 50) and padded[-1, -1] == 119.0  # end repeated
    overlapping = patch_signal(np.arange(100.0), 50, stride=25)
    assert overlapping.shape == (3, 50) and overlapping[1, 0] == 25.0


def test_module_does_not_import_torch():
    code = "import sys, vlm_ecg.signal; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
