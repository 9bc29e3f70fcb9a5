"""Configuration of the vlm_ecg model: `VlmEcgConfig` with a vision and a time-series sub-config.

The tower architectures (SAM, CLIP, DeepSeek-OCR-2, GPT-2 configs) are stored *inside* the config, so that
`VlmEcgModel.from_pretrained(folder)` rebuilds the exact architecture offline and reads every weight, towers
included, from the folder's own safetensors: a saved model never needs the hub again. Where the pretrained tower
weights came from is kept as provenance (`local_tower`, `global_tower`, `ocr2_tower`, `backbone_name_or_path`);
those names are read only by `VlmEcgModel.from_preset`, which loads the towers with `from_pretrained`.
"""

from __future__ import annotations

import logging
import math

from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    DeepseekOcr2VisionConfig,
    PreTrainedConfig,
    SamVisionConfig,
)
from transformers.configuration_utils import SubConfigSpec

from ..labels import CULPRITS, STENOSIS_THRESHOLD, VESSELS
from ..signal import COMPONENTS

logger = logging.getLogger(__name__)

__all__ = [
    "BRANCHES",
    "PRESETS",
    "SIGNAL_BACKBONES",
    "VlmEcgConfig",
    "VlmEcgSignalConfig",
    "VlmEcgVisionConfig",
]

PRESETS: tuple[str, ...] = ("tiny", "deepencoder", "deepseek-ocr-2")
BRANCHES: tuple[str, ...] = ("both", "image", "signal")
SIGNAL_BACKBONES: tuple[str, ...] = ("scratch", "gpt2")
BACKBONE_ADAPTATIONS: tuple[str, ...] = ("frozen", "lora", "full")
LEAD_MIXING: tuple[str, ...] = ("early", "independent")

# Accepted checkpoint model types per tower slot (a full SamModel / CLIPModel / DeepseekOcr2 checkpoint is fine:
# its vision part is read).
LOCAL_TOWER_TYPES: tuple[str, ...] = ("sam", "sam_vision_model")
GLOBAL_TOWER_TYPES: tuple[str, ...] = ("clip", "clip_vision_model")
OCR2_TOWER_TYPES: tuple[str, ...] = ("deepseek_ocr2", "deepseek_ocr2_vision")

# tiny: SAM-style windowed ViT, 4 blocks of width 48 on 16-px patches, window 8 (a 512-px image is a 32 x 32 grid
# = 4 x 4 windows, no padding), global attention in block 3 only, no relative-position tables (the decomposed
# rel-pos bias triples the CPU cost); initializer_range 0.02 (SAM's default 1e-10 gives ~1e-21 outputs).
_TINY_LOCAL = dict(
    hidden_size=48,
    output_channels=32,
    num_hidden_layers=4,
    num_attention_heads=3,
    mlp_dim=96,
    image_size=512,
    patch_size=16,
    window_size=8,
    global_attn_indexes=[3],
    use_rel_pos=False,
    initializer_range=0.02,
)
# CLIP-style global stage of width 128; its 8 x 8 position table (16 px / patch 2) matches a 512-px image's
# compressed grid, and is interpolated for other sizes.
_TINY_GLOBAL = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=16,
    patch_size=2,
    projection_dim=128,
)
# deepencoder: SAM ViT-B (window 14, global blocks 2, 5, 8, 11; neck 768 -> 256) and CLIP ViT-L/14 (24 x 1024;
# 16 x 16 position table = a 1024-px image's compressed grid), the shapes of facebook/sam-vit-base and
# openai/clip-vit-large-patch14; `from_preset` replaces them with the checkpoints' own configs.
_DEEPENCODER_LOCAL = dict(initializer_range=0.02)
_DEEPENCODER_GLOBAL = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    projection_dim=768,
)
_PRESET_DEFAULTS: dict[str, dict] = {
    "tiny": dict(image_size=512, local=_TINY_LOCAL, global_=_TINY_GLOBAL, mid_channels=64, projection_dim=128),
    "deepencoder": dict(
        image_size=1024,
        local=_DEEPENCODER_LOCAL,
        global_=_DEEPENCODER_GLOBAL,
        mid_channels=512,
        projection_dim=1024,
        local_tower="facebook/sam-vit-base",
        global_tower="openai/clip-vit-large-patch14",
    ),
    "deepseek-ocr-2": dict(image_size=1024, ocr2_tower="deepseek-community/DeepSeek-OCR-2"),
}
# Pixel normalisation follows the tower that reads the pixels: SAM was trained on ImageNet statistics,
# DeepSeek-OCR(-2) on [-1, 1]; tiny uses [-1, 1].
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
_HALF = [0.5, 0.5, 0.5]


