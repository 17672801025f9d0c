"""The SSD scan of long sequences (the time axis) in Triton kernels of our own.

mamba_ssm's chunked scan runs ~9 kernels forward and backward and materialises float32
chunk states of (n, chunks, heads, headdim, d_state) between them. `long_scan` computes
the same function as `ssd_reference` / mamba_ssm's `mamba_chunk_scan_combined`. Forward:
one kernel, one program per (sequence, head) that runs the chunks in order and keeps the
state in registers. Backward: three kernels, the chunk-start states (one program per
(sequence, head)), their gradients (likewise, backward), then the gradients of every chunk
at once (one program per (sequence, chunk, group)); kernels and their math in
`long_scan_triton.py`. Arguments and results follow mamba_ssm's conventions, as
`short_scan`'s do, so that it replaces mamba_ssm's scan in `bimamba2_fused`
(`long_scan_ops`).

The config key `long_scan: true` (the default; `plan.py`) sends the forward pass of the
sequences longer than `SHORT_SCAN_MAX_LENGTH` that `long_scan_fits` takes through it,
their backward pass through mamba_ssm's (`long_scan_ops(backward="mamba_ssm")`): on an
H100 our forward was 2.06x faster than mamba_ssm's, and our first backward (one program
per (sequence, group) carrying the state's gradient through 16 heads x 26 chunks in
turn) 3.6x slower (benchmarks/results/gpu_h100_2026-12-06c/). The three-kernel backward
that replaced it has not yet run on a GPU. The kernels are checked against the float64
reference under Triton's interpreter (tests/test_long_scan.py) and against mamba_ssm's
scan on a GPU (the CUDA test there); benchmarks/gpu_long_scan.py times them.

Scratch of the backward pass (freed when it returns): the chunk-start states and their
gradients in the inputs' dtype, 2 x n x h x ceil(l / L) x ns x p, and float32 sums of
n x h x ceil(l / L) x 4. At the time axis of the paper's batch (n = 310, l = 801, h = 32,
p = 64, ns = 128, bf16, the backward's L = 32: 26 chunks) 2 x 4.2 GB; at L = 64,
2 x 2.1 GB (mamba_ssm's backward at its chunk of 128: two float32 tensors of 2.3 GB, by
their shapes). The forward pass needs none.
"""

from __future__ import annotations

import math
import types

import torch

__all__ = ["LONG_SCAN_CHUNK", "LONG_SCAN_CHUNK_BACKWARD", "LONG_SCAN_CHUNK_FLOAT32",
           "default_chunk", "long_scan", "long_scan_backward", "long_scan_fits",
           "long_scan_forward", "long_scan_ops"]

# Chunk lengths L (steps per chunk: the quadratic form's (L, L) tiles). Forward and
# backward need not chunk alike (the backward recomputes what it needs from the inputs).
# They are bound by shared memory and registers: compiled for an H100 (sm_90, at most
# 227 KB a program) at the paper's widths as Triton launches them
# (benchmarks/kernel_registers.py), the forward needs 131 KB at L = 64 with bf16 inputs
# (at L = 32: 57 KB with bf16, 115 KB with float32 inputs).
LONG_SCAN_CHUNK = 32  #: the forward's L for 16-bit inputs
LONG_SCAN_CHUNK_FLOAT32 = 32  #: the forward's L for float32 inputs
LONG_SCAN_CHUNK_BACKWARD = 32  #: the backward's L
_STATE_ELEMENTS = 64 * 128  # the largest state (headdim x d_state) held in registers
# warps per program (sm_90, paper widths, as launched; benchmarks/kernel_registers.py):
# the forward with 16-bit inputs at L = 32 and 4 warps uses 255 registers a thread, no
# spills (at L = 64: 240 at 8 warps; 255 and 36 bytes of spills at 4); with float32 inputs
# 4 warps spill 252 bytes, so those take 8. The 16-bit forward's launch is the best of
# `benchmarks/gpu_long_scan.py --sweep` on an H100 (310 x 801 steps, bf16): L = 32, 4
# warps, 3 stages 3.19 ms; L = 64, 8 warps 4.96 ms.
# The backward's per-chunk kernel (`_BWD_*`; the state and its gradient, 2 x 64 x 128,
# and dB, dC of the chunk in registers) spills at every launch, bf16 at L = 32: 184 bytes
# a thread at 8 warps and 1 stage, 220-280 at 2-3 stages, 732-848 at 4 warps; at L = 64:
# 1036-1228 at 8 warps. Its state kernels (`_STATE_*`) spill at none (bf16: 128 and 202
# registers at 4 warps, 3 stages). Offline choices, not yet timed: the GPU sweep decides.
_FWD_WARPS, _FWD_WARPS_FLOAT32, _BWD_WARPS, _STATE_WARPS = 4, 8, 8, 4
# software-pipelining stages of the chunk loops (Triton's default 3 loads the next chunks'
# inputs ahead, into shared memory; 1 loads each chunk when it starts);
# benchmarks/gpu_long_scan.py --sweep times both
_FWD_STAGES, _BWD_STAGES, _STATE_STAGES = 3, 1, 3


