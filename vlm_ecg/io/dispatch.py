"""`read_ecg` / `write_ecg`: pick the format from the path, read or write, and name the file in every error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from ..ecg import Ecg
from ..errors import EcgFormatError
from .csv_format import read_csv, write_csv
from .npz_format import read_npz, write_npz
from .raw import RawEcg
from .wfdb_format import read_wfdb, write_wfdb

WFDB_DATA_SUFFIXES = (".dat", ".mat")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
READ_SUFFIXES = (".hea", *WFDB_DATA_SUFFIXES, *CSV_SUFFIXES, ".npz")
WRITE_SUFFIXES = (".npz", ".hea", ".dat", ".csv")


def detect_format(path: str | os.PathLike) -> tuple[str, Path]:
    """The format of an ECG path and the file to open: ("wfdb", header) | ("csv", file) | ("npz", file).

    WFDB records are accepted as the header (``x.hea``), a sample file beside its header (``x.dat``,
    ``x.mat``) or the record name without extension (``x``, as ``wfdb.rdrecord`` takes it).

    Raises:
        EcgFormatError: the path does not exist, is a folder, has an unknown suffix, or is a WFDB sample
            file without its header.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        raise EcgFormatError(p, "is a folder, not an ECG file")
    if suffix == ".hea":
        return "wfdb", p
    if suffix in WFDB_DATA_SUFFIXES:
        header = p.with_suffix(".hea")
        if header.is_file():
            return "wfdb", header
        if not p.exists():
            raise EcgFormatError(p, "file not found")
        raise EcgFormatError(p, f"no WFDB header {header.name} beside it (a {suffix} file is read with its header)")
    if suffix in CSV_SUFFIXES:
        return "csv", p
    if suffix == ".npz":
        return "npz", p
    record_header = Path(f"{p}.hea")
    if record_header.is_file():
        return "wfdb", record_header
    if not p.exists():
        raise EcgFormatError(p, "file not found (nor a WFDB record of that name)")
    raise EcgFormatError(
        p, f"unknown ECG format {suffix or '(no suffix)'}: expected one of {', '.join(READ_SUFFIXES)} or a WFDB record"
    )


def read_raw(path: str | os.PathLike, *, fs: float | None = None, units: str | None = None) -> RawEcg:
    """Read any supported file into a `RawEcg` (samples in mV, leads as the file has them, nothing refused yet).

    Args:
        path: WFDB header / sample file / record name, CSV or NPZ (see `detect_format`).
        fs: sampling rate in Hz for files that do not state one (CSV without time column, NPZ without
            ``fs``); where the file states one, a different `fs` is refused.
        units: unit of CSV / NPZ samples that do not state one ("mV", "uV", "V"); WFDB headers state theirs.
    """
    fmt, file = detect_format(path)
    source = str(path)
    if fmt == "wfdb":
        raw = read_wfdb(file, source, fs=fs)
    elif fmt == "csv":
        raw = read_csv(file, source, fs=fs, units=units)
    else:
        raw = read_npz(file, source, fs=fs, units=units)
    _note_normalised_amplitudes(raw)
    return raw


def _note_normalised_amplitudes(raw: RawEcg) -> None:
    """Note when every lead spans the same peak-to-peak: per-lead normalised, not calibrated (e.g. LUDB 1.0.1)."""
    if len(raw.leads) < 3:
        return
    with np.errstate(invalid="ignore"):
        ptp = np.nanmax(raw.signal, axis=1) - np.nanmin(raw.signal, axis=1)
    if np.isfinite(ptp).all() and ptp.min() > 0 and ptp.max() - ptp.min() < 1e-3 * ptp.max():
        raw.meta["notes"].append(
            f"every lead spans exactly {ptp.max():.3g} mV peak-to-peak: amplitudes look normalised per lead, "
            "not calibrated (do not compare amplitudes across leads or with mV thresholds)"
        )


def read_ecg(
    path: str | os.PathLike,
    *,
    fs: float | None = None,
    units: str | None = None,
    extra_leads: Literal["error", "drop"] = "error",
) -> Ecg:
    """Read a 12-lead ECG from WFDB, CSV or NPZ into a validated `Ecg` at the file's own rate and length.

    Leads are mapped to the standard order, missing limb leads derived where exact, short NaN gaps
    bridged (all recorded in ``meta["notes"]``). ``meta`` also holds ``id``, ``source`` (the path as given),
    ``format`` and what the file says about the patient (``age_years``, ``sex``, header ``comments``).
    Call ``.standardize()`` on the result for the model's 500 Hz / 10 s input. Input files are only read.

    Args:
        path: the file (see `detect_format`).
        fs: sampling rate in Hz where the file has none (see `read_raw`).
        units: sample unit where the file has none (see `read_raw`).
        extra_leads: "error" refuses leads that are not among the 12 (Frank VX/VY/VZ are always dropped
            with a note); "drop" drops them with a note.

    Raises:
        EcgFormatError: missing, unreadable or malformed files.
        EcgLeadError: unknown, duplicate or missing leads that cannot be derived.
        EcgSignalError: missing sampling rate, NaN gaps of 50 ms or more, inf, flat or > 20 mV leads.
    """
    return read_raw(path, fs=fs, units=units).to_ecg(extra_leads=extra_leads)


def write_ecg(ecg: Ecg, path: str | os.PathLike) -> Path:
    """Write `ecg` in the format its suffix names; returns the path written (the header for WFDB).

    ``.npz`` is lossless (float32); ``.hea`` / ``.dat`` write a WFDB record (16-bit, 1 uV per count, so the
    round-trip error is at most 0.5 uV); ``.csv`` writes a ``time_s`` column and the 12 leads (1 nV).
    Existing files at the destination are replaced.

    Raises:
        EcgFormatError: an unknown suffix, or a name WFDB cannot hold.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return write_npz(ecg, p)
    if suffix in (".hea", ".dat"):
        return write_wfdb(ecg, p)
    if suffix == ".csv":
        return write_csv(ecg, p)
    raise EcgFormatError(p, f"cannot write format {suffix or '(no suffix)'}: use one of {', '.join(WRITE_SUFFIXES)}")
