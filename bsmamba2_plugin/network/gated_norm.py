"""Our gated RMSNorm for the fused kernel path, behind mamba_ssm's `rmsnorm_fn` signature.

The Mamba2 mixer's norm with the gate first (`norm_before_gate=False`, no bias):
RMSNorm(y * silu(z)) * w per group of `group_size` columns, as `ssd.gated_rmsnorm_reference`
computes it for one group. Kernels: `gated_norm_triton.py` (formulas there). Why our own:
mamba_ssm's backward runs one program per SM and group and walks its rows one after the
other; at the paper's widths (rows of 2 x 1024 columns in the fused block) it spent 45.7 ms
of a 495 ms training step on an H200 (benchmarks/results/gpu_h200_2026-12-06/) for about
5 GB of memory traffic per call. Ours keeps many programs on every SM (32 in the backward
pass), each over its own run of rows.

Chosen by the execution plan (`model.gated_norm`: `bsmamba2`, the default since the full
CUDA suite passed with it on an H100 on 2026-12-06; `mamba_ssm` for mamba_ssm's). Measured
on an H100: backward 2.23 vs 4.42 ms (1.98x), forward 1.07 vs 1.10 ms
(benchmarks/results/gpu_h100_2026-12-06_gated_norm/). Float32 arithmetic inside; outputs in
the inputs' dtypes (out and dy as y, dz as z, dw as the weight), as mamba_ssm's. With the
packed gate (`model.packed_gate`) the fused block's norm reads z straight from its
projection and, in the backward pass, writes dz straight into the projection's gradient
(`gated_norm_forward_packed`, `gated_norm_backward_packed`).
"""

from __future__ import annotations

import contextlib
import types

import torch

from .kernel_limits import sm_count

__all__ = ["gated_norm", "gated_norm_backward", "gated_norm_backward_packed",
           "gated_norm_forward", "gated_norm_forward_packed", "gated_norm_ops",
           "gated_norm_reference"]

#: programs per SM of the backward pass (each adds up its part of dw). Measured on an H100
#: at the paper's widths (benchmarks/gpu_gated_norm.py --sweep): one row a tile, 4 warps,
#: 32 programs per SM moved 2300 GB/s (2.2 ms; mamba_ssm 4.5 ms); 4 rows, 8 warps, 8
#: programs per SM 1090 GB/s.
PROGRAMS_PER_SM = 32


def _kernels():
    from . import gated_norm_triton as k  # imports triton

    return k.gated_norm_fwd, k.gated_norm_bwd


