"""Triton kernels of `long_scan` (imports triton: load it lazily).

The SSD scan of long sequences (the time axis) in chunks of L steps, carrying the state
from chunk to chunk in registers. Per head h, with a = cumsum(A dt) inside a chunk
(a_L its last value), the state S (NS x P: the transpose of the usual P x NS, which
is the layout the products need) entering a chunk, and e_t = exp(a_t):

    y_t   = sum_{s <= t in chunk} (C_t . B_s) exp(a_t - a_s) dt_s x_s
            + e_t C_t S + D x_t
    S_out = exp(a_L) S + sum_s w_s B_s x_s^T,      w_s = exp(a_L - a_s) dt_s

Every exponent is <= 0 (A < 0, dt >= 0), so no factor overflows.

Forward (`long_scan_fwd`): one program per (sequence, head) runs its chunks in order.

Backward (`long_scan_bwd`): one program per (sequence, group, head split) loops over its
heads; per head it first runs the chunks forward to store the chunk-start states in a
float32 scratch it owns (`States`), then runs them backward carrying dS, the gradient of
the state leaving the chunk:

    dS_in = exp(a_L) dS_out + sum_t e_t C_t dy_t^T

and per chunk the gradients of the intra-chunk quadratic form (as `short_scan_bwd`),
of the state term e_t C_t S (dC_t += e_t S dy_t, d a_t += e_t dy_t . (C_t S)) and of the
state update (dx_s += w_s dS^T B_s, dB_s += w_s dS x_s, dw_s = x_s . dS^T B_s, and the
decays exp(a_L - a_s) and exp(a_L)). The gradient reaching each increment A dt_k of a
is collected as masked sums of non-negative index ranges, never as a difference of
running sums (see `short_scan_bwd`). dB and dC are summed over the program's heads in
a float32 scratch it owns (`DBs`, `DCs`, (n, l, splits, g, ns)); per-head sums (dA, dD,
d dt_bias) are written per sequence (`Part`): the caller adds both up (deterministic,
no atomics).

Layouts (contiguous): x, y, dy (n, l, h, p); dt (n, l, h); B, C (n, l, g, ns);
A, D, dt_bias (h,). L is the chunk length, NC = ceil(l / L) the chunk count (constexpr:
loops with constant bounds). Offsets that grow with n or l are 64-bit (`seq`).
"""

import triton
import triton.language as tl

from .short_scan_triton import _step_sizes  # dt after bias and softplus, its slope

__all__ = ["long_scan_bwd", "long_scan_fwd"]


@triton.jit
def _chunk(X, DT, A, DTB, Bm, Cm, seq, g, h, c, length, H: tl.constexpr, G: tl.constexpr,
           P: tl.constexpr, NS: tl.constexpr, L: tl.constexpr, SOFTPLUS: tl.constexpr):
    # chunk c of head h: its steps t, their mask, dt (0 on padding) and d dt / d raw,
    # a = cumsum(A dt), a_L, x (L, P), B and C (L, NS) with their offsets
    r = tl.arange(0, L)
    t = c * L + r
    tmask = t < length
    dt, slope = _step_sizes(DT, DTB, seq, t, tmask, h, length, H, SOFTPLUS)
    a_h = tl.load(A + h).to(tl.float32)
    acum = tl.cumsum(a_h * dt, axis=0)
    # a_L as the cumsum's own last element (not a separate sum: same rounding)
    a_last = tl.sum(tl.where(r == L - 1, acum, 0.0), axis=0)
    xo = (seq * length + t[:, None]) * (H * P) + h * P + tl.arange(0, P)[None, :]
    xv = tl.load(X + xo, mask=tmask[:, None], other=0.0)
    bc = (seq * length + t[:, None]) * (G * NS) + g * NS + tl.arange(0, NS)[None, :]
    Bv = tl.load(Bm + bc, mask=tmask[:, None], other=0.0)
    Cv = tl.load(Cm + bc, mask=tmask[:, None], other=0.0)
    return r, t, tmask, dt, slope, a_h, acum, a_last, xo, xv, bc, Bv, Cv


@triton.jit
def _state_update(S, xv, Bv, dt, acum, a_last):
    # S_out = exp(a_L) S + B^T (w x), w_s = exp(a_L - a_s) dt_s; S (NS, P) float32
    w = tl.exp(a_last - acum) * dt
    xw = (xv.to(tl.float32) * w[:, None]).to(xv.dtype)
    return tl.exp(a_last) * S + tl.dot(tl.trans(Bv), xw), w


