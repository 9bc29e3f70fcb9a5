"""The accelerate training loop: DRIL stages, confounder-stratified batches, evaluation, checkpoints and resume.

    accelerate launch finetune                                   # the embedded default: synthetic cohort, tiny
    accelerate launch finetune --config finetune/configs/smoke.yaml --output_dir runs/smoke
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 finetune --config ...  # 2-process CPU DDP

The shape follows accelerate's `examples/complete_cv_example.py`: build data, model, optimizer; `prepare`;
loop; `save_state` / `load_state` for resume. What is specific here:

- **Stages.** The DRIL plan (`vlm_ecg.train_data.plan_stages`) decides which training rows each stage sees;
  the last stage sees all rows. Within a stage, the batch sampler decides how batches are composed.
- **Our samplers shard themselves** (rank-strided batches), so the training loader is not `prepare`d; the model,
  optimizer and evaluation loaders are.
- **Exact resume.** A checkpoint holds accelerate's state (model, optimizer, scheduler, RNG) and our position
  (stage, epoch, batches consumed, best metric, patience). Gradient accumulation is done by hand with
  `no_sync`, so checkpoints fall on optimizer steps and carry no half-accumulated gradient, and the training
  loader draws its worker seeds from its own seeded generator, not from the global RNG. A run killed and
  resumed with ``--resume_from_checkpoint latest`` ends with the same weights and metrics as one that was not.
- **Calibration.** Balanced batches train at a prevalence of 1/(1+r); at the end the triage bias is shifted by
  the log odds ratio back to the training prevalence, so the saved model's probabilities are calibrated to it
  (AUROC unchanged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .train_config import ConfigError, TrainConfig

logger = logging.getLogger(__name__)


class _JsonlLog:
    """Append-only JSONL log on the main process (one line per logged event)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record, default=float) + "\n")


