from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from bsmamba2_plugin.network.mamba2 import BiMamba2, Mamba2Mixer, causal_conv1d
from bsmamba2_plugin.network.plan import CPU_TOKENS_PER_GROUP, resolve_plan


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 37])
def test_causal_conv1d_equals_depthwise_conv1d(length: int) -> None:
    x = torch.randn(3, length, 12, dtype=torch.float64)
    weight, bias = torch.randn(12, 1, 4, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    expected = F.conv1d(x.transpose(1, 2), weight, bias, padding=3, groups=12)[..., :length]
    assert torch.allclose(causal_conv1d(x, weight, bias), expected.transpose(1, 2), atol=1e-12)


def test_mixer_is_causal_along_the_sequence(tiny_config) -> None:
    mixer = Mamba2Mixer(16, d_state=8, d_conv=4, expand=2, headdim=8, chunk_size=5,
                        backend="reference").double()
    u = torch.randn(2, 30, 16, dtype=torch.float64)
    changed = u.clone()
    changed[:, 20:] += 1.0
    out, out_changed = mixer(u), mixer(changed)
    assert torch.allclose(out[:, :20], out_changed[:, :20], atol=1e-12)
    assert not torch.allclose(out[:, 20:], out_changed[:, 20:])


def test_mixer_initialisation_follows_mamba_ssm() -> None:
    mixer = Mamba2Mixer(256, d_state=128, d_conv=4, expand=4, headdim=64, chunk_size=None,
                        backend="reference")
    dt = F.softplus(mixer.dt_bias)
    assert mixer.nheads == 16 and mixer.in_proj.weight.shape == (2320, 256)
    assert mixer.conv1d.weight.shape == (1280, 1, 4) and mixer.conv1d.bias.shape == (1280,)
    assert ((dt >= 1e-3 - 1e-7) & (dt <= 0.1 + 1e-7)).all()
    assert ((-mixer.A_log.exp() <= -1) & (-mixer.A_log.exp() >= -16)).all()
    assert torch.equal(mixer.D, torch.ones(16))
    assert torch.isfinite(torch.cat([p.flatten() for p in mixer.parameters()])).all()


def test_bimamba2_grouped_inference_equals_one_batch(tiny_config) -> None:
    block = BiMamba2(tiny_config).eval()
    x = torch.randn(9, 40, 16)
    plan = resolve_plan(tiny_config, "cpu")
    assert plan.cpu_tokens_per_group == CPU_TOKENS_PER_GROUP
    calls = []
    run = block._forward
    block._forward = lambda part, backend=None: calls.append(len(part)) or run(part, backend)
    with torch.no_grad():
        whole = run(x)
        grouped = block(x, dataclasses.replace(plan, cpu_tokens_per_group=100))
    assert calls == [2, 2, 2, 2, 1]  # groups of 100 // 40 = 2 sequences
    assert torch.allclose(grouped, whole, atol=1e-6)


def test_bimamba2_has_the_official_parameter_names(tiny_config) -> None:
    names = set(BiMamba2(tiny_config).state_dict())
    for branch in ("forward_blocks", "backward_blocks"):
        assert f"{branch}.0.norm.weight" in names
        for leaf in ("dt_bias", "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias",
                     "norm.weight", "out_proj.weight"):
            assert f"{branch}.0.mixer.{leaf}" in names
    assert BiMamba2(tiny_config).linear.weight.shape == (32, 16, 1)
