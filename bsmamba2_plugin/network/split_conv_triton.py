"""Triton kernels of `bimamba2_fused.split_conv` (imports triton: load it lazily).

Depthwise causal conv (kernel K) + SiLU over the xBC columns of both directions of the
packed projection P, the backward direction read backwards in time; its backward pass in
two kernels (dpre with partial dW/dbias sums, then dx); and a column copy with an
optional time flip for z and dt. Program grid: (sequences x row blocks, channel blocks,
directions). Every offset is formed in 64-bit integers (the program id is widened first, so
the row indices, the partial-sum rows and all products with strides are int64): P of a
batch of 8 x 8 s has ~1.8e9 elements, and one long sequence times P's row stride passes
2**31 at ~460k steps.
"""

import triton
import triton.language as tl

__all__ = ["conv_bwd_pre", "conv_bwd_x", "conv_fwd", "copy_cols"]


@triton.jit
def _src_row(s, length, d, k, TAPS: tl.constexpr):
    # input time index read by tap k for output step s of direction d
    return tl.where(d == 0, s - (TAPS - 1) + k, length - 1 - s + (TAPS - 1) - k)


@triton.jit
def _offsets3(row, c, d, DI: tl.constexpr, NS: tl.constexpr):
    # conv channel c of direction d -> element offsets in the contiguous outputs
    # x (rows, 2 DI), B (rows, 2 NS), C (rows, 2 NS), and which of the three it is
    off_x = row * (2 * DI) + d * DI + c
    off_b = row * (2 * NS) + d * NS + (c - DI)
    off_c = row * (2 * NS) + d * NS + (c - DI - NS)
    return off_x, off_b, off_c, c < DI, (c >= DI) & (c < DI + NS), c >= DI + NS


@triton.jit
def _store3(Ox, Ob, Oc, row, c, d, value, mask, DI: tl.constexpr, NS: tl.constexpr):
    off_x, off_b, off_c, is_x, is_b, is_c = _offsets3(row, c, d, DI, NS)
    tl.store(Ox + off_x, value.to(Ox.dtype.element_ty), mask=mask & is_x)
    tl.store(Ob + off_b, value.to(Ob.dtype.element_ty), mask=mask & is_b)
    tl.store(Oc + off_c, value.to(Oc.dtype.element_ty), mask=mask & is_c)


@triton.jit
def _load3(Gx, Gb, Gc, row, c, d, mask, DI: tl.constexpr, NS: tl.constexpr):
    off_x, off_b, off_c, is_x, is_b, is_c = _offsets3(row, c, d, DI, NS)
    gx = tl.load(Gx + off_x, mask=mask & is_x, other=0.0).to(tl.float32)
    gb = tl.load(Gb + off_b, mask=mask & is_b, other=0.0).to(tl.float32)
    gc = tl.load(Gc + off_c, mask=mask & is_c, other=0.0).to(tl.float32)
    return gx + gb + gc