def _supported_width(width: int, most: int) -> bool:
    return 16 <= width <= most and not width & (width - 1)


def long_scan_fits(length: int, headdim: int, d_state: int) -> bool:
    """Whether `long_scan` takes sequences of this length and these widths: any length
    >= 1; headdim and d_state powers of two from 16 (the dot tiles) to 128 with a state
    of at most 64 x 128 elements (it is held in registers). Compiled for sm_90 at 64 x 128,
    128 x 64 and 64 x 64 the kernels need at most 144 KB of an H100's 227 KB of shared
    memory a program; at 32 x 256 the forward needed 221 KB, hence d_state <= 128.
    Whether it is used at all is the config's `long_scan`."""
    return (length >= 1 and _supported_width(headdim, 128) and _supported_width(d_state, 128)
            and headdim * d_state <= _STATE_ELEMENTS)


def _kernels():
    from . import long_scan_triton as k  # imports triton

    return (k.long_scan_fwd, k.long_scan_bwd_states, k.long_scan_bwd_dstates,
            k.long_scan_bwd_chunks)


def default_chunk(dtype: torch.dtype, *, backward: bool) -> int:
    """The chunk L of a pass for inputs of `dtype` (the constants above)."""
    if backward:
        return LONG_SCAN_CHUNK_BACKWARD
    return LONG_SCAN_CHUNK_FLOAT32 if dtype.itemsize > 2 else LONG_SCAN_CHUNK


def _check(x, dt, A, B, C, D, dt_bias, chunk) -> tuple[int, ...]:
    from .short_scan import scan_shapes

    n, length, nheads, headdim, ngroups, d_state = scan_shapes("long_scan", x, dt, A, B, C,
                                                               D, dt_bias)
    if not long_scan_fits(max(length, 1), headdim, d_state):
        raise ValueError(f"long_scan needs power-of-two headdim and d_state from 16 to 128 "
                         f"with headdim x d_state <= {_STATE_ELEMENTS}, got {headdim} x "
                         f"{d_state}")
    if not _supported_width(chunk, 128):
        raise ValueError(f"long_scan: the chunk must be a power of two from 16 to 128, "
                         f"got {chunk}")
    return n, length, nheads, headdim, ngroups, d_state


def _launch_args(x, B, length, nheads, ngroups, dt_softplus, chunk) -> dict:
    return {"H": nheads, "G": ngroups, "P": x.shape[3], "NS": B.shape[3], "L": chunk,
            "NC": math.ceil(length / chunk), "SOFTPLUS": bool(dt_softplus)}


def long_scan_forward(x, dt, A, B, C, chunk_size=None, *, D, dt_bias, dt_softplus=True,
                      scan_chunk=None):
    """y (n, l, h, p) for x (n, l, h, p), dt (n, l, h), A (h,), B, C (n, l, g, ns),
    D, dt_bias (h,): the forward half (no autograd). `chunk_size` (mamba_ssm's chunk) is
    ignored; `scan_chunk` is this kernel's chunk L (a power of two, 16 to 128; None:
    `default_chunk`)."""
    del chunk_size
    if scan_chunk is None:
        scan_chunk = default_chunk(x.dtype, backward=False)
    n, length, nheads, _, ngroups, _ = _check(x, dt, A, B, C, D, dt_bias, scan_chunk)
    x, dt, A, B, C, D, dt_bias = (t.contiguous() for t in (x, dt, A, B, C, D, dt_bias))
    y = torch.empty_like(x)
    if n and length:
        _kernels()[0][(n, nheads)](x, dt, A, B, C, D, dt_bias, y, length,
                                   **_launch_args(x, B, length, nheads, ngroups, dt_softplus,
                                                  scan_chunk),
                                   num_warps=_FWD_WARPS if x.dtype.itemsize <= 2
                                   else _FWD_WARPS_FLOAT32, num_stages=_FWD_STAGES)
    return y


