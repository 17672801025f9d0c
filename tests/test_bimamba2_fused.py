"""The fused two-direction BiMamba2 path (the kernel backend's fast path), on a CPU.

The Triton op `split_conv` runs under Triton's interpreter (TRITON_INTERPRET=1) against
its PyTorch twin, forward and backward; the block's algebra (shared normalisation with
folded weights, flips, both directions as two groups of one scan) runs with pure-PyTorch
stand-ins for mamba_ssm's kernels against the per-direction reference path in float64.
The CUDA versions of both checks are in test_kernel_cuda.py.
"""

from __future__ import annotations

import importlib.util
import types

import pytest
import torch

from bsmamba2_plugin import BSMamba2Config
from bsmamba2_plugin.network.bimamba2_fused import (
    bimamba2_fused,
    kernel_chunk_size,
    split_conv_reference,
)
from bsmamba2_plugin.network.mamba2 import BiMamba2
from bsmamba2_plugin.network.ssd import gated_rmsnorm_reference, ssd_reference

from triton_interpreter import run_interpreted


def test_kernel_chunk_size_covers_the_band_axis_in_one_chunk() -> None:
    assert kernel_chunk_size(62) == 64
    assert kernel_chunk_size(5) == 16
    assert kernel_chunk_size(801) == 128
    assert kernel_chunk_size(801, 256) == 256


def reference_ops() -> types.SimpleNamespace:
    """mamba_ssm's two kernel entry points, computed by the reference backend."""

    def scan(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, dt_softplus=False):
        return ssd_reference(x, dt, A, B, C, D, chunk_size=chunk_size, dt_bias=dt_bias,
                             dt_softplus=dt_softplus)

    def rmsnorm_fn(y, weight, bias, z=None, eps=1e-6, group_size=None,
                   norm_before_gate=True):
        assert bias is None and not norm_before_gate
        groups = y.shape[-1] // group_size
        out = gated_rmsnorm_reference(y.view(-1, groups, group_size),
                                      z.view(-1, groups, group_size),
                                      torch.ones(group_size, dtype=y.dtype), eps)
        return out.view(y.shape) * weight

    return types.SimpleNamespace(mamba_chunk_scan_combined=scan, rmsnorm_fn=rmsnorm_fn)


def recording_scans(monkeypatch) -> tuple[list, object]:
    """mamba_ssm's kernels (what `bimamba2_fused` loads with ops=None) replaced by
    `reference_ops` whose chunked scan records its calls as "chunked": (calls, recording),
    where recording(name, scan) wraps another stand-in scan (default: the reference one)
    to record "name" in the same list."""
    calls = []
    chunked = reference_ops()

    def recording(name, scan=chunked.mamba_chunk_scan_combined):
        def run(*args, **kwargs):
            calls.append(name)
            kwargs.setdefault("dt_softplus", True)
            return scan(*args, **kwargs)
        return run

    fake = types.SimpleNamespace(mamba_chunk_scan_combined=recording("chunked"),
                                 rmsnorm_fn=chunked.rmsnorm_fn)
    monkeypatch.setattr("bsmamba2_plugin.network.ssd.load_mamba_triton", lambda: fake)
    return calls, recording


@pytest.mark.parametrize("length", [1, 5, 37])
def test_fused_block_equals_the_two_direction_reference(tiny_config, length) -> None:
    block = BiMamba2(tiny_config).double()
    with torch.no_grad():  # non-trivial norm weights and biases
        for p in block.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, length, tiny_config.dim, dtype=torch.float64, requires_grad=True)
    expected = block._forward(x)
    got = bimamba2_fused(block, x, ops=reference_ops(), split=split_conv_reference)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(expected.square().sum(), [x, *block.parameters()])
    fused = torch.autograd.grad(got.square().sum(), [x, *block.parameters()])
    for name, a, b in zip(["x", *dict(block.named_parameters())], fused, grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=name)



def _perturbed_block(config: BSMamba2Config) -> BiMamba2:
    block = BiMamba2(config).double()
    with torch.no_grad():  # non-trivial norm weights and biases
        for p in block.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return block


