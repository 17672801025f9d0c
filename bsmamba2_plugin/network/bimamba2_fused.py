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

A batch of sequences too large for one call of mamba_ssm's kernels (their offsets are 32-bit
integers) runs in several calls of whole sequences, which changes no number; one sequence
too long for a call is refused before anything runs (`kernel_limits.py`).

The SSD chunk length adapts to the sequence: the band axis (62 bands) runs in one chunk of
64 instead of mamba_ssm's 256 (4x less padding), the time axis in chunks of 128. By
default the band axis runs through `short_scan` instead (the one-chunk quadratic form, no
chunk states: `short_scan.py`); the config key `short_scan: false` keeps mamba_ssm's scan
there too. With `long_scan: true` (the default) the longer sequences (the time axis) run
their forward pass through `long_scan` (the chunked scan with its state in registers:
`long_scan.py`) and their backward pass through mamba_ssm's.

With `gradient_checkpointing: selective` the block runs as one autograd function
(`_SelectiveRecompute`) that keeps only its input and the scan output for the backward
pass; there it recomputes steps 1, 2 and 4 and calls the scan's backward directly, so the
scan's forward runs once (26.8 instead of 86.5 GiB at the paper's batch on an H200, +10 %
step time; benchmarks/GPU_NOTES.md, changes 4 and 5). With `packed_gate: true` (the
default, with our gated norm) z is never copied out of P there or in inference: the norm
reads it from P and, in the recompute's backward, writes its gradient straight into P's
gradient, whose other columns `split_conv`'s backward fills (`_packed_backward`).

Step 2's op is in `split_conv.py` (`split_conv_reference` is its pure-PyTorch twin, same
arguments and outputs, used by the tests); the whole fused block is tested against the per-direction
path and the reference backend on the GPU (tests/test_kernel_cuda.py).

Axes: n sequences, l length, e packed projection width per direction, c conv channels.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import torch
from torch.nn import functional as F

from .kernel_limits import check_length, sequences_per_call, sm_count, split_sizes
from .split_conv import (_Layout, _on_device, _split_conv_grads, _split_conv_outputs,
                         split_conv, split_conv_reference)

__all__ = ["bimamba2_fused", "block_sequences_per_call", "kernel_chunk_size", "own_scan",
           "split_conv", "split_conv_reference"]


def kernel_chunk_size(length: int, requested: int | None = None) -> int:
    """SSD chunk length for mamba_ssm's kernel: `requested` if given, else the smallest
    power of two >= length up to 64 (one chunk for the band axis), 128 above that."""
    if requested:
        return requested
    if length <= 64:
        return max(16, 1 << max(0, length - 1).bit_length())
    return 128


# ------------------------------------------------------------------ the block
# the block's weights as the fused path uses them (each derived from the module's
# parameters with autograd, so gradients reach the parameters through these few ops)
_WEIGHTS = ("w_in", "conv_w", "conv_b", "A", "D", "dt_bias", "norm_w", "w_out", "lin_w",
            "lin_b")
# the weights each recomputed part of `_SelectiveRecompute` differentiates
_HEAD_WEIGHTS = ("w_in", "conv_w", "conv_b")
_TAIL_WEIGHTS = ("norm_w", "w_out", "lin_w", "lin_b")


class _Dims(NamedTuple):
    d_inner: int
    d_state: int
    nheads: int
    headdim: int
    chunk: int
    eps_in: float
    eps_norm: float


def _weights(block: torch.nn.Module) -> dict[str, torch.Tensor]:
    (norm_f, norm_b), (mf, mb), linear = block.view()
    A_log = torch.cat([mf.A_log, mb.A_log])
    return {
        # both pre-norm weights folded into one stacked projection
        "w_in": torch.cat([mf.in_proj.weight * norm_f.weight,
                           mb.in_proj.weight * norm_b.weight]),
        "conv_w": torch.stack([mf.conv1d.weight[:, 0], mb.conv1d.weight[:, 0]]),
        "conv_b": torch.stack([mf.conv1d.bias, mb.conv1d.bias]),
        "A": -torch.exp(A_log.to(torch.promote_types(A_log.dtype, torch.float32))),
        "D": torch.cat([mf.D, mb.D]),
        "dt_bias": torch.cat([mf.dt_bias, mb.dt_bias]),
        "norm_w": torch.cat([mf.norm.weight, mb.norm.weight]),
        "w_out": torch.stack([mf.out_proj.weight, mb.out_proj.weight]).transpose(1, 2),
        # a kernel-1 ConvTranspose1d is a matmul with its (2 dim, dim) weight
        "lin_w": linear.weight[:, :, 0].t(),
        "lin_b": linear.bias,
    }


