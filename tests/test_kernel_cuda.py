"""The kernel backend (mamba_ssm Triton) against the reference, on CUDA.

Skipped where CUDA or mamba_ssm is missing. Tolerances follow mamba_ssm's own
tests: the kernel's error against a float64 truth may be at most about twice the
float32 reference's error plus a small absolute slack (TF32-sized: the Triton kernels
compute float32 dot products in TF32).
"""

from __future__ import annotations

import copy
import dataclasses

import importlib.util
import math

import pytest
import torch

from bsmamba2_plugin import BSMamba2, BSMamba2Config
from bsmamba2_plugin.network.plan import resolve_plan
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


def _ssd_inputs(length: int, dtype: torch.dtype, seed: int, *, batch: int = 3,
                heads: int = 4, groups: int = 1, dstate: int = 64, bc_scale: float = 1.0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    headdim = 64

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    x = randn(batch, length, heads, headdim).to(dtype)
    dt = (randn(batch, length, heads) - 1).to(dtype)
    A = -torch.exp(torch.rand(heads, device="cuda", generator=gen) * math.log(16))
    B = (randn(batch, length, groups, dstate) * bc_scale).to(dtype)
    C = (randn(batch, length, groups, dstate) * bc_scale).to(dtype)
    D = randn(heads)
    dt_bias = 0.5 * randn(heads)
    return [t.requires_grad_() for t in (x, dt, A, B, C, D, dt_bias)]


def _scan_results(scan, inputs, grad_of, *, wide: bool = False) -> list[torch.Tensor]:
    """[y, dx, ddt, dA, dB, dC, dD, ddt_bias] in float64 of `scan` (ssd_kernel's
    signature) on fresh copies of `inputs` (float64 ones if `wide`), backward from
    `grad_of(y)`."""
    args = [(t.detach().double() if wide else t.detach().clone()).requires_grad_()
            for t in inputs]
    y = scan(*args[:6], dt_bias=args[6])
    y.backward(grad_of(y))
    return [y.detach().double()] + [t.grad.double() for t in args]


_SCAN_NAMES = ("y", "dx", "ddt", "dA", "dB", "dC", "dD", "ddt_bias")


@pytest.mark.parametrize("length", [1, 62, 63, 256, 801])
def test_ssd_kernel_matches_reference_forward_and_backward(length: int) -> None:
    inputs = _ssd_inputs(length, torch.float32, seed=length)

    def grad_of(y):
        return torch.ones_like(y) / y.numel() ** 0.5

    kernel, reference, truth = (_scan_results(ssd_kernel, inputs, grad_of),
                                _scan_results(ssd_reference, inputs, grad_of),
                                _scan_results(ssd_reference, inputs, grad_of, wide=True))
    for name, k, r, t in zip(_SCAN_NAMES, kernel, reference, truth):
        # (A gets no gradient at length 1: the state starts at zero.)
        scale = t.norm() + 1e-6
        ref_err, kernel_err = (r - t).norm() / scale, (k - t).norm() / scale
        # The Triton dots take float32 inputs in TF32 (10-bit mantissa): a few 1e-3 on the
        # small gradient tensors of short sequences (2.1e-3 seen for dB at length 1).
        assert kernel_err <= 2 * ref_err + 5e-3, (name, kernel_err.item(), ref_err.item())


@pytest.mark.parametrize("length", [1, 33, 62, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_short_scan_is_as_accurate_as_mamba_ssm_scan(length: int, dtype) -> None:
    """short_scan (the band axis's one-chunk scan) and mamba_ssm's chunked scan, both
    against the float64 reference: outputs and all gradients, float32 and bfloat16 inputs,
    the band axis at paper widths (both directions as 2 groups of 16 heads). The short
    scan may be at most about twice as far from the truth as mamba_ssm."""
    from bsmamba2_plugin.network.short_scan import short_scan

    inputs = _ssd_inputs(length, dtype, seed=length, batch=6, heads=32, groups=2,
                         dstate=128, bc_scale=0.25)
    probe = torch.randn_like(inputs[0], dtype=torch.float32)

    def grad_of(y):
        return probe.to(y.dtype)

    def short(x, dt, A, B, C, D, dt_bias):
        return short_scan(x, dt, A, B, C, None, D=D, dt_bias=dt_bias)

    short_res, kernel, truth = (_scan_results(short, inputs, grad_of),
                                _scan_results(ssd_kernel, inputs, grad_of),
                                _scan_results(ssd_reference, inputs, grad_of, wide=True))
    for name, s_, k, t in zip(_SCAN_NAMES, short_res, kernel, truth):
        scale = t.norm() + 1e-6
        short_err, kernel_err = (s_ - t).norm() / scale, (k - t).norm() / scale
        print(f"{dtype} l={length} {name}: short {short_err:.2e} mamba_ssm {kernel_err:.2e}")
        assert short_err <= 2 * kernel_err + 2e-3, (name, short_err.item(), kernel_err.item())


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


def test_split_conv_triton_matches_reference_on_cuda() -> None:
    from bsmamba2_plugin.network.bimamba2_fused import split_conv, split_conv_reference

    torch.manual_seed(0)
    di, ns, nh = 1024, 128, 16  # the paper's widths
    e = 2 * di + 2 * ns + nh
    for n, length in ((5, 801), (40, 62), (3, 1)):
        P = torch.randn(n, length, 2 * e, device="cuda", requires_grad=True)
        w = torch.randn(2, di + 2 * ns, 4, device="cuda", requires_grad=True)
        b = torch.randn(2, di + 2 * ns, device="cuda", requires_grad=True)
        outs = split_conv(P, w, b, d_inner=di, d_state=ns, nheads=nh)
        refs = split_conv_reference(P.double(), w.double(), b.double(), d_inner=di,
                                    d_state=ns, nheads=nh)
        weights = [torch.randn_like(o) for o in outs]
        got = torch.autograd.grad(sum((o * g).sum() for o, g in zip(outs, weights)), [P, w, b])
        want = torch.autograd.grad(sum((r * g.double()).sum() for r, g in zip(refs, weights)),
                                   [P, w, b])
        for name, a, r in zip(("x", "B", "C", "z", "dt", "dP", "dw", "db"), [*outs, *got],
                              [*refs, *want]):
            err = ((a.double() - r.double()).norm() / r.double().norm()).item()
            assert err < 1e-5, (n, length, name, err)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_fused_block_runs_on_a_gpu_that_is_not_the_current_one() -> None:
    """`msst-train --device_ids 1` moves the model to cuda:1 and leaves cuda:0 current;
    the Triton launches must follow the tensors (outputs and gradients as on cuda:0)."""
    from bsmamba2_plugin.network.mamba2 import BiMamba2

    torch.manual_seed(0)
    block = BiMamba2(BSMamba2Config.paper(backend="kernel"))
    x = torch.randn(2, 62, 256)
    results = []
    for device in ("cuda:0", "cuda:1"):
        torch.cuda.set_device(0)
        module = copy.deepcopy(block).to(device)
        xd = x.to(device).requires_grad_()
        y = module(xd)
        grads = torch.autograd.grad(y.square().mean(), [xd, *module.parameters()])
        torch.cuda.synchronize(device)
        results.append([t.detach().cpu() for t in (y, *grads)])
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _paper_block_twins(**changes):
    """A paper-width BiMamba2 on the kernel backend (seed 0) and one built with `changes`
    to its config holding the same weights, both on CUDA."""
    from bsmamba2_plugin.network.mamba2 import BiMamba2

    torch.manual_seed(0)
    config = BSMamba2Config.paper(backend="kernel")
    block = BiMamba2(config).cuda()
    twin = BiMamba2(config.replace(**changes)).cuda()
    twin.load_state_dict(block.state_dict())
    return block, twin


@pytest.mark.parametrize("length, short_scan", [(801, "0"), (62, "0"), (1, "0"), (62, "1"),
                                                (1, "1")])
def test_fused_block_matches_the_per_direction_kernel_path(length: int,
                                                            short_scan: str) -> None:
    """The fused path against the same kernels run one direction at a time, and both
    against the reference backend, on the paper's block widths (float32); the band axis's
    lengths also with `short_scan: true` (the fused path's scan is then short_scan)."""
    block, reference = _paper_block_twins(backend="reference")
    plan = resolve_plan(block.config.replace(short_scan=short_scan == "1"), "cuda")
    x = torch.randn(4, length, 256, device="cuda", requires_grad=True)
    results = {}
    for name, module, module_plan in (
            ("fused", block, plan),
            ("unfused", block, dataclasses.replace(plan, fused_block=False)),
            ("reference", reference, None)):
        y = module(x, module_plan)
        grads = torch.autograd.grad(y.square().mean(), [x, *module.parameters()])
        results[name] = [y.detach(), *grads]
    for other in ("unfused", "reference"):
        for i, (a, b) in enumerate(zip(results["fused"], results[other])):
            err = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
            # TF32 dots in the Triton kernels (see the module docstring)
            assert err < 2e-3, (other, i, err)


@pytest.mark.parametrize("length", [801, 62])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_recompute_matches_the_fused_path(length: int, dtype) -> None:
    """gradient_checkpointing "selective" (mamba_ssm's scan forward and backward called as
    two halves, the rest recomputed) against the plain fused path: same outputs and
    gradients, in float32 and under bfloat16 autocast, on the paper's block widths."""
    plain, selective = _paper_block_twins(gradient_checkpointing="selective")
    x = torch.randn(4, length, 256, device="cuda", requires_grad=True)
    probe = torch.randn(4, length, 256, device="cuda")
    results = []
    for module in (plain, selective):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype != torch.float32):
            y = module(x)
        grads = torch.autograd.grad((y.float() * probe).sum(), [x, *module.parameters()])
        results.append([y.detach().float(), *grads])
    names = ["y", "x", *dict(plain.named_parameters())]
    for name, a, b in zip(names, *results):
        err = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
        assert err < 1e-3, (name, err)
