"""The run folder: building the model of a run, atomic checkpoints, the shipped `final/` artefact, loading it back.

    runs/NAME/
      final/                 the shipped artefact: peft adapter (everything trained) + base config.json + run.json
      metrics.json           test (with bootstrap CIs) and validation metrics, raw and back-door adjusted
      strata_prior.json      P(z) of the training split, with the stratum names
      dril_report.json       k, subgroup sizes and feature means, purity against true subtypes (DRIL runs)
      plots/                 roc, pr, calibration, stratum_sensitivity, culprit_confusion (PNG)
      test_predictions.csv   one row per test ECG
      train_config.yaml      the exact configuration used
      log.jsonl, logs/       JSONL and TensorBoard logs
      best/                  adapter of the best validation epoch (before the prevalence shift)
      checkpoints/           resumable `accelerator.save_state` checkpoints

Everything is written to a temporary sibling and renamed into place, so a run killed at any moment leaves either
the previous file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

TRAINING_STATE = "training_state.json"
RUN_FACTS = "run.json"
FINAL_FILES = ("adapter_config.json", "adapter_model.safetensors", "config.json", RUN_FACTS, "train_config.yaml")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# ---------------------------------------------------------------------------------------------- atomic writes
def _atomic_dir(path: Path):
    """A temporary folder beside `path`; `_commit` renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))


def _commit(tmp: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)


def write_text_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- model
def build_model(config, num_strata: int, prior: np.ndarray | None, train_prevalence: float):
    """The model of a run: preset (or saved base) + LoRA through peft, or the bare model when nothing is pretrained.

    Args:
        config: the `TrainConfig`.
        num_strata: size of the confounder-stratum embedding (0 = no conditioning).
        prior: P(z) stored in the config for the back-door adjustment.
        train_prevalence: for the class-weighted baseline's positive weight.
    """
    from .modeling import LoraSettings, VlmEcgModel, apply_lora

    kwargs: dict = {"branches": config.branches, "num_strata": num_strata}
    if config.imbalance == "class_weight":
        kwargs["triage_pos_weight"] = (1.0 - train_prevalence) / max(train_prevalence, 1e-6)
    if config.model_name_or_path:
        model = VlmEcgModel.from_pretrained(config.model_name_or_path, **kwargs)
    else:
        backbone = config.signal_backbone_name_or_path or ("gpt2" if config.signal_backbone == "gpt2" else None)
        model = VlmEcgModel.from_preset(
            config.preset,
            local_tower=config.local_tower or None,
            global_tower=config.global_tower or None,
            ocr2_tower=config.ocr2_tower or None,
            signal_backbone=backbone,
            **kwargs,
        )
    if prior is not None:
        model.config.strata_prior = [float(p) for p in prior]
    settings = LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout)
    try:
        return apply_lora(model, settings)
    except ValueError as exc:  # nothing pretrained to adapt (signal-only, scratch backbone): train it all
        logger.info("no LoRA (%s): training the whole model", exc)
        return model


def _is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_adapter(accelerator, model, path: Path) -> None:
    """Save what was trained (the peft adapter, or the whole model without peft) to `path`, atomically."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        tmp = _atomic_dir(path)
        unwrapped.save_pretrained(str(tmp), safe_serialization=True)
        if _is_peft(unwrapped):  # the base config travels with the adapter, so the folder rebuilds the model
            unwrapped.get_base_model().config.save_pretrained(str(tmp))
        _commit(tmp, path)
    accelerator.wait_for_everyone()


def load_adapter_weights(model, path: Path) -> None:
    """Load the weights saved by `save_adapter` into an already built model (same architecture)."""
    from safetensors.torch import load_file

    if _is_peft(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    else:
        model.load_state_dict(load_file(str(path / "model.safetensors")))


def shift_triage_prevalence(model, from_prevalence: float, to_prevalence: float) -> float:
    """Add log(odds(to) / odds(from)) to the triage bias: probabilities learnt on balanced batches become calibrated
    to the training prevalence. Returns the shift (0 when the two agree)."""
    if not (0 < from_prevalence < 1 and 0 < to_prevalence < 1) or math.isclose(from_prevalence, to_prevalence):
        return 0.0
    shift = math.log(to_prevalence / (1 - to_prevalence)) - math.log(from_prevalence / (1 - from_prevalence))
    biases = [
        p for n, p in model.named_parameters()
        if n.endswith("heads.triage.bias") or (".heads.modules_to_save." in n and n.endswith(".triage.bias"))
    ]  # fmt: skip
    if not biases:
        raise RuntimeError("the model has no triage head bias to shift")
    with torch.no_grad():
        for bias in biases:
            bias += shift
    return shift


def parameter_digest(model) -> str:
    """SHA-256 of every trainable parameter's bytes, in name order: equal on all DDP ranks iff they are in sync."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (renamed into place, so complete by construction), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return sorted(found)