def _projection(x: torch.Tensor, w: dict, dims: _Dims) -> torch.Tensor:
    """Step 1: x (n, l, d) -> P (n, l, 2 e), both directions' pre-norm and in_proj."""
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    x_hat = wide * torch.rsqrt(wide.square().mean(-1, keepdim=True) + dims.eps_in)
    return F.linear(x_hat.to(x.dtype), w["w_in"])  # bf16 under autocast


def _head(x: torch.Tensor, w: dict, dims: _Dims, split) -> tuple[torch.Tensor, ...]:
    """Steps 1-2: x (n, l, d) -> the scan's x, B, C, the gate z and dt (both directions)."""
    return split(_projection(x, w, dims), w["conv_w"], w["conv_b"], d_inner=dims.d_inner,
                 d_state=dims.d_state, nheads=dims.nheads)


def _scan_inputs(xh, dt, B, C, w, dims: _Dims) -> tuple[tuple, dict]:
    """Arguments of mamba_ssm's chunked scan for both directions (2 groups)."""
    n, length = xh.shape[:2]
    args = (xh.view(n, length, 2 * dims.nheads, dims.headdim), dt, w["A"],
            B.view(n, length, 2, dims.d_state), C.view(n, length, 2, dims.d_state),
            dims.chunk)
    return args, {"D": w["D"], "dt_bias": w["dt_bias"], "dt_softplus": True}


def _tail(y: torch.Tensor, z: torch.Tensor, x: torch.Tensor, w: dict, dims: _Dims,
          ops) -> torch.Tensor:
    """Steps 3 (gated norm) and 4: the scan output y -> the block output."""
    n, length = x.shape[:2]
    g = ops.rmsnorm_fn(y.reshape(n * length, 2 * dims.d_inner), w["norm_w"], None,
                       z=z.reshape(n * length, 2 * dims.d_inner), eps=dims.eps_norm,
                       group_size=dims.d_inner, norm_before_gate=False)
    return _out(g, x, w, dims)


def _packed_parts(x: torch.Tensor, w: dict, dims: _Dims) -> tuple[torch.Tensor, ...]:
    """Steps 1-2 without autograd and without the copy of z: the projection P
    (contiguous) and the scan's x, B, C and dt (`split_conv`'s kernels)."""
    P = _projection(x, w, dims).contiguous()
    return (P, *_split_without_z(P, *_conv_weights(w), dims))


