"""The vision branch: DeepSeek-OCR's global-local encoder over a rendered ECG page, and the tower loaders.

Global-local presets (`tiny`, `deepencoder`), one code path::

    pixels (B, 3, S, S)
      -> local stage: SAM ViTDet-style ViT, 16-px patches, windowed attention with a few global blocks, neck
         (B, C_neck, S/16, S/16)
      -> 16x compressor: two 3x3 stride-2 convolutions (C_neck -> C_mid -> D), each halving H and W
         (B, D, S/64, S/64): 512 px -> 8 x 8 = 64 tokens, 1024 px -> 16 x 16 = 256 tokens
      -> global stage: a CLIP ViT fed the compressed grid as its patch embeddings (class token + interpolated
         position embeddings + pre-layernorm + encoder), dense attention over the few tokens
      -> fusion (DeepSeek-OCR): global tokens concatenated channel-wise with the compressed local tokens (2D),
         then a linear projector -> (B, N, projection_dim)

The expensive high-resolution stage only uses windowed attention (window 14 with global blocks 2, 5, 8, 11 in
SAM ViT-B; window 8 with global block 3 in tiny), and the dense global stage sees 16x fewer tokens.

The `deepseek-ocr-2` preset wraps transformers' `DeepseekOcr2VisionModel` (SAM windowed encoder -> 16x
downsampling -> its own global encoder with learned queries) unchanged, followed by the projector.

Submodule names (`local_tower`, `compressor`, `global_tower`, `ocr2_tower`, `projector`) are a contract with LoRA
target patterns and saved adapters (see `vlm_ecg.modeling.lora`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    CLIPVisionModel,
    DeepseekOcr2Model,
    DeepseekOcr2VisionModel,
    SamVisionModel,
)
from transformers.utils import ModelOutput

from .configuration import GLOBAL_TOWER_TYPES, LOCAL_TOWER_TYPES, OCR2_TOWER_TYPES, VlmEcgVisionConfig

logger = logging.getLogger(__name__)

__all__ = [
    "DeepseekOcr2Tower",
    "GlobalLocalVisionTower",
    "TokenCompressor",
    "VisionTowerOutput",
    "build_vision_tower",
    "load_global_tower",
    "load_local_tower",
    "load_ocr2_tower",
]


@dataclass
class VisionTowerOutput(ModelOutput):
    """Output of a vision tower.

    Attributes:
        last_hidden_state: (B, N, projection_dim) vision tokens handed to the fusion.
        pooler_output: (B, projection_dim) mean over the tokens.
        grid_size: (h, w) of the token grid (None for the deepseek-ocr-2 query tokens).
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    grid_size: tuple[int, int] | None = None


class TokenCompressor(nn.Module):
    """DeepSeek-OCR's 16x token compressor: two 3x3 stride-2 convolutions (no norm or activation, as in the paper)."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernel_size=3, stride=2, padding=1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(features))  # (B, C, h, w) -> (B, D, h/4, w/4)


class GlobalLocalVisionTower(nn.Module):
    """SAM-style local stage -> 16x compressor -> CLIP-style global stage -> DeepSeek-OCR fusion projector."""

    def __init__(self, config: VlmEcgVisionConfig):
        super().__init__()
        self.config = config
        self.local_tower = SamVisionModel(config.local_config)
        self.compressor = TokenCompressor(config.local_config.output_channels, config.compressor_channels)
        self.global_tower = CLIPVisionModel(config.global_config)
        width = config.global_config.hidden_size
        self.projector = nn.Linear(2 * width, config.projection_dim)
        # CLIP's own patch embedding and post-layernorm are bypassed (the compressed grid is its input and we read
        # all tokens, as DeepSeek-OCR does): frozen, so that no optimizer or DDP waits for their gradients.
        for module in (self.global_tower.embeddings.patch_embedding, self.global_tower.post_layernorm):
            module.requires_grad_(False)

    def encode_local(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Local stage at any resolution that tiles into patches: (B, 3, H, W) -> neck features (B, C, H/p, W/p).

        Runs SAM's own patch projection, layers and neck; the absolute position table is interpolated when the
        grid differs from the configured one (SAM's `forward` only accepts its configured size).
        """
        encoder = self.local_tower.vision_encoder
        hidden = encoder.patch_embed.projection(pixel_values).permute(0, 2, 3, 1)  # (B, 3, H, W) -> (B, h, w, C)
        if encoder.pos_embed is not None:
            hidden = hidden + _resize_grid(encoder.pos_embed, hidden.shape[1], hidden.shape[2])
        for layer in encoder.layers:
            hidden = layer(hidden)
        return encoder.neck(hidden)  # (B, h, w, C) -> (B, C_neck, h, w)

    def encode_global(self, tokens: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """Global stage over patch-embedding tokens: (B, N, D) -> (B, N, D), the class token dropped.

        CLIP's `forward` cannot take embeddings, so we run its parts: class token, position embeddings interpolated
        to `grid_size`, pre-layernorm, encoder.
        """
        tower = self.global_tower
        embeddings = tower.embeddings
        class_token = embeddings.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        hidden = torch.cat([class_token, tokens], dim=1)  # (B, N, D) -> (B, 1 + N, D)
        patch = embeddings.patch_size
        hidden = hidden + embeddings.interpolate_pos_encoding(hidden, grid_size[0] * patch, grid_size[1] * patch)
        hidden = tower.encoder(inputs_embeds=tower.pre_layrnorm(hidden)).last_hidden_state
        return hidden[:, 1:]

    def forward(self, pixel_values: torch.Tensor) -> VisionTowerOutput:
        local = self.compressor(self.encode_local(pixel_values))  # (B, D, h, w), h = H / 64
        grid_size = (local.shape[2], local.shape[3])
        local_tokens = local.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D)
        global_tokens = self.encode_global(local_tokens, grid_size)
        tokens = self.projector(torch.cat([global_tokens, local_tokens], dim=-1))  # (B, N, 2D) -> (B, N, P)
        return VisionTowerOutput(last_hidden_state=tokens, pooler_output=tokens.mean(dim=1), grid_size=grid_size)


