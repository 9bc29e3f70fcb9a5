"""Evaluation metrics of the two stages: triage, culprit vessel, stenosis; one-stop `evaluate_predictions`.

Everything returns plain JSON-ready dicts (Python floats / ints / lists / str). A metric that is undefined on
the data (one class only, no positives with a known culprit...) is NaN with a ``"reason"`` beside it rather
than an exception, so a run on a small or skewed split still writes its report; `to_jsonable` turns NaN into
``null`` for strict JSON. Per-stratum (fairness) metrics live in `vlm_ecg.fairness`, plots in
`vlm_ecg.metric_plots`. numpy / scikit-learn only.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    auc,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from .labels import CULPRITS, STENOSIS_THRESHOLD, VESSELS

__all__ = [
    "bootstrap_ci",
    "calibration_bins",
    "culprit_metrics",
    "evaluate_predictions",
    "expected_calibration_error",
    "save_metrics",
    "sensitivity_at_specificity",
    "stenosis_metrics",
    "to_jsonable",
    "triage_metrics",
]

NAN = float("nan")
SPECIFICITY_TARGETS = (0.90, 0.95)


def _binary(y_true: Sequence | np.ndarray, score: Sequence | np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"{what}: labels and scores must be (N,) alike, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 or 1 (mask unknown labels first), got {sorted(set(y.tolist()))}")
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores hold {int((~np.isfinite(s)).sum())} NaN or infinite values")
    return y.astype(np.int64), s


def _one_class_reason(y: np.ndarray) -> str | None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return f"only one class present (positives {n_pos}, negatives {len(y) - n_pos})"
    return None


def sensitivity_at_specificity(y_true: np.ndarray, score: np.ndarray, specificity: float) -> tuple[float, float]:
    """Highest sensitivity among thresholds whose specificity is at least `specificity`.

    Reads the full ROC curve (no intermediate point dropped). Returns (sensitivity, threshold); a sample is
    called positive when ``score >= threshold``. NaNs when one class is missing.
    """
    y, s = _binary(y_true, score, "sensitivity_at_specificity")
    if _one_class_reason(y):
        return NAN, NAN
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    ok = np.flatnonzero(fpr <= 1.0 - specificity + 1e-12)
    best = ok[np.argmax(tpr[ok])]
    return float(tpr[best]), float(min(thresholds[best], np.finfo(np.float64).max))


def calibration_bins(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Reliability table on `n_bins` equal-width bins of [0, 1]: bin i holds ``i/B <= p < (i+1)/B`` (p = 1 in
    the last bin). Each row: bin edges, count, mean predicted probability, observed fraction of positives
    (NaN for empty bins)."""
    y, p = _binary(y_true, prob, "calibration_bins")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("calibration needs probabilities in [0, 1] (apply the sigmoid to logits first)")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        rows.append(
            {
                "bin_low": b / n_bins,
                "bin_high": (b + 1) / n_bins,
                "count": int(m.sum()),
                "mean_predicted": float(p[m].mean()) if m.any() else NAN,
                "fraction_positive": float(y[m].mean()) if m.any() else NAN,
            }
        )
    return rows


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """ECE: ``sum_b (n_b / N) |fraction_positive_b - mean_predicted_b|`` over the bins of `calibration_bins`."""
    rows = calibration_bins(y_true, prob, n_bins)
    n = sum(r["count"] for r in rows)
    return float(sum(r["count"] / n * abs(r["fraction_positive"] - r["mean_predicted"]) for r in rows if r["count"]))


def _ranking_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC and sensitivity at the target specificities from one ROC curve (bootstrap inner loop)."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out = {"auroc": float(auc(fpr, tpr)), "auprc": float(average_precision_score(y, s))}
    for spec in SPECIFICITY_TARGETS:
        out[_sens_key(spec)] = float(tpr[fpr <= 1.0 - spec + 1e-12].max())
    return out


def _sens_key(spec: float) -> str:
    return f"sensitivity_at_{round(spec * 100)}_specificity"


