"""Whole-track separation in chunks: the paper's protocol and overlap-add.

Paper protocol (official `separator.py`; docs/architecture.md): cut the track into
non-overlapping chunks of d seconds, zero-pad the end to a whole number of chunks, run
the model on every chunk, concatenate and cut back to the track length. Nothing is
windowed, so every sample comes from exactly one chunk, unchanged.

msst's `num_overlap: 1` is meant to be the same, but its linear fade window is zero at
both chunk edges, so the first and last sample of every inner chunk come out as 0/0
-> 0 (docs/architecture.md, Inference protocol). `separate(..., overlap=1)` has no such
edge, and with the plugin installed msst's `demix` runs this same protocol for
`num_overlap: 1` (`msst_integration.streaming`, issue 23).

Overlap-add (`overlap = n > 1`): hop = chunk / n, a Hann window per chunk, and the
track padded by chunk - hop zeros at both ends so that every real sample is covered by
n windows; the sum is divided by the summed window, which is positive everywhere inside.

Any model with the msst contract works: `model(x)` with x (b, c, samples) returns
(b, stems, c, samples).

Memory (issue 12): the track is never copied or padded as a whole. Each chunk is cut
from the input (zero padding added per chunk), its estimate is added straight into the
(stems, c, samples) result, and overlap-add divides each stretch by its window sum as
soon as no later chunk reaches it, so peak memory is the input, the result and a few
chunks, whatever the track length. A NaN or infinite input sample or model output is an
error, not NaN audio.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..errors import UserRuntimeError, UserValueError

__all__ = ["separate"]


def separate(model: torch.nn.Module, mixture: torch.Tensor, chunk_samples: int, *,
             overlap: int = 1, batch_size: int = 4, device: torch.device | str | None = None,
             progress: bool = False, autocast: torch.dtype | None = None) -> torch.Tensor:
    """Separate a whole track chunk by chunk.

    Args:
        model: maps (b, c, chunk_samples) to (b, stems, c, chunk_samples).
        mixture: (c, samples) waveform of any length >= 1; read, never copied whole.
        chunk_samples: chunk length d in samples.
        overlap: 1 = the paper's non-overlapping protocol; n > 1 = overlap-add with hop
            chunk_samples / n.
        batch_size: chunks per model call.
        device: where the model runs (default: the model's device); the result is on CPU.
        progress: show a tqdm bar over chunks.
        autocast: run the model under CUDA autocast with this dtype (as msst does with
            `training.use_amp`); ignored off CUDA. The result is float32 either way.

    Returns:
        (stems, c, samples) float32 estimates on the CPU.

    Raises:
        ValueError: bad shapes or arguments, or a NaN/Inf sample in `mixture`.
        RuntimeError: the model returned NaN/Inf for a finite chunk.
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
    window = (torch.hann_window(chunk_samples, periodic=True) if overlap > 1
              else torch.ones(chunk_samples))

    def read(index: int) -> torch.Tensor:
        """Chunk `index` of the track zero-padded by `lead` in front and to whole chunks."""
        start = index * hop - lead
        a, b = max(start, 0), min(start + chunk_samples, samples)
        piece = mixture[:, a:b].float()
        if not torch.isfinite(piece).all():
            bad = a + int(torch.nonzero(~torch.isfinite(piece).all(0))[0])
            raise UserValueError(f"separate: the mixture has a NaN or infinite sample at sample "
                                 f"{bad} (of {samples}). Fix: repair the file; nothing was "
                                 f"separated.")
        return F.pad(piece, (a - start, start + chunk_samples - b))

    out: torch.Tensor | None = None
    weight = torch.zeros(chunk_samples + hop * batch_size)  # window sums from `base` on
    base = 0  # first padded position not yet divided by its window sum

    def finalize(end: int) -> None:
        nonlocal base, weight
        a, b = max(base, lead), min(end, lead + samples)
        if overlap > 1 and a < b and out is not None:
            out[..., a - lead:b - lead] /= weight[a - base:b - base].clamp_min(1e-8)
        weight = torch.cat([weight[end - base:], torch.zeros(end - base)])
        base = end

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_chunks, desc="separating", unit="chunk")
    cuda = torch.device(device).type == "cuda"
    with torch.inference_mode(), torch.autocast("cuda", dtype=autocast or torch.float16,
                                                enabled=cuda and autocast is not None):
        for first in range(0, n_chunks, batch_size):
            indices = range(first, min(first + batch_size, n_chunks))
            batch = torch.stack([read(k) for k in indices])
            estimates = model(batch.to(device)).float().cpu()  # (b, stems, c, chunk)
            if not torch.isfinite(estimates).all():
                raise UserRuntimeError(
                    f"separate: the model returned NaN or infinite values for the chunk at "
                    f"sample {max(first * hop - lead, 0)} of a finite mixture. Fix: check "
                    f"the checkpoint (was it saved after a NaN loss?).")
            if out is None:
                out = torch.zeros(estimates.shape[1], channels, samples)
            for i, k in enumerate(indices):
                start = k * hop
                weight[start - base:start - base + chunk_samples] += window
                a, b = max(start, lead), min(start + chunk_samples, lead + samples)
                if a < b:
                    out[..., a - lead:b - lead] += estimates[i, ..., a - start:b - start] * \
                        window[a - start:b - start]
            finalize(indices[-1] * hop + hop)
            if bar is not None:
                bar.update(len(indices))
    if bar is not None:
        bar.close()
    assert out is not None
    finalize(base + chunk_samples)
    return out
