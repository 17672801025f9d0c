"""Triton kernels of `gated_norm` (imports triton: load it lazily).

The gated RMSNorm of the Mamba2 mixer with the gate before the norm (mamba_ssm's
`norm_before_gate=False`), per group of GS columns of a row:

    h = y * silu(z),  r = 1 / sqrt(mean_group(h^2) + eps),  out = h * r * w

Backward, with hn = h * r and dhn = dout * w:

    dw = sum over rows of dout * hn
    dh = r * (dhn - hn * mean_group(dhn * hn))
    dy = dh * silu(z),  dz = dh * y * sigmoid(z) * (1 + z * (1 - sigmoid(z)))

Both kernels take tiles of BM rows x one group (BM = 1 for the paper's groups of 1024 in the
backward pass, measured best); the forward runs one tile a program, the backward many
programs per SM (mamba_ssm's backward runs one program per SM and group, its rows one
after the other). The backward recomputes h and r from y and z (nothing is
saved between the passes) and each program walks TILES tiles of rows, adding its part of
dw in registers; the parts are summed by the caller (deterministic, no atomics).

Layouts: y, z, dout (M, N) with unit column stride and row strides SY, SZ, SD; out, dy
(M, N) contiguous, dz (M, N) with row stride SDZ, N = groups x GS; w (N,); dw_part
(programs, N) float32. Both kernels can also read z from the fused block's packed
projection P (PACKED: two groups, the directions; group g's z at column g x ZG of P's row,
group 1 time-reversed within each sequence of LENGTH rows), and the backward then writes dz
to the same places of P's gradient (row stride SDZ): that saves the copies of z out of P
and of dz into P's gradient. Row offsets
are 64-bit (a row index times a row stride can pass 2**31 at large batches); offsets
within a tile are 32-bit.
"""

import triton
import triton.language as tl

__all__ = ["gated_norm_bwd", "gated_norm_fwd"]


@triton.jit
def _packed_rows(rows, g, LENGTH):
    # P's row of z for rows (n l) of group g: group 1 (the backward direction) is
    # time-reversed within each sequence of LENGTH rows
    t = rows % LENGTH
    return tl.where(g == 1, rows - t + (LENGTH - 1 - t), rows)


@triton.jit
def _tile(Y, Z, SY, SZ, rows, M, N, GS, g, BG: tl.constexpr, ZG, LENGTH,
          PACKED: tl.constexpr):
    # this tile's y, z (float32), h = y silu(z), sigmoid(z), the mask, the column index
    # within the row and the 64-bit row index. PACKED: z is read from the fused block's
    # projection P instead (group g's z at column g * ZG of P's rows; group 1, the
    # backward direction, time-reversed within each sequence of LENGTH rows)
    cols = g * GS + tl.arange(0, BG)
    mask = (rows < M)[:, None] & (tl.arange(0, BG) < GS)[None, :]
    rows = rows.to(tl.int64)[:, None]
    y = tl.load(Y + rows * SY + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if PACKED:
        zrows = _packed_rows(rows, g, LENGTH)
        z = tl.load(Z + zrows * SZ + g * ZG + tl.arange(0, BG)[None, :], mask=mask,
                    other=0.0).to(tl.float32)
    else:
        z = tl.load(Z + rows * SZ + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(z)
    h = y * z * sig
    return y, z, sig, h, mask, cols, rows


@triton.jit
def gated_norm_fwd(Y, Z, W, OUT, SY, SZ, M, N, GS, eps, ZG, LENGTH, BM: tl.constexpr,
                   BG: tl.constexpr, PACKED: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    g = tl.program_id(1)
    y, z, sig, h, mask, cols, rows = _tile(Y, Z, SY, SZ, rows, M, N, GS, g, BG, ZG, LENGTH,
                                           PACKED)
    r = 1.0 / tl.sqrt(tl.sum(h * h, axis=1) / GS + eps)
    w = tl.load(W + cols, mask=tl.arange(0, BG) < GS, other=0.0).to(tl.float32)
    out = h * r[:, None] * w[None, :]
    tl.store(OUT + rows * N + cols[None, :], out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def gated_norm_bwd(Y, Z, W, DOUT, DY, DZ, DW_PART, SY, SZ, SD, SDZ, M, N, GS, eps, ZG,
                   LENGTH, TILES: tl.constexpr, BM: tl.constexpr, BG: tl.constexpr,
                   PACKED: tl.constexpr):
    # TILES tiles of BM rows a program (a power of two: few compiled variants)
    pid = tl.program_id(0)
    g = tl.program_id(1)
    w = tl.load(W + g * GS + tl.arange(0, BG), mask=tl.arange(0, BG) < GS,
                other=0.0).to(tl.float32)
    dw = tl.zeros((BG,), dtype=tl.float32)
    first = pid.to(tl.int64) * (TILES * BM)
    for i in range(TILES):
        rows = first + i * BM + tl.arange(0, BM)
        y, z, sig, h, mask, cols, rows = _tile(Y, Z, SY, SZ, rows, M, N, GS, g, BG, ZG,
                                               LENGTH, PACKED)
        dout = tl.load(DOUT + rows * SD + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        r = 1.0 / tl.sqrt(tl.sum(h * h, axis=1) / GS + eps)
        hn = h * r[:, None]
        dw += tl.sum(dout * hn, axis=0)
        dhn = dout * w[None, :]
        c = tl.sum(dhn * hn, axis=1) / GS
        dh = r[:, None] * (dhn - hn * c[:, None])
        dy = dh * z * sig
        dz = dh * y * sig * (1.0 + z * (1.0 - sig))
        tl.store(DY + rows * N + cols[None, :], dy.to(DY.dtype.element_ty), mask=mask)
        if PACKED:  # dz into the z columns of P's gradient, where z was read
            zrows = _packed_rows(rows, g, LENGTH)
            dz_at = DZ + zrows * SDZ + g * ZG + tl.arange(0, BG)[None, :]
        else:
            dz_at = DZ + rows * SDZ + cols[None, :]
        tl.store(dz_at, dz.to(DZ.dtype.element_ty), mask=mask)
    tl.store(DW_PART + pid.to(tl.int64) * N + g * GS + tl.arange(0, BG), dw,
             mask=tl.arange(0, BG) < GS)
