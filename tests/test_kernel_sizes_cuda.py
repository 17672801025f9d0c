"""Large batches and long chunks on the kernel path give what small ones give (CUDA).

mamba_ssm's Triton kernels form 32-bit offsets; past 2**31 elements a call crashed (an
illegal memory access, or a cuBLAS failure after it) or could write wrong numbers. The
kernel path now runs a batch in calls small enough for every offset (`kernel_limits.py`).
These sizes crashed on an H100 80GB before that (2026-12-06): batch 6, 7 and 8 x 30 s and
20 and 24 x 8 s of the paper model, one block on the time axis of a 180 s chunk. Every
check below compares a call past the old limits with the same work done in pieces that
were always safe, sequence by sequence. Skipped where CUDA or mamba_ssm is missing.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bsmamba2_plugin import BSMamba2, BSMamba2Config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None,
                       reason="needs mamba_ssm"),
]

#: bf16 noise: two bf16 computations of the same function differ by well under this
TOLERANCE = 1e-2


def _relative_errors(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of each item (first axis)."""
    got, want = got.float().flatten(1), want.float().flatten(1)
    return (got - want).norm(dim=1) / want.norm(dim=1).clamp_min(1e-12)


def _paper_block(**changes):
    from bsmamba2_plugin.network.mamba2 import BiMamba2

    torch.manual_seed(0)
    return BiMamba2(BSMamba2Config.paper(backend="kernel", **changes)).cuda()


@torch.inference_mode()
def test_time_axis_block_of_a_180_s_chunk_equals_two_half_calls() -> None:
    """62 bands x 18001 frames (a 180 s chunk at hop 441) in one call of one BiMamba2
    block, against two calls of 31 sequences."""
    block = _paper_block().eval()
    x = 0.5 * torch.randn(62, 18001, 256, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        whole = block(x)
        halves = torch.cat([block(x[:31]), block(x[31:])])
    errors = _relative_errors(whole, halves)
    assert torch.isfinite(whole).all()
    assert errors.max().item() < TOLERANCE, errors.max().item()


def test_selective_block_backward_at_20_x_8_s_equals_two_half_calls() -> None:
    """Training: the time axis of a batch of 20 x 8 s (1240 sequences of 801 frames) through
    one block with gradient_checkpointing "selective", outputs and gradients against two
    calls of 620 sequences."""
    block = _paper_block(gradient_checkpointing="selective")
    x = 0.5 * torch.randn(1240, 801, 256, device="cuda")
    probe = torch.randn_like(x)
    results = []
    for parts in ([x], [x[:620], x[620:]]):
        leaves = [p.detach().requires_grad_(True) for p in parts]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = torch.cat([block(leaf) for leaf in leaves])
        grads = torch.autograd.grad((out.float() * probe).sum(), [*leaves, *block.parameters()])
        results.append((out.detach(), torch.cat(grads[:len(leaves)]), grads[len(leaves):]))
    (out, dx, dw), (out_ref, dx_ref, dw_ref) = results
    assert _relative_errors(out, out_ref).max().item() < TOLERANCE
    assert _relative_errors(dx, dx_ref).max().item() < TOLERANCE
    for name, a, b in zip(dict(block.named_parameters()), dw, dw_ref):
        err = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
        assert err < TOLERANCE, (name, err)


@pytest.mark.parametrize("short_scan", [True, False])
@torch.inference_mode()
def test_model_at_batch_8_x_30_s_equals_one_item_at_a_time(short_scan: bool) -> None:
    """The paper model (eval, bf16 autocast) on 8 chunks of 30 s at once against each
    chunk alone; also with the band axis through mamba_ssm's chunked scan
    (`short_scan: false`: 24008 band sequences a layer)."""
    torch.manual_seed(0)
    model = BSMamba2(BSMamba2Config.paper(backend="kernel", short_scan=short_scan)).cuda().eval()
    mixture = 0.1 * torch.randn(8, 2, 30 * 44100, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        batch = model(mixture)
        alone = torch.cat([model(mixture[i:i + 1]) for i in range(8)])
    errors = _relative_errors(batch, alone)
    assert torch.isfinite(batch).all()
    assert errors.max().item() < TOLERANCE, errors.tolist()


def test_a_sequence_too_long_for_one_call_is_refused_before_it_runs() -> None:
    """One time-axis sequence of 1.1 million frames (~3 hours) cannot be split into
    calls: the block and the model refuse it with the fix, nothing is computed."""
    from bsmamba2_plugin.network.kernel_limits import KernelSizeError

    block = _paper_block().eval()
    x = torch.zeros(1, 1_100_000, 256, device="cuda")
    with pytest.raises(KernelSizeError, match="1100000 steps.*Fix: shorter chunks"):
        block(x)
    model = BSMamba2(BSMamba2Config.paper(backend="kernel")).cuda()
    with pytest.raises(KernelSizeError, match=r"1100000 STFT frames.*at most 104\d{4} frames"):
        model._check_kernel_lengths(1_100_000, 62, model.plan("cuda"), torch.device("cuda"))
