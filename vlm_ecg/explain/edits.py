"""Physiological ECG edits: (lead, wave segment, signed amplitude step in mV), applied on every beat.

    frame = BeatFrame.from_ecg(ecg)                                    # delineate once
    edited = apply_edits(ecg, [Edit("V3", "T", -0.2)], frame)          # "lower V3 T wave by 0.20 mV"

An edit adds the same smooth waveform to every beat of the record, at the beat's fiducial points (from the
median-beat delineation of `vlm_ecg.measure.delineate`), so the edited ECG is still an ECG: no steps, every beat
changed alike, amplitudes within physiological bounds. The waveform of one edit, in median-beat time:

| segment | shape (median-beat time) | moves by exactly `amplitude_mv` |
|---|---|---|
| P | raised-cosine bump from P onset - 10 ms, peak at the P peak, 0 before QRS onset | P at the P peak |
| QRS | the lead's median QRS times a Tukey window over QRS onset..J (10 ms tapers): a scaling | dominant deflection |
| ST | rises over J-10..J+20 ms, flat to J+70 ms, falls to 0 by the T peak (>= 40 ms): a shift | ST at J+60 ms |
| T | raised-cosine bump from max(J+70 ms, T peak - (T end - T peak)), peak at T peak, 0 at T end | T at the T peak |

Because the median of (beat + same waveform) is (median beat + waveform), the measurements of an edited record
are the original median beat plus the summed waveforms, read at fixed fiducial points (`BeatFrame.amplitudes`):
exact, linear in the edit sizes, and free to compute, which is what the RL environment needs.

Limb leads are linked (III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2). With the default
``limb_policy="dipole"`` an edit of a limb lead is the smallest frontal-plane dipole change that moves that lead
by the edit: every limb lead M changes by the edit times (u_M . u_L) / |u_L|^2 (u = hexaxial lead vectors), so
the identities still hold and reciprocal leads move the opposite way (lowering III's ST raises aVL's). The model
sees 12 signals, and an ECG whose limb leads disagree is not a plausible ECG. ``limb_policy="isolated"`` changes
the named lead only. Precordial leads are independent recordings and are always edited alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ecg import LEADS, LIMB_LEADS, Ecg
from ..errors import EcgLeadError
from ..measure import Delineation, delineate

SEGMENTS: tuple[str, ...] = ("P", "QRS", "ST", "T")
LIMB_POLICIES: tuple[str, ...] = ("dipole", "isolated")
MAX_EDIT_MV = 0.5  # largest cumulative |edit| of one (lead, segment): beyond it the edit is a different ECG
MIN_QRS_MV = 0.2  # a QRS smaller than this is not scaled (its dominant deflection is ill-defined)
MIN_QRS_SCALE = 0.25  # a QRS may shrink to a quarter of its size at most
# physiological ranges of the measured values after editing, mV (QRS: dominant deflection magnitude)
BOUNDS_MV: dict[str, tuple[float, float]] = {"P": (-0.3, 0.5), "QRS": (0.0, 5.0), "ST": (-0.8, 1.0), "T": (-1.5, 2.0)}
SEGMENT_WORDS = {"P": "P wave", "QRS": "QRS amplitude", "ST": "ST segment (J+60 ms)", "T": "T wave"}

_SQ3 = np.sqrt(3.0)
# hexaxial frontal-plane lead vectors (I at 0 deg, II at 60, III at 120, aVR -150, aVL -30, aVF 90; aV* gain sqrt3/2)
_LIMB_VECTORS = np.array(
    [[1, 0], [0.5, _SQ3 / 2], [-0.5, _SQ3 / 2], [-0.75, -_SQ3 / 4], [0.75, -_SQ3 / 4], [0, _SQ3 / 2]]
)


class EditError(ValueError):
    """An edit that cannot be applied: unknown segment, no P wave, too large, or out of physiological bounds."""


@dataclass(frozen=True)
class Edit:
    """One physiological edit.

    Attributes:
        lead: canonical lead name ("I" ... "V6").
        segment: "P", "QRS", "ST" or "T".
        amplitude_mv: signed step of the segment's measurement in mV (QRS: of the dominant deflection's size).
    """

    lead: str
    segment: str
    amplitude_mv: float

    def __post_init__(self) -> None:
        if self.lead not in LEADS:
            raise EcgLeadError("<edit>", f"lead {self.lead!r} is not one of {', '.join(LEADS)}")
        if self.segment not in SEGMENTS:
            raise EditError(f"segment {self.segment!r} is not one of {', '.join(SEGMENTS)}")
        if not np.isfinite(self.amplitude_mv) or abs(self.amplitude_mv) > MAX_EDIT_MV + 1e-9:
            raise EditError(f"edit of {self.lead} {self.segment}: |{self.amplitude_mv}| mV exceeds {MAX_EDIT_MV} mV")

    def describe(self) -> str:
        """Words for a clinician, e.g. "lower V3 T wave by 0.20 mV"."""
        if self.segment == "QRS":
            verb = "increase" if self.amplitude_mv > 0 else "reduce"
        else:
            verb = "raise" if self.amplitude_mv > 0 else "lower"
        return f"{verb} {self.lead} {SEGMENT_WORDS[self.segment]} by {abs(self.amplitude_mv):.2f} mV"

    def to_dict(self) -> dict:
        return {"lead": self.lead, "segment": self.segment, "amplitude_mv": float(self.amplitude_mv),
                "text": self.describe()}  # fmt: skip


def merge_edits(edits: list[Edit]) -> list[Edit]:
    """Sum edits of the same (lead, segment), in order of first appearance; drop those that cancel out."""
    total: dict[tuple[str, str], float] = {}
    for e in edits:
        total[(e.lead, e.segment)] = total.get((e.lead, e.segment), 0.0) + float(e.amplitude_mv)
    return [Edit(lead, seg, round(a, 6)) for (lead, seg), a in total.items() if abs(a) > 1e-9]


def limb_coupling(limb_policy: str = "dipole") -> np.ndarray:
    """(12, 12) matrix C: an edit of size a on lead L changes lead M by a * C[M, L] (see module docstring)."""
    if limb_policy not in LIMB_POLICIES:
        raise ValueError(f"limb_policy must be one of {LIMB_POLICIES}, got {limb_policy!r}")
    c = np.eye(len(LEADS))
    if limb_policy == "dipole":
        u = _LIMB_VECTORS
        c[:6, :6] = (u @ u.T) / (u**2).sum(axis=1)[None, :]  # C[M, L] = u_M . u_L / |u_L|^2
    return c


def _rise(n: int) -> np.ndarray:
    """n samples of a raised-cosine ramp from (just above) 0 to 1."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))