def _tiles(group_size: int, backward: bool = False) -> dict:
    """Rows per program tile (BM) and the padded group width (BG): ~4096 elements a tile
    forward, ~1024 backward (more live values a row)."""
    width = 1 << max(0, group_size - 1).bit_length()
    return {"BM": max(1, min(16, (1024 if backward else 4096) // width)), "BG": width}


def _warps(group_size: int, backward: bool = False) -> int:
    return 4 if backward or group_size < 512 else 8


def _check(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor,
           group_size: int) -> tuple[int, int]:
    if y.dim() != 2 or z.shape != y.shape or weight.shape != (y.shape[1],):
        raise ValueError(f"gated_norm: y and z must be (rows, columns) of one shape and the "
                         f"weight (columns,); got y {tuple(y.shape)}, z {tuple(z.shape)}, "
                         f"weight {tuple(weight.shape)}")
    if group_size <= 0 or y.shape[1] % group_size:
        raise ValueError(f"gated_norm: group_size {group_size} must divide the "
                         f"{y.shape[1]} columns")
    if group_size > 8192:
        raise ValueError(f"gated_norm: groups of at most 8192 columns, got {group_size}")
    return y.shape[0], y.shape[1] // group_size


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t with unit column stride (its row stride is passed to the kernels)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def gated_norm_forward(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor,
                       eps: float, group_size: int) -> torch.Tensor:
    """RMSNorm(y * silu(z)) * weight per group of `group_size` columns. y, z: (M, N)."""
    rows, groups = _check(y, z, weight, group_size)
    return _forward(_rows(y), _rows(z), weight, eps, group_size, rows, groups)


def gated_norm_forward_packed(y: torch.Tensor, P: torch.Tensor, weight: torch.Tensor,
                              eps: float, group_size: int, width: int) -> torch.Tensor:
    """`gated_norm_forward` of the fused block with z read from its projection P (n, l,
    2 width) instead of a copy: direction d's z are P's columns d x width to d x width +
    group_size, the backward direction's (d = 1) read time-reversed, as `split_conv`'s z.
    y: (n l, 2 group_size), in each direction's processing order. No autograd (inference)."""
    n, length = _check_packed(y, P, weight, group_size, width)
    return _forward(_rows(y), P.contiguous(), weight, eps, group_size, y.shape[0], 2,
                    packed=(width, length))


def _check_packed(y: torch.Tensor, P: torch.Tensor, weight: torch.Tensor, group_size: int,
                  width: int) -> tuple[int, int]:
    n, length = P.shape[:2]
    if y.dim() != 2 or y.shape != (n * length, 2 * group_size) or P.dim() != 3 \
            or P.shape[2] != 2 * width or width < group_size or weight.shape != (y.shape[1],):
        raise ValueError(f"gated_norm (packed): y {tuple(y.shape)} must be (n l, 2 x "
                         f"{group_size}) for P {tuple(P.shape)} of 2 x {width} columns, the "
                         f"weight ({2 * group_size},), got {tuple(weight.shape)}")
    _check(y, y, weight, group_size)
    return n, length


def _forward(y, z, weight, eps, group_size, rows, groups, packed=None) -> torch.Tensor:
    out = torch.empty(y.shape, dtype=y.dtype, device=y.device)
    if rows:
        tiles = _tiles(group_size)
        fwd, _ = _kernels()
        z_stride = z.stride(-2)  # P (n, l, 2 width) contiguous: its rows are (n l)
        zg, length = packed or (0, 1)
        with _on(y.device):
            fwd[(-(-rows // tiles["BM"]), groups)](
                y, z, weight.contiguous(), out, y.stride(0), z_stride, rows, y.shape[1],
                group_size, float(eps), zg, length, **tiles, PACKED=packed is not None,
                num_warps=_warps(group_size))
    return out


def gated_norm_backward(dout: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                        weight: torch.Tensor, eps: float,
                        group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dy, dz, dweight) of `gated_norm_forward` for the output gradient dout."""
    rows, groups = _check(y, z, weight, group_size)
    if dout.shape != y.shape:
        raise ValueError(f"gated_norm: dout {tuple(dout.shape)} must match y "
                         f"{tuple(y.shape)}")
    z = _rows(z)
    dz = torch.empty(z.shape, dtype=z.dtype, device=z.device)
    dy, dw = _backward(dout, y, z, weight, eps, group_size, rows, groups, dz, z.stride(0),
                       dz.stride(0))
    return dy, dz, dw


def gated_norm_backward_packed(dout: torch.Tensor, y: torch.Tensor, P: torch.Tensor,
                               weight: torch.Tensor, eps: float, group_size: int, width: int,
                               dP: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`gated_norm_backward` of `gated_norm_forward_packed` (z read from the projection P):
    writes dz into the z columns of P's gradient dP (the places z was read, the backward
    direction's time-reversed) and returns (dy, dweight). dP: contiguous, P's shape; its
    other columns are left as they are (the caller fills them)."""
    n, length = _check_packed(y, P, weight, group_size, width)
    if dout.shape != y.shape or dP.shape != P.shape or not dP.is_contiguous() \
            or dP.dtype != P.dtype:
        raise ValueError(f"gated_norm_backward_packed: dout {tuple(dout.shape)} must match y "
                         f"{tuple(y.shape)} and dP ({tuple(dP.shape)}, {dP.dtype}) be a "
                         f"contiguous tensor of P's shape and dtype ({tuple(P.shape)}, "
                         f"{P.dtype})")
    rows, groups = y.shape[0], 2
    P = P.contiguous()
    return _backward(dout, y, P, weight, eps, group_size, rows, groups, dP, P.stride(1),
                     dP.stride(1), packed=(width, length))


def _backward(dout, y, z, weight, eps, group_size, rows, groups, dz, z_stride, dz_stride,
              packed=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy, dweight); dz written into `dz` (row stride `dz_stride`, or P's gradient for
    `packed` = (width, length))."""
    y, dout, weight = _rows(y), _rows(dout), weight.contiguous()
    dy = torch.empty(y.shape, dtype=y.dtype, device=y.device)
    if not rows:
        return dy, torch.zeros_like(weight)
    tiles = _tiles(group_size, backward=True)
    n_tiles = -(-rows // tiles["BM"])
    per_program = -(-n_tiles // (sm_count(y.device) * PROGRAMS_PER_SM))  # tiles
    per_program = 1 << max(0, per_program - 1).bit_length()  # few compiled variants
    programs = -(-n_tiles // per_program)
    part = torch.empty((programs, y.shape[1]), dtype=torch.float32, device=y.device)
    _, bwd = _kernels()
    with _on(y.device):
        zg, length = packed or (0, 1)
        bwd[(programs, groups)](y, z, weight, dout, dy, dz, part, y.stride(0), z_stride,
                                dout.stride(0), dz_stride, rows, y.shape[1], group_size,
                                float(eps), zg, length, TILES=per_program, **tiles,
                                PACKED=packed is not None,
                                num_warps=_warps(group_size, backward=True))
    return dy, part.sum(0).to(weight.dtype)


def _on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def gated_norm_reference(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor,
                         eps: float, group_size: int) -> torch.Tensor:
    """The twin of `gated_norm_forward` in PyTorch (float32 arithmetic, float64 for
    float64 input; `ssd.gated_rmsnorm_reference` is the one-group case): what the kernels
    are tested against, its autograd what their backward is tested against."""
    rows, groups = _check(y, z, weight, group_size)
    compute = torch.float64 if y.dtype == torch.float64 else torch.float32
    gated = (y.to(compute) * torch.nn.functional.silu(z.to(compute))).view(rows, groups, -1)
    normed = gated * torch.rsqrt(gated.square().mean(-1, keepdim=True) + eps)
    return (normed.view(rows, -1) * weight.to(compute)).to(y.dtype)


class _GatedNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, z, weight, eps, group_size):
        ctx.save_for_backward(y, z, weight)
        ctx.eps, ctx.group_size = eps, group_size
        return gated_norm_forward(y, z, weight, eps, group_size)

    @staticmethod
    def backward(ctx, dout):
        y, z, weight = ctx.saved_tensors
        dy, dz, dw = gated_norm_backward(dout, y, z, weight, ctx.eps, ctx.group_size)
        return dy, dz, dw, None, None


def gated_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               z: torch.Tensor | None = None, eps: float = 1e-6,
               group_size: int | None = None, norm_before_gate: bool = True
               ) -> torch.Tensor:
    """Differentiable gated norm with mamba_ssm's `rmsnorm_fn` signature, for the case the
    fused block uses (z given, no bias, `norm_before_gate=False`); x, z (..., N)."""
    if z is None or bias is not None or norm_before_gate:
        raise ValueError("gated_norm computes RMSNorm(x * silu(z)) * weight only: z given, "
                         "bias None, norm_before_gate=False")
    shape = x.shape
    out = _GatedNorm.apply(x.reshape(-1, shape[-1]), z.reshape(-1, shape[-1]), weight,
                           float(eps), group_size or shape[-1])
    return out.view(shape)


def gated_norm_ops(ops: object) -> types.SimpleNamespace:
    """`ops` (the kernels a fused block runs, `ssd.load_mamba_triton`) with the gated norm
    replaced by ours."""
    return types.SimpleNamespace(**{**vars(ops), "rmsnorm_fn": gated_norm})
