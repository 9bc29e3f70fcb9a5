"""Gated fusion of the vision and signal embeddings.

Why a gate over the two pooled embeddings rather than cross-attention between their tokens: each branch already
ends in a Transformer that mixed its own tokens globally (the CLIP stage over the page, the cross-lead attention
over the signal), and both branches describe the *same* 10 s of ECG, so there is little token-to-token
correspondence left to learn. The gate is cheap on CPU, degrades gracefully to a single branch (the image-only /
signal-only switches use the same module), and its per-sample value says how much each prediction leaned on the
image versus the signal, which the explanations report. Cross-attention over 64 + 300 tokens would cost more than
the rest of the tiny model's head and would need a branch-dropout scheme to stay usable with one input.

    v = LN(W_v pool(vision)),  s = LN(W_s pool(signal)),  g = sigmoid(W_g [v; s]),  fused = g * v + (1 - g) * s
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration import VlmEcgConfig

__all__ = ["GatedFusion"]


class GatedFusion(nn.Module):
    """(B, D_vision) and/or (B, D_signal) -> (B, fusion_hidden_size) and the gate (B, fusion_hidden_size) or None."""

    def __init__(self, config: VlmEcgConfig, vision_size: int | None, signal_size: int | None):
        super().__init__()
        d = config.fusion_hidden_size
        self.vision_proj = nn.Sequential(nn.Linear(vision_size, d), nn.LayerNorm(d)) if vision_size else None
        self.signal_proj = nn.Sequential(nn.Linear(signal_size, d), nn.LayerNorm(d)) if signal_size else None
        self.gate = nn.Linear(2 * d, d) if vision_size and signal_size else None

    def forward(
        self, vision_embeds: torch.Tensor | None, signal_embeds: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        v = self.vision_proj(vision_embeds) if self.vision_proj is not None else None
        s = self.signal_proj(signal_embeds) if self.signal_proj is not None else None
        if v is not None and s is not None:
            gate = torch.sigmoid(self.gate(torch.cat([v, s], dim=-1)))
            return gate * v + (1.0 - gate) * s, gate
        return (v if v is not None else s), None