def _bump(length: int, start: int, peak: int, end: int, plateau_end: int | None = None) -> np.ndarray:
    """(length,) window: 0 before `start`, raised-cosine rise to 1 at `peak`, 1 until `plateau_end`, fall to 0 at
    `end`. Indices are clipped into the frame."""
    w = np.zeros(length)
    start, peak, end = max(start, 0), min(max(peak, 0), length - 1), min(end, length - 1)
    top = peak if plateau_end is None else min(max(plateau_end, peak), end - 1)
    if peak > start:
        w[start:peak] = _rise(peak - start)
    w[peak : top + 1] = 1.0
    if end > top + 1:
        w[top + 1 : end] = _rise(end - top - 1)[::-1]
    return w


@dataclass
class BeatFrame:
    """What editing one record needs, computed once from its delineation.

    Attributes:
        fs: sampling rate, Hz.
        n_samples: record length.
        beat_starts: (B,) record sample of each beat's median-beat frame start (may be negative at the edges).
        median_beat: (12, L) baseline-corrected median beat, mV.
        windows: (4, L) window shape of each segment in `SEGMENTS` order (P all zero without a P wave).
        unit_waveforms: (12, 4, L) waveform of a +1 mV edit of (lead, segment) in that lead alone.
        measure_index: (12, 4) median-beat sample where each lead's P, QRS, ST, T measurement is read.
        measure_sign: (12, 4) factor applied to the value read at `measure_index`: the sign of the lead's dominant
            QRS deflection for QRS (the QRS measurement is a magnitude), 0 for P without a P wave, else 1.
        available: (12, 4) which (lead, segment) can be edited (P needs a P wave; QRS needs >= `MIN_QRS_MV`).
        source: the record's source, for messages.
    """

    fs: float
    n_samples: int
    beat_starts: np.ndarray
    median_beat: np.ndarray
    windows: np.ndarray
    unit_waveforms: np.ndarray
    measure_index: np.ndarray
    measure_sign: np.ndarray
    available: np.ndarray
    source: str = "<ecg>"

    @classmethod
    def from_ecg(cls, ecg: Ecg, delineation: Delineation | None = None) -> BeatFrame:
        """Delineate `ecg` (unless given) and lay out the segment windows.

        Raises:
            EcgSignalError: fewer than 2 beats (from `delineate`).
        """
        d = delineation or delineate(ecg)
        ms = d.fs / 1000.0
        med = d.median_beat.astype(np.float64)
        n_leads, length = med.shape
        f = d.fiducials
        qrs_on, j, t_peak, t_end = f["qrs_on"], f["j"], f["t_peak"], f["t_end"]
        st_i = min(j + int(round(60 * ms)), length - 1)
        windows = np.zeros((len(SEGMENTS), length))
        if d.p_present:
            p_on, p_peak = f["p_on"], f["p_peak"]
            p_end = min(p_peak + (p_peak - p_on) + int(10 * ms), qrs_on - int(10 * ms))
            windows[0] = _bump(length, p_on - int(10 * ms), p_peak, max(p_end, p_peak + int(10 * ms)))
        taper = int(10 * ms)
        windows[1] = _bump(length, qrs_on - taper, qrs_on, j + taper + 1, plateau_end=j)
        st_fall_end = max(t_peak, j + int(110 * ms))
        windows[2] = _bump(length, j - taper, j + int(20 * ms), st_fall_end, plateau_end=j + int(70 * ms))
        t_start = max(j + int(70 * ms), t_peak - (t_end - t_peak))
        windows[3] = _bump(length, t_start, t_peak, max(t_end, t_peak + int(40 * ms)))

        qrs = med[:, qrs_on : j + 1]
        r_idx = qrs_on + np.abs(qrs).argmax(axis=1)
        dominant = med[np.arange(n_leads), r_idx]
        measure_sign = np.ones((n_leads, len(SEGMENTS)))
        measure_sign[:, 0] = float(d.p_present)
        measure_sign[:, 1] = np.where(dominant >= 0, 1.0, -1.0)
        p_idx = f["p_peak"] if d.p_present else 0
        measure_index = np.stack(
            [np.full(n_leads, p_idx), r_idx, np.full(n_leads, st_i), np.full(n_leads, t_peak)], axis=1
        )
        unit = np.repeat(windows[None], n_leads, axis=0)  # (4, L) -> (12, 4, L)
        big = np.abs(dominant) >= MIN_QRS_MV
        unit[:, 1] = np.where(big[:, None], windows[1][None] * med / np.maximum(np.abs(dominant), 1e-6)[:, None], 0.0)
        available = np.ones((n_leads, len(SEGMENTS)), dtype=bool)
        available[:, 0] = d.p_present
        available[:, 1] = big
        return cls(
            fs=d.fs,
            n_samples=ecg.n_samples,
            beat_starts=(d.r_samples - d.r_index).astype(np.int64),
            median_beat=med,
            windows=windows,
            unit_waveforms=unit,
            measure_index=measure_index.astype(np.int64),
            measure_sign=measure_sign,
            available=available,
            source=ecg.source,
        )

    # ------------------------------------------------------------------ waveforms and measurements
    def waveform(self, edits: list[Edit], limb_policy: str = "dipole") -> np.ndarray:
        """(12, L) per-beat waveform that `edits` add (summed; limb leads coupled per `limb_policy`)."""
        coupling = limb_coupling(limb_policy)
        w = np.zeros_like(self.median_beat)
        for e in edits:
            li, si = LEADS.index(e.lead), SEGMENTS.index(e.segment)
            w += e.amplitude_mv * coupling[:, li, None] * self.unit_waveforms[li, si][None, :]
        return w

    def amplitudes(self, waveform: np.ndarray | None = None) -> np.ndarray:
        """(..., 12, 4) P, QRS (dominant-deflection magnitude), ST (J+60 ms) and T (at T peak) of every lead, mV,
        for the median beat plus `waveform` ((..., 12, L), default none)."""
        cur = self.median_beat if waveform is None else self.median_beat + waveform
        index = np.broadcast_to(self.measure_index, (*cur.shape[:-1], len(SEGMENTS)))  # (..., 12, 4)
        vals = np.take_along_axis(cur, index, axis=-1)  # vals[..., m, q] = cur[..., m, measure_index[m, q]]
        return vals * self.measure_sign

    def effects(self, limb_policy: str = "dipole") -> np.ndarray:
        """(12 * 4, 12 * 4) change of every measurement (columns) per +1 mV edit of each (lead, segment) (rows)."""
        coupling = limb_coupling(limb_policy)
        # unit waveform of (l, s) seen in lead m: coupling[m, l] * unit[l, s]; read at measure_index[m, q]
        at = self.unit_waveforms[:, :, self.measure_index]  # (12 l, 4 s, 12 m, 4 q)
        eff = coupling.T[:, None, :, None] * at * self.measure_sign[None, None]
        return eff.reshape(len(LEADS) * len(SEGMENTS), -1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(12, 4) lower and upper physiological bounds of `amplitudes` (QRS may shrink to `MIN_QRS_SCALE`)."""
        lo = np.array([BOUNDS_MV[s][0] for s in SEGMENTS])[None].repeat(len(LEADS), 0)
        hi = np.array([BOUNDS_MV[s][1] for s in SEGMENTS])[None].repeat(len(LEADS), 0)
        base = self.amplitudes()
        qrs = base[:, 1]
        lo[:, 1] = np.where(qrs >= MIN_QRS_MV, MIN_QRS_SCALE * qrs, -np.inf)  # tiny complexes: no sign to keep
        hi[:, 1] = np.maximum(hi[:, 1], qrs)
        # an original value already beyond a bound may stay there (we only refuse edits that push further out)
        return np.minimum(lo, base), np.maximum(hi, base)

    def add_to_signal(self, signal: np.ndarray, waveform: np.ndarray) -> np.ndarray:
        """`signal` (12, n) plus `waveform` (12, L) on every beat (clipped at the record's edges); a new array."""
        out = np.array(signal, dtype=np.float32, copy=True)
        nz = np.flatnonzero(np.abs(waveform).max(axis=0) > 0)
        if nz.size == 0:
            return out
        lo, hi = int(nz[0]), int(nz[-1]) + 1
        part = waveform[:, lo:hi].astype(np.float32)
        for start in self.beat_starts:
            a, b = start + lo, start + hi
            ca, cb = max(a, 0), min(b, self.n_samples)
            if cb > ca:
                out[:, ca:cb] += part[:, ca - a : cb - a]
        return out


def check_edits(frame: BeatFrame, edits: list[Edit], limb_policy: str = "dipole") -> list[Edit]:
    """Merge `edits` and check that they can be applied; returns the merged list.

    Raises:
        EditError: an edit of a segment the record lacks (P without a P wave, a QRS too small to scale), a
            cumulative edit over `MAX_EDIT_MV`, or a measurement pushed out of its physiological bounds.
    """
    merged = merge_edits(edits)
    for e in merged:
        li, si = LEADS.index(e.lead), SEGMENTS.index(e.segment)
        if not frame.available[li, si]:
            why = "no P wave was found" if e.segment == "P" else f"its QRS is smaller than {MIN_QRS_MV} mV"
            raise EditError(f"{frame.source}: cannot {e.describe()}: {why}")
    amps = frame.amplitudes(frame.waveform(merged, limb_policy))
    lo, hi = frame.bounds()
    bad = np.argwhere((amps < lo - 1e-6) | (amps > hi + 1e-6))
    if bad.size:
        li, si = bad[0]
        raise EditError(
            f"{frame.source}: the edits put {LEADS[li]} {SEGMENTS[si]} at {amps[li, si]:.2f} mV, outside the "
            f"physiological range [{lo[li, si]:.2f}, {hi[li, si]:.2f}] mV"
        )
    return merged


def apply_edits(ecg: Ecg, edits: list[Edit], frame: BeatFrame | None = None, limb_policy: str = "dipole") -> Ecg:
    """The counterfactual record: `ecg` with `edits` on every beat (meta notes list the edits).

    Args:
        ecg: the record (any length and rate; delineated unless `frame` is given).
        edits: the edits, applied together (edits of the same lead and segment add up).
        frame: `BeatFrame.from_ecg(ecg)`, when already computed.
        limb_policy: "dipole" (limb leads stay consistent) or "isolated" (named lead only).

    Raises:
        EditError: see `check_edits`.
    """
    frame = frame or BeatFrame.from_ecg(ecg)
    merged = check_edits(frame, edits, limb_policy)
    signal = frame.add_to_signal(ecg.signal, frame.waveform(merged, limb_policy))
    meta = {**ecg.meta, "notes": [*ecg.meta.get("notes", []), *(f"counterfactual: {e.describe()}" for e in merged)]}
    meta["id"] = f"{ecg.meta.get('id', ecg.source)}-counterfactual"
    return Ecg(signal, ecg.fs, meta)


def limb_leads_consistent(signal: np.ndarray, atol_mv: float = 1e-4) -> bool:
    """Whether III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2 hold in (12, n) `signal`."""
    i, ii = signal[0].astype(np.float64), signal[1].astype(np.float64)
    derived = np.stack([ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2])
    return bool(np.allclose(signal[2:6], derived, atol=atol_mv))


__all__ = [
    "BOUNDS_MV",
    "LIMB_LEADS",
    "MAX_EDIT_MV",
    "SEGMENTS",
    "BeatFrame",
    "Edit",
    "EditError",
    "apply_edits",
    "check_edits",
    "limb_coupling",
    "limb_leads_consistent",
    "merge_edits",
]
