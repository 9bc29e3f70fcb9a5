"""LoRA through peft: which layers get adapters, which modules are trained fully, and what is trainable.

LoRA goes on the pretrained towers' attention projections only, named by **anchored regular expressions** (peft
full-matches a string `target_modules` against each module's dotted name). A plain list would match by suffix:
`"proj"` also catches DeepSeek-OCR-2's downsampling convolution `sam_encoder.proj` and `"out_proj"` SigLIP-style
pooling heads. Per tower:

- SAM local stage: `vision_tower.local_tower.vision_encoder.layers.N.attn.{qkv, proj}`
- CLIP global stage: `vision_tower.global_tower.encoder.layers.N.self_attn.{q,k,v,out}_proj`
- DeepSeek-OCR-2: `vision_tower.ocr2_tower.sam_encoder.layers.N.attn.{qkv, proj}` and
  `vision_tower.ocr2_tower.vision_encoder.layers.N.self_attn.{q,k,v,o}_proj`
- GPT-2 signal backbone (adaptation "lora"): `signal_encoder.backbone.h.N.attn.{c_attn, c_proj}`

Everything else that is trained (compressor, projector, time-series branch, fusion, heads) is listed in
`modules_to_save`, so one adapter folder (`save_pretrained` of the peft model) holds all trained weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from .configuration import VlmEcgConfig

logger = logging.getLogger(__name__)

__all__ = [
    "LoraSettings",
    "apply_lora",
    "build_lora_config",
    "lora_target_pattern",
    "modules_to_save",
    "trainable_summary",
]

_SAM_ATTENTION = r"vision_tower\.local_tower\.vision_encoder\.layers\.\d+\.attn\.(qkv|proj)"
_CLIP_ATTENTION = r"vision_tower\.global_tower\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"
_OCR2_SAM_ATTENTION = r"vision_tower\.ocr2_tower\.sam_encoder\.layers\.\d+\.attn\.(qkv|proj)"
_OCR2_ENCODER_ATTENTION = (
    r"vision_tower\.ocr2_tower\.vision_encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
)
_GPT2_ATTENTION = r"signal_encoder\.backbone\.h\.\d+\.attn\.(c_attn|c_proj)"


@dataclass
class LoraSettings:
    """LoRA hyper-parameters."""

    r: int = field(default=8, metadata={"help": "rank of the LoRA update matrices"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator: the update is scaled by alpha / r"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch input"})
    full_towers: bool = field(
        default=False,
        metadata={
            "help": "train the vision towers fully (modules_to_save) instead of LoRA: for the random-init tiny "
            "preset, whose towers have nothing pretrained to preserve"
        },
    )
    extra_modules_to_save: tuple[str, ...] = field(
        default=(), metadata={"help": "further dotted module names to train fully and store in the adapter"}
    )

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"need r >= 1, alpha > 0, 0 <= dropout < 1; got r={self.r}, alpha={self.alpha}, dropout={self.dropout}"
            )
        self.extra_modules_to_save = tuple(self.extra_modules_to_save)


def _tower_patterns(config: VlmEcgConfig, settings: LoraSettings) -> list[str]:
    patterns = []
    if config.uses_image and not settings.full_towers:
        if config.vision_config.preset == "deepseek-ocr-2":
            patterns += [_OCR2_SAM_ATTENTION, _OCR2_ENCODER_ATTENTION]
        else:
            patterns += [_SAM_ATTENTION, _CLIP_ATTENTION]
    signal = config.signal_config
    if config.uses_signal and signal.backbone == "gpt2" and signal.backbone_adaptation == "lora":
        patterns.append(_GPT2_ATTENTION)
    return patterns


def lora_target_pattern(config: VlmEcgConfig, settings: LoraSettings | None = None) -> str:
    """The anchored regex (peft full-matches it against module names) of the layers that get LoRA adapters.

    Raises:
        ValueError: nothing in this configuration is pretrained, so there is nothing for LoRA to adapt.
    """
    patterns = _tower_patterns(config, settings or LoraSettings())
    if not patterns:
        raise ValueError(
            f"nothing to adapt with LoRA (branches={config.branches!r}, signal backbone "
            f"{config.signal_config.backbone!r}, full_towers): train the model directly instead"
        )
    return "|".join(f"(?:{p})" for p in patterns)


def modules_to_save(config: VlmEcgConfig, settings: LoraSettings | None = None) -> list[str]:
    """Dotted names of the modules trained fully and stored in the adapter folder."""
    settings = settings or LoraSettings()
    names = []
    if config.uses_image:
        if settings.full_towers:
            names.append("vision_tower")
        elif config.vision_config.preset == "deepseek-ocr-2":
            names.append("vision_tower.projector")
        else:
            names += ["vision_tower.compressor", "vision_tower.projector"]
    signal = config.signal_config
    if config.uses_signal:
        if signal.backbone == "scratch" or signal.backbone_adaptation == "full":
            names.append("signal_encoder")
        else:
            # GPT4TS: patch embedding side trained, plus the backbone's position embeddings and layer norms
            names += ["signal_encoder.embedder", "signal_encoder.backbone.wpe", "signal_encoder.backbone.ln_f"]
            for i in range(signal.backbone_config.n_layer):
                names += [f"signal_encoder.backbone.h.{i}.ln_1", f"signal_encoder.backbone.h.{i}.ln_2"]
    return names + ["fusion", "heads", *settings.extra_modules_to_save]


def build_lora_config(config: VlmEcgConfig, settings: LoraSettings | None = None) -> LoraConfig:
    """The peft `LoraConfig` for a `VlmEcgConfig`."""
    settings = settings or LoraSettings()
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=lora_target_pattern(config, settings),
        modules_to_save=modules_to_save(config, settings),
        bias="none",
    )


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> PeftModel:
    """Wrap a `VlmEcgModel` with LoRA adapters; only adapters and `modules_to_save` stay trainable.

    The trainable-parameter summary is logged at INFO (and returned by `trainable_summary`).
    """
    peft_model = get_peft_model(model, build_lora_config(model.config, settings))
    logger.info("LoRA applied\n%s", trainable_summary(peft_model))
    return peft_model


def trainable_summary(model: nn.Module) -> str:
    """Trainable vs total parameters per top-level part (vision_tower, signal_encoder, fusion, heads).

    The frozen originals kept by peft beside each `modules_to_save` copy are not counted twice.
    """
    rows: dict[str, list[int]] = {}
    for name, param in model.named_parameters():
        if ".original_module." in name:
            continue
        parts = [p for p in name.split(".") if p not in ("base_model", "model")]
        part = parts[0] if parts else name
        counts = rows.setdefault(part, [0, 0])
        counts[1] += param.numel()
        if param.requires_grad:
            counts[0] += param.numel()
    trainable, total = sum(c[0] for c in rows.values()), sum(c[1] for c in rows.values())
    lines = [f"{'part':<16}{'trainable':>14}{'total':>14}"]
    lines += [f"{part:<16}{t:>14,}{n:>14,}" for part, (t, n) in rows.items()]
    lines.append(f"{'all':<16}{trainable:>14,}{total:>14,}  ({100.0 * trainable / max(total, 1):.2f} % trainable)")
    return "\n".join(lines)
