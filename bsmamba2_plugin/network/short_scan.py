"""The SSD scan of short sequences (one chunk) in one Triton kernel per pass.

mamba_ssm's chunked scan runs five kernels and materialises float32 chunk states of
(n, chunks, heads, headdim, d_state) even when a sequence fits one chunk, as the band axis
does (62 bands): there the states are never needed. `short_scan` computes the same
function as `ssd_reference` / mamba_ssm's `mamba_chunk_scan_combined` for sequences of at
most `SHORT_SCAN_MAX_LENGTH` steps directly as the decay-masked quadratic form (kernels in
`short_scan_triton.py`), forward and backward, with mamba_ssm's argument conventions so
that it replaces it in `bimamba2_fused` (`short_scan_ops`).

On by default for the sequences it takes; the config key `short_scan: false` turns it off
(mamba_ssm's chunked scan for every axis; `plan.py`). The kernels are checked against the float64 reference
under Triton's interpreter (tests/test_short_scan.py) and against mamba_ssm's scan on a
GPU (tests/test_kernel_cuda.py); timings in benchmarks/GPU_NOTES.md, change 5.
"""

from __future__ import annotations

import types

import torch

__all__ = ["SHORT_SCAN_MAX_LENGTH", "scan_shapes", "short_scan", "short_scan_fits",
           "short_scan_ops"]

SHORT_SCAN_MAX_LENGTH = 64  # the quadratic form's (l, l) tiles stay in registers up to here
# the backward kernel's warps and software-pipelining stages a program; registers and
# spills at each: benchmarks/kernel_registers.py --only short_scan_bwd --warps 4 8 16
# --stages 1 2 3; times: benchmarks/gpu_short_scan.py --sweep. On an H100 at the band axis
# (4005 x 62 steps, bf16) the backward half took 4.38 ms at 4 warps, 1 stage against 6.82
# at the earlier 8 warps, 3 stages (two programs an SM despite 520 B of spills a thread;
# gradients within 6.6e-4 of the earlier setting's, dx, dB and dC equal;
# benchmarks/results/gpu_h100_2026-12-07/short_scan.log)
_BWD_WARPS, _BWD_STAGES = 4, 1


def _supported_width(width: int, most: int) -> bool:
    return 16 <= width <= most and not width & (width - 1)


def short_scan_fits(length: int, headdim: int, d_state: int) -> bool:
    """Whether `short_scan` takes sequences of this length and these widths (at most
    `SHORT_SCAN_MAX_LENGTH` steps; powers of two, headdim <= 128, d_state <= 256: the tiles
    the kernels hold). Whether it is used at all is the config's `short_scan`."""
    return (length <= SHORT_SCAN_MAX_LENGTH and _supported_width(headdim, 128)
            and _supported_width(d_state, 256))


def _kernels():
    from . import short_scan_triton as k  # imports triton

    return k.short_scan_fwd, k.short_scan_bwd


def _padded(length: int) -> int:
    return max(16, 1 << max(0, length - 1).bit_length())


def scan_shapes(name: str, x, dt, A, B, C, D, dt_bias) -> tuple[int, ...]:
    """(n, length, nheads, headdim, ngroups, d_state) of a scan call in mamba_ssm's
    conventions (`short_scan`, `long_scan`); a ValueError naming `name` where the shapes
    do not fit together."""
    n, length, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    if nheads % ngroups or dt.shape != (n, length, nheads) or C.shape != B.shape \
            or B.shape[:2] != (n, length) or A.shape != (nheads,) or D is None \
            or D.shape != (nheads,) or dt_bias is None or dt_bias.shape != (nheads,):
        raise ValueError(f"{name}: shapes do not match x {tuple(x.shape)}: dt "
                         f"{tuple(dt.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, C "
                         f"{tuple(C.shape)}, D {None if D is None else tuple(D.shape)}, "
                         f"dt_bias {None if dt_bias is None else tuple(dt_bias.shape)}")
    return n, length, nheads, headdim, ngroups, d_state


