"""Vision towers and pretrained loading paths: tiny random-init towers saved locally, loaded the real way."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2VisionConfig,
    DeepseekOcr2VisionModel,
    GPT2Config,
    GPT2Model,
    SamConfig,
    SamModel,
)

from vlm_ecg.modeling import VlmEcgConfig, VlmEcgModel
from vlm_ecg.modeling.vision import GlobalLocalVisionTower

TINY_SAM = dict(
    hidden_size=32,
    output_channels=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_dim=64,
    image_size=256,
    patch_size=16,
    window_size=4,
    global_attn_indexes=[1],
    initializer_range=0.02,
)
TINY_CLIP = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=8, patch_size=2
)
TINY_CLIP_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99)
TINY_OCR2 = dict(
    sam_config=dict(TINY_SAM, downsample_channels=[32, 64]),
    encoder_config=dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=10,
    ),
)


@pytest.fixture(scope="module")
def sam_and_clip_checkpoints(tmp_path_factory):
    """Full SamModel / CLIPModel checkpoints (as on the hub: the vision part is read out of them)."""
    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    sam = SamModel(SamConfig(vision_config=TINY_SAM))
    sam.save_pretrained(root / "sam")
    clip = CLIPModel(CLIPConfig(vision_config=TINY_CLIP, text_config=TINY_CLIP_TEXT, projection_dim=16))
    clip.save_pretrained(root / "clip")
    return root / "sam", root / "clip", sam, clip


@pytest.mark.parametrize(("image_px", "tokens"), [(512, 64), (1024, 256)])
def test_compressor_gives_16x_fewer_tokens(image_px, tokens):
    config = VlmEcgConfig(vision_config={"image_size": image_px}).vision_config
    assert config.num_image_tokens == tokens
    tower = GlobalLocalVisionTower(config).eval()
    with torch.no_grad():
        local = tower.encode_local(torch.randn(1, 3, image_px, image_px))
        out = tower(torch.randn(1, 3, image_px, image_px))
    assert local.shape[2] * local.shape[3] == 16 * tokens  # (S/16)^2 local patches
    assert out.last_hidden_state.shape == (1, tokens, config.projection_dim) and out.grid_size == (image_px // 64,) * 2


def test_local_stage_matches_sams_own_forward_at_its_size():
    tower = GlobalLocalVisionTower(VlmEcgConfig().vision_config).eval()
    pixels = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        ours = tower.encode_local(pixels)
        sams = tower.local_tower(pixels).last_hidden_state
    torch.testing.assert_close(ours, sams)


def test_deepencoder_path_loads_sam_and_clip_and_saves_self_contained(sam_and_clip_checkpoints, tmp_path):
    sam_dir, clip_dir, sam, clip = sam_and_clip_checkpoints
    work = tmp_path / "towers"
    shutil.copytree(sam_dir.parent, work)
    model = VlmEcgModel.from_preset(
        "deepencoder",
        local_tower=str(work / "sam"),
        global_tower=str(work / "clip"),
        vision_config={"image_size": 256},
        branches="image",
    ).eval()
    tower = model.vision_tower
    assert model.config.vision_config.local_tower == str(work / "sam")
    assert model.config.vision_config.compressor_channels == [512, 64]
    sam_state, clip_state = sam.state_dict(), clip.state_dict()
    for name, value in tower.local_tower.state_dict().items():
        assert torch.equal(value, sam_state[name]), name
    for name, value in tower.global_tower.state_dict().items():
        assert torch.equal(value, clip_state[f"vision_model.{name}"]), name
    pixels = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        before = model(pixel_values=pixels)
    assert model.forward_features(pixel_values=pixels).vision_tokens.shape[1] == 16
    model.save_pretrained(tmp_path / "saved")
    shutil.rmtree(work)  # the saved model must not need the tower checkpoints (nor the hub) any more
    reloaded = VlmEcgModel.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        after = reloaded(pixel_values=pixels)
    torch.testing.assert_close(before.triage_logits, after.triage_logits, rtol=1e-5, atol=1e-6)


def test_incompatible_or_misplaced_towers_are_refused(sam_and_clip_checkpoints):
    sam_dir, clip_dir, _, _ = sam_and_clip_checkpoints
    with pytest.raises(ValueError, match=r"'clip'.*cannot be the local \(SAM\) tower.*sam, sam_vision_model"):
        VlmEcgModel.from_preset("deepencoder", local_tower=str(clip_dir), global_tower=str(clip_dir))
    with pytest.raises(ValueError, match="belong to preset='deepencoder'"):
        VlmEcgModel.from_preset("tiny", local_tower=str(sam_dir))
    with pytest.raises(ValueError, match="accepted presets: tiny, deepencoder, deepseek-ocr-2"):
        VlmEcgModel.from_preset("sam-huge")
    with pytest.raises(ValueError, match="deepseek-ocr-2 preset needs the tower's architecture"):
        VlmEcgConfig(vision_config={"preset": "deepseek-ocr-2"})


def test_deepseek_ocr2_path_uses_the_tower_as_is(tmp_path):
    torch.manual_seed(0)
    tower = DeepseekOcr2VisionModel(DeepseekOcr2VisionConfig(**TINY_OCR2)).eval()
    tower.save_pretrained(tmp_path / "ocr2")
    model = VlmEcgModel.from_preset("deepseek-ocr-2", ocr2_tower=str(tmp_path / "ocr2"), branches="image").eval()
    assert model.config.vision_config.image_size == 1024 and model.config.vision_config.num_image_tokens == 256
    pixels = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        expected = tower(pixels).last_hidden_state
        features = model.forward_features(pixel_values=pixels)
    torch.testing.assert_close(model.vision_tower.projector(expected), features.vision_tokens)
    assert features.vision_tokens.shape == (1, 256, model.config.vision_config.projection_dim)
    model.save_pretrained(tmp_path / "saved")
    shutil.rmtree(tmp_path / "ocr2")
    reloaded = VlmEcgModel.from_pretrained(tmp_path / "saved")
    assert reloaded.config.vision_config.ocr2_config.encoder_config.hidden_size == 64
    with torch.no_grad():
        again = reloaded.forward_features(pixel_values=pixels)
    torch.testing.assert_close(features.vision_tokens, again.vision_tokens, rtol=1e-5, atol=1e-6)


def test_deepseek_ocr2_full_checkpoint_gives_its_vision_tower(tmp_path):
    torch.manual_seed(0)
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=50,
        n_routed_experts=2,
        num_experts_per_tok=1,
        moe_intermediate_size=16,
        n_shared_experts=1,
        mlp_layer_types=["dense"],
    )
    full = DeepseekOcr2ForConditionalGeneration(
        DeepseekOcr2Config(vision_config=TINY_OCR2, text_config=text, image_token_id=3)
    )
    full.save_pretrained(tmp_path / "full")  # stored in DeepSeek's original key layout
    model = VlmEcgModel.from_preset("deepseek-ocr-2", ocr2_tower=str(tmp_path / "full"), branches="image")
    expected = full.model.vision_tower.state_dict()
    for name, value in model.vision_tower.ocr2_tower.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_gpt2_signal_backbone_from_a_local_checkpoint(tmp_path, sam_and_clip_checkpoints):
    torch.manual_seed(0)
    gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=512, vocab_size=50))
    gpt2.save_pretrained(tmp_path / "gpt2")
    model = VlmEcgModel.from_preset("tiny", signal_backbone=str(tmp_path / "gpt2"), branches="signal").train()
    assert model.config.signal_config.backbone == "gpt2" and model.config.signal_config.output_size == 32
    assert torch.equal(model.signal_encoder.backbone.wpe.weight, gpt2.wpe.weight)
    out = model(signal=torch.randn(2, 12, 5000), triage_labels=torch.tensor([1.0, 0.0]))
    assert out.signal_embeds.shape == (2, 32)
    out.loss.backward()
    assert model.signal_encoder.backbone.h[0].attn.c_attn.weight.grad is not None
    with pytest.raises(ValueError, match="'clip'.*cannot be the signal backbone; it accepts gpt2"):
        VlmEcgModel.from_preset("tiny", signal_backbone=str(sam_and_clip_checkpoints[1]), branches="signal")
