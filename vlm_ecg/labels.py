"""The label schema shared by readers, the synthetic cohort, datasets, the model and the reports.

Stage 1 is triage (does this patient need angiography now?); stage 2 is the culprit vessel and the
stenosis fraction of each of the three main coronary arteries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .ecg import Ecg

CULPRITS: tuple[str, ...] = ("none", "LAD", "LCx", "RCA")
VESSELS: tuple[str, ...] = ("LAD", "LCx", "RCA")
STENOSIS_THRESHOLD = 0.7  # a culprit lesion narrows its vessel by more than 70 %
SEXES: tuple[str, ...] = ("M", "F")
HISTORY_FIELDS: tuple[str, ...] = ("hypertension", "diabetes", "prior_mi")


@dataclass
class Labels:
    """Angiography-derived targets of one ECG.

    Attributes:
        triage: 1 if the patient needs angiography now (an occluded culprit vessel), 0 if not, -1 unknown.
        culprit: one of `CULPRITS`, or None when unknown.
        stenosis: fraction of luminal narrowing per vessel in `VESSELS` order, each in [0, 1] or NaN (unknown).
        subtype: free-text subtype of the record (synthetic subtype, or the source statement for real data).
    """

    triage: int = -1
    culprit: str | None = None
    stenosis: tuple[float, float, float] = (float("nan"),) * 3
    subtype: str = ""

    def __post_init__(self) -> None:
        if self.triage not in (-1, 0, 1):
            raise ValueError(f"triage must be -1, 0 or 1, got {self.triage!r}")
        if self.culprit is not None and self.culprit not in CULPRITS:
            raise ValueError(f"culprit must be one of {CULPRITS} or None, got {self.culprit!r}")
        st = tuple(float(s) for s in self.stenosis)
        if len(st) != len(VESSELS):
            raise ValueError(f"stenosis needs {len(VESSELS)} values ({', '.join(VESSELS)}), got {len(st)}")
        if any(not np.isnan(s) and not 0.0 <= s <= 1.0 for s in st):
            raise ValueError(f"stenosis fractions must lie in [0, 1] (or be NaN), got {st}")
        self.stenosis = st

    @property
    def culprit_index(self) -> int:
        """Index into `CULPRITS`, -100 (the ignore index of cross-entropy) when unknown."""
        return CULPRITS.index(self.culprit) if self.culprit is not None else -100

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Confounders:
    """Patient factors that drive both the ECG and the outcome (the back-door path).

    Attributes:
        age_years: age in years, NaN when unknown.
        sex: "M", "F" or "" when unknown.
        hypertension / diabetes / prior_mi: 1 yes, 0 no, -1 unknown.
    """

    age_years: float = float("nan")
    sex: str = ""
    hypertension: int = -1
    diabetes: int = -1
    prior_mi: int = -1
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sex not in ("", *SEXES):
            raise ValueError(f"sex must be one of {SEXES} or '' (unknown), got {self.sex!r}")
        for name in HISTORY_FIELDS:
            if getattr(self, name) not in (-1, 0, 1):
                raise ValueError(f"{name} must be -1 (unknown), 0 or 1, got {getattr(self, name)!r}")
        self.age_years = float(self.age_years)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(eq=False)
class Record:
    """One labelled example: the ECG, its targets and its confounders (what readers and the generator yield)."""

    ecg: Ecg
    labels: Labels = field(default_factory=Labels)
    confounders: Confounders = field(default_factory=Confounders)

    @property
    def id(self) -> str:
        return str(self.ecg.meta.get("id", self.ecg.source))