def bootstrap_ci(
    y_true: np.ndarray,
    score: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], Mapping[str, float]],
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of every value `statistic(y, score)` returns.

    Resamples N rows with replacement `n_boot` times (``np.random.default_rng(seed)``); resamples holding
    one class only are skipped (they are rare unless positives are very few). Returns {name: (low, high)};
    NaNs when fewer than 10 resamples were valid.
    """
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        yi = y_true[i]
        if yi.min() == yi.max():
            continue
        for name, value in statistic(yi, score[i]).items():
            draws.setdefault(name, []).append(value)
    alpha = (1.0 - ci) / 2
    return {
        name: (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if len(v) >= 10 else (NAN, NAN)
        for name, v in draws.items()
    }


def triage_metrics(
    y_true: Sequence[int] | np.ndarray,
    prob: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    n_boot: int = 1000,
    ci: float = 0.95,
    n_bins: int = 10,
    seed: int = 0,
) -> dict:
    """Stage-1 metrics of probabilities `prob` against binary `y_true` (unknown labels already removed).

    AUROC, AUPRC (average precision) and the sensitivity at 90 % / 95 % specificity, each with a bootstrap
    CI (``n_boot=0`` skips the CIs); Brier score; ECE (`expected_calibration_error`) with its reliability
    table; sensitivity / specificity / PPV / NPV when calling ``prob >= threshold`` positive.
    """
    y, p = _binary(y_true, prob, "triage_metrics")
    n_pos = int(y.sum())
    out: dict = {"n": len(y), "n_positive": n_pos, "prevalence": n_pos / len(y) if len(y) else NAN}
    if len(y) == 0:
        return {**out, "reason": "no samples with a known triage label"}
    reason = _one_class_reason(y)
    values = _ranking_metrics(y, p) if reason is None else {}
    cis = bootstrap_ci(y, p, _ranking_metrics, n_boot, ci, seed) if reason is None and n_boot > 0 else {}
    for name in ("auroc", "auprc", *(_sens_key(s) for s in SPECIFICITY_TARGETS)):
        entry = {"value": values.get(name, NAN)}
        if name in cis:
            entry["ci_low"], entry["ci_high"] = cis[name]
        if reason is not None:
            entry["reason"] = reason
        out[name] = entry
    for spec in SPECIFICITY_TARGETS:
        out[_sens_key(spec)]["threshold"] = sensitivity_at_specificity(y, p, spec)[1]
    out["brier"] = float(brier_score_loss(y, p))
    out["ece"] = expected_calibration_error(y, p, n_bins)
    out["calibration_bins"] = calibration_bins(y, p, n_bins)
    called = p >= threshold
    tp, fp = int((called & (y == 1)).sum()), int((called & (y == 0)).sum())
    fn, tn = n_pos - tp, len(y) - n_pos - fp
    out["at_threshold"] = {
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn) if tp + fn else NAN,
        "specificity": tn / (tn + fp) if tn + fp else NAN,
        "ppv": tp / (tp + fp) if tp + fp else NAN,
        "npv": tn / (tn + fn) if tn + fn else NAN,
    }
    if reason is not None:
        out["reason"] = reason
    return out


def culprit_metrics(
    culprit_true: Sequence[int] | np.ndarray,
    culprit_scores: np.ndarray,
    vessels_only: bool = True,
) -> dict:
    """Stage-2 culprit metrics among positives: accuracy, macro-F1, per-vessel recall, confusion matrix.

    Args:
        culprit_true: (N,) index into `CULPRITS` ("none", LAD, LCx, RCA), -100 unknown; only rows whose
            true culprit is a vessel (index 1..3) are scored, i.e. the positives with a known culprit.
        culprit_scores: (N, 4) logits or probabilities in `CULPRITS` order.
        vessels_only: predict the best of the three vessels (localisation given that the patient is a
            positive); False scores the 4-way argmax, where predicting "none" counts as wrong.
    """
    true = np.asarray(culprit_true, dtype=np.int64)
    scores = np.asarray(culprit_scores, dtype=np.float64)
    if scores.shape != (len(true), len(CULPRITS)):
        raise ValueError(f"culprit_scores must be (N, {len(CULPRITS)}) for {len(true)} labels, got {scores.shape}")
    keep = (true >= 1) & (true < len(CULPRITS))
    out: dict = {"n": int(keep.sum()), "vessels_only": vessels_only}
    if not keep.any():
        reason = "no positives with a known culprit vessel"
        return {**out, "accuracy": NAN, "macro_f1": NAN, "reason": reason}
    true, scores = true[keep], scores[keep]
    pred = scores[:, 1:].argmax(axis=1) + 1 if vessels_only else scores.argmax(axis=1)
    labels = list(range(1, len(CULPRITS))) if vessels_only else list(range(len(CULPRITS)))
    present = sorted(set(true.tolist()))
    out["accuracy"] = float(accuracy_score(true, pred))
    # macro over the vessels that occur as true labels: an absent vessel has no defined recall
    out["macro_f1"] = float(f1_score(true, pred, labels=present, average="macro", zero_division=0))
    recalls = recall_score(true, pred, labels=present, average=None, zero_division=0)
    out["recall"] = {CULPRITS[c]: float(r) for c, r in zip(present, recalls, strict=True)}
    out["confusion_matrix"] = confusion_matrix(true, pred, labels=labels).tolist()
    out["confusion_labels"] = [CULPRITS[c] for c in labels]
    return out


def stenosis_metrics(
    stenosis_true: np.ndarray, stenosis_pred: np.ndarray, threshold: float = STENOSIS_THRESHOLD
) -> dict:
    """Stenosis fraction MAE and the AUROC of the predicted fraction for ``true > threshold`` (70 %).

    Args:
        stenosis_true: (N, 3) true fractions in `VESSELS` order, NaN unknown (masked).
        stenosis_pred: (N, 3) predicted fractions in [0, 1].

    Pooled over the three vessels and per vessel.
    """
    true = np.asarray(stenosis_true, dtype=np.float64)
    pred = np.asarray(stenosis_pred, dtype=np.float64)
    if true.shape != pred.shape or true.ndim != 2 or true.shape[1] != len(VESSELS):
        raise ValueError(f"stenosis arrays must both be (N, {len(VESSELS)}), got {true.shape} and {pred.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("stenosis predictions hold NaN or infinite values")
    known = ~np.isnan(true)

    def score(mask: np.ndarray) -> dict:
        t, p = true[mask], pred[mask]
        if len(t) == 0:
            return {"n": 0, "mae": NAN, "auroc": NAN, "reason": "no known stenosis"}
        entry = {"n": int(len(t)), "mae": float(np.abs(t - p).mean()), "n_significant": int((t > threshold).sum())}
        y = (t > threshold).astype(np.int64)
        reason = _one_class_reason(y)
        entry["auroc"] = float(roc_auc_score(y, p)) if reason is None else NAN
        if reason is not None:
            entry["reason"] = f"AUROC: {reason}"
        return entry

    out = {"threshold": float(threshold), "all": score(known)}
    for v, name in enumerate(VESSELS):
        mask = np.zeros_like(known)
        mask[:, v] = known[:, v]
        out[name] = score(mask)
    return out


def evaluate_predictions(
    triage_true: Sequence[int] | np.ndarray,
    triage_prob: Sequence[float] | np.ndarray,
    *,
    triage_prob_adjusted: Sequence[float] | np.ndarray | None = None,
    culprit_true: Sequence[int] | np.ndarray | None = None,
    culprit_scores: np.ndarray | None = None,
    stenosis_true: np.ndarray | None = None,
    stenosis_pred: np.ndarray | None = None,
    strata: Sequence[int] | np.ndarray | None = None,
    strata_names: Sequence[str] | None = None,
    threshold: float = 0.5,
    n_boot: int = 1000,
    ci: float = 0.95,
    n_bins: int = 10,
    min_group_count: int = 5,
    seed: int = 0,
) -> dict:
    """All metrics of one evaluation split, as a JSON-ready dict (what `vlm-ecg evaluate` and training write).

    Args:
        triage_true: (N,) 1 / 0, -1 unknown (masked out of every triage metric).
        triage_prob: (N,) raw P(y=1 | x, z) (or P(y=1 | x)).
        triage_prob_adjusted: (N,) back-door adjusted P(y=1 | do(x)); scored side by side when given.
        culprit_true / culprit_scores: (N,) indices into `CULPRITS` (-100 unknown) and (N, 4) scores.
        stenosis_true / stenosis_pred: (N, 3) fractions (true NaN = unknown).
        strata / strata_names: (N,) stratum codes and the name of each code, for per-stratum TPR / FPR.
        threshold: decision threshold on the triage probability for the per-threshold and per-stratum rates.
        n_boot / ci / seed: bootstrap of the triage CIs (``n_boot=0``: no CIs, for quick per-epoch checks).
        n_bins: calibration bins.
        min_group_count: strata with fewer positives (negatives) are left out of the TPR (FPR) gaps.

    Returns:
        {"triage": ..., "triage_adjusted": ..., "culprit": ..., "stenosis": ..., "subgroups": ...,
        "subgroups_adjusted": ..., "settings": ...}, each present when its inputs were given; already passed
        through `to_jsonable`, so undefined values are None (beside their "reason") and `json.dumps` works
        with ``allow_nan=False``.
    """
    from .fairness import subgroup_metrics

    y = np.asarray(triage_true, dtype=np.int64)
    known = y >= 0
    probs = {"": np.asarray(triage_prob, dtype=np.float64)}
    if triage_prob_adjusted is not None:
        probs["_adjusted"] = np.asarray(triage_prob_adjusted, dtype=np.float64)
    for suffix, p in probs.items():
        if p.shape != y.shape:
            raise ValueError(f"triage_prob{suffix} has shape {p.shape}, triage_true {y.shape}")
    out: dict = {
        "settings": {"threshold": threshold, "n_boot": n_boot, "ci": ci, "n_bins": n_bins, "seed": seed},
    }
    out["settings"]["min_group_count"] = min_group_count
    for suffix, p in probs.items():
        out[f"triage{suffix}"] = triage_metrics(y[known], p[known], threshold, n_boot, ci, n_bins, seed)
        if strata is not None:
            z = np.asarray(strata, dtype=np.int64)
            if z.shape != y.shape:
                raise ValueError(f"strata has shape {z.shape}, triage_true {y.shape}")
            out[f"subgroups{suffix}"] = subgroup_metrics(
                y[known], p[known], z[known], threshold, strata_names, min_group_count
            )
    if (culprit_true is None) != (culprit_scores is None):
        raise ValueError("give both culprit_true and culprit_scores, or neither")
    if culprit_true is not None:
        out["culprit"] = culprit_metrics(culprit_true, culprit_scores)
    if (stenosis_true is None) != (stenosis_pred is None):
        raise ValueError("give both stenosis_true and stenosis_pred, or neither")
    if stenosis_true is not None:
        out["stenosis"] = stenosis_metrics(stenosis_true, stenosis_pred)
    return to_jsonable(out)


def to_jsonable(obj: object) -> object:
    """Plain Python types all the way down; NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def save_metrics(metrics: Mapping, path: str | Path) -> Path:
    """Write `metrics` as strict, indented JSON, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(metrics), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
