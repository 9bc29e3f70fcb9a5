"""Run a model over a split and score it: what training does each epoch and `vlm-ecg evaluate` does on a run.

Raw predictions use each ECG's own confounder stratum, P(y | x, z); adjusted predictions marginalise it,
P(y | do(x)) = sum_z P(y | x, z) P(z). Both are reported side by side.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .labels import CULPRITS
from .metrics import evaluate_predictions
from .transforms import model_inputs

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_loader(model, loader, accelerator=None, adjusted: bool = True, progress: bool = False) -> dict:
    """Predictions and labels for every row of `loader` (an `EcgTorchDataset` loader).

    Args:
        model: a `VlmEcgModel` (or its peft wrapper), not DDP-wrapped.
        loader: yields `collate_batch` dicts; under accelerate pass it through ``accelerator.prepare`` so each
            process scores a shard and `gather_for_metrics` reassembles them.
        accelerator: gathers across processes when given.
        adjusted: also compute the back-door adjusted probabilities (needs a stratified model with a prior).

    Returns:
        dict of numpy arrays: index, triage_true, culprit_true, stenosis_true, strata, triage_prob,
        culprit_probs (N, 4), stenosis (N, 3), triage_prob_adjusted (when computed), and ``loss`` (mean).
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(p for p in model.parameters()).device
    adjusted = adjusted and model.config.num_strata > 0 and model.config.strata_prior is not None
    parts: dict[str, list] = {}
    losses = []
    disable = not progress or (accelerator is not None and not accelerator.is_local_main_process)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=disable, leave=False):
        inputs = model_inputs(batch, device)
        out = model(**inputs)
        rows = {
            "index": batch["index"].to(device),
            "triage_true": inputs["triage_labels"],
            "culprit_true": inputs["culprit_labels"],
            "stenosis_true": inputs["stenosis_labels"],
            "strata": inputs["strata"],
            "triage_prob": torch.sigmoid(out.triage_logits.float()),
            "culprit_probs": torch.softmax(out.culprit_logits.float(), dim=-1),
            "stenosis": out.stenosis.float(),
        }
        if adjusted:
            rows["triage_prob_adjusted"] = model.predict_adjusted(fused_embeds=out.fused_embeds).triage_probs.float()
        loss = out.loss.detach().float().reshape(1) if out.loss is not None else torch.zeros(1, device=device)
        if accelerator is not None:
            rows = accelerator.gather_for_metrics(rows)
            loss = accelerator.gather(loss)
        for key, value in rows.items():
            parts.setdefault(key, []).append(value.cpu().numpy())
        losses.append(loss.cpu().numpy())
    model.train(was_training)
    result = {key: np.concatenate(values) for key, values in parts.items()}
    result["loss"] = float(np.concatenate(losses).mean()) if losses else float("nan")
    return result


def score_predictions(
    pred: dict, strata_names: list[str] | None = None, n_boot: int = 0, seed: int = 0, threshold: float = 0.5
) -> dict:
    """`vlm_ecg.metrics.evaluate_predictions` on the output of `predict_loader` (plus the mean loss).

    `threshold` is the decision threshold of the per-threshold and per-stratum rates (a run's own operating point).
    """
    metrics = evaluate_predictions(
        pred["triage_true"],
        pred["triage_prob"],
        triage_prob_adjusted=pred.get("triage_prob_adjusted"),
        culprit_true=pred["culprit_true"],
        culprit_scores=pred["culprit_probs"],
        stenosis_true=pred["stenosis_true"],
        stenosis_pred=pred["stenosis"],
        strata=pred["strata"],
        strata_names=strata_names,
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
    )
    metrics["loss"] = pred["loss"] if np.isfinite(pred["loss"]) else None
    metrics["n"] = int(len(pred["triage_true"]))
    return metrics


def _value(entry) -> float | None:
    return entry.get("value") if isinstance(entry, dict) else entry


def headline(metrics: dict) -> dict[str, float | None]:
    """The few numbers a person reads first (and the names `eval_metric` chooses from)."""
    triage = metrics.get("triage", {})
    adjusted = metrics.get("triage_adjusted", {})
    culprit = metrics.get("culprit", {})
    return {
        "triage_auroc": _value(triage.get("auroc")),
        "triage_auprc": _value(triage.get("auprc")),
        "culprit_accuracy": culprit.get("accuracy"),
        "loss": metrics.get("loss"),
        "triage_auroc_adjusted": _value(adjusted.get("auroc")),
    }


def prediction_table(pred: dict, ids: list[str]) -> list[dict]:
    """One row per ECG (for CSV export): id, labels, raw and adjusted triage probability, culprit probabilities."""
    rows = []
    for k, row_index in enumerate(pred["index"]):
        row = {"id": ids[int(row_index)], "triage_true": int(pred["triage_true"][k])}
        row["triage_prob"] = float(pred["triage_prob"][k])
        if "triage_prob_adjusted" in pred:
            row["triage_prob_adjusted"] = float(pred["triage_prob_adjusted"][k])
        for c, name in enumerate(CULPRITS):
            row[f"culprit_prob_{name}"] = float(pred["culprit_probs"][k, c])
        rows.append(row)
    return rows


