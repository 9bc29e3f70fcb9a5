"""LoRA through peft: anchored targets, modules_to_save, trainable set, adapter round trip."""

from __future__ import annotations

import re

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper
from safetensors.torch import load_file
from transformers import DeepseekOcr2VisionConfig, GPT2Config

from vlm_ecg.modeling import LoraSettings, VlmEcgConfig, VlmEcgModel, apply_lora, lora_target_pattern, modules_to_save
from vlm_ecg.modeling.lora import trainable_summary

IMAGE_PX = 256


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(2, 3, IMAGE_PX, IMAGE_PX, generator=generator),
        "signal": 0.3 * torch.randn(2, 12, 5000, generator=generator),
        "strata": torch.tensor([0, 1]),
        "triage_labels": torch.tensor([1.0, 0.0]),
        "culprit_labels": torch.tensor([1, 0]),
    }


def _config(**kwargs) -> VlmEcgConfig:
    return VlmEcgConfig(num_strata=2, vision_config={"image_size": IMAGE_PX}, **kwargs)


def _lora_layers(model) -> set[str]:
    return {name.removeprefix("base_model.model.") for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def test_lora_targets_exactly_the_attention_projections():
    peft_model = apply_lora(VlmEcgModel(_config()))
    layers = _lora_layers(peft_model)
    cfg = peft_model.config.vision_config
    expected = {
        f"vision_tower.local_tower.vision_encoder.layers.{i}.attn.{p}"
        for i in range(cfg.local_config.num_hidden_layers)
        for p in ("qkv", "proj")
    } | {
        f"vision_tower.global_tower.encoder.layers.{i}.self_attn.{p}"
        for i in range(cfg.global_config.num_hidden_layers)
        for p in ("q_proj", "k_proj", "v_proj", "out_proj")
    }
    assert layers == expected
    wrapped = {
        name.removeprefix("base_model.model.")
        for name, m in peft_model.named_modules()
        if isinstance(m, ModulesToSaveWrapper)
    }
    assert wrapped == {"vision_tower.compressor", "vision_tower.projector", "signal_encoder", "fusion", "heads"}


def test_only_lora_and_modules_to_save_train(tmp_path):
    peft_model = apply_lora(VlmEcgModel(_config()), LoraSettings(r=4, alpha=8))
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or ".modules_to_save." in name for name in trainable)
    assert any(".signal_encoder.modules_to_save." in name for name in trainable)
    peft_model.train()
    out = peft_model(**_batch())
    out.loss.backward()
    lora_b = [p.grad for name, p in peft_model.named_parameters() if "lora_B" in name]
    assert lora_b and all(g is not None for g in lora_b) and any(g.abs().sum() > 0 for g in lora_b)
    frozen_grads = [n for n, p in peft_model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen_grads == []
    summary = trainable_summary(peft_model)
    assert re.search(r"^all\s+[\d,]+\s+[\d,]+\s+\(\d+\.\d+ % trainable\)$", summary, flags=re.M)
    assert "vision_tower" in summary and "heads" in summary


def test_adapter_round_trip_reproduces_outputs(tmp_path):
    config = _config()
    peft_model = apply_lora(VlmEcgModel(config))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for step in range(2):
        optimizer.zero_grad()
        peft_model(**_batch(step)).loss.backward()
        optimizer.step()
    peft_model.eval()
    batch = _batch(5)
    with torch.no_grad():
        trained = peft_model(**batch)
    peft_model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    saved = load_file(tmp_path / "adapter_model.safetensors")
    for part in (
        "vision_tower.compressor.",
        "vision_tower.projector.",
        "signal_encoder.",
        "fusion.",
        "heads.",
        "lora_A",
    ):
        assert any(part in key for key in saved), f"adapter lacks {part}"
    # the random-init base is rebuilt from the config seed: the adapter folder is all that training produced
    reloaded = PeftModel.from_pretrained(VlmEcgModel(config), tmp_path).eval()
    with torch.no_grad():
        again = reloaded(**batch)
        base_only = VlmEcgModel(config).eval()(**batch)
    torch.testing.assert_close(trained.triage_logits, again.triage_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trained.culprit_logits, again.culprit_logits, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(trained.triage_logits, base_only.triage_logits, atol=1e-4)  # training changed something
    # custom methods reach the wrapped model; the heads run through their modules_to_save copy
    pixels_signal = {"pixel_values": batch["pixel_values"], "signal": batch["signal"]}
    with torch.no_grad():
        adjusted = reloaded.predict_adjusted(**pixels_signal, prior=[0.25, 0.75])
        per_z = [reloaded(**pixels_signal, strata=torch.full((2,), z)).triage_logits.sigmoid() for z in (0, 1)]
    torch.testing.assert_close(adjusted.triage_probs, 0.25 * per_z[0] + 0.75 * per_z[1])


def test_deepseek_ocr2_targets_skip_its_downsampling_proj():
    ocr2 = DeepseekOcr2VisionConfig(
        sam_config=dict(
            hidden_size=32,
            output_channels=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=256,
            window_size=4,
            global_attn_indexes=[1],
            downsample_channels=[32, 64],
            initializer_range=0.02,
        ),
        encoder_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4),
    )
    config = VlmEcgConfig(branches="image", vision_config={"preset": "deepseek-ocr-2", "ocr2_config": ocr2})
    pattern = lora_target_pattern(config)
    assert re.fullmatch(pattern, "vision_tower.ocr2_tower.sam_encoder.layers.0.attn.proj")
    assert not re.fullmatch(pattern, "vision_tower.ocr2_tower.sam_encoder.proj")  # a plain "proj" would catch it
    layers = _lora_layers(apply_lora(VlmEcgModel(config)))
    assert "vision_tower.ocr2_tower.vision_encoder.layers.0.self_attn.o_proj" in layers
    assert not any(".proj.conv" in name or name.endswith("sam_encoder.proj") for name in layers)


@pytest.mark.parametrize("adaptation", ["frozen", "lora"])
def test_gpt2_backbone_frozen_or_lora(adaptation):
    signal = {
        "backbone": "gpt2",
        "backbone_config": GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=512, vocab_size=50),
        "backbone_adaptation": adaptation,
    }
    config = _config(signal_config=signal)
    names = modules_to_save(config)
    assert "signal_encoder.embedder" in names and "signal_encoder.backbone.h.1.ln_2" in names
    peft_model = apply_lora(VlmEcgModel(config))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad and "signal_encoder.backbone" in n}
    assert any(".ln_1." in n for n in trainable) and any(".wpe." in n for n in trainable)
    assert any(".attn.c_attn.lora_" in n for n in trainable) == (adaptation == "lora")
    assert not any(".mlp." in n for n in trainable)  # FFN frozen either way (GPT4TS)
    peft_model(**_batch()).loss.backward()


def test_nothing_to_adapt_is_a_clear_error():
    with pytest.raises(ValueError, match="nothing to adapt with LoRA"):
        lora_target_pattern(VlmEcgConfig(branches="signal"))
    assert "vision_tower" in modules_to_save(_config(), LoraSettings(full_towers=True))
