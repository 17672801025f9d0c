"""Mamba2 mixer and the bidirectional BiMamba2 block of BSMamba2.

`Mamba2Mixer` is mamba_ssm's `Mamba2` (v2.2, the version the official code pins)
with ngroups 1, no in/out bias, a depthwise causal conv with bias, a scalar decay
per head, D per head and the gated RMSNorm before `out_proj`. Both backends
(`ssd.get_backend`) run on the *same* parameters and parameter names, so a state
dict saved under one loads and runs under the other, and official / msst
`bs_mamba2` checkpoints load strictly.

`BiMamba2` (the official `MambaBlock` with n_layer 1, bidirectional):
    f = x + Mamba2_f(RMSNorm_f(x))
    b = x + flip(Mamba2_b(RMSNorm_b(flip(x))))
    y = x + ConvTranspose1d_1x1([f; b])
On the kernel backend, `bimamba2_fused` computes the same block for both directions at
once (one projection, one conv kernel, one scan, one gated norm).
Deviations, both invisible in the outputs:
- the depthwise causal conv is `causal_conv1d` below on both backends (mamba_ssm would
  use causal-conv1d's CUDA build, which takes > 7 minutes to compile). It is the same
  sum as `F.conv1d` but reads the (n, l, channels) layout in place, 5x faster on a CPU.
- without autograd on a CPU, `BiMamba2` runs its sequences in groups of about
  `plan.CPU_TOKENS_PER_GROUP` tokens, so that each group's intermediates stay in
  the CPU caches (measured 2-3x faster than one big batch).

Axes: n sequences, l length, d features, h heads, p head dim, s state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .config import BSMamba2Config
from .plan import ExecutionPlan, resolve_plan
from .ssd import Backend, get_backend, resolve_backend

__all__ = ["BiMamba2", "BlockView", "GatedRMSNorm", "Mamba2Mixer", "PreNormMixer", "RMSNorm"]


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                  ) -> torch.Tensor:
    """Depthwise causal convolution along l, as `F.conv1d(x^T, weight, bias,
    padding=K-1, groups=channels)[..., :l]^T` computes it.

    Args:
        x: (n, l, channels).
        weight: (channels, 1, K) (the `nn.Conv1d` layout).
        bias: (channels,) or None.

    Returns:
        (n, l, channels): out_t = bias + sum_k weight[:, 0, K-1-k] * x_{t-k}.
    """
    taps = weight.shape[-1]
    w = weight.view(weight.shape[0], taps).t().to(x.dtype).contiguous()  # (K, channels)
    if bias is None:
        out = x * w[taps - 1]
    else:
        out = torch.addcmul(bias.to(x.dtype), x, w[taps - 1])
    for k in range(1, min(taps, x.shape[1])):  # tap k reads k steps back
        out[:, k:].addcmul_(x[:, :-k], w[taps - 1 - k])
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight over the last dim, in float32 or wider.
    Args: x (..., dim); weight (dim,). Returns: (..., dim) in the dtype of x."""
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    out = wide * torch.rsqrt(wide.square().mean(-1, keepdim=True) + eps)
    return (out * weight.to(wide.dtype)).to(x.dtype)


class RMSNorm(nn.Module):
    """mamba_ssm's RMSNorm (`rms_norm`)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (..., dim). Returns: (..., dim) in the dtype of x."""
        return rms_norm(x, self.weight, self.eps)