class DeepseekOcr2Tower(nn.Module):
    """transformers' `DeepseekOcr2VisionModel` used as-is (1024 px -> 256 query tokens), then the projector."""

    def __init__(self, config: VlmEcgVisionConfig):
        super().__init__()
        self.config = config
        self.ocr2_tower = DeepseekOcr2VisionModel(config.ocr2_config)
        self.projector = nn.Linear(config.ocr2_config.encoder_config.hidden_size, config.projection_dim)

    def forward(self, pixel_values: torch.Tensor) -> VisionTowerOutput:
        tokens = self.projector(self.ocr2_tower(pixel_values).last_hidden_state)  # (B, Q, D) -> (B, Q, P)
        return VisionTowerOutput(last_hidden_state=tokens, pooler_output=tokens.mean(dim=1))


def build_vision_tower(config: VlmEcgVisionConfig) -> GlobalLocalVisionTower | DeepseekOcr2Tower:
    """The tower of `config.preset`, random-init (weights come from `from_pretrained` or `VlmEcgModel.from_preset`)."""
    if config.preset == "deepseek-ocr-2":
        return DeepseekOcr2Tower(config)
    return GlobalLocalVisionTower(config)


def _resize_grid(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize of a (1, h0, w0, C) position table to (1, height, width, C); unchanged if it already fits."""
    if table.shape[1] == height and table.shape[2] == width:
        return table
    resized = F.interpolate(
        table.permute(0, 3, 1, 2).float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True
    )
    return resized.permute(0, 2, 3, 1).to(table.dtype)


def _checkpoint_type(name_or_path: str, slot: str, accepted: tuple[str, ...], **kwargs) -> str:
    model_type = AutoConfig.from_pretrained(name_or_path, **kwargs).model_type
    if model_type not in accepted:
        raise ValueError(
            f"{name_or_path}: a {model_type!r} checkpoint cannot be the {slot}; it accepts checkpoints of model type "
            f"{', '.join(accepted)} (e.g. a full SamModel/CLIPModel checkpoint or its vision model alone)"
        )
    return model_type


def load_local_tower(name_or_path: str, **kwargs) -> SamVisionModel:
    """The local stage from a SAM checkpoint (hub id or folder; a full `SamModel` checkpoint's vision encoder is read).

    Keyword arguments go to `from_pretrained` (e.g. `revision`, `dtype`).
    """
    _checkpoint_type(name_or_path, "local (SAM) tower", LOCAL_TOWER_TYPES, **kwargs)
    return SamVisionModel.from_pretrained(name_or_path, **kwargs)


def load_global_tower(name_or_path: str, **kwargs) -> CLIPVisionModel:
    """The global stage from a CLIP checkpoint (hub id or folder; a full `CLIPModel` checkpoint's vision model)."""
    _checkpoint_type(name_or_path, "global (CLIP) tower", GLOBAL_TOWER_TYPES, **kwargs)
    return CLIPVisionModel.from_pretrained(name_or_path, **kwargs)


def load_ocr2_tower(name_or_path: str, **kwargs) -> DeepseekOcr2VisionModel:
    """The DeepSeek-OCR-2 vision tower from a vision-only checkpoint or a full DeepSeek-OCR-2 checkpoint.

    A full checkpoint is stored in DeepSeek's original key layout, which transformers converts only when loading the
    whole `DeepseekOcr2Model`; we load that (language model included, about 7 GB in bf16) and keep its
    `vision_tower`. Save the tower once with `save_pretrained` to skip this next time.
    """
    model_type = _checkpoint_type(name_or_path, "deepseek-ocr-2 tower", OCR2_TOWER_TYPES, **kwargs)
    if model_type == "deepseek_ocr2_vision":
        return DeepseekOcr2VisionModel.from_pretrained(name_or_path, **kwargs)
    logger.info("%s is a full DeepSeek-OCR-2 checkpoint: loading it whole to keep its vision tower", name_or_path)
    full = DeepseekOcr2Model.from_pretrained(name_or_path, **kwargs)
    return full.vision_tower
