"""Step 2 of the fused BiMamba2 block (`bimamba2_fused.py`): `split_conv` reads the packed
projection P = [z_f | xBC_f | dt_f | z_b | xBC_b | dt_b] (time order) once and gives the
scan's inputs of both directions: the depthwise causal conv + SiLU of xBC_f, the same conv
run backwards in time for xBC_b (written reversed, the order the backward Mamba2 sees), and
z and dt of both directions (the backward ones reversed). Triton kernels in
`split_conv_triton.py`; `split_conv_reference` is the pure-PyTorch twin (same arguments and
outputs). `_split_conv_outputs` / `_split_conv_grads` are the forward and backward passes
without autograd, for callers that handle P's gradient themselves (the selective
recompute with the packed gate).

Axes: n sequences, l length, e packed projection width per direction, c conv channels.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

__all__ = ["split_conv", "split_conv_reference"]


# ------------------------------------------------------------------ layouts
class _Layout:
    """Column positions in P (per direction) and in the conv output."""

    def __init__(self, d_inner: int, d_state: int, nheads: int) -> None:
        self.d_inner, self.d_state, self.nheads = d_inner, d_state, nheads
        self.conv = d_inner + 2 * d_state  # xBC channels per direction
        self.width = 2 * d_inner + 2 * d_state + nheads  # e: in_proj width per direction
        self.xbc_offset = d_inner  # [z | xBC | dt] inside one direction's e columns
        self.dt_offset = d_inner + self.conv


def split_conv_reference(P: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                         d_inner: int, d_state: int, nheads: int
                         ) -> tuple[torch.Tensor, ...]:
    """What `split_conv` computes, in plain PyTorch.

    Args:
        P: (n, l, 2 e) packed projections, forward direction first, time order.
        weight: (2, c, K) depthwise conv taps per direction (the `nn.Conv1d` weight rows).
        bias: (2, c).

    Returns:
        x: (n, l, 2 d_inner) = [x_f | x_b], B: (n, l, 2 d_state) = [B_f | B_b] and
            C: (n, l, 2 d_state) = [C_f | C_b]: SiLU(conv) of each direction, in that
            direction's processing order (backward reversed), separate tensors so that
            their gradients need no summing into one buffer;
        z: (n, l, 2 d_inner) = [z_f | z_b], same orders;
        dt: (n, l, 2 nheads) = [dt_f | dt_b], same orders.
    """
    lay = _Layout(d_inner, d_state, nheads)
    e, taps = lay.width, weight.shape[-1]
    outs = []
    for d in range(2):
        part = P[..., d * e:(d + 1) * e]
        if d == 1:
            part = part.flip(1)
        xbc = part[..., lay.xbc_offset:lay.xbc_offset + lay.conv].transpose(1, 2)
        conv = F.conv1d(xbc, weight[d].unsqueeze(1).to(xbc.dtype), bias[d].to(xbc.dtype),
                        padding=taps - 1, groups=lay.conv)[..., :P.shape[1]]
        outs.append((F.silu(conv).transpose(1, 2), part[..., :d_inner],
                     part[..., lay.dt_offset:lay.dt_offset + nheads]))
    (xbc_f, z_f, dt_f), (xbc_b, z_b, dt_b) = outs
    di, ns = d_inner, d_state
    return (torch.cat([xbc_f[..., :di], xbc_b[..., :di]], -1),
            torch.cat([xbc_f[..., di:di + ns], xbc_b[..., di:di + ns]], -1),
            torch.cat([xbc_f[..., di + ns:], xbc_b[..., di + ns:]], -1),
            torch.cat([z_f, z_b], -1), torch.cat([dt_f, dt_b], -1))


# ------------------------------------------------------------------ Triton
def _kernels():
    from . import split_conv_triton as k  # imports triton

    return k.conv_fwd, k.conv_bwd_pre, k.conv_bwd_x, k.copy_cols


_BL, _BC = 32, 128  # rows x channels per program (forward, copies)
# the backward's two conv kernels: 64 x 64 (H200, bf16, paper widths, both axes:
# conv_bwd_pre + conv_bwd_x 7.37 -> 5.79 ms per call on the time axis, 7.25 -> 5.96 on the
# band axis; benchmarks/gpu_split_conv.py, GPU_NOTES change 6). conv_bwd_pre walks its 64
# rows _SB_PRE at a time (80-95 registers for sm_90, no spills; all 64 at once took 161-167:
# benchmarks/kernel_registers.py)
_BL_BWD, _BC_BWD = 64, 64
_SB_PRE = 8


def _copy_cols(src, dst, src_off, dst_off, cols, flip):
    n, length = src.shape[:2]
    blocks = (length + _BL - 1) // _BL
    grid = (n * blocks, (cols + 63) // 64)
    _kernels()[3][grid](src, dst, length, blocks, src.stride(0), src.stride(1), dst.stride(0),
                        dst.stride(1), src_off, dst_off, FLIP=flip, COLS=cols, BL=_BL, BC=64)


def _on_device(tensor: torch.Tensor):
    """Triton launches on the current CUDA device: make it the tensor's (a model on cuda:1
    while cuda:0 is current, as in `msst-train --device_ids 1`)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def _split_conv_outputs(P, w, b, d_inner, d_state, nheads, *, copy_z: bool):
    """x, B, C, z (None unless `copy_z`) and dt of `split_conv` for a contiguous P and
    float32 conv weights (no autograd)."""
    lay = _Layout(d_inner, d_state, nheads)
    n, length, _ = P.shape
    x = P.new_empty(n, length, 2 * d_inner)
    B = P.new_empty(n, length, 2 * d_state)
    C = P.new_empty(n, length, 2 * d_state)
    z = P.new_empty(n, length, 2 * d_inner) if copy_z else None
    dt = P.new_empty(n, length, 2 * nheads)
    blocks = (length + _BL - 1) // _BL
    grid = (n * blocks, (lay.conv + _BC - 1) // _BC, 2)
    _kernels()[0][grid](P, w, b, x, B, C, length, blocks, P.stride(0), P.stride(1),
                        E=lay.width, XOFF=lay.xbc_offset, CH=lay.conv,
                        DI=d_inner, NS=d_state, TAPS=w.shape[-1], BL=_BL, BC=_BC)
    for d in range(2):
        if copy_z:
            _copy_cols(P, z, d * lay.width, d * d_inner, d_inner, d == 1)
        _copy_cols(P, dt, d * lay.width + lay.dt_offset, d * nheads, nheads, d == 1)
    return x, B, C, z, dt


class _SplitConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, P, weight, bias, d_inner, d_state, nheads):
        with _on_device(P):
            return _SplitConv._forward(ctx, P, weight, bias, d_inner, d_state, nheads)

    @staticmethod
    def _forward(ctx, P, weight, bias, d_inner, d_state, nheads):
        P = P.contiguous()
        w = weight.float().contiguous()
        b = bias.float().contiguous()
        x, B, C, z, dt = _split_conv_outputs(P, w, b, d_inner, d_state, nheads, copy_z=True)
        ctx.save_for_backward(P, w, b)
        ctx.dims = (d_inner, d_state, nheads, weight.dtype, bias.dtype)
        return x, B, C, z, dt

    @staticmethod
    def backward(ctx, g_x, g_B, g_C, g_z, g_dt):
        # saved_tensors is read once: under torch.utils.checkpoint a second read fails
        P, w, b = ctx.saved_tensors
        with _on_device(P):
            return _SplitConv._backward(ctx, P, w, b, g_x, g_B, g_C, g_z, g_dt)

    @staticmethod
    def _backward(ctx, P, w, b, g_x, g_B, g_C, g_z, g_dt):
        d_inner, d_state, nheads, w_dtype, b_dtype = ctx.dims
        n, length, _ = P.shape
        if g_z is None:
            g_z = P.new_zeros(n, length, 2 * d_inner)
        dP, dw, db = _split_conv_grads(P, w, b, g_x, g_B, g_C, g_z, g_dt, d_inner, d_state,
                                       nheads)
        return dP, dw.to(w_dtype), db.to(b_dtype), None, None, None


