"""Which code a BSMamba2 runs on a device: one immutable plan, resolved from the config.

Every decision about the code path is made here, from config fields and the device, and
nowhere else: `BSMamba2.forward` resolves an `ExecutionPlan` for its input's device and
hands it to each BiMamba2 block, which only reads it (a block called on its own resolves
the same plan from its config). No environment variable and no class attribute takes part.
`bsmamba2 doctor` and `bsmamba2 summary` print the plan (`ExecutionPlan.describe`).

    decision        from                                    values
    backend         model.backend and the device (ssd.resolve_backend, logged once)
                                                            reference | kernel
    fused_block     model.fused_block, kernel backend only  both directions in one pass
    short_scan      model.short_scan, fused kernel path     sequences of <= 64 steps (the
                                                            band axis) through short_scan
    long_scan       model.long_scan, fused kernel path      sequences of > 64 steps (the
                                                            time axis): forward through
                                                            long_scan
    long_scan_backward  model.long_scan_backward, with      their backward pass: mamba_ssm
                    long_scan                               | bsmamba2 (long_scan's)
    gated_norm      model.gated_norm, fused kernel path     bsmamba2 (ours) | mamba_ssm
    packed_gate     model.packed_gate, our gated norm       the norm reads the gate z
                                                            from the projection (no copy;
                                                            inference, selective recompute)
    recompute       model.gradient_checkpointing            none | block | selective
                    ("selective" needs the fused kernel path; elsewhere it is "block")
    cpu_grouping    the device (CPU)                        sequences in groups of about
                                                            CPU_TOKENS_PER_GROUP tokens
                                                            without autograd

Recomputation and CPU grouping act only while gradients are, or are not, taken: that is
decided at each call (torch.is_grad_enabled()), not here.
"""

from __future__ import annotations

import dataclasses

import torch

from .config import BSMamba2Config
from .ssd import describe_backend, resolve_backend

__all__ = ["CPU_TOKENS_PER_GROUP", "ExecutionPlan", "describe_plan", "resolve_plan"]

#: Without autograd on a CPU, a block runs its sequences in groups of about this many
#: tokens, so that each group's intermediates stay in the CPU caches (measured 2-3x faster
#: than one big batch).
CPU_TOKENS_PER_GROUP = 1024


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
    """How the BiMamba2 blocks of a model run on one device.

    Attributes:
        device_type: "cpu", "cuda", "mps", ...
        backend: "reference" (pure PyTorch) or "kernel" (mamba_ssm's Triton kernels).
        fused_block: kernel backend: both directions of a block in one pass
            (`bimamba2_fused`); False: one direction after the other.
        short_scan: fused kernel path: sequences of at most 64 steps through `short_scan`
            instead of mamba_ssm's chunked scan.
        long_scan: fused kernel path: the forward pass of sequences of more than 64 steps
            through `long_scan` (where its widths fit).
        long_scan_backward: with `long_scan`, their backward pass: "mamba_ssm" (its
            chunked scan's) or "bsmamba2" (`long_scan_backward`); None without long_scan.
        gated_norm: fused kernel path: whose kernels compute the gated RMSNorm,
            "bsmamba2" (`gated_norm.py`) or "mamba_ssm"; None elsewhere.
        packed_gate: fused kernel path with our gated norm: without autograd and under
            selective recompute the norm reads the gate z from the projection (no copy of
            it) and its backward writes z's gradient into the projection's.
        recompute: while gradients are taken: "none" keeps every activation, "block"
            recomputes whole blocks in the backward pass, "selective" keeps each block's
            input and scan output (fused kernel path only).
        cpu_tokens_per_group: without autograd on a CPU, sequences run in groups of about
            this many tokens; None elsewhere.
    """

    device_type: str
    backend: str
    fused_block: bool
    short_scan: bool
    long_scan: bool
    long_scan_backward: str | None
    gated_norm: str | None
    recompute: str
    packed_gate: bool
    cpu_tokens_per_group: int | None

    def describe(self, reason: str = "") -> list[str]:
        """One line per decision, for `doctor` and `summary`."""
        kernel = self.backend == "kernel"
        lines = [f"backend: {self.backend}" + (f" ({reason})" if reason else "")]
        if kernel:
            lines.append("BiMamba2 block: " + ("both directions in one pass (fused)"
                                               if self.fused_block else
                                               "one direction after the other"))
        if kernel and self.fused_block:
            lines.append("band axis (<= 64 steps): " + ("short_scan" if self.short_scan
                                                        else "mamba_ssm chunked scan"))
            backward = "long_scan" if self.long_scan_backward == "bsmamba2" else "mamba_ssm"
            lines.append("time axis (> 64 steps): " + (
                f"long_scan forward, {backward} backward" if self.long_scan
                else "mamba_ssm chunked scan"))
            lines.append("gated norm: " + ("ours (gated_norm.py)" if self.gated_norm == "bsmamba2"
                                           else "mamba_ssm's rmsnorm_fn")
                         + ("; the gate read from the projection (inference, selective)"
                            if self.packed_gate else ""))
        lines.append("while training: " + {
            "none": "every activation kept",
            "block": "whole blocks recomputed in the backward pass",
            "selective": "block input and scan output kept, the rest recomputed",
        }[self.recompute])
        if self.cpu_tokens_per_group:
            lines.append(f"inference on the CPU: sequences in groups of about "
                         f"{self.cpu_tokens_per_group} tokens")
        return lines


def resolve_plan(config: BSMamba2Config, device: torch.device | str) -> ExecutionPlan:
    """The plan for `config` on `device`.

    Raises:
        ValueError: model.backend is 'kernel' and the device is not CUDA.
        ModuleNotFoundError: model.backend is 'kernel' and mamba_ssm is missing.
    """
    device = torch.device(device)
    backend = resolve_backend(config.backend, device)
    fused = backend == "kernel" and config.fused_block
    recompute = config.gradient_checkpointing
    if recompute == "selective":
        recompute = "selective" if fused else "block"
    else:
        recompute = "block" if recompute else "none"
    return ExecutionPlan(
        device_type=device.type, backend=backend, fused_block=fused,
        short_scan=fused and config.short_scan, long_scan=fused and config.long_scan,
        long_scan_backward=config.long_scan_backward if fused and config.long_scan else None,
        gated_norm=config.gated_norm if fused else None, recompute=recompute,
        packed_gate=fused and config.gated_norm == "bsmamba2" and config.packed_gate,
        cpu_tokens_per_group=CPU_TOKENS_PER_GROUP if device.type == "cpu" else None)


def describe_plan(config: BSMamba2Config, device: torch.device | str) -> list[str]:
    """`resolve_plan(config, device).describe(...)` with the reason for the backend."""
    _, reason = describe_backend(config.backend, device)
    return resolve_plan(config, device).describe(reason)
