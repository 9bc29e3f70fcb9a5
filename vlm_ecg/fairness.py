"""Per-stratum error rates and worst-group gaps: does the triage model miss occlusions more in some patients?

For each confounder stratum (age band x sex x history, `vlm_ecg.causal`) the true-positive rate
(sensitivity) and false-positive rate (1 - specificity) at a decision threshold, grouped with fairlearn's
`MetricFrame`; the gaps are the spread of those rates over the strata that hold enough samples to estimate
them. fairlearn's own `true_positive_rate` returns 0 for a group without positives; we return NaN there,
and leave such groups out of the gaps instead of reporting a spurious 100 % gap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["subgroup_metrics"]

NAN = float("nan")


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    pos = y_true == 1
    return float(y_pred[pos].mean()) if pos.any() else NAN


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    neg = y_true == 0
    return float(y_pred[neg].mean()) if neg.any() else NAN


def _n_pos(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return int((y_true == 1).sum())


def _n_neg(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return int((y_true == 0).sum())


def _gap(rates: dict[str, float], counts: dict[str, int], min_count: int, worst: str) -> dict:
    eligible = {g: r for g, r in rates.items() if counts[g] >= min_count and not np.isnan(r)}
    if len(eligible) < 2:
        return {
            "gap": NAN,
            "worst_group": None,
            "groups": len(eligible),
            "reason": f"fewer than 2 strata with >= {min_count} samples",
        }
    pick = min if worst == "min" else max
    worst_group = pick(eligible, key=eligible.get)
    return {
        "gap": float(max(eligible.values()) - min(eligible.values())),
        "worst_group": worst_group,
        "worst_value": float(eligible[worst_group]),
        "groups": len(eligible),
    }


def subgroup_metrics(
    y_true: Sequence[int] | np.ndarray,
    prob: Sequence[float] | np.ndarray,
    strata: Sequence[int] | np.ndarray,
    threshold: float = 0.5,
    strata_names: Sequence[str] | None = None,
    min_count: int = 5,
) -> dict:
    """TPR / FPR per stratum at `threshold` and the worst-group gaps.

    Args:
        y_true: (N,) 0 / 1 (unknown labels removed).
        prob: (N,) predicted probabilities; ``prob >= threshold`` is a positive call.
        strata: (N,) stratum codes.
        strata_names: name of each code (default ``"z<code>"``).
        min_count: a stratum enters the TPR gap with at least this many positives, the FPR gap with at
            least this many negatives (rates from 2 samples are noise).

    Returns:
        {"threshold", "min_count", "groups": {name: {n, n_positive, n_negative, tpr, fpr, specificity}},
        "tpr_gap": {gap, worst_group (lowest TPR), worst_value, groups}, "fpr_gap": {... highest FPR},
        "equalized_odds_difference": max of the two gaps}.
    """
    from fairlearn.metrics import MetricFrame, count

    y = np.asarray(y_true, dtype=np.int64)
    called = (np.asarray(prob, dtype=np.float64) >= threshold).astype(np.int64)
    z = np.asarray(strata, dtype=np.int64)
    if not (y.shape == called.shape == z.shape) or y.ndim != 1:
        raise ValueError(f"y_true, prob and strata must be (N,) alike, got {y.shape}, {called.shape}, {z.shape}")
    if len(y) == 0:
        return {"threshold": float(threshold), "min_count": min_count, "groups": {}, "reason": "no samples"}
    if strata_names is not None and z.max() >= len(strata_names):
        raise ValueError(f"stratum code {z.max()} has no name among {len(strata_names)} strata_names")
    names = np.array([strata_names[c] if strata_names is not None else f"z{c}" for c in z], dtype=object)
    frame = MetricFrame(
        metrics={"n": count, "n_positive": _n_pos, "n_negative": _n_neg, "tpr": _tpr, "fpr": _fpr},
        y_true=y,
        y_pred=called,
        sensitive_features=names,
    )
    table = frame.by_group
    groups = {}
    for name, row in table.iterrows():
        groups[str(name)] = {
            "n": int(row["n"]),
            "n_positive": int(row["n_positive"]),
            "n_negative": int(row["n_negative"]),
            "tpr": float(row["tpr"]),
            "fpr": float(row["fpr"]),
            "specificity": 1.0 - float(row["fpr"]),
        }
    tpr_gap = _gap(
        {g: v["tpr"] for g, v in groups.items()}, {g: v["n_positive"] for g, v in groups.items()}, min_count, "min"
    )
    fpr_gap = _gap(
        {g: v["fpr"] for g, v in groups.items()}, {g: v["n_negative"] for g, v in groups.items()}, min_count, "max"
    )
    gaps = [g["gap"] for g in (tpr_gap, fpr_gap) if not np.isnan(g["gap"])]
    return {
        "threshold": float(threshold),
        "min_count": min_count,
        "groups": groups,
        "tpr_gap": tpr_gap,
        "fpr_gap": fpr_gap,
        "equalized_odds_difference": max(gaps) if gaps else NAN,
    }