class GatedRMSNorm(nn.Module):
    """Holds the weight of the mixer's gated RMSNorm; the math is the backend's."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor, backend: Backend, *,
                inplace: bool = False) -> torch.Tensor:
        """Args: y, z (..., dim); inplace: y and z may be overwritten.
        Returns: RMSNorm(y * silu(z)) * weight, (..., dim)."""
        return backend.gated_rmsnorm(y, z, self.weight, self.eps, inplace=inplace)


class Mamba2Mixer(nn.Module):
    """One Mamba2 mixer: in_proj -> causal conv + SiLU -> SSD -> gated RMSNorm -> out_proj."""

    def __init__(self, dim: int, *, d_state: int, d_conv: int, expand: int, headdim: int,
                 chunk_size: int | None, backend: str) -> None:
        super().__init__()
        self.d_inner = expand * dim
        self.d_state = d_state
        self.headdim = headdim
        self.nheads = self.d_inner // headdim
        self.chunk_size = chunk_size
        self.backend = backend
        conv_dim = self.d_inner + 2 * d_state
        # Packed projection, in this order: [z | x | B | C | dt].
        self.in_proj = nn.Linear(dim, 2 * self.d_inner + 2 * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.empty(self.nheads))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)
        self.reset_ssm_parameters()

    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1,
                             dt_init_floor: float = 1e-4,
                             a_init_range: tuple[float, float] = (1.0, 16.0)) -> None:
        """mamba_ssm's initialisation: dt = exp(U[ln dt_min, ln dt_max]) (>= floor),
        dt_bias = softplus^-1(dt); A_log = ln U[a_init_range]; D = 1."""
        with torch.no_grad():
            dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.A_log.copy_(torch.empty(self.nheads).uniform_(*a_init_range).log())
            self.D.fill_(1.0)
        # mamba_ssm exempts these from weight decay; optimisers that look may honour it.
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, u: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """Args: u (n, l, dim); backend: the resolved backend name (an `ExecutionPlan`'s),
        None to resolve `self.backend` for u's device. Returns: (n, l, dim)."""
        n, length, _ = u.shape
        backend = get_backend(backend or resolve_backend(self.backend, u.device))
        z, xbc, dt = self.in_proj(u).split(
            [self.d_inner, self.d_inner + 2 * self.d_state, self.nheads], dim=-1)
        # Without autograd, fresh intermediates are overwritten in place (fewer passes).
        inference = not torch.is_grad_enabled()
        xbc = F.silu(causal_conv1d(xbc, self.conv1d.weight, self.conv1d.bias), inplace=inference)
        x, B, C = xbc.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        y = backend.ssd(
            x.reshape(n, length, self.nheads, self.headdim), dt,
            -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32))),
            B.reshape(n, length, 1, self.d_state), C.reshape(n, length, 1, self.d_state),
            self.D, chunk_size=self.chunk_size, dt_bias=self.dt_bias, dt_softplus=True,
        )
        y = self.norm(y.reshape(n, length, self.d_inner), z, backend, inplace=inference)
        return self.out_proj(y)


