"""PNG plots of an evaluation for the run folder: ROC, PR, reliability diagram, per-stratum sensitivity, culprit
confusion matrix.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global backend or state; PNGs are drawn by
Agg), and matplotlib is imported inside the functions so that importing vlm_ecg stays light. Every function
takes plain arrays or the dicts of `vlm_ecg.metrics` / `vlm_ecg.fairness`, writes one PNG and returns its path.
A curve that is undefined (one class only) is replaced by a note on the axes rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_evaluation",
    "plot_pr",
    "plot_roc",
    "plot_subgroup_sensitivity",
]

DPI = 120


def _figure(width_in: float = 5.0, height_in: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _as_curves(y_true, probs) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Known labels and {legend: probabilities}; a bare array becomes {"model": array}."""
    y = np.asarray(y_true, dtype=np.int64)
    curves = dict(probs) if isinstance(probs, Mapping) else {"model": probs}
    keep = y >= 0
    return y[keep], {name: np.asarray(p, dtype=np.float64)[keep] for name, p in curves.items()}


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)


def plot_roc(
    y_true: Sequence[int] | np.ndarray, probs: Mapping[str, np.ndarray] | np.ndarray, path: str | Path
) -> Path:
    """ROC curves (one per entry of `probs`, e.g. raw and adjusted) with their AUROC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y, curves = _as_curves(y_true, probs)
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
    if 0 < y.sum() < len(y):
        for name, p in curves.items():
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUROC {roc_auc_score(y, p):.3f})")
    else:
        _note(ax, "ROC undefined: one class only")
    ax.set(xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)", title="Triage ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pr(
    y_true: Sequence[int] | np.ndarray, probs: Mapping[str, np.ndarray] | np.ndarray, path: str | Path
) -> Path:
    """Precision-recall curves with their average precision; the horizontal line is the prevalence."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, curves = _as_curves(y_true, probs)
    fig, ax = _figure()
    if 0 < y.sum() < len(y):
        ax.axhline(y.mean(), color="0.7", linestyle="--", linewidth=1, label=f"prevalence {y.mean():.3f}")
        for name, p in curves.items():
            precision, recall, _ = precision_recall_curve(y, p)
            ax.plot(recall, precision, linewidth=1.5, label=f"{name} (AP {average_precision_score(y, p):.3f})")
        ax.legend(loc="upper right", fontsize=8)
    else:
        _note(ax, "PR curve undefined: one class only")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Triage precision-recall", xlim=(0, 1))
    ax.set_ylim(0, 1.01)
    return _save(fig, path)


def plot_calibration(
    y_true: Sequence[int] | np.ndarray,
    probs: Mapping[str, np.ndarray] | np.ndarray,
    path: str | Path,
    n_bins: int = 10,
) -> Path:
    """Reliability diagram (observed fraction of positives vs mean predicted probability per bin, the bins of
    `vlm_ecg.metrics.calibration_bins`) above a histogram of the predictions."""
    from .metrics import calibration_bins, expected_calibration_error

    y, curves = _as_curves(y_true, probs)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 6.0), dpi=DPI, layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="perfect")
    for name, p in curves.items():
        rows = [r for r in calibration_bins(y, p, n_bins) if r["count"]]
        ece = expected_calibration_error(y, p, n_bins)
        ax.plot(
            [r["mean_predicted"] for r in rows],
            [r["fraction_positive"] for r in rows],
            marker="o",
            linewidth=1.5,
            label=f"{name} (ECE {ece:.3f})",
        )
        hist.hist(p, bins=n_bins, range=(0, 1), histtype="step", linewidth=1.2)
    ax.set(ylabel="fraction positive", title="Calibration", xlim=(0, 1))
    ax.set_ylim(0, 1.01)
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="mean predicted probability", ylabel="count")
    return _save(fig, path)


def plot_subgroup_sensitivity(subgroups: Mapping[str, Mapping], path: str | Path) -> Path:
    """Bar chart of the sensitivity (TPR) per stratum, from `vlm_ecg.fairness.subgroup_metrics`.

    `subgroups` is one such dict, or {legend: dict} for side-by-side bars (raw vs adjusted). Bars are
    annotated with the number of positives; strata without positives show no bar.
    """
    sets = {"model": subgroups} if "groups" in subgroups else dict(subgroups)
    names = sorted({g for s in sets.values() for g in s["groups"]})
    fig, ax = _figure(max(5.0, 0.45 * len(names) * len(sets) + 2), 4.5)
    width = 0.8 / max(len(sets), 1)
    x = np.arange(len(names))
    for k, (label, s) in enumerate(sets.items()):
        tpr = [s["groups"].get(g, {}).get("tpr") for g in names]
        heights = [np.nan if v is None else v for v in tpr]
        bars = ax.bar(x + (k - (len(sets) - 1) / 2) * width, heights, width, label=label)
        for bar, g in zip(bars, names, strict=True):
            n_pos = s["groups"].get(g, {}).get("n_positive", 0)
            ax.annotate(f"{n_pos}", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    threshold = next(iter(sets.values())).get("threshold")
    ax.set(ylabel="sensitivity (TPR)", title=f"Sensitivity per stratum at threshold {threshold}", ylim=(0, 1.05))
    if not names:
        _note(ax, "no strata")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], path: str | Path
) -> Path:
    """Confusion matrix (rows true, columns predicted) with counts and row-normalised shading."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix {m.shape} does not match {len(labels)} labels")
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    fig, ax = _figure(4.5, 4.0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="Culprit vessel (positives)")
    fig.colorbar(image, ax=ax, label="fraction of true row")
    return _save(fig, path)


def plot_evaluation(
    out_dir: str | Path,
    triage_true: Sequence[int] | np.ndarray,
    triage_prob: np.ndarray,
    metrics: Mapping,
    triage_prob_adjusted: np.ndarray | None = None,
    n_bins: int = 10,
) -> dict[str, Path]:
    """All plots of one evaluation into `out_dir`; `metrics` is the dict of `evaluate_predictions`.

    Writes roc.png, pr.png, calibration.png, and stratum_sensitivity.png / culprit_confusion.png when
    `metrics` holds subgroup / culprit results. Returns {plot name: path}.
    """
    out_dir = Path(out_dir)
    probs = {"raw": triage_prob}
    if triage_prob_adjusted is not None:
        probs["adjusted"] = triage_prob_adjusted
    paths = {
        "roc": plot_roc(triage_true, probs, out_dir / "roc.png"),
        "pr": plot_pr(triage_true, probs, out_dir / "pr.png"),
        "calibration": plot_calibration(triage_true, probs, out_dir / "calibration.png", n_bins),
    }
    if "subgroups" in metrics and metrics["subgroups"].get("groups"):
        sets = {"raw": metrics["subgroups"]}
        if "subgroups_adjusted" in metrics:
            sets["adjusted"] = metrics["subgroups_adjusted"]
        paths["stratum_sensitivity"] = plot_subgroup_sensitivity(sets, out_dir / "stratum_sensitivity.png")
    culprit = metrics.get("culprit", {})
    if culprit.get("confusion_matrix"):
        paths["culprit_confusion"] = plot_confusion_matrix(
            culprit["confusion_matrix"], culprit["confusion_labels"], out_dir / "culprit_confusion.png"
        )
    return paths
