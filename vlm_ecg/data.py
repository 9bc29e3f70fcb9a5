"""Datasets of labelled ECGs: building, splitting, saving and loading.

A vlm_ecg data set is a `datasets.DatasetDict` with ``train`` / ``val`` / ``test`` splits whose rows hold one
standardised ECG (float32 ``(12, 5000)`` mV at 500 Hz) with its labels and confounders. Arrow storage is
memory-mapped, so a cohort of thousands of ECGs costs little RAM and loads instantly; images are not stored
(the renderer is fast enough to run in the data loader).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .ecg import LEADS, TARGET_DURATION_S, TARGET_FS_HZ, Ecg
from .errors import EcgFormatError
from .labels import CULPRITS, VESSELS, Confounders, Labels, Record

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
N_SAMPLES = int(TARGET_FS_HZ * TARGET_DURATION_S)
COLUMNS: tuple[str, ...] = (
    "id",
    "signal",
    "fs",
    "triage",
    "culprit",
    "stenosis",
    "subtype",
    "source",
    "age",
    "sex",
    "hypertension",
    "diabetes",
    "prior_mi",
)


def dataset_features(n_samples: int = N_SAMPLES):
    """The `datasets.Features` of a vlm_ecg data set (signal as a fixed-shape float32 array)."""
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "signal": datasets.Array2D(shape=(len(LEADS), n_samples), dtype="float32"),
            "fs": datasets.Value("float32"),
            "triage": datasets.Value("int8"),
            "culprit": datasets.Value("int16"),
            "stenosis": datasets.Sequence(datasets.Value("float32"), length=len(VESSELS)),
            "subtype": datasets.Value("string"),
            "source": datasets.Value("string"),
            "age": datasets.Value("float32"),
            "sex": datasets.Value("string"),
            "hypertension": datasets.Value("int8"),
            "diabetes": datasets.Value("int8"),
            "prior_mi": datasets.Value("int8"),
        }
    )


def record_to_row(record: Record) -> dict:
    """Flatten a `Record` into one data-set row; the ECG is standardised to 500 Hz, 10 s first."""
    ecg = record.ecg.standardize()
    lab, con = record.labels, record.confounders
    return {
        "id": record.id,
        "signal": ecg.signal,
        "fs": ecg.fs,
        "triage": lab.triage,
        "culprit": lab.culprit_index,
        "stenosis": np.asarray(lab.stenosis, dtype=np.float32),
        "subtype": lab.subtype,
        "source": str(ecg.meta.get("source", "")),
        "age": con.age_years,
        "sex": con.sex,
        "hypertension": con.hypertension,
        "diabetes": con.diabetes,
        "prior_mi": con.prior_mi,
    }


def row_to_record(row: dict) -> Record:
    """Rebuild a `Record` from a data-set row (inverse of `record_to_row`, up to standardisation)."""
    culprit = int(row["culprit"])
    ecg = Ecg(
        np.asarray(row["signal"], dtype=np.float32), float(row["fs"]), {"id": row["id"], "source": row["source"]}
    )
    labels = Labels(
        triage=int(row["triage"]),
        culprit=CULPRITS[culprit] if culprit >= 0 else None,
        stenosis=tuple(float(s) for s in row["stenosis"]),
        subtype=row["subtype"],
    )
    confounders = Confounders(
        age_years=float(row["age"]),
        sex=row["sex"],
        hypertension=int(row["hypertension"]),
        diabetes=int(row["diabetes"]),
        prior_mi=int(row["prior_mi"]),
    )
    return Record(ecg, labels, confounders)


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_dataset(records: Iterable[Record], chunk_size: int = 256):
    """Build a `datasets.Dataset` from records (any iterable: a generator keeps memory flat while building).

    Raises:
        ValueError: if `records` is empty or two records share an id.
    """
    import datasets

    features = dataset_features()
    parts = []
    seen: set[str] = set()
    for chunk in _chunks((record_to_row(r) for r in records), chunk_size):
        for row in chunk:
            if row["id"] in seen:
                raise ValueError(f"duplicate record id {row['id']!r}: ids must be unique within a data set")
            seen.add(row["id"])
        columns = {name: [row[name] for row in chunk] for name in COLUMNS}
        columns["signal"] = np.stack(columns["signal"])
        parts.append(datasets.Dataset.from_dict(columns, features=features))
    if not parts:
        raise ValueError("no records to build a data set from")
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def stratification_key(triage: np.ndarray, culprit: np.ndarray) -> np.ndarray:
    """One label per (triage, culprit) combination, so splits keep both the prevalence and the vessel mix."""
    return np.asarray(triage, dtype=np.int64) * 10 + np.asarray(culprit, dtype=np.int64).clip(-1, None)


def split_dataset(dataset, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0):
    """Seeded train / val / test split, stratified by triage and culprit.

    Strata too small to appear in every split (fewer than three members) are folded into the nearest
    larger stratum of the same triage class, so rare vessels never make the split fail.

    Returns:
        `datasets.DatasetDict` with ``train``, ``val`` and ``test``.
    """
    import datasets
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1), sum < 1"
        )
    triage = np.asarray(dataset["triage"])
    key = stratification_key(triage, np.asarray(dataset["culprit"]))
    values, counts = np.unique(key, return_counts=True)
    for value, count in zip(values, counts):
        if count < 3:
            key[key == value] = np.asarray(triage)[key == value][0] * 10 + 99
    if (np.unique(key, return_counts=True)[1] < 3).any():
        key = None  # too few records to stratify at all
    idx = np.arange(len(dataset))
    train_idx, rest_idx = train_test_split(
        idx, test_size=val_fraction + test_fraction, random_state=seed, stratify=key
    )
    rest_key = key[rest_idx] if key is not None else None
    if rest_key is not None and (np.unique(rest_key, return_counts=True)[1] < 2).any():
        rest_key = None
    val_idx, test_idx = train_test_split(
        rest_idx, test_size=test_fraction / (val_fraction + test_fraction), random_state=seed, stratify=rest_key
    )
    return datasets.DatasetDict(
        {name: dataset.select(np.sort(part)) for name, part in zip(SPLITS, (train_idx, val_idx, test_idx))}
    )


def save_dataset(dataset_dict, path: str | Path) -> Path:
    """Write a split data set to `path` (Arrow files; reload with `load_dataset_dir`)."""
    path = Path(path)
    dataset_dict.save_to_disk(str(path))
    return path


def load_dataset_dir(path: str | Path):
    """Load a data set saved by `save_dataset` (or any `save_to_disk` folder with our columns).

    Raises:
        EcgFormatError: the folder is missing, not a saved data set, or lacks columns we need.
    """
    import datasets

    path = Path(path)
    if not path.exists():
        raise EcgFormatError(path, "data set folder does not exist")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise EcgFormatError(path, f"not a saved `datasets` data set ({exc})") from exc
    splits = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    for name, split in splits.items():
        missing = [c for c in COLUMNS if c not in split.column_names]
        if missing:
            raise EcgFormatError(path, f"split {name!r} lacks the column(s) {', '.join(missing)}")
    return splits


def write_synthetic_dataset(
    out: str | Path,
    *,
    n: int = 2800,
    prevalence: float = 0.12,
    confounding: float = 1.0,
    noise: float = 1.0,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    wfdb_dir: str | Path | None = None,
    progress: bool = True,
    **cohort: object,
):
    """Generate the synthetic cohort, split it (seeded, stratified) and save it to `out`.

    The folder is written to a temporary sibling and renamed into place, so an interrupted run never leaves
    a half-written data set that a later run would trust.

    Args:
        out: destination folder of the `datasets.DatasetDict`.
        n, prevalence, confounding, noise, seed: the cohort (see `vlm_ecg.synth.SynthConfig`).
        val_fraction, test_fraction: split sizes; the split uses the same `seed`.
        wfdb_dir: if given, every record is also written there as WFDB (``<id>.hea`` + ``<id>.dat``).
        progress: show a tqdm progress bar while generating.
        cohort: further `SynthConfig` fields (e.g. ``st_mv_range=(0.02, 0.08)`` for subtler occlusion signs).

    Returns:
        The saved `datasets.DatasetDict`.
    """
    import shutil
    import tempfile

    from tqdm.auto import tqdm

    from .synth import SynthConfig, iter_cohort

    config = SynthConfig(n=n, prevalence=prevalence, confounding=confounding, noise=noise, seed=seed, **cohort)
    records = tqdm(iter_cohort(config), total=n, desc="synth", unit="rec", disable=not progress)
    if wfdb_dir is not None:
        records = _also_write_wfdb(records, Path(wfdb_dir))
    splits = split_dataset(build_dataset(records), val_fraction, test_fraction, seed=seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_dataset(splits, tmp / "data")
        if out.exists():
            shutil.rmtree(out)
        (tmp / "data").rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_dataset_dir(out)


def _also_write_wfdb(records: Iterable[Record], folder: Path) -> Iterator[Record]:
    from .io import write_ecg

    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        write_ecg(record.ecg, folder / f"{record.id}.hea")
        yield record