def _check_tower_config(value: object, accepted: tuple[str, ...], field: str, expected: type) -> None:
    """Refuse a tower config of the wrong family with a message that lists what the slot accepts."""
    model_type = value.get("model_type") if isinstance(value, dict) else getattr(value, "model_type", None)
    if isinstance(value, PreTrainedConfig) and not isinstance(value, expected):
        raise ValueError(f"{field} must be a {expected.__name__} (model types {accepted}), got {type(value).__name__}")
    if model_type is not None and model_type not in accepted:
        raise ValueError(f"{field} has model_type {model_type!r}; this slot accepts {', '.join(accepted)}")


class VlmEcgVisionConfig(PreTrainedConfig):
    r"""The vision branch: local windowed tower -> 16x compressor -> global tower -> fusion projector.

    Args:
        preset (`str`, defaults to `"tiny"`): `"tiny"` (built from config, CPU-sized), `"deepencoder"` (SAM ViT-B ->
            16x compressor -> CLIP ViT-L/14, DeepSeek-OCR's encoder) or `"deepseek-ocr-2"` (transformers'
            `DeepseekOcr2VisionModel` as-is).
        image_size (`int`, *optional*): side of the square input in pixels (512 tiny, 1024 otherwise); any multiple
            of 4 x the local patch size works (the SAM position table is interpolated).
        local_config (`SamVisionConfig` or `dict`, *optional*): the local windowed tower (tiny/deepencoder).
        global_config (`CLIPVisionConfig` or `dict`, *optional*): the global tower (tiny/deepencoder); its patch
            embedding is bypassed: the compressed local grid is its input.
        ocr2_config (`DeepseekOcr2VisionConfig` or `dict`, *optional*): the whole tower of the deepseek-ocr-2 preset.
        compressor_channels (`list[int]`, *optional*): output channels of the two 3x3 stride-2 convolutions
            (deepencoder 512, 1024); the last must equal the global tower's width.
        projection_dim (`int`, *optional*): width of the vision tokens handed to the fusion.
        local_tower, global_tower, ocr2_tower (`str`, *optional*): hub id or path the pretrained weights came from
            (provenance; read by `VlmEcgModel.from_preset` only).
        image_mean, image_std (`list[float]`, *optional*): per-channel pixel normalisation of the image processor.
    """

    model_type = "vlm_ecg_vision"
    base_config_key = "vision_config"
    sub_configs_defaults = {
        "local_config": SubConfigSpec(SamVisionConfig, optional=True),
        "global_config": SubConfigSpec(CLIPVisionConfig, optional=True),
        "ocr2_config": SubConfigSpec(DeepseekOcr2VisionConfig, optional=True),
    }

    preset: str = "tiny"
    image_size: int | None = None
    local_config: dict | PreTrainedConfig | None = None
    global_config: dict | PreTrainedConfig | None = None
    ocr2_config: dict | PreTrainedConfig | None = None
    compressor_channels: list[int] | tuple[int, ...] | None = None
    projection_dim: int | None = None
    local_tower: str | None = None
    global_tower: str | None = None
    ocr2_tower: str | None = None
    image_mean: list[float] | tuple[float, ...] | None = None
    image_std: list[float] | tuple[float, ...] | None = None

    def __post_init__(self, **kwargs):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown vision preset {self.preset!r}; accepted presets: {', '.join(PRESETS)}")
        defaults = _PRESET_DEFAULTS[self.preset]
        self.image_size = int(self.image_size or defaults["image_size"])
        if self.preset == "deepseek-ocr-2":
            self.ocr2_tower = self.ocr2_tower or defaults["ocr2_tower"]
            if self.ocr2_config is None:
                raise ValueError(
                    "the deepseek-ocr-2 preset needs the tower's architecture: build it with "
                    "VlmEcgModel.from_preset('deepseek-ocr-2', ocr2_tower=<hub id or path>) or pass ocr2_config"
                )
            _check_tower_config(self.ocr2_config, OCR2_TOWER_TYPES, "ocr2_config", DeepseekOcr2VisionConfig)
            self.local_config = self.global_config = None
        else:
            self.local_tower = self.local_tower or defaults.get("local_tower")
            self.global_tower = self.global_tower or defaults.get("global_tower")
            if self.local_config is None:
                self.local_config = dict(defaults["local"], image_size=self.image_size)
            if self.global_config is None:
                self.global_config = dict(defaults["global_"])
            _check_tower_config(self.local_config, LOCAL_TOWER_TYPES, "local_config", SamVisionConfig)
            _check_tower_config(self.global_config, GLOBAL_TOWER_TYPES, "global_config", CLIPVisionConfig)
            self.ocr2_config = None
        super().__post_init__(**kwargs)
        if self.preset == "deepseek-ocr-2":
            tower_width = self.ocr2_config.encoder_config.hidden_size
            self.compressor_channels = None
        else:
            tower_width = self.global_config.hidden_size
            if self.compressor_channels is None:
                self.compressor_channels = [defaults["mid_channels"], tower_width]
            self.compressor_channels = [int(c) for c in self.compressor_channels]
            if len(self.compressor_channels) != 2 or self.compressor_channels[-1] != tower_width:
                raise ValueError(
                    f"compressor_channels must be two widths ending with the global tower's width {tower_width} "
                    f"(its input tokens), got {self.compressor_channels}"
                )
            stride_px = 4 * self.local_config.patch_size
            if self.image_size % stride_px:
                raise ValueError(
                    f"image_size must be a multiple of {stride_px} px (4 local patches), got {self.image_size}"
                )
        self.projection_dim = int(self.projection_dim or defaults.get("projection_dim") or tower_width)
        local_reads_imagenet = self.preset == "deepencoder"
        self.image_mean = list(self.image_mean or (_IMAGENET_MEAN if local_reads_imagenet else _HALF))
        self.image_std = list(self.image_std or (_IMAGENET_STD if local_reads_imagenet else _HALF))

    @property
    def num_image_tokens(self) -> int:
        """Vision tokens per image at `image_size` (64 at 512 px, 256 at 1024 px for the global-local presets)."""
        if self.preset == "deepseek-ocr-2":
            grid = self.image_size // (4 * self.ocr2_config.sam_config.patch_size)
            return 144 if grid * grid <= 144 else 256  # the tower's learned query sets (768 px / 1024 px)
        grid = self.image_size // (4 * self.local_config.patch_size)
        return grid * grid