@triton.jit
def long_scan_fwd(X, DT, A, Bm, Cm, D, DTB, Y, length,
                  H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, NS: tl.constexpr,
                  L: tl.constexpr, NC: tl.constexpr, SOFTPLUS: tl.constexpr):
    seq = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    g = h // (H // G)
    d_h = tl.load(D + h).to(tl.float32)
    S = tl.zeros((NS, P), dtype=tl.float32)
    for c in range(NC):
        r, t, tmask, dt, _, _, acum, a_last, xo, xv, bc, Bv, Cv = _chunk(
            X, DT, A, DTB, Bm, Cm, seq, g, h, c, length, H, G, P, NS, L, SOFTPLUS)
        causal = r[:, None] >= r[None, :]
        decay = tl.exp(tl.where(causal, acum[:, None] - acum[None, :], float("-inf")))
        cb = tl.dot(Cv, tl.trans(Bv))
        m = (cb * decay * dt[None, :]).to(xv.dtype)
        y = tl.dot(m, xv) + d_h * xv.to(tl.float32)
        # the state entering the chunk, decayed to each step: e_t C_t S
        y += tl.exp(acum)[:, None] * tl.dot(Cv, S.to(xv.dtype))
        tl.store(Y + xo, y.to(Y.dtype.element_ty), mask=tmask[:, None])
        S, _ = _state_update(S, xv, Bv, dt, acum, a_last)


