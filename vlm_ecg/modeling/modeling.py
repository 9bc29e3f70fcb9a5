"""`VlmEcgModel`: vision tower + time-series branch -> gated fusion -> stratum-conditioned heads.

Run the tiny preset on CPU::

    from vlm_ecg.modeling import VlmEcgConfig, VlmEcgModel
    model = VlmEcgModel(VlmEcgConfig(num_strata=4))
    out = model(pixel_values=torch.randn(2, 3, 512, 512), signal=torch.randn(2, 12, 5000), strata=torch.tensor([0, 3]))
    out.triage_logits, out.culprit_logits, out.stenosis

Large presets load pretrained towers once with `VlmEcgModel.from_preset("deepencoder")` (hub ids or folders);
`save_pretrained` then stores every weight, towers included, and `from_pretrained` needs no hub.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration import VlmEcgConfig
from .fusion import GatedFusion
from .heads import PredictionHeads, head_losses
from .timeseries import PromptPool, SeriesDecomposition, SignalEmbedder, SignalEncoder, load_signal_backbone
from .vision import build_vision_tower, load_global_tower, load_local_tower, load_ocr2_tower

logger = logging.getLogger(__name__)

__all__ = ["VlmEcgAdjustedOutput", "VlmEcgFeatures", "VlmEcgModel", "VlmEcgOutput", "VlmEcgPreTrainedModel"]


@dataclass
class VlmEcgOutput(ModelOutput):
    """Output of `VlmEcgModel.forward`.

    Attributes:
        loss: weighted sum of the heads' losses over labelled entries (plus the prompt-pool loss); None without labels.
        triage_logits: (B,) logit of "needs angiography now".
        culprit_logits: (B, 4) logits over CULPRITS (none, LAD, LCx, RCA).
        stenosis: (B, 3) stenosis fraction per vessel (LAD, LCx, RCA) in [0, 1].
        vision_embeds: (B, projection_dim) pooled vision tokens (None without the image branch).
        signal_embeds: (B, W) pooled signal tokens (None without the signal branch).
        fused_embeds: (B, fusion_hidden_size) fused embedding, before the stratum embedding (depends on x only).
        head_losses: {"triage" | "culprit" | "stenosis" | "prompt_pool": scalar} terms of `loss`, for logging.
    """

    loss: torch.Tensor | None = None
    triage_logits: torch.Tensor | None = None
    culprit_logits: torch.Tensor | None = None
    stenosis: torch.Tensor | None = None
    vision_embeds: torch.Tensor | None = None
    signal_embeds: torch.Tensor | None = None
    fused_embeds: torch.Tensor | None = None
    head_losses: dict[str, torch.Tensor] | None = None


@dataclass
class VlmEcgFeatures(ModelOutput):
    """Output of `VlmEcgModel.forward_features`: everything before the heads.

    Attributes:
        vision_tokens: (B, N, projection_dim); signal_tokens: (B, S, W); vision_embeds / signal_embeds: pooled;
        fused_embeds: (B, F); fusion_gate: (B, F) weight of the vision embedding (None with one branch);
        aux_loss: prompt-pool loss or None.
    """

    vision_tokens: torch.Tensor | None = None
    signal_tokens: torch.Tensor | None = None
    vision_embeds: torch.Tensor | None = None
    signal_embeds: torch.Tensor | None = None
    fused_embeds: torch.Tensor | None = None
    fusion_gate: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


@dataclass
class VlmEcgAdjustedOutput(ModelOutput):
    """Back-door-adjusted prediction P(y | do(x)) = sum_z P(y | x, z) P(z).

    Attributes:
        triage_probs: (B,) adjusted P(triage = 1).
        culprit_probs: (B, 4) adjusted distribution over CULPRITS.
        stenosis: (B, 3) adjusted expected stenosis fraction.
        triage_probs_per_stratum: (B, Z) P(triage = 1 | x, z) for each stratum z.
        prior: (Z,) the P(z) used.
    """

    triage_probs: torch.Tensor | None = None
    culprit_probs: torch.Tensor | None = None
    stenosis: torch.Tensor | None = None
    triage_probs_per_stratum: torch.Tensor | None = None
    prior: torch.Tensor | None = None


@contextmanager
def _seeded(seed: int | None):
    """Run the random init from `seed` without touching the caller's global RNG state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class VlmEcgPreTrainedModel(PreTrainedModel):
    config_class = VlmEcgConfig
    base_model_prefix = "vlm_ecg"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["SamVisionLayer", "CLIPEncoderLayer", "GPT2Block"]

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, SignalEmbedder):
            for param in (module.lead_embedding, module.position_embedding):
                if param is not None:
                    init.normal_(param, std=std)
            for param in module.task_prompts.values():
                init.normal_(param, std=std)
            # the convolutional stems and CNNs start at He init: with GroupNorm + GELU between them, GPT-style
            # std-0.02 weights leave the first epochs learning little (measured: 0.72 vs 0.9+ val AUROC after one)
            for conv in (*module.patch_stems.modules(), *module.cnns.modules()):
                if isinstance(conv, torch.nn.Conv1d):
                    init.kaiming_normal_(conv.weight, nonlinearity="relu")
                    init.zeros_(conv.bias)
        elif isinstance(module, PromptPool):
            init.normal_(module.keys, std=1.0)
            init.normal_(module.prompts, std=std)
        elif isinstance(module, SeriesDecomposition):
            # non-persistent buffers: from_pretrained materialises them empty, so they are recomputed here
            gain, mask = module._responses(self.config.signal_config.num_samples)
            init.copy_(module.trend_gain, gain)
            init.copy_(module.seasonal_mask, mask)


