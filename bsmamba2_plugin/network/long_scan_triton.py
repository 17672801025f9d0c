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

Backward, three kernels (the chunk-start states are what ties the chunks together; with
them every chunk's gradients are independent):

1. `long_scan_bwd_states`, one program per (sequence, head): the chunks in order, storing
   the state entering each, S_c (S_0 = 0), in the scratch `States`;
2. `long_scan_bwd_dstates`, one program per (sequence, head), after the first: the
   chunks backward, storing dS_c, the gradient of the state leaving chunk c (0 for the
   last), in `DStates`, and exp(a_L) <dS_c, S_c>, the gradient of chunk c's total decay
   a_L through the state it carries over, in `Decay`:

       dS_in = exp(a_L) dS_out + sum_t e_t C_t dy_t^T

3. `long_scan_bwd_chunks`, one program per (sequence, chunk, group), looping over the
   group's heads: per head the gradients of the intra-chunk quadratic form (as
   `short_scan_bwd`), of the state term e_t C_t S (dC_t += e_t S dy_t, d a_t += e_t
   dy_t . (C_t S)) and of the state update (dx_s += w_s dS^T B_s, dB_s += w_s dS x_s,
   dw_s = x_s . dS^T B_s, and the decays exp(a_L - a_s) and exp(a_L)). The gradient
   reaching each increment A dt_k of a is collected as masked sums of non-negative index
   ranges, never as a difference of running sums (see `short_scan_bwd`). dB and dC are
   summed over the group's heads in registers (the intra-chunk part as d(C B^T), then
   two products for the group) and written once; per-head sums (dA, dD, d dt_bias) are
   written per (sequence, chunk) (`Part`) for the caller to add up (deterministic, no
   atomics).

The scratches hold the states in the inputs' dtype, the precision the products read them
in (<dS, S> is formed from the float32 dS and the stored S).

