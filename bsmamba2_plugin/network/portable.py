"""The BSMamba2 network between the STFT and the iSTFT, written for graph export (issue 13).

`PortableNetwork(model)` maps real band features to real masks with the parameters of a
`BSMamba2` (`BSMamba2.network` computes the same function); `BSMamba2.analyse` and
`BSMamba2.synthesise` do the STFT and iSTFT around it. No complex tensor and no STFT
appears in it, so ONNX (and other tracers) can take it; that is what blocks msst users'
exports of models with the STFT inside.

`ssd_portable` is the reference SSD (`ssd.ssd_reference`, same arguments, same math)
restated for tracing:
- every chunk has the same fixed length (`chunk_size`, default 64), the tail padded with
  dt = 0 steps, so shapes follow the input's length symbolically (dynamic frames);
- the recurrence across chunks is one masked (chunks x chunks) decay matrix product
  instead of a Python loop over chunks, so no control flow depends on a length;
- no in-place updates and no float64 (decay sums in the compute dtype, float32 for
  float32 input: the same numbers as the reference to ~1e-6 relative);
- the depthwise causal conv is `F.conv1d` on a left-padded input (`mamba2.causal_conv1d`
  slices by the length in a Python loop).

Axes: b batch, l sequence, c chunks, q steps in a chunk, h heads, p head dim, g groups,
n state; t frames, k bands, d features, s stems.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .mamba2 import BiMamba2, Mamba2Mixer
from .model import BSMamba2
from .ssd import MIN_EXPONENT, _check_ssd_args, _ssd_inputs, gated_rmsnorm_reference

__all__ = ["PORTABLE_CHUNK_SIZE", "PortableNetwork", "ssd_portable"]

PORTABLE_CHUNK_SIZE = 64


def _decay(exponent: torch.Tensor) -> torch.Tensor:
    """exp(min(exponent, 0)) clamped at exp(-60); entries with exponent > 0 (masked out by
    the caller) cannot overflow."""
    return torch.exp(exponent.clamp(MIN_EXPONENT, 0.0))


def ssd_portable(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
) -> torch.Tensor:
    """The SSD scan of `ssd.ssd_reference` (same arguments and result), traceable.

    Args:
        x: (b, l, h, p) inputs.
        dt: (b, l, h) step sizes, before `dt_bias` and softplus.
        A: (h,) negative decay rates.
        B, C: (b, l, g, n) input and output projections; g divides h.
        D: (h,) skip weights, or None.
        chunk_size: steps per chunk (fixed; the tail is padded); None uses 64.
        dt_bias: (h,) added to dt before the softplus, or None.
        dt_softplus: apply softplus to dt (+ dt_bias).

    Returns:
        y: (b, l, h, p) in the dtype of x.
    """
    _check_ssd_args(x, dt, A, B, C, D, dt_bias, chunk_size)
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    heads_per_group = nheads // ngroups
    out_dtype = x.dtype
    x, dt, A, B, C = _ssd_inputs(x, dt, A, B, C, dt_bias, dt_softplus)
    compute = x.dtype
    q = chunk_size or PORTABLE_CHUNK_SIZE
    pad = (q - seqlen % q) % q  # at the end, dt = 0: the padded steps touch no real output
    x = F.pad(x, (0, 0, 0, 0, 0, pad))
    dt = F.pad(dt, (0, 0, 0, pad))
    B = F.pad(B, (0, 0, 0, 0, 0, pad))
    C = F.pad(C, (0, 0, 0, 0, 0, pad))

    xc = x.reshape(batch, -1, q, nheads, headdim)  # (b, c, q, h, p)
    n_chunks = xc.shape[1]
    Bg = B.reshape(batch, n_chunks, q, ngroups, dstate).transpose(2, 3)  # (b, c, g, q, n)
    Cg = C.reshape(batch, n_chunks, q, ngroups, dstate).transpose(2, 3)  # (b, c, g, q, n)
    dtc = dt.reshape(batch, n_chunks, q, nheads)  # (b, c, q, h)
    a_cum = torch.cumsum(dtc * A, dim=2)  # decay summed from the chunk start
    a_heads = a_cum.transpose(2, 3)  # (b, c, h, q)
    x_dt = xc * dtc.unsqueeze(-1)  # (b, c, q, h, p)

    # Inside each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(a_i - a_j) dt_j x_j.
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    CB = (Cg @ Bg.transpose(-1, -2)).repeat_interleave(heads_per_group, dim=2)  # (b,c,h,q,q)
    scores = _decay(a_heads.unsqueeze(-1) - a_heads.unsqueeze(-2)) * CB
    scores = torch.where(causal, scores, torch.zeros_like(scores))
    y = scores @ x_dt.permute(0, 1, 3, 2, 4)  # (b, c, h, q, p)

    # State each chunk hands on: sum_j exp(a_last - a_j) dt_j x_j B_j^T, per group as
    # one (hg*p x q) @ (q x n) product.
    x_end = x_dt * _decay(a_cum[:, :, -1:] - a_cum).unsqueeze(-1)  # (b, c, q, h, p)
    x_end = x_end.reshape(batch, n_chunks, q, ngroups, heads_per_group * headdim)
    states = x_end.permute(0, 1, 3, 4, 2) @ Bg  # (b, c, g, hg*p, n)
    states = states.reshape(batch, n_chunks, nheads, headdim * dstate)
    # Across chunks: S_in[i] = sum_{j<i} exp(T[i-1] - T[j]) S_j with T the running total
    # decay; one masked (c x c) matrix per head replaces the sequential recurrence.
    totals = torch.cumsum(a_cum[:, :, -1], dim=1).transpose(1, 2)  # (b, h, c)
    before = totals - a_cum[:, :, -1].transpose(1, 2)  # T[i-1], 0 for i = 0
    index = torch.arange(n_chunks, device=x.device)
    earlier = index.unsqueeze(1) > index.unsqueeze(0)  # (c, c): j < i
    carry = _decay(before.unsqueeze(-1) - totals.unsqueeze(-2))
    carry = torch.where(earlier, carry, torch.zeros_like(carry))  # (b, h, c, c)
    states_in = carry @ states.transpose(1, 2)  # (b, h, c, p*n)
    states_in = states_in.reshape(batch, nheads, n_chunks, headdim, dstate).transpose(1, 2)
    # y_i += exp(a_i) C_i . S_in, per group: (q x n) @ (n x hg*p)
    states_in = states_in.reshape(batch, n_chunks, ngroups, heads_per_group * headdim, dstate)
    y_off = Cg @ states_in.transpose(-1, -2)  # (b, c, g, q, hg*p)
    y_off = y_off.reshape(batch, n_chunks, ngroups, q, heads_per_group, headdim)
    y_off = y_off.permute(0, 1, 2, 4, 3, 5).reshape(batch, n_chunks, nheads, q, headdim)
    y = y + y_off * _decay(a_heads).unsqueeze(-1)

    # Back to token-major (b, l, h, p), cut to the input length, plus the skip D x.
    y = y.permute(0, 1, 3, 2, 4).reshape(batch, -1, nheads, headdim)[:, :seqlen]
    if D is not None:
        y = y + x[:, :seqlen] * D.to(compute).view(1, 1, nheads, 1)
    return y.to(out_dtype)


def _mixer(mixer: Mamba2Mixer, u: torch.Tensor) -> torch.Tensor:
    """`Mamba2Mixer.forward` with `ssd_portable`. Args: u (n, l, dim). Returns (n, l, dim)."""
    n, length, _ = u.shape
    z, xbc, dt = mixer.in_proj(u).split(
        [mixer.d_inner, mixer.d_inner + 2 * mixer.d_state, mixer.nheads], dim=-1)
    taps = mixer.conv1d.weight.shape[-1]
    xbc = F.conv1d(F.pad(xbc.transpose(1, 2), (taps - 1, 0)), mixer.conv1d.weight,
                   mixer.conv1d.bias, groups=xbc.shape[-1])
    xbc = F.silu(xbc.transpose(1, 2))
    x, B, C = xbc.split([mixer.d_inner, mixer.d_state, mixer.d_state], dim=-1)
    y = ssd_portable(
        x.reshape(n, length, mixer.nheads, mixer.headdim), dt,
        -torch.exp(mixer.A_log.to(torch.promote_types(mixer.A_log.dtype, torch.float32))),
        B.reshape(n, length, 1, mixer.d_state), C.reshape(n, length, 1, mixer.d_state),
        mixer.D, chunk_size=mixer.chunk_size, dt_bias=mixer.dt_bias, dt_softplus=True,
    )
    y = gated_rmsnorm_reference(y.reshape(n, length, mixer.d_inner), z, mixer.norm.weight,
                                mixer.norm.eps)
    return mixer.out_proj(y)


def _bimamba2(block: BiMamba2, x: torch.Tensor) -> torch.Tensor:
    """`BiMamba2._forward` with `_mixer`. Args: x (n, l, dim). Returns (n, l, dim)."""
    (norm_f, norm_b), (mixer_f, mixer_b), linear = block.view()
    forward = x + _mixer(mixer_f, norm_f(x))
    backward = x + _mixer(mixer_b, norm_b(x.flip(1))).flip(1)
    both = torch.cat([forward, backward], dim=-1)
    return x + F.linear(both, linear.weight[:, :, 0].t(), linear.bias)


class PortableNetwork(nn.Module):
    """`BSMamba2.network` (features -> masks) on the model's parameters, traceable.

    Args:
        model: the `BSMamba2` whose parameters are used (shared, not copied).
    """

    def __init__(self, model: BSMamba2) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (b, t, f * c * 2) real. Returns: (b, s, t, f * c * 2) masks."""
        model = self.model
        x = model.band_split(features)  # (b, t, k, d)
        batch, n_frames, n_bands, dim = x.shape
        for time_layer, band_layer in model.layers:
            x = _bimamba2(time_layer, x.transpose(1, 2).reshape(batch * n_bands, n_frames, dim))
            x = x.reshape(batch, n_bands, n_frames, dim).transpose(1, 2)
            x = _bimamba2(band_layer, x.reshape(batch * n_frames, n_bands, dim))
            x = x.reshape(batch, n_frames, n_bands, dim)
        x = model.final_norm(x)
        return torch.stack([estimator(x) for estimator in model.mask_estimators], dim=1)