class VlmEcgModel(VlmEcgPreTrainedModel):
    """ECG virtual coronary angiography: triage, culprit vessel and stenosis from an ECG image and/or signal.

    Submodules (a contract with saved adapters): `vision_tower`, `signal_encoder`, `fusion`, `heads`; a branch
    switched off by `config.branches` is None.
    """

    def __init__(self, config: VlmEcgConfig):
        super().__init__(config)
        with _seeded(config.initializer_seed):
            self.vision_tower = build_vision_tower(config.vision_config) if config.uses_image else None
            self.signal_encoder = SignalEncoder(config.signal_config) if config.uses_signal else None
            self.fusion = GatedFusion(
                config,
                config.vision_config.projection_dim if config.uses_image else None,
                config.signal_config.output_size if config.uses_signal else None,
            )
            self.heads = PredictionHeads(config)
            self.post_init()

    def forward_features(
        self, pixel_values: torch.Tensor | None = None, signal: torch.Tensor | None = None
    ) -> VlmEcgFeatures:
        """Both branches and the fusion (timm's `forward_features`): embeddings for DRIL and the explainers.

        Args:
            pixel_values: (B, 3, H, W) normalised image (see `VlmEcgImageProcessor`); needed unless signal-only.
            signal: (B, 12, 5000) float mV at 500 Hz; needed unless image-only.
        """
        features = VlmEcgFeatures()
        if self.vision_tower is not None:
            if pixel_values is None:
                raise ValueError(f"branches={self.config.branches!r} needs pixel_values (B, 3, H, W)")
            vision = self.vision_tower(pixel_values)
            features.vision_tokens, features.vision_embeds = vision.last_hidden_state, vision.pooler_output
        if self.signal_encoder is not None:
            if signal is None:
                raise ValueError(f"branches={self.config.branches!r} needs signal (B, 12, 5000) in mV")
            encoded = self.signal_encoder(signal)
            features.signal_tokens, features.signal_embeds = encoded.last_hidden_state, encoded.pooler_output
            features.aux_loss = encoded.aux_loss
        features.fused_embeds, features.fusion_gate = self.fusion(features.vision_embeds, features.signal_embeds)
        return features

    def forward_head(
        self, fused_embeds: torch.Tensor, strata: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heads on a fused embedding: (triage logits (B,), culprit logits (B, 4), stenosis logits (B, 3))."""
        return self.heads(fused_embeds, strata)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        signal: torch.Tensor | None = None,
        strata: torch.Tensor | None = None,
        triage_labels: torch.Tensor | None = None,
        culprit_labels: torch.Tensor | None = None,
        stenosis_labels: torch.Tensor | None = None,
    ) -> VlmEcgOutput:
        """Predict, and compute the masked multi-task loss when labels are given.

        Args:
            pixel_values: (B, 3, H, W) normalised rendered ECG.
            signal: (B, 12, 5000) float mV.
            strata: (B,) long confounder stratum ids (-1 unknown); None = all unknown.
            triage_labels: (B,) float 1 / 0, -1 unknown (masked).
            culprit_labels: (B,) long index into CULPRITS, -100 unknown.
            stenosis_labels: (B, 3) float fractions, NaN unknown.
        """
        features = self.forward_features(pixel_values, signal)
        triage_logits, culprit_logits, stenosis_logits = self.heads(features.fused_embeds, strata)
        loss, losses = None, None
        if any(labels is not None for labels in (triage_labels, culprit_labels, stenosis_labels)):
            losses = head_losses(
                self.config,
                triage_logits,
                culprit_logits,
                stenosis_logits,
                triage_labels,
                culprit_labels,
                stenosis_labels,
            )
            if features.aux_loss is not None:
                losses["prompt_pool"] = self.config.signal_config.prompt_pool_loss_weight * features.aux_loss
            # a batch without any known label still yields a differentiable zero (DDP needs every rank to backward)
            loss = sum(losses.values(), triage_logits.sum() * 0.0)
        return VlmEcgOutput(
            loss=loss,
            triage_logits=triage_logits,
            culprit_logits=culprit_logits,
            stenosis=torch.sigmoid(stenosis_logits),
            vision_embeds=features.vision_embeds,
            signal_embeds=features.signal_embeds,
            fused_embeds=features.fused_embeds,
            head_losses=losses,
        )

    def predict_adjusted(
        self,
        pixel_values: torch.Tensor | None = None,
        signal: torch.Tensor | None = None,
        prior: torch.Tensor | list[float] | None = None,
        fused_embeds: torch.Tensor | None = None,
    ) -> VlmEcgAdjustedOutput:
        """Back-door adjustment over the confounder strata: P(y | do(x)) = sum_z P(y | x, z) P(z).

        The branches run once; only the heads run per stratum. The raw, stratum-specific prediction stays
        available from `forward(..., strata=z)`.

        Args:
            pixel_values, signal: as in `forward`.
            prior: (Z,) P(z); defaults to `config.strata_prior` (set from the training data).
            fused_embeds: (B, F) from an earlier `forward` / `forward_features` of the same inputs; skips the branches.

        Raises:
            ValueError: the model has no strata, or no prior is known.
        """
        num_strata = self.config.num_strata
        if num_strata == 0:
            raise ValueError("predict_adjusted needs a model conditioned on confounder strata (config.num_strata > 0)")
        if prior is None:
            if self.config.strata_prior is None:
                raise ValueError(
                    "no P(z): config.strata_prior is unset (training sets it with config.set_strata_prior(counts)); "
                    "or pass prior="
                )
            prior = self.config.strata_prior
        fused = fused_embeds if fused_embeds is not None else self.forward_features(pixel_values, signal).fused_embeds
        prior = torch.as_tensor(prior, dtype=fused.dtype, device=fused.device)
        if prior.shape != (num_strata,):
            raise ValueError(f"prior must have {num_strata} entries (one per stratum), got shape {tuple(prior.shape)}")
        batch = fused.shape[0]
        triage, culprit, stenosis = [], [], []
        for z in range(num_strata):
            strata = torch.full((batch,), z, dtype=torch.long, device=fused.device)
            triage_logits, culprit_logits, stenosis_logits = self.heads(fused, strata)
            triage.append(torch.sigmoid(triage_logits))
            culprit.append(torch.softmax(culprit_logits, dim=-1))
            stenosis.append(torch.sigmoid(stenosis_logits))
        per_stratum = torch.stack(triage, dim=-1)  # (B, Z)
        return VlmEcgAdjustedOutput(
            triage_probs=per_stratum @ prior,
            culprit_probs=torch.einsum("zbc,z->bc", torch.stack(culprit), prior),
            stenosis=torch.einsum("zbv,z->bv", torch.stack(stenosis), prior),
            triage_probs_per_stratum=per_stratum,
            prior=prior,
        )

    @classmethod
    def from_preset(
        cls,
        preset: str = "tiny",
        *,
        local_tower: str | None = None,
        global_tower: str | None = None,
        ocr2_tower: str | None = None,
        signal_backbone: str | None = None,
        load_kwargs: dict | None = None,
        **config_kwargs,
    ) -> VlmEcgModel:
        """Build a model for a preset, loading pretrained towers with `from_pretrained` (hub ids or local folders).

        Args:
            preset: "tiny" (random init, nothing to load), "deepencoder" (SAM + CLIP checkpoints; defaults
                facebook/sam-vit-base and openai/clip-vit-large-patch14) or "deepseek-ocr-2" (a DeepSeek-OCR-2
                checkpoint, vision-only or full; default deepseek-community/DeepSeek-OCR-2).
            local_tower, global_tower: SAM / CLIP checkpoints for deepencoder.
            ocr2_tower: DeepSeek-OCR-2 checkpoint for deepseek-ocr-2.
            signal_backbone: a GPT-2 checkpoint (e.g. "gpt2") for the time-series Transformer (any preset).
            load_kwargs: passed to every `from_pretrained` (e.g. `revision`, `cache_dir`).
            **config_kwargs: `VlmEcgConfig` fields; `vision_config` / `signal_config` dicts are merged.
        """
        load_kwargs = load_kwargs or {}
        vision = dict(config_kwargs.pop("vision_config", None) or {}, preset=preset)
        signal = dict(config_kwargs.pop("signal_config", None) or {})
        uses_image = config_kwargs.get("branches", "both") != "signal"
        towers = {}
        if preset != "deepencoder" and (local_tower or global_tower):
            raise ValueError(f"local_tower / global_tower (SAM / CLIP) belong to preset='deepencoder', not {preset!r}")
        if preset != "deepseek-ocr-2" and ocr2_tower:
            raise ValueError(f"ocr2_tower belongs to preset='deepseek-ocr-2', not {preset!r}")
        if preset == "deepencoder" and uses_image:
            vision["local_tower"] = local_tower = local_tower or "facebook/sam-vit-base"
            vision["global_tower"] = global_tower = global_tower or "openai/clip-vit-large-patch14"
            towers["local_tower"] = load_local_tower(local_tower, **load_kwargs)
            towers["global_tower"] = load_global_tower(global_tower, **load_kwargs)
            vision["local_config"] = towers["local_tower"].config
            vision["global_config"] = towers["global_tower"].config
        elif preset == "deepseek-ocr-2" and uses_image:
            vision["ocr2_tower"] = ocr2_tower = ocr2_tower or "deepseek-community/DeepSeek-OCR-2"
            towers["ocr2_tower"] = load_ocr2_tower(ocr2_tower, **load_kwargs)
            vision["ocr2_config"] = towers["ocr2_tower"].config
        backbone = None
        if signal_backbone is not None:
            backbone = load_signal_backbone(signal_backbone, **load_kwargs)
            signal.update(backbone="gpt2", backbone_config=backbone.config, backbone_name_or_path=signal_backbone)
        model = cls(VlmEcgConfig(vision_config=vision, signal_config=signal, **config_kwargs))
        for name, tower in towers.items():
            getattr(model.vision_tower, name).load_state_dict(tower.state_dict())
        if backbone is not None and model.signal_encoder is not None:
            model.signal_encoder.backbone.load_state_dict(backbone.state_dict())
        return model