Layouts (contiguous): x, y, dy (n, l, h, p); dt (n, l, h); B, C (n, l, g, ns);
A, D, dt_bias (h,). L is the chunk length, NC = ceil(l / L) the chunk count (constexpr:
loops with constant bounds). Offsets that grow with n or l are 64-bit (`seq`).
"""

import triton
import triton.language as tl

from .short_scan_triton import _step_sizes  # dt after bias and softplus, its slope

__all__ = ["long_scan_bwd_chunks", "long_scan_bwd_dstates", "long_scan_bwd_states",
           "long_scan_fwd"]


@triton.jit
def _steps(DT, A, DTB, seq, h, c, length, H: tl.constexpr, L: tl.constexpr,
           SOFTPLUS: tl.constexpr):
    # chunk c of head h: its steps t, their mask, dt (0 on padding) and d dt / d raw,
    # A_h, a = cumsum(A dt) and a_L
    r = tl.arange(0, L)
    t = c * L + r
    tmask = t < length
    dt, slope = _step_sizes(DT, DTB, seq, t, tmask, h, length, H, SOFTPLUS)
    a_h = tl.load(A + h).to(tl.float32)
    acum = tl.cumsum(a_h * dt, axis=0)
    # a_L as the cumsum's own last element (not a separate sum: same rounding)
    a_last = tl.sum(tl.where(r == L - 1, acum, 0.0), axis=0)
    return r, t, tmask, dt, slope, a_h, acum, a_last


@triton.jit
def _rows(Ptr, seq, t, tmask, j, length, J: tl.constexpr, W: tl.constexpr):
    # rows t of a (n, l, J, W) tensor at j: their offsets and values (L, W), 0 on padding
    o = (seq * length + t[:, None]) * (J * W) + j * W + tl.arange(0, W)[None, :]
    return o, tl.load(Ptr + o, mask=tmask[:, None], other=0.0)


@triton.jit
def _sequence_head(H: tl.constexpr, G: tl.constexpr):
    # a grid (n, H) program's sequence (64-bit: offsets grow with it), head and group
    seq = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    return seq, h, h // (H // G)


@triton.jit
def _chunk(X, DT, A, DTB, Bm, Cm, seq, g, h, c, length, H: tl.constexpr, G: tl.constexpr,
           P: tl.constexpr, NS: tl.constexpr, L: tl.constexpr, SOFTPLUS: tl.constexpr):
    # chunk c of head h: `_steps`, x (L, P), B and C (L, NS) with their offsets
    r, t, tmask, dt, slope, a_h, acum, a_last = _steps(DT, A, DTB, seq, h, c, length, H, L,
                                                       SOFTPLUS)
    xo, xv = _rows(X, seq, t, tmask, h, length, H, P)
    bc, Bv = _rows(Bm, seq, t, tmask, g, length, G, NS)
    _, Cv = _rows(Cm, seq, t, tmask, g, length, G, NS)
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
    seq, h, g = _sequence_head(H, G)
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
def _state_offsets(States, seq, h, c, H: tl.constexpr, NS: tl.constexpr, P: tl.constexpr,
                   NC: tl.constexpr):
    # the (NS, P) state of chunk c of head h in a (n, H, NC, NS, P) scratch
    sp = tl.arange(0, NS)[:, None] * P + tl.arange(0, P)[None, :]
    return States + ((seq * H + h) * NC + c) * (NS * P) + sp


@triton.jit
def long_scan_bwd_states(X, DT, A, Bm, DTB, States, length,
                         H: tl.constexpr, G: tl.constexpr, P: tl.constexpr,
                         NS: tl.constexpr, L: tl.constexpr, NC: tl.constexpr,
                         SOFTPLUS: tl.constexpr):
    # grid (n, H). States (n, H, NC, NS, P): S_c, the state entering chunk c
    seq, h, g = _sequence_head(H, G)
    S = tl.zeros((NS, P), dtype=tl.float32)
    tl.store(_state_offsets(States, seq, h, 0, H, NS, P, NC), S.to(States.dtype.element_ty))
    for c in range(NC - 1):
        _, t, tmask, dt, _, _, acum, a_last = _steps(DT, A, DTB, seq, h, c, length, H, L,
                                                     SOFTPLUS)
        _, xv = _rows(X, seq, t, tmask, h, length, H, P)
        _, Bv = _rows(Bm, seq, t, tmask, g, length, G, NS)
        S, _ = _state_update(S, xv, Bv, dt, acum, a_last)
        tl.store(_state_offsets(States, seq, h, c + 1, H, NS, P, NC),
                 S.to(States.dtype.element_ty))


@triton.jit
def long_scan_bwd_dstates(DT, A, Cm, DTB, DY, States, DStates, Decay, length,
                          H: tl.constexpr, G: tl.constexpr, P: tl.constexpr,
                          NS: tl.constexpr, L: tl.constexpr, NC: tl.constexpr,
                          SOFTPLUS: tl.constexpr):
    # grid (n, H), after `long_scan_bwd_states`. DStates (n, H, NC, NS, P): dS_c, the
    # gradient of the state leaving chunk c (entering chunk c + 1; 0 for the last chunk).
    # Decay (n, H, NC) float32: exp(a_L) <dS_c, S_c> of chunk c, the gradient of its
    # total decay a_L through the state it carries over (States: S_c)
    seq, h, g = _sequence_head(H, G)
    dS = tl.zeros((NS, P), dtype=tl.float32)
    tl.store(_state_offsets(DStates, seq, h, NC - 1, H, NS, P, NC),
             dS.to(DStates.dtype.element_ty))
    tl.store(Decay + (seq * H + h) * NC + NC - 1, 0.0)
    _, t, tmask, _, _, _, acum, a_last = _steps(DT, A, DTB, seq, h, NC - 1, length, H, L,
                                                SOFTPLUS)
    for j in range(NC - 1):
        c = NC - 1 - j  # the chunk whose entering state's gradient this makes
        _, Cv = _rows(Cm, seq, t, tmask, g, length, G, NS)
        _, dyv = _rows(DY, seq, t, tmask, h, length, H, P)
        dye = (dyv.to(tl.float32) * tl.exp(acum)[:, None]).to(Cv.dtype)
        dS = tl.exp(a_last) * dS + tl.dot(tl.trans(Cv), dye)
        tl.store(_state_offsets(DStates, seq, h, c - 1, H, NS, P, NC),
                 dS.to(DStates.dtype.element_ty))
        # chunk c - 1 (its steps also serve the next iteration): its total decay's
        # gradient, with dS in float32 (S as stored)
        _, t, tmask, _, _, _, acum, a_last = _steps(DT, A, DTB, seq, h, c - 1, length, H, L,
                                                    SOFTPLUS)
        S = tl.load(_state_offsets(States, seq, h, c - 1, H, NS, P, NC)).to(tl.float32)
        tl.store(Decay + (seq * H + h) * NC + c - 1,
                 tl.exp(a_last) * tl.sum(tl.sum(dS * S, axis=1), axis=0))


@triton.jit
def long_scan_bwd_chunks(X, DT, A, Bm, Cm, D, DTB, DY, States, DStates, Decay, DX, DDT, DB,
                         DC, Part, length, H: tl.constexpr, G: tl.constexpr, P: tl.constexpr,
                         NS: tl.constexpr, L: tl.constexpr, NC: tl.constexpr,
                         SOFTPLUS: tl.constexpr):
    # grid (n * NC, G): program (seq * NC + c, g) takes chunk c of group g's heads.
    # States, DStates (n, H, NC, NS, P) and Decay (n, H, NC) from the two kernels above; Part (n, NC, 3, H)
    # float32: per (sequence, chunk) sums of dA, dD and d dt_bias.
    pid = tl.program_id(0).to(tl.int64)
    seq = pid // NC
    c = pid % NC
    g = tl.program_id(1)
    r = tl.arange(0, L)
    t = c * L + r
    tmask = t < length
    bc, Bv = _rows(Bm, seq, t, tmask, g, length, G, NS)
    Cv = _rows(Cm, seq, t, tmask, g, length, G, NS)[1]
    cb = tl.dot(Cv, tl.trans(Bv))  # (t, s), shared by the group's heads
    causal = r[:, None] >= r[None, :]
    dcb = tl.zeros((L, L), dtype=tl.float32)  # d(C B^T), summed over the heads
    dB = tl.zeros((L, NS), dtype=tl.float32)  # the state update's part of dB
    dC = tl.zeros((L, NS), dtype=tl.float32)  # the entering state's part of dC
    for i in range(H // G):
        h = g * (H // G) + i
        dt, slope, a_h, acum, a_last = _steps(DT, A, DTB, seq, h, c, length, H, L,
                                                       SOFTPLUS)[3:]
        xo, xv = _rows(X, seq, t, tmask, h, length, H, P)
        dyv = _rows(DY, seq, t, tmask, h, length, H, P)[1].to(xv.dtype)
        xf = xv.to(tl.float32)
        dyf = dyv.to(tl.float32)
        # (the three parts in the order that keeps the fewest tiles alive: dS's, then the
        # intra-chunk products, then S's)
        # the state update: w_s B_s x_s^T with w_s = exp(a_L - a_s) dt_s, where a_L - a_s
        # holds the increments k > s; and exp(a_L) S holds all of them
        w = tl.exp(a_last - acum) * dt
        dS = tl.load(_state_offsets(DStates, seq, h, c, H, NS, P, NC)).to(xv.dtype)
        gs = tl.dot(Bv, dS)  # (s, p): dS^T B_s
        dw = tl.sum(gs * xf, axis=1)
        dB += tl.dot((xf * w[:, None]).to(xv.dtype), tl.trans(dS))
        dinc = tl.sum(tl.where(r[:, None] < r[None, :], (dw * w)[:, None], 0.0), axis=0)
        dinc += tl.load(Decay + (seq * H + h) * NC + c)  # exp(a_L) <dS, S>
        # intra-chunk: y = (m dt_s) x; the gradient reaching dt_s x_s is m^T dy
        decay = tl.exp(tl.where(causal, acum[:, None] - acum[None, :], float("-inf")))
        m = cb * decay  # (t, s)
        dxdt = tl.dot(tl.trans(m).to(xv.dtype), dyv)  # (s, p)
        dx = dxdt * dt[:, None] + tl.load(D + h).to(tl.float32) * dyf + gs * w[:, None]
        tl.store(DX + xo, dx.to(DX.dtype.element_ty), mask=tmask[:, None])
        ddt = tl.sum(dxdt * xf, axis=1) + tl.exp(a_last - acum) * dw
        dm = tl.dot(dyv, tl.trans((xf * dt[:, None]).to(xv.dtype)))  # (t, s)
        dcb += dm * decay
        ds = dm * m
        # the increment A dt_k sits in m_ts for s < k <= t: the sum of ds_ts over those,
        # with no subtraction (short_scan_bwd's comment): with R = cumsum(ds) over s,
        # q[j] = sum over t > j of R_tj, and the sum is q[k - 1]
        upto = tl.cumsum(ds, axis=1)
        q = tl.sum(tl.where(r[:, None] > r[None, :], upto, 0.0), axis=0)
        dinc += tl.sum(tl.where(r[:, None] + 1 == r[None, :], q[:, None], 0.0), axis=0)
        # the entering state's term e_t C_t S: a_t holds the increments k <= t
        dye = dyf * tl.exp(acum)[:, None]  # (t, p)
        S = tl.load(_state_offsets(States, seq, h, c, H, NS, P, NC)).to(xv.dtype)
        yin = tl.dot(Cv, S)  # (t, p): C_t S
        rt = tl.sum(dye * yin, axis=1)  # d a_t
        dinc += tl.sum(tl.where(r[:, None] >= r[None, :], rt[:, None], 0.0), axis=0)
        dC += tl.dot(dye.to(xv.dtype), tl.trans(S))
        ddt_raw = tl.where(tmask, (ddt + dinc * a_h) * slope, 0.0)
        tl.store(DDT + (seq * length + t) * H + h, ddt_raw.to(DDT.dtype.element_ty),
                 mask=tmask)
        part = Part + pid * 3 * H + h
        tl.store(part, tl.sum(dinc * dt, axis=0))
        tl.store(part + H, tl.sum(tl.sum(dyf * xf, axis=1), axis=0))
        tl.store(part + 2 * H, tl.sum(ddt_raw, axis=0))
    # the intra-chunk parts: dC_t += sum_s d(CB)_ts B_s, dB_s += sum_t d(CB)_ts C_t
    dC += tl.dot(dcb, Bv.to(tl.float32))
    dB += tl.dot(tl.trans(dcb), Cv.to(tl.float32))
    tl.store(DB + bc, dB.to(DB.dtype.element_ty), mask=tmask[:, None])
    tl.store(DC + bc, dC.to(DC.dtype.element_ty), mask=tmask[:, None])