def _conv_weights(w: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv's weight and bias as `split_conv`'s kernels take them (float32)."""
    return w["conv_w"].float().contiguous(), w["conv_b"].float().contiguous()


def _split_without_z(P, conv_w, conv_b, dims: _Dims) -> tuple[torch.Tensor, ...]:
    """Step 2 on a contiguous P without autograd and without the copy of z: x, B, C, dt."""
    with _on_device(P):  # Triton launches on the current device: make it P's
        xh, B, C, _, dt = _split_conv_outputs(P, conv_w, conv_b, dims.d_inner, dims.d_state,
                                              dims.nheads, copy_z=False)
    return xh, B, C, dt


def _packed_norm(y: torch.Tensor, P: torch.Tensor, w: dict, dims: _Dims) -> torch.Tensor:
    """Step 3 with our gated norm reading z straight from P (no autograd): (n l, 2 d_inner)."""
    from .gated_norm import gated_norm_forward_packed

    n, length = P.shape[:2]
    return gated_norm_forward_packed(y.reshape(n * length, 2 * dims.d_inner), P, w["norm_w"],
                                     dims.eps_norm, dims.d_inner,
                                     _Layout(dims.d_inner, dims.d_state, dims.nheads).width)


def _packed_inference(x: torch.Tensor, w: dict, dims: _Dims, ops) -> torch.Tensor:
    """The whole block without autograd, with our gated norm reading the gate z straight
    from the projection P (`gated_norm_forward_packed`) instead of from a copy: the same
    numbers as `_head` + scan + `_tail` with `split_conv` and our norm, one copy of
    (n, l, 2 d_inner) less (inference)."""
    P, xh, B, C, dt = _packed_parts(x, w, dims)
    args, kwargs = _scan_inputs(xh, dt, B, C, w, dims)
    y = ops.mamba_chunk_scan_combined(*args, **kwargs)
    return _out(_packed_norm(y, P, w, dims), x, w, dims)


def _out(g: torch.Tensor, x: torch.Tensor, w: dict, dims: _Dims) -> torch.Tensor:
    """Step 4: the gated norm's output g (n l, 2 d_inner) -> the block output."""
    n, length, dim = x.shape
    # both out_proj products as one batched product over strided halves of g (slicing g
    # would make autograd zero-fill and sum two full-size gradients)
    h = torch.bmm(g.view(n * length, 2, dims.d_inner).transpose(0, 1),
                  w["w_out"].to(g.dtype))
    # the residual stream stays in x's dtype (mixed-dtype adds take a slow generic kernel)
    h_f, h_b = h.to(x.dtype).unbind(0)
    both = torch.cat([x + h_f.view(n, length, dim), x + h_b.view(n, length, dim).flip(1)], -1)
    fused = F.linear(both, w["lin_w"], w["lin_b"])
    return x + fused.to(x.dtype)


def _autograd_scan(scan):
    """Forward and backward halves of a differentiable scan function (the tests' pure
    PyTorch ops): the forward half is the scan itself, the backward half recomputes it
    under autograd."""

    def scan_bwd(dy, y, *args, **kwargs):
        del y
        with torch.enable_grad():
            leaves = [a.detach().requires_grad_(True) for a in args[:5]]
            D, dt_bias = (kwargs[k].detach().requires_grad_(True) for k in ("D", "dt_bias"))
            out = scan(*leaves, *args[5:], **{**kwargs, "D": D, "dt_bias": dt_bias})
            return torch.autograd.grad(out, [*leaves, D, dt_bias], dy)

    return scan, scan_bwd


class _SelectiveRecompute(torch.autograd.Function):
    """The whole block keeping only its input x and the scan output y for the backward
    pass: the backward recomputes the cheap parts (normalisation, in_proj, split_conv,
    gated norm, out_proj, fusion) and runs the scan's own backward on the saved y, so the
    expensive forward scan never runs twice. By arithmetic it keeps ~1.3 GB per block
    instead of ~7.4 GB at the paper's batch (5 x 8 s)."""

    @staticmethod
    def forward(ctx, x, dims, ops, split, packed, *weights):
        w = dict(zip(_WEIGHTS, weights))
        scan_fwd, _ = ops.scan_halves
        if packed:
            with _on_device(x):
                P, xh, B, C, dt = _packed_parts(x, w, dims)
                args, kwargs = _scan_inputs(xh, dt, B, C, w, dims)
                y = scan_fwd(*args, **kwargs)
                out = _out(_packed_norm(y, P, w, dims), x, w, dims)
        else:
            xh, B, C, z, dt = _head(x, w, dims, split)
            args, kwargs = _scan_inputs(xh, dt, B, C, w, dims)
            y = scan_fwd(*args, **kwargs)
            out = _tail(y, z, x, w, dims, ops)
        ctx.save_for_backward(x, y, *weights)
        ctx.dims, ctx.ops, ctx.split, ctx.packed = dims, ops, split, packed
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device),
                        torch.get_autocast_dtype(device))
        return out

    @staticmethod
    def backward(ctx, d_out):
        x, y, *weights = ctx.saved_tensors
        if ctx.packed:
            return (*_SelectiveRecompute._packed_backward(ctx, d_out, x, y, weights),)
        dims, ops, split = ctx.dims, ctx.ops, ctx.split
        device, enabled, dtype = ctx.autocast
        with _on_device(x), torch.enable_grad(), \
                torch.autocast(device, dtype=dtype, enabled=enabled):
            xd = x.detach().requires_grad_(True)
            w = {k: t.detach().requires_grad_(True) for k, t in zip(_WEIGHTS, weights)}
            head = _head(xd, w, dims, split)
            # the tail sees y and z as leaves: its gradients stop there
            yd, zd = y.detach().requires_grad_(True), head[3].detach().requires_grad_(True)
            out = _tail(yd, zd, xd, w, dims, ops)
        tail = torch.autograd.grad(out, [yd, zd, xd, *(w[k] for k in _TAIL_WEIGHTS)], d_out)
        g_y, g_z, g_x = tail[:3]
        grads = dict(zip(_TAIL_WEIGHTS, tail[3:]))
        xh, B, C, z, dt = head
        _, scan_bwd = ops.scan_halves
        args, kwargs = _scan_inputs(xh.detach(), dt.detach(), B.detach(), C.detach(),
                                    {k: t.detach() for k, t in w.items()}, dims)
        with _on_device(x):
            d_xh, d_dt, grads["A"], d_B, d_C, grads["D"], grads["dt_bias"] = scan_bwd(
                g_y.view_as(y), y, *args, **kwargs)
        h = torch.autograd.grad(
            [xh, B, C, z, dt], [xd, *(w[k] for k in _HEAD_WEIGHTS)],
            [d_xh.reshape(xh.shape), d_B.reshape(B.shape), d_C.reshape(C.shape), g_z, d_dt])
        grads.update(zip(_HEAD_WEIGHTS, h[1:]))
        return (g_x + h[0], None, None, None, None,
                *(grads[k] if need else None
                  for k, need in zip(_WEIGHTS, ctx.needs_input_grad[5:])))

    @staticmethod
    def _packed_backward(ctx, d_out, x, y, weights):
        """`backward` with the gate read from P and its gradient written into P's: our
        gated norm's backward puts dz straight into dP (`gated_norm_backward_packed`),
        split_conv's backward fills the rest of dP; neither z nor dz is copied. The same
        kernels as the other path, so the same numbers."""
        from .gated_norm import gated_norm_backward_packed

        dims = ctx.dims
        device, enabled, dtype = ctx.autocast
        lay = _Layout(dims.d_inner, dims.d_state, dims.nheads)
        with _on_device(x), torch.enable_grad(), \
                torch.autocast(device, dtype=dtype, enabled=enabled):
            xd = x.detach().requires_grad_(True)
            w = {k: t.detach().requires_grad_(True) for k, t in zip(_WEIGHTS, weights)}
            P = _projection(xd, w, dims)
        Pc = P.detach().contiguous()
        plain = {k: t.detach() for k, t in w.items()}
        conv_w, conv_b = _conv_weights(plain)
        with _on_device(x), torch.no_grad():
            xh, B, C, dt = _split_without_z(Pc, conv_w, conv_b, dims)
            g = _packed_norm(y, Pc, plain, dims)
        with _on_device(x), torch.enable_grad(), \
                torch.autocast(device, dtype=dtype, enabled=enabled):
            gd = g.requires_grad_(True)
            out = _out(gd, xd, w, dims)
        tail_weights = _TAIL_WEIGHTS[1:]  # norm_w's gradient comes from the norm's backward
        tail = torch.autograd.grad(out, [gd, xd, *(w[k] for k in tail_weights)], d_out)
        g_g, g_x = tail[:2]
        grads = dict(zip(tail_weights, tail[2:]))
        del g, gd, out, tail  # ~1 GB at the paper's batch, not needed past here
        dP = torch.empty_like(Pc)
        with _on_device(x):
            rows = g_g.shape[0]
            dy, grads["norm_w"] = gated_norm_backward_packed(
                g_g, y.reshape(rows, -1), Pc, plain["norm_w"], dims.eps_norm, dims.d_inner,
                lay.width, dP)
            _, scan_bwd = ctx.ops.scan_halves
            args, kwargs = _scan_inputs(xh, dt, B, C, plain, dims)
            d_xh, d_dt, grads["A"], d_B, d_C, grads["D"], grads["dt_bias"] = scan_bwd(
                dy.view_as(y), y, *args, **kwargs)
            _, d_conv_w, d_conv_b = _split_conv_grads(
                Pc, conv_w, conv_b, d_xh.reshape(xh.shape), d_B.reshape(B.shape),
                d_C.reshape(C.shape), None, d_dt, dims.d_inner, dims.d_state, dims.nheads,
                dP=dP)
        grads["conv_w"] = d_conv_w.to(plain["conv_w"].dtype)
        grads["conv_b"] = d_conv_b.to(plain["conv_b"].dtype)
        d_x, grads["w_in"] = torch.autograd.grad(P, [xd, w["w_in"]], dP)
        return (g_x + d_x, None, None, None, None,
                *(grads[k] if need else None
                  for k, need in zip(_WEIGHTS, ctx.needs_input_grad[5:])))


