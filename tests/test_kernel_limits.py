"""How many sequences one call of the kernel path takes (`kernel_limits`), on a CPU.

The planner's bounds are checked against the arithmetic written out for the paper's widths
and for small ones; the fused block is checked to cut a batch into that many calls with
the same outputs and gradients as one call (pure-PyTorch stand-ins for mamba_ssm's
kernels, a limit made tiny); the model's refusal of a chunk too long for one call is
checked for its message. The same on a GPU at real sizes: test_kernel_sizes_cuda.py.
"""

from __future__ import annotations

import types

import pytest
import torch

from bsmamba2_plugin.network import kernel_limits
from bsmamba2_plugin.network.bimamba2_fused import (
    bimamba2_fused,
    block_sequences_per_call,
    split_conv_reference,
)
from bsmamba2_plugin.network.kernel_limits import (
    KernelSizeError,
    check_length,
    sequences_per_call,
    split_sizes,
)
from bsmamba2_plugin.network.mamba2 import BiMamba2

from test_bimamba2_fused import _perturbed_block, reference_ops

LIMIT = 2**31 - 1
#: a fused paper block: both directions' 16 heads of 64 as 2 groups, d_state 128
PAPER = dict(nheads=32, headdim=64, ngroups=2, d_state=128)
H100_SMS = 132


def test_the_paper_time_axis_is_bound_by_the_chunk_states() -> None:
    # 8 s: 801 frames = 7 chunks of 128; states 7 x 32 x 64 x 128 = 1,835,008 a sequence
    # (x: 896 x 32 x 64, the same); mamba_ssm's head splits reserve 132 x 128 x 128
    per_sequence = 7 * 32 * 64 * 128
    assert per_sequence == 896 * 32 * 64
    want = (LIMIT - H100_SMS * 128 * 128) // per_sequence
    assert want == 1169  # 18 songs of 62 bands (1116 sequences) in one call, 19 not
    assert sequences_per_call(801, chunk=128, short_scan=False, sm_count=H100_SMS,
                              **PAPER) == want
    # 30 s: 3001 frames = 24 chunks; 5 songs (310 sequences) fit, 6 (372) do not
    assert sequences_per_call(3001, chunk=128, short_scan=False, sm_count=H100_SMS,
                              **PAPER) == (LIMIT - H100_SMS * 128 * 128) // (24 * 262144) == 340
    # 180 s: 18001 frames = 141 chunks: 58 of the 62 bands in one call
    assert sequences_per_call(18001, chunk=128, short_scan=False, sm_count=H100_SMS,
                              **PAPER) == 58


def test_the_paper_band_axis_is_bound_by_the_gated_norm_or_the_states() -> None:
    # short_scan (64-bit offsets): the gated norm's rows, 62 x 2048 elements a sequence
    assert sequences_per_call(62, chunk=64, short_scan=True, sm_count=H100_SMS,
                              **PAPER) == LIMIT // (62 * 2048) == 16912
    # mamba_ssm's chunked scan, one chunk of 64: states 32 x 64 x 128 = 262,144 a sequence
    # (x: 64 x 2048 = 131,072); 11 x 8 s (8811 sequences) no longer fits in one call
    assert sequences_per_call(62, chunk=64, short_scan=False, sm_count=H100_SMS,
                              **PAPER) == (LIMIT - H100_SMS * 64 * 128) // 262144 == 8187


def test_small_widths_are_bound_by_the_grid_or_cb() -> None:
    # the tests' tiny block: 2 x 4 heads of 8, 2 groups, d_state 8, one chunk of 64 for
    # 37 steps. The biggest tensor is CB (64 x 2 x 64 = 8192 a sequence), but the grid
    # (sequences x chunks on axis y, at most 65535) binds first
    tiny = dict(nheads=8, headdim=8, ngroups=2, d_state=8)
    assert (LIMIT - H100_SMS * 64 * 64) // (64 * 2 * 64) > 65535
    assert sequences_per_call(37, chunk=64, short_scan=False, sm_count=H100_SMS,
                              **tiny) == 65535
    # 1000 steps in chunks of 16 = 63 chunks: 65535 // 63 = 1040 sequences
    assert sequences_per_call(1000, chunk=16, short_scan=False, sm_count=H100_SMS,
                              **tiny) == 1040
    # more chunks than one grid axis holds: not even one sequence
    assert sequences_per_call(16 * 65536, chunk=16, short_scan=False, sm_count=H100_SMS,
                              **tiny) == 0


