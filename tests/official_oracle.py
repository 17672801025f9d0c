"""Test oracle: an independent, deliberately naive BSMamba2 (the graph of docs/architecture.md).

This module re-implements the BSMamba2 separation network (the official
EuiYeonKim/BSMamba2 ``BSModel`` graph, identical to MSST's ``bs_mamba2``) as
plainly as possible, written from the graph description (``docs/architecture.md``) only.
It does not import ``bsmamba2_plugin``, ``mamba_ssm`` or ``einops``; the Mamba2
selective scan is a plain Python loop over time steps. It is slow on purpose:
its only job is to be obviously right so that tests can compare the plugin
against it (in float64, on tiny configurations).

Public API
----------
``official_param_shapes(...)``  -> ordered ``{key: shape}`` of the official state dict.
``official_state_dict(...)``    -> random, well-conditioned state dict with exactly those keys.
``official_forward(sd, audio, ...)`` -> ``(batch, n_stems, channels, samples)`` waveforms.

Layout reminders (the subtle bits):
* Band features are real, innermost order (bin, channel, re/im): for each bin
  L-re, L-im, R-re, R-im (stereo); band k owns ``d_k = 2 * channels * f_k`` of them.
* The bidirectional fusion is a ``ConvTranspose1d(2*dim, dim, kernel_size=1)``
  whose weight is stored as ``(in=2*dim, out=dim, 1)``, so it acts as
  ``[f; b] @ W[:, :, 0] + bias`` (note: NOT ``W.T`` as for an ``nn.Linear``).
* Mamba2 ``in_proj`` output is split ``[z | xBC | dt]`` with ``xBC = [x | B | C]``
  and x viewed head-major as ``(H, headdim)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["official_param_shapes", "official_state_dict", "official_forward"]


# --------------------------------------------------------------------------------------
# Shapes / state-dict layout (SPEC §2.6, §2.7)
# --------------------------------------------------------------------------------------


def _band_dims(freqs_per_bands, stereo: bool) -> list[int]:
    """d_k = f_k bins * channels * (re, im)."""
    channels = 2 if stereo else 1
    return [2 * channels * int(f) for f in freqs_per_bands]


def _mamba_dims(dim: int, d_state: int, expand: int, headdim: int):
    d_inner = expand * dim
    if d_inner % headdim != 0:
        raise ValueError(f"d_inner={d_inner} not divisible by headdim={headdim}")
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * d_state  # x | B | C (ngroups = 1)
    d_in_proj = 2 * d_inner + 2 * d_state + nheads  # z | x | B | C | dt
    return d_inner, nheads, conv_dim, d_in_proj


def official_param_shapes(
    *,
    dim: int,
    depth: int,
    n_stems: int,
    freqs_per_bands,
    stereo: bool = True,
    d_state: int,
    expand: int,
    headdim: int,
    d_conv: int = 4,
    mask_depth: int = 2,
) -> dict[str, tuple[int, ...]]:
    """Ordered mapping key -> shape of the official / MSST ``bs_mamba2`` state dict."""
    if mask_depth < 1:
        raise ValueError("mask_depth must be >= 1")
    d_ks = _band_dims(freqs_per_bands, stereo)
    d_inner, nheads, conv_dim, d_in_proj = _mamba_dims(dim, d_state, expand, headdim)
    shapes: dict[str, tuple[int, ...]] = {}

    # Band split: to_features[k] = Sequential(RMSNorm(d_k), Linear(d_k, dim)).
    for k, d_k in enumerate(d_ks):
        shapes[f"band_split.to_features.{k}.0.gamma"] = (d_k,)
        shapes[f"band_split.to_features.{k}.1.weight"] = (dim, d_k)
        shapes[f"band_split.to_features.{k}.1.bias"] = (dim,)

    # Dual path: layers[l] = [time BiMamba2, band BiMamba2].
    for l in range(depth):
        for j in (0, 1):
            for direction in ("forward_blocks", "backward_blocks"):
                blk = f"layers.{l}.{j}.{direction}.0"
                shapes[f"{blk}.norm.weight"] = (dim,)
                mix = f"{blk}.mixer"
                # mamba_ssm Mamba2: own Parameters first, then submodules.
                shapes[f"{mix}.dt_bias"] = (nheads,)
                shapes[f"{mix}.A_log"] = (nheads,)
                shapes[f"{mix}.D"] = (nheads,)
                shapes[f"{mix}.in_proj.weight"] = (d_in_proj, dim)
                shapes[f"{mix}.conv1d.weight"] = (conv_dim, 1, d_conv)
                shapes[f"{mix}.conv1d.bias"] = (conv_dim,)
                shapes[f"{mix}.norm.weight"] = (d_inner,)
                shapes[f"{mix}.out_proj.weight"] = (dim, d_inner)
            # ConvTranspose1d(2*dim, dim, 1): weight (in_channels, out_channels, k).
            shapes[f"layers.{l}.{j}.linear.weight"] = (2 * dim, dim, 1)
            shapes[f"layers.{l}.{j}.linear.bias"] = (dim,)

    shapes["final_norm.gamma"] = (dim,)

    # Mask estimators: to_freqs[k] = Sequential(MLP, GLU); MLP = Sequential of
    # Linear, Tanh, Linear, Tanh, ..., Linear  -> Linear i sits at index 2*i.
    hidden = 4 * dim
    for s in range(n_stems):
        for k, d_k in enumerate(d_ks):
            dims = (dim, *([hidden] * (mask_depth - 1)), 2 * d_k)
            for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
                pre = f"mask_estimators.{s}.to_freqs.{k}.0.{2 * i}"
                shapes[f"{pre}.weight"] = (d_out, d_in)
                shapes[f"{pre}.bias"] = (d_out,)
    return shapes


# --------------------------------------------------------------------------------------
# Random state dict
# --------------------------------------------------------------------------------------


def _uniform(shape, lo, hi, g):
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _draw(name: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Well-conditioned, non-trivial random value for one parameter (float64)."""
    if name.endswith(".gamma") or name.endswith("norm.weight"):
        # lucidrains RMSNorm gammas, pre-mixer RMSNorm weights, gated-norm weights.
        return 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    if name.endswith("mixer.A_log"):
        return torch.log(_uniform(shape, 1.0, 16.0, g))
    if name.endswith("mixer.dt_bias"):
        dt = torch.exp(_uniform(shape, math.log(1e-3), math.log(0.1), g)).clamp(min=1e-4)
        return dt + torch.log(-torch.expm1(-dt))  # inverse softplus
    if name.endswith("mixer.D"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    if name.endswith("conv1d.weight"):
        return _uniform(shape, -0.5, 0.5, g)
    if name.endswith(".bias"):
        return 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)
    if name.endswith("linear.weight") and len(shape) == 3:
        # ConvTranspose1d (2*dim, dim, 1): the map it implements has fan_in = 2*dim.
        bound = 1.0 / math.sqrt(shape[0])
        return _uniform(shape, -bound, bound, g)
    if name.endswith(".weight") and len(shape) == 2:
        bound = 1.0 / math.sqrt(shape[1])  # nn.Linear weight (out, in)
        return _uniform(shape, -bound, bound, g)
    raise KeyError(f"no init rule for {name} {shape}")


