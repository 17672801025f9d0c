"""How many sequences one call of the kernel path may take, so that no offset wraps.

mamba_ssm's Triton kernels (2.2.x and 2.3.2.post1, the newest release) form pointer
offsets as program id x stride in 32-bit integers: the chunked scan (`ssd_chunk_state`,
`ssd_chunk_scan`, `ssd_bmm`, `ssd_state_passing`, `ssd_combined`) and the gated RMSNorm
(`layernorm_gated`). An offset past 2**31 - 1 wraps: an illegal memory access, or finite,
plausible and wrong numbers for the last sequences of the call, with no warning
(state-spaces/mamba issue 1015, still open). CUDA also caps grid axes y and z at 65535
blocks, and mamba_ssm puts sequences x chunks on axis y.

Sequences are independent, so the kernel path cuts a batch of n sequences into calls of at
most `sequences_per_call` sequences each: the same numbers, computed in pieces. At the
paper's sizes nothing is cut. One sequence too long for a call cannot be cut (that would
carry the scan's state from call to call): `check_length` refuses it with `KernelSizeError`
before any kernel runs.

The arithmetic. One call holds n sequences of length l, with h heads (both directions of a
fused BiMamba2 block: 2 x nheads), head dim p, g groups, state size s, SSD chunk q,
c = ceil(l / q) chunks and l' = c q (masked rows of the last chunk form offsets up to l').
The largest offset into a tensor is below its element count, so every tensor mamba_ssm's
forward and backward allocate must hold at most 2**31 - 1 elements:

    tensor                                   elements
    x, out, dx, dout, z       (n, l, h, p)   n l' h p
    chunk states, dstates  (n, c, h, p, s)   n c h p s
    B, C, dB, dC          (n, l, [k,] g, s)  n l' g s    (+ sm q s for the head splits k)
    CB, dCB              (n, c, [k,] g, q, q) n l' g q   (+ sm q q)
    ddA workspace      (n, h, c, q / 16, q)  n l' h ceil(q / 16)
    gated norm, out_proj rows   (n l, h p)   n l h p     (also the short_scan path)

(mamba_ssm splits a group's heads over k = ceil(h/g / ceil(n c h / sm)) programs when the
grid is small; then n c k <= n c + sm / g, which the `sm q s` and `sm q q` terms cover, sm
being the device's multiprocessor count.) With the grid limits n c <= 65535, n <= 65535
and c g <= 65535, that gives

    sequences_per_call = min((2**31 - 1 - sm q max(s, q)) // max(per-sequence terms),
                             (2**31 - 1) // (l h p), 65535 // c, 65535)

For the paper's widths (h = 2 x 16, p = 64, s = 128, g = 2, q = 128) on an H100 (sm = 132)
along time: 8 s (l = 801, c = 7) -> the chunk states, 7 x 32 x 64 x 128 = 1,835,008
elements a sequence -> 1169 sequences a call (18 songs of 62 bands); 30 s (l = 3001,
c = 24) -> 340 (5 songs). Along the 62 bands through `short_scan`: 62 x 2048 = 126,976 a
sequence -> 16912 (21 songs of 8 s, 5 of 30 s); with short_scan off (one chunk of 64):
the chunk states, 262,144 a sequence -> 8187. A single sequence fits up to about 1.04
million frames (2.9 hours at hop 441 and 44.1 kHz). `tests/test_kernel_limits.py` holds
these numbers.

Our own Triton kernels (`split_conv_triton.py`, `short_scan_triton.py`,
`long_scan_triton.py`) form every offset in 64-bit integers and add no limit; their grids
put sequences on axis x (up to 2**31 - 1 blocks) and heads or groups on axis y. With
`short_scan` on the band axis (`sequences_per_call(..., short_scan=True)`: our scan both
ways) only the gated norm's rows bound a call. `long_scan` on the time axis computes the
forward pass only; the backward pass is mamba_ssm's, so its limits stay (with
`long_scan_backward: bsmamba2` both passes are ours and they stay as a safe bound; the
gated norm's rows alone would bound a call at 8 s: 801 x 2048 elements a sequence -> 1309
sequences).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserValueError

__all__ = ["GRID_LIMIT", "INDEX_LIMIT", "KernelSizeError", "check_length", "rows_per_call",
           "sequences_per_call", "sm_count", "split_sizes"]

INDEX_LIMIT = 2**31 - 1  # the largest offset a 32-bit integer holds
GRID_LIMIT = 65535  # CUDA's limit on grid axes y and z
#: multiprocessors assumed where no device says (more only loosens mamba_ssm's head splits)
SM_COUNT_BOUND = 1024


def sm_count(device: torch.device | str) -> int:
    """The multiprocessor count of a CUDA device (`SM_COUNT_BOUND` for any other)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return SM_COUNT_BOUND


