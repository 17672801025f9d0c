"""BiMamba2 for CPU inference with its element-wise work fused by TorchInductor (issue 13).

`CompiledBiMamba2(block)` computes `BiMamba2.forward` (inference only) on the block's
parameters. On a CPU the reference block spends about half its time in element-wise
passes over memory (the depthwise conv, SiLU, the SSD's decay matrices, the gated norm,
fresh buffers for each): PyTorch runs them one op at a time. Here they are pure
functions compiled once per input shape and thread count by `torch.compile`
(TorchInductor's C++ code, vectorised, one loop over memory where eager PyTorch makes
several), while the projections stay `nn.Linear` modules run eagerly, so
`quantize_dynamic` can make them int8 (the `int8-compiled` variant,
`inference/cpu_variants.py`), or they run in
bfloat16 (`proj_dtype`, the `bf16-compiled` variant: oneDNN's bfloat16 GEMMs, on AMX
tiles where the CPU has them); then the compiled functions also hand the projections
their inputs in bfloat16 and read their outputs from it (half the bytes), while the
element-wise math in between stays float32.

The scan is the reference SSD's math (`ssd.ssd_reference`), restated for compilation:
- the four matrix products of the scan (C B^T, the intra-chunk product, the chunk
  states, their read-out) run in `ssd_dtype`: bfloat16 on CPUs with native bfloat16
  dot products (AVX512-BF16, AMX) doubles their speed; the decays, the sums across
  chunks and everything else stay float32;
- decay sums are float32, not float64 (inference: no gradient to protect);
- the chunk length is chosen per sequence length (`scan_chunk`): a divisor of the
  length near 64 where there is one (801 frames = 9 x 89), so that no padded copy
  of the inputs is made; one chunk up to 96 steps (the band axis).

Needs a C++ compiler (TorchInductor builds its kernels with it; the first call per
shape and thread count compiles for seconds, later processes reuse its on-disk cache).
Importing this module imports no compiler machinery: `torch.compile` runs on the first
forward.

Axes: n sequences, l length, d features, c chunks, q steps in a chunk, h heads,
p head dim, s state.
"""

from __future__ import annotations

import copy
import functools
import math
import types
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .mamba2 import BiMamba2, rms_norm
from .plan import CPU_TOKENS_PER_GROUP
from .ssd import MIN_EXPONENT, REFERENCE_SINGLE_CHUNK_MAX, gated_rmsnorm_reference

__all__ = ["CompiledBiMamba2", "scan_chunk"]


def scan_chunk(length: int) -> int:
    """Chunk length of the compiled scan for sequences of `length` steps: the whole
    sequence up to 96 steps, else the divisor of `length` in [48, 128] closest to 64,
    else 64 (the tail is then padded)."""
    if length <= REFERENCE_SINGLE_CHUNK_MAX:  # short sequences are one block, as there
        return length
    divisors = [q for q in range(48, 129) if length % q == 0]
    return min(divisors, key=lambda q: abs(q - 64)) if divisors else 64


def _pre_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, out_dtype: torch.dtype
              ) -> torch.Tensor:
    """`rms_norm` of x (float32) in `out_dtype`."""
    return rms_norm(x, weight, eps).to(out_dtype)


def _pre_norm_reversed(x: torch.Tensor, weight: torch.Tensor, eps: float,
                       out_dtype: torch.dtype) -> torch.Tensor:
    """`rms_norm` of x reversed along l (a function of its own: its own compile cache)."""
    return rms_norm(x.flip(1), weight, eps).to(out_dtype)


