"""The vlm_ecg model as a transformers model, registered with `AutoConfig` / `AutoModel` (model type "vlm_ecg").

| module | holds |
|---|---|
| `configuration.py` | `VlmEcgConfig` and its vision / signal sub-configs, presets |
| `vision.py` | global-local vision tower (SAM local -> 16x compressor -> CLIP global), DeepSeek-OCR-2 tower, loaders |
| `timeseries.py` | decomposition, patch embeddings and prompts, multi-scale CNN, Transformer / GPT-2 backbone |
| `fusion.py` | gated fusion of the two branches |
| `heads.py` | stratum-conditioned heads and their masked losses |
| `modeling.py` | `VlmEcgModel`, outputs, back-door-adjusted prediction, `from_preset` |
| `lora.py` | peft LoRA per preset (anchored target regexes, modules_to_save), trainable-parameter summary |
| `image_processing.py` | uint8 page images -> normalised `pixel_values` |
"""

from transformers import AutoConfig, AutoModel

from .configuration import BRANCHES, PRESETS, VlmEcgConfig, VlmEcgSignalConfig, VlmEcgVisionConfig
from .image_processing import VlmEcgImageProcessor
from .lora import LoraSettings, apply_lora, build_lora_config, lora_target_pattern, modules_to_save, trainable_summary
from .modeling import VlmEcgAdjustedOutput, VlmEcgFeatures, VlmEcgModel, VlmEcgOutput, VlmEcgPreTrainedModel

AutoConfig.register(VlmEcgConfig.model_type, VlmEcgConfig, exist_ok=True)
AutoModel.register(VlmEcgConfig, VlmEcgModel, exist_ok=True)

__all__ = [
    "BRANCHES",
    "PRESETS",
    "LoraSettings",
    "VlmEcgAdjustedOutput",
    "VlmEcgConfig",
    "VlmEcgFeatures",
    "VlmEcgImageProcessor",
    "VlmEcgModel",
    "VlmEcgOutput",
    "VlmEcgPreTrainedModel",
    "VlmEcgSignalConfig",
    "VlmEcgVisionConfig",
    "apply_lora",
    "build_lora_config",
    "lora_target_pattern",
    "modules_to_save",
    "trainable_summary",
]
