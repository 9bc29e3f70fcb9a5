"""Run a model over a split and score it: what training does each epoch and `vlm-ecg evaluate` does on a run.

Raw predictions use each ECG's own confounder stratum, P(y | x, z); adjusted predictions marginalise it,
P(y | do(x)) = sum_z P(y | x, z) P(z). Both are reported side by side.
"""

from __future__ import annotations

import logging

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


def score_predictions(pred: dict, strata_names: list[str] | None = None, n_boot: int = 0, seed: int = 0) -> dict:
    """`vlm_ecg.metrics.evaluate_predictions` on the output of `predict_loader` (plus the mean loss)."""
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