class VlmEcgSignalConfig(PreTrainedConfig):
    r"""The time-series branch: decomposition -> per-component patch embedding + prompts -> multi-scale CNN ->
    Transformer across leads and time.

    Args:
        num_leads (`int`, defaults to 12), num_samples (`int`, defaults to 5000), sampling_rate_hz (`float`,
            defaults to 500.0): the input (B, num_leads, num_samples) in mV.
        components (`list[str]`, defaults to `["residual"]`): which of trend / seasonal / residual are read; each has
            its own patch embedding and prompt.
        trend_cutoff_hz, trend_order, powerline_hz, powerline_halfwidth_hz, respiration_band_hz: the decomposition
            (see `vlm_ecg.signal.DecompositionSettings`).
        lead_mixing (`str`, defaults to `"early"`): `"early"` (the 12 leads are the stem's input channels: each token
            is a 100-ms slice of the whole ECG) or `"independent"` (PatchTST channel independence: each lead alone,
            a lead embedding, leads mixed only in the Transformer). See `vlm_ecg.modeling.timeseries`.
        stem_kernel_sizes (`list[int]`, defaults to `[11, 7, 7]`), stem_strides (`list[int]`, defaults to
            `[5, 2, 5]`): the convolutional patch stem; the product of the strides is the patch hop in samples
            (50 = 100 ms at 500 Hz: 100 patch tokens).
        hidden_size (`int`, defaults to 64): width of the patch tokens.
        conv_kernel_sizes (`list[int]`, defaults to `[3, 5, 9]`): kernels (in patches) of the parallel convolutions
            of the multi-scale CNN (300, 500, 900 ms receptive fields).
        token_pool (`int`, defaults to 1): the CNN's final strided convolution merges this many patches per token;
            raise it (e.g. 4) with `lead_mixing="independent"` to keep the 12-lead sequence affordable on CPU.
        num_prompt_tokens (`int`, defaults to 4): learnable task-prompt tokens per component.
        prompt_pool_size (`int`, defaults to 0): size of the TEMPO prompt pool (0 disables it).
        prompt_pool_top_k (`int`, defaults to 2): prompts chosen from the pool per component by key similarity.
        prompt_pool_length (`int`, defaults to 2): tokens per pooled prompt.
        prompt_pool_loss_weight (`float`, defaults to 0.1): weight of the key-matching loss of the prompt pool.
        backbone (`str`, defaults to `"scratch"`): `"scratch"` (a Transformer encoder trained from scratch) or
            `"gpt2"` (a pretrained GPT-2, GPT4TS/TEMPO style, patch tokens and prompts as `inputs_embeds`).
        backbone_name_or_path (`str`, *optional*): hub id or path of the pretrained backbone (provenance).
        backbone_config (`GPT2Config` or `dict`, *optional*): the pretrained backbone's architecture.
        backbone_adaptation (`str`, defaults to `"frozen"`): for a pretrained backbone under `apply_lora`:
            `"frozen"` (GPT4TS: attention and FFN frozen, layer norms and position embeddings trained), `"lora"`
            (LoRA on attention) or `"full"`.
        num_layers (`int`, defaults to 2), num_heads (`int`, defaults to 4), intermediate_size (`int`, defaults to
            128): the scratch Transformer.
        dropout (`float`, defaults to 0.0): dropout in the embedder and the scratch Transformer (off by default: on
            two CPU cores drawing the masks cost as much as the rest of the branch's step).
    """

    model_type = "vlm_ecg_signal"
    base_config_key = "signal_config"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(AutoConfig, model_type="gpt2", optional=True)}

    num_leads: int = 12
    num_samples: int = 5000
    sampling_rate_hz: float = 500.0
    components: list[str] | tuple[str, ...] = ("residual",)
    trend_cutoff_hz: float = 0.5
    trend_order: int = 2
    powerline_hz: list[float] | tuple[float, ...] = (50.0, 60.0)
    powerline_halfwidth_hz: float = 0.5
    respiration_band_hz: list[float] | tuple[float, float] | None = None
    lead_mixing: str = "early"
    stem_kernel_sizes: list[int] | tuple[int, ...] = (11, 7, 7)
    stem_strides: list[int] | tuple[int, ...] = (5, 2, 5)
    hidden_size: int = 64
    conv_kernel_sizes: list[int] | tuple[int, ...] = (3, 5, 9)
    token_pool: int = 1
    num_prompt_tokens: int = 4
    prompt_pool_size: int = 0
    prompt_pool_top_k: int = 2
    prompt_pool_length: int = 2
    prompt_pool_loss_weight: float = 0.1
    backbone: str = "scratch"
    backbone_name_or_path: str | None = None
    backbone_config: dict | PreTrainedConfig | None = None
    backbone_adaptation: str = "frozen"
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    dropout: float = 0.0

    def __post_init__(self, **kwargs):
        self.components = list(self.components)
        unknown = [c for c in self.components if c not in COMPONENTS]
        if not self.components or unknown or len(set(self.components)) != len(self.components):
            raise ValueError(f"components must be distinct names from {COMPONENTS}, got {self.components}")
        self.components = [c for c in COMPONENTS if c in self.components]  # canonical order
        if self.backbone not in SIGNAL_BACKBONES:
            raise ValueError(f"unknown signal backbone {self.backbone!r}; accepted: {', '.join(SIGNAL_BACKBONES)}")
        if self.backbone_adaptation not in BACKBONE_ADAPTATIONS:
            raise ValueError(
                f"backbone_adaptation must be one of {BACKBONE_ADAPTATIONS}, got {self.backbone_adaptation!r}"
            )
        if self.backbone == "scratch":
            self.backbone_config = None
        elif self.backbone_config is None:
            raise ValueError(
                "a pretrained signal backbone needs its architecture: build with "
                "VlmEcgModel.from_preset(..., signal_backbone=<hub id or path of a GPT-2>) or pass backbone_config"
            )
        else:
            _check_tower_config(self.backbone_config, ("gpt2",), "backbone_config", PreTrainedConfig)
        self.conv_kernel_sizes = [int(k) for k in self.conv_kernel_sizes]
        self.powerline_hz = [float(f) for f in self.powerline_hz]
        if self.respiration_band_hz is not None:
            self.respiration_band_hz = [float(f) for f in self.respiration_band_hz]
        if self.lead_mixing not in LEAD_MIXING:
            raise ValueError(f"lead_mixing must be one of {LEAD_MIXING}, got {self.lead_mixing!r}")
        self.stem_kernel_sizes = [int(k) for k in self.stem_kernel_sizes]
        self.stem_strides = [int(k) for k in self.stem_strides]
        if (
            len(self.stem_kernel_sizes) != len(self.stem_strides)
            or min(self.stem_strides + self.stem_kernel_sizes) < 1
        ):
            raise ValueError(
                f"stem_kernel_sizes {self.stem_kernel_sizes} and stem_strides {self.stem_strides} must be positive "
                "and of the same length"
            )
        if self.token_pool < 1 or self.num_patches % self.token_pool:
            raise ValueError(f"token_pool={self.token_pool} must divide the {self.num_patches} patches per series")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if self.prompt_pool_size and not 0 < self.prompt_pool_top_k <= self.prompt_pool_size:
            raise ValueError("prompt_pool_top_k must be in 1..prompt_pool_size")
        super().__post_init__(**kwargs)

    @property
    def patch_stride(self) -> int:
        """Samples per patch token (the product of the stem strides): 50 = 100 ms at 500 Hz."""
        return math.prod(self.stem_strides)

    @property
    def num_patches(self) -> int:
        """Patch tokens per series out of the stem (100 for 5 000 samples), by the convolution length arithmetic."""
        length = self.num_samples
        for kernel, stride in zip(self.stem_kernel_sizes, self.stem_strides, strict=True):
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        return length

    @property
    def tokens_per_series(self) -> int:
        """Tokens per stem input after the CNN's merge (one series: the 12-lead ECG, or one lead if independent)."""
        return self.num_patches // self.token_pool

    @property
    def tokens_per_component(self) -> int:
        """Patch tokens per decomposition component in the Transformer's sequence."""
        return self.tokens_per_series * (self.num_leads if self.lead_mixing == "independent" else 1)

    @property
    def output_size(self) -> int:
        """Width of the branch's output tokens (the backbone's width)."""
        return self.backbone_config.hidden_size if self.backbone_config is not None else self.hidden_size


