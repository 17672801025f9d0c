"""Whole-track separation in chunks: the paper's protocol and overlap-add.

Paper protocol (official `separator.py`, SPEC.md section 4): cut the track into
non-overlapping chunks of d seconds, zero-pad the end to a whole number of chunks, run
the model on every chunk, concatenate and cut back to the track length. Nothing is
windowed, so every sample comes from exactly one chunk, unchanged.

msst's `num_overlap: 1` is meant to be the same, but its linear fade window is zero at
both chunk edges, so the first and last sample of every inner chunk come out as 0/0
-> 0 (SPEC.md section 4). `separate(..., overlap=1)` has no such edge.

Overlap-add (`overlap = n > 1`): hop = chunk / n, a Hann window per chunk, and the
track padded by chunk - hop zeros at both ends so that every real sample is covered by
n windows; the sum is divided by the summed window, which is positive everywhere inside.

Any model with the msst contract works: `model(x)` with x (b, c, samples) returns
(b, stems, c, samples).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.nn import functional as F

__all__ = ["separate"]


def _batches(chunks: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, chunks.shape[0], batch_size):
        yield chunks[start:start + batch_size]


def separate(model: torch.nn.Module, mixture: torch.Tensor, chunk_samples: int, *,
             overlap: int = 1, batch_size: int = 4, device: torch.device | str | None = None,
             progress: bool = False) -> torch.Tensor:
    """Separate a whole track chunk by chunk.

    Args:
        model: maps (b, c, chunk_samples) to (b, stems, c, chunk_samples).
        mixture: (c, samples) waveform of any length >= 1.
        chunk_samples: chunk length d in samples.
        overlap: 1 = the paper's non-overlapping protocol; n > 1 = overlap-add with hop
            chunk_samples / n.
        batch_size: chunks per model call.
        device: where the model runs (default: the model's device); the result is on CPU.
        progress: show a tqdm bar over chunks.

    Returns:
        (stems, c, samples) float32 estimates on the CPU.

    Raises:
        ValueError: bad shapes or arguments.
    """
    if mixture.dim() != 2 or mixture.shape[-1] < 1:
        raise ValueError(f"separate: mixture must be (channels, samples) with samples >= 1, got "
                         f"{tuple(mixture.shape)}.")
    if chunk_samples < 1 or overlap < 1 or batch_size < 1:
        raise ValueError(f"separate: chunk_samples, overlap and batch_size must be positive, got "
                         f"{chunk_samples}, {overlap}, {batch_size}.")
    if overlap > 1 and chunk_samples % overlap:
        raise ValueError(f"separate: chunk_samples {chunk_samples} is not divisible by overlap "
                         f"{overlap}; pick a chunk that is.")
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    channels, samples = mixture.shape
    hop = chunk_samples // overlap
    lead = chunk_samples - hop  # 0 for the paper protocol
    n_chunks = math.ceil((samples + lead) / hop)
    total = (n_chunks - 1) * hop + chunk_samples
    padded = F.pad(mixture.float(), (lead, total - lead - samples))
    chunks = padded.unfold(-1, chunk_samples, hop).permute(1, 0, 2)  # (n, c, chunk)

    window = (torch.hann_window(chunk_samples, periodic=True) if overlap > 1
              else torch.ones(chunk_samples))
    out: torch.Tensor | None = None
    weight = torch.zeros(total)
    done = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_chunks, desc="separating", unit="chunk")
    with torch.inference_mode():
        for batch in _batches(chunks, batch_size):
            estimates = model(batch.to(device)).float().cpu()  # (b, stems, c, chunk)
            if out is None:
                out = torch.zeros(estimates.shape[1], channels, total)
            for i in range(estimates.shape[0]):
                start = (done + i) * hop
                out[..., start:start + chunk_samples] += estimates[i] * window
                weight[start:start + chunk_samples] += window
            done += estimates.shape[0]
            if bar is not None:
                bar.update(estimates.shape[0])
    if bar is not None:
        bar.close()
    assert out is not None
    if overlap > 1:
        out = out / weight.clamp_min(1e-8)
    return out[..., lead:lead + samples].contiguous()
