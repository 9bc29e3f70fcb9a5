"""What a training run sees: the splits, the confounder strata, the DRIL stage plan and the batch samplers.

Kept apart from the loop (`vlm_ecg.train`) so that each decision can be tested without training: which data,
which rows in which stage, and how batches are composed inside a stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .causal import StrataConfig, StratifiedBalancedBatchSampler, strata_from_columns
from .data import load_dataset_dir, split_dataset, write_synthetic_dataset
from .errors import EcgFormatError
from .sampling import ShuffledBatchSampler
from .train_config import TrainConfig

logger = logging.getLogger(__name__)


def synthetic_cache_path(config: TrainConfig) -> Path:
    """Folder of the cached default cohort; its name holds every parameter that changes the data."""
    name = (
        f"synth-n{config.synth_n}-p{config.synth_prevalence:g}-c{config.synth_confounding:g}"
        f"-z{config.synth_noise:g}-s{config.seed}-v{config.val_fraction:g}-t{config.test_fraction:g}"
    )
    return Path(config.data_cache_dir) / name


def load_splits(config: TrainConfig, progress: bool = True):
    """The train / val / test `DatasetDict` of a run.

    ``data="synthetic"`` generates the default cohort once into `data_cache_dir` and reuses it afterwards. A
    saved data-set folder is used as it is (split with the run's seed when it holds a single split). A PTB-XL
    folder (with ``ptbxl_database.csv``) uses PTB-XL's own folds: 1-8 train, 9 validation, 10 test.

    Raises:
        EcgFormatError: the data path is missing or is neither a saved data set nor a PTB-XL folder.
    """
    if config.data == "synthetic":
        path = synthetic_cache_path(config)
        if not (path / "dataset_dict.json").is_file():
            logger.info("generating the synthetic cohort into %s (once; later runs reuse it)", path)
            write_synthetic_dataset(
                path,
                n=config.synth_n,
                prevalence=config.synth_prevalence,
                confounding=config.synth_confounding,
                noise=config.synth_noise,
                seed=config.seed,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                progress=progress,
            )
        splits = load_dataset_dir(path)
    else:
        path = Path(config.data)
        if (path / "ptbxl_database.csv").is_file():
            splits = _ptbxl_splits(path, config.ptbxl_sampling_rate_hz)
        elif path.is_dir():
            splits = load_dataset_dir(path)
            if set(splits) != {"train", "val", "test"}:
                if len(splits) != 1:
                    raise EcgFormatError(path, f"expected splits train/val/test or a single split, got {list(splits)}")
                splits = split_dataset(
                    next(iter(splits.values())), config.val_fraction, config.test_fraction, config.seed
                )
        else:
            raise EcgFormatError(path, "data must be 'synthetic', a saved data-set folder or a PTB-XL folder")
    return _limit(splits, config)


def _ptbxl_splits(root: Path, sampling_rate_hz: int):
    import datasets

    from .data import build_dataset
    from .ptbxl import read_ptbxl

    folds = {"train": list(range(1, 9)), "val": [9], "test": [10]}
    out = {}
    for name, fold in folds.items():
        records = read_ptbxl(root, sampling_rate_hz=sampling_rate_hz, folds=fold)
        if not records:
            raise EcgFormatError(root, f"PTB-XL folds {fold} ({name}) hold no records")
        out[name] = build_dataset(records)
    return datasets.DatasetDict(out)


def _limit(splits, config: TrainConfig):
    import datasets

    out = {}
    for name, split in splits.items():
        cap = config.max_train_samples if name == "train" else config.max_eval_samples
        out[name] = split.select(range(min(cap, len(split)))) if cap else split
    return datasets.DatasetDict(out)


def strata_config(config: TrainConfig) -> StrataConfig:
    return StrataConfig(
        age_bands_years=list(config.strata_age_bands_years),
        use_sex=config.strata_use_sex,
        history=config.strata_history,
    )


@dataclass
class Stage:
    """One DRIL stage (or the single stage of a plain run): rows of the training split and epochs on them."""

    name: str
    indices: np.ndarray
    epochs: int
    final: bool


def dril_features(train, config: TrainConfig, progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """Per-lead wave measurements (`vlm_ecg.measure.feature_vector`) of every training ECG: DRIL's space.

    Records where no beat can be delineated get the median feature vector (logged), so one bad ECG cannot
    stop a run; they still train in their class.
    """
    from tqdm.auto import tqdm

    from .ecg import Ecg
    from .errors import EcgError
    from .measure import feature_names, feature_vector

    names = feature_names()
    rows = np.full((len(train), len(names)), np.nan)
    signals = train.with_format("numpy", columns=["signal"])
    failed = 0
    for i in tqdm(range(len(train)), desc="DRIL features", unit="ecg", disable=not progress):
        try:
            rows[i] = feature_vector(Ecg(signals[i]["signal"], 500.0, {"id": f"train[{i}]"}))
        except EcgError:
            failed += 1
    if failed:
        logger.warning("%d of %d training ECGs could not be measured; they get the median features", failed, len(rows))
        rows = np.where(np.isnan(rows), np.nanmedian(rows, axis=0), rows)
    return rows, names


def plan_stages(config: TrainConfig, triage: np.ndarray, features: np.ndarray | None = None, names=None):
    """The stage plan: DRIL's subgroup stages then an all-data stage, or one all-data stage.

    Returns:
        (stages, DRIL report dict or None).
    """
    all_rows = np.arange(len(triage))
    if config.imbalance != "dril":
        return [Stage("all", all_rows, config.num_epochs, True)], None
    from .dril import DrilSchedule
    from .two_step import TwoStepClustering

    schedule = DrilSchedule(
        clusterer=TwoStepClustering(max_clusters=config.dril_max_clusters, random_state=config.seed),
        order=config.dril_order,
        replay_fraction=config.dril_replay_fraction,
        final_stage=True,
        random_state=config.seed,
    ).fit(features, triage, feature_names=names)
    stages = [
        Stage(f"dril-{k}-subgroup-{cluster}", idx, config.dril_epochs_per_stage, False)
        for k, (cluster, idx) in enumerate(zip(schedule.order_, schedule.stages_))
    ]
    stages.append(Stage("all", schedule.stages_[-1], config.num_epochs, True))
    return stages, schedule


def batch_prevalence(config: TrainConfig, train_prevalence: float) -> float:
    """Share of positives the loss effectively sees, from which probabilities are shifted back after training."""
    if config.sampler == "stratified":
        return 1.0 / (1 + config.sampler_negatives_per_positive)
    if config.imbalance in ("oversample", "class_weight"):
        return 0.5
    return train_prevalence


def make_sampler(config: TrainConfig, stage: Stage, stage_number: int, triage: np.ndarray, strata: np.ndarray,
                 num_replicas: int, rank: int):  # fmt: skip
    """The batch sampler of one stage; seeded by (run seed, stage), sharded by rank, resumable."""
    seed = config.seed * 1000 + stage_number
    if config.sampler == "stratified":
        return StratifiedBalancedBatchSampler(
            triage,
            strata,
            config.per_device_batch_size,
            indices=stage.indices,
            negatives_per_positive=config.sampler_negatives_per_positive,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
        )
    return ShuffledBatchSampler(
        stage.indices,
        config.per_device_batch_size,
        labels=triage,
        oversample=config.imbalance == "oversample",
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )


def split_strata(splits, config: TrainConfig) -> dict[str, np.ndarray]:
    """Stratum code of every row of every split."""
    sc = strata_config(config)
    return {name: strata_from_columns(split, sc) for name, split in splits.items()}