def _check(x, dt, A, B, C, D, dt_bias) -> tuple[int, ...]:
    if x.shape[1] > SHORT_SCAN_MAX_LENGTH:
        raise ValueError(f"short_scan takes sequences of at most {SHORT_SCAN_MAX_LENGTH} "
                         f"steps, got {x.shape[1]}; use mamba_ssm's chunked scan")
    n, length, nheads, headdim, ngroups, d_state = scan_shapes("short_scan", x, dt, A, B, C,
                                                               D, dt_bias)
    for width, most, name in ((headdim, 128, "headdim"), (d_state, 256, "d_state")):
        if not _supported_width(width, most):
            raise ValueError(f"short_scan needs a power-of-two {name} from 16 to {most}, "
                             f"got {width}")
    return n, length, nheads, headdim, ngroups, d_state


def _launch_args(x, B, length, nheads, ngroups, dt_softplus) -> dict:
    return {"H": nheads, "G": ngroups, "P": x.shape[3], "NS": B.shape[3],
            "BL": _padded(length), "SOFTPLUS": bool(dt_softplus)}


def short_scan_forward(x, dt, A, B, C, chunk_size=None, *, D, dt_bias, dt_softplus=True):
    """y (n, l, h, p) for x (n, l, h, p), dt (n, l, h), A (h,), B, C (n, l, g, ns),
    D, dt_bias (h,): the forward half (no autograd). `chunk_size` is ignored (one chunk)."""
    del chunk_size
    n, length, nheads, _, ngroups, _ = _check(x, dt, A, B, C, D, dt_bias)
    x, dt, B, C = (t.contiguous() for t in (x, dt, B, C))
    y = torch.empty_like(x)
    if n and length:
        _kernels()[0][(n, ngroups)](x, dt, A, B, C, D, dt_bias, y, length,
                                    **_launch_args(x, B, length, nheads, ngroups, dt_softplus),
                                    num_warps=4)
    return y


def short_scan_backward(dy, y, x, dt, A, B, C, chunk_size=None, *, D, dt_bias,
                        dt_softplus=True):
    """Gradients (dx, ddt, dA, dB, dC, dD, ddt_bias) of the scan for the output gradient
    dy; `y` (unused: everything is recomputed from the inputs) keeps mamba_ssm's
    signature."""
    del y, chunk_size
    n, length, nheads, _, ngroups, _ = _check(x, dt, A, B, C, D, dt_bias)
    x, dt, B, C, dy = (t.contiguous() for t in (x, dt, B, C, dy))
    dx, ddt, dB, dC = (torch.empty_like(t) for t in (x, dt, B, C))
    part = torch.zeros(n, 3, nheads, device=x.device, dtype=torch.float32)
    if n and length:
        _kernels()[1][(n, ngroups)](x, dt, A, B, C, D, dt_bias, dy, dx, ddt, dB, dC, part,
                                    length,
                                    **_launch_args(x, B, length, nheads, ngroups, dt_softplus),
                                    num_warps=_BWD_WARPS, num_stages=_BWD_STAGES)
    sums = part.sum(0)
    return (dx, ddt, sums[0].to(A.dtype), dB, dC, sums[1].to(D.dtype),
            sums[2].to(dt_bias.dtype))


class _ShortScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, dt_softplus):
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias)
        ctx.dt_softplus = dt_softplus
        return short_scan_forward(x, dt, A, B, C, D=D, dt_bias=dt_bias,
                                  dt_softplus=dt_softplus)

    @staticmethod
    def backward(ctx, dy):
        x, dt, A, B, C, D, dt_bias = ctx.saved_tensors
        grads = short_scan_backward(dy, None, x, dt, A, B, C, D=D, dt_bias=dt_bias,
                                    dt_softplus=ctx.dt_softplus)
        return (*grads, None)


def short_scan(x, dt, A, B, C, chunk_size=None, *, D, dt_bias, dt_softplus=True):
    """Differentiable `short_scan_forward`; mamba_ssm's `mamba_chunk_scan_combined`
    signature (the subset `bimamba2_fused` uses)."""
    del chunk_size
    return _ShortScan.apply(x, dt, A, B, C, D, dt_bias, dt_softplus)


def short_scan_ops(ops: object) -> types.SimpleNamespace:
    """`ops` (mamba_ssm's kernels, `ssd.load_mamba_triton`) with the scan replaced by
    `short_scan`, for a sequence length where `short_scan_enabled` holds."""
    return types.SimpleNamespace(**{**vars(ops), "mamba_chunk_scan_combined": short_scan,
                                    "scan_halves": (short_scan_forward, short_scan_backward)})