def _split_conv_grads(P, w, b, g_x, g_B, g_C, g_z, g_dt, d_inner, d_state, nheads, dP=None):
    """The backward pass of `split_conv` for a contiguous P and float32 conv weights: (dP,
    dweight, dbias), the last two float32. `g_z` None: P's gradient `dP` (given) already
    holds the z columns' gradient (`gated_norm_backward_packed` wrote it there)."""
    lay = _Layout(d_inner, d_state, nheads)
    n, length, _ = P.shape
    taps = w.shape[-1]
    blocks = (length + _BL_BWD - 1) // _BL_BWD
    grid = (n * blocks, (lay.conv + _BC_BWD - 1) // _BC_BWD, 2)

    def grad(g, width):
        return P.new_zeros(n, length, width) if g is None else g.contiguous()

    g_x, g_B, g_C = grad(g_x, 2 * d_inner), grad(g_B, 2 * d_state), grad(g_C, 2 * d_state)
    g_dt = grad(g_dt, 2 * nheads)
    dpre = torch.empty(n, length, 2, lay.conv, device=P.device, dtype=torch.float32)
    partial = torch.empty(n * blocks, 2, lay.conv, taps + 1, device=P.device,
                          dtype=torch.float32)
    fwd, pre, bwd_x, _ = _kernels()
    pre[grid](P, w, b, g_x, g_B, g_C, dpre, partial, length, blocks, P.stride(0),
              P.stride(1), E=lay.width, XOFF=lay.xbc_offset,
              CH=lay.conv, DI=d_inner, NS=d_state, TAPS=taps, BL=_BL_BWD, BC=_BC_BWD,
              SB=_SB_PRE)
    if dP is None:
        dP = torch.empty_like(P)
    bwd_x[grid](w, dpre, dP, length, blocks, dP.stride(0), dP.stride(1), E=lay.width,
                XOFF=lay.xbc_offset, CH=lay.conv, TAPS=taps, BL=_BL_BWD, BC=_BC_BWD)
    sums = partial.sum(0)
    for d in range(2):  # the inverse of the forward copies (a flip is its own inverse)
        if g_z is not None:
            _copy_cols(g_z.contiguous(), dP, d * d_inner, d * lay.width, d_inner, d == 1)
        _copy_cols(g_dt, dP, d * nheads, d * lay.width + lay.dt_offset, nheads, d == 1)
    return dP, sums[..., :taps], sums[..., taps]


def split_conv(P: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, d_inner: int,
               d_state: int, nheads: int) -> tuple[torch.Tensor, ...]:
    """Triton version of `split_conv_reference` (same arguments and results)."""
    return _SplitConv.apply(P, weight, bias, d_inner, d_state, nheads)
