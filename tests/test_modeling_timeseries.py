"""The time-series branch: torch decomposition, component switches, prompts and prompt pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm_ecg.modeling import VlmEcgConfig, VlmEcgModel, VlmEcgSignalConfig
from vlm_ecg.modeling.timeseries import SeriesDecomposition, SignalEncoder
from vlm_ecg.signal import decompose


def _signal(batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t_s = torch.arange(5000) / 500.0
    wander = 0.3 * torch.sin(2 * torch.pi * 0.2 * t_s)
    mains = 0.05 * torch.sin(2 * torch.pi * 50 * t_s)
    return wander + mains + 0.2 * torch.randn(batch, 12, 5000, generator=generator)


def test_torch_decomposition_matches_numpy_and_is_differentiable():
    config = VlmEcgSignalConfig(components=["trend", "seasonal", "residual"])
    signal = _signal().requires_grad_(True)
    parts = SeriesDecomposition(config)(signal)
    reference = decompose(signal.detach().numpy(), 500.0)
    for name in ("trend", "seasonal", "residual"):
        np.testing.assert_allclose(parts[name].detach().numpy(), reference[name], atol=2e-5)
    parts["residual"].square().sum().backward()
    assert signal.grad is not None and torch.isfinite(signal.grad).all()


@pytest.mark.parametrize("components", [["residual"], ["trend", "seasonal", "residual"]])
def test_component_switches_each_get_their_stem_and_prompt(components):
    config = VlmEcgSignalConfig(components=components)
    encoder = SignalEncoder(config)
    assert set(encoder.embedder.patch_stems) == set(components) == set(encoder.embedder.task_prompts)
    out = encoder(_signal())
    assert config.num_patches == 100 and config.patch_stride == 50  # 5 000 samples -> 100 patches of 100 ms
    per_component = config.num_prompt_tokens + config.tokens_per_component
    assert config.tokens_per_component == 100
    assert out.last_hidden_state.shape == (2, len(components) * per_component, config.hidden_size)
    assert encoder.sequence_length == out.last_hidden_state.shape[1]
    out.pooler_output.sum().backward()
    for name in components:
        assert encoder.embedder.patch_stems[name][0].weight.grad.abs().sum() > 0
        assert encoder.embedder.task_prompts[name].grad.abs().sum() > 0


def test_stem_length_arithmetic_matches_the_convolutions():
    for strides, kernels in (([5, 2, 5], [11, 7, 7]), ([10, 5], [15, 9]), ([4, 5], [9, 9])):
        config = VlmEcgSignalConfig(stem_strides=strides, stem_kernel_sizes=kernels)
        tokens = SignalEncoder(config).embedder._tokens("residual", _signal(1))
        assert tokens.shape[1] == config.num_patches
    with pytest.raises(ValueError, match="same length"):
        VlmEcgSignalConfig(stem_strides=[5, 2], stem_kernel_sizes=[11, 7, 7])
    with pytest.raises(ValueError, match="lead_mixing"):
        VlmEcgSignalConfig(lead_mixing="late")


def test_components_are_validated():
    with pytest.raises(ValueError, match="components"):
        VlmEcgSignalConfig(components=["cardiac"])
    with pytest.raises(ValueError, match="token_pool"):
        VlmEcgSignalConfig(token_pool=3)  # 100 patches do not split into threes
    assert VlmEcgSignalConfig(components=["residual", "trend"]).components == ["trend", "residual"]


def test_prompt_pool_selects_by_key_and_adds_its_matching_loss():
    config = VlmEcgConfig(
        branches="signal", signal_config={"prompt_pool_size": 6, "prompt_pool_top_k": 2, "prompt_pool_length": 3}
    )
    model = VlmEcgModel(config).train()
    out = model(signal=_signal(), triage_labels=torch.tensor([1.0, 0.0]))
    assert set(out.head_losses) == {"triage", "prompt_pool"}
    seq = model.signal_encoder.sequence_length
    assert seq == 4 + 2 * 3 + 100
    out.loss.backward()
    pool = model.signal_encoder.embedder.prompt_pool
    assert pool.keys.grad.abs().sum() > 0 and pool.prompts.grad.abs().sum() > 0
    # only the chosen prompts (2 of 6 per sample) receive gradient
    touched = (pool.prompts.grad.abs().sum(dim=(1, 2)) > 0).sum().item()
    assert 2 <= touched <= 4


def test_early_mixing_reads_leads_as_channels():
    encoder = SignalEncoder(VlmEcgSignalConfig()).eval()
    assert encoder.embedder.lead_embedding is None
    assert encoder.embedder.patch_stems["residual"][0].in_channels == 12
    signal = _signal(1)
    with torch.no_grad():
        a = encoder(signal).pooler_output
        b = encoder(signal[:, [1, 0, *range(2, 12)]]).pooler_output
    assert not torch.allclose(a, b, atol=1e-5)  # which lead carries what matters


def test_independent_leads_share_stem_weights_and_are_told_apart_by_the_lead_embedding():
    config = VlmEcgSignalConfig(lead_mixing="independent", token_pool=4)
    assert config.tokens_per_component == 12 * 25
    encoder = SignalEncoder(config).eval()
    signal = _signal(1)
    swapped = signal[:, [1, 0, *range(2, 12)]]
    with torch.no_grad():
        a, b = encoder(signal).pooler_output, encoder(swapped).pooler_output
        encoder.embedder.lead_embedding.zero_()
        c, d = encoder(signal).pooler_output, encoder(swapped).pooler_output
    assert not torch.allclose(a, b, atol=1e-5)  # lead identity matters
    torch.testing.assert_close(c, d, rtol=1e-4, atol=1e-5)  # without it, swapping two leads changes nothing
