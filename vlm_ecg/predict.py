"""Load a trained vlm_ecg model and predict for ECG records, files or raw signal arrays.

    predictor = Predictor.from_pretrained("runs/default")             # a run folder, its final/, or a hub id
    result = predictor.predict("patient.hea")                          # -> Prediction (raw and adjusted triage, ...)
    probs = predictor.predict_signals(signals)                         # (B, 12, 5000) mV -> dict of arrays
    rows = predictor.predict_files(["ecgs/", "x.csv"])                 # one row per ECG, errors as a column
    write_predictions_csv(rows, "preds.csv")

The raw triage probability is P(y | x, z) with the patient's confounder stratum z (or the learned "unknown"
stratum when age / sex / history are not given); the adjusted one is the back-door estimate
P(y | do(x)) = sum_z P(y | x, z) P(z), which does not lean on who the patient is. The decision uses the
adjusted probability against the run's decision threshold (chosen on validation data at training time).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .ecg import Ecg
from .errors import EcgError
from .labels import CULPRITS, VESSELS, Confounders

logger = logging.getLogger(__name__)

# Columns of the predictions table (`predict_files`, `vlm-ecg predict`), in order.
ROW_FIELDS: tuple[str, ...] = (
    "id",
    "path",
    "triage_prob",
    "triage_prob_adjusted",
    "decision",
    "decision_threshold",
    "culprit",
    *(f"p_{name}" for name in CULPRITS),
    *(f"stenosis_{name}" for name in VESSELS),
    "stratum",
    "notes",
    "error",
)
# What a folder contributes: a WFDB record once (by its header), NPZ and CSV / TSV files. WFDB sample files with no
# header beside them are listed too, so that they get an error row instead of vanishing silently.
_FOLDER_SUFFIXES = (".hea", ".npz", ".csv", ".tsv")
_WFDB_SAMPLE_SUFFIXES = (".dat", ".mat")
DEFAULT_RUN = Path("runs") / "default"  # what `accelerate launch finetune` (configs/tiny-cpu.yaml) writes


@dataclass
class Prediction:
    """What the model says about one ECG."""

    id: str
    triage_prob: float
    triage_prob_adjusted: float | None
    decision: bool
    decision_threshold: float
    culprit_probs: dict[str, float]
    stenosis: dict[str, float]
    stratum: int = -1
    notes: list[str] = field(default_factory=list)

    @property
    def culprit(self) -> str:
        return max(self.culprit_probs, key=self.culprit_probs.get)

    def to_dict(self) -> dict:
        return {**asdict(self), "culprit": self.culprit}

    def to_row(self, path: str | Path = "") -> dict:
        """One flat row of the predictions table (`ROW_FIELDS`); `path` is the file the ECG came from."""
        row = {
            "id": self.id,
            "path": str(path),
            "triage_prob": self.triage_prob,
            "triage_prob_adjusted": "" if self.triage_prob_adjusted is None else self.triage_prob_adjusted,
            "decision": int(self.decision),
            "decision_threshold": self.decision_threshold,
            "culprit": self.culprit,
            **{f"p_{name}": p for name, p in self.culprit_probs.items()},
            **{f"stenosis_{name}": v for name, v in self.stenosis.items()},
            "stratum": self.stratum,
            "notes": "; ".join(self.notes),
            "error": "",
        }
        return {key: row[key] for key in ROW_FIELDS}


def error_row(path: str | Path, error: str | BaseException, id: str = "") -> dict:
    """The predictions-table row of an ECG that could not be predicted: only id, path and the error filled in."""
    row = dict.fromkeys(ROW_FIELDS, "")
    row.update(id=id or _record_id(Path(path)), path=str(path), error=str(error))
    return row


def _record_id(path: Path) -> str:
    return path.stem if path.suffix.lower() in (".hea", *_WFDB_SAMPLE_SUFFIXES, ".npz", ".csv", ".tsv") else path.name


def confounders_from_meta(meta: dict) -> Confounders | None:
    """The patient factors a file states (``age_years``, ``sex`` in `Ecg.meta`), or None when it states none.

    History (hypertension, diabetes, prior MI) is never in an ECG file, so it stays unknown.
    """
    age = meta.get("age_years")
    sex = meta.get("sex") if meta.get("sex") in ("M", "F") else ""
    try:
        age = float(age) if age is not None else math.nan
    except (TypeError, ValueError):
        age = math.nan
    if math.isnan(age) and not sex:
        return None
    return Confounders(age_years=age, sex=sex)


def ecg_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into the list of ECGs to predict, one entry per record.

    A file given by name is always kept (a bad one becomes an error row). A folder contributes, recursively and
    sorted, every WFDB header, ``.npz``, ``.csv`` and ``.tsv`` file, plus WFDB sample files (``.dat`` / ``.mat``)
    that have no header beside them; other files (READMEs, checksums, ...) are skipped. A WFDB record named
    twice (``x.hea`` and ``x.dat``) is kept once, by its header.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                suffix = f.suffix.lower()
                if not f.is_file() or f.name.startswith("."):
                    continue
                if suffix in _FOLDER_SUFFIXES or (
                    suffix in _WFDB_SAMPLE_SUFFIXES and not f.with_suffix(".hea").is_file()
                ):
                    out.append(f)
        elif p.suffix.lower() in _WFDB_SAMPLE_SUFFIXES and p.with_suffix(".hea").is_file():
            out.append(p.with_suffix(".hea"))
        else:
            out.append(p)
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def resolve_run(run: str | Path | None) -> str | Path:
    """The run a command loads: `run` as given (a run folder, its final/, or a hub id), else `DEFAULT_RUN`.

    Raises:
        FileNotFoundError: no `run` given and no default run, with the command that trains one.
    """
    if run is not None:
        return run
    if DEFAULT_RUN.is_dir():
        return DEFAULT_RUN
    raise FileNotFoundError(
        f"no run given and no default run at {DEFAULT_RUN}: train it with `accelerate launch finetune` "
        "(the embedded default config writes runs/default), or pass --run RUN (a run folder or a hub id USER/NAME)"
    )


def run_root(path: str | Path) -> Path:
    """The folder holding a run's extras (metrics.json, plots/, explainer/) for a path `Predictor` loads.

    ``runs/NAME`` and ``runs/NAME/final`` both give ``runs/NAME``; a pushed adapter (a hub snapshot, where the
    adapter and the extras share one folder) gives itself.
    """
    path = Path(path)
    if (path / "final").is_dir():
        return path
    if path.name == "final" and (path.parent / "metrics.json").is_file():
        return path.parent
    return path


def write_predictions_csv(rows: list[dict], path: str | Path) -> Path:
    """Write the predictions table (header `ROW_FIELDS`, one line per row) to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROW_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    return path


