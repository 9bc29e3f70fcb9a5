"""CSV (or TSV) ECGs: one column per lead, one row per sample.

Layout understood by `read_csv`:

* Optional leading comment lines ``# key: value`` (or ``# key=value``). Keys ``fs``, ``sampling rate`` or
  ``sampling_rate_hz`` give the sampling rate in Hz (``500`` or ``500 Hz``), ``units`` the unit of every
  lead, ``id`` the record id; all comment lines are kept in ``meta["comments"]``.
* A header row of column names, comma-, semicolon- or tab-separated. A name may carry its unit in brackets:
  ``V1 (uV)``, ``II [mV]``. Lead names are mapped by `Ecg.from_leads` (``avr``, ``Lead II``, ``DI`` ...).
* At most one time column, which then sets the sampling rate: ``time``, ``t``, ``time_s``, ``seconds``
  (seconds) or ``time_ms``, ``ms`` (milliseconds), or ``time (ms)``. Index columns (``sample``, ``index``,
  an unnamed first column as pandas writes) are ignored.
* Numbers with a dot as decimal separator (a semicolon-separated file may use decimal commas). Empty cells
  and ``nan`` / ``NA`` / ``null`` are missing samples (NaN, bridged by `Ecg` when shorter than 50 ms).

Units: a column's bracket, else the ``units`` comment, else the ``units=`` argument, else millivolts.
Sampling rate: the time column, else the ``fs`` comment, else the ``fs=`` argument; where several are
present they must agree.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ..ecg import LEADS, Ecg
from ..errors import EcgFormatError, EcgSignalError
from .raw import RawEcg, check_fs_argument, unit_to_mv

_TIME_S = {"time", "t", "time_s", "times", "seconds", "sec", "s", "timestamp"}
_TIME_MS = {"time_ms", "t_ms", "ms", "milliseconds"}
_INDEX = {"", "sample", "samples", "sample_index", "index", "idx", "unnamed:0"}
_FS_KEYS = ("fs", "fs_hz", "sampling_rate_hz", "sampling_rate", "sample_rate")
_MISSING = {"", "nan", "na", "n/a", "null", "none"}
_SETTING = re.compile(r"^(?P<key>[\w ]+?)\s*[:=]\s*(?P<value>.*)$")
_UNIT_IN_NAME = re.compile(r"^(?P<name>.*?)\s*[\(\[]\s*(?P<unit>[^\)\]]+?)\s*[\)\]]$")


def read_csv(path: Path, source: str, fs: float | None = None, units: str | None = None) -> RawEcg:
    """Read a CSV ECG (layout in the module docstring).

    Args:
        path: the file.
        source: the path as the user gave it, for ``meta["source"]``.
        fs: sampling rate in Hz when the file has no time column or ``fs`` comment (else it must agree).
        units: unit of every lead column without a bracketed unit ("mV", "uV", "V"); default mV.

    Raises:
        EcgFormatError: not text, empty, no data rows, ragged rows, non-numeric cells (naming line and column).
        EcgSignalError: no sampling rate, a non-uniform time column, or rates that disagree.
    """
    lines = _read_lines(path)
    comments, settings, first = _preamble(lines)
    if first == len(lines):
        raise EcgFormatError(path, "empty CSV: no header row of lead names")
    header, rows, line_numbers = _table(lines, first, path)
    values = _to_float(rows, header, line_numbers, path)  # (n, n_columns)

    default_unit = settings.get("units") or units or "mV"
    notes: list[str] = []
    time_s, leads, columns, converted = None, [], [], []
    for c, column in enumerate(header):
        match = _UNIT_IN_NAME.match(column)
        name, unit = (match["name"], match["unit"]) if match else (column, None)
        key = name.strip().lower().replace(" ", "_")
        if key in _TIME_S | _TIME_MS:
            if time_s is not None:
                raise EcgFormatError(path, f"two time columns ({column!r} and an earlier one)")
            scale = 1e-3 if key in _TIME_MS or (unit or "").lower() == "ms" else 1.0
            time_s = values[:, c] * scale
        elif key in _INDEX:
            notes.append(f"ignored index column {column!r}")
        else:
            factor = unit_to_mv(unit or default_unit, path, name)
            if factor != 1.0:
                converted.append(f"{name.strip()} ({unit or default_unit})")
            leads.append(name.strip())
            columns.append(values[:, c] * factor)
    if not leads:
        raise EcgFormatError(path, f"no lead columns in the header {header}")
    if converted:
        notes.append(f"converted {', '.join(converted)} to mV")

    file_fs, what = None, ""
    if time_s is not None:
        file_fs, what = _fs_from_time(time_s, line_numbers, path), "the time column"
    fs_key = next((k for k in _FS_KEYS if k in settings), None)
    if fs_key is not None:
        stated = re.sub(r"\s*hz$", "", settings[fs_key], flags=re.IGNORECASE)
        comment_fs = check_fs_argument(stated, None, path, "")
        if file_fs is not None and abs(comment_fs - file_fs) > 0.005 * file_fs:
            raise EcgSignalError(
                path, f"the fs comment says {comment_fs:g} Hz but the time column says {file_fs:g} Hz"
            )
        file_fs, what = file_fs or comment_fs, what or "the fs comment"
    meta = {
        "id": settings.get("id", path.stem),
        "source": source,
        "format": "csv",
        "notes": notes,
        "comments": comments,
    }
    return RawEcg(np.stack(columns), leads, check_fs_argument(fs, file_fs, path, what), meta)


def write_csv(ecg: Ecg, path: Path) -> Path:
    """Write `ecg` as CSV: a ``time_s`` column then the 12 leads in mV (6 decimals, i.e. 1 nV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    time_s = np.arange(ecg.n_samples) / ecg.fs
    table = np.column_stack([time_s, ecg.signal.T.astype(np.float64)])  # (n, 13)
    np.savetxt(path, table, fmt="%.6f", delimiter=",", header=",".join(("time_s", *LEADS)), comments="")
    return path


# ---------------------------------------------------------------------------------------------- helpers
def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EcgFormatError(path, "file not found") from None
    except OSError as exc:
        raise EcgFormatError(path, f"cannot be read ({exc.strerror or exc})") from None
    if b"\x00" in raw[:4096]:
        raise EcgFormatError(path, "is a binary file, not a CSV table (text)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EcgFormatError(path, f"is not UTF-8 text (byte {exc.start}): not a CSV table") from None
    return text.splitlines()


def _preamble(lines: list[str]) -> tuple[list[str], dict[str, str], int]:
    """Leading comment lines, the ``key: value`` settings among them, and the index of the header row."""
    comments, settings, first = [], {}, 0
    while first < len(lines) and (not lines[first].strip() or lines[first].lstrip().startswith("#")):
        text = lines[first].strip().lstrip("#").strip()
        if text:
            comments.append(text)
            setting = _SETTING.match(text)
            if setting:
                settings.setdefault(setting["key"].strip().lower().replace(" ", "_"), setting["value"].strip())
        first += 1
    return comments, settings, first


def _table(lines: list[str], first: int, path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows and their 1-based file line numbers; refuses ragged rows and header-only files.

    The delimiter is a tab or a semicolon when the header holds one (a semicolon table may use decimal
    commas, which are read as dots), else a comma.
    """
    head = lines[first]
    delimiter = "\t" if "\t" in head else ";" if ";" in head and "," not in head else ","
    reader = csv.reader(lines[first:], delimiter=delimiter)
    header = [name.strip() for name in next(reader)]
    rows, line_numbers = [], []
    for row in reader:
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise EcgFormatError(
                path, f"line {first + reader.line_num}: {len(row)} fields, but the header has {len(header)}"
            )
        rows.append([cell.replace(",", ".") for cell in row] if delimiter == ";" else row)
        line_numbers.append(first + reader.line_num)
    if not rows:
        raise EcgFormatError(path, "no data rows below the header")
    return header, rows, line_numbers


def _to_float(rows: list[list[str]], header: list[str], line_numbers: list[int], path: Path) -> np.ndarray:
    """Cells as float64; missing-value tokens become NaN; the first non-numeric cell is named."""
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty((len(rows), len(header)), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            cell = cell.strip()
            if cell.lower() in _MISSING:
                out[r, c] = np.nan
                continue
            try:
                out[r, c] = float(cell)
            except ValueError:
                raise EcgFormatError(
                    path, f"line {line_numbers[r]}, column {header[c]!r}: {cell[:40]!r} is not a number"
                ) from None
    return out


def _fs_from_time(time_s: np.ndarray, line_numbers: list[int], path: Path) -> float:
    """Sampling rate from a time column; refuses missing, non-increasing or gapped times."""
    if np.isnan(time_s).any():
        raise EcgSignalError(
            path, f"time column has an empty cell at line {line_numbers[int(np.argmax(np.isnan(time_s)))]}"
        )
    if time_s.size < 2:
        raise EcgSignalError(path, "one data row: the time column cannot give a sampling rate")
    steps = np.diff(time_s)
    median = float(np.median(steps))
    if median <= 0 or (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        raise EcgSignalError(path, f"time column does not increase at line {line_numbers[i + 1]}")
    off = np.abs(steps - median) > 0.5 * median
    if off.any():
        i = int(np.argmax(off))
        raise EcgSignalError(
            path,
            f"time column is not uniformly sampled: step of {steps[i] * 1e3:.3g} ms at line {line_numbers[i + 1]} "
            f"where the others are {median * 1e3:.3g} ms (missing samples?)",
        )
    fs = (time_s.size - 1) / float(time_s[-1] - time_s[0])
    return float(round(fs)) if abs(fs - round(fs)) < 2e-4 * fs else fs