def resolve_checkpoint(ckpt_dir: Path, which: str) -> Path:
    """``"latest"`` or a checkpoint folder -> the folder to resume from.

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    if which == "latest":
        found = checkpoints(ckpt_dir)
        if not found:
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to resume from (resume_from_checkpoint=latest)")
        return found[-1][1]
    path = Path(which)
    if not (path / TRAINING_STATE).is_file():
        raise FileNotFoundError(f"{path}: not a vlm_ecg checkpoint (no {TRAINING_STATE})")
    return path


def save_checkpoint(accelerator, ckpt_dir: Path, state: dict, keep: int) -> Path:
    """`accelerator.save_state` plus our loop position, written to a temporary folder and renamed into place."""
    path = ckpt_dir / f"checkpoint-{state['global_step']}"
    tmp = ckpt_dir / f".tmp-checkpoint-{state['global_step']}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINING_STATE).write_text(json.dumps(state, indent=1, default=float))
        _commit(tmp, path)
        for _, old in checkpoints(ckpt_dir)[: -keep if keep else None]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


# ---------------------------------------------------------------------------------------------- the run
def decision_threshold(val_pred: dict) -> dict:
    """The operating point of the triage decision, chosen on validation data: the threshold that maximises
    Youden's J (sensitivity + specificity - 1) on the adjusted probability (raw when the model has no prior)."""
    from sklearn.metrics import roc_curve

    y = val_pred["triage_true"]
    prob = val_pred.get("triage_prob_adjusted", val_pred["triage_prob"])
    known = y >= 0
    if len(np.unique(y[known])) < 2:
        return {"value": 0.5, "method": "default (validation split has one class)"}
    fpr, tpr, thresholds = roc_curve(y[known], prob[known])
    best = int(np.argmax(tpr - fpr))
    value = float(min(thresholds[best], 1.0))
    return {
        "value": value,
        "method": "max Youden J on validation",
        "on": "adjusted" if "triage_prob_adjusted" in val_pred else "raw",
        "sensitivity": float(tpr[best]),
        "specificity": float(1 - fpr[best]),
    }


def write_run(out_dir: Path, *, accelerator, model, config, strata_config, prior, render_config, test_pred,
              test_metrics, decision, val_metrics, state, schedule, subtypes, train_seconds, train_prevalence,
              batch_prevalence, logit_shift, rank_digests) -> Path:  # fmt: skip
    """Write `final/`, metrics, prior, DRIL report, plots and test predictions (main process only)."""
    import dataclasses

    from .causal import strata_names
    from .evaluation import prediction_table
    from .metric_plots import plot_evaluation
    from .metrics import save_metrics

    unwrapped = accelerator.unwrap_model(model)
    base = unwrapped.get_base_model() if _is_peft(unwrapped) else unwrapped
    names = strata_names(strata_config)
    facts = {
        "format": "vlm_ecg-run/1",
        "strata": {"config": strata_config.to_dict(), "names": names, "prior": [float(p) for p in prior]},
        "render": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(render_config).items()},
        "prevalence": {"train": train_prevalence, "batch": batch_prevalence, "triage_logit_shift": logit_shift},
        "decision_threshold": decision,
        "conditioned_on_strata": bool(config.condition_on_strata),
        "peft": _is_peft(unwrapped),
        "test_headline": {k: v for k, v in test_metrics.get("triage", {}).items() if not isinstance(v, (dict, list))},
    }  # fmt: skip
    tmp = _atomic_dir(out_dir / "final")
    unwrapped.save_pretrained(str(tmp), safe_serialization=True)
    base.config.save_pretrained(str(tmp))
    (tmp / RUN_FACTS).write_text(json.dumps(facts, indent=2))
    config.save_yaml(tmp / "train_config.yaml")
    _commit(tmp, out_dir / "final")

    training = {
        "seconds": train_seconds,
        "samples": state["samples"],
        "samples_per_second": state["samples"] / train_seconds if train_seconds > 0 else None,
        "global_step": state["global_step"],
        "best_epoch": state["best_epoch"],
        "best_val": state["best"],
        "eval_metric": config.eval_metric,
        "stopped_early": state["stopped_early"],
        "num_processes": accelerator.num_processes,
        "rank_param_digests": list(rank_digests),
        "history": state["history"],
    }
    save_metrics({"test": test_metrics, "val": val_metrics, "training": training}, out_dir / "metrics.json")
    write_text_atomic(out_dir / "strata_prior.json", json.dumps(facts["strata"], indent=2))
    if schedule is not None:
        report = schedule.report(subtypes=subtypes if any(subtypes) else None)
        save_metrics(report, out_dir / "dril_report.json")
    plot_evaluation(
        out_dir / "plots",
        test_pred["triage_true"],
        test_pred["triage_prob"],
        test_metrics,
        test_pred.get("triage_prob_adjusted"),
    )
    _write_csv(out_dir / "test_predictions.csv", prediction_table(test_pred, _ids(test_pred)))
    return out_dir


