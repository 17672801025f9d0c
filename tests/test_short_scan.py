"""`short_scan` (the one-chunk SSD of the band axis) on a CPU.

Its Triton kernels run under Triton's interpreter (TRITON_INTERPRET=1) against
`ssd_reference` in float64, forward and every gradient; `bimamba2_fused` is checked to
route sequences of at most 64 steps (and only those) to it unless `short_scan: false`.
The CUDA check against mamba_ssm's scan is in test_kernel_cuda.py.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bsmamba2_plugin.network import short_scan as short_scan_module
from bsmamba2_plugin.network.bimamba2_fused import bimamba2_fused, split_conv_reference
from bsmamba2_plugin.network.mamba2 import BiMamba2
from bsmamba2_plugin.network.short_scan import (
    short_scan_backward,
    short_scan_fits,
    short_scan_forward,
)

from test_bimamba2_fused import recording_scans
from triton_interpreter import run_interpreted

SHORT_SCAN_CHECK = """
import sys
import torch
sys.path.insert(0, "tests")
from scan_truth import errors_to_float64
from bsmamba2_plugin.network.short_scan import short_scan, short_scan_backward, short_scan_forward

torch.manual_seed(0)
worst = 0.0
# the last: the paper's head dim 64 and d_state 128 on the 62-band axis (2 heads a group)
for n, l, h, g, p, ns in [(2, 5, 4, 2, 16, 16), (3, 17, 2, 1, 16, 32), (1, 1, 2, 2, 16, 16),
                          (2, 62, 4, 2, 16, 16), (1, 64, 2, 1, 32, 16), (1, 62, 4, 2, 64, 128)]:
    x = torch.randn(n, l, h, p)
    dt = torch.randn(n, l, h) * 2
    A = -torch.rand(h) * 3 - 0.1
    B, C = torch.randn(n, l, g, ns), torch.randn(n, l, g, ns)
    D, dt_bias = torch.randn(h), torch.randn(h)
    dt_bias[0] = 25.0  # softplus is the identity above 20 (as in mamba_ssm)
    leaves = [t.requires_grad_(True) for t in (x, dt, A, B, C, D, dt_bias)]
    probe = torch.randn(n, l, h, p)
    y = short_scan(x, dt, A, B, C, 64, D=D, dt_bias=dt_bias)
    got = [y, *torch.autograd.grad((y * probe).sum(), leaves)]
    # float64 truth, and the float32 reference's own distance from it
    for name, err, ref_err in errors_to_float64(got, leaves, probe):
        assert err <= 2 * ref_err + 2e-5, ((n, l, h, g, p, ns), name, err, ref_err)
        worst = max(worst, err)
    # the halves (gradient_checkpointing "selective") give the same numbers
    with torch.no_grad():
        y2 = short_scan_forward(x, dt, A, B, C, D=D, dt_bias=dt_bias)
        halves = short_scan_backward(probe, y2, x, dt, A, B, C, D=D, dt_bias=dt_bias)
    assert torch.equal(y2, y.detach())
    for a, b in zip(halves, got[1:]):
        assert torch.equal(a, b)
print("ok", worst)
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_short_scan_kernels_match_the_reference_in_the_interpreter() -> None:
    run_interpreted(SHORT_SCAN_CHECK)


def test_short_scan_takes_short_sequences_of_supported_widths() -> None:
    assert short_scan_fits(62, 64, 128)
    assert short_scan_fits(1, 16, 16)
    assert not short_scan_fits(65, 64, 128)  # the time axis
    assert not short_scan_fits(62, 48, 128)  # headdim not a power of two
    assert not short_scan_fits(62, 64, 8)  # d_state below the dot tile
    assert not short_scan_fits(62, 256, 128)


def test_short_scan_rejects_what_it_cannot_compute() -> None:
    x = torch.zeros(1, 65, 2, 16)
    dt, A, D, dt_bias = torch.zeros(1, 65, 2), -torch.ones(2), torch.ones(2), torch.zeros(2)
    B = torch.zeros(1, 65, 1, 16)
    with pytest.raises(ValueError, match="at most 64 steps, got 65"):
        short_scan_forward(x, dt, A, B, B, D=D, dt_bias=dt_bias)
    with pytest.raises(ValueError, match="shapes do not match"):
        short_scan_forward(x[:, :8], dt, A, B[:, :8], B[:, :8], D=D, dt_bias=dt_bias)
    with pytest.raises(ValueError, match="power-of-two d_state"):
        short_scan_backward(x[:, :8], None, x[:, :8], dt[:, :8], A, B[:, :8, :, :12],
                            B[:, :8, :, :12], D=D, dt_bias=dt_bias)


@pytest.mark.parametrize("length, expected", [(62, "short"), (64, "short"), (65, "chunked")])
def test_the_fused_block_routes_one_chunk_sequences_to_short_scan(
        tiny_config, monkeypatch, length, expected) -> None:
    """With mamba_ssm's kernels (ops=None) and the default switch, sequences of <= 64
    steps go through short_scan, longer ones through mamba_ssm's chunked scan; with
    short_scan off (the config's `short_scan: false`) all go to mamba_ssm. Stand-ins record
    which scan ran."""
    calls, recording = recording_scans(monkeypatch)
    monkeypatch.setattr(short_scan_module, "short_scan", recording("short"))
    config = tiny_config.replace(headdim=16, d_state=16)
    block = BiMamba2(config)
    x = torch.randn(2, length, config.dim)
    # the stand-ins' gated norm (ours, the default, would launch Triton)
    bimamba2_fused(block, x, split=split_conv_reference, gated_norm="mamba_ssm")
    assert calls == [expected]
    bimamba2_fused(block, x, split=split_conv_reference, short_scan=False,
                   gated_norm="mamba_ssm")
    assert calls == [expected, "chunked"]