def bimamba2_fused(block: torch.nn.Module, x: torch.Tensor, *, ops: object = None,
                   split: object = split_conv, recompute: bool = False,
                   short_scan: bool = True, long_scan: bool = False,
                   long_scan_backward: str | None = "mamba_ssm", gated_norm: str = "bsmamba2",
                   packed_gate: bool = False) -> torch.Tensor:
    """`block` (a `mamba2.BiMamba2`) applied to x (n, l, d) with the fused kernel path.

    The n sequences run in as many calls as `kernel_limits.sequences_per_call` needs for
    every offset of mamba_ssm's kernels to stay within 32 bits (one call at the paper's
    sizes); the results are the same as one call's.

    Args:
        block: the BiMamba2 whose parameters are used.
        x: (n, l, d).
        ops: provides `mamba_chunk_scan_combined` and `rmsnorm_fn` with mamba_ssm's
            signatures (default: mamba_ssm's Triton kernels, with `short_scan` or
            `long_scan` for the sequences they take if asked: `own_scan`), and
            optionally `scan_halves` (the scan's forward and backward as two functions);
            tests pass pure-PyTorch ones.
        split: `split_conv` or `split_conv_reference`.
        recompute: while gradients are taken, keep only x and the scan output for the
            backward pass and recompute the rest there (`_SelectiveRecompute`).
        short_scan: with the default ops, run sequences of at most 64 steps through
            `short_scan` (an `ExecutionPlan`'s `short_scan`).
        long_scan: with the default ops, run sequences of more than 64 steps that
            `long_scan_fits` takes through `long_scan` (an `ExecutionPlan`'s `long_scan`).
        long_scan_backward: their backward pass, "mamba_ssm" or "bsmamba2" (ours; an
            `ExecutionPlan`'s `long_scan_backward`).
        gated_norm: with the default ops, whose kernels compute the gated norm:
            "bsmamba2" (`gated_norm.py`) or "mamba_ssm" (an `ExecutionPlan`'s `gated_norm`).
        packed_gate: with `split_conv` and our gated norm, read the gate z straight
            from the projection instead of copying it out, without autograd
            (`_packed_inference`) and under `recompute` (`_SelectiveRecompute`, whose
            backward also writes dz straight into the projection's gradient): the same
            numbers, one copy less in inference, three in training. Not under autograd
            without `recompute` (the plain path keeps z).

    Returns: (n, l, d), the same function as `block._forward(x)`.

    Raises:
        kernel_limits.KernelSizeError: one sequence is too long for one call.
    """
    (norm_f, _), (mf, _), _ = block.view()
    n, length, _ = x.shape
    if ops is None:
        from .ssd import load_mamba_triton

        ops = load_mamba_triton()
        own = own_scan(length, mf.headdim, mf.d_state, short_scan=short_scan,
                       long_scan=long_scan)
        if own == "short_scan":
            from .short_scan import short_scan_ops

            ops = short_scan_ops(ops)
        elif own == "long_scan":
            from .long_scan import long_scan_ops

            if long_scan_backward == "bsmamba2":
                ops = long_scan_ops(ops)  # forward and backward ours
            else:
                # our forward, mamba_ssm's backward half, recomputed under autograd where
                # mamba_ssm has no halves
                if not hasattr(ops, "scan_halves"):
                    ops = types.SimpleNamespace(**vars(ops), scan_halves=_autograd_scan(
                        ops.mamba_chunk_scan_combined))
                ops = long_scan_ops(ops, backward="mamba_ssm")
        if gated_norm == "bsmamba2":
            from .gated_norm import gated_norm_ops

            ops = gated_norm_ops(ops)
    dims = _Dims(mf.d_inner, mf.d_state, mf.nheads, mf.headdim,
                 kernel_chunk_size(length, mf.chunk_size), norm_f.eps, mf.norm.eps)
    per_call = block_sequences_per_call(block, length, device=x.device,
                                        short_scan=_is_own_scan(ops))
    check_length(per_call, length, "sequences of this BiMamba2 block")
    w = _weights(block)
    if recompute and torch.is_grad_enabled() and not hasattr(ops, "scan_halves"):
        ops = types.SimpleNamespace(**vars(ops),
                                    scan_halves=_autograd_scan(ops.mamba_chunk_scan_combined))

    packed = packed_gate and split is split_conv and _is_our_norm(ops)

    def run(part: torch.Tensor) -> torch.Tensor:
        if packed and not torch.is_grad_enabled():
            return _packed_inference(part, w, dims, ops)
        if recompute and torch.is_grad_enabled():
            return _SelectiveRecompute.apply(part, dims, ops, split, packed,
                                             *(w[k] for k in _WEIGHTS))
        xh, B, C, z, dt = _head(part, w, dims, split)
        # 3. both directions in one scan (2 groups) and one gated norm (2 groups)
        args, kwargs = _scan_inputs(xh, dt, B, C, w, dims)
        y = ops.mamba_chunk_scan_combined(*args, **kwargs)
        return _tail(y, z, part, w, dims, ops)

    if n <= per_call:
        return run(x)
    return torch.cat([run(part) for part in x.split(split_sizes(n, per_call))])


