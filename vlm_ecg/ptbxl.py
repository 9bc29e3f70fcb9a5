"""PTB-XL (Wagner et al. 2020): records plus a documented *proxy* mapping of SCP-ECG statements to our labels.

PTB-XL has no angiography. Its cardiologists' statements name an infarct or ischaemia *territory*, and
the territory stands in for the culprit vessel by the usual coronary anatomy:

| statements | territory | culprit |
|---|---|---|
| IMI, ILMI, IPMI, IPLMI, INJIN, INJIL, ISCIN, ISCIL | inferior (-lateral / -posterior) | RCA |
| AMI, ASMI, ALMI, INJAS, INJAL, ISCAS, ISCAN, ISCAL | anterior / septal / anterolateral | LAD |
| LMI, PMI, INJLA, ISCLA | lateral / posterior | LCx |

Rules (`PtbxlMapping` holds the tunable ones):

* A statement counts when its likelihood is 0 (PTB-XL: stated without a likelihood, as form and rhythm
  statements are) or at least ``min_likelihood``. Rankings below use the likelihood as given.
* **Infarction and injury** statements (PTB-XL's MI class, INJ* "subendocardial injury" included) are the
  positive class: triage 1, culprit from the territory. Combined territories resolve to the dominant
  wall: inferolateral / inferoposterior(-lateral) -> RCA (a dominant RCA supplies the inferior wall and,
  through its posterolateral branches, the lateral extension), anterolateral -> LAD (diagonals).
  If only old infarcts are documented (``infarction_stadium`` "Stadium III" and nothing more acute) the
  triage is ``old_mi_triage`` (default 0: nothing to open now) and ``prior_mi`` becomes 1.
* **Ischaemia** statements (ISC*, ISC_ without territory included) without an infarct statement get
  triage ``ischaemia_triage`` (default -1, unknown: ST-T ischaemia may or may not hide an occlusion);
  when that is 1 the culprit comes from the territory.
* Several vessels: the highest likelihood wins; a tie leaves the culprit unknown (None).
* Everything else (NORM, conduction, hypertrophy, other ST-T statements, rhythm) is negative: triage 0,
  culprit "none".
* ``subtype`` is the deciding statement (e.g. "IMI", "IMI (old)") or, for negatives, the diagnostic
  statement with the highest likelihood (e.g. "NORM", "NST_"). Stenosis is always unknown (NaN).
* Confounders: age (PTB-XL writes 300 for "over 89": read as 90 with ``extra["age_over_89"]``), sex
  (0 male, 1 female); hypertension and diabetes unknown.
"""

from __future__ import annotations

import ast
import logging
import math
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EcgFormatError
from .io import read_ecg
from .labels import Confounders, Labels, Record

logger = logging.getLogger(__name__)

VESSEL_BY_STATEMENT: dict[str, str] = {
    **dict.fromkeys(("IMI", "ILMI", "IPMI", "IPLMI", "INJIN", "INJIL", "ISCIN", "ISCIL"), "RCA"),
    **dict.fromkeys(("AMI", "ASMI", "ALMI", "INJAS", "INJAL", "ISCAS", "ISCAN", "ISCAL"), "LAD"),
    **dict.fromkeys(("LMI", "PMI", "INJLA", "ISCLA"), "LCx"),
}
INFARCT_STATEMENTS: frozenset[str] = frozenset(
    ("IMI", "ILMI", "IPMI", "IPLMI", "AMI", "ASMI", "ALMI", "LMI", "PMI", "INJIN", "INJIL", "INJAS", "INJAL", "INJLA")
)
ISCHAEMIA_STATEMENTS: frozenset[str] = frozenset(("ISCIN", "ISCIL", "ISCAS", "ISCAN", "ISCAL", "ISCLA", "ISC_"))
AGE_OVER_89 = 300  # PTB-XL's code for ages above 89 (de-identification)


@dataclass
class PtbxlMapping:
    """Tunable parts of the SCP-statement -> label proxy (the fixed parts are in the module docstring)."""

    min_likelihood: float = field(
        default=0.0,
        metadata={"help": "statements with a stated likelihood (1-100) below this are ignored; 0 keeps all"},
    )
    ischaemia_triage: int = field(
        default=-1, metadata={"help": "triage of records whose strongest statement is ischaemia: -1, 0 or 1"}
    )
    old_mi_triage: int = field(
        default=0, metadata={"help": "triage of records whose only infarcts are documented as old: -1, 0 or 1"}
    )

    def __post_init__(self) -> None:
        if not 0 <= self.min_likelihood <= 100:
            raise ValueError(f"min_likelihood must lie in [0, 100], got {self.min_likelihood}")
        for name in ("ischaemia_triage", "old_mi_triage"):
            if getattr(self, name) not in (-1, 0, 1):
                raise ValueError(f"{name} must be -1, 0 or 1, got {getattr(self, name)!r}")