def _mixer_core(zxbcdt: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor,
                dt_bias: torch.Tensor, A: torch.Tensor, D: torch.Tensor,
                norm_weight: torch.Tensor, norm_eps: float, d_state: int, nheads: int,
                chunk: int, ssd_dtype: torch.dtype, out_dtype: torch.dtype) -> torch.Tensor:
    """`Mamba2Mixer.forward` between `in_proj` and `out_proj`.

    Args:
        zxbcdt: (n, l, 2 d_inner + 2 d_state + h), in_proj's output [z | x | B | C | dt]
            (float32 or bfloat16; computed on in float32).
        conv_weight: (K, d_inner + 2 d_state): row j is the conv's tap j (`weight[:, 0, j]`).
        conv_bias: (d_inner + 2 d_state,).
        dt_bias, A, D: (h,); A = -exp(A_log).
        norm_weight: (d_inner,), the gated RMSNorm's weight; norm_eps its eps.
        d_state, nheads: the mixer's widths.
        chunk: steps per chunk (`scan_chunk(l)`).
        ssd_dtype: dtype of the scan's matrix products (float32 or bfloat16).
        out_dtype: dtype of the result (out_proj's input).

    Returns:
        (n, l, d_inner) in out_dtype: RMSNorm(SSD(x) * silu(z)) * norm_weight.
    """
    zxbcdt = zxbcdt.float()
    n, length, width = zxbcdt.shape
    d_inner = (width - 2 * d_state - nheads) // 2
    headdim = d_inner // nheads
    z, xbc, dt = zxbcdt.split([d_inner, d_inner + 2 * d_state, nheads], dim=-1)
    # Depthwise causal conv: out_t = bias + sum_j weight[j] * x_{t - (K - 1 - j)}.
    taps = conv_weight.shape[0]
    padded = F.pad(xbc, (0, 0, taps - 1, 0))
    conv = conv_bias + padded[:, taps - 1:] * conv_weight[taps - 1]
    for j in range(taps - 1):
        conv = conv + padded[:, j:j + length] * conv_weight[j]
    xbc = F.silu(conv)
    dt = F.softplus(dt + dt_bias)  # (n, l, h)

    q = chunk
    n_chunks = math.ceil(length / q)
    pad = n_chunks * q - length
    if pad:  # dt = 0 there: the padded steps touch no real output
        xbc = F.pad(xbc, (0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
    x, B, C = xbc.split([d_inner, d_state, d_state], dim=-1)
    xc = x.reshape(n, n_chunks, q, nheads, headdim)
    Bc = B.reshape(n, n_chunks, q, d_state).to(ssd_dtype)
    Cc = C.reshape(n, n_chunks, q, d_state).to(ssd_dtype)
    dtc = dt.reshape(n, n_chunks, q, nheads)
    a_cum = torch.cumsum(dtc * A, dim=2)  # decay summed from the chunk start, (n, c, q, h)
    a_heads = a_cum.transpose(-1, -2)  # (n, c, h, q)
    x_dt = xc * dtc.unsqueeze(-1)  # (n, c, q, h, p)

    # Inside each chunk: y_i = sum_{j <= i} (C_i . B_j) exp(a_i - a_j) dt_j x_j
    causal = torch.ones(q, q, dtype=torch.bool, device=zxbcdt.device).tril()
    CB = (Cc @ Bc.transpose(-1, -2)).unsqueeze(2).float()  # (n, c, 1, q, q)
    decay = torch.exp((a_heads.unsqueeze(-1) - a_heads.unsqueeze(-2)).clamp(MIN_EXPONENT, 0.0))
    scores = torch.where(causal, decay * CB, 0.0).to(ssd_dtype)  # (n, c, h, q, q)
    y = (scores @ x_dt.transpose(2, 3).to(ssd_dtype)).float().transpose(2, 3)  # (n,c,q,h,p)

    if n_chunks > 1:
        # State each chunk hands on: sum_j exp(a_last - a_j) dt_j x_j B_j^T, (h p x s)
        to_end = torch.exp((a_cum[:, :, -1:] - a_cum).clamp(min=MIN_EXPONENT))
        x_end = (x_dt * to_end.unsqueeze(-1)).reshape(n, n_chunks, q, d_inner)
        states = (x_end.to(ssd_dtype).transpose(-1, -2) @ Bc).float()  # (n, c, h p, s)
        states = states.reshape(n, n_chunks, nheads, headdim * d_state)
        # Across chunks: S_in[c + 1] = exp(a_last[c]) S_in[c] + S[c]
        chunk_decay = torch.exp(a_cum[:, :, -1].clamp(min=MIN_EXPONENT)).unsqueeze(-1)
        carried = [states[:, 0]]
        for i in range(1, n_chunks - 1):
            carried.append(carried[-1] * chunk_decay[:, i] + states[:, i])
        states_in = torch.stack(carried, dim=1).reshape(n, n_chunks - 1, d_inner, d_state)
        # y_i += exp(a_i) C_i . S_in (nothing enters the first chunk)
        y_off = (Cc[:, 1:] @ states_in.to(ssd_dtype).transpose(-1, -2)).float()
        from_start = torch.exp(a_cum[:, 1:].clamp(min=MIN_EXPONENT)).unsqueeze(-1)
        y_off = y_off.reshape(n, n_chunks - 1, q, nheads, headdim) * from_start
        y = torch.cat([y[:, :1], y[:, 1:] + y_off], dim=1)

    y = y.reshape(n, n_chunks * q, nheads, headdim)[:, :length] \
        + xc.reshape(n, n_chunks * q, nheads, headdim)[:, :length] * D.view(nheads, 1)
    return gated_rmsnorm_reference(y.reshape(n, length, d_inner), z, norm_weight,
                                   norm_eps).to(out_dtype)


def _merge_inputs(x: torch.Tensor, forward: torch.Tensor, backward: torch.Tensor,
                  out_dtype: torch.dtype) -> torch.Tensor:
    """[x + forward; x + backward reversed along l] in `out_dtype`, the sums in float32.
    Args: (n, l, d) each. Returns (n, l, 2 d)."""
    return torch.cat([x + forward.float(), x + backward.float().flip(1)], dim=-1).to(out_dtype)


def _add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x + y.float()


def _compiled(name: str, proj_dtype: torch.dtype = torch.float32) -> Callable[..., torch.Tensor]:
    """The compiled version of one of this module's functions for this thread count
    (`torch.get_num_threads()`), made on first use.

    One compilation per input shape (`dynamic=False`: the chunking is planned for the
    length); a model on one chunk length needs three (the time axis, the band axis in
    groups, the last group). Past torch._dynamo's recompile limit (8 per code object) a
    function runs uncompiled (same result, slower) with a warning from torch, so each
    `proj_dtype` and thread count compiles a copy of the function's code of its own: a
    process that runs both compiled variants (and a second model, as
    `benchmarks/cpu_speed.py` does) stays within the limit.

    The thread count is TorchInductor's `cpp.threads` option: its C++ kernels are built
    for one count (`num_threads(N)` in their OpenMP pragmas), and torch 2.11's on-disk
    cache left an implicit count out of its key, so a later process with another count
    ran the kernels built for the first (measured on the H200 host's Xeon, int8-compiled,
    paper model, 8 s chunk: 16 threads on 2-thread kernels 13.3 s instead of 4.4 s; 2
    threads on 16-thread kernels 24 s, on their own 15.5-18.3 s). As an option, the
    count is in the key.
    """
    return _compiled_for(name, proj_dtype, torch.get_num_threads())


@functools.lru_cache(maxsize=None)
def _compiled_for(name: str, proj_dtype: torch.dtype, threads: int
                  ) -> Callable[..., torch.Tensor]:
    function = {"pre_norm": _pre_norm, "pre_norm_reversed": _pre_norm_reversed,
                "mixer_core": _mixer_core, "merge_inputs": _merge_inputs, "add": _add}[name]
    copy_ = types.FunctionType(function.__code__.replace(), function.__globals__,
                               f"{function.__name__}_{str(proj_dtype)[6:]}_{threads}",
                               function.__defaults__, function.__closure__)
    return torch.compile(copy_, dynamic=False, options={"cpp.threads": threads})


class CompiledBiMamba2(nn.Module):
    """`BiMamba2.forward` for inference on a CPU, element-wise work compiled.

    With `proj_dtype` float32 it shares the block's parameters: `in_proj`/`out_proj` of
    each direction are the mixers' own `nn.Linear` modules and `linear` is the 1x1
    ConvTranspose1d as an `nn.Linear`, so that `torch.ao.quantization.quantize_dynamic`
    can replace all five with int8 versions. With bfloat16 these five are bfloat16
    copies of their own (the block is left unchanged).

    Args:
        block: the `BiMamba2` to run (float32, on the CPU).
        ssd_dtype: dtype of the scan's matrix products: torch.float32 or torch.bfloat16.
        proj_dtype: dtype of the five projections' weights, inputs and outputs:
            torch.float32 or torch.bfloat16.

    Raises:
        ValueError: ssd_dtype or proj_dtype is neither.
    """

    #: Sequences run in groups of about `tokens_per_group` tokens (as `BiMamba2` on the
    #: CPU: `plan.CPU_TOKENS_PER_GROUP` by default). Larger groups are faster only where the
    #: allocator keeps freed memory: paper model, 8 s chunk, 2-core EPYC, glibc keeping it,
    #: interleaved processes: 1024 -> 14.6 / 15.3 s, 16384 -> 13.1 / 13.0 s (peak RSS 1.1
    #: -> 2.0 GB); with glibc's defaults 16384 took 32.1 s (10.4 M page faults: its larger
    #: buffers go back to the kernel and are zero-filled again). `build_cpu_variant` asks
    #: for `LARGE_GROUP` after `keep_freed_memory()`.
    LARGE_GROUP = 16384

    def __init__(self, block: BiMamba2, ssd_dtype: torch.dtype = torch.float32,
                 proj_dtype: torch.dtype = torch.float32,
                 tokens_per_group: int = CPU_TOKENS_PER_GROUP) -> None:
        super().__init__()
        self.tokens_per_group = tokens_per_group
        for name, dtype in (("ssd_dtype", ssd_dtype), ("proj_dtype", proj_dtype)):
            if dtype not in (torch.float32, torch.bfloat16):
                raise ValueError(f"CompiledBiMamba2: {name} must be torch.float32 or "
                                 f"torch.bfloat16, got {dtype}.")
        self.ssd_dtype = ssd_dtype
        self.proj_dtype = proj_dtype
        norms, mixers, linear = block.view()
        self.norms = nn.ModuleList(norms)
        self.mixers = nn.ModuleList(mixers)
        weight = linear.weight  # (2 d, d, 1): a kernel-1 ConvTranspose1d
        self.linear = nn.Linear(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            self.linear.weight.copy_(weight[:, :, 0].t())
            self.linear.bias.copy_(linear.bias)
        if proj_dtype == torch.bfloat16:
            self.in_projs = nn.ModuleList(
                copy.deepcopy(mixer.in_proj).to(proj_dtype) for mixer in self.mixers)
            self.out_projs = nn.ModuleList(
                copy.deepcopy(mixer.out_proj).to(proj_dtype) for mixer in self.mixers)
            self.linear.to(proj_dtype)

    def _direction(self, x: torch.Tensor, index: int) -> torch.Tensor:
        norm, mixer = self.norms[index], self.mixers[index]
        # the mixers' own modules: quantize_dynamic may have replaced them since __init__
        in_proj, out_proj = ((mixer.in_proj, mixer.out_proj) if self.proj_dtype == torch.float32
                             else (self.in_projs[index], self.out_projs[index]))
        u = _compiled("pre_norm_reversed" if index else "pre_norm", self.proj_dtype)(
            x, norm.weight, norm.eps, self.proj_dtype)
        taps = mixer.conv1d.weight.shape[-1]
        y = _compiled("mixer_core", self.proj_dtype)(
            in_proj(u), mixer.conv1d.weight.view(-1, taps).t(), mixer.conv1d.bias,
            mixer.dt_bias, -torch.exp(mixer.A_log.float()), mixer.D, mixer.norm.weight,
            mixer.norm.eps, mixer.d_state, mixer.nheads, scan_chunk(x.shape[1]),
            self.ssd_dtype, self.proj_dtype)
        return out_proj(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        both = _compiled("merge_inputs", self.proj_dtype)(
            x, self._direction(x, 0), self._direction(x, 1), self.proj_dtype)
        return _compiled("add", self.proj_dtype)(x, self.linear(both))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, plan: object = None) -> torch.Tensor:
        """Args: x (n, l, d) on the CPU (bfloat16 is taken as float32); plan: the model's
        `ExecutionPlan`, unused (this block has one path). Returns: (n, l, d) float32,
        without autograd history (inference only)."""
        del plan
        x = x.float()  # (under autocast the band split hands the first block bfloat16)
        group = max(1, self.tokens_per_group // x.shape[1])
        if x.shape[0] <= group:
            return self._forward(x)
        return torch.cat([self._forward(part) for part in x.split(group)])