@pytest.mark.parametrize("length, x_grad", [(1, True), (37, True), (37, False)])
def test_selective_recompute_gives_the_same_outputs_and_gradients(tiny_config, length,
                                                                  x_grad) -> None:
    block = _perturbed_block(tiny_config)
    x = torch.randn(3, length, tiny_config.dim, dtype=torch.float64, requires_grad=x_grad)
    ops = reference_ops()
    plain = bimamba2_fused(block, x, ops=ops, split=split_conv_reference)
    recomputed = bimamba2_fused(block, x, ops=ops, split=split_conv_reference, recompute=True)
    torch.testing.assert_close(recomputed, plain, rtol=1e-12, atol=1e-12)
    leaves = [x] * x_grad + list(block.parameters())
    names = ["x"] * x_grad + list(dict(block.named_parameters()))
    probe = torch.randn_like(plain)
    want = torch.autograd.grad((plain * probe).sum(), leaves)
    got = torch.autograd.grad((recomputed * probe).sum(), leaves)
    for name, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_selective_recompute_keeps_only_the_input_and_the_scan_output(tiny_config) -> None:
    """What autograd keeps for the backward pass: everything the block computes on the
    plain path; the block input, the scan output and the weights with recompute."""
    block = _perturbed_block(tiny_config)
    x = torch.randn(4, 50, tiny_config.dim, dtype=torch.float64, requires_grad=True)
    weights = sum(p.numel() for p in block.parameters())

    def saved_elements(recompute: bool) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[id(t)] = t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            bimamba2_fused(block, x, ops=reference_ops(), split=split_conv_reference,
                           recompute=recompute)
        return sum(seen.values())

    mixer = block.forward_blocks[0].mixer
    activations = x.numel() + 4 * 50 * 2 * mixer.d_inner  # x and y (both directions)
    kept = saved_elements(True)
    assert kept <= activations + 2 * weights, kept
    assert saved_elements(False) > 4 * kept


def test_selective_checkpointing_off_the_kernel_path_recomputes_the_whole_block(
        tiny_config) -> None:
    """On the reference backend (CPU) "selective" falls back to full recomputation."""
    plain = _perturbed_block(tiny_config)
    selective = BiMamba2(tiny_config.replace(gradient_checkpointing="selective")).double()
    selective.load_state_dict(plain.state_dict())
    x = torch.randn(2, 9, tiny_config.dim, dtype=torch.float64, requires_grad=True)
    kept: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t,
                                                  lambda t: t):
        out = selective(x)
    assert sum(kept) == x.numel()  # the checkpoint keeps its input alone
    want = torch.autograd.grad(plain(x).sum(), [x, *plain.parameters()])
    got = torch.autograd.grad(out.sum(), [x, *selective.parameters()])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


