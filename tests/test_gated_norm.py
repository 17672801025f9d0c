"""Our gated RMSNorm kernels (`network/gated_norm.py`): under Triton's interpreter
(TRITON_INTERPRET=1, in a child process: it must be set before triton is imported) the
forward equals its float64 twin and the backward equals the twin's autograd, at the fused
block's layout (rows of 2 groups), with a group width that is not a power of two, a
strided z (a column slice of a wider tensor, as the fused block's split gives), rows that
do not fill the last tile, programs that walk several tiles, and bfloat16 inputs. The
speed is measured on a GPU (`bsmamba2 bench --models bsmamba2-selective bsmamba2-selective-mamba-norm`)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bsmamba2_plugin.network import gated_norm as module

from triton_interpreter import run_interpreted

CHECK = """
import torch
from bsmamba2_plugin.network import gated_norm as m

m.sm_count = lambda device: 1
m.PROGRAMS_PER_SM = 2  # 2 programs at most: each walks several tiles, some fully masked
torch.manual_seed(0)
for rows, group, groups, dtype, tol in [(37, 48, 2, torch.float32, 1e-5),
                                        (37, 1024, 2, torch.float32, 1e-5),
                                        (70, 64, 1, torch.float32, 1e-5),
                                        (37, 64, 2, torch.bfloat16, 2e-2)]:
    width = group * groups
    y = torch.randn(rows, width).to(dtype)
    wide = torch.randn(rows, width + 24).to(dtype)
    z = wide[:, 8:8 + width]  # row stride width + 24
    w = (1 + 0.3 * torch.randn(width)).float()
    dout = torch.randn(rows, width).to(dtype)
    # the twin in float64, and its autograd
    y64, z64, w64 = (t.double().requires_grad_(True) for t in (y, z, w))
    ref = m.gated_norm_reference(y64, z64, w64, 1e-5, group)
    ref.backward(dout.double())
    out = m.gated_norm_forward(y, z, w, 1e-5, group)
    dy, dz, dw = m.gated_norm_backward(dout, y, z, w, 1e-5, group)
    assert out.dtype == dtype and dy.dtype == dtype and dz.dtype == dtype
    assert dw.dtype == torch.float32
    for name, got, want in [("out", out, ref), ("dy", dy, y64.grad), ("dz", dz, z64.grad),
                            ("dw", dw, w64.grad)]:
        err = ((got.double() - want.detach()).norm() / want.detach().norm()).item()
        assert err < tol, (rows, group, groups, dtype, name, err)
    # the autograd function through the rmsnorm_fn signature the fused block calls
    y1, z1, w1 = (t.detach().clone().requires_grad_(True) for t in (y, z.contiguous(), w))
    g = m.gated_norm(y1, w1, None, z=z1, eps=1e-5, group_size=group, norm_before_gate=False)
    g.backward(dout)
    assert torch.equal(g, out) and torch.equal(y1.grad, dy) and torch.equal(z1.grad, dz)
    assert torch.allclose(w1.grad, dw)

# the fused block (split conv and scan by the reference) with our norm against mamba_ssm's
# norm computed by the reference, forward and gradients, selective recompute on and off
import types
from bsmamba2_plugin.network.bimamba2_fused import bimamba2_fused, split_conv_reference
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.mamba2 import BiMamba2
from bsmamba2_plugin.network.ssd import ssd_reference

def scan(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, dt_softplus=False):
    return ssd_reference(x, dt, A, B, C, D, chunk_size=chunk_size, dt_bias=dt_bias,
                         dt_softplus=dt_softplus)

