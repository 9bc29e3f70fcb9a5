"""Recording noise at the electrodes (RA, LA, LL, V1-V6), turned into lead noise like a real recorder does.

Lead I = LA - RA, II = LL - RA, Vi = Vi - (RA + LA + LL) / 3 (Wilson's central terminal). Noise made this
way is correlated across leads as in practice (a loose LA electrode shows in I, aVL, III and, weakly, in
every V lead), and the limb leads stay exact combinations of I and II.

Sources (amplitudes from `NoiseConfig`, each electrode drawing its own fraction):
* baseline wander: respiration sinusoid at the patient's breathing rate plus slow drift (< 0.5 Hz);
* powerline: 50 or 60 Hz with a 3rd harmonic, per-electrode amplitude and phase;
* EMG: white noise band-passed to 20-150 Hz, with a slowly varying envelope (muscle bursts);
* electrode motion: on one electrode, a sudden offset that recovers exponentially plus a 0.5-6 Hz burst.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter, sosfilt

from .config import NoiseConfig

N_ELECTRODES = 9  # RA, LA, LL, V1..V6


@functools.lru_cache(maxsize=8)
def _emg_sos(fs: float) -> np.ndarray:
    return butter(2, [20.0, min(150.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")


def electrode_noise(
    rng: np.random.Generator, config: NoiseConfig, n: int, fs: float, resp_hz: float = 0.25
) -> np.ndarray:
    """(9, n) noise potentials in mV at RA, LA, LL, V1-V6 (float64)."""
    out = np.zeros((N_ELECTRODES, n))
    if config.scale == 0:
        return out
    t = np.arange(n) / fs
    level = config.scale * np.exp(config.record_spread * rng.standard_normal() - 0.5 * config.record_spread**2)

    def per_electrode(mv: float) -> np.ndarray:
        return (level * mv * rng.uniform(0.2, 1.0, N_ELECTRODES))[:, None]

    phases = rng.uniform(0, 2 * np.pi, (N_ELECTRODES, 1))
    out += per_electrode(config.baseline_mv) * np.sin(2 * np.pi * resp_hz * t + phases)
    drift_hz = rng.uniform(0.03, 0.5, (N_ELECTRODES, 3, 1))
    drift = np.sin(2 * np.pi * drift_hz * t + rng.uniform(0, 2 * np.pi, (N_ELECTRODES, 3, 1))).sum(axis=1) / 3.0
    out += per_electrode(config.drift_mv) * drift

    mains = config.powerline_hz or (50.0 if rng.random() < 0.5 else 60.0)
    pl = np.sin(2 * np.pi * mains * t + rng.uniform(0, 2 * np.pi, (N_ELECTRODES, 1)))
    if 3 * mains < 0.5 * fs:
        pl += config.harmonic_ratio * np.sin(2 * np.pi * 3 * mains * t + rng.uniform(0, 2 * np.pi, (N_ELECTRODES, 1)))
    out += per_electrode(config.powerline_mv) * pl

    emg = sosfilt(_emg_sos(fs), rng.standard_normal((N_ELECTRODES, n)), axis=1)
    emg /= emg.std(axis=1, keepdims=True) + 1e-12
    envelope = 1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.05, 0.4, (N_ELECTRODES, 1)) * t + phases)
    out += per_electrode(config.emg_mv) * emg * envelope

    if rng.random() < config.motion_probability:
        e = rng.integers(N_ELECTRODES)
        dur = rng.uniform(0.3, 1.2)
        t0 = rng.uniform(0.0, max(t[-1] - dur, 0.0))
        inside = (t >= t0) & (t < t0 + dur)
        window = np.where(inside, np.sin(np.pi * (t - t0) / dur) ** 2, 0.0)
        burst = np.sin(2 * np.pi * rng.uniform(0.5, 6.0, (3, 1)) * t + rng.uniform(0, 2 * np.pi, (3, 1))).sum(0) / 3
        tau = rng.uniform(0.2, 1.0)
        step = np.where(t >= t0, np.exp(-np.clip(t - t0, 0, None) / tau), 0.0) * rng.choice([-1.0, 1.0])
        out[e] += level * config.motion_mv * rng.uniform(0.3, 1.0) * (window * burst + 0.5 * step)
    return out


def electrodes_to_independent_leads(electrodes: np.ndarray) -> np.ndarray:
    """(9, n) RA, LA, LL, V1-V6 potentials -> (8, n) I, II, V1-V6."""
    ra, la, ll = electrodes[0], electrodes[1], electrodes[2]
    wct = (ra + la + ll) / 3.0
    return np.concatenate([np.stack([la - ra, ll - ra]), electrodes[3:] - wct], axis=0)
