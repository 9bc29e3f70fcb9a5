"""Fast, independent wave measurements of a 12-lead ECG: beats, a median beat, fiducial points, amplitudes.

Used to check the synthetic generator (without looking at its parameters), as DRIL's clustering feature
space, and as the explainer's state. Plain numpy / scipy, a few ms per 10-s record at 500 Hz
(``bench/bench_synth.py`` prints it).

Method (global, multi-lead, as in the CSE / AHA conventions):

1. Band-pass 0.67-40 Hz, zero phase (the AHA limit for ST measurement with bidirectional filters).
2. R detection on the 8 independent leads (I, II, V1-V6): 8-25 Hz energy summed over leads, smoothed
   over 80 ms, peaks at least 250 ms apart above 30 % of the record's 99th percentile.
3. Median beat per lead over the beats with a full window (-0.45 s .. +0.75 s around the detection).
4. Fiducials on the median beats, from the spatial velocity (root-sum-square of the 8 leads' slopes):
   QRS onset where it stays below 4 % of its QRS maximum for 8 ms before the first big velocity hump, J
   point where it stays below 7 % after the last hump (>= 10 %, e.g. a slow R') or at the first clear
   velocity minimum (bundle branch blocks never get flat). Isoelectric level per lead = mean of the
   flattest 20 ms in the 120 ms before QRS onset. T peak = maximum of the spatial magnitude after
   J + 80 ms; T end by the tangent method on that magnitude, before the next beat. P peak = the most
   prominent magnitude peak before the QRS, counted only when it repeats from beat to beat
   (`p_consistency` >= 0.8); P onset where the magnitude falls to 8 % of the peak.
5. Per-lead amplitudes relative to the isoelectric level: P, Q, R, S, J, ST at J+60 ms, T (largest
   deflection between J+80 ms and T end), net QRS area. Axis = atan2(area aVF, area I).

Against the cardiologists of LUDB (46 records in ``shared/data``; reference = median over the 12 leads'
annotations), the mean absolute errors are P onset 6.9 ms, QRS onset 3.4 ms, J point 3.4 ms, T end
18 ms (the tangent method ends T 14 ms earlier than the annotators on average), and all 415 annotated
QRS complexes are detected with no extra detection (``tests/test_measure.py`` recomputes these).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, find_peaks, sosfiltfilt

from .ecg import LEADS, Ecg
from .errors import EcgSignalError

_INDEPENDENT_ROWS = [LEADS.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
_QRS_ON_FRAC = 0.04  # spatial-velocity thresholds, fractions of the QRS maximum (tuned on LUDB)
_J_FRAC = 0.07
_QRS_HUMP_FRAC = 0.1  # a velocity hump this high (fraction of the maximum) is part of the QRS
_P_ON_FRAC = 0.08  # of the P peak's spatial magnitude
_P_MIN_CONSISTENCY = 0.8  # median beat-to-median-beat correlation of the P window for "P present"
_P_MIN_MV = 0.015  # prominence of the P peak on the spatial magnitude
_T_LOBE_MS = 100  # a second T lobe (biphasic T) counts when within this of the main peak ...
_T_LOBE_FRAC = 0.7  # ... and at least this fraction of its height
_MAX_PR_MS = 250  # bounds the search for the T end before the next beat's P
_MAX_T_PEAK_TO_END_MS = 200  # a shallow tangent (flat T) is not followed further than this
BEAT_PRE_S = 0.45
BEAT_POST_S = 0.75
PER_LEAD_FEATURES: tuple[str, ...] = ("q", "r", "s", "st60", "t")
GLOBAL_FEATURES: tuple[str, ...] = (
    "hr_bpm",
    "rr_cv",
    "rr_rmssd_ratio",
    "pr_ms",
    "p_consistency",
    "qrs_ms",
    "qtc_ms",
    "axis_cos",
    "axis_sin",
)


@functools.lru_cache(maxsize=8)
def _sos(fs: float, lo: float, hi: float) -> np.ndarray:
    return butter(2, [lo, min(hi, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")


@dataclass
class Delineation:
    """Beats and fiducial points of one record.

    Attributes:
        fs: sampling rate, Hz.
        r_samples: (B,) sample index of every detected beat's QRS (energy centre), in the record.
        n_median_beats: how many of them (those with a full window inside the record) made the median beat.
        median_beat: (12, L) baseline-corrected median beat in mV, `LEADS` order.
        r_index: index of the alignment point (the detection) inside `median_beat`.
        fiducials: sample offsets inside `median_beat` of ``p_on``, ``p_peak``, ``qrs_on``, ``j``,
            ``t_peak``, ``t_end`` (``p_*`` are -1 when no P wave is found).
        p_consistency: median beat-to-median correlation of the P-wave window (~1 sinus, low in AF).
    """

    fs: float
    r_samples: np.ndarray
    n_median_beats: int
    median_beat: np.ndarray
    r_index: int
    fiducials: dict[str, int]
    p_consistency: float

    @property
    def p_present(self) -> bool:
        return self.fiducials["p_on"] >= 0

    def in_record(self, name: str) -> np.ndarray:
        """(B,) sample index of fiducial `name` for every beat of the record (median-beat timing)."""
        return self.r_samples + (self.fiducials[name] - self.r_index)


@dataclass
class Measurements:
    """Wave measurements; per-lead arrays are (12,) in `LEADS` order, amplitudes in mV.

    Interval fields are NaN when undefined (PR without a P wave, QTc without a T end).
    """

    hr_bpm: float
    rr_std_ms: float
    rr_cv: float
    rr_rmssd_ratio: float
    pr_ms: float
    qrs_ms: float
    qt_ms: float
    qtc_ms: float
    axis_deg: float
    p_present: bool
    p_consistency: float
    n_beats: int
    leads: dict[str, np.ndarray] = field(default_factory=dict)  # p, q, r, s, j, st60, t, qrs_area

    def lead(self, quantity: str, lead: str) -> float:
        """One per-lead value, e.g. ``m.lead("st60", "V2")``."""
        return float(self.leads[quantity][LEADS.index(lead)])


def _detect_beats(x: np.ndarray, fs: float, source: str) -> np.ndarray:
    band = sosfiltfilt(_sos(fs, 8.0, 25.0), x[_INDEPENDENT_ROWS], axis=1)
    energy = uniform_filter1d((band**2).sum(axis=0), size=max(1, int(0.08 * fs)))
    peaks, _ = find_peaks(energy, distance=int(0.25 * fs), height=0.3 * np.percentile(energy, 99))
    if peaks.size < 2:
        raise EcgSignalError(source, f"found {peaks.size} QRS complex(es); need at least 2 to measure the ECG")
    return peaks


def _run_below(v: np.ndarray, thr: float, start: int, step: int, run: int) -> int:
    """First index from `start` walking by `step` where `v` stays below `thr` for `run` samples."""
    i, count, first = start, 0, start
    while 0 <= i < v.size:
        if v[i] < thr:
            if count == 0:
                first = i
            count += 1
            if count >= run:
                return first
        else:
            count = 0
        i += step
    return first if count else (0 if step < 0 else v.size - 1)


def _qrs_bounds(vel: np.ndarray, r0: int, ms: float) -> tuple[int, int]:
    """QRS onset and J point on the spatial velocity of the median beat.

    The QRS spans the velocity humps above `_QRS_HUMP_FRAC` of the maximum within 150 ms of the
    detection (so a slow terminal R' still belongs to it). From the first and last hump we walk outward
    until the velocity stays below a fraction of its maximum for 8 ms; the J point also stops at the first
    clear velocity minimum below the hump level (the ST segment of a bundle branch block never gets flat).
    """
    lo, hi = max(r0 - int(60 * ms), 1), min(r0 + int(60 * ms), vel.size - 1)
    vmax = float(vel[lo:hi].max())
    a, b = max(r0 - int(150 * ms), 1), min(r0 + int(150 * ms), vel.size - 1)
    top = lo + int(np.argmax(vel[lo:hi]))
    humps, props = find_peaks(vel[a:b], height=_QRS_HUMP_FRAC * vmax, prominence=0.05 * vmax)
    humps = a + humps
    # onset from the first big hump (a P wave must not start the QRS), J from the last hump of any size
    big = humps[props["peak_heights"] >= 0.3 * vmax]
    first = int(min(big[0], top)) if big.size else top
    last = int(max(humps[-1], top)) if humps.size else top
    run = max(2, int(8 * ms))
    on_thr = _run_below(vel, _QRS_ON_FRAC * vmax, first, -1, run)
    j_thr = _run_below(vel, _J_FRAC * vmax, last, 1, run)
    after = vel[last:b]
    mins, _ = find_peaks(-after, prominence=0.02 * vmax)
    j_min = last + int(mins[0]) if mins.size and after[mins[0]] < _QRS_HUMP_FRAC * vmax else b
    return max(on_thr, r0 - int(150 * ms)), min(j_thr, j_min, r0 + int(150 * ms))


def _isoelectric_slice(vel: np.ndarray, qrs_on: int, ms: float) -> slice:
    """The flattest 20 ms (lowest mean spatial velocity) in the 120 ms before QRS onset."""
    w = max(2, int(20 * ms))
    a = max(qrs_on - int(120 * ms), 0)
    b = max(qrs_on, a + w)
    mean_vel = np.convolve(vel[a:b], np.ones(w) / w, mode="valid")
    start = a + int(np.argmin(mean_vel))
    return slice(start, start + w)


def _p_wave(med: np.ndarray, beats: np.ndarray, qrs_on: int, rr: float, ms: float) -> tuple[int, int, float]:
    """(P onset, P peak, beat-to-beat consistency); onset and peak are -1 when no repeating P wave is found.

    The P peak is the most prominent maximum of the spatial magnitude between the end of the previous
    beat's T wave (estimated with a QTc of 430 ms) or 300 ms before QRS onset, and 30 ms before QRS onset.
    """
    prev_t_end = qrs_on - rr + 0.43 * np.sqrt(rr / (1000.0 * ms)) * 1000.0 * ms
    p_lo, p_hi = int(max(qrs_on - 300 * ms, prev_t_end, 0)), max(qrs_on - int(30 * ms), 1)
    if p_hi - p_lo <= int(40 * ms) or beats.shape[0] < 3:
        return -1, -1, 0.0
    pm = np.sqrt((med[_INDEPENDENT_ROWS, p_lo:p_hi] ** 2).sum(axis=0))
    pk, props = find_peaks(pm, prominence=0.0)
    if pk.size == 0:
        return -1, -1, 0.0
    best = int(np.argmax(props["prominences"]))
    k, prominence = int(pk[best]), float(props["prominences"][best])
    win = slice(max(p_lo + k - int(50 * ms), 0), p_lo + k + int(50 * ms))
    ref = med[_INDEPENDENT_ROWS, win].ravel()
    per_beat = beats[:, _INDEPENDENT_ROWS, win].reshape(beats.shape[0], -1)
    ref_c, beat_c = ref - ref.mean(), per_beat - per_beat.mean(axis=1, keepdims=True)
    corr = beat_c @ ref_c / (np.linalg.norm(beat_c, axis=1) * np.linalg.norm(ref_c) + 1e-12)
    consistency = float(np.median(corr))
    if consistency < _P_MIN_CONSISTENCY or prominence < _P_MIN_MV:
        return -1, -1, consistency
    a = max(k - int(120 * ms), 0)  # a P wave rises within ~120 ms of its peak
    floor = float(pm[a:k].min()) if k > a else 0.0
    onset = p_lo + a + _run_below(pm[a : k + 1], floor + _P_ON_FRAC * (pm[k] - floor), k - a, -1, 1)
    return onset, p_lo + k, consistency


def _t_wave(med: np.ndarray, j: int, t_hi: int, ms: float) -> tuple[int, int]:
    """(T peak, T end): maximum of the spatial magnitude after J + 80 ms; end by the tangent method.

    The tangent starts at the steepest descent after the last magnitude peak (> half the maximum, within
    150 ms of it, so a biphasic T ends after its second lobe) and meets the lowest level before `t_hi`.
    """
    mag = np.sqrt((med[_INDEPENDENT_ROWS] ** 2).sum(axis=0))
    t_lo = min(j + int(80 * ms), med.shape[1] - 3)
    t_hi = max(t_hi, t_lo + 2)
    seg = mag[t_lo:t_hi]
    top = int(np.argmax(seg))
    pk, _ = find_peaks(seg, height=_T_LOBE_FRAC * seg[top])
    pk = pk[(pk >= top) & (pk <= top + int(_T_LOBE_MS * ms))]
    last = t_lo + (int(pk[-1]) if pk.size else top)
    slope = np.gradient(mag)
    tail = slope[last:t_hi]
    if tail.size < 2 or tail.min() >= 0:
        return t_lo + top, t_hi
    s_i = last + int(np.argmin(tail))
    base = float(mag[s_i:t_hi].min())
    t_end = int(round(s_i + (mag[s_i] - base) / -slope[s_i]))
    return t_lo + top, int(np.clip(t_end, s_i, min(t_hi, last + int(_MAX_T_PEAK_TO_END_MS * ms))))


def delineate(ecg: Ecg) -> Delineation:
    """Detect beats, build the median beat and find the global fiducial points.

    Raises:
        EcgSignalError: fewer than 2 QRS complexes, or no complete beat inside the record.
    """
    fs, src = ecg.fs, ecg.source
    ms = fs / 1000.0
    x = sosfiltfilt(_sos(fs, 0.67, 40.0), ecg.signal.astype(np.float64), axis=1)
    peaks = _detect_beats(x, fs, src)
    pre, post = int(BEAT_PRE_S * fs), int(BEAT_POST_S * fs)
    keep = peaks[(peaks >= pre) & (peaks + post < x.shape[1])]
    if keep.size < 1:
        pre, post = int(0.25 * fs), int(0.45 * fs)
        keep = peaks[(peaks >= pre) & (peaks + post < x.shape[1])]
        if keep.size < 1:
            raise EcgSignalError(src, "no complete beat inside the record")
    beats = x[:, keep[:, None] + np.arange(-pre, post)[None, :]].transpose(1, 0, 2)  # (12, B, L) -> (B, 12, L)
    med = np.median(beats, axis=0)
    r0 = pre
    rr_med = float(np.median(np.diff(peaks)))

    vel = np.sqrt((np.gradient(med[_INDEPENDENT_ROWS], axis=1) ** 2).sum(axis=0)) / ms  # mV/ms
    qrs_on, j = _qrs_bounds(vel, r0, ms)
    iso = _isoelectric_slice(vel, qrs_on, ms)
    med = med - med[:, iso].mean(axis=1, keepdims=True)
    beats = beats - beats[:, :, iso].mean(axis=2, keepdims=True)
    p_on, p_peak, p_cons = _p_wave(med, beats, qrs_on, rr_med, ms)
    # the T wave ends before the next beat's P (or QRS) and within 650 ms of QRS onset
    lead_in = min(r0 - p_on, r0 - qrs_on + _MAX_PR_MS * ms) if p_on >= 0 else r0 - qrs_on
    next_start = r0 + rr_med - lead_in - 20 * ms
    t_hi = int(min(med.shape[1] - 1, next_start, qrs_on + 650 * ms))
    t_peak, t_end = _t_wave(med, j, t_hi, ms)
    fid = {"p_on": p_on, "p_peak": p_peak, "qrs_on": qrs_on, "j": j, "t_peak": t_peak, "t_end": t_end}
    return Delineation(fs, peaks, int(keep.size), med.astype(np.float32), r0, fid, p_cons)


def measure(ecg: Ecg, delineation: Delineation | None = None) -> Measurements:
    """All wave measurements of one record (delineating it first unless given)."""
    d = delineation or delineate(ecg)
    fs, med, f = d.fs, d.median_beat.astype(np.float64), d.fiducials
    ms = fs / 1000.0
    all_rr = np.diff(d.r_samples) / fs
    mean_rr = float(all_rr.mean())
    qrs_on, j, t_end = f["qrs_on"], f["j"], f["t_end"]
    qrs = med[:, qrs_on : j + 1]
    r_pos = qrs.argmax(axis=1)
    q = np.array([min(0.0, qrs[i, : r_pos[i] + 1].min()) for i in range(12)])
    s = np.array([min(0.0, qrs[i, r_pos[i] :].min()) for i in range(12)])
    r = np.maximum(qrs.max(axis=1), 0.0)
    st_i = min(j + int(round(60 * ms)), med.shape[1] - 1)
    t_lo = min(j + int(80 * ms), t_end - 1)
    tw = med[:, t_lo : max(t_end, t_lo + 1)]
    t_amp = tw[np.arange(12), np.abs(tw).argmax(axis=1)]
    area = qrs.sum(axis=1) / fs * 1000.0  # mV ms
    axis = float(np.degrees(np.arctan2(area[LEADS.index("aVF")], area[LEADS.index("I")])))
    qt_ms = (t_end - qrs_on) / ms
    leads = {
        "p": med[:, f["p_peak"]] if f["p_peak"] >= 0 else np.zeros(12),
        "q": q,
        "r": r,
        "s": s,
        "j": med[:, j],
        "st60": med[:, st_i],
        "t": t_amp,
        "qrs_area": area,
    }
    return Measurements(
        hr_bpm=60.0 / mean_rr,
        rr_std_ms=float(all_rr.std() * 1000.0),
        rr_cv=float(all_rr.std() / mean_rr),
        rr_rmssd_ratio=float(np.sqrt(np.mean(np.diff(all_rr) ** 2)) / mean_rr) if all_rr.size > 1 else 0.0,
        pr_ms=(qrs_on - f["p_on"]) / ms if f["p_on"] >= 0 else float("nan"),
        qrs_ms=(j - qrs_on) / ms,
        qt_ms=qt_ms,
        qtc_ms=qt_ms / np.sqrt(mean_rr),
        axis_deg=axis,
        p_present=f["p_on"] >= 0,
        p_consistency=d.p_consistency,
        n_beats=int(d.r_samples.size),
        leads={k: np.asarray(v, dtype=np.float64) for k, v in leads.items()},
    )


def feature_names() -> list[str]:
    """Names of `feature_vector`'s entries: globals, then ``{quantity}_{lead}`` for P (II, V1) and per lead."""
    return [*GLOBAL_FEATURES, "p_II", "p_V1", *(f"{q}_{lead}" for q in PER_LEAD_FEATURES for lead in LEADS)]


def feature_vector(ecg: Ecg | Measurements) -> np.ndarray:
    """(len(feature_names()),) float64 clustering features; finite always (PR is 0 without a P wave).

    Units differ (ms, bpm, mV): standardise before clustering.
    """
    m = ecg if isinstance(ecg, Measurements) else measure(ecg)
    theta = np.deg2rad(m.axis_deg)
    glob = {
        "hr_bpm": m.hr_bpm,
        "rr_cv": m.rr_cv,
        "rr_rmssd_ratio": m.rr_rmssd_ratio,
        "pr_ms": m.pr_ms if m.p_present else 0.0,
        "p_consistency": m.p_consistency,
        "qrs_ms": m.qrs_ms,
        "qtc_ms": m.qtc_ms,
        "axis_cos": np.cos(theta),
        "axis_sin": np.sin(theta),
    }
    parts = [np.array([glob[k] for k in GLOBAL_FEATURES]), [m.lead("p", "II"), m.lead("p", "V1")]]
    parts += [m.leads[q] for q in PER_LEAD_FEATURES]
    return np.nan_to_num(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]))