class VlmEcgConfig(PreTrainedConfig):
    r"""The whole model: vision branch, time-series branch, gated fusion, confounder-stratum embedding, three heads.

    Args:
        vision_config (`VlmEcgVisionConfig` or `dict`, *optional*): the vision branch (tiny by default).
        signal_config (`VlmEcgSignalConfig` or `dict`, *optional*): the time-series branch.
        branches (`str`, defaults to `"both"`): `"both"`, `"image"` (image only) or `"signal"` (signal only); the
            unused branch is not built.
        fusion_hidden_size (`int`, defaults to 128): width of the fused embedding.
        num_strata (`int`, defaults to 0): number of confounder strata z (0: no conditioning). Stratum id -1 means
            unknown and uses its own learned embedding.
        strata_prior (`list[float]`, *optional*): P(z) over the strata from the training data, used by
            `predict_adjusted` (set by training; sums to 1).
        head_hidden_size (`int`, defaults to 128), head_dropout (`float`, defaults to 0.1): the shared head MLP.
        triage_loss_weight, culprit_loss_weight, stenosis_loss_weight (`float`, defaults to 1.0): loss weights.
        triage_pos_weight (`float`, *optional*): positive-class weight of the triage BCE (class-weighted training).
        culprit_class_weights (`list[float]`, *optional*): class weights of the culprit cross-entropy.
        stenosis_threshold (`float`, defaults to 0.7): fraction above which a stenosis is significant.
        initializer_range (`float`, defaults to 0.02): std of the normal init of our own layers.
        initializer_seed (`int`, *optional*, defaults to 0): seed of the random init, so that a random-init base
            (tiny) is reproducible from its config alone and an adapter folder is enough to rebuild a trained model.
    """

    model_type = "vlm_ecg"
    sub_configs_defaults = {"vision_config": VlmEcgVisionConfig, "signal_config": VlmEcgSignalConfig}

    vision_config: dict | PreTrainedConfig | None = None
    signal_config: dict | PreTrainedConfig | None = None
    branches: str = "both"
    fusion_hidden_size: int = 128
    num_strata: int = 0
    strata_prior: list[float] | None = None
    head_hidden_size: int = 128
    head_dropout: float = 0.1
    triage_loss_weight: float = 1.0
    culprit_loss_weight: float = 1.0
    stenosis_loss_weight: float = 1.0
    triage_pos_weight: float | None = None
    culprit_class_weights: list[float] | None = None
    stenosis_threshold: float = STENOSIS_THRESHOLD
    initializer_range: float = 0.02
    initializer_seed: int | None = 0

    def __post_init__(self, **kwargs):
        if self.branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}, got {self.branches!r}")
        if self.num_strata < 0:
            raise ValueError(f"num_strata must be >= 0, got {self.num_strata}")
        if self.culprit_class_weights is not None and len(self.culprit_class_weights) != len(CULPRITS):
            raise ValueError(f"culprit_class_weights needs {len(CULPRITS)} values ({CULPRITS})")
        if not 0.0 < self.stenosis_threshold < 1.0:
            raise ValueError(f"stenosis_threshold must lie in (0, 1), got {self.stenosis_threshold}")
        super().__post_init__(**kwargs)
        if self.strata_prior is not None:
            self.strata_prior = self._checked_prior(self.strata_prior)

    def _checked_prior(self, prior: list[float]) -> list[float]:
        prior = [float(p) for p in prior]
        if (
            len(prior) != self.num_strata
            or any(p < 0 for p in prior)
            or not math.isclose(sum(prior), 1.0, abs_tol=1e-4)
        ):
            raise ValueError(
                f"strata_prior must be {self.num_strata} non-negative probabilities summing to 1, got {prior}"
            )
        return prior

    def set_strata_prior(self, counts: list[float]) -> None:
        """Store P(z) from per-stratum training counts (normalised here), for the back-door adjustment."""
        total = float(sum(counts))
        if total <= 0:
            raise ValueError(f"stratum counts must have a positive sum, got {list(counts)}")
        self.strata_prior = self._checked_prior([float(c) / total for c in counts])

    @property
    def culprit_labels(self) -> tuple[str, ...]:
        return CULPRITS

    @property
    def vessels(self) -> tuple[str, ...]:
        return VESSELS

    @property
    def uses_image(self) -> bool:
        return self.branches in ("both", "image")

    @property
    def uses_signal(self) -> bool:
        return self.branches in ("both", "signal")