def predict_dataset(predictor, split, strata: np.ndarray | None, batch_size: int = 32, progress: bool = True) -> dict:
    """`Predictor.predict_signals` over a data-set split, with labels, in `predict_loader`'s output format."""
    from tqdm.auto import tqdm

    signals = split.with_format("numpy", columns=["signal"])
    n = len(split)
    strata = np.full(n, -1) if strata is None else np.asarray(strata)
    parts: dict[str, list] = {}
    for start in tqdm(range(0, n, batch_size), desc="predict", unit="batch", disable=not progress):
        stop = min(start + batch_size, n)
        result = predictor.predict_signals(signals[start:stop]["signal"], strata[start:stop], batch_size=batch_size)
        for key, value in result.items():
            parts.setdefault(key, []).append(value)
    pred = {key: np.concatenate(value) for key, value in parts.items()}
    pred["index"] = np.arange(n)
    pred["triage_true"] = np.asarray(split["triage"], dtype=np.int64)
    pred["culprit_true"] = np.asarray(split["culprit"], dtype=np.int64)
    pred["stenosis_true"] = np.asarray(split["stenosis"], dtype=np.float32)
    pred["strata"] = strata
    pred["loss"] = float("nan")
    return pred


def evaluate_run(
    run: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    n_boot: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[dict, Path]:
    """Score a trained run on a data set: `vlm-ecg evaluate RUN --data ...`.

    Writes ``metrics.json`` (raw and back-door adjusted triage metrics side by side, culprit, stenosis,
    per-stratum TPR / FPR and worst-group gaps) and the plots into `out_dir`.

    Args:
        run: run folder (or its ``final/``).
        data: ``"synthetic"``, a saved data-set folder or a PTB-XL folder; None = the run's own training data.
        split: which split to score.
        out_dir: default ``RUN/eval-SPLIT`` (beside ``final/``).

    Returns:
        (metrics with an added printable ``summary``, the output folder).
    """
    from .causal import strata_names
    from .metric_plots import plot_evaluation
    from .metrics import save_metrics
    from .predict import Predictor
    from .run_folder import final_dir
    from .train_config import TrainConfig, load_train_config
    from .train_data import load_splits

    folder = final_dir(run)
    run_root = folder.parent if folder.name == "final" else folder
    predictor = Predictor.from_pretrained(folder)
    config_file = folder / "train_config.yaml"
    config = load_train_config(["--config", str(config_file)]) if config_file.is_file() else TrainConfig()
    if data is not None:
        config.data = data
    splits = load_splits(config)
    if split not in splits:
        raise ValueError(f"split {split!r} not in the data (has {', '.join(splits)})")
    part = splits[split]
    strata = None
    names = None
    if predictor.strata_config is not None:
        strata, names = predictor.strata_of_rows(part), strata_names(predictor.strata_config)
    pred = predict_dataset(predictor, part, strata, batch_size)
    threshold = predictor.decision_threshold
    metrics = score_predictions(pred, names, n_boot=n_boot, seed=seed, threshold=threshold)
    metrics["data"] = {"source": config.data, "split": split, "n": len(part)}
    out = Path(out_dir) if out_dir is not None else run_root / f"eval-{split}"
    save_metrics(metrics, out / "metrics.json")
    plot_evaluation(out / "plots", pred["triage_true"], pred["triage_prob"], metrics, pred.get("triage_prob_adjusted"))
    metrics["summary"] = format_summary(metrics)
    return metrics, out


def format_summary(metrics: dict) -> str:
    """A few lines a person reads: triage raw vs adjusted with CIs, culprit, stenosis, worst-group gaps."""

    def ci(entry) -> str:
        if not isinstance(entry, dict) or entry.get("value") is None:
            return "n/a"
        low, high = entry.get("ci_low"), entry.get("ci_high")
        return f"{entry['value']:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")

    lines = []
    for key, label in (("triage", "raw"), ("triage_adjusted", "adjusted")):
        t = metrics.get(key)
        if t:
            lines.append(
                f"triage ({label}): AUROC {ci(t.get('auroc'))}  AUPRC {ci(t.get('auprc'))}  "
                f"sens@90%spec {ci(t.get('sensitivity_at_90_specificity'))}  "
                f"sens@95%spec {ci(t.get('sensitivity_at_95_specificity'))}  "
                f"Brier {t.get('brier') or float('nan'):.3f}  ECE {t.get('ece') or float('nan'):.3f}"
            )
    c = metrics.get("culprit")
    if c:
        lines.append(f"culprit among positives: accuracy {c.get('accuracy') or float('nan'):.3f}  "
                     f"macro-F1 {c.get('macro_f1') or float('nan'):.3f}  (n={c.get('n')})")  # fmt: skip
    s = (metrics.get("stenosis") or {}).get("all")
    if s:
        lines.append(
            f"stenosis: MAE {s.get('mae') or float('nan'):.3f}  AUROC(>70%) {s.get('auroc') or float('nan'):.3f}"
        )
    for key, label in (("subgroups", "raw"), ("subgroups_adjusted", "adjusted")):
        g = metrics.get(key) or {}
        parts = [
            f"{name.split('_')[0].upper()} gap {g[name]['gap']:.3f} (worst {g[name]['worst_group']})"
            for name in ("tpr_gap", "fpr_gap")
            if isinstance(g.get(name), dict) and g[name].get("gap") is not None
        ]
        if parts:
            lines.append(f"per-stratum ({label}): " + ", ".join(parts))
    return "\n".join(lines)
