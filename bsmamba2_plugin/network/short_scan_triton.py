"""Triton kernels of `short_scan` (imports triton: load it lazily).

The SSD scan of sequences that fit one chunk (the band axis: 62 bands), as the quadratic
form it is within a chunk, with no chunk states:

    y_t = sum_{s <= t} (C_t . B_s) exp(a_t - a_s) dt_s x_s + D x_t,   a = cumsum(A dt)

One program per (sequence, group) computes C B^T once and loops over the group's heads.
The backward pass recomputes the same products and accumulates d(C B^T) over the heads,
then dC = d(CB) B and dB = d(CB)^T C; per-head sums (dA, dD, d dt_bias) are written as
partial sums per sequence for the caller to add up (deterministic, no atomics).

Layouts (contiguous): x, y, dy (n, l, h, p); dt (n, l, h); B, C (n, l, g, ns);
A, D, dt_bias (h,). BL is the padded sequence length (a power of two >= 16).
"""

import triton
import triton.language as tl

__all__ = ["short_scan_bwd", "short_scan_fwd"]


@triton.jit
def _step_sizes(DT, DTB, seq, t, tmask, h, length, H: tl.constexpr,
                SOFTPLUS: tl.constexpr):
    # dt after bias and softplus (0 on padding rows), and d dt / d raw
    raw = tl.load(DT + (seq * length + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
    raw += tl.load(DTB + h).to(tl.float32)
    if SOFTPLUS:
        # mamba_ssm's softplus: identity above 20
        dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(raw)), raw)
        slope = tl.where(raw <= 20.0, tl.sigmoid(raw), 1.0)
    else:
        dt = raw
        slope = tl.zeros_like(raw) + 1.0
    return tl.where(tmask, dt, 0.0), slope


@triton.jit
def _decay(A, h, dt, causal):
    # exp(a_t - a_s) on and below the diagonal, 0 above; a = cumsum(A dt)
    a = tl.load(A + h).to(tl.float32)
    acum = tl.cumsum(a * dt, axis=0)
    diff = tl.where(causal, acum[:, None] - acum[None, :], float("-inf"))
    return tl.exp(diff), a


@triton.jit
def _group_tiles(Bm, Cm, length, G: tl.constexpr, NS: tl.constexpr, BL: tl.constexpr):
    # this program's sequence and group: B, C (BL, NS), C B^T (BL, BL) float32, the mask
    seq = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1)
    t = tl.arange(0, BL)
    tmask = t < length
    bc = (seq * length + t[:, None]) * (G * NS) + g * NS + tl.arange(0, NS)[None, :]
    Bv = tl.load(Bm + bc, mask=tmask[:, None], other=0.0)
    Cv = tl.load(Cm + bc, mask=tmask[:, None], other=0.0)
    cb = tl.dot(Cv, tl.trans(Bv))
    causal = t[:, None] >= t[None, :]
    return seq, g, t, tmask, bc, Bv, Cv, cb, causal


@triton.jit
def _head_tiles(X, DT, A, DTB, seq, t, tmask, causal, h, length, H: tl.constexpr,
                P: tl.constexpr, SOFTPLUS: tl.constexpr):
    # head h: dt and its slope, the decay matrix, A, x's offsets and x (BL, P)
    dt, slope = _step_sizes(DT, DTB, seq, t, tmask, h, length, H, SOFTPLUS)
    decay, a = _decay(A, h, dt, causal)
    xo = (seq * length + t[:, None]) * (H * P) + h * P + tl.arange(0, P)[None, :]
    xv = tl.load(X + xo, mask=tmask[:, None], other=0.0)
    return dt, slope, decay, a, xo, xv


