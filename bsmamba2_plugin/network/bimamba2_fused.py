"""BiMamba2 on CUDA in one pass for both directions: the kernel backend's fast path.

`BiMamba2` computes, with separate weights for the two directions,

    f = x + Mamba2_f(RMSNorm_f(x))
    b = x + flip(Mamba2_b(RMSNorm_b(flip(x))))
    y = x + Linear([f; b])

`bimamba2_fused` computes the same function with far fewer kernel launches and copies:

1. RMSNorm commutes with the time flip and its weight folds into `in_proj`, so one
   normalisation of x and ONE matrix product with the stacked, weight-scaled projections
   of both directions give P = [z_f | xBC_f | dt_f | z_b | xBC_b | dt_b] for every token,
   in time order.
2. `split_conv` (Triton) reads P once: the depthwise causal conv + SiLU of xBC_f, the
   same conv run backwards in time for xBC_b (written in reversed order, which is the order
   the backward Mamba2 sees), and z and dt of both directions (the backward ones reversed).
   Its output puts x_f, x_b side by side, then B_f, B_b, then C_f, C_b, so that ...
3. ... ONE call of mamba_ssm's chunked scan runs both directions as 2 groups of 16 heads
   (ngroups = 2: each direction's heads read its own B and C), and ONE gated RMSNorm call
   normalises both (group size d_inner, weights of both directions side by side).
4. The two out_proj products, one flip of the backward output (d_model wide, 4x narrower
   than d_inner), the residuals and the 1x1 fusion projection finish the block.

The SSD chunk length adapts to the sequence: the band axis (62 bands) runs in one chunk of
64 instead of mamba_ssm's 256 (4x less padding), the time axis in chunks of 128.

`split_conv_reference` is the pure-PyTorch twin of the Triton op (same arguments and
outputs), used by the tests; the whole fused block is tested against the per-direction
path and the reference backend on the GPU (tests/test_kernel_cuda.py).

Axes: n sequences, l length, e packed projection width per direction, c conv channels.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

__all__ = ["bimamba2_fused", "kernel_chunk_size", "split_conv", "split_conv_reference"]


def kernel_chunk_size(length: int, requested: int | None = None) -> int:
    """SSD chunk length for mamba_ssm's kernel: `requested` if given, else the smallest
    power of two >= length up to 64 (one chunk for the band axis), 128 above that."""
    if requested:
        return requested
    if length <= 64:
        return max(16, 1 << max(0, length - 1).bit_length())
    return 128


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


_BL, _BC = 32, 128  # rows x channels per program


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


class _SplitConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, P, weight, bias, d_inner, d_state, nheads):
        with _on_device(P):
            return _SplitConv._forward(ctx, P, weight, bias, d_inner, d_state, nheads)

    @staticmethod
    def _forward(ctx, P, weight, bias, d_inner, d_state, nheads):
        lay = _Layout(d_inner, d_state, nheads)
        n, length, _ = P.shape
        P = P.contiguous()
        w = weight.float().contiguous()
        b = bias.float().contiguous()
        x = P.new_empty(n, length, 2 * d_inner)
        B = P.new_empty(n, length, 2 * d_state)
        C = P.new_empty(n, length, 2 * d_state)
        z = P.new_empty(n, length, 2 * d_inner)
        dt = P.new_empty(n, length, 2 * nheads)
        blocks = (length + _BL - 1) // _BL
        grid = (n * blocks, (lay.conv + _BC - 1) // _BC, 2)
        _kernels()[0][grid](P, w, b, x, B, C, length, blocks, P.stride(0), P.stride(1),
                            E=lay.width, XOFF=lay.xbc_offset, CH=lay.conv,
                            DI=d_inner, NS=d_state, TAPS=w.shape[-1], BL=_BL, BC=_BC)
        for d in range(2):
            _copy_cols(P, z, d * lay.width, d * d_inner, d_inner, d == 1)
            _copy_cols(P, dt, d * lay.width + lay.dt_offset, d * nheads, nheads, d == 1)
        ctx.save_for_backward(P, w, b)
        ctx.dims = (d_inner, d_state, nheads, weight.dtype, bias.dtype)
        return x, B, C, z, dt

    @staticmethod
    def backward(ctx, g_x, g_B, g_C, g_z, g_dt):
        with _on_device(ctx.saved_tensors[0]):
            return _SplitConv._backward(ctx, g_x, g_B, g_C, g_z, g_dt)

    @staticmethod
    def _backward(ctx, g_x, g_B, g_C, g_z, g_dt):
        P, w, b = ctx.saved_tensors
        d_inner, d_state, nheads, w_dtype, b_dtype = ctx.dims
        lay = _Layout(d_inner, d_state, nheads)
        n, length, _ = P.shape
        taps = w.shape[-1]
        blocks = (length + _BL - 1) // _BL
        grid = (n * blocks, (lay.conv + _BC - 1) // _BC, 2)
        def grad(g, width):
            return P.new_zeros(n, length, width) if g is None else g.contiguous()

        g_x, g_B, g_C = grad(g_x, 2 * d_inner), grad(g_B, 2 * d_state), grad(g_C, 2 * d_state)
        g_z, g_dt = grad(g_z, 2 * d_inner), grad(g_dt, 2 * nheads)
        dpre = torch.empty(n, length, 2, lay.conv, device=P.device, dtype=torch.float32)
        partial = torch.empty(n * blocks, 2, lay.conv, taps + 1, device=P.device,
                              dtype=torch.float32)
        fwd, pre, bwd_x, _ = _kernels()
        pre[grid](P, w, b, g_x, g_B, g_C, dpre, partial, length, blocks, P.stride(0),
                  P.stride(1), E=lay.width, XOFF=lay.xbc_offset,
                  CH=lay.conv, DI=d_inner, NS=d_state, TAPS=taps, BL=_BL, BC=_BC)
        dP = torch.empty_like(P)
        bwd_x[grid](w, dpre, dP, length, blocks, dP.stride(0), dP.stride(1), E=lay.width,
                    XOFF=lay.xbc_offset, CH=lay.conv, TAPS=taps, BL=_BL, BC=_BC)
        sums = partial.sum(0)
        for d in range(2):  # the inverse of the forward copies (a flip is its own inverse)
            _copy_cols(g_z, dP, d * d_inner, d * lay.width, d_inner, d == 1)
            _copy_cols(g_dt, dP, d * nheads, d * lay.width + lay.dt_offset, nheads, d == 1)
        return dP, sums[..., :taps].to(w_dtype), sums[..., taps].to(b_dtype), None, None, None


def split_conv(P: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, d_inner: int,
               d_state: int, nheads: int) -> tuple[torch.Tensor, ...]:
    """Triton version of `split_conv_reference` (same arguments and results)."""
    return _SplitConv.apply(P, weight, bias, d_inner, d_state, nheads)


# ------------------------------------------------------------------ the block
def bimamba2_fused(block: torch.nn.Module, x: torch.Tensor, *, ops: object = None,
                   split: object = split_conv) -> torch.Tensor:
    """`block` (a `mamba2.BiMamba2`) applied to x (n, l, d) with the fused kernel path.

    Args:
        block: the BiMamba2 whose parameters are used.
        x: (n, l, d).
        ops: provides `mamba_chunk_scan_combined` and `rmsnorm_fn` with mamba_ssm's
            signatures (default: mamba_ssm's Triton kernels); tests pass pure-PyTorch ones.
        split: `split_conv` or `split_conv_reference`.

    Returns: (n, l, d), the same function as `block._forward(x)`.
    """
    if ops is None:
        from .ssd import load_mamba_triton

        ops = load_mamba_triton()
    fwd, bwd = block.forward_blocks[0], block.backward_blocks[0]
    mf, mb = fwd.mixer, bwd.mixer
    n, length, dim = x.shape
    d_inner, d_state, nheads, headdim = mf.d_inner, mf.d_state, mf.nheads, mf.headdim

    # 1. shared RMS normalisation, both pre-norm weights folded into one projection
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    x_hat = wide * torch.rsqrt(wide.square().mean(-1, keepdim=True) + fwd.norm.eps)
    w_in = torch.cat([mf.in_proj.weight * fwd.norm.weight, mb.in_proj.weight * bwd.norm.weight])
    P = F.linear(x_hat.to(x.dtype), w_in)  # (n, l, 2 e); bf16 under autocast
    # 2. conv + SiLU of both directions, z and dt, backward direction reversed
    xh, B, C, z, dt = split(P, torch.stack([mf.conv1d.weight[:, 0], mb.conv1d.weight[:, 0]]),
                            torch.stack([mf.conv1d.bias, mb.conv1d.bias]),
                            d_inner=d_inner, d_state=d_state, nheads=nheads)
    # 3. both directions in one scan (2 groups) and one gated norm (2 groups)
    A_log = torch.cat([mf.A_log, mb.A_log])
    A = -torch.exp(A_log.to(torch.promote_types(A_log.dtype, torch.float32)))
    y = ops.mamba_chunk_scan_combined(
        xh.view(n, length, 2 * nheads, headdim), dt, A, B.view(n, length, 2, d_state),
        C.view(n, length, 2, d_state), kernel_chunk_size(length, mf.chunk_size),
        D=torch.cat([mf.D, mb.D]), dt_bias=torch.cat([mf.dt_bias, mb.dt_bias]),
        dt_softplus=True)
    g = ops.rmsnorm_fn(y.reshape(n * length, 2 * d_inner),
                       torch.cat([mf.norm.weight, mb.norm.weight]), None,
                       z=z.reshape(n * length, 2 * d_inner), eps=mf.norm.eps,
                       group_size=d_inner, norm_before_gate=False)
    # 4. projections back, un-reverse the backward branch, residuals, 1x1 fusion
    # both out_proj products as one batched product over strided halves of g (slicing g
    # would make autograd zero-fill and sum two full-size gradients)
    w_out = torch.stack([mf.out_proj.weight, mb.out_proj.weight]).transpose(1, 2)
    h = torch.bmm(g.view(n * length, 2, d_inner).transpose(0, 1), w_out.to(g.dtype))
    # the residual stream stays in x's dtype (mixed-dtype adds take a slow generic kernel)
    h_f, h_b = h.to(x.dtype).unbind(0)
    both = torch.cat([x + h_f.view(n, length, dim), x + h_b.view(n, length, dim).flip(1)], -1)
    fused = F.linear(both, block.linear.weight[:, :, 0].t(), block.linear.bias)
    return x + fused.to(x.dtype)
