"""VlmEcgModel: branches, shapes, losses, save/load, Auto classes, back-door adjustment (tiny configs only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

from vlm_ecg.modeling import VlmEcgConfig, VlmEcgImageProcessor, VlmEcgModel

BATCH = 3
IMAGE_PX = 256  # any multiple of 64 works; smaller than the 512 default to keep the tests fast


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(BATCH, 3, IMAGE_PX, IMAGE_PX, generator=generator),
        "signal": 0.3 * torch.randn(BATCH, 12, 5000, generator=generator),
    }


def _labels() -> dict[str, torch.Tensor]:
    return {
        "triage_labels": torch.tensor([1.0, 0.0, -1.0]),
        "culprit_labels": torch.tensor([2, -100, 0]),
        "stenosis_labels": torch.tensor([[0.9, 0.1, float("nan")], [float("nan")] * 3, [0.2, 0.3, 0.0]]),
    }


@pytest.fixture(scope="module")
def model() -> VlmEcgModel:
    config = VlmEcgConfig(num_strata=3, vision_config={"image_size": IMAGE_PX}, strata_prior=[0.5, 0.3, 0.2])
    return VlmEcgModel(config).eval()


@pytest.mark.parametrize("branches", ["both", "image", "signal"])
def test_forward_backward_each_branch_switch(branches):
    model = VlmEcgModel(VlmEcgConfig(branches=branches, vision_config={"image_size": IMAGE_PX})).train()
    inputs = _inputs()
    if branches == "image":
        inputs.pop("signal")
    if branches == "signal":
        inputs.pop("pixel_values")
    out = model(**inputs, **_labels())
    assert out.triage_logits.shape == (BATCH,)
    assert out.culprit_logits.shape == (BATCH, 4)
    assert out.stenosis.shape == (BATCH, 3) and bool(((out.stenosis >= 0) & (out.stenosis <= 1)).all())
    assert out.fused_embeds.shape == (BATCH, model.config.fusion_hidden_size)
    assert (out.vision_embeds is None) == (branches == "signal")
    assert (out.signal_embeds is None) == (branches == "image")
    assert (model.vision_tower is None) == (branches == "signal") and (model.signal_encoder is None) == (
        branches == "image"
    )
    out.loss.backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    for part in (
        ("fusion", "heads")
        + (("vision_tower",) if branches != "signal" else ())
        + (("signal_encoder",) if branches != "image" else ())
    ):
        assert any(name.startswith(part) for name in grads), f"no gradient reached {part}"


def test_missing_input_for_a_branch_is_a_clear_error(model):
    with pytest.raises(ValueError, match="needs signal"):
        model(pixel_values=_inputs()["pixel_values"])
    with pytest.raises(ValueError, match=r"signal must be \(batch, 12, 5000\)"):
        model(**{**_inputs(), "signal": torch.zeros(BATCH, 12, 4000)})


def test_losses_are_masked_per_head(model):
    with torch.no_grad():
        out = model(**_inputs(), **_labels())
    triage = F.binary_cross_entropy_with_logits(out.triage_logits[:2], torch.tensor([1.0, 0.0]))
    culprit = F.cross_entropy(out.culprit_logits[[0, 2]], torch.tensor([2, 0]))
    torch.testing.assert_close(out.head_losses["triage"], triage)
    torch.testing.assert_close(out.head_losses["culprit"], culprit)
    assert set(out.head_losses) == {"triage", "culprit", "stenosis"}
    torch.testing.assert_close(out.loss, triage + culprit + out.head_losses["stenosis"])


def test_triage_only_batch_trains_and_unlabelled_batch_gives_zero_loss():
    model = VlmEcgModel(VlmEcgConfig(branches="signal")).train()
    signal = _inputs()["signal"]
    out = model(signal=signal, triage_labels=torch.tensor([1.0, 0.0, 1.0]))
    assert set(out.head_losses) == {"triage"}
    unknown = model(
        signal=signal,
        triage_labels=torch.full((BATCH,), -1.0),
        culprit_labels=torch.full((BATCH,), -100),
        stenosis_labels=torch.full((BATCH, 3), float("nan")),
    )
    assert unknown.head_losses == {} and unknown.loss.item() == 0.0
    unknown.loss.backward()  # still differentiable (every DDP rank must run backward)


def test_stenosis_significance_threshold_is_the_regression_output():
    model = VlmEcgModel(VlmEcgConfig(branches="signal")).eval()
    with torch.no_grad():
        out = model(signal=_inputs()["signal"], stenosis_labels=torch.full((BATCH, 3), 0.7))
    # at a target of exactly 0.7 the BCE target is 0 (not > 0.7): the loss is MSE + BCE(logit - logit(0.7), 0)
    logits = torch.logit(out.stenosis)
    expected = F.mse_loss(out.stenosis, torch.full_like(out.stenosis, 0.7)) + F.binary_cross_entropy_with_logits(
        logits - torch.logit(torch.tensor(0.7)), torch.zeros_like(logits)
    )
    torch.testing.assert_close(out.head_losses["stenosis"], expected, rtol=1e-4, atol=1e-5)


def test_strata_condition_the_heads_only(model):
    inputs = _inputs()
    with torch.no_grad():
        a = model(**inputs, strata=torch.tensor([0, 1, 2]))
        b = model(**inputs, strata=torch.tensor([2, 2, -1]))
    torch.testing.assert_close(a.fused_embeds, b.fused_embeds)
    assert not torch.allclose(a.triage_logits, b.triage_logits)
    with pytest.raises(ValueError, match="strata"):
        model(**inputs, strata=torch.tensor([0, 3, 1]))


def test_predict_adjusted_equals_the_explicit_sum_over_strata(model):
    inputs = _inputs()
    prior = torch.tensor(model.config.strata_prior)
    with torch.no_grad():
        adjusted = model.predict_adjusted(**inputs)
        per_z = [model(**inputs, strata=torch.full((BATCH,), z)) for z in range(3)]
    triage = sum(prior[z] * torch.sigmoid(o.triage_logits) for z, o in enumerate(per_z))
    culprit = sum(prior[z] * torch.softmax(o.culprit_logits, -1) for z, o in enumerate(per_z))
    stenosis = sum(prior[z] * o.stenosis for z, o in enumerate(per_z))
    torch.testing.assert_close(adjusted.triage_probs, triage)
    torch.testing.assert_close(adjusted.culprit_probs, culprit)
    torch.testing.assert_close(adjusted.stenosis, stenosis)
    torch.testing.assert_close(adjusted.culprit_probs.sum(-1), torch.ones(BATCH))
    with torch.no_grad():
        uniform = model.predict_adjusted(**inputs, prior=[1 / 3] * 3)
    torch.testing.assert_close(uniform.triage_probs, adjusted.triage_probs_per_stratum.mean(-1))


def test_predict_adjusted_needs_strata_and_a_prior():
    config = VlmEcgConfig(branches="signal", num_strata=2)
    model = VlmEcgModel(config)
    with pytest.raises(ValueError, match="strata_prior"):
        model.predict_adjusted(signal=_inputs()["signal"])
    config.set_strata_prior([30, 10])
    assert config.strata_prior == [0.75, 0.25]
    with pytest.raises(ValueError, match="num_strata"):
        VlmEcgModel(VlmEcgConfig(branches="signal")).predict_adjusted(signal=_inputs()["signal"])
    with pytest.raises(ValueError, match="summing to 1"):
        VlmEcgConfig(num_strata=2, strata_prior=[0.5, 0.6])


def test_save_and_reload_through_auto_classes(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, VlmEcgConfig) and config.strata_prior == model.config.strata_prior
    assert config.vision_config.local_config.window_size == model.config.vision_config.local_config.window_size
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(reloaded, VlmEcgModel) and not reloaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    inputs = _inputs()
    with torch.no_grad():
        before, after = (
            model(**inputs, strata=torch.tensor([0, 1, -1])),
            reloaded(**inputs, strata=torch.tensor([0, 1, -1])),
        )
    # identical weights; memory-mapped safetensors can be unaligned, which changes BLAS kernels in the last bits
    for field in ("triage_logits", "culprit_logits", "stenosis", "fused_embeds"):
        torch.testing.assert_close(getattr(before, field), getattr(after, field), rtol=1e-5, atol=1e-6)


def test_random_init_is_reproducible_from_the_config_seed():
    config = VlmEcgConfig(branches="signal")
    torch.manual_seed(123)
    a = VlmEcgModel(config)
    state = torch.random.get_rng_state()
    b = VlmEcgModel(config)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = VlmEcgModel(VlmEcgConfig(branches="signal", initializer_seed=1))
    assert not torch.equal(a.heads.triage.weight, c.heads.triage.weight)


def test_forward_features_gives_the_embeddings_without_heads(model):
    with torch.no_grad():
        features = model.forward_features(**_inputs())
        out = model(**_inputs())
    torch.testing.assert_close(features.fused_embeds, out.fused_embeds)
    assert features.vision_tokens.shape == (BATCH, (IMAGE_PX // 64) ** 2, model.config.vision_config.projection_dim)
    assert features.fusion_gate.shape == features.fused_embeds.shape
    assert bool(((features.fusion_gate > 0) & (features.fusion_gate < 1)).all())


def test_image_processor_letterboxes_uint8_pages():
    processor = VlmEcgImageProcessor.from_config(VlmEcgConfig())
    assert processor.image_size == 512
    page = torch.zeros(300, 600, 3, dtype=torch.uint8)  # a black 2:1 page
    pixels = processor(page.numpy())
    assert pixels.shape == (1, 3, 512, 512) and pixels.dtype == torch.float32
    # white bands above and below (pad 255 -> +1 after (x/255 - 0.5)/0.5), black page in the middle
    assert torch.allclose(pixels[0, :, :100], torch.ones(1)) and torch.allclose(pixels[0, :, 200:300], -torch.ones(1))
    batch = processor([page.numpy(), torch.full((512, 512, 3), 255, dtype=torch.uint8).numpy()])
    assert batch.shape == (2, 3, 512, 512) and torch.allclose(batch[1], torch.ones(1))
    with pytest.raises(ValueError, match="uint8"):
        processor(page.float().numpy())