@triton.jit
def long_scan_bwd(X, DT, A, Bm, Cm, D, DTB, DY, DX, DDT, DBs, DCs, Part, States, length,
                  H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, NS: tl.constexpr,
                  L: tl.constexpr, NC: tl.constexpr, KS: tl.constexpr,
                  SOFTPLUS: tl.constexpr):
    # grid (n, G * KS): program (seq, g * KS + k) takes the k-th of KS equal runs of the
    # heads of group g.
    # DBs, DCs (n, l, KS, G, NS) float32, zeroed: dB, dC summed over this program's heads.
    # Part (n, 3, H) float32: per-sequence sums of dA, dD and d dt_bias.
    # States (n, G * KS, NC, NS, P) float32: this program's chunk-start states.
    seq = tl.program_id(0).to(tl.int64)
    gk = tl.program_id(1)
    g = gk // KS
    k = gk % KS
    sp = tl.arange(0, NS)[:, None] * P + tl.arange(0, P)[None, :]
    base = States + (seq * (G * KS) + gk) * (NC * NS * P)
    for i in range(H // G // KS):  # this program's heads
        h = g * (H // G) + k * (H // G // KS) + i
        # 1. the chunk-start states, in order
        tl.debug_barrier()  # the previous head's reads of States are done
        S = tl.zeros((NS, P), dtype=tl.float32)
        for c in range(NC):
            # (seq * 0 + c: the chunk's offset in 64 bits, as every offset here)
            tl.store(base + (seq * 0 + c) * (NS * P) + sp, S)
            _, _, _, dt, _, _, acum, a_last, _, xv, _, Bv, _ = _chunk(
                X, DT, A, DTB, Bm, Cm, seq, g, h, c, length, H, G, P, NS, L, SOFTPLUS)
            S, _ = _state_update(S, xv, Bv, dt, acum, a_last)
        tl.debug_barrier()  # the states are visible to every thread of the program
        # 2. the chunks backward, carrying dS (the gradient of the state leaving a chunk)
        d_h = tl.load(D + h).to(tl.float32)
        dS = tl.zeros((NS, P), dtype=tl.float32)
        sum_da = 0.0
        sum_dd = 0.0
        sum_dtb = 0.0
        for j in range(NC):
            c = NC - 1 - j
            r, t, tmask, dt, slope, a_h, acum, a_last, xo, xv, bc, Bv, Cv = _chunk(
                X, DT, A, DTB, Bm, Cm, seq, g, h, c, length, H, G, P, NS, L, SOFTPLUS)
            S = tl.load(base + (seq * 0 + c) * (NS * P) + sp)
            dyv = tl.load(DY + xo, mask=tmask[:, None], other=0.0).to(xv.dtype)
            xf = xv.to(tl.float32)
            dyf = dyv.to(tl.float32)
            causal = r[:, None] >= r[None, :]
            decay = tl.exp(tl.where(causal, acum[:, None] - acum[None, :], float("-inf")))
            m = tl.dot(Cv, tl.trans(Bv)) * decay  # (t, s)
            # intra-chunk: y = (m dt_s) x; the gradient reaching dt_s x_s is m^T dy
            dxdt = tl.dot(tl.trans(m).to(xv.dtype), dyv)  # (s, p)
            dm = tl.dot(dyv, tl.trans((xf * dt[:, None]).to(xv.dtype)))  # (t, s)
            dcb = dm * decay
            ds = dm * m
            # the increment A dt_k sits in m_ts for s < k <= t: the sum of ds_ts over
            # those, with no subtraction (short_scan_bwd's comment): with R = cumsum(ds)
            # over s, q[j] = sum over t > j of R_tj, and the sum is q[k - 1]
            upto = tl.cumsum(ds, axis=1)
            q = tl.sum(tl.where(r[:, None] > r[None, :], upto, 0.0), axis=0)
            dinc = tl.sum(tl.where(r[:, None] + 1 == r[None, :], q[:, None], 0.0), axis=0)
            # the entering state's term e_t C_t S: a_t holds the increments k <= t
            e = tl.exp(acum)
            dye = dyf * e[:, None]  # (t, p)
            yin = tl.dot(Cv, S.to(xv.dtype))  # (t, p): C_t S
            rt = tl.sum(dye * yin, axis=1)  # d a_t
            dinc += tl.sum(tl.where(r[:, None] >= r[None, :], rt[:, None], 0.0), axis=0)
            dye_lo = dye.to(xv.dtype)
            dC = tl.dot(dcb, Bv.to(tl.float32)) + tl.dot(dye_lo, tl.trans(S.to(xv.dtype)))
            # the state update: w_s B_s x_s^T with w_s = exp(a_L - a_s) dt_s, where
            # a_L - a_s holds the increments k > s; and exp(a_L) S holds all of them
            w = tl.exp(a_last - acum) * dt
            dS_lo = dS.to(xv.dtype)
            gs = tl.dot(Bv, dS_lo)  # (s, p): dS^T B_s
            dw = tl.sum(gs * xf, axis=1)
            dinc += tl.sum(tl.where(r[:, None] < r[None, :], (dw * w)[:, None], 0.0),
                           axis=0)
            dinc += tl.exp(a_last) * tl.sum(tl.sum(dS * S, axis=1), axis=0)
            xw = (xf * w[:, None]).to(xv.dtype)
            dB = tl.dot(tl.trans(dcb), Cv.to(tl.float32)) + tl.dot(xw, tl.trans(dS_lo))
            dx = dxdt * dt[:, None] + d_h * dyf + gs * w[:, None]
            tl.store(DX + xo, dx.to(DX.dtype.element_ty), mask=tmask[:, None])
            ddt = (tl.sum(dxdt * xf, axis=1) + tl.exp(a_last - acum) * dw) + dinc * a_h
            ddt_raw = tl.where(tmask, ddt * slope, 0.0)
            tl.store(DDT + (seq * length + t) * H + h, ddt_raw.to(DDT.dtype.element_ty),
                     mask=tmask)
            sum_da += tl.sum(dinc * dt, axis=0)
            sum_dd += tl.sum(tl.sum(dyf * xf, axis=1), axis=0)
            sum_dtb += tl.sum(ddt_raw, axis=0)
            # dB, dC of this group and split, summed over its heads
            so = ((seq * length + t[:, None]) * KS + k) * (G * NS) + g * NS \
                + tl.arange(0, NS)[None, :]
            tl.store(DBs + so, tl.load(DBs + so, mask=tmask[:, None], other=0.0) + dB,
                     mask=tmask[:, None])
            tl.store(DCs + so, tl.load(DCs + so, mask=tmask[:, None], other=0.0) + dC,
                     mask=tmask[:, None])
            # the gradient of the state entering this chunk (leaving the previous one)
            dS = tl.exp(a_last) * dS + tl.dot(tl.trans(Cv), dye_lo)
        part = Part + seq * 3 * H + h
        tl.store(part, sum_da)
        tl.store(part + H, sum_dd)
        tl.store(part + 2 * H, sum_dtb)
