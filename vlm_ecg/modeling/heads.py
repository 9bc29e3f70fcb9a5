"""Prediction heads conditioned on the confounder stratum z, and their masked losses.

The stratum embedding enters here, after the fusion, so that the fused embedding depends on the ECG only (the
feature space DRIL clusters in) and the back-door adjustment can re-run just the heads once per stratum.

Stenosis is one output per vessel, s = sigmoid(a) in [0, 1]. It is trained by a squared error on the fraction
and by a BCE on "significant (> threshold)" whose logit is a - logit(threshold): P(s > 0.7) is then a monotone
function of the same output and equals 1/2 exactly at s = 0.7, so one number serves as both the estimate and
the significance score.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import CULPRITS, VESSELS
from .configuration import VlmEcgConfig

__all__ = ["PredictionHeads", "head_losses"]


class PredictionHeads(nn.Module):
    """fused (B, F) + strata (B,) -> triage logits (B,), culprit logits (B, 4), stenosis logits (B, 3).

    Stratum ids run 0..num_strata-1; -1 (or `strata=None`) selects a learned "unknown stratum" embedding.
    """

    def __init__(self, config: VlmEcgConfig):
        super().__init__()
        d, h = config.fusion_hidden_size, config.head_hidden_size
        self.num_strata = config.num_strata
        self.strata_embedding = nn.Embedding(config.num_strata + 1, d) if config.num_strata else None
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, h), nn.GELU(), nn.Dropout(config.head_dropout))
        self.triage = nn.Linear(h, 1)
        self.culprit = nn.Linear(h, len(CULPRITS))
        self.stenosis = nn.Linear(h, len(VESSELS))

    def forward(
        self, fused: torch.Tensor, strata: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.strata_embedding is not None:
            if strata is None:
                strata = torch.full((fused.shape[0],), -1, dtype=torch.long, device=fused.device)
            strata = strata.long()
            if strata.shape != (fused.shape[0],) or bool(((strata < -1) | (strata >= self.num_strata)).any()):
                raise ValueError(
                    f"strata must be a (batch,) tensor of ids in -1..{self.num_strata - 1} (-1 = unknown), "
                    f"got shape {tuple(strata.shape)} with values {strata.unique().tolist()}"
                )
            fused = fused + self.strata_embedding(torch.where(strata < 0, self.num_strata, strata))
        elif strata is not None and bool((strata >= 0).any()):
            raise ValueError("strata were given but the model has num_strata=0 (no confounder conditioning)")
        hidden = self.mlp(fused)
        return self.triage(hidden).squeeze(-1), self.culprit(hidden), self.stenosis(hidden)


def head_losses(
    config: VlmEcgConfig,
    triage_logits: torch.Tensor,
    culprit_logits: torch.Tensor,
    stenosis_logits: torch.Tensor,
    triage_labels: torch.Tensor | None = None,
    culprit_labels: torch.Tensor | None = None,
    stenosis_labels: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-head losses over the labelled entries only; a head with no labelled entry in the batch is left out.

    Args:
        triage_labels: (B,) float, 1 / 0, -1 = unknown.
        culprit_labels: (B,) long index into CULPRITS, -100 = unknown.
        stenosis_labels: (B, 3) float fractions, NaN = unknown.

    Returns:
        {"triage" | "culprit" | "stenosis": weighted scalar loss} for the heads that had labels.
    """
    losses: dict[str, torch.Tensor] = {}
    if triage_labels is not None:
        known = triage_labels >= 0
        if bool(known.any()):
            pos_weight = None
            if config.triage_pos_weight is not None:
                pos_weight = torch.tensor(config.triage_pos_weight, device=triage_logits.device)
            loss = F.binary_cross_entropy_with_logits(
                triage_logits[known], triage_labels[known].to(triage_logits.dtype), pos_weight=pos_weight
            )
            losses["triage"] = config.triage_loss_weight * loss
    if culprit_labels is not None:
        known = culprit_labels != -100
        if bool(known.any()):
            weight = None
            if config.culprit_class_weights is not None:
                weight = torch.tensor(config.culprit_class_weights, device=culprit_logits.device)
            loss = F.cross_entropy(culprit_logits[known], culprit_labels[known].long(), weight=weight)
            losses["culprit"] = config.culprit_loss_weight * loss
    if stenosis_labels is not None:
        known = ~torch.isnan(stenosis_labels)
        if bool(known.any()):
            logits, target = stenosis_logits[known], stenosis_labels[known].to(stenosis_logits.dtype)
            threshold_logit = math.log(config.stenosis_threshold / (1.0 - config.stenosis_threshold))
            regression = F.mse_loss(torch.sigmoid(logits), target)
            significant = F.binary_cross_entropy_with_logits(
                logits - threshold_logit, (target > config.stenosis_threshold).to(logits.dtype)
            )
            losses["stenosis"] = config.stenosis_loss_weight * (regression + significant)
    return losses
