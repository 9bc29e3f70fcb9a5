"""Confounders: strata z, their prior P(z), back-door adjustment and a within-stratum balanced batch sampler.

Age, sex and cardiovascular history drive both the ECG and the outcome (the back-door path x <- z -> y).
Two things break that shortcut:

- **Batches.** `StratifiedBalancedBatchSampler` composes every batch so that, inside each stratum, positives
  and negatives come in a fixed ratio: within a batch the label carries no information about z.
- **Prediction.** The model conditions on z; the adjusted prediction marginalises it,
  ``P(y | do(x)) = sum_z P(y | x, z) P(z)`` (`backdoor_adjust`) with P(z) from the training split
  (`estimate_prior`). Exact for discrete z that blocks every back-door path.

Strata are a mixed-radix code over the configured factors (age band x sex x history), see `StrataConfig`.
This module imports torch (the sampler is a `torch.utils.data.Sampler`); the strata and adjustment functions
are numpy only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .labels import HISTORY_FIELDS, SEXES
from .sampling import ResumableBatchSampler

logger = logging.getLogger(__name__)

__all__ = [
    "StrataConfig",
    "StratifiedBalancedBatchSampler",
    "adjust_prevalence",
    "assign_strata",
    "backdoor_adjust",
    "estimate_prior",
    "num_strata",
    "strata_from_columns",
    "strata_names",
]

HISTORY_MODES = ("none", "any", "each")
UNKNOWN_MODES = ("separate", "error")


@dataclass
class StrataConfig:
    """How confounders are binned into strata z."""

    age_bands_years: list[float] = field(
        default_factory=lambda: [0.0, 50.0, 65.0, 200.0],
        metadata={
            "help": "Increasing age band edges in years; band i is [edge_i, edge_i+1), ages outside the edges join "
            "the first / last band. Fewer than 3 edges (one band): age is not used."
        },
    )
    use_sex: bool = field(default=True, metadata={"help": "Split strata by sex (M / F)."})
    history: str = field(
        default="any",
        metadata={
            "help": "Cardiovascular history (hypertension, diabetes, prior_mi): 'none' ignores it, 'any' is one "
            "flag (any of the three present), 'each' uses the three flags separately."
        },
    )
    unknown: str = field(
        default="separate",
        metadata={
            "help": "Unknown values (age NaN, sex '', history -1): 'separate' gives each factor an extra "
            "'unknown' level, 'error' refuses them."
        },
    )

    def __post_init__(self) -> None:
        self.age_bands_years = [float(e) for e in self.age_bands_years]
        if len(self.age_bands_years) >= 2 and np.any(np.diff(self.age_bands_years) <= 0):
            raise ValueError(f"age_bands_years must be strictly increasing, got {self.age_bands_years}")
        if self.history not in HISTORY_MODES:
            raise ValueError(f"history must be one of {HISTORY_MODES}, got {self.history!r}")
        if self.unknown not in UNKNOWN_MODES:
            raise ValueError(f"unknown must be one of {UNKNOWN_MODES}, got {self.unknown!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _factors(config: StrataConfig) -> list[tuple[str, list[str]]]:
    """(factor, level names) in code order; the unknown level, when present, is the last level."""
    unknown = ["?"] if config.unknown == "separate" else []
    out = []
    edges = config.age_bands_years
    if len(edges) >= 3:
        inner = [f"age {lo:g}-{hi:g}" for lo, hi in zip(edges[1:-2], edges[2:-1], strict=True)]
        out.append(("age", [f"age<{edges[1]:g}", *inner, f"age>={edges[-2]:g}", *[f"age{u}" for u in unknown]]))
    if config.use_sex:
        out.append(("sex", [*SEXES, *[f"sex{u}" for u in unknown]]))
    if config.history == "any":
        out.append(("history", ["hx-", "hx+", *[f"hx{u}" for u in unknown]]))
    elif config.history == "each":
        for name in HISTORY_FIELDS:
            out.append((name, [f"{name}-", f"{name}+", *[f"{name}{u}" for u in unknown]]))
    return out


def num_strata(config: StrataConfig) -> int:
    """Number of strata Z (the size of the model's stratum embedding and of P(z))."""
    return math.prod(len(levels) for _, levels in _factors(config))


def strata_names(config: StrataConfig) -> list[str]:
    """Readable name of each stratum code 0..Z-1, e.g. ``"age 50-65|F|hx+"`` (``"all"`` with no factors)."""
    names = [""]
    for _, levels in _factors(config):
        names = [f"{prefix}|{level}" if prefix else level for prefix in names for level in levels]
    return names if names != [""] else ["all"]


def assign_strata(
    age: Sequence[float] | np.ndarray,
    sex: Sequence[str] | np.ndarray,
    hypertension: Sequence[int] | np.ndarray,
    diabetes: Sequence[int] | np.ndarray,
    prior_mi: Sequence[int] | np.ndarray,
    config: StrataConfig,
) -> np.ndarray:
    """Stratum code of each sample.

    Args:
        age: (N,) age in years, NaN unknown.
        sex: (N,) "M", "F" or "" (unknown).
        hypertension / diabetes / prior_mi: (N,) 1 yes, 0 no, -1 unknown.
        config: the binning.

    Returns:
        (N,) int64 codes in 0..num_strata(config)-1; names by `strata_names`.

    Raises:
        ValueError: on mismatched lengths, invalid values, or unknown values with ``unknown="error"``.
    """
    age = np.asarray(age, dtype=np.float64)
    sex = np.asarray(sex, dtype=str)
    history = {
        name: np.asarray(v, dtype=np.int64)
        for name, v in zip(HISTORY_FIELDS, (hypertension, diabetes, prior_mi), strict=True)
    }
    n = len(age)
    for name, values in {"sex": sex, **history}.items():
        if values.shape != (n,):
            raise ValueError(f"{name} has shape {values.shape}, expected ({n},) like age")
    if bad := sorted(set(sex.tolist()) - {"", *SEXES}):
        raise ValueError(f"sex must be one of {SEXES} or '' (unknown), got {bad}")
    for name, values in history.items():
        if not np.isin(values, (-1, 0, 1)).all():
            raise ValueError(f"{name} must be -1 (unknown), 0 or 1, got {sorted(set(values.tolist()) - {-1, 0, 1})}")

    codes = np.zeros(n, dtype=np.int64)
    for factor, levels in _factors(config):
        if factor == "age":
            inner_edges = np.asarray(config.age_bands_years[1:-1])
            level = np.searchsorted(inner_edges, age, side="right")  # [e_i, e_i+1)
            missing = np.isnan(age)
        elif factor == "sex":
            level = np.where(sex == SEXES[1], 1, 0)
            missing = sex == ""
        else:
            fields = list(HISTORY_FIELDS) if factor == "history" else [factor]
            stacked = np.stack([history[f] for f in fields])  # (F, N)
            level = (stacked == 1).any(axis=0).astype(np.int64)
            missing = (level == 0) & (stacked == -1).any(axis=0)  # "no" is only sure when every field is known
        if missing.any():
            if config.unknown == "error":
                raise ValueError(
                    f"{int(missing.sum())} samples have unknown {factor} and StrataConfig.unknown='error'"
                )
            level = np.where(missing, len(levels) - 1, level)
        codes = codes * len(levels) + level
    return codes


def strata_from_columns(columns: Mapping[str, Sequence], config: StrataConfig) -> np.ndarray:
    """`assign_strata` on a table with our data-set columns (age, sex, hypertension, diabetes, prior_mi).

    Works with a `datasets.Dataset` (``ds["age"]`` is a column) or a dict of arrays.
    """
    missing = [c for c in ("age", "sex", *HISTORY_FIELDS) if c not in getattr(columns, "column_names", columns)]
    if missing:
        raise ValueError(f"the data has no column(s) {missing} needed for confounder strata")
    return assign_strata(
        np.asarray(columns["age"], dtype=np.float64),
        columns["sex"],
        columns["hypertension"],
        columns["diabetes"],
        columns["prior_mi"],
        config,
    )


def estimate_prior(strata: Sequence[int] | np.ndarray, num_strata: int, smoothing: float = 1.0) -> np.ndarray:
    """P(z) on the training split with additive (Laplace) smoothing: ``(count_z + s) / (N + s Z)``.

    Smoothing keeps every stratum's prior positive, so an empty training stratum still gets a small weight in
    `backdoor_adjust` rather than vanishing. Returns (Z,) float64 summing to 1.
    """
    strata = np.asarray(strata, dtype=np.int64)
    if num_strata < 1:
        raise ValueError(f"num_strata must be >= 1, got {num_strata}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if len(strata) and (strata.min() < 0 or strata.max() >= num_strata):
        raise ValueError(f"strata codes must lie in 0..{num_strata - 1}, got {strata.min()}..{strata.max()}")
    counts = np.bincount(strata, minlength=num_strata).astype(np.float64) + smoothing
    if counts.sum() == 0:
        raise ValueError("cannot estimate P(z) from no samples without smoothing")
    return counts / counts.sum()


def backdoor_adjust(prob_given_z: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Back-door adjusted probability ``P(y | do(x)) = sum_z P(y | x, z) P(z)``.

    Args:
        prob_given_z: (N, Z) P(y=1 | x_n, z) from running the model once per stratum z.
        prior: (Z,) P(z) from `estimate_prior`.

    Returns:
        (N,) adjusted probabilities.
    """
    prob_given_z = np.asarray(prob_given_z, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if prob_given_z.ndim != 2 or prior.shape != (prob_given_z.shape[1],):
        raise ValueError(f"need prob_given_z (N, Z) and prior (Z,), got {prob_given_z.shape} and {prior.shape}")
    if (prior < 0).any() or not np.isclose(prior.sum(), 1.0, atol=1e-6):
        raise ValueError(f"prior must be non-negative and sum to 1, sums to {prior.sum():.6g}")
    if np.nanmin(prob_given_z, initial=0.0) < 0 or np.nanmax(prob_given_z, initial=1.0) > 1:
        raise ValueError("prob_given_z must hold probabilities in [0, 1] (apply the sigmoid to logits first)")
    return prob_given_z @ prior


def adjust_prevalence(prob: np.ndarray, from_prevalence: float, to_prevalence: float) -> np.ndarray:
    """Move probabilities learnt at one class prevalence to another (prior-shift correction of the odds).

    The balanced sampler trains at ``from_prevalence = p / (1 + r)`` positives (0.5 for pairs); a deployed
    model should report probabilities at the population's prevalence. Odds are scaled by
    ``[to / (1 - to)] / [from / (1 - from)]``; rankings (AUROC) are unchanged, calibration is restored.
    """
    for name, value in (("from_prevalence", from_prevalence), ("to_prevalence", to_prevalence)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
    prob = np.asarray(prob, dtype=np.float64)
    ratio = (to_prevalence / (1 - to_prevalence)) / (from_prevalence / (1 - from_prevalence))
    return prob * ratio / (prob * ratio + (1 - prob))


def _draw(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` items from `pool`: whole shuffled passes, then part of one more (oversampling without bias)."""
    passes = [rng.permutation(pool) for _ in range(-(-count // len(pool)))]
    return np.concatenate(passes)[:count] if passes else pool[:0]


class StratifiedBalancedBatchSampler(ResumableBatchSampler):
    """Batches in which positives and negatives are balanced inside every confounder stratum.

    Scheme, for one epoch (seeded by ``(seed, epoch)``, identical on every rank):

    1. Samples with a label other than 0 / 1 (unknown triage) are left out. Each stratum s with both classes
       gets ``m_s = max(1, round(n_s / (1 + r)))`` *units*, r = `negatives_per_positive`; a unit is one
       positive and r negatives of that stratum, drawn by whole shuffled passes over the stratum's positives
       (resp. negatives), so the rarer class is oversampled without repeats until every sample was used.
       Hence an epoch holds about as many samples as the kept data, each stratum contributes about its own
       size (the batch's stratum mix follows P(z)), and the class ratio is 1 : r inside every stratum.
    2. Strata holding one class only cannot be balanced: with ``single_class_strata="drop"`` (default) they
       are left out (logged, listed in `excluded_strata`); with ``"keep"`` they form units of 1 + r samples
       of their own (their z -> y association is then kept, use only when that loss of data hurts more).
    3. Units are shuffled and cut into batches of ``batch_size / (1 + r)`` units, and each batch is shuffled.
       Every full batch therefore has exactly r negatives per positive in every stratum: the within-batch
       correlation of stratum and label is zero. The last batch is smaller unless `drop_last`.
    4. DDP: batch b goes to rank ``b % num_replicas``. With `drop_last` every rank gets
       ``floor(B / num_replicas)`` distinct batches; otherwise ``ceil(B / num_replicas)``, padded by repeating
       the first batches of the epoch (as `DistributedSampler` pads).

    Resume: `state_dict` holds the epoch and the number of batches of it already consumed; after
    `load_state_dict`, iteration continues exactly there. `set_epoch` with a new epoch restarts at its first
    batch (with the current epoch it keeps the position, so a resumed loop may call it again). A DataLoader
    prefetches batches ahead of the training step, so the loop should pass the count it actually consumed:
    ``sampler.state_dict(batches_consumed=step_in_epoch)``.

    Use as ``DataLoader(dataset, batch_sampler=sampler)``. With accelerate either pass ``num_replicas=1`` and
    let ``accelerator.prepare`` shard the batches (the same round-robin), or keep the loader out of
    ``prepare`` and pass ``num_replicas=accelerator.num_processes, rank=accelerator.process_index``. Call
    ``set_epoch(epoch)`` on the sampler *and* on a prepared loader: the loader re-applies its own epoch
    counter at each pass (single process), and its multi-process shard does not forward `set_epoch`.

    Args:
        labels: (N,) triage labels of the whole data set (1 positive, 0 negative, anything else unused).
        strata: (N,) stratum codes.
        batch_size: samples per batch, a multiple of ``1 + negatives_per_positive``.
        indices: subset of 0..N-1 to sample from (a DRIL stage); default all. Yielded indices are into N.
        negatives_per_positive: r, negatives per positive inside each stratum (1 = balanced pairs).
        seed: base seed; the epoch's plan depends on (seed, epoch) only.
        num_replicas / rank: DDP world size and this process's rank.
        drop_last: drop the last, smaller batch and the batches that do not divide among ranks.
        single_class_strata: ``"drop"`` or ``"keep"`` (see 2.).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        strata: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        negatives_per_positive: int = 1,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        single_class_strata: str = "drop",
    ):
        labels = np.asarray(labels)
        strata = np.asarray(strata, dtype=np.int64)
        if labels.shape != strata.shape or labels.ndim != 1:
            raise ValueError(f"labels and strata must be (N,) alike, got {labels.shape} and {strata.shape}")
        unit = 1 + negatives_per_positive
        if negatives_per_positive < 1 or batch_size < unit or batch_size % unit:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of 1 + negatives_per_positive ({unit})"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in 0..num_replicas-1, got rank {rank} of {num_replicas}")
        if single_class_strata not in ("drop", "keep"):
            raise ValueError(f"single_class_strata must be 'drop' or 'keep', got {single_class_strata!r}")
        indices = np.arange(len(labels)) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
        if len(indices) and (indices[0] < 0 or indices[-1] >= len(labels)):
            raise ValueError(f"indices must lie in 0..{len(labels) - 1}")
        self.batch_size, self.negatives_per_positive, self.seed = batch_size, negatives_per_positive, seed
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch, self._position = 0, 0
        # (positives, negatives, units) per kept stratum, in stratum order; the random part is in _plan
        self._groups: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.excluded_strata: list[int] = []
        for s in np.unique(strata[indices]):
            members = indices[strata[indices] == s]
            pos, neg = members[labels[members] == 1], members[labels[members] == 0]
            units = max(1, round((len(pos) + len(neg)) / unit))
            if len(pos) and len(neg):
                self._groups.append((pos, neg, units))
            elif single_class_strata == "keep" and len(pos) + len(neg):
                self._groups.append((np.concatenate([pos, neg]), members[:0], units))
            else:
                self.excluded_strata.append(int(s))
        if self.excluded_strata:
            logger.warning("strata %s hold one class only (or no labels) and are left out", self.excluded_strata)
        n_units = sum(units for *_, units in self._groups)
        per_batch = batch_size // unit
        n_batches = n_units // per_batch if drop_last else -(-n_units // per_batch)
        self._batches_per_rank = n_batches // num_replicas if drop_last else -(-n_batches // num_replicas)
        if self._batches_per_rank == 0:
            raise ValueError(f"{n_units} units of {unit} samples make no batch of {batch_size} per rank")

    def _epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        """All ranks' batches of one epoch (see the class docstring, steps 1-3)."""
        r = self.negatives_per_positive
        units = []
        for pos, neg, m in self._groups:
            if len(neg):
                units.append(np.column_stack([_draw(pos, m, rng), _draw(neg, m * r, rng).reshape(m, r)]))
            else:  # a kept single-class stratum
                units.append(_draw(pos, m * (1 + r), rng).reshape(m, 1 + r))
        units = np.concatenate(units)[rng.permutation(sum(len(u) for u in units))]  # (U, 1 + r)
        per_batch = self.batch_size // (1 + r)
        return [rng.permutation(units[i : i + per_batch].ravel()).tolist() for i in range(0, len(units), per_batch)]