def long_scan_backward(dy, y, x, dt, A, B, C, chunk_size=None, *, D, dt_bias,
                       dt_softplus=True, scan_chunk=None):
    """Gradients (dx, ddt, dA, dB, dC, dD, ddt_bias) of the scan for the output gradient
    dy; `y` (unused: everything is recomputed from the inputs) keeps mamba_ssm's
    signature. `scan_chunk`: the chunk L (None: `default_chunk`)."""
    del y, chunk_size
    if scan_chunk is None:
        scan_chunk = default_chunk(x.dtype, backward=True)
    n, length, nheads, headdim, ngroups, d_state = _check(x, dt, A, B, C, D, dt_bias,
                                                           scan_chunk)
    x, dt, A, B, C, D, dt_bias, dy = (t.contiguous()
                                      for t in (x, dt, A, B, C, D, dt_bias, dy))
    dx, ddt, dB, dC = (torch.empty_like(t) for t in (x, dt, B, C))
    chunks = math.ceil(length / scan_chunk)
    part = torch.zeros(n, chunks, 3, nheads, device=x.device, dtype=torch.float32)
    if n and length:
        states_kernel, dstates_kernel, chunks_kernel = _kernels()[1:]
        launch = _launch_args(x, B, length, nheads, ngroups, dt_softplus, scan_chunk)
        warps = {"num_warps": _BWD_WARPS, "num_stages": _BWD_STAGES}
        # the chunk-start states and the gradients of the chunk-end states, in x's dtype
        states = torch.empty(n, nheads, chunks, d_state, headdim, device=x.device,
                             dtype=x.dtype)
        dstates = torch.empty_like(states)
        decay = torch.empty(n, nheads, chunks, device=x.device, dtype=torch.float32)
        states_kernel[(n, nheads)](x, dt, A, B, dt_bias, states, length, **launch,
                                   num_warps=_STATE_WARPS, num_stages=_STATE_STAGES)
        dstates_kernel[(n, nheads)](dt, A, C, dt_bias, dy, states, dstates, decay, length,
                                    **launch, num_warps=_STATE_WARPS,
                                    num_stages=_STATE_STAGES)
        chunks_kernel[(n * chunks, ngroups)](x, dt, A, B, C, D, dt_bias, dy, states,
                                             dstates, decay, dx, ddt, dB, dC, part, length,
                                             **launch, **warps)
        del states, dstates, decay
    sums = part.sum((0, 1))
    return (dx, ddt, sums[0].to(A.dtype), dB, dC, sums[1].to(D.dtype),
            sums[2].to(dt_bias.dtype))


class _LongScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, dt_softplus, scan_chunk):
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias)
        ctx.options = (dt_softplus, scan_chunk)
        return long_scan_forward(x, dt, A, B, C, D=D, dt_bias=dt_bias,
                                 dt_softplus=dt_softplus, scan_chunk=scan_chunk)

    @staticmethod
    def backward(ctx, dy):
        x, dt, A, B, C, D, dt_bias = ctx.saved_tensors
        dt_softplus, scan_chunk = ctx.options
        grads = long_scan_backward(dy, None, x, dt, A, B, C, D=D, dt_bias=dt_bias,
                                   dt_softplus=dt_softplus, scan_chunk=scan_chunk)
        return (*grads, None, None)


def long_scan(x, dt, A, B, C, chunk_size=None, *, D, dt_bias, dt_softplus=True,
              scan_chunk=None):
    """Differentiable `long_scan_forward`; mamba_ssm's `mamba_chunk_scan_combined`
    signature (the subset `bimamba2_fused` uses)."""
    del chunk_size
    return _LongScan.apply(x, dt, A, B, C, D, dt_bias, dt_softplus, scan_chunk)


class _ForwardOnly(torch.autograd.Function):
    """`long_scan_forward` with another scan's backward half (mamba_ssm's), which takes
    the forward's output y and the inputs and recomputes its own chunk states."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, chunk_size, dt_softplus, backward_half):
        y = long_scan_forward(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias,
                              dt_softplus=dt_softplus)
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, y)
        ctx.options = (chunk_size, dt_softplus, backward_half)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, dt, A, B, C, D, dt_bias, y = ctx.saved_tensors
        chunk_size, dt_softplus, backward_half = ctx.options
        grads = backward_half(dy.contiguous(), y, x, dt, A, B, C, chunk_size, D=D,
                              dt_bias=dt_bias, dt_softplus=dt_softplus)
        return (*grads, None, None, None)


def long_scan_ops(ops: object, *, backward: str = "long_scan") -> types.SimpleNamespace:
    """`ops` (mamba_ssm's kernels, `ssd.load_mamba_triton`) with the scan's forward pass
    replaced by `long_scan_forward`, for a sequence length and widths where
    `long_scan_fits` holds.

    backward: "long_scan" (ours, `long_scan_backward`) or "mamba_ssm" (the backward half
    `ops.scan_halves` holds, mamba_ssm's: it recomputes its chunk states from the inputs,
    so it pairs with any forward pass of the same function). The model uses "mamba_ssm":
    on an H100 at the paper's time axis (310 x 801 steps, bf16) our backward took 74.7 ms
    against mamba_ssm's 20.8 (`benchmarks/gpu_long_scan.py`, GPU_NOTES change 9), our
    forward 3.2-5.0 ms against 6.6."""
    if backward == "long_scan":
        combined, halves = long_scan, (long_scan_forward, long_scan_backward)
    elif backward == "mamba_ssm":
        backward_half = ops.scan_halves[1]

        def combined(x, dt, A, B, C, chunk_size=None, *, D, dt_bias, dt_softplus=True):
            return _ForwardOnly.apply(x, dt, A, B, C, D, dt_bias, chunk_size, dt_softplus,
                                      backward_half)

        halves = (long_scan_forward, backward_half)
    else:
        raise ValueError(f"long_scan_ops: backward must be 'long_scan' or 'mamba_ssm', got "
                         f"{backward!r}")
    return types.SimpleNamespace(**{**vars(ops), "mamba_chunk_scan_combined": combined,
                                    "scan_halves": halves})
