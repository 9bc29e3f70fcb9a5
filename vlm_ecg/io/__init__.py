"""Readers and writers of ECG files: WFDB, CSV and NPZ in, `Ecg` out (and back).

    from vlm_ecg.io import read_ecg, write_ecg, inspect_ecg
    ecg = read_ecg("ptbxl/records100/00000/00008_lr.hea").standardize()   # (12, 5000) mV at 500 Hz
    write_ecg(ecg, "out/00008.npz")
    print(inspect_ecg("suspect.csv").format_report())

| module | holds |
|---|---|
| `dispatch` | `read_ecg`, `read_raw`, `write_ecg`, `detect_format`: the format from the path |
| `raw` | `RawEcg` (the file's leads, in mV, unvalidated) and unit conversion |
| `wfdb_format` | WFDB `.hea` + `.dat` / `.mat` through `wfdb`, with size and checksum checks |
| `csv_format` | CSV / TSV with a header of lead names and an optional time column |
| `npz_format` | NPZ archives, never unpickled |
| `report` | `inspect_ecg` / `EcgReport`: every problem of a file, without raising |

Nothing here imports torch or transformers.
"""

from .dispatch import detect_format, read_ecg, read_raw, write_ecg
from .raw import RawEcg, unit_to_mv
from .report import EcgReport, format_report, inspect_ecg

__all__ = [
    "EcgReport",
    "RawEcg",
    "detect_format",
    "format_report",
    "inspect_ecg",
    "read_ecg",
    "read_raw",
    "unit_to_mv",
    "write_ecg",
]
