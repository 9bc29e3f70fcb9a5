"""`inspect_ecg`: what a file holds and everything wrong with it, without refusing (``vlm-ecg info FILE``).

`read_ecg` stops at the first problem; this module lists them all, so a user fixing a file sees the
whole picture. Problems are what `read_ecg` or ``.standardize()`` would refuse; warnings are what
they would repair or change (bridged NaN gaps, derived limb leads, resampling, cropping).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..ecg import (
    FLAT_PEAK_TO_PEAK_MV,
    LIMB_LEADS,
    MAX_ABS_MV,
    MAX_NAN_GAP_S,
    PRECORDIAL_LEADS,
    SUPPLEMENTARY_LEADS,
    TARGET_DURATION_S,
    TARGET_FS_HZ,
    derive_limb_leads,
    normalize_lead_name,
)
from ..errors import EcgError
from .dispatch import detect_format, read_raw
from .raw import RawEcg


@dataclass
class EcgReport:
    """What `inspect_ecg` found.

    Attributes:
        source: the path as given.
        format: "wfdb", "csv", "npz", or "" when the format could not be told.
        leads: lead names as the file spells them, in file order.
        fs: sampling rate in Hz, None if unknown.
        n_samples: samples per lead.
        amplitude_mv: per file lead, (min, max) in mV over finite samples (NaN if none).
        problems: what reading or standardising would refuse, one sentence each.
        warnings: what reading or standardising would repair or change.
        notes: what the reader did (unit conversions, header repairs).
    """

    source: str
    format: str = ""
    leads: list[str] = field(default_factory=list)
    fs: float | None = None
    n_samples: int = 0
    amplitude_mv: dict[str, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when `read_ecg(source).standardize()` succeeds."""
        return not self.problems

    @property
    def duration_s(self) -> float | None:
        return self.n_samples / self.fs if self.fs else None

    def format_report(self) -> str:
        """Human-readable summary, as `vlm-ecg info` prints it."""
        fs = f"{self.fs:g} Hz" if self.fs else "unknown"
        dur = f"{self.duration_s:.2f} s" if self.duration_s is not None else "unknown"
        lines = [
            f"file:      {self.source}",
            f"format:    {self.format or 'unknown'}",
            f"leads:     {len(self.leads)} ({', '.join(self.leads)})" if self.leads else "leads:     none read",
            f"fs:        {fs}",
            f"duration:  {dur} ({self.n_samples} samples)",
        ]
        if self.amplitude_mv:
            lines.append("amplitude (mV, min .. max):")
            width = max(len(k) for k in self.amplitude_mv)
            for lead, (lo, hi) in self.amplitude_mv.items():
                lines.append(f"  {lead:<{width}}  {lo:8.3f} .. {hi:8.3f}")
        for title, items in (("notes", self.notes), ("warnings", self.warnings), ("problems", self.problems)):
            if items:
                lines.append(f"{title}:")
                lines += [f"  - {item}" for item in items]
        lines.append("status:    " + ("OK" if self.ok else f"REFUSED ({len(self.problems)} problem(s))"))
        return "\n".join(lines)


def inspect_ecg(path: str | os.PathLike, *, fs: float | None = None, units: str | None = None) -> EcgReport:
    """Describe an ECG file and list its problems instead of raising (arguments as `read_ecg`)."""
    report = EcgReport(source=str(path))
    try:
        report.format = detect_format(path)[0]
        raw = read_raw(path, fs=fs, units=units)
    except EcgError as exc:
        report.problems.append(exc.problem if exc.source == str(path) else str(exc))
        return report
    report.leads, report.fs, report.n_samples = list(raw.leads), raw.fs, raw.n_samples
    report.notes = list(raw.meta.get("notes", []))
    with np.errstate(invalid="ignore"):
        for lead, row in zip(raw.leads, raw.signal, strict=True):
            finite = row[np.isfinite(row)]
            report.amplitude_mv[lead] = (
                (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))
            )
    _check_leads(raw, report)
    _check_samples(raw, report)
    _check_length(raw, report)
    if report.ok:  # the real pipeline has the last word: anything it refuses that the checks missed
        try:
            raw.to_ecg().standardize()
        except EcgError as exc:
            report.problems.append(exc.problem)
    return report


