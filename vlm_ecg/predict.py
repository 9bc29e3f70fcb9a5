"""Load a trained vlm_ecg model and predict for ECG records, files or raw signal arrays.

    predictor = Predictor.from_pretrained("runs/default")             # a run folder, its final/, or a hub id
    result = predictor.predict("patient.hea")                          # -> Prediction (raw and adjusted triage, ...)
    probs = predictor.predict_signals(signals)                         # (B, 12, 5000) mV -> dict of arrays

The raw triage probability is P(y | x, z) with the patient's confounder stratum z (or the learned "unknown"
stratum when age / sex / history are not given); the adjusted one is the back-door estimate
P(y | do(x)) = sum_z P(y | x, z) P(z), which does not lean on who the patient is. The decision uses the
adjusted probability against the run's decision threshold (chosen on validation data at training time).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .ecg import Ecg
from .labels import CULPRITS, VESSELS, Confounders

logger = logging.getLogger(__name__)


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
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo_id=str(path_or_repo_id), **hub_kwargs))
        model, facts = load_final(path)
        return cls(model, facts, device)

    # ------------------------------------------------------------------ inputs
    def stratum_of(self, confounders: Confounders | None) -> int:
        """Stratum code of a patient under the run's binning; -1 (unknown) without confounders or strata."""
        if confounders is None or not self.config.num_strata or "strata" not in self.facts:
            return -1
        from .causal import StrataConfig, assign_strata

        sc = StrataConfig(**self.facts["strata"]["config"])
        c = confounders
        code = assign_strata([c.age_years], [c.sex], [c.hypertension], [c.diabetes], [c.prior_mi], sc)[0]
        return int(code)

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

        Raises:
            EcgError: the file cannot be read or the signal is unusable.
        """
        if not isinstance(ecg, Ecg):
            from .io import read_ecg

            ecg = read_ecg(ecg)
        std = ecg.standardize()
        stratum = self.stratum_of(confounders)
        result = self.predict_signals(std.signal[None], np.array([stratum]))
        adjusted = result.get("triage_prob_adjusted")
        decision_p = float(self.decision_prob(result)[0])
        return Prediction(
            id=str(std.meta.get("id", std.source)),
            triage_prob=float(result["triage_prob"][0]),
            triage_prob_adjusted=None if adjusted is None else float(adjusted[0]),
            decision=decision_p >= self.decision_threshold,
            decision_threshold=self.decision_threshold,
            culprit_probs={name: float(p) for name, p in zip(CULPRITS, result["culprit_probs"][0])},
            stenosis={name: float(s) for name, s in zip(VESSELS, result["stenosis"][0])},
            stratum=stratum,
            notes=list(std.meta.get("notes", [])),
        )