def norm(y, weight, bias, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
    return m.gated_norm_reference(y, z, weight, eps, group_size)

theirs = types.SimpleNamespace(mamba_chunk_scan_combined=scan, rmsnorm_fn=norm)
config = BSMamba2Config(dim=32, depth=1, headdim=16, d_state=16, stft_n_fft=64,
                        stft_win_length=64, stft_hop_length=16, freqs_per_bands=(33,))
block = BiMamba2(config)
with torch.no_grad():
    for mixer in (block.forward_blocks[0].mixer, block.backward_blocks[0].mixer):
        mixer.norm.weight.mul_(1 + 0.3 * torch.randn_like(mixer.norm.weight))
x = torch.randn(3, 21, 32)
for recompute in (False, True):
    results = []
    for ops in (theirs, m.gated_norm_ops(theirs)):
        block.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = bimamba2_fused(block, xi, ops=ops, split=split_conv_reference,
                             recompute=recompute)
        out.square().sum().backward()
        results.append([out.detach(), xi.grad] + [p.grad.clone() for p in block.parameters()
                                                  if p.grad is not None])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
print("ok")
"""

PACKED_CHECK = """
import sys
import types
import torch
sys.path.insert(0, "tests")
from test_bimamba2_fused import reference_ops
from bsmamba2_plugin.network import gated_norm as m
from bsmamba2_plugin.network.bimamba2_fused import bimamba2_fused, split_conv
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.mamba2 import BiMamba2

torch.manual_seed(0)
# the kernel alone: z read from P (two directions, the second time-reversed) against the
# same norm of the z split_conv copies out of P; a group width that is not a power of two
n, length, gs, width = 3, 7, 48, 83
for dtype in (torch.float32, torch.float16):
    P = torch.randn(n, length, 2 * width).to(dtype)
    y = torch.randn(n * length, 2 * gs).to(dtype)
    w = (1 + 0.3 * torch.randn(2 * gs)).float()
    z = torch.cat([P[..., :gs], P.flip(1)[..., width:width + gs]], -1).reshape(-1, 2 * gs)
    want = m.gated_norm_forward(y, z, w, 1e-5, gs)
    got = m.gated_norm_forward_packed(y, P, w, 1e-5, gs, width)
    assert torch.equal(got, want), (dtype, (got.float() - want.float()).abs().max())
    # the backward: dz lands in P's gradient where z was read, nothing else of it is touched
    dout = torch.randn(n * length, 2 * gs).to(dtype)
    want_dy, want_dz, want_dw = m.gated_norm_backward(dout, y, z, w, 1e-5, gs)
    dP = torch.full_like(P, 7.0)
    dy, dw = m.gated_norm_backward_packed(dout, y, P, w, 1e-5, gs, width, dP)
    assert torch.equal(dy, want_dy) and torch.equal(dw, want_dw), dtype
    dz = want_dz.view(n, length, 2 * gs)
    assert torch.equal(dP[..., :gs], dz[..., :gs]), dtype
    assert torch.equal(dP.flip(1)[..., width:width + gs], dz[..., gs:]), dtype
    rest = torch.ones(2 * width, dtype=torch.bool)
    rest[:gs] = rest[width:width + gs] = False
    assert bool((dP[..., rest] == 7).all()), dtype

# the block: without autograd and with packed_gate (the packed path) equal to the path that
# copies z (off by default, and under autograd), with
# split_conv's and our norm's kernels; the packed norm must have run
calls = []
packed = m.gated_norm_forward_packed
def counting(*args, **kwargs):
    calls.append(1)
    return packed(*args, **kwargs)
m.gated_norm_forward_packed = counting
ops = m.gated_norm_ops(reference_ops())
config = BSMamba2Config(dim=32, depth=1, headdim=16, d_state=16, stft_n_fft=64,
                        stft_win_length=64, stft_hop_length=16, freqs_per_bands=(33,))
block = BiMamba2(config)
x = torch.randn(2, 37, 32)
with torch.no_grad():
    fast = bimamba2_fused(block, x, ops=ops, split=split_conv, packed_gate=True)
    assert calls == [1], calls
    plain = bimamba2_fused(block, x, ops=ops, split=split_conv)  # off by default
assert calls == [1], calls
with torch.enable_grad():
    full = bimamba2_fused(block, x.clone().requires_grad_(True), ops=ops, split=split_conv,
                          packed_gate=True)  # with autograd: never packed
assert calls == [1], calls
assert torch.equal(fast, full.detach()), (fast - full).abs().max()
assert torch.equal(fast, plain)

# training under selective recompute: the packed path (z read from P forward and in the
# recompute, dz written into P's gradient) gives the copying path's output and gradients
results = []
for packed_gate in (False, True):
    calls.clear()
    block.zero_grad()
    xi = x.clone().requires_grad_(True)
    out = bimamba2_fused(block, xi, ops=ops, split=split_conv, recompute=True,
                         packed_gate=packed_gate)
    out.square().sum().backward()
    assert len(calls) == (2 if packed_gate else 0), (packed_gate, calls)
    results.append([out.detach(), xi.grad] + [p.grad.clone() for p in block.parameters()
                                              if p.grad is not None])
assert len(results[0]) == len(results[1]) > 8
for a, b in zip(*results):
    torch.testing.assert_close(b, a, rtol=0, atol=0)
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_gated_norm_kernels_match_the_float64_twin_in_the_interpreter() -> None:
    run_interpreted(CHECK)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_inference_reads_the_gate_straight_from_the_projection_in_the_interpreter() -> None:
    """With `packed_gate` and without autograd the fused block's norm reads z from the
    projection P (no copy of z): the kernel equals the norm of the copied z exactly
    (float32, float16; the second direction time-reversed), and the block's output
    equals the copying path's."""
    run_interpreted(PACKED_CHECK)


def test_the_twin_is_the_one_group_norm_per_group() -> None:
    from bsmamba2_plugin.network.ssd import gated_rmsnorm_reference

    y, z = torch.randn(5, 96, dtype=torch.float64), torch.randn(5, 96, dtype=torch.float64)
    w = torch.randn(96, dtype=torch.float64)
    halves = torch.cat([gated_rmsnorm_reference(y[:, s], z[:, s], w[s], 1e-5)
                        for s in (slice(0, 48), slice(48, 96))], 1)
    torch.testing.assert_close(module.gated_norm_reference(y, z, w, 1e-5, 48), halves)


def test_the_plan_routes_the_fused_block_to_our_norm(monkeypatch, tiny_config) -> None:
    """`gated_norm: bsmamba2` (the default) sends the fused block's norm through ours,
    `mamba_ssm` through mamba_ssm's `rmsnorm_fn` (stand-ins record which ran)."""
    import types

    from bsmamba2_plugin.network.bimamba2_fused import bimamba2_fused, split_conv_reference
    from bsmamba2_plugin.network.mamba2 import BiMamba2
    from bsmamba2_plugin.network.plan import resolve_plan
    from test_bimamba2_fused import reference_ops

    calls = []
    scan = reference_ops().mamba_chunk_scan_combined

    def norm(name):
        def run(y, weight, bias, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
            calls.append(name)
            return module.gated_norm_reference(y, z, weight, eps, group_size)
        return run

    fake = types.SimpleNamespace(mamba_chunk_scan_combined=scan, rmsnorm_fn=norm("mamba_ssm"))
    monkeypatch.setattr("bsmamba2_plugin.network.ssd.load_mamba_triton", lambda: fake)
    monkeypatch.setattr(module, "gated_norm", norm("bsmamba2"))
    config = tiny_config.replace(headdim=16, d_state=16)
    block, x = BiMamba2(config), torch.randn(2, 70, config.dim)
    for choice in ("mamba_ssm", "bsmamba2"):
        plan = resolve_plan(config.replace(backend="reference"), "cpu")
        assert plan.gated_norm is None  # off the fused kernel path: nothing to choose
        bimamba2_fused(block, x, split=split_conv_reference, short_scan=False,
                       gated_norm=choice)
    bimamba2_fused(block, x, split=split_conv_reference, short_scan=False)  # the default
    assert calls == ["mamba_ssm", "bsmamba2", "bsmamba2"]


def test_the_gated_norm_choice_is_a_config_key() -> None:
    from bsmamba2_plugin import BSMamba2Config

    assert BSMamba2Config.paper().gated_norm == "bsmamba2"
    assert BSMamba2Config.paper(gated_norm="mamba_ssm").gated_norm == "mamba_ssm"
    with pytest.raises(ValueError, match=r"model.gated_norm: expected one of mamba_ssm, "
                                         r"bsmamba2, got 'ours'"):
        BSMamba2Config.paper(gated_norm="ours")


@pytest.mark.parametrize("call, message", [
    (lambda: module.gated_norm(torch.ones(2, 8), torch.ones(8), None, z=None),
     "z given"),
    (lambda: module.gated_norm(torch.ones(2, 8), torch.ones(8), torch.ones(8),
                               z=torch.ones(2, 8), norm_before_gate=False), "bias None"),
    (lambda: module.gated_norm_forward(torch.ones(2, 8), torch.ones(2, 8), torch.ones(8),
                                       1e-5, 3), "group_size 3 must divide the 8 columns"),
    (lambda: module.gated_norm_forward(torch.ones(2, 8), torch.ones(2, 6), torch.ones(8),
                                       1e-5, 4), "one shape"),
])
def test_unsupported_calls_are_refused(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gated_norm_kernels_match_mamba_ssm_on_cuda() -> None:
    """On a GPU, compiled: ours equals mamba_ssm's rmsnorm_fn within bf16 rounding, at the
    fused block's layout (2 groups of 1024, strided z), forward and every gradient."""
    from bsmamba2_plugin.network.ssd import load_mamba_triton

    rmsnorm_fn = load_mamba_triton().rmsnorm_fn
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = 3001
    y = torch.randn(rows, 2048, device="cuda", generator=gen).bfloat16()
    z = torch.randn(rows, 4096, device="cuda", generator=gen).bfloat16()[:, 1024:3072]
    w = 1 + 0.3 * torch.randn(2048, device="cuda", generator=gen)
    dout = torch.randn(rows, 2048, device="cuda", generator=gen).bfloat16()
    results = []
    for fn in (rmsnorm_fn, module.gated_norm):
        leaves = [t.detach().clone().requires_grad_(True) for t in (y, z, w)]
        out = fn(leaves[0], leaves[2], None, z=leaves[1], eps=1e-5, group_size=1024,
                 norm_before_gate=False)
        out.backward(dout)
        results.append([out, *(t.grad for t in leaves)])
    for name, theirs, ours in zip(("out", "dy", "dz", "dw"), *results):
        assert ours.dtype == theirs.dtype, name
        err = ((ours.float() - theirs.float()).norm() / theirs.float().norm()).item()
        assert err < 1e-2, (name, err)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("length", [62, 801])
def test_the_packed_gate_trains_as_the_copied_gate_on_cuda(length) -> None:
    """A paper-width BiMamba2 on the fused kernel path under selective recomputation and
    bf16 autocast: with `packed_gate` (z read from the projection, dz written into its
    gradient) the output and every gradient equal the copying path's (the same kernels;
    only mamba_ssm's scan backward may add in another order), on both axes' lengths."""
    from bsmamba2_plugin import BSMamba2Config
    from bsmamba2_plugin.network.mamba2 import BiMamba2

    torch.manual_seed(0)
    config = BSMamba2Config.paper(backend="kernel", gradient_checkpointing="selective")
    copied = BiMamba2(config.replace(packed_gate=False)).cuda()
    packed = BiMamba2(config.replace(packed_gate=True)).cuda()
    packed.load_state_dict(copied.state_dict())
    x = torch.randn(6, length, 256, device="cuda", requires_grad=True)
    probe = torch.randn(6, length, 256, device="cuda")
    results = []
    for block in (packed, copied):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = block(x)
        grads = torch.autograd.grad((y.float() * probe).sum(), [x, *block.parameters()])
        results.append([y.detach().float(), *grads])
    for name, a, b in zip(["y", "x", *dict(packed.named_parameters())], *results):
        err = ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()
        assert err < 1e-3, (length, name, err)  # a misplaced z or dz gives ~1