class PreNormMixer(nn.Module):
    """mamba_ssm's `Block` with no MLP: returns mixer(norm(x)); the caller adds x."""

    def __init__(self, dim: int, mixer: Mamba2Mixer) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mixer = mixer

    def forward(self, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """Args: x (n, l, dim); backend: as `Mamba2Mixer.forward`. Returns: (n, l, dim)."""
        return self.mixer(self.norm(x), backend)


class BlockView(NamedTuple):
    """The modules of a BiMamba2 block by role, read-only, for the paths that compute the
    block's function from its weights (`bimamba2_fused`, `portable`, `cpu_compiled`)."""

    norms: tuple[RMSNorm, RMSNorm]  # the pre-norms, forward direction first
    mixers: tuple[Mamba2Mixer, Mamba2Mixer]
    linear: nn.ConvTranspose1d  # the (2 dim -> dim) merge, weight (2 dim, dim, 1)


class BiMamba2(nn.Module):
    """Forward and time-reversed Mamba2 (separate weights), concat, 1x1 projection.

    Names follow the official `MambaBlock`: `forward_blocks.0`, `backward_blocks.0`,
    `linear` (a ConvTranspose1d(2 dim -> dim, kernel 1), weight shape (2 dim, dim, 1)).
    Which code computes it is an `ExecutionPlan`'s choice (`plan.py`).
    """

    def __init__(self, config: BSMamba2Config) -> None:
        super().__init__()
        dim = config.dim
        self.config = config

        def branch() -> PreNormMixer:
            return PreNormMixer(dim, Mamba2Mixer(
                dim, d_state=config.d_state, d_conv=config.d_conv, expand=config.expand,
                headdim=config.headdim, chunk_size=config.chunk_size, backend=config.backend))

        self.forward_blocks = nn.ModuleList([branch()])
        self.backward_blocks = nn.ModuleList([branch()])
        self.linear = nn.ConvTranspose1d(2 * dim, dim, kernel_size=1)

    def view(self) -> BlockView:
        """This block's modules by role (`BlockView`)."""
        fwd, bwd = self.forward_blocks[0], self.backward_blocks[0]
        return BlockView((fwd.norm, bwd.norm), (fwd.mixer, bwd.mixer), self.linear)

    def forward(self, x: torch.Tensor, plan: ExecutionPlan | None = None) -> torch.Tensor:
        """Args: x (n, l, dim); plan: how to compute it (None: `resolve_plan` of this
        block's config for x's device). Returns: (n, l, dim)."""
        if plan is None:
            plan = resolve_plan(self.config, x.device)
        if plan.recompute == "block" and torch.is_grad_enabled():
            return checkpoint(self._run, x, plan, use_reentrant=False)
        return self._run(x, plan)

    def _run(self, x: torch.Tensor, plan: ExecutionPlan) -> torch.Tensor:
        n, length, _ = x.shape
        if plan.backend == "kernel":
            # Triton (ours and mamba_ssm's) launches on the current device, which is not
            # the tensors' one when a model runs on cuda:1 with cuda:0 current (msst-train
            # --device_ids 1 sets no device). Backward runs on autograd's per-device thread.
            with torch.cuda.device(x.device):
                if plan.fused_block:
                    from .bimamba2_fused import bimamba2_fused

                    return bimamba2_fused(self, x, recompute=plan.recompute == "selective",
                                          short_scan=plan.short_scan,
                                          long_scan=plan.long_scan,
                                          long_scan_backward=plan.long_scan_backward,
                                          gated_norm=plan.gated_norm,
                                          packed_gate=plan.packed_gate)
                return self._forward(x, plan.backend)
        group = plan.cpu_tokens_per_group
        if not group or torch.is_grad_enabled() or n * length <= group:
            return self._forward(x, plan.backend)
        per_group = max(1, group // length)
        return torch.cat([self._forward(part, plan.backend) for part in x.split(per_group)])

    def kernel_sequences_per_call(self, length: int, plan: ExecutionPlan,
                                  device: torch.device | str) -> int | None:
        """How many sequences of `length` one call of the kernel path may take on `device`
        (`kernel_limits.sequences_per_call`; 0: not one), or None off the kernel path."""
        if plan.backend != "kernel":
            return None
        from .bimamba2_fused import block_sequences_per_call, own_scan

        mixer = self.forward_blocks[0].mixer
        # the fused call's widths (both directions) bound the per-direction path too;
        # with long_scan mamba_ssm's limits stay (its backward; with ours a safe bound)
        ours = own_scan(length, mixer.headdim, mixer.d_state, short_scan=plan.short_scan,
                        long_scan=plan.long_scan)
        return block_sequences_per_call(self, length, device=device,
                                        short_scan=ours == "short_scan")

    def _forward(self, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """The block's function, one direction after the other (`backend`: a resolved
        name, or None for this block's own)."""
        forward = x + self.forward_blocks[0](x, backend)
        backward = x + self.backward_blocks[0](x.flip(1), backend).flip(1)
        both = torch.cat([forward, backward], dim=-1)
        # A kernel-1 ConvTranspose1d is a matmul with its (2 dim, dim) weight.
        return x + F.linear(both, self.linear.weight[:, :, 0].t(), self.linear.bias)