class KernelSizeError(UserValueError):
    """One sequence is too long for one call of the kernel path (no batch split helps): a
    chunk length the user chose, so the message says which shorter one to pass."""


def _chunked_scan_limit(length: int, *, nheads: int, headdim: int, ngroups: int,
                        d_state: int, chunk: int, sm_count: int) -> int:
    """Sequences of `length` one call of mamba_ssm's chunked scan may take (0: none)."""
    chunks = math.ceil(length / chunk)
    if chunks > GRID_LIMIT or chunks * ngroups > GRID_LIMIT:
        return 0
    padded = chunks * chunk
    per_sequence = max(padded * nheads * headdim,  # x, out and their gradients
                       chunks * nheads * headdim * d_state,  # chunk states
                       padded * ngroups * d_state,  # B, C, dB, dC
                       padded * ngroups * chunk,  # CB, dCB
                       padded * nheads * -(-chunk // 16))  # ddA workspace
    head_splits = sm_count * chunk * max(d_state, chunk)
    return max(0, min((INDEX_LIMIT - head_splits) // per_sequence, GRID_LIMIT // chunks,
                      GRID_LIMIT))


def rows_per_call(width: int) -> int:
    """Rows of `width` elements one call of a row-wise kernel (mamba_ssm's gated norm)
    may take: offsets row x width stay below 2**31."""
    return INDEX_LIMIT // width


def sequences_per_call(length: int, *, nheads: int, headdim: int, ngroups: int,
                       d_state: int, chunk: int, short_scan: bool,
                       sm_count: int = SM_COUNT_BOUND) -> int:
    """The most sequences of `length` steps one call of the kernel path may take.

    Args:
        length: steps per sequence (>= 1).
        nheads, headdim, ngroups, d_state: the scan call's widths (a fused BiMamba2 block
            runs both directions as one call: nheads = 2 x the mixer's, ngroups = 2).
        chunk: mamba_ssm's SSD chunk length for this call.
        short_scan: the scan runs through our kernels both ways (`short_scan`; 64-bit
            offsets): only the gated norm and the out_proj product bound the call.
        sm_count: the device's multiprocessor count.

    Returns:
        The number of sequences (0 when not even one sequence fits: `check_length`).
    """
    rows = rows_per_call(length * nheads * headdim)  # gated norm and out_proj: (n l, h p)
    if short_scan:
        return rows
    return min(rows, _chunked_scan_limit(length, nheads=nheads, headdim=headdim,
                                         ngroups=ngroups, d_state=d_state, chunk=chunk,
                                         sm_count=sm_count))


def check_length(per_call: int, length: int, what: str) -> None:
    """Raise `KernelSizeError` when `per_call` (from `sequences_per_call`) is 0.

    Args:
        per_call: sequences one call may take.
        length: the sequence length it was computed for.
        what: names the sequences for the message (e.g. "time-axis sequences").
    """
    if per_call < 1:
        raise KernelSizeError(
            f"one of the {what} has {length} steps, too many for one call of mamba_ssm's "
            f"Triton kernels: its offsets would pass 2**31 (32-bit integers; "
            f"state-spaces/mamba issue 1015), and one sequence cannot be split. Fix: "
            f"shorter chunks (`bsmamba2 separate --chunk-seconds`, msst's "
            f"inference.chunk_size), or model.backend: reference.")


def split_sizes(n: int, per_call: int) -> list[int]:
    """`n` sequences in the fewest calls of at most `per_call`, as equal as possible.

    Returns: sizes summing to n (one size, n, when n <= per_call).
    """
    calls = max(1, math.ceil(n / per_call))
    base, extra = divmod(n, calls)
    return [base + 1] * extra + [base] * (calls - extra)