class Predictor:
    """A trained model plus everything needed to feed it: rendering, image processing, strata, threshold.

    Args:
        model: a `VlmEcgModel` or its peft wrapper, in eval mode.
        facts: the run facts (``run.json``): strata binning and prior, rendering, decision threshold.
        device: where the model runs.
    """

    def __init__(self, model, facts: dict | None = None, device: str | torch.device = "cpu"):
        from .modeling import VlmEcgImageProcessor
        from .render import RenderConfig

        self.model = model.to(device).eval()
        self.facts = dict(facts or {})
        self.device = torch.device(device)
        self.config = model.config
        self.processor = VlmEcgImageProcessor.from_config(self.config) if self.config.uses_image else None
        render = dict(self.facts.get("render") or {"image_size_px": self.config.vision_config.image_size})
        for key, value in list(render.items()):
            if isinstance(value, list):
                render[key] = tuple(value)
        self.render_config = RenderConfig(**render)
        self.decision_threshold = float(self.facts.get("decision_threshold", {}).get("value", 0.5))
        self.run_dir: Path | None = None  # where metrics.json, plots/ and explainer/ live (set by from_pretrained)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, device: str = "cpu", **hub_kwargs) -> Predictor:
        """Load from a run folder, its ``final/`` folder, or a hub repository of a pushed adapter.

        A local path is used when it exists; anything else is treated as a hub repo id and downloaded with
        `huggingface_hub.snapshot_download` (``hub_kwargs``: revision, token, cache_dir, ...), then loaded by the
        same code as a local folder.
        """
        from .run_folder import load_final

        path = Path(path_or_repo_id)
        if not path.exists():
            text = str(path_or_repo_id)
            if text.startswith((".", "/", "~")) or text.count("/") != 1 or "\\" in text:
                raise FileNotFoundError(f"{text}: no such run folder (and not a hub repo id USER/NAME)")
            from huggingface_hub import snapshot_download

            try:
                path = Path(snapshot_download(repo_id=text, **hub_kwargs))
            except (OSError, ValueError) as exc:  # not found, offline, invalid id
                raise FileNotFoundError(f"{text}: no such local folder, and not fetched from the hub: {exc}") from exc
        model, facts = load_final(path)
        predictor = cls(model, facts, device)
        predictor.run_dir = run_root(path)
        return predictor

    # ------------------------------------------------------------------ inputs
    @property
    def strata_config(self):
        """The run's confounder binning (`StrataConfig`), None when the model has no strata."""
        if not self.config.num_strata or "strata" not in self.facts:
            return None
        from .causal import StrataConfig

        return StrataConfig(**self.facts["strata"]["config"])

    def stratum_of(self, confounders: Confounders | None) -> int:
        """Stratum code of a patient under the run's binning; -1 (unknown) without confounders or strata."""
        sc = self.strata_config
        if confounders is None or sc is None:
            return -1
        from .causal import assign_strata

        c = confounders
        code = assign_strata([c.age_years], [c.sex], [c.hypertension], [c.diabetes], [c.prior_mi], sc)[0]
        return int(code)

    def strata_of_rows(self, dataset) -> np.ndarray:
        """(len(dataset),) stratum codes of a dataset's rows (its age / sex / history columns) under the run's
        binning; all -1 (unknown) when the model has no strata."""
        sc = self.strata_config
        if sc is None:
            return np.full(len(dataset), -1)
        from .causal import strata_from_columns

        return np.asarray(strata_from_columns(dataset, sc))

    def images(self, signals: np.ndarray) -> torch.Tensor:
        """(B, 12, n) mV at 500 Hz -> (B, 3, S, S) normalised pixel values, as in training."""
        from .render import render_ecg

        return self.processor([render_ecg(s, self.render_config, fs_hz=500.0) for s in signals])

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_signals(self, signals: np.ndarray, strata: np.ndarray | None = None, batch_size: int = 32) -> dict:
        """Batched prediction on standardised signals: the black box the explainers query.

        Args:
            signals: (B, 12, 5000) float mV at 500 Hz.
            strata: (B,) stratum codes, -1 unknown (default all unknown).

        Returns:
            dict of numpy arrays: triage_prob (B,), triage_prob_adjusted (B,) when the model has a prior,
            culprit_probs (B, 4), stenosis (B, 3).
        """
        signals = np.asarray(signals, dtype=np.float32)
        if signals.ndim != 3 or signals.shape[1] != 12:
            raise ValueError(f"signals must be (B, 12, n) in mV, got shape {signals.shape}")
        strata = np.full(len(signals), -1) if strata is None else np.asarray(strata)
        adjusted = bool(self.config.num_strata) and self.config.strata_prior is not None
        parts: dict[str, list] = {}
        for start in range(0, len(signals), batch_size):
            chunk = signals[start : start + batch_size]
            inputs = {"signal": torch.from_numpy(chunk).to(self.device)}
            if self.processor is not None:
                inputs["pixel_values"] = self.images(chunk).to(self.device)
            if self.config.num_strata:
                inputs["strata"] = torch.as_tensor(strata[start : start + batch_size], device=self.device).long()
            out = self.model(**inputs)
            rows = {
                "triage_prob": torch.sigmoid(out.triage_logits.float()),
                "culprit_probs": torch.softmax(out.culprit_logits.float(), dim=-1),
                "stenosis": out.stenosis.float(),
            }
            if adjusted:
                rows["triage_prob_adjusted"] = self.model.predict_adjusted(fused_embeds=out.fused_embeds).triage_probs
            for key, value in rows.items():
                parts.setdefault(key, []).append(value.float().cpu().numpy())
        return {key: np.concatenate(value) for key, value in parts.items()}

    def decision_prob(self, result: dict) -> np.ndarray:
        """The probability the decision is made on: adjusted when available, raw otherwise."""
        return result.get("triage_prob_adjusted", result["triage_prob"])

    def predict(self, ecg: Ecg | str | Path, confounders: Confounders | None = None) -> Prediction:
        """Predict for one record or file (read, resampled to 500 Hz and fitted to 10 s first).

        Args:
            ecg: a record or a file `vlm_ecg.io.read_ecg` reads.
            confounders: the patient; None = unknown (use `confounders_from_meta` for what a file states).

        Raises:
            EcgError: the file cannot be read or the signal is unusable.
        """
        if not isinstance(ecg, Ecg):
            from .io import read_ecg

            ecg = read_ecg(ecg)
        std = ecg.standardize()
        stratum = self.stratum_of(confounders)
        result = self.predict_signals(std.signal[None], np.array([stratum]))
        return self._prediction(std, stratum, result, 0)

    def _prediction(self, std: Ecg, stratum: int, result: dict, i: int) -> Prediction:
        """Row `i` of a `predict_signals` result as a `Prediction` of the standardised record `std`."""
        adjusted = result.get("triage_prob_adjusted")
        decision_p = float(self.decision_prob(result)[i])
        return Prediction(
            id=str(std.meta.get("id", std.source)),
            triage_prob=float(result["triage_prob"][i]),
            triage_prob_adjusted=None if adjusted is None else float(adjusted[i]),
            decision=decision_p >= self.decision_threshold,
            decision_threshold=self.decision_threshold,
            culprit_probs={name: float(p) for name, p in zip(CULPRITS, result["culprit_probs"][i])},
            stenosis={name: float(s) for name, s in zip(VESSELS, result["stenosis"][i])},
            stratum=stratum,
            notes=list(std.meta.get("notes", [])),
        )

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        batch_size: int = 16,
        use_file_confounders: bool = True,
        progress: bool = True,
    ) -> list[dict]:
        """Predict for files and folders: one row (`ROW_FIELDS`) per ECG, failures as rows with an ``error``.

        Files are read, standardised and predicted `batch_size` at a time, so a folder of thousands of ECGs never
        sits in memory at once. A file that cannot be read or whose signal is unusable gets a row with its
        `EcgError` message in ``error`` and the batch goes on.

        Args:
            paths: files (any format `read_ecg` reads; a WFDB record by its header, sample file or name) and
                folders (see `ecg_inputs`).
            batch_size: ECGs per model call.
            use_file_confounders: condition the raw probability on the age / sex a file states
                (`confounders_from_meta`); otherwise every patient is "unknown". The adjusted probability and
                the decision do not depend on it.
            progress: show a tqdm progress bar.
        """
        from .io import read_ecg

        files = ecg_inputs(paths)
        rows: list[dict] = []
        bar = tqdm(total=len(files), desc="predict", unit="ecg", disable=not progress)
        for start in range(0, len(files), batch_size):
            chunk_rows: list[dict | None] = []
            good: list[tuple[int, Path, Ecg, int]] = []
            for path in files[start : start + batch_size]:
                try:
                    std = read_ecg(path).standardize()
                except EcgError as exc:
                    chunk_rows.append(error_row(path, exc))
                    continue
                confounders = confounders_from_meta(std.meta) if use_file_confounders else None
                good.append((len(chunk_rows), path, std, self.stratum_of(confounders)))
                chunk_rows.append(None)
            if good:
                signals = np.stack([std.signal for _, _, std, _ in good])
                result = self.predict_signals(signals, np.array([z for *_, z in good]), batch_size=batch_size)
                for i, (slot, path, std, stratum) in enumerate(good):
                    chunk_rows[slot] = self._prediction(std, stratum, result, i).to_row(path)
            rows.extend(chunk_rows)
            bar.update(len(chunk_rows))
        bar.close()
        failed = sum(1 for row in rows if row["error"])
        logger.info("predicted %d of %d ECGs (%d failed)", len(rows) - failed, len(rows), failed)
        return rows
