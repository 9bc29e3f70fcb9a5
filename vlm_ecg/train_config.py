"""The fine-tuning configuration: one flat dataclass, loaded from YAML with command-line overrides.

    accelerate launch finetune --config finetune/configs/smoke.yaml --output_dir runs/smoke --learning_rate 3e-4

YAML values and command-line values go through the same typed parser (transformers' `HfArgumentParser`), so a
bad value or an unknown key fails the same way from either place, naming the key. Flat on purpose: every
field is one ``--key value`` away on the command line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["ConfigError", "TrainConfig", "load_train_config"]

DATA_SOURCES_HELP = "'synthetic' (the embedded cohort), a saved `datasets` folder, or a PTB-XL folder"
IMBALANCE = ("dril", "plain", "class_weight", "oversample")
SAMPLERS = ("stratified", "random")
DRIL_FEATURES = ("measurements", "embeddings")
DRIL_ORDERS = ("largest", "nearest", "random")
MIXED_PRECISION = ("no", "fp16", "bf16")
EVAL_METRICS = ("triage_auroc", "triage_auprc", "culprit_accuracy", "loss")


class ConfigError(ValueError):
    """A configuration key is unknown or its value is invalid; the message names the key."""


def _f(default, help: str, **kw):  # noqa: A002 - `help` is the HfArgumentParser metadata key
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything one fine-tuning run needs. Defaults are the embedded `tiny-cpu` run."""

    # ---- run
    output_dir: str = _f("runs/default", "Run folder: checkpoints, final adapter, metrics, plots, logs.")
    seed: int = _f(0, "Seed of everything random: cohort split, DRIL, sampler, model init, dropout.")
    # ---- data
    data: str = _f("synthetic", f"Training data: {DATA_SOURCES_HELP}.")
    data_cache_dir: str = _f("data/cache", "Where the synthetic cohort is generated once and cached.")
    synth_n: int = _f(2800, "Synthetic cohort size.")
    synth_prevalence: float = _f(0.12, "Synthetic occlusion prevalence.")
    synth_confounding: float = _f(1.0, "Synthetic confounding strength (negative reverses it).")
    synth_noise: float = _f(1.0, "Synthetic noise scale (0 = clean).")
    ptbxl_sampling_rate_hz: int = _f(100, "PTB-XL records to read: 100 or 500 Hz.")
    val_fraction: float = _f(0.15, "Validation share when the data has no split.")
    test_fraction: float = _f(0.15, "Test share when the data has no split.")
    max_train_samples: int = _f(0, "Use at most this many training ECGs (0 = all); for smoke runs.")
    max_eval_samples: int = _f(0, "Use at most this many validation / test ECGs (0 = all).")
    # ---- rendering
    render_layout: str = _f("3x4+II", "Paper layout of the rendered image.")
    render_cache: bool = _f(False, "Render every image once and cache it in memory instead of in the loader.")
    render_augment: bool = _f(False, "Training-time image augmentation (rotation, noise, blur, grid jitter).")
    cpu_threads: int = _f(0, "Torch threads per process on CPU (0 = cores / processes; accelerate launch sets 1).")
    num_workers: int = _f(1, "DataLoader worker processes (rendering runs there); 1 suits 2 CPU cores.")
    # ---- model
    preset: str = _f("tiny", "Vision tower preset: tiny, deepencoder or deepseek-ocr-2.")
    model_name_or_path: str = _f("", "Start from a saved VlmEcgModel folder / hub id instead of a preset.")
    local_tower: str = _f("", "deepencoder: SAM checkpoint (hub id or path); empty = the preset default.")
    global_tower: str = _f("", "deepencoder: CLIP checkpoint (hub id or path); empty = the preset default.")
    ocr2_tower: str = _f("", "deepseek-ocr-2: checkpoint (hub id or path).")
    signal_backbone: str = _f("scratch", "Time-series global transformer: 'scratch' or 'gpt2'.")
    signal_backbone_name_or_path: str = _f("", "Pretrained LM backbone for signal_backbone=gpt2 (id or path).")
    branches: str = _f("both", "Which branches feed the heads: both, image or signal.")
    lora_r: int = _f(8, "LoRA rank on the towers' attention projections.")
    lora_alpha: int = _f(16, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    # ---- optimisation
    num_epochs: int = _f(4, "Epochs of the final (all-data) stage; DRIL stages add `dril_epochs_per_stage` each.")
    per_device_batch_size: int = _f(16, "Batch size per process.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step.")
    learning_rate: float = _f(1e-3, "Peak learning rate of AdamW (trained-from-scratch parts).")
    lora_learning_rate: float = _f(0.0, "Peak learning rate of LoRA weights (0 = same as learning_rate).")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    warmup_ratio: float = _f(0.05, "Share of all optimizer steps spent warming up linearly.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).")
    mixed_precision: str = _f("no", "no, fp16 or bf16 (fp16 only on GPUs).")
    # ---- imbalance
    imbalance: str = _f("dril", f"Imbalance handling: {', '.join(IMBALANCE)}.")
    dril_features: str = _f("measurements", "DRIL feature space: per-lead wave measurements or frozen embeddings.")
    dril_order: str = _f("nearest", "DRIL stage order: largest, nearest (to the minority) or random.")
    dril_replay_fraction: float = _f(0.2, "Share of each earlier subgroup replayed in later DRIL stages.")
    dril_max_clusters: int = _f(15, "Maximum number of majority subgroups (k is chosen by BIC).")
    dril_epochs_per_stage: int = _f(1, "Epochs per DRIL subgroup stage.")
    # ---- confounders
    sampler: str = _f("stratified", "Batch composition: stratified (labels balanced inside strata) or random.")
    sampler_negatives_per_positive: int = _f(1, "Stratified sampler: negatives per positive inside each stratum.")
    strata_age_bands_years: list[float] = _f([0.0, 50.0, 65.0, 200.0], "Age band edges of the strata.")
    strata_use_sex: bool = _f(True, "Strata split by sex.")
    strata_history: str = _f("any", "History in the strata: none, any or each.")
    condition_on_strata: bool = _f(True, "Feed the stratum z to the model (needed for back-door adjustment).")
    strata_dropout: float = _f(
        0.1, "Share of training samples shown as 'unknown stratum' (for patients without data)."
    )
    # ---- evaluation, checkpoints, logging
    eval_metric: str = _f("triage_auroc", f"Validation metric that picks the best checkpoint: {EVAL_METRICS}.")
    early_stopping_patience: int = _f(3, "Stop after this many evaluations without improvement (0 = never).")
    save_steps: int = _f(100, "Save a resumable checkpoint every N optimizer steps (and at every stage end).")
    checkpoints_total_limit: int = _f(2, "Keep at most this many step checkpoints.")
    resume_from_checkpoint: str = _f("", "'latest' or a checkpoint folder to resume from.")
    bootstrap_samples: int = _f(200, "Bootstrap resamples for the confidence intervals of the final metrics.")
    report_to: str = _f("tensorboard", "Tracker: tensorboard or none (a JSONL log is always written).")
    max_steps: int = _f(0, "Stop after this many optimizer steps in total (0 = no limit); for smoke tests.")

    def __post_init__(self) -> None:
        choices = {
            "imbalance": IMBALANCE,
            "sampler": SAMPLERS,
            "dril_features": DRIL_FEATURES,
            "dril_order": DRIL_ORDERS,
            "mixed_precision": MIXED_PRECISION,
            "eval_metric": EVAL_METRICS,
            "branches": ("both", "image", "signal"),
            "preset": ("tiny", "deepencoder", "deepseek-ocr-2"),
            "signal_backbone": ("scratch", "gpt2"),
            "strata_history": ("none", "any", "each"),
            "report_to": ("tensorboard", "none"),
            "render_layout": ("3x4+II", "3x4+3", "6x2", "12x1"),
            "ptbxl_sampling_rate_hz": (100, 500),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: {getattr(self, key)!r} is not one of {', '.join(map(str, allowed))}")
        positive = ("synth_n", "per_device_batch_size", "gradient_accumulation_steps", "num_epochs", "save_steps")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        non_negative = (
            "num_workers", "cpu_threads", "max_train_samples", "max_eval_samples", "early_stopping_patience",
            "max_steps", "dril_epochs_per_stage", "checkpoints_total_limit", "weight_decay", "max_grad_norm",
            "lora_dropout", "lora_learning_rate", "bootstrap_samples",
        )  # fmt: skip
        for key in non_negative:
            if not getattr(self, key) >= 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        for key in ("synth_prevalence", "dril_replay_fraction", "warmup_ratio", "strata_dropout"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}: must lie in [0, 1], got {getattr(self, key)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate: must be a positive number, got {self.learning_rate}")
        if (
            not 0 < self.val_fraction < 1
            or not 0 < self.test_fraction < 1
            or self.val_fraction + self.test_fraction >= 1
        ):
            raise ConfigError("val_fraction / test_fraction: need both in (0, 1) with sum < 1")
        if not 1 <= self.dril_max_clusters <= 50:
            raise ConfigError(f"dril_max_clusters: must lie in [1, 50], got {self.dril_max_clusters}")
        r = self.sampler_negatives_per_positive
        if r < 1 or (self.sampler == "stratified" and self.per_device_batch_size % (1 + r)):
            raise ConfigError(
                f"sampler_negatives_per_positive: need r >= 1 and per_device_batch_size a multiple of 1 + r "
                f"(got r={r}, batch {self.per_device_batch_size})"
            )
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ConfigError(f"lora_r / lora_alpha: must be >= 1, got {self.lora_r} / {self.lora_alpha}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def _yaml_to_argv(values: dict, source: str) -> list[str]:
    """Turn YAML key/values into ``--key value`` strings so YAML and the command line share one parser."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    argv: list[str] = []
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r} (see `vlm-ecg finetune --help` for the keys)")
        if isinstance(value, dict):
            raise ConfigError(f"{source}: key {key!r} must be a plain value or a list, got a mapping")
        argv.append(f"--{key}")
        if isinstance(value, list):
            argv.extend(str(v) for v in value)
        elif isinstance(value, bool):
            argv.append("true" if value else "false")
        elif value is None:
            raise ConfigError(f"{source}: key {key!r} has no value")
        else:
            argv.append(str(value))
    return argv


def build_arg_parser():
    """The typed parser of `TrainConfig` (plus ``--config``), shared by `finetune` and `vlm-ecg finetune`."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(TrainConfig, prog="finetune", exit_on_error=False, description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=str, default=None, help="YAML file of TrainConfig keys.")
    return parser


def load_train_config(argv: list[str] | None = None) -> TrainConfig:
    """Parse ``[--config FILE.yaml] [--key value ...]``: YAML first, command-line values override it.

    Raises:
        ConfigError: unknown key, bad value or unreadable YAML, with the key (and file) named.
    """
    import argparse
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_arg_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=str, default=None)
    known, rest = pre.parse_known_args(argv)
    yaml_argv: list[str] = []
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise ConfigError(f"--config: file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of TrainConfig keys, got {type(values).__name__}")
        yaml_argv = _yaml_to_argv(values, str(path))
    try:
        config, *_, remaining = parser.parse_args_into_dataclasses(
            args=yaml_argv + rest, return_remaining_strings=True
        )
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if remaining:
        raise ConfigError(f"unknown argument(s) {' '.join(remaining)} (see `finetune --help` for the keys)")
    return config
