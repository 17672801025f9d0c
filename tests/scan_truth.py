"""The scan kernels' accuracy yardstick, shared by the interpreter checks of `short_scan`
and `long_scan` (imported by their child-process scripts): a kernel's output and gradients
against `ssd_reference` in float64, next to the float32 reference's own distance from it."""

from __future__ import annotations

import torch

from bsmamba2_plugin.network.ssd import ssd_reference

NAMES = ("y", "dx", "ddt", "dA", "dB", "dC", "dD", "ddt_bias")


def errors_to_float64(got, leaves, probe):
    """(name, kernel error, float32 reference error) for each of `got` (the output, then the
    gradients of (output * probe).sum() for the leaves x, dt, A, B, C, D, dt_bias), each
    error the largest difference to float64 relative to the float64 tensor's largest value."""
    runs = []
    for dtype in (torch.float64, torch.float32):
        wide = [t.detach().to(dtype).requires_grad_(True) for t in leaves]
        yr = ssd_reference(*wide[:5], wide[5], dt_bias=wide[6])
        runs.append([yr, *torch.autograd.grad((yr * probe.to(dtype)).sum(), wide)])
    want, ref32 = runs
    errors = []
    for name, a, b, r in zip(NAMES, got, want, ref32):
        scale = b.abs().max().clamp_min(1e-12)
        errors.append((name, ((a.double() - b).abs().max() / scale).item(),
                       ((r.double() - b).abs().max() / scale).item()))
    return errors