def official_state_dict(
    *,
    dim: int,
    depth: int,
    n_stems: int,
    freqs_per_bands,
    stereo: bool = True,
    d_state: int,
    expand: int,
    headdim: int,
    d_conv: int = 4,
    mask_depth: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Random state dict with exactly the official key names and shapes.

    Values are drawn in float64 from a ``torch.Generator`` seeded with ``seed``
    (in key order) and then cast to ``dtype``, so different dtypes get the same
    values up to rounding.
    """
    shapes = official_param_shapes(
        dim=dim, depth=depth, n_stems=n_stems, freqs_per_bands=freqs_per_bands,
        stereo=stereo, d_state=d_state, expand=expand, headdim=headdim,
        d_conv=d_conv, mask_depth=mask_depth,
    )
    g = torch.Generator().manual_seed(seed)
    return {name: _draw(name, shape, g).to(dtype) for name, shape in shapes.items()}


# --------------------------------------------------------------------------------------
# Building blocks (naive)
# --------------------------------------------------------------------------------------


def _silu(x):
    return x * torch.sigmoid(x)


def _linear(x, weight, bias=None):
    """nn.Linear: weight (out, in)."""
    y = x @ weight.T
    return y if bias is None else y + bias


def _l2_rmsnorm(x, gamma):
    """lucidrains RMSNorm: x / max(||x||_2, 1e-12) * sqrt(d) * gamma (= F.normalize form)."""
    d = x.shape[-1]
    norm = torch.sqrt((x * x).sum(dim=-1, keepdim=True)).clamp(min=1e-12)
    return x / norm * math.sqrt(d) * gamma


def _mamba_rmsnorm(x, weight, eps=1e-5):
    """mamba_ssm RMSNorm: x * rsqrt(mean(x^2) + eps) * weight."""
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def _mamba2(p, pre, u, *, d_state, expand, headdim, d_conv):
    """mamba_ssm Mamba2 mixer (ngroups 1, no in/out bias, gated RMSNorm, no dt clamp).

    u: (N, L, dim) -> (N, L, dim).
    """
    N, L, dim = u.shape
    d_inner, nheads, conv_dim, _ = _mamba_dims(dim, d_state, expand, headdim)

    # 1. in_proj -> [z (d_inner) | xBC (d_inner + 2 d_state) | dt (H)]
    zxbcdt = _linear(u, p[f"{pre}.in_proj.weight"])
    z, xBC, dt = torch.split(zxbcdt, [d_inner, conv_dim, nheads], dim=-1)

    # 2. depthwise causal conv over time, kernel d_conv, left zero-pad d_conv-1, + bias:
    #    out[t, c] = bias[c] + sum_i w[c, 0, i] * x[t - (d_conv - 1) + i, c]
    #    (cross-correlation as nn.Conv1d; tap d_conv-1 multiplies the current step).
    w = p[f"{pre}.conv1d.weight"]  # (conv_dim, 1, d_conv)
    xpad = torch.cat([xBC.new_zeros(N, d_conv - 1, conv_dim), xBC], dim=1)
    conv = p[f"{pre}.conv1d.bias"].expand(N, L, conv_dim)
    for i in range(d_conv):
        conv = conv + xpad[:, i:i + L, :] * w[:, 0, i]
    xBC = _silu(conv)

    # 3. split x (heads x headdim, head-major), B, C (one group shared by all heads)
    xs, Bm, Cm = torch.split(xBC, [d_inner, d_state, d_state], dim=-1)
    xs = xs.reshape(N, L, nheads, headdim)

    # 4. step sizes and per-head scalar decay
    dt = F.softplus(dt + p[f"{pre}.dt_bias"])  # (N, L, H)
    a = -torch.exp(p[f"{pre}.A_log"])  # (H,)
    Dh = p[f"{pre}.D"]  # (H,)

    # 5. the selective scan, one time step at a time.
    #    S_t = exp(dt_t a) S_{t-1} + dt_t x_t B_t^T ;  y_t = S_t C_t + D x_t
    S = u.new_zeros(N, nheads, headdim, d_state)
    ys = []
    for t in range(L):
        dt_t = dt[:, t]  # (N, H)
        x_t = xs[:, t]  # (N, H, P)
        B_t = Bm[:, t]  # (N, d_state)
        C_t = Cm[:, t]  # (N, d_state)
        decay = torch.exp(dt_t * a)  # (N, H)
        outer = x_t[:, :, :, None] * B_t[:, None, None, :]  # (N, H, P, d_state)
        S = decay[:, :, None, None] * S + dt_t[:, :, None, None] * outer
        y_t = (S * C_t[:, None, None, :]).sum(dim=-1) + Dh[None, :, None] * x_t
        ys.append(y_t)
    y = torch.stack(ys, dim=1).reshape(N, L, d_inner)

    # 6. gated RMSNorm (norm_before_gate=False, one group over all d_inner)
    g = y * _silu(z)
    g = g * torch.rsqrt((g * g).mean(dim=-1, keepdim=True) + 1e-5) * p[f"{pre}.norm.weight"]

    # 7. out_proj
    return _linear(g, p[f"{pre}.out_proj.weight"])


def _bimamba2(p, pre, x, **mk):
    """SPEC §2.3 BiMamba2 block; x: (N, L, dim) -> (N, L, dim)."""
    fb = f"{pre}.forward_blocks.0"
    bb = f"{pre}.backward_blocks.0"
    f = x + _mamba2(p, f"{fb}.mixer", _mamba_rmsnorm(x, p[f"{fb}.norm.weight"]), **mk)
    xr = torch.flip(x, dims=[1])
    b = x + torch.flip(
        _mamba2(p, f"{bb}.mixer", _mamba_rmsnorm(xr, p[f"{bb}.norm.weight"]), **mk), dims=[1]
    )
    cat = torch.cat([f, b], dim=-1)  # (N, L, 2*dim): forward first, then backward
    # ConvTranspose1d(2*dim -> dim, kernel 1): out[o] = sum_i in[i] * W[i, o, 0] + bias[o]
    W = p[f"{pre}.linear.weight"][:, :, 0]  # (2*dim, dim)
    return x + cat @ W + p[f"{pre}.linear.bias"]


def _band_features(spec):
    """(b, c, F, T) complex -> (b, T, F*c*2) real, innermost order (bin, channel, re/im)."""
    b, c, n_freq, T = spec.shape
    ri = torch.stack([spec.real, spec.imag], dim=-1)  # (b, c, F, T, 2)
    return ri.permute(0, 3, 2, 1, 4).reshape(b, T, n_freq * c * 2)


def _features_to_complex(m, c, n_freq):
    """Inverse of ``_band_features``: (b, T, F*c*2) real -> (b, c, F, T) complex."""
    b, T, _ = m.shape
    m = m.reshape(b, T, n_freq, c, 2).permute(0, 3, 2, 1, 4)  # (b, c, F, T, 2)
    return torch.complex(m[..., 0], m[..., 1])


# --------------------------------------------------------------------------------------
# Full forward (SPEC §2.1 - §2.4)
# --------------------------------------------------------------------------------------


def official_forward(
    state_dict,
    audio: torch.Tensor,
    *,
    dim: int,
    depth: int,
    n_stems: int,
    freqs_per_bands,
    stereo: bool = True,
    d_state: int,
    expand: int,
    headdim: int,
    d_conv: int = 4,
    mask_depth: int = 2,
    n_fft: int = 2048,
    hop_length: int = 441,
    win_length: int = 2048,
) -> torch.Tensor:
    """audio (batch, channels, samples) -> separated stems (batch, n_stems, channels, samples).

    Computed in ``audio.dtype`` (parameters are cast to it). ``state_dict`` must
    hold exactly the keys/shapes of ``official_param_shapes`` for this config.
    """
    shapes = official_param_shapes(
        dim=dim, depth=depth, n_stems=n_stems, freqs_per_bands=freqs_per_bands,
        stereo=stereo, d_state=d_state, expand=expand, headdim=headdim,
        d_conv=d_conv, mask_depth=mask_depth,
    )
    missing = set(shapes) - set(state_dict)
    unexpected = set(state_dict) - set(shapes)
    if missing or unexpected:
        raise KeyError(f"state dict mismatch: missing={sorted(missing)[:5]} "
                       f"unexpected={sorted(unexpected)[:5]}")
    for k, shp in shapes.items():
        if tuple(state_dict[k].shape) != shp:
            raise ValueError(f"{k}: shape {tuple(state_dict[k].shape)} != {shp}")

    dtype = audio.dtype
    p = {k: v.to(dtype) for k, v in state_dict.items()}
    batch, channels, n_samples = audio.shape
    if channels != (2 if stereo else 1):
        raise ValueError(f"stereo={stereo} but audio has {channels} channels")
    mk = dict(d_state=d_state, expand=expand, headdim=headdim, d_conv=d_conv)

    # ---- §2.1 STFT per channel -> (b, c, F, T) complex
    window = torch.hann_window(win_length, periodic=True, dtype=dtype)
    stft_kw = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                   center=True, normalized=False, onesided=True)
    spec = torch.stft(audio.reshape(batch * channels, n_samples), pad_mode="reflect",
                      return_complex=True, **stft_kw)
    n_freq, n_frames = spec.shape[-2:]
    spec = spec.reshape(batch, channels, n_freq, n_frames)
    if sum(freqs_per_bands) != n_freq:
        raise ValueError(f"freqs_per_bands sum {sum(freqs_per_bands)} != {n_freq} bins")

    # ---- §2.2 band split -> (b, T, K, dim)
    d_ks = _band_dims(freqs_per_bands, stereo)
    feats = _band_features(spec)  # (b, T, F*c*2)
    tokens = []
    for k, xk in enumerate(torch.split(feats, d_ks, dim=-1)):
        pre = f"band_split.to_features.{k}"
        xk = _l2_rmsnorm(xk, p[f"{pre}.0.gamma"])
        tokens.append(_linear(xk, p[f"{pre}.1.weight"], p[f"{pre}.1.bias"]))
    x = torch.stack(tokens, dim=2)  # (b, T, K, dim)
    K = len(d_ks)

    # ---- §2.3 dual path: time BiMamba2 (along T), then band BiMamba2 (along K)
    for l in range(depth):
        xt = x.permute(0, 2, 1, 3).reshape(batch * K, n_frames, dim)  # (b*K, T, dim)
        xt = _bimamba2(p, f"layers.{l}.0", xt, **mk)
        x = xt.reshape(batch, K, n_frames, dim).permute(0, 2, 1, 3)  # (b, T, K, dim)

        xb = x.reshape(batch * n_frames, K, dim)  # (b*T, K, dim), low -> high band
        xb = _bimamba2(p, f"layers.{l}.1", xb, **mk)
        x = xb.reshape(batch, n_frames, K, dim)

    # ---- §2.4 final norm, mask estimation, complex masking, iSTFT
    x = _l2_rmsnorm(x, p["final_norm.gamma"])
    stems = []
    for s in range(n_stems):
        parts = []
        for k in range(K):
            h = x[:, :, k, :]  # (b, T, dim)
            for i in range(mask_depth):
                pre = f"mask_estimators.{s}.to_freqs.{k}.0.{2 * i}"
                h = _linear(h, p[f"{pre}.weight"], p[f"{pre}.bias"])
                if i < mask_depth - 1:
                    h = torch.tanh(h)
            val, gate = torch.chunk(h, 2, dim=-1)  # GLU: first half * sigmoid(second half)
            parts.append(val * torch.sigmoid(gate))  # (b, T, d_k)
        m = torch.cat(parts, dim=-1)  # (b, T, F*c*2)
        mask = _features_to_complex(m, channels, n_freq)  # (b, c, F, T)
        est = mask * spec  # complex multiplication, unbounded mask
        wav = torch.istft(est.reshape(batch * channels, n_freq, n_frames), length=n_samples,
                          return_complex=False, **stft_kw)
        stems.append(wav.reshape(batch, channels, n_samples))
    return torch.stack(stems, dim=1)  # (b, n_stems, c, samples)