def _is_our_norm(ops: object) -> bool:
    from .gated_norm import gated_norm

    return getattr(ops, "rmsnorm_fn", None) is gated_norm


def own_scan(length: int, headdim: int, d_state: int, *, short_scan: bool,
             long_scan: bool) -> str | None:
    """Which of our scans runs sequences of `length` on the fused kernel path:
    "short_scan" (at most 64 steps, if `short_scan`), "long_scan" (longer ones, if
    `long_scan`), each only at widths it takes; None: mamba_ssm's chunked scan."""
    from .long_scan import long_scan_fits
    from .short_scan import SHORT_SCAN_MAX_LENGTH, short_scan_fits

    if short_scan and short_scan_fits(length, headdim, d_state):
        return "short_scan"
    if long_scan and length > SHORT_SCAN_MAX_LENGTH and long_scan_fits(length, headdim,
                                                                         d_state):
        return "long_scan"
    return None


def _is_own_scan(ops: object) -> bool:
    """Whether `ops`' scan is ours (64-bit offsets: no limit of its own on a call)."""
    from .long_scan import long_scan
    from .short_scan import short_scan

    return getattr(ops, "mamba_chunk_scan_combined", None) in (short_scan, long_scan)


def block_sequences_per_call(block: torch.nn.Module, length: int, *, device: torch.device,
                             short_scan: bool) -> int:
    """`kernel_limits.sequences_per_call` for the fused call of `block` (a BiMamba2):
    both directions' heads in one scan of 2 groups, one gated norm of 2 x d_inner.
    `short_scan`: the scan is one of ours (`short_scan` or `long_scan`: `own_scan`)."""
    mf = block.view().mixers[0]
    return sequences_per_call(length, nheads=2 * mf.nheads, headdim=mf.headdim, ngroups=2,
                              d_state=mf.d_state,
                              chunk=kernel_chunk_size(length, mf.chunk_size),
                              short_scan=short_scan, sm_count=sm_count(device))