def test_one_sequence_fits_up_to_about_a_million_frames() -> None:
    # x and the states are both l' x 2048 for a sequence: l' <= (2**31 - 1 - 2,162,688) / 2048
    assert sequences_per_call(1_047_000, chunk=128, short_scan=False, sm_count=H100_SMS,
                              **PAPER) == 1
    assert sequences_per_call(1_048_000, chunk=128, short_scan=False, sm_count=H100_SMS,
                              **PAPER) == 0
    with pytest.raises(KernelSizeError, match="1048000 steps.*Fix: shorter chunks"):
        check_length(0, 1_048_000, "time-axis sequences")
    check_length(1, 1_047_000, "time-axis sequences")


@pytest.mark.parametrize("n, per_call, want", [(5, 5, [5]), (62, 58, [31, 31]),
                                               (7, 2, [2, 2, 2, 1]), (24008, 16912,
                                                                      [12004, 12004])])
def test_split_sizes_are_the_fewest_and_most_equal_calls(n, per_call, want) -> None:
    assert split_sizes(n, per_call) == want


@pytest.mark.parametrize("recompute", [False, True])
def test_the_fused_block_runs_a_batch_past_the_limit_in_calls(tiny_config, monkeypatch,
                                                               recompute) -> None:
    """With the offset limit made tiny, 7 sequences run in 4 calls of at most 2: the same
    outputs and gradients as one call with the real limit."""
    block = _perturbed_block(tiny_config)
    x = torch.randn(7, 37, tiny_config.dim, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(7, 37, tiny_config.dim, dtype=torch.float64)
    ops = reference_ops()
    calls = []
    scan = ops.mamba_chunk_scan_combined

    def counting_scan(x, *args, **kwargs):
        calls.append(x.shape[0])
        return scan(x, *args, **kwargs)

    counted = types.SimpleNamespace(mamba_chunk_scan_combined=counting_scan,
                                    rmsnorm_fn=ops.rmsnorm_fn)

    def run():
        calls.clear()
        out = bimamba2_fused(block, x, ops=counted, split=split_conv_reference,
                             recompute=recompute)
        grads = torch.autograd.grad((out * probe).sum(), [x, *block.parameters()])
        return out, grads, list(calls)

    whole, whole_grads, whole_calls = run()
    # CB (one chunk of 64: 64 x 2 x 64 = 8192 a sequence) and the head-split reserve of a
    # CPU (1024 x 64 x 64) leave room for exactly 2 sequences
    monkeypatch.setattr(kernel_limits, "INDEX_LIMIT",
                        kernel_limits.SM_COUNT_BOUND * 64 * 64 + 2 * 8192)
    assert block_sequences_per_call(block, 37, device=x.device, short_scan=False) == 2
    cut, cut_grads, cut_calls = run()
    assert whole_calls[0] == 7 and cut_calls[:4] == [2, 2, 2, 1]
    torch.testing.assert_close(cut, whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(cut_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_block_refuses_a_sequence_longer_than_one_call(tiny_config, monkeypatch) -> None:
    block = _perturbed_block(tiny_config)
    monkeypatch.setattr(kernel_limits, "INDEX_LIMIT", 1000)
    x = torch.randn(1, 37, tiny_config.dim, dtype=torch.float64)
    with pytest.raises(KernelSizeError, match="37 steps"):
        bimamba2_fused(block, x, ops=reference_ops(), split=split_conv_reference)


def test_the_model_refuses_a_chunk_too_long_and_says_how_long_fits(monkeypatch) -> None:
    """`BSMamba2` checks both axes' sequence lengths before running on CUDA; here the
    planner is asked for an H100 through a stand-in for the CUDA-only query."""
    from bsmamba2_plugin import BSMamba2, BSMamba2Config

    def on_h100(self, length, plan, device):
        mixer = self.forward_blocks[0].mixer
        return sequences_per_call(length, nheads=2 * mixer.nheads, headdim=mixer.headdim,
                                  ngroups=2, d_state=mixer.d_state, chunk=128,
                                  short_scan=False, sm_count=H100_SMS)

    monkeypatch.setattr(BiMamba2, "kernel_sequences_per_call", on_h100)
    model = BSMamba2(BSMamba2Config.paper())
    plan = model.plan("cpu")
    model._check_kernel_lengths(1_047_000, 62, plan, torch.device("cpu"))  # fits
    with pytest.raises(KernelSizeError) as error:
        model._check_kernel_lengths(1_100_000, 62, plan, torch.device("cpu"))
    message = str(error.value)
    # 1,100,000 frames x 441 / 44100 = 11000 s. The longest that fits: ceil(l / 128)
    # chunks of 128 x 2048 elements each within 2**31 - 1 - 132 x 128 x 128 -> 8183 chunks,
    # 1,047,424 frames (10474 s); the gated norm alone would allow 1,048,575
    assert "1100000 STFT frames (about 11000 s" in message
    assert "at most 1047424 frames fit (about 10474 s)" in message
    assert "Fix: shorter chunks" in message and "inference.chunk_size" in message