def _lr_lambda(total_steps: int, warmup_steps: int):
    def fn(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return fn


def _better(metric: str, new: float | None, best: float | None) -> bool:
    if new is None or not math.isfinite(new):
        return False
    if best is None:
        return True
    return new < best if metric == "loss" else new > best


def train(config: TrainConfig) -> Path:
    """Fine-tune a model as `config` says; returns the run folder (see `vlm_ecg.run_folder` for its contents)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, gather_object, set_seed
    from tqdm.auto import tqdm

    from . import run_folder
    from .causal import estimate_prior, strata_names
    from .evaluation import headline, predict_loader, score_predictions
    from .modeling import VlmEcgImageProcessor
    from .train_data import (
        batch_prevalence,
        dril_features,
        load_splits,
        make_sampler,
        plan_stages,
        split_strata,
        strata_config,
    )
    from .transforms import (
        DEFAULT_AUGMENT,
        EcgTorchDataset,
        collate_batch,
        model_inputs,
        render_config_for,
        render_images,
    )

    use_cpu = not torch.cuda.is_available()
    if use_cpu and config.mixed_precision == "fp16":
        raise ConfigError("mixed_precision: fp16 needs a GPU; use bf16 or no on CPU")
    out_dir = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
    )
    main = accelerator.is_main_process
    if use_cpu:  # accelerate launch pins OMP_NUM_THREADS=1 on small CPUs; share the cores between processes instead
        torch.set_num_threads(config.cpu_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes))
    set_seed(config.seed)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(out_dir / "train_config.yaml")
    log = _JsonlLog(out_dir / "log.jsonl", main)
    if config.report_to != "none":
        accelerator.init_trackers("vlm_ecg", config={k: str(v) for k, v in config.to_dict().items()})

    # ---------------------------------------------------------------- data, strata, stages
    with accelerator.main_process_first():
        splits = load_splits(config, progress=main)
    strata = split_strata(splits, config)
    sc = strata_config(config)
    names = strata_names(sc)
    train_triage = np.asarray(splits["train"]["triage"], dtype=np.int64)
    known = train_triage >= 0
    train_prevalence = float(train_triage[known].mean()) if known.any() else 0.5
    prior = estimate_prior(strata["train"], len(names))
    features = feature_names = None
    if config.imbalance == "dril":
        features, feature_names = dril_features(splits["train"], config, progress=main)
    stages, schedule = plan_stages(config, train_triage, features, feature_names)
    accelerator.print(f"{len(splits['train'])} train / {len(splits['val'])} val / {len(splits['test'])} test ECGs; "
                      f"prevalence {train_prevalence:.3f}; {len(names)} strata; {len(stages)} stage(s)")  # fmt: skip

    # ---------------------------------------------------------------- model
    model = run_folder.build_model(config, num_strata=len(names) if config.condition_on_strata else 0,
                                   prior=prior if config.condition_on_strata else None,
                                   train_prevalence=train_prevalence)  # fmt: skip
    base_config = accelerator.unwrap_model(model).config
    processor = VlmEcgImageProcessor.from_config(base_config) if base_config.uses_image else None
    render_config = render_config_for(base_config.vision_config.image_size, config.render_layout)
    cache = {}
    if processor is not None and config.render_cache:
        for name in ("train", "val", "test"):
            cache[name] = render_images(splits[name].with_format("numpy")["signal"], render_config, progress=main)
    datasets_ = {
        name: EcgTorchDataset(
            splits[name], strata[name] if config.condition_on_strata else np.full(len(splits[name]), -1),
            processor, render_config, augment=DEFAULT_AUGMENT if (name == "train" and config.render_augment) else None,
            seed=config.seed, image_cache=cache.get(name),
        )
        for name in ("train", "val", "test")
    }  # fmt: skip

    # ---------------------------------------------------------------- optimisation
    samplers = [
        make_sampler(config, stage, k, train_triage, strata["train"], accelerator.num_processes,
                     accelerator.process_index)
        for k, stage in enumerate(stages)
    ]  # fmt: skip
    gas = config.gradient_accumulation_steps
    steps_per_stage = [stage.epochs * math.ceil(len(s) / gas) for stage, s in zip(stages, samplers)]
    total_steps = sum(steps_per_stage)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    lora_lr = config.lora_learning_rate or config.learning_rate
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if "lora_" in n], "lr": lora_lr},
        {"params": [p for n, p in trainable if "lora_" not in n], "lr": config.learning_rate},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, max(1, int(config.warmup_ratio * total_steps)))
    )
    eval_loaders = {
        name: DataLoader(datasets_[name], batch_size=config.per_device_batch_size, num_workers=config.num_workers,
                         collate_fn=collate_batch)
        for name in ("val", "test")
    }  # fmt: skip
    model, optimizer, eval_loaders["val"], eval_loaders["test"] = accelerator.prepare(
        model, optimizer, eval_loaders["val"], eval_loaders["test"]
    )
    accelerator.register_for_checkpointing(scheduler)  # stepped by us once per optimizer step, not by accelerate

    state = {"stage": 0, "epoch": 0, "batches_done": 0, "global_step": 0, "samples": 0, "best": None,
             "best_epoch": None, "bad_evals": 0, "stopped_early": False, "history": []}  # fmt: skip
    ckpt_dir = out_dir / "checkpoints"
    if config.resume_from_checkpoint:
        path = run_folder.resolve_checkpoint(ckpt_dir, config.resume_from_checkpoint)
        accelerator.print(f"resuming from {path}")
        accelerator.load_state(str(path))
        state = json.loads((path / run_folder.TRAINING_STATE).read_text())

    def save_checkpoint() -> None:
        run_folder.save_checkpoint(accelerator, ckpt_dir, state, config.checkpoints_total_limit)

    def evaluate(stage_name: str, epoch: int) -> dict:
        pred = predict_loader(accelerator.unwrap_model(model), eval_loaders["val"], accelerator, adjusted=False)
        metrics = headline(score_predictions(pred, names))
        record = {"stage": stage_name, "epoch": epoch, "step": state["global_step"], **metrics}
        log.write(event="eval", **record)
        accelerator.log({f"val/{k}": v for k, v in metrics.items() if v is not None}, step=state["global_step"])
        accelerator.print(f"[{stage_name} epoch {epoch}] val " + ", ".join(
            f"{k} {v:.4f}" for k, v in metrics.items() if v is not None))  # fmt: skip
        return record

    # ---------------------------------------------------------------- loop
    model.train()
    started = time.time()
    loader_gen = torch.Generator()
    for k in range(state["stage"], len(stages)):
        stage, sampler = stages[k], samplers[k]
        for epoch in range(state["epoch"] if k == state["stage"] else 0, stage.epochs):
            if state["stopped_early"] or (config.max_steps and state["global_step"] >= config.max_steps):
                break
            sampler.set_epoch(epoch)
            resume_at = state["batches_done"] if (k == state["stage"] and epoch == state["epoch"]) else 0
            sampler.load_state_dict({**sampler.state_dict(), "epoch": epoch, "position": resume_at})
            state.update(stage=k, epoch=epoch, batches_done=resume_at)
            datasets_["train"].set_epoch(k * 1000 + epoch)
            loader_gen.manual_seed(config.seed * 1_000_003 + k * 1000 + epoch)
            loader = DataLoader(datasets_["train"], batch_sampler=sampler, num_workers=config.num_workers,
                                collate_fn=collate_batch, generator=loader_gen)  # fmt: skip
            n_batches = len(sampler)
            bar = tqdm(total=n_batches, initial=resume_at, desc=f"{stage.name} epoch {epoch}",
                       disable=not accelerator.is_local_main_process, unit="batch")  # fmt: skip
            for batch in loader:
                i = state["batches_done"]
                sync = (i + 1) % gas == 0 or i + 1 == n_batches
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                inputs = model_inputs(batch, accelerator.device)
                if config.strata_dropout and "strata" in inputs:  # teaches the "unknown patient" stratum
                    drop = torch.rand(inputs["strata"].shape) < config.strata_dropout
                    inputs["strata"] = torch.where(drop.to(inputs["strata"].device), -1, inputs["strata"])
                with ctx, accelerator.autocast():
                    out = model(**inputs)
                    accelerator.backward(out.loss / gas)
                state["batches_done"] = i + 1
                state["samples"] += len(batch["index"]) * accelerator.num_processes
                bar.update(1)
                if not sync:
                    continue
                if config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                state["global_step"] += 1
                loss = out.loss.item()
                bar.set_postfix(loss=f"{loss:.3f}")
                log.write(event="train", stage=stage.name, epoch=epoch, step=state["global_step"], loss=loss,
                          lr=scheduler.get_last_lr()[-1])  # fmt: skip
                accelerator.log(
                    {"train/loss": loss, "train/lr": scheduler.get_last_lr()[-1]}, step=state["global_step"]
                )
                if state["global_step"] % config.save_steps == 0 and state["batches_done"] < n_batches:
                    save_checkpoint()
                if config.max_steps and state["global_step"] >= config.max_steps:
                    break
            bar.close()
            # end of epoch: evaluate, keep the best, maybe stop, checkpoint
            record = evaluate(stage.name, epoch)
            state["history"].append(record)
            if stage.final:
                value = record.get(config.eval_metric)
                if _better(config.eval_metric, value, state["best"]):
                    state.update(best=value, best_epoch=epoch, bad_evals=0)
                    run_folder.save_adapter(accelerator, model, out_dir / "best")
                else:
                    state["bad_evals"] += 1
                    if config.early_stopping_patience and state["bad_evals"] >= config.early_stopping_patience:
                        accelerator.print(f"early stopping: {state['bad_evals']} evaluations without improvement")
                        state["stopped_early"] = True
            state.update(epoch=epoch + 1, batches_done=0)
            save_checkpoint()
        state.update(stage=k + 1, epoch=0, batches_done=0)
    train_seconds = time.time() - started

    # ---------------------------------------------------------------- final artefacts
    if not (out_dir / "best").is_dir():  # no final-stage evaluation gave a finite metric: keep the last weights
        run_folder.save_adapter(accelerator, model, out_dir / "best")
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    digests = gather_object([run_folder.parameter_digest(unwrapped)])  # DDP proof: every rank holds the same weights
    run_folder.load_adapter_weights(unwrapped, out_dir / "best")
    seen_prevalence = batch_prevalence(config, train_prevalence)
    logit_shift = run_folder.shift_triage_prevalence(unwrapped, seen_prevalence, train_prevalence)
    test_pred = predict_loader(unwrapped, eval_loaders["test"], accelerator, adjusted=True, progress=main)
    val_pred = predict_loader(unwrapped, eval_loaders["val"], accelerator, adjusted=True)
    if main:
        decision = run_folder.decision_threshold(val_pred)
        test_metrics = score_predictions(
            test_pred, names, n_boot=config.bootstrap_samples, seed=config.seed, threshold=decision["value"]
        )
        val_metrics = score_predictions(val_pred, names, n_boot=0, seed=config.seed, threshold=decision["value"])
        run_folder.write_run(
            out_dir,
            accelerator=accelerator,
            model=model,
            config=config,
            strata_config=sc,
            prior=prior,
            render_config=render_config,
            test_pred=test_pred,
            test_metrics=test_metrics,
            decision=decision,
            val_metrics=val_metrics,
            state=state,
            schedule=schedule,
            subtypes=list(splits["train"]["subtype"]),
            train_seconds=train_seconds,
            rank_digests=digests,
            train_prevalence=train_prevalence,
            batch_prevalence=seen_prevalence,
            logit_shift=logit_shift,
        )
        accelerator.print(f"run folder: {out_dir}  test " + ", ".join(
            f"{k} {v:.4f}" for k, v in headline(test_metrics).items() if v is not None))  # fmt: skip
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """`finetune` / `vlm-ecg finetune` entry: parse the configuration and train."""
    import sys

    from .train_config import load_train_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_train_config(argv)
    except ConfigError as exc:
        print(f"finetune: configuration error: {exc}", file=sys.stderr)
        return 2
    train(config)
    return 0
