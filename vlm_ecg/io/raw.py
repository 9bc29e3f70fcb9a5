"""`RawEcg`: a recording as the file holds it, before lead mapping and validation.

Every format reader returns a `RawEcg` (leads in the file's order and spelling, samples already in mV).
`read_ecg` turns it into a validated `Ecg`; `inspect_ecg` examines it without refusing anything, so that
`vlm-ecg info` can list every problem of a bad file instead of stopping at the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..ecg import Ecg
from ..errors import EcgFormatError, EcgSignalError

# Factors that turn a physical unit into millivolts. Keys are lower-cased, spaces removed. Both micro signs
# (U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU) occur in real headers.
_UNIT_TO_MV: dict[str, float] = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "\u00b5v": 1e-3,
    "\u03bcv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}


_FS_PLACES = {
    "csv": "no time column and no '# fs: ...' comment line",
    "npz": "no 'fs' array",
}


def unit_to_mv(unit: str | None, source: object, lead: str = "", default: str = "mV") -> float:
    """The factor that converts samples in `unit` to millivolts.

    A missing or empty unit means `default`: the WFDB specification makes "mV" the default physical unit,
    and CSV / NPZ files are documented to be in mV unless they say otherwise.

    Raises:
        EcgFormatError: the unit is not a voltage we know (e.g. "mmHg", "adu"), naming the lead.
    """
    key = re.sub(r"\s+", "", str(unit if unit not in (None, "") else default)).lower()
    if key in _UNIT_TO_MV:
        return _UNIT_TO_MV[key]
    where = f"lead {lead} has" if lead else "samples have"
    raise EcgFormatError(source, f"{where} unit {unit!r}, not a voltage (expected mV, uV or V)")


@dataclass
class RawEcg:
    """A recording as read from a file: samples in mV but leads as the file names and orders them.

    Attributes:
        signal: float64 (n_leads, n) in millivolts; may contain NaN (missing samples) and inf.
        leads: lead names as the file spells them, one per row of `signal`.
        fs: sampling rate in Hz, None when the file does not say and none was given.
        meta: ``id``, ``source`` (the path as given), ``format`` ("wfdb", "csv", "npz"), ``notes`` (what the
            reader did, e.g. a unit conversion) and format-specific facts (header comments, age, sex, ...).
    """

    signal: np.ndarray
    leads: list[str]
    fs: float | None
    meta: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "<array>"))

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    def to_ecg(self, extra_leads: Literal["error", "drop"] = "error") -> Ecg:
        """Map leads, derive missing limb leads and validate (see `Ecg.from_leads`).

        Raises:
            EcgSignalError: no sampling rate is known.
            EcgLeadError, EcgSignalError: as `Ecg.from_leads`.
        """
        if self.fs is None:
            where = _FS_PLACES.get(self.meta.get("format", ""), "the file states none")
            raise EcgSignalError(self.source, f"no sampling rate: {where}, and no fs= was given")
        return Ecg.from_leads(self.signal, self.leads, self.fs, dict(self.meta), extra_leads=extra_leads)


def check_fs_argument(fs: float | None, file_fs: float | None, source: object, what: str) -> float | None:
    """Reconcile an fs= argument with the rate the file states (`what` says where it came from).

    Raises:
        EcgSignalError: the argument is not a positive number, or disagrees with the file by more than 0.5 %.
    """
    if fs is not None:
        try:
            value = float(fs)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            raise EcgSignalError(source, f"fs={fs!r} is not a positive sampling rate in Hz")
        if file_fs is not None and abs(value - file_fs) > 0.005 * file_fs:
            raise EcgSignalError(source, f"fs={value:g} Hz was given but {what} says {file_fs:g} Hz")
        return value if file_fs is None else file_fs
    return file_fs