def map_scp_codes(
    scp_codes: dict[str, float],
    *,
    infarction_stadium: Iterable[object] = (),
    diagnostic_statements: Collection[str] | None = None,
    mapping: PtbxlMapping | None = None,
) -> Labels:
    """Labels of one PTB-XL record from its ``scp_codes`` (rules in the module docstring).

    Args:
        scp_codes: statement -> likelihood (0-100), as in ``ptbxl_database.csv``.
        infarction_stadium: the record's ``infarction_stadium1`` / ``infarction_stadium2`` values.
        diagnostic_statements: codes flagged diagnostic in ``scp_statements.csv``, to pick a negative's
            subtype; None considers every statement.
        mapping: the tunable rules; default `PtbxlMapping()`.
    """
    mapping = mapping or PtbxlMapping()
    counted = {c: float(v) for c, v in scp_codes.items() if float(v) == 0 or float(v) >= mapping.min_likelihood}
    infarcts = {c: v for c, v in counted.items() if c in INFARCT_STATEMENTS}
    ischaemia = {c: v for c, v in counted.items() if c in ISCHAEMIA_STATEMENTS}
    nan3 = (math.nan,) * 3
    if infarcts:
        old = _only_old_infarcts(infarction_stadium)
        triage, evidence = (mapping.old_mi_triage if old else 1), infarcts
        subtype_suffix = " (old)" if old else ""
    elif ischaemia:
        triage, evidence, subtype_suffix = mapping.ischaemia_triage, ischaemia, ""
    else:
        pool = [c for c in counted if diagnostic_statements is None or c in diagnostic_statements] or list(counted)
        subtype = max(pool, key=lambda c: counted[c], default="")  # ties: PTB-XL's own statement order
        return Labels(triage=0, culprit="none", stenosis=nan3, subtype=subtype)
    top = max(evidence, key=lambda c: evidence[c])
    if triage == 1:
        culprit = _vote(evidence)
    else:
        culprit = "none" if triage == 0 else None
    return Labels(triage=triage, culprit=culprit, stenosis=nan3, subtype=top + subtype_suffix)


def ptbxl_confounders(row: dict) -> Confounders:
    """Age and sex of one ``ptbxl_database.csv`` row (a dict or pandas Series); history unknown."""
    extra: dict = {}
    age = _number(row.get("age"))
    if age == AGE_OVER_89:
        age, extra["age_over_89"] = 90.0, True
    sex = {0.0: "M", 1.0: "F"}.get(_number(row.get("sex")), "")
    for key in ("height", "weight"):
        value = _number(row.get(key))
        if value == value:
            extra[f"{key}_{'cm' if key == 'height' else 'kg'}"] = value
    stadium = (row.get("infarction_stadium1"), row.get("infarction_stadium2"))
    scp = row.get("scp_codes") or {}
    prior_mi = 1 if _only_old_infarcts(stadium) and any(c in INFARCT_STATEMENTS for c in scp) else -1
    return Confounders(age_years=age, sex=sex, prior_mi=prior_mi, extra=extra)


def read_ptbxl_table(database_csv: str | os.PathLike):
    """``ptbxl_database.csv`` as a pandas DataFrame indexed by ``ecg_id``, ``scp_codes`` parsed into dicts.

    Raises:
        EcgFormatError: the file is missing, lacks PTB-XL's columns, or holds a malformed ``scp_codes``.
    """
    import pandas as pd

    path = Path(database_csv)
    if not path.is_file():
        raise EcgFormatError(path, "file not found (a PTB-XL folder holds ptbxl_database.csv)")
    try:
        table = pd.read_csv(path, index_col="ecg_id")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise EcgFormatError(path, f"not a PTB-XL database table ({exc})") from None
    missing = {"scp_codes", "age", "sex", "strat_fold"} - set(table.columns)
    if missing:
        raise EcgFormatError(path, f"not a PTB-XL database table: columns {', '.join(sorted(missing))} missing")
    parsed = []
    for ecg_id, text in table["scp_codes"].items():
        try:
            value = ast.literal_eval(text)  # literals only: never evaluates code
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, dict):
            raise EcgFormatError(path, f"ecg_id {ecg_id}: scp_codes {text!r} is not a {{code: likelihood}} dict")
        parsed.append(value)
    table["scp_codes"] = parsed
    return table


