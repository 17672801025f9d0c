"""The quality guard of the CPU inference variants (`inference.cpu_variants`): how far a
variant's stems are from the float32 model's on whole tracks, in uSDR and in samples.

A variant enters `cpu_variants.PREFERENCE` only after this guard on rendered vocals (uSDR
within 0.1 dB of fp32, or outputs within 1e-4 of the peak for onnx-fp32;
`benchmarks/cpu_speed.py`, `tests/test_cpu_variants.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..inference.chunked import separate
from .metrics import usdr

__all__ = ["quality_guard"]


def quality_guard(reference: nn.Module, variant: nn.Module, tracks: Sequence[tuple[torch.Tensor,
                  torch.Tensor]], *, chunk_samples: int, stem: int = 0) -> dict[str, float]:
    """How far `variant` is from `reference` on whole tracks (the paper's chunking).

    Args:
        reference: the float32 model.
        variant: the variant to check (same stems).
        tracks: (mixture (c, samples), target (c, samples)) pairs, e.g. rendered vocals.
        chunk_samples: chunk length for `inference.separate`.
        stem: which output stem the targets belong to.

    Returns:
        {"usdr_reference", "usdr_variant": mean uSDR over tracks in dB, "usdr_delta_db":
        variant minus reference, "max_error_over_peak": max |variant - reference| over
        the largest |reference| sample, over all tracks}.
    """
    scores: dict[str, list[float]] = {"reference": [], "variant": []}
    error = peak = 0.0
    for mixture, target in tracks:
        ref = separate(reference, mixture, chunk_samples)[stem]
        var = separate(variant, mixture, chunk_samples)[stem]
        scores["reference"].append(usdr(target, ref))
        scores["variant"].append(usdr(target, var))
        error = max(error, (var - ref).abs().max().item())
        peak = max(peak, ref.abs().max().item())
    mean_ref = sum(scores["reference"]) / len(tracks)
    mean_var = sum(scores["variant"]) / len(tracks)
    return {"usdr_reference": mean_ref, "usdr_variant": mean_var,
            "usdr_delta_db": mean_var - mean_ref, "max_error_over_peak": error / max(peak, 1e-30)}