def _check_leads(raw: RawEcg, report: EcgReport) -> None:
    present: dict[str, np.ndarray] = {}
    for name, row in zip(raw.leads, raw.signal, strict=True):
        key = re.sub(r"[\s_\-]", "", str(name)).upper()
        if key in SUPPLEMENTARY_LEADS:
            report.warnings.append(f"lead {name} (Frank orthogonal lead) will be dropped")
            continue
        try:
            canon = normalize_lead_name(name)
        except EcgError:
            report.problems.append(f"lead {name!r} is not one of the 12 standard leads (or pass extra_leads='drop')")
            continue
        if canon in present:
            report.problems.append(f"lead {canon} appears twice")
        present[canon] = row
    missing = [k for k in PRECORDIAL_LEADS if k not in present]
    if missing:
        report.problems.append(f"precordial lead(s) {', '.join(missing)} missing (they cannot be derived)")
    derived = [k for k in LIMB_LEADS if k not in present]
    if derived:
        try:
            derive_limb_leads(present)
            report.warnings.append(f"limb lead(s) {', '.join(derived)} will be derived from the others")
        except EcgError as exc:
            report.problems.append(exc.problem)


def _check_samples(raw: RawEcg, report: EcgReport) -> None:
    for name, row in zip(raw.leads, raw.signal, strict=True):
        n_inf = int(np.isinf(row).sum())
        if n_inf:
            report.problems.append(f"lead {name}: {n_inf} infinite samples")
        nan = np.isnan(row)
        if nan.all():
            report.problems.append(f"lead {name}: all samples missing (NaN)")
            continue
        if nan.any():
            edges = np.diff(np.concatenate([[0], nan.astype(np.int8), [0]]))
            longest = int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())
            if raw.fs and longest <= int(np.floor(MAX_NAN_GAP_S * raw.fs)):
                report.warnings.append(f"lead {name}: {int(nan.sum())} missing (NaN) samples will be interpolated")
            else:
                gap = f"{longest / raw.fs * 1000:.0f} ms" if raw.fs else f"{longest} samples"
                report.problems.append(
                    f"lead {name}: {int(nan.sum())} missing (NaN) samples, the longest gap {gap} "
                    f"(only gaps shorter than {MAX_NAN_GAP_S * 1000:.0f} ms are interpolated)"
                )
        finite = row[np.isfinite(row)]
        if finite.size and np.abs(finite).max() > MAX_ABS_MV:
            report.problems.append(
                f"lead {name}: reaches {np.abs(finite).max():.1f} mV, beyond the {MAX_ABS_MV:.0f} mV of any surface "
                "ECG (wrong units?)"
            )
        if finite.size and np.ptp(finite) < FLAT_PEAK_TO_PEAK_MV:
            report.problems.append(f"lead {name}: flat (peak-to-peak < 1 uV): disconnected?")


def _check_length(raw: RawEcg, report: EcgReport) -> None:
    if raw.fs is None:
        report.problems.append("no sampling rate: add a time column or an fs entry, or pass fs=")
        return
    if abs(raw.fs - TARGET_FS_HZ) > 1e-9:
        report.warnings.append(f"will be resampled {raw.fs:g} Hz -> {TARGET_FS_HZ} Hz")
    duration_s = raw.n_samples / raw.fs
    if duration_s < TARGET_DURATION_S - 0.1:
        report.problems.append(f"{duration_s:.2f} s long, shorter than the {TARGET_DURATION_S:g} s the model reads")
    elif duration_s > TARGET_DURATION_S + 1e-9:
        report.warnings.append(f"{duration_s:.2f} s long: standardize() keeps the first {TARGET_DURATION_S:g} s")


def format_report(report: EcgReport) -> str:
    """`EcgReport.format_report` as a function (what `vlm-ecg info` prints)."""
    return report.format_report()