def iter_ptbxl(
    root: str | os.PathLike,
    sampling_rate_hz: int = 100,
    ids: Iterable[int] | None = None,
    folds: Iterable[int] | None = None,
    mapping: PtbxlMapping | None = None,
) -> Iterator[Record]:
    """Yield PTB-XL `Record`s (ECG at the file's rate, labels by the proxy mapping, confounders).

    Args:
        root: the PTB-XL folder (``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/``, ``records500/``).
        sampling_rate_hz: 100 reads ``filename_lr``, 500 reads ``filename_hr``.
        ids: ``ecg_id`` values to read (in this order); None reads all rows.
        folds: ``strat_fold`` values to keep (1-10; 9 and 10 are PTB-XL's validation and test folds).
        mapping: label rules; default `PtbxlMapping()`.

    Raises:
        ValueError: a sampling rate other than 100 or 500.
        EcgFormatError: missing tables, unknown ids, or a missing / unreadable record file (named).
    """
    from tqdm.auto import tqdm

    if sampling_rate_hz not in (100, 500):
        raise ValueError(f"PTB-XL has records at 100 and 500 Hz, not {sampling_rate_hz!r}")
    root = Path(root)
    table = read_ptbxl_table(root / "ptbxl_database.csv")
    diagnostic = _diagnostic_statements(root / "scp_statements.csv")
    if ids is not None:
        ids = [int(i) for i in ids]
        unknown = [i for i in ids if i not in table.index]
        if unknown:
            raise EcgFormatError(root / "ptbxl_database.csv", f"ecg_id {unknown[:10]} not in the table")
        table = table.loc[ids]
    if folds is not None:
        table = table[table["strat_fold"].isin(list(folds))]
    column = "filename_lr" if sampling_rate_hz == 100 else "filename_hr"
    for ecg_id, row in tqdm(table.iterrows(), total=len(table), desc="PTB-XL", unit="record", disable=None):
        record_path = root / str(row[column])
        if not Path(f"{record_path}.hea").is_file():
            raise EcgFormatError(f"{record_path}.hea", f"PTB-XL record of ecg_id {ecg_id} ({column}) not found")
        ecg = read_ecg(record_path)
        ecg.meta.update(
            id=f"ptbxl_{int(ecg_id):05d}",
            dataset="ptbxl",
            ecg_id=int(ecg_id),
            strat_fold=int(row["strat_fold"]),
            scp_codes=dict(row["scp_codes"]),
        )
        labels = map_scp_codes(
            row["scp_codes"],
            infarction_stadium=(row.get("infarction_stadium1"), row.get("infarction_stadium2")),
            diagnostic_statements=diagnostic,
            mapping=mapping,
        )
        yield Record(ecg=ecg, labels=labels, confounders=ptbxl_confounders(row))


def read_ptbxl(
    root: str | os.PathLike,
    sampling_rate_hz: int = 100,
    ids: Iterable[int] | None = None,
    folds: Iterable[int] | None = None,
    mapping: PtbxlMapping | None = None,
) -> list[Record]:
    """All records `iter_ptbxl` yields, as a list (arguments and errors as there)."""
    return list(iter_ptbxl(root, sampling_rate_hz, ids=ids, folds=folds, mapping=mapping))


# ---------------------------------------------------------------------------------------------- helpers
def _vote(evidence: dict[str, float]) -> str | None:
    """The vessel of the most likely territorial statement; None on a tie between vessels or no territory."""
    best: dict[str, float] = {}
    for code, likelihood in evidence.items():
        if code in VESSEL_BY_STATEMENT:
            vessel = VESSEL_BY_STATEMENT[code]
            best[vessel] = max(best.get(vessel, -1.0), likelihood)
    if not best:
        return None
    top = max(best.values())
    winners = [v for v, score in best.items() if score == top]
    return winners[0] if len(winners) == 1 else None


def _only_old_infarcts(stadium: Iterable[object]) -> bool:
    stated = [str(s).strip() for s in stadium if isinstance(s, str) and s.strip() and s.strip() != "unknown"]
    return bool(stated) and all(s == "Stadium III" for s in stated)


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _diagnostic_statements(path: Path) -> frozenset[str]:
    import pandas as pd

    if not path.is_file():
        raise EcgFormatError(path, "file not found (a PTB-XL folder holds scp_statements.csv)")
    try:
        table = pd.read_csv(path, index_col=0)
        return frozenset(str(c) for c in table.index[table["diagnostic"] == 1])
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise EcgFormatError(path, f"not PTB-XL's SCP statement table ({exc})") from None