@triton.jit
def _conv_pre(base, W, Bias, s, c, d, cmask, length, stride_pl, CH: tl.constexpr,
              TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    # bias + sum_k w_k x[src_row(s, k)]: the conv before SiLU, float32 (BL, BC)
    acc = tl.zeros((BL, BC), dtype=tl.float32) + tl.load(
        Bias + d * CH + c, mask=cmask, other=0.0)[None, :]
    for k in tl.static_range(TAPS):
        p = _src_row(s, length, d, k, TAPS)
        m = (p >= 0) & (p < length) & (s < length)
        xv = tl.load(base + p[:, None] * stride_pl + c[None, :],
                     mask=m[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        w = tl.load(W + (d * CH + c) * TAPS + k, mask=cmask, other=0.0)
        acc += xv * w[None, :]
    return acc


@triton.jit
def conv_fwd(P, W, Bias, Ox, Ob, Oc, length, n_l_blocks, stride_pn, stride_pl,
             E: tl.constexpr, XOFF: tl.constexpr, CH: tl.constexpr,
             DI: tl.constexpr, NS: tl.constexpr, TAPS: tl.constexpr,
             BL: tl.constexpr, BC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    seq, lb = pid // n_l_blocks, pid % n_l_blocks
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    d = tl.program_id(2)
    s = lb * BL + tl.arange(0, BL)
    cmask = c < CH
    base = P + seq * stride_pn + d * E + XOFF
    acc = _conv_pre(base, W, Bias, s, c, d, cmask, length, stride_pl, CH, TAPS, BL, BC)
    out = acc * tl.sigmoid(acc)
    _store3(Ox, Ob, Oc, seq * length + s[:, None], c[None, :], d, out,
            (s < length)[:, None] & cmask[None, :], DI, NS)


@triton.jit
def conv_bwd_pre(P, W, Bias, Gx, Gb, Gc, Dpre, Partial, length, n_l_blocks, stride_pn,
                 stride_pl, E: tl.constexpr, XOFF: tl.constexpr,
                 CH: tl.constexpr, DI: tl.constexpr, NS: tl.constexpr,
                 TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    # dpre = dOut * silu'(pre), in processing order; partial sums of dW and dbias
    pid = tl.program_id(0).to(tl.int64)
    seq, lb = pid // n_l_blocks, pid % n_l_blocks
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    d = tl.program_id(2)
    s = lb * BL + tl.arange(0, BL)
    cmask = c < CH
    rows = s < length
    base = P + seq * stride_pn + d * E + XOFF
    acc = _conv_pre(base, W, Bias, s, c, d, cmask, length, stride_pl, CH, TAPS, BL, BC)
    sig = tl.sigmoid(acc)
    mask2 = rows[:, None] & cmask[None, :]
    g = _load3(Gx, Gb, Gc, seq * length + s[:, None], c[None, :], d, mask2, DI, NS)
    dpre = g * sig * (1.0 + acc * (1.0 - sig))
    dpre = tl.where(mask2, dpre, 0.0)
    tl.store(Dpre + ((seq * length + s[:, None]) * 2 + d) * CH + c[None, :], dpre,
             mask=mask2)
    part = Partial + ((pid * 2 + d) * CH + c) * (TAPS + 1)
    for k in tl.static_range(TAPS):
        p = _src_row(s, length, d, k, TAPS)
        m = (p >= 0) & (p < length) & rows
        xv = tl.load(base + p[:, None] * stride_pl + c[None, :],
                     mask=m[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        tl.store(part + k, tl.sum(dpre * xv, axis=0), mask=cmask)
    tl.store(part + TAPS, tl.sum(dpre, axis=0), mask=cmask)


@triton.jit
def conv_bwd_x(W, Dpre, DP, length, n_l_blocks, stride_dn, stride_dl,
               E: tl.constexpr, XOFF: tl.constexpr, CH: tl.constexpr,
               TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    # dx[p] = sum_k w_k dpre[s_k(p)], written into dP's xBC columns (time order)
    pid = tl.program_id(0).to(tl.int64)
    seq, lb = pid // n_l_blocks, pid % n_l_blocks
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    d = tl.program_id(2)
    p = lb * BL + tl.arange(0, BL)
    cmask = c < CH
    acc = tl.zeros((BL, BC), dtype=tl.float32)
    for k in tl.static_range(TAPS):
        s = tl.where(d == 0, p + (TAPS - 1) - k, length - 1 - p + (TAPS - 1) - k)
        m = (s >= 0) & (s < length) & (p < length)
        g = tl.load(Dpre + ((seq * length + s[:, None]) * 2 + d) * CH + c[None, :],
                    mask=m[:, None] & cmask[None, :], other=0.0)
        w = tl.load(W + (d * CH + c) * TAPS + k, mask=cmask, other=0.0)
        acc += g * w[None, :]
    tl.store(DP + seq * stride_dn + p[:, None] * stride_dl + d * E + XOFF + c[None, :],
             acc.to(DP.dtype.element_ty), mask=(p < length)[:, None] & cmask[None, :])


@triton.jit
def copy_cols(Src, Dst, length, n_l_blocks, stride_sn, stride_sl, stride_dn, stride_dl,
              src_off, dst_off, FLIP: tl.constexpr, COLS: tl.constexpr,
              BL: tl.constexpr, BC: tl.constexpr):
    # Dst[n, s, dst_off + j] = Src[n, FLIP ? l-1-s : s, src_off + j], j < COLS
    pid = tl.program_id(0).to(tl.int64)
    seq, lb = pid // n_l_blocks, pid % n_l_blocks
    j = tl.program_id(1) * BC + tl.arange(0, BC)
    s = lb * BL + tl.arange(0, BL)
    src_row = length - 1 - s if FLIP else s
    m = (s < length)[:, None] & (j < COLS)[None, :]
    v = tl.load(Src + seq * stride_sn + src_row[:, None] * stride_sl + src_off + j[None, :],
                mask=m)
    tl.store(Dst + seq * stride_dn + s[:, None] * stride_dl + dst_off + j[None, :], v,
             mask=m)