def _ids(pred: dict) -> list[str]:
    n = int(pred["index"].max()) + 1 if len(pred["index"]) else 0
    return [f"test[{i}]" for i in range(n)]


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv
    import io

    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------- loading back
def final_dir(path: str | Path) -> Path:
    """`runs/NAME` or `runs/NAME/final` (or any folder holding a saved adapter / model) -> the artefact folder.

    Raises:
        FileNotFoundError: nothing loadable there, with what was looked for.
    """
    path = Path(path)
    for candidate in (path / "final", path):
        if (candidate / "config.json").is_file() and (
            (candidate / "adapter_model.safetensors").is_file() or (candidate / "model.safetensors").is_file()
        ):
            return candidate
    raise FileNotFoundError(
        f"{path}: not a vlm_ecg run or model folder (expected final/ with config.json and adapter_model.safetensors "
        "or model.safetensors; train one with `accelerate launch finetune`)"
    )


def rebuild_base(config, load_kwargs: dict | None = None):
    """The frozen base model an adapter was trained on, rebuilt from its config.

    Random-init parts are reproduced exactly from ``config.initializer_seed``; pretrained towers are reloaded from
    the checkpoints the config names (hub ids or paths, with `from_pretrained`).
    """
    from .modeling import VlmEcgModel
    from .modeling.timeseries import load_signal_backbone
    from .modeling.vision import load_global_tower, load_local_tower, load_ocr2_tower

    load_kwargs = load_kwargs or {}
    model = VlmEcgModel(config)
    vision = config.vision_config
    if model.vision_tower is not None and vision.preset == "deepencoder" and vision.local_tower:
        model.vision_tower.local_tower.load_state_dict(
            load_local_tower(vision.local_tower, **load_kwargs).state_dict()
        )
        model.vision_tower.global_tower.load_state_dict(
            load_global_tower(vision.global_tower, **load_kwargs).state_dict()
        )
    elif model.vision_tower is not None and vision.preset == "deepseek-ocr-2" and vision.ocr2_tower:
        model.vision_tower.ocr2_tower.load_state_dict(load_ocr2_tower(vision.ocr2_tower, **load_kwargs).state_dict())
    signal = config.signal_config
    if model.signal_encoder is not None and signal.backbone == "gpt2" and signal.backbone_name_or_path:
        backbone = load_signal_backbone(signal.backbone_name_or_path, **load_kwargs)
        model.signal_encoder.backbone.load_state_dict(backbone.state_dict())
    return model


def load_final(path: str | Path, load_kwargs: dict | None = None):
    """Load a trained model from a run folder or a saved artefact folder (local path).

    Returns:
        (model in eval mode, run facts dict from run.json or {} for a bare model folder).
    """
    from .modeling import VlmEcgConfig, VlmEcgModel

    folder = final_dir(path)
    config = VlmEcgConfig.from_pretrained(str(folder))
    if (folder / "adapter_model.safetensors").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(rebuild_base(config, load_kwargs), str(folder))
    else:
        model = VlmEcgModel.from_pretrained(str(folder))
    facts = json.loads((folder / RUN_FACTS).read_text()) if (folder / RUN_FACTS).is_file() else {}
    return model.eval(), facts
