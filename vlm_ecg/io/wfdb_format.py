"""WFDB records (PhysioNet): a ``.hea`` header beside ``.dat`` / ``.mat`` sample files, read through `wfdb`.

Beyond what ``wfdb.rdrecord`` checks, the reader refuses data files whose size does not match the header
(``rdrecord`` silently reads a prefix of a longer file, or of a file the header says is shorter) and
samples that do not match the header's checksums (a corrupted file, or the header of another record).
Every ``wfdb`` exception is re-raised as an `EcgFormatError` naming the file.

Headers in the original PhysioNet/CinC Challenge 2020/2021 syntax (record line ``E00001.mat 12 500 5000
05-May-2020 14:50:55``: a file name where the record name belongs, a non-WFDB date) fail ``wfdb``'s
parser. They are read from a repaired copy in a temporary folder (the input is never touched) with a note
in ``meta``.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ..ecg import LEADS, Ecg
from ..errors import EcgFormatError, EcgLeadError
from .raw import RawEcg, check_fs_argument, unit_to_mv

logger = logging.getLogger(__name__)

WRITE_GAIN_PER_MV = 1000.0  # 16-bit samples of 1 uV: +-32.767 mV covers the 20 mV an `Ecg` may hold

# Bits per sample of the uncompressed WFDB formats, to check data file sizes against the header.
_BITS_PER_SAMPLE: dict[str, float] = {
    "8": 8,
    "16": 16,
    "24": 24,
    "32": 32,
    "61": 16,
    "80": 8,
    "160": 16,
    "212": 12,
    "310": 32 / 3,
    "311": 32 / 3,
}
_CHALLENGE_RECORD_LINE = re.compile(r"^(?P<name>[-\w]+)\.(?:mat|dat)(?P<rest>(?:\s+\S+){1,3})(?:\s+.*)?$")


def read_wfdb(header_path: Path, source: str, fs: float | None = None) -> RawEcg:
    """Read a WFDB record given its header path.

    Args:
        header_path: the ``.hea`` file; sample files are looked up beside it, as the header names them.
        source: the path as the user gave it, for ``meta["source"]``.
        fs: optional expected sampling rate in Hz; refused when the header disagrees.

    Raises:
        EcgFormatError: unreadable header, missing / truncated / oversized / corrupted data files, unknown units.
        EcgLeadError: a signal without a name.
        EcgSignalError: `fs` disagrees with the header.
    """
    text = _read_header_text(header_path)
    header_lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not header_lines:
        raise EcgFormatError(header_path, "WFDB header has no record line (the file is empty or only comments)")
    notes: list[str] = []
    repaired = _repair_challenge_record_line(header_lines[0])
    with ExitStack() as stack:
        read_dir = header_path.parent
        if repaired is not None:
            read_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vlm_ecg_wfdb_")))
            fixed = text.replace(header_lines[0], repaired, 1)
            (read_dir / header_path.name).write_text(fixed, encoding="ascii", errors="replace")
            notes.append(f"read the Challenge-2020/21 record line {header_lines[0]!r} as {repaired!r}")
        record_name = str(read_dir / header_path.stem)
        header = _rdheader(record_name, header_path)
        data_files = _check_data_files(header, header_path)
        if repaired is not None:
            for name in data_files:
                shutil.copyfile(header_path.parent / name, read_dir / name)
        rec = _call_wfdb("rdrecord", record_name, header_path, physical=False)
        _check_checksums(rec, header_path)
        physical = rec.dac(return_res=64)  # (n, n_sig) float64, invalid samples -> NaN

    leads = list(rec.sig_name)
    units = list(rec.units or [None] * len(leads))  # a missing unit is mV by the WFDB specification
    signal = np.empty((len(leads), physical.shape[0]), dtype=np.float64)
    converted = []
    for i, (lead, unit) in enumerate(zip(leads, units, strict=True)):
        scale = unit_to_mv(unit, header_path, lead)
        signal[i] = physical[:, i] * scale
        if scale != 1.0:
            converted.append(f"{lead} ({unit})")
    if converted:
        notes.append(f"converted {', '.join(converted)} to mV")
    if max(rec.samps_per_frame) > 1:
        notes.append("averaged multiple samples per frame (wfdb smooth_frames)")
    meta = {
        "id": rec.record_name.removesuffix(".mat").removesuffix(".dat"),
        "source": source,
        "format": "wfdb",
        "notes": notes,
        "comments": list(rec.comments),
        **_parse_comments(rec.comments),
    }
    if rec.base_datetime is not None:
        meta["base_datetime"] = rec.base_datetime.isoformat()
    elif rec.base_time is not None:
        meta["base_time"] = rec.base_time.isoformat()
    return RawEcg(signal, leads, check_fs_argument(fs, float(rec.fs), source, "the WFDB header"), meta)


def write_wfdb(ecg: Ecg, path: Path) -> Path:
    """Write `ecg` as WFDB ``<stem>.hea`` + ``<stem>.dat`` (format 16, 1 uV per count); returns the header path.

    Quantisation to 1 uV bounds the round-trip error by 0.5 uV per sample. Header comments carry ``id``,
    ``age`` / ``sex`` when ``meta`` has them, and one ``note:`` line per entry of ``meta["notes"]``.

    Raises:
        EcgFormatError: the file stem is not a valid WFDB record name.
    """
    import wfdb

    name = path.stem
    if not re.fullmatch(r"[-\w]+", name):
        raise EcgFormatError(path, "a WFDB record name may only hold letters, digits, '-' and '_'")
    path.parent.mkdir(parents=True, exist_ok=True)
    digital = np.round(ecg.signal.T.astype(np.float64) * WRITE_GAIN_PER_MV).astype(np.int16)  # (n, 12)
    comments = [f"id: {ecg.meta.get('id', name)}"]
    if ecg.meta.get("age_years") is not None:
        comments.append(f"age: {ecg.meta['age_years']:g}")
    if ecg.meta.get("sex"):
        comments.append(f"sex: {ecg.meta['sex']}")
    comments += [f"note: {note}" for note in ecg.meta.get("notes", [])]
    wfdb.wrsamp(
        name,
        fs=ecg.fs,
        units=["mV"] * len(LEADS),
        sig_name=list(LEADS),
        d_signal=digital,
        fmt=["16"] * len(LEADS),
        adc_gain=[WRITE_GAIN_PER_MV] * len(LEADS),
        baseline=[0] * len(LEADS),
        comments=[" ".join(str(c).split()) for c in comments],
        write_dir=str(path.parent),
    )
    return path.with_suffix(".hea")


# ---------------------------------------------------------------------------------------------- helpers
def _read_header_text(header_path: Path) -> str:
    try:
        raw = header_path.read_bytes()
    except FileNotFoundError:
        raise EcgFormatError(header_path, "file not found") from None
    except OSError as exc:
        raise EcgFormatError(header_path, f"cannot be read ({exc.strerror or exc})") from None
    if b"\x00" in raw[:4096]:
        raise EcgFormatError(header_path, "is a binary file, not a WFDB header (text)")
    return raw.decode("ascii", errors="replace")


def _repair_challenge_record_line(line: str) -> str | None:
    """The record line with a ``NAME.mat`` record name and trailing date fixed, or None if it needs no repair.

    A valid WFDB record name never holds a dot, so the pattern only matches lines ``wfdb`` would refuse.
    """
    match = _CHALLENGE_RECORD_LINE.match(line)
    return None if match is None else f"{match['name']}{match['rest']}"


def _call_wfdb(func: str, record_name: str, header_path: Path, **kwargs):
    import wfdb

    try:
        return getattr(wfdb, func)(record_name, **kwargs)
    except EcgFormatError:
        raise
    except FileNotFoundError as exc:
        raise EcgFormatError(exc.filename or header_path, "file not found (named by the WFDB header)") from None
    except Exception as exc:  # noqa: BLE001  (wfdb raises ValueError, TypeError, IndexError, its own errors...)
        what = "not a valid WFDB header" if func == "rdheader" else "samples cannot be read"
        raise EcgFormatError(header_path, f"{what} ({type(exc).__name__}: {exc})") from None


def _rdheader(record_name: str, header_path: Path):
    import wfdb

    header = _call_wfdb("rdheader", record_name, header_path)
    if isinstance(header, wfdb.MultiRecord):
        raise EcgFormatError(header_path, "multi-segment WFDB records are not supported; convert to one segment")
    names = header.sig_name or []
    if not header.n_sig:
        raise EcgFormatError(header_path, "the WFDB header describes no signals")
    if len(names) != header.n_sig or len(header.file_name or []) != header.n_sig:
        raise EcgFormatError(
            header_path,
            f"record line announces {header.n_sig} signals but {len(header.file_name or [])} signal lines follow",
        )
    for i, name in enumerate(names):
        if not name:
            raise EcgLeadError(header_path, f"signal {i + 1} has no description (lead name)")
    return header


def _check_data_files(header, header_path: Path) -> list[str]:
    """Every data file exists and has exactly the size the header implies; returns the file names."""
    files: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name):
        files.setdefault(name, []).append(i)
    for name, idx in files.items():
        data_path = header_path.parent / name
        if not data_path.is_file():
            raise EcgFormatError(data_path, f"data file missing (named by {header_path.name})")
        fmt = header.fmt[idx[0]]
        if not header.sig_len or fmt not in _BITS_PER_SAMPLE:
            continue  # length inferred from the file, or a compressed format: nothing to compare
        per_frame = sum((header.samps_per_frame or [1] * header.n_sig)[i] or 1 for i in idx)
        offset = (header.byte_offset or [0] * header.n_sig)[idx[0]] or 0
        expected = offset + math.ceil(header.sig_len * per_frame * _BITS_PER_SAMPLE[fmt] / 8)
        slack = 4 if fmt in ("310", "311") else 0
        actual = data_path.stat().st_size
        shape = f"{header.sig_len} samples x {per_frame} signals in format {fmt}"
        if actual < expected:
            raise EcgFormatError(
                data_path, f"truncated: {actual} bytes, but {header_path.name} describes {expected} ({shape})"
            )
        if actual > expected + slack:
            raise EcgFormatError(
                data_path,
                f"{actual} bytes, but {header_path.name} describes {expected} ({shape}): header and data do not match",
            )
    return list(files)


def _check_checksums(rec, header_path: Path) -> None:
    stated = rec.checksum
    if not stated or any(c is None for c in stated):
        return
    actual = rec.calc_checksum()
    bad = [rec.sig_name[i] for i, (a, b) in enumerate(zip(actual, stated, strict=True)) if (int(a) - int(b)) % 65536]
    if bad:
        raise EcgFormatError(
            header_path,
            f"samples of lead(s) {', '.join(bad)} do not match the header checksums "
            "(corrupted data file, or the header of another record)",
        )


def _parse_comments(comments: list[str]) -> dict:
    """Header comments as ``{"header": {key: value}}`` plus ``age_years`` / ``sex`` when stated.

    Understands the spellings of PTB-XL / Challenge ("Age: 85", "Sex: Male"), LUDB ("<age>: 50", "<sex>: M")
    and the PTB database ("age: 81", "sex: female").
    """
    fields: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip().strip("<>").strip().lower(), value.strip())
    out: dict = {"header": fields}
    try:
        age = float(fields.get("age", ""))
        if 0 <= age < 150:
            out["age_years"] = age
    except ValueError:
        pass
    sex = fields.get("sex", "").strip().lower()
    if sex in ("m", "male"):
        out["sex"] = "M"
    elif sex in ("f", "female"):
        out["sex"] = "F"
    return out