@triton.jit
def short_scan_fwd(X, DT, A, Bm, Cm, D, DTB, Y, length,
                   H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, NS: tl.constexpr,
                   BL: tl.constexpr, SOFTPLUS: tl.constexpr):
    seq, g, t, tmask, bc, Bv, Cv, cb, causal = _group_tiles(Bm, Cm, length, G, NS, BL)
    for i in range(H // G):
        h = g * (H // G) + i
        dt, _, decay, _, xo, xv = _head_tiles(X, DT, A, DTB, seq, t, tmask, causal, h,
                                              length, H, P, SOFTPLUS)
        m = (cb * decay * dt[None, :]).to(xv.dtype)
        y = tl.dot(m, xv) + tl.load(D + h).to(tl.float32) * xv.to(tl.float32)
        tl.store(Y + xo, y.to(Y.dtype.element_ty), mask=tmask[:, None])


@triton.jit
def short_scan_bwd(X, DT, A, Bm, Cm, D, DTB, DY, DX, DDT, DB, DC, Part, length,
                   H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, NS: tl.constexpr,
                   BL: tl.constexpr, SOFTPLUS: tl.constexpr):
    # Part (n, 3, h) float32: per-sequence sums of dA, dD and d dt_bias
    seq, g, t, tmask, bc, Bv, Cv, cb, causal = _group_tiles(Bm, Cm, length, G, NS, BL)
    dcb = tl.zeros((BL, BL), dtype=tl.float32)
    for i in range(H // G):
        h = g * (H // G) + i
        dt, slope, decay, a, xo, xv = _head_tiles(X, DT, A, DTB, seq, t, tmask, causal, h,
                                                  length, H, P, SOFTPLUS)
        dyv = tl.load(DY + xo, mask=tmask[:, None], other=0.0).to(xv.dtype)
        xf = xv.to(tl.float32)
        m = cb * decay  # (t, s)
        # y = (m dt_s) x: the gradient reaching dt_s x_s is m^T dy
        dxdt = tl.dot(tl.trans(m).to(xv.dtype), dyv)  # (s, p)
        d_h = tl.load(D + h).to(tl.float32)
        dx = dxdt * dt[:, None] + d_h * dyv.to(tl.float32)
        tl.store(DX + xo, dx.to(DX.dtype.element_ty), mask=tmask[:, None])
        ddt = tl.sum(dxdt * xf, axis=1)
        # d m_ts = dy_t . (dt_s x_s)
        dm = tl.dot(dyv, tl.trans((xf * dt[:, None]).to(xv.dtype)))  # (t, s)
        dcb += dm * decay
        ds = dm * m
        # m_ts holds exp(A dt_k) for s < k <= t, so the gradient of the increment A dt_k
        # is the sum of ds_ts over t >= k > s. Summed with no subtraction at all: row
        # sums minus column sums of ds cancel badly in float32, and cumsum(ds) - ds is
        # not exact either on a GPU, where the compiler fuses ds = dm * m into the
        # subtraction (an FMA leaves the product's rounding error: ~1e-6 where the
        # truth is 0, e.g. at length 1). With R = cumsum(ds) over s, the sum is
        # q[k - 1] for q[j] = sum over t > j of R_tj, shifted by one by a masked sum.
        upto = tl.cumsum(ds, axis=1)  # (t, j): sum over s <= j of ds_ts
        q = tl.sum(tl.where(t[:, None] > t[None, :], upto, 0.0), axis=0)  # (j,)
        da = tl.sum(tl.where(t[:, None] + 1 == t[None, :], q[:, None], 0.0), axis=0)
        ddt += da * a
        ddt_raw = tl.where(tmask, ddt * slope, 0.0)
        tl.store(DDT + (seq * length + t) * H + h, ddt_raw.to(DDT.dtype.element_ty),
                 mask=tmask)
        base = Part + seq * 3 * H + h
        tl.store(base, tl.sum(da * dt, axis=0))
        tl.store(base + H, tl.sum(tl.sum(dyv.to(tl.float32) * xf, axis=1), axis=0))
        tl.store(base + 2 * H, tl.sum(ddt_raw, axis=0))
    dc = tl.dot(dcb, Bv.to(tl.float32))  # (t, ns)
    db = tl.dot(tl.trans(dcb), Cv.to(tl.float32))  # (s, ns)
    tl.store(DC + bc, dc.to(DC.dtype.element_ty), mask=tmask[:, None])
    tl.store(DB + bc, db.to(DB.dtype.element_ty), mask=tmask[:, None])
