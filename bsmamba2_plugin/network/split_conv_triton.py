"""Triton kernels of `split_conv.split_conv` (imports triton: load it lazily).

Depthwise causal conv (kernel K) + SiLU over the xBC columns of both directions of the
packed projection P, the backward direction read backwards in time; its backward pass in
two kernels (dpre with partial dW/dbias sums, then dx); and a column copy with an
optional time flip for z and dt. Program grid: (sequences x row blocks, channel blocks,
directions). The dpre kernel walks its row block a few rows (SB) at a time, keeping the
dW/dbias products as elementwise sums until the end, so its live tiles are SB rows high
whatever the block's height (paper widths, SB 8 x 64 channels, 4 warps: 80-95 registers
for sm_90, no spills; the whole 64-row block at once took 161-167:
benchmarks/kernel_registers.py).

Offsets: every part that grows with the batch or the sequence length is formed in 64-bit
integers, once per program (the row block's base pointer: sequence x stride + first row x
stride), and each element adds a small 32-bit offset to it (rows within the block or the
conv's reach, times the row stride, plus the channel). So no offset wraps at any batch or
length (P of a batch of 8 x 8 s has ~1.8e9 elements; one sequence of ~460k steps times P's
row stride passes 2**31), and the per-element index arithmetic stays 32-bit (widening it
all cost 4-11 % in these kernels on an H100).
"""

import triton
import triton.language as tl

__all__ = ["conv_bwd_pre", "conv_bwd_x", "conv_fwd", "copy_cols"]


@triton.jit
def _anchor(row0, length, d):
    # the input row that direction d's taps are counted from for a block starting at output
    # step row0: the same row forwards, the mirrored one backwards (read reversed)
    return tl.where(d == 0, row0, length - 1 - row0)


@triton.jit
def _tap_rows(i, d, k, TAPS: tl.constexpr):
    # rows after the anchor read by tap k for the block's output steps row0 + i
    return tl.where(d == 0, i - (TAPS - 1) + k, (TAPS - 1) - k - i)


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
def _tap_tile(rows, anchor, i, d, k, c, cmask, valid, length, stride_pl,
              TAPS: tl.constexpr):
    # _conv_pre's tap k alone: the input x it reads for the output steps row0 + i (those in
    # `valid`), float32, zero outside the sequence
    rel = _tap_rows(i, d, k, TAPS)
    p = anchor + rel
    m = (p >= 0) & (p < length) & valid
    return tl.load(rows + rel[:, None] * stride_pl + c[None, :],
                   mask=m[:, None] & cmask[None, :], other=0.0).to(tl.float32)