SPLIT_CONV_CHECK = """
    import torch
    from bsmamba2_plugin.network import split_conv as fused
    from bsmamba2_plugin.network.bimamba2_fused import split_conv, split_conv_reference
    torch.manual_seed(0)
    di, ns, nh = 16, 8, 2
    e = 2 * di + 2 * ns + nh
    # conv_bwd_pre walks its 64-row blocks fused._SB_PRE rows at a time; also 16 and 64
    # (the whole block in one step), settings benchmarks/gpu_split_conv.py times
    in_use = fused._SB_PRE
    for step, n, length in [(step, n, length) for step in (in_use, 16, 64)
                            for n, length in ((2, 37), (1, 3), (3, 64))]:
        fused._SB_PRE = step
        P = torch.randn(n, length, 2 * e, requires_grad=True)
        w = torch.randn(2, di + 2 * ns, 4, requires_grad=True)
        b = torch.randn(2, di + 2 * ns, requires_grad=True)
        outs = split_conv(P, w, b, d_inner=di, d_state=ns, nheads=nh)
        refs = split_conv_reference(P, w, b, d_inner=di, d_state=ns, nheads=nh)
        weights = [torch.randn_like(r) for r in refs]
        loss = sum((o * g).sum() for o, g in zip(outs, weights))
        ref_loss = sum((r * g).sum() for r, g in zip(refs, weights))
        got = torch.autograd.grad(loss, [P, w, b])
        want = torch.autograd.grad(ref_loss, [P, w, b])
        err = max(max((o - r).abs().max().item() for o, r in zip(outs, refs)),
                  max((g - h).abs().max().item() for g, h in zip(got, want)))
        assert err < 1e-4, (step, n, length, err)
    fused._SB_PRE = in_use
    # wider and longer: 176 conv channels (two channel blocks forward, three backward),
    # lengths 65 and 130 (the backward's 64-row blocks read a halo across each boundary),
    # bfloat16 P as under autocast, against float64 on the same (rounded) inputs
    di2, ns2, nh2 = 128, 24, 2
    e2 = 2 * di2 + 2 * ns2 + nh2
    for n, length, dtype, bound in ((2, 65, torch.float32, 1e-6),
                                    (1, 130, torch.bfloat16, 6e-3)):
        P2 = torch.randn(n, length, 2 * e2).to(dtype).requires_grad_(True)
        w2 = torch.randn(2, di2 + 2 * ns2, 4, requires_grad=True)
        b2 = torch.randn(2, di2 + 2 * ns2, requires_grad=True)
        outs = split_conv(P2, w2, b2, d_inner=di2, d_state=ns2, nheads=nh2)
        refs = split_conv_reference(P2.double(), w2.double(), b2.double(), d_inner=di2,
                                    d_state=ns2, nheads=nh2)
        weights = [torch.randn_like(r) for r in refs]
        got = torch.autograd.grad(sum((o.double() * g).sum() for o, g in zip(outs, weights)),
                                  [P2, w2, b2])
        want = torch.autograd.grad(sum((r * g).sum() for r, g in zip(refs, weights)),
                                   [P2, w2, b2])
        for name, a, r in zip(("x", "B", "C", "z", "dt", "dP", "dw", "db"), [*outs, *got],
                              [*refs, *want]):
            assert a.dtype == (torch.float32 if name in ("dw", "db") else dtype), name
            err = ((a.double() - r).norm() / r.norm()).item()
            assert err < bound, (n, length, dtype, name, err)
    # inside a non-reentrant checkpoint (gradient_checkpointing: true) the backward may
    # read its saved tensors only once
    P = torch.randn(2, 5, 2 * e, requires_grad=True)
    run = lambda P: split_conv(P, w, b, d_inner=di, d_state=ns, nheads=nh)[0].sum()
    torch.utils.checkpoint.checkpoint(run, P, use_reentrant=False).backward()
    assert P.grad is not None
    print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_split_conv_triton_kernels_match_the_reference_in_the_interpreter() -> None:
    run_interpreted(SPLIT_CONV_CHECK)


def test_split_conv_reference_layout(tiny_config: BSMamba2Config) -> None:
    """Outputs of the reference op: x, B, C, z and dt of both directions side by side, the
    backward direction reversed in time (its conv reads the reversed sequence causally)."""
    di, ns, nh = 4, 2, 1
    e = 2 * di + 2 * ns + nh
    P = torch.randn(1, 6, 2 * e, dtype=torch.float64)
    w = torch.zeros(2, di + 2 * ns, 4, dtype=torch.float64)
    w[..., -1] = 1.0  # identity conv: SiLU of the input itself
    b = torch.zeros(2, di + 2 * ns, dtype=torch.float64)
    x, B, C, z, dt = split_conv_reference(P, w, b, d_inner=di, d_state=ns, nheads=nh)
    silu = torch.nn.functional.silu
    torch.testing.assert_close(x[..., :di], silu(P[..., di:2 * di]))
    torch.testing.assert_close(x[..., di:], silu(P[..., e + di:e + 2 * di]).flip(1))
    torch.testing.assert_close(B[..., :ns], silu(P[..., 2 * di:2 * di + ns]))
    torch.testing.assert_close(C[..., ns:], silu(P[..., e + 2 * di + ns:e + 2 * di + 2 * ns]).flip(1))
    torch.testing.assert_close(z[..., di:], P[..., e:e + di].flip(1))
    torch.testing.assert_close(dt[..., :nh], P[..., e - nh:e])
