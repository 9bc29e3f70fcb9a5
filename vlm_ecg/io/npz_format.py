"""NPZ ECGs (numpy archives), always loaded with ``allow_pickle=False``: never unpickle untrusted data.

Arrays understood by `read_npz`:

* ``signal``: 2-D, (leads, samples) or (samples, leads); the orientation is the one whose side matches
  the number of lead names.
* ``leads``: 1-D string array of lead names (any spelling `Ecg.from_leads` maps).
* ``fs``: scalar sampling rate in Hz (may be left out when ``fs=`` is given).
* optional ``units`` (string, default "mV") and ``meta_json`` (a JSON object string as `write_npz` writes;
  its ``id``, ``notes``, ``age_years`` and ``sex`` are restored).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..ecg import LEADS, Ecg
from ..errors import EcgFormatError, EcgLeadError, EcgSignalError
from .raw import RawEcg, check_fs_argument, unit_to_mv

_RESTORED_META = ("id", "notes", "age_years", "sex", "comments")


def read_npz(path: Path, source: str, fs: float | None = None, units: str | None = None) -> RawEcg:
    """Read an NPZ ECG (arrays in the module docstring).

    Raises:
        EcgFormatError: not an NPZ archive, pickled (object) arrays, missing or malformed arrays.
        EcgLeadError: the signal's shape does not match the lead names.
        EcgSignalError: no sampling rate, or `fs` disagrees with the file.
    """
    arrays = _load(path)
    for key in ("signal", "leads"):
        if key not in arrays:
            raise EcgFormatError(path, f"no {key!r} array (found {', '.join(sorted(arrays)) or 'none'})")
    signal, leads = arrays["signal"], arrays["leads"]
    if leads.ndim != 1 or leads.dtype.kind not in "US":
        raise EcgFormatError(path, f"'leads' must be a 1-D string array, got dtype {leads.dtype} shape {leads.shape}")
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in leads.tolist()]
    if signal.ndim != 2 or signal.dtype.kind not in "iuf":
        raise EcgFormatError(
            path, f"'signal' must be a 2-D numeric array, got dtype {signal.dtype} shape {signal.shape}"
        )
    notes: list[str] = []
    if signal.shape[0] != len(names):
        if signal.shape[1] != len(names):
            raise EcgLeadError(
                path, f"'signal' has shape {signal.shape}, matching none of the {len(names)} lead names"
            )
        signal = signal.T
        notes.append("transposed signal from (samples, leads)")
    file_fs = None
    if "fs" in arrays:
        value = arrays["fs"]
        if value.size != 1 or value.dtype.kind not in "iuf":
            raise EcgSignalError(path, f"'fs' must be one number (Hz), got dtype {value.dtype} shape {value.shape}")
        file_fs = check_fs_argument(value.item(), None, path, "")
    unit = str(arrays["units"].item()) if "units" in arrays else (units or "mV")
    factor = unit_to_mv(unit, path)
    if factor != 1.0:
        notes.append(f"converted all leads from {unit} to mV")
    meta = {"id": path.stem, **_restored_meta(arrays, notes), "source": source, "format": "npz"}
    meta["notes"] = list(meta.get("notes", [])) + notes
    out = signal.astype(np.float64) * factor
    return RawEcg(out, names, check_fs_argument(fs, file_fs, path, "the 'fs' array"), meta)


def write_npz(ecg: Ecg, path: Path) -> Path:
    """Write `ecg` losslessly: float32 ``signal`` (12, n) mV, ``fs``, ``leads``, ``units`` and ``meta_json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in ecg.meta.items() if k != "source"}
    with open(path, "wb") as fh:  # a file object keeps numpy from appending ".npz" to other names
        np.savez_compressed(
            fh,
            signal=ecg.signal,
            fs=np.float64(ecg.fs),
            leads=np.array(LEADS),
            units=np.array("mV"),
            meta_json=np.array(json.dumps(meta, default=str)),
        )
    return path


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise EcgFormatError(path, "file not found") from None
    except OSError as exc:
        raise EcgFormatError(path, f"cannot be read ({exc.strerror or exc})") from None
    if magic == b"\x93NUMPY":
        raise EcgFormatError(path, "holds a single .npy array, not an NPZ archive with 'signal', 'fs' and 'leads'")
    if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise EcgFormatError(path, "not an NPZ archive (no zip signature): a binary file of another kind?")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EcgFormatError(path, f"not a readable NPZ archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a zip signature but not numpy's: np.load gives up earlier
        raise EcgFormatError(path, "not an NPZ archive with 'signal', 'fs' and 'leads'")
    with loaded:
        out = {}
        for key in loaded.files:
            try:
                out[key] = loaded[key]
            except ValueError as exc:
                raise EcgFormatError(path, f"array {key!r} cannot be loaded without unpickling ({exc})") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise EcgFormatError(path, f"array {key!r} is corrupted ({type(exc).__name__}: {exc})") from None
    return out


def _restored_meta(arrays: dict[str, np.ndarray], notes: list[str]) -> dict:
    if "meta_json" not in arrays:
        return {}
    try:
        meta = json.loads(str(arrays["meta_json"].item()))
    except (ValueError, TypeError):
        notes.append("ignored an unreadable 'meta_json' array")
        return {}
    if not isinstance(meta, dict):
        notes.append("ignored a 'meta_json' that is not a JSON object")
        return {}
    out = {k: meta[k] for k in _RESTORED_META if k in meta}
    if not isinstance(out.get("notes", []), list):
        out["notes"] = [str(out["notes"])]
    return out