@triton.jit
def _conv_pre(rows, W, Bias, anchor, i, s, c, d, cmask, length, stride_pl, CH: tl.constexpr,
              TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    # bias + sum_k w_k x[anchor + tap_rows(k)]: the conv before SiLU, float32 (BL, BC);
    # `rows` points at the anchor row of this sequence and direction
    acc = tl.zeros((BL, BC), dtype=tl.float32) + tl.load(
        Bias + d * CH + c, mask=cmask, other=0.0)[None, :]
    for k in tl.static_range(TAPS):
        rel = _tap_rows(i, d, k, TAPS)
        p = anchor + rel
        m = (p >= 0) & (p < length) & (s < length)
        xv = tl.load(rows + rel[:, None] * stride_pl + c[None, :],
                     mask=m[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        w = tl.load(W + (d * CH + c) * TAPS + k, mask=cmask, other=0.0)
        acc += xv * w[None, :]
    return acc


@triton.jit
def _block(length, n_l_blocks, BL: tl.constexpr, BC: tl.constexpr):
    # this program's sequence (int64), first output step, steps, channels and direction
    pid = tl.program_id(0)
    seq, row0 = (pid // n_l_blocks).to(tl.int64), (pid % n_l_blocks) * BL
    i = tl.arange(0, BL)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    return pid, seq, row0, i, row0 + i, c, tl.program_id(2)


@triton.jit
def conv_fwd(P, W, Bias, Ox, Ob, Oc, length, n_l_blocks, stride_pn, stride_pl,
             E: tl.constexpr, XOFF: tl.constexpr, CH: tl.constexpr,
             DI: tl.constexpr, NS: tl.constexpr, TAPS: tl.constexpr,
             BL: tl.constexpr, BC: tl.constexpr):
    _, seq, row0, i, s, c, d = _block(length, n_l_blocks, BL, BC)
    cmask = c < CH
    anchor = _anchor(row0, length, d)
    rows = P + seq * stride_pn + anchor.to(tl.int64) * stride_pl + d * E + XOFF
    acc = _conv_pre(rows, W, Bias, anchor, i, s, c, d, cmask, length, stride_pl, CH, TAPS,
                    BL, BC)
    out = acc * tl.sigmoid(acc)
    _store3(Ox, Ob, Oc, seq * length + s[:, None], c[None, :], d, out,
            (s < length)[:, None] & cmask[None, :], DI, NS)


@triton.jit
def conv_bwd_pre(P, W, Bias, Gx, Gb, Gc, Dpre, Partial, length, n_l_blocks, stride_pn,
                 stride_pl, E: tl.constexpr, XOFF: tl.constexpr,
                 CH: tl.constexpr, DI: tl.constexpr, NS: tl.constexpr,
                 TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr,
                 SB: tl.constexpr):
    # dpre = dOut * silu'(pre), in processing order; partial sums of dW and dbias over the
    # program's BL steps, walked SB at a time (BL a multiple of SB): each step's tap tiles
    # serve both the conv and the dW products, the products add up elementwise in (SB, BC)
    # tiles, and the column sums come once at the end (module docstring: registers)
    pid, seq, row0, _, _, c, d = _block(length, n_l_blocks, BL, BC)
    cmask = c < CH
    anchor = _anchor(row0, length, d)
    rows = P + seq * stride_pn + anchor.to(tl.int64) * stride_pl + d * E + XOFF
    bias = tl.load(Bias + d * CH + c, mask=cmask, other=0.0)
    ws = ()  # the taps' weights, and their dW products summed over the steps
    dws = ()
    for k in tl.static_range(TAPS):
        ws = ws + (tl.load(W + (d * CH + c) * TAPS + k, mask=cmask, other=0.0),)
        dws = dws + (tl.zeros((SB, BC), dtype=tl.float32),)
    dbias = tl.zeros((SB, BC), dtype=tl.float32)
    for step in range(BL // SB):  # steps past the sequence's end: masked, adding zeros
        i = step * SB + tl.arange(0, SB)
        s = row0 + i
        valid = s < length
        acc = tl.zeros((SB, BC), dtype=tl.float32) + bias[None, :]  # as in _conv_pre
        xs = ()
        for k in tl.static_range(TAPS):
            xv = _tap_tile(rows, anchor, i, d, k, c, cmask, valid, length, stride_pl, TAPS)
            acc += xv * ws[k][None, :]
            xs = xs + (xv,)
        sig = tl.sigmoid(acc)
        mask2 = valid[:, None] & cmask[None, :]
        g = _load3(Gx, Gb, Gc, seq * length + s[:, None], c[None, :], d, mask2, DI, NS)
        dpre = g * sig * (1.0 + acc * (1.0 - sig))
        dpre = tl.where(mask2, dpre, 0.0)
        tl.store(Dpre + ((seq * length + s[:, None]) * 2 + d) * CH + c[None, :], dpre,
                 mask=mask2)
        summed = ()
        for k in tl.static_range(TAPS):
            summed = summed + (dws[k] + dpre * xs[k],)
        dws = summed
        dbias += dpre
    part = Partial + (pid.to(tl.int64) * 2 + d) * (CH * (TAPS + 1)) + c * (TAPS + 1)
    for k in tl.static_range(TAPS):
        tl.store(part + k, tl.sum(dws[k], axis=0), mask=cmask)
    tl.store(part + TAPS, tl.sum(dbias, axis=0), mask=cmask)


@triton.jit
def conv_bwd_x(W, Dpre, DP, length, n_l_blocks, stride_dn, stride_dl,
               E: tl.constexpr, XOFF: tl.constexpr, CH: tl.constexpr,
               TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    # dx[p] = sum_k w_k dpre[s_k(p)], written into dP's xBC columns (time order)
    _, seq, row0, i, p, c, d = _block(length, n_l_blocks, BL, BC)
    cmask = c < CH
    acc = tl.zeros((BL, BC), dtype=tl.float32)
    for k in tl.static_range(TAPS):
        s = tl.where(d == 0, p + (TAPS - 1) - k, length - 1 - p + (TAPS - 1) - k)
        m = (s >= 0) & (s < length) & (p < length)
        g = tl.load(Dpre + ((seq * length + s[:, None]) * 2 + d) * CH + c[None, :],
                    mask=m[:, None] & cmask[None, :], other=0.0)
        w = tl.load(W + (d * CH + c) * TAPS + k, mask=cmask, other=0.0)
        acc += g * w[None, :]
    rows = DP + seq * stride_dn + row0.to(tl.int64) * stride_dl + d * E + XOFF
    tl.store(rows + i[:, None] * stride_dl + c[None, :], acc.to(DP.dtype.element_ty),
             mask=(p < length)[:, None] & cmask[None, :])


@triton.jit
def copy_cols(Src, Dst, length, n_l_blocks, stride_sn, stride_sl, stride_dn, stride_dl,
              src_off, dst_off, FLIP: tl.constexpr, COLS: tl.constexpr,
              BL: tl.constexpr, BC: tl.constexpr):
    # Dst[n, s, dst_off + j] = Src[n, FLIP ? l-1-s : s, src_off + j], j < COLS
    _, seq, row0, i, s, j, _ = _block(length, n_l_blocks, BL, BC)
    src_row0 = length - 1 - row0 if FLIP else row0
    src_rel = -i if FLIP else i
    m = (s < length)[:, None] & (j < COLS)[None, :]
    src = Src + seq * stride_sn + src_row0.to(tl.int64) * stride_sl + src_off
    v = tl.load(src + src_rel[:, None] * stride_sl + j[None, :], mask=m)
    dst = Dst + seq * stride_dn + row0.to(tl.int64) * stride_dl + dst_off
    tl.store(dst + i[:, None] * stride_dl + j[None, :], v, mask=m)
