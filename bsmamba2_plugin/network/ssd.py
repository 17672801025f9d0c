"""The Mamba2 scan (SSD, state-space duality) and gated RMSNorm, in two tiers.

Notation (Dao & Gu, "Transformers are SSMs", arXiv 2405.21060), per head h with
state S_t in R^{P x N} (P = headdim, N = d_state) and S_0 = 0:

    dt_t = softplus(dt_raw_t + dt_bias_h)          a_h = A_h < 0
    S_t  = exp(dt_t * a_h) * S_{t-1} + dt_t * x_t B_t^T
    y_t  = S_t C_t + D_h * x_t

`ssd_reference` computes this in chunks of Q steps: inside a chunk through the
quadratic ("attention-like") form, across chunks through the recurrence on chunk
states. It is pure PyTorch, runs on any device and any length, accumulates in
float32 (float64 stays float64), and holds no tensor larger than one (Q x Q) block
per chunk and head. Every decay factor it forms is exp(x) with x <= 0, so nothing
overflows for any parameters; decay exponents below -60 are raised to -60
(exp(-60) ~ 1e-26, far under float32 resolution) so that the CPU never runs into
denormal numbers, which made it 3x slower in measurements. The running decay sums
are kept in float64 (they are small) so that their differences stay exact however
much a chunk decays (float32 sums cost 3e-5 relative error in the gradient of A).

`ssd_kernel` is a thin adapter to mamba_ssm's Triton kernel with the same
arguments; it is the only place (with `gated_rmsnorm_kernel`) that imports mamba_ssm,
and it does so lazily, inside the call.

Axes: b batch, l sequence, c chunks, q steps in a chunk, h heads, p head dim,
g groups (B and C are shared by the heads of one group), n state.

Deviations from mamba_ssm's own reference (`ssd_chunk_scan_combined_ref`): no
exp of a positive number is ever formed, so no inf * 0 = NaN reaches the gradients;
and lengths need not be a multiple of the chunk (the tail is padded at the end with
dt = 0, which touches no real output, and cut off).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import math
import sys
import types
from typing import NamedTuple

import torch
from torch.nn import functional as F

from ..errors import UserValueError
from . import kernel_limits
from .config import BACKENDS

__all__ = [
    "KERNEL_CHUNK_SIZE",
    "MAMBA_INSTALL_HINT",
    "MIN_EXPONENT",
    "REFERENCE_SINGLE_CHUNK_MAX",
    "Backend",
    "describe_backend",
    "gated_rmsnorm_kernel",
    "gated_rmsnorm_reference",
    "get_backend",
    "load_mamba_triton",
    "reference_chunk_size",
    "resolve_backend",
    "ssd_kernel",
    "ssd_reference",
]

logger = logging.getLogger("bsmamba2_plugin")

KERNEL_CHUNK_SIZE = 256  # mamba_ssm's Mamba2 default
_REFERENCE_CHUNK = 64  # time axis: fastest on CPU
REFERENCE_SINGLE_CHUNK_MAX = 96  # up to here (the band axis) one block beats chunking
MIN_EXPONENT = -60.0  # decay exponents are clamped here: no denormals, no visible change

MAMBA_INSTALL_HINT = (
    "The 'kernel' backend needs mamba_ssm (>= 2.2) and Triton on a CUDA machine. Install "
    "it with `pip install 'bsmamba2-plugin[kernel]'`, or, to skip compiling its CUDA "
    "extension (the Mamba2 kernels are pure Triton): `MAMBA_SKIP_CUDA_BUILD=TRUE "
    "MAMBA_FORCE_BUILD=TRUE pip install --no-build-isolation --no-deps mamba-ssm`. "
    "causal-conv1d is not needed. Or set model.backend to 'reference' (pure PyTorch, any "
    "device)."
)


# --------------------------------------------------------------------- reference
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, else the dtype itself (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def _ssd_inputs(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool
                ) -> tuple[torch.Tensor, ...]:
    """x, dt, A, B, C in the compute dtype (`_compute_dtype` of x), dt with its bias and
    softplus applied: the common start of the pure-PyTorch SSD scans."""
    compute = _compute_dtype(x.dtype)
    x, dt, A, B, C = (t.to(compute) for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.to(compute)
    if dt_softplus:
        dt = F.softplus(dt)
    return x, dt, A, B, C


def reference_chunk_size(seqlen: int) -> int:
    """Chunk length `ssd_reference` uses when none is given: short sequences (the
    62-band axis) are one block, longer ones (the time axis) use chunks of 64."""
    return seqlen if seqlen <= REFERENCE_SINGLE_CHUNK_MAX else _REFERENCE_CHUNK


def _check_ssd_args(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                    C: torch.Tensor, D: torch.Tensor | None, dt_bias: torch.Tensor | None,
                    chunk_size: int | None) -> None:
    if x.dim() != 4:
        raise ValueError(f"ssd: x must be (batch, seqlen, nheads, headdim), got shape "
                         f"{tuple(x.shape)}.")
    batch, seqlen, nheads, _ = x.shape
    if dt.shape != (batch, seqlen, nheads):
        raise ValueError(f"ssd: dt must be {(batch, seqlen, nheads)}, got {tuple(dt.shape)}.")
    if A.shape != (nheads,):
        raise ValueError(f"ssd: A must be ({nheads},), got {tuple(A.shape)}.")
    if B.dim() != 4 or B.shape[:2] != (batch, seqlen) or B.shape != C.shape:
        raise ValueError(f"ssd: B and C must both be (batch, seqlen, ngroups, dstate) with "
                         f"batch={batch}, seqlen={seqlen}; got {tuple(B.shape)} and "
                         f"{tuple(C.shape)}.")
    if nheads % B.shape[2]:
        raise ValueError(f"ssd: nheads={nheads} is not a multiple of ngroups={B.shape[2]}.")
    for name, t in (("D", D), ("dt_bias", dt_bias)):
        if t is not None and t.shape != (nheads,):
            raise ValueError(f"ssd: {name} must be ({nheads},), got {tuple(t.shape)}.")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"ssd: chunk_size must be a positive integer, got {chunk_size}.")


def ssd_reference(
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
    """Chunked SSD scan in pure PyTorch (any device, any length, >= float32 inside).

    Args:
        x: (b, l, h, p) inputs.
        dt: (b, l, h) step sizes, before `dt_bias` and softplus.
        A: (h,) negative decay rates (A = -exp(A_log)).
        B: (b, l, g, n) input projections; g divides h.
        C: (b, l, g, n) output projections.
        D: (h,) skip weights, or None.
        chunk_size: steps per chunk; None uses `reference_chunk_size(l)`.
        dt_bias: (h,) added to dt before the softplus, or None.
        dt_softplus: apply softplus to dt (+ dt_bias).

    Returns:
        y: (b, l, h, p) in the dtype of x.
    """
    _check_ssd_args(x, dt, A, B, C, D, dt_bias, chunk_size)
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    out_dtype = x.dtype
    x, dt, A, B, C = _ssd_inputs(x, dt, A, B, C, dt_bias, dt_softplus)
    compute = x.dtype

    q = min(chunk_size or reference_chunk_size(seqlen), seqlen)
    n_chunks = math.ceil(seqlen / q)
    pad = n_chunks * q - seqlen
    if pad:  # at the end: dt = 0 there, so the padded steps touch no real output
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))

    # Without autograd, intermediates are updated in place: fewer passes over memory,
    # which is what limits this function on a CPU.
    in_place = not (torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, dt, A, B, C, D, dt_bias)))
    heads_per_group = nheads // ngroups
    # Views, no copies: x (b, c, q, h, p), B and C (b, c, q, g, n), dt (b, c, q, h)
    xc = x.view(batch, n_chunks, q, nheads, headdim)
    Bc = B.view(batch, n_chunks, q, ngroups, dstate)
    Cc = C.view(batch, n_chunks, q, ngroups, dstate)
    dtc = dt.view(batch, n_chunks, q, nheads)
    # Decay summed from the chunk start, (b, c, q, h). Exponents exp(a_i - a_j) are
    # differences of these running sums; kept in float64 (tiny tensors) their rounding
    # does not grow with the chunk's total decay, which holds gradients at ~1e-7
    # (float32 sums gave 3e-5 on dA). MPS has no float64 and keeps float32.
    wide = compute if x.device.type == "mps" else torch.float64
    a_cum = torch.cumsum((dtc * A).to(wide), dim=2)
    a_heads = a_cum.transpose(-1, -2)  # (b, c, h, q)
    x_dt = xc * dtc.unsqueeze(-1)  # dt_j x_j, (b, c, q, h, p)

    # Inside each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(a_i - a_j) dt_j x_j,
    # head-major: one (q x q) @ (q x p) product per chunk and head.
    if ngroups == 1:
        CB = (Cc[..., 0, :] @ Bc[..., 0, :].transpose(-1, -2)).tril_().unsqueeze(2)
    else:
        CB = torch.einsum("bcign,bcjgn->bcgij", Cc, Bc).tril().repeat_interleave(
            heads_per_group, 2)  # (b, c, h, q, q), zero for j > i
    # The exponent is clamped to <= 0 so that the j > i entries, zeroed by the masked
    # CB, cannot overflow.
    if in_place:  # the difference is formed in float64 and written as float32 in one pass
        exponent = torch.empty(batch, n_chunks, nheads, q, q, dtype=compute, device=x.device)
        torch.sub(a_heads.unsqueeze(-1), a_heads.unsqueeze(-2), out=exponent)
        scores = exponent.clamp_(MIN_EXPONENT, 0.0).exp_().mul_(CB)
    else:
        exponent = (a_heads.unsqueeze(-1) - a_heads.unsqueeze(-2)).to(compute)
        scores = exponent.clamp(MIN_EXPONENT, 0.0).exp() * CB
    y = scores @ x_dt.transpose(2, 3).contiguous()  # (b, c, h, q, p)

    if n_chunks > 1:
        width = nheads * headdim
        # State each chunk hands on: sum_j exp(a_cum_last - a_cum_j) dt_j x_j B_j^T.
        to_end = _decay(a_cum[:, :, -1:] - a_cum, compute).unsqueeze(-1)  # (b, c, q, h, 1)
        x_end = (x_dt.mul_(to_end) if in_place else x_dt * to_end).view(
            batch, n_chunks, q, width)
        if ngroups == 1:  # one (h*p x q) @ (q x n) product per chunk
            states = (x_end.transpose(-1, -2) @ Bc[..., 0, :]).view(
                batch, n_chunks, nheads, headdim, dstate)
        else:
            states = torch.einsum("bcjhp,bcjhn->bchpn", x_end.view(xc.shape),
                                  Bc.repeat_interleave(heads_per_group, 3))
        # Recurrence across chunks on (b, h, p, n) states: S_in[c+1] = decay_c S_in[c] + S_c.
        chunk_decay = _decay(a_cum[:, :, -1], compute)[..., None, None]  # (b, c, h, 1, 1)
        if in_place:
            states_in = torch.empty_like(states[:, 1:])  # (b, c-1, h, p, n)
            states_in[:, 0] = states[:, 0]
            for c in range(1, n_chunks - 1):
                torch.addcmul(states[:, c], states_in[:, c - 1], chunk_decay[:, c],
                              out=states_in[:, c])
        else:
            carried = [states[:, 0]]
            for c in range(1, n_chunks - 1):
                carried.append(carried[-1] * chunk_decay[:, c] + states[:, c])
            states_in = torch.stack(carried, dim=1)  # (b, c-1, h, p, n)
        # y_i += exp(a_cum_i) C_i . S_in (nothing enters the first chunk)
        if ngroups == 1:
            y_off = Cc[:, 1:, :, 0] @ states_in.view(
                batch, n_chunks - 1, width, dstate).transpose(-1, -2)  # (b, c-1, q, h*p)
            y_off = y_off.view(batch, n_chunks - 1, q, nheads, headdim).transpose(2, 3)
        else:
            y_off = torch.einsum("bcihn,bchpn->bchip", Cc[:, 1:].repeat_interleave(
                heads_per_group, 3), states_in)
        from_start = _decay(a_heads[:, 1:], compute).unsqueeze(-1)  # (b, c-1, h, q, 1)
        if in_place:
            y[:, 1:].addcmul_(y_off, from_start)
        else:
            y = torch.cat([y[:, :1], y[:, 1:] + y_off * from_start], dim=1)

    # Back to token-major (b, l, h, p), adding the skip term D x on the way.
    y = y.transpose(2, 3).reshape(batch, n_chunks * q, nheads, headdim)[:, :seqlen]
    if D is not None:
        skip = D.to(compute).view(1, 1, nheads, 1)
        y = y.addcmul_(x[:, :seqlen], skip) if in_place else y + x[:, :seqlen] * skip
    return y.to(out_dtype)


def _decay(exponent: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """exp(exponent) in `dtype` for exponent <= 0, clamped at exp(-60) (no denormals)."""
    return torch.exp(exponent.clamp(min=MIN_EXPONENT).to(dtype))


def gated_rmsnorm_reference(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor,
                            eps: float = 1e-5, *, inplace: bool = False) -> torch.Tensor:
    """RMSNorm(y * silu(z)) * weight over the last dim, in float32 or wider (mamba's
    `norm_before_gate=False`, one group).

    Args:
        y, z: (..., d).
        weight: (d,).
        eps: added to the mean square.
        inplace: y and z may be overwritten (only without autograd; saves memory passes).

    Returns: (..., d) in the dtype of y.
    """
    compute = _compute_dtype(y.dtype)
    if not inplace or y.dtype != compute or z.dtype != compute:
        gated = y.to(compute) * F.silu(z.to(compute))
        normed = gated * torch.rsqrt(gated.square().mean(-1, keepdim=True) + eps)
        return (normed * weight.to(compute)).to(y.dtype)
    gated = y.mul_(F.silu(z, inplace=True))
    mean_square = torch.linalg.vector_norm(gated, dim=-1, keepdim=True).square_().div_(
        gated.shape[-1])
    gated.mul_(mean_square.add_(eps).rsqrt_())
    return gated.mul_(weight.to(compute))


# ------------------------------------------------------------------------ kernel
@functools.lru_cache(maxsize=1)
def load_mamba_triton() -> types.SimpleNamespace:
    """Import mamba_ssm's Triton SSD and gated-norm kernels (once).

    A normally installed mamba_ssm is used as is. A mamba_ssm built without its CUDA
    extension (MAMBA_SKIP_CUDA_BUILD) cannot run its top-level `__init__`, which imports
    the Mamba-1 CUDA scan; its Mamba2 kernels are plain Triton in sub-packages with empty
    `__init__` files, so we then load those under a bare package object.

    Raises:
        ModuleNotFoundError: mamba_ssm or triton is not installed (with the install hint).
        ImportError: they are installed but the kernels cannot be imported.
    """
    for name in ("mamba_ssm", "triton"):
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"{name} is not installed. {MAMBA_INSTALL_HINT}",
                                      name=name)
    version = importlib.metadata.version("mamba_ssm")
    _cache_autotuning()
    how = "mamba_ssm package"
    try:
        importlib.import_module("mamba_ssm")
    except ImportError as top_error:
        if "mamba_ssm" in sys.modules:
            raise
        spec = importlib.util.find_spec("mamba_ssm")
        assert spec is not None and spec.submodule_search_locations is not None
        package = types.ModuleType("mamba_ssm")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__version__ = version  # type: ignore[attr-defined]
        sys.modules["mamba_ssm"] = package
        how = (f"Triton sub-modules only (top-level mamba_ssm import failed: "
               f"{type(top_error).__name__}: {top_error})")
    try:
        ssd_combined = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
        layernorm_gated = importlib.import_module("mamba_ssm.ops.triton.layernorm_gated")
    except ImportError as error:
        raise ImportError(f"mamba_ssm {version} is installed but its Triton kernels do not "
                          f"import ({type(error).__name__}: {error}). {MAMBA_INSTALL_HINT}"
                          ) from error
    ops = types.SimpleNamespace(
        mamba_chunk_scan_combined=ssd_combined.mamba_chunk_scan_combined,
        rmsnorm_fn=layernorm_gated.rmsnorm_fn,
        version=version,
        how=how,
    )
    # the same scan as two halves (what mamba_chunk_scan_combined's autograd function
    # calls), for a backward pass that keeps only the scan's output (gradient_checkpointing
    # "selective"); private in mamba_ssm 2.x: without them that backward recomputes the
    # scan under autograd instead (same numbers, slower)
    fwd = getattr(ssd_combined, "_mamba_chunk_scan_combined_fwd", None)
    bwd = getattr(ssd_combined, "_mamba_chunk_scan_combined_bwd", None)
    if fwd is not None and bwd is not None:

        def scan_fwd(x, dt, A, B, C, chunk_size, *, D, dt_bias, dt_softplus):
            return fwd(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias,
                       dt_softplus=dt_softplus)[0]

        def scan_bwd(dy, y, x, dt, A, B, C, chunk_size, *, D, dt_bias, dt_softplus):
            dx, ddt, dA, dB, dC, dD, _, ddt_bias, _ = bwd(
                dy, x, dt, A, B, C, y, chunk_size, D=D, dt_bias=dt_bias,
                dt_softplus=dt_softplus)
            return dx, ddt, dA, dB, dC, dD, ddt_bias

        ops.scan_halves = (scan_fwd, scan_bwd)
    return ops


def _cache_autotuning() -> None:
    """Keep Triton's autotuning results on disk (Triton's cache folder, ~/.triton/cache or
    TRITON_CACHE_DIR), so that mamba_ssm's kernels are tuned once per machine, not in every
    run (the first training step of the paper model spends ~2 minutes there on an H200).
    Must run before mamba_ssm's kernel modules are imported: their autotuners read the
    setting when they are created. An explicit TRITON_CACHE_AUTOTUNING=0 is respected."""
    import os

    if os.environ.get("TRITON_CACHE_AUTOTUNING") is not None:
        return
    knobs = getattr(importlib.import_module("triton"), "knobs", None)
    autotuning = getattr(knobs, "autotuning", None)
    if autotuning is not None and hasattr(autotuning, "cache"):
        autotuning.cache = True


def ssd_kernel(
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
    """Same contract as `ssd_reference`, computed by mamba_ssm's Triton kernels (CUDA).

    A batch too large for one call of the kernels (32-bit offsets: `kernel_limits`) runs
    in several calls, which gives the same numbers.

    Raises:
        kernel_limits.KernelSizeError: one sequence is too long for one call.
    """
    _check_ssd_args(x, dt, A, B, C, D, dt_bias, chunk_size)
    ops = load_mamba_triton()
    batch, seqlen, nheads, headdim = x.shape
    chunk = chunk_size or KERNEL_CHUNK_SIZE
    per_call = kernel_limits.sequences_per_call(
        seqlen, nheads=nheads, headdim=headdim, ngroups=B.shape[2], d_state=B.shape[3],
        chunk=chunk, short_scan=False, sm_count=kernel_limits.sm_count(x.device))
    kernel_limits.check_length(per_call, seqlen, "sequences given to ssd_kernel")

    def scan(x, dt, B, C):
        return ops.mamba_chunk_scan_combined(x, dt, A.float(), B, C, chunk, D=D,
                                             dt_bias=dt_bias, dt_softplus=dt_softplus)

    if batch <= per_call:
        return scan(x, dt, B, C)
    sizes = kernel_limits.split_sizes(batch, per_call)
    return torch.cat([scan(*parts) for parts in zip(*(t.split(sizes) for t in (x, dt, B, C)))])


def gated_rmsnorm_kernel(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor,
                         eps: float = 1e-5, *, inplace: bool = False) -> torch.Tensor:
    """Same contract as `gated_rmsnorm_reference`, by mamba_ssm's Triton kernel (which
    never overwrites its inputs), in as many calls as its 32-bit offsets need."""
    ops = load_mamba_triton()
    shape = y.shape
    y, z = y.reshape(-1, shape[-1]), z.reshape(-1, shape[-1])
    sizes = kernel_limits.split_sizes(y.shape[0], kernel_limits.rows_per_call(shape[-1]))
    out = [ops.rmsnorm_fn(y_part, weight, None, z=z_part, eps=eps, group_size=None,
                          norm_before_gate=False)
           for y_part, z_part in zip(y.split(sizes), z.split(sizes))]
    return (out[0] if len(out) == 1 else torch.cat(out)).view(shape)


# ----------------------------------------------------------------------- backends
class Backend(NamedTuple):
    """The functions one backend provides; both backends take identical arguments."""

    name: str
    ssd: object  # Callable with the signature of ssd_reference
    gated_rmsnorm: object  # Callable with the signature of gated_rmsnorm_reference


_BACKENDS = {
    "reference": Backend("reference", ssd_reference, gated_rmsnorm_reference),
    "kernel": Backend("kernel", ssd_kernel, gated_rmsnorm_kernel),
}


def describe_backend(requested: str, device: torch.device | str) -> tuple[str, str]:
    """Which backend `requested` would run on `device`, and why (never raises for
    'auto'; raises for an explicit 'kernel' that cannot run).

    Returns:
        (name, reason) with name "reference" or "kernel".
    """
    if requested not in BACKENDS:
        raise UserValueError(f"model.backend: expected one of {', '.join(BACKENDS)}, got "
                             f"{requested!r}.")
    device = torch.device(device)
    if requested == "reference":
        return "reference", "model.backend is 'reference'"
    if requested == "kernel":
        if device.type != "cuda":
            raise UserValueError(f"model.backend is 'kernel', but the tensors are on "
                                 f"{device.type!r}; mamba_ssm's kernels need CUDA. Fix: move the "
                                 f"model to a CUDA device, or set model.backend to 'auto' or "
                                 f"'reference'.")
        ops = load_mamba_triton()
        return "kernel", f"model.backend is 'kernel' (mamba_ssm {ops.version}, {ops.how})"
    if device.type != "cuda":
        return "reference", f"tensors are on {device.type!r}; the mamba_ssm kernels need CUDA"
    try:
        ops = load_mamba_triton()
    except ModuleNotFoundError as error:
        return "reference", f"CUDA, but {error.name} is not installed"
    except ImportError as error:
        logger.warning("bsmamba2: mamba_ssm is installed but unusable, using the reference "
                       "backend: %s", error)
        return "reference", f"CUDA, but mamba_ssm does not import ({error})"
    return "kernel", f"CUDA tensors and mamba_ssm {ops.version} imports ({ops.how})"


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """Name of the backend to run for `requested` on `device`.

    Decided once per (requested, device type) and process, and logged then
    (`_decided`). Under torch.compile it runs once while tracing and its answer is a
    constant of the graph (traced, its log call and imports would split the graph):
    marked as `torch.compiler.assume_constant_result` marks, without importing
    torch._dynamo (which imports triton) at model import; tests/test_compile.py checks
    the effect, tests/test_import.py that building a model imports no triton.

    Raises:
        ValueError: 'kernel' requested for a non-CUDA device, or an unknown name.
        ModuleNotFoundError: 'kernel' requested without mamba_ssm (message has the hint).
    """
    return _decided(requested, torch.device(device).type)


resolve_backend._dynamo_marked_constant = True  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=None)
def _decided(requested: str, device_type: str) -> str:
    name, reason = describe_backend(requested, device_type)
    logger.info("bsmamba2: using the %s Mamba2 backend (%s).", name, reason)
    return name


def get_backend(name: str) -> Backend:
    """The `Backend` for a resolved name ('reference' or 'kernel')."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown resolved backend {name!r}; expected 'reference' or "
                         f"'kernel'.") from None
