"""The kernel backend (mamba_ssm Triton) against the reference, on CUDA.

Skipped where CUDA or mamba_ssm is missing. Tolerances follow mamba_ssm's own
tests: the kernel's error against a float64 truth may be at most about twice the
float32 reference's error plus a small absolute slack (TF32-sized: the Triton kernels
compute float32 dot products in TF32).
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from bsmamba2_plugin import BSMamba2, BSMamba2Config
from bsmamba2_plugin.network.ssd import (
    gated_rmsnorm_kernel,
    gated_rmsnorm_reference,
    ssd_kernel,
    ssd_reference,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None,
                       reason="needs mamba_ssm"),
]


def _ssd_inputs(length: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    batch, heads, headdim, dstate = 3, 4, 64, 64

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    x = randn(batch, length, heads, headdim).to(dtype)
    dt = (randn(batch, length, heads) - 1).to(dtype)
    A = -torch.exp(torch.rand(heads, device="cuda", generator=gen) * math.log(16))
    B = randn(batch, length, 1, dstate).to(dtype)
    C = randn(batch, length, 1, dstate).to(dtype)
    D = randn(heads)
    dt_bias = 0.5 * randn(heads)
    return [t.requires_grad_() for t in (x, dt, A, B, C, D, dt_bias)]


@pytest.mark.parametrize("length", [1, 62, 63, 256, 801])
def test_ssd_kernel_matches_reference_forward_and_backward(length: int) -> None:
    inputs = _ssd_inputs(length, torch.float32, seed=length)
    wide = [t.detach().double().requires_grad_() for t in inputs]
    results = []
    for fn, args in ((ssd_kernel, inputs), (ssd_reference, [t.detach().clone().requires_grad_()
                                                            for t in inputs]), (ssd_reference, wide)):
        x, dt, A, B, C, D, dt_bias = args
        y = fn(x, dt, A, B, C, D, dt_bias=dt_bias)
        y.backward(torch.ones_like(y) / y.numel() ** 0.5)
        results.append([y.detach().double()] + [t.grad.double() for t in args])
    kernel, reference, truth = results
    names = ("y", "dx", "ddt", "dA", "dB", "dC", "dD", "ddt_bias")
    for name, k, r, t in zip(names, kernel, reference, truth):
        # (A gets no gradient at length 1: the state starts at zero.)
        scale = t.norm() + 1e-6
        ref_err, kernel_err = (r - t).norm() / scale, (k - t).norm() / scale
        # The Triton dots take float32 inputs in TF32 (10-bit mantissa): a few 1e-3 on the
        # small gradient tensors of short sequences (2.1e-3 seen for dB at length 1).
        assert kernel_err <= 2 * ref_err + 5e-3, (name, kernel_err.item(), ref_err.item())


def test_gated_rmsnorm_kernel_matches_reference() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    y = torch.randn(7, 33, 1024, device="cuda", generator=gen)
    z = torch.randn(7, 33, 1024, device="cuda", generator=gen)
    w = 1 + 0.1 * torch.randn(1024, device="cuda", generator=gen)
    k = gated_rmsnorm_kernel(y, z, w)
    r = gated_rmsnorm_reference(y, z, w)
    assert ((k - r).norm() / r.norm()).item() < 1e-5


def test_model_kernel_and_reference_agree_on_one_state_dict() -> None:
    config = BSMamba2Config.tiny(backend="kernel", stft_n_fft=256, stft_hop_length=64,
                                 stft_win_length=256, freqs_per_bands=(8, 8, 16, 32, 65))
    torch.manual_seed(0)
    kernel = BSMamba2(config).cuda()
    reference = BSMamba2(config.replace(backend="reference")).cuda()
    reference.load_state_dict(kernel.state_dict())
    mixture = torch.randn(2, 2, 44100, device="cuda")
    out_k, out_r = kernel(mixture), reference(mixture)
    assert ((out_k - out_r).norm() / out_r.norm()).item() < 2e-3
