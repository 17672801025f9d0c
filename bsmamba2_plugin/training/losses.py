"""The paper's training loss, as pure functions of (estimate, target).

    L = time_weight * mean|s_hat - s|
        + stft_weight * sum_w mean|STFT_w(s_hat) - STFT_w(s)|      (complex modulus)

with w in window_sizes = (4096, 2048, 1024, 512, 256), STFT_w: n_fft = max(w, 2048),
Hann window of w samples (centred in the n_fft frame), hop 147, centred frames with
reflect padding, not normalised (docs/architecture.md, official `pl_model.compute_losses`).
Resolutions are summed, not averaged; the paper's weights are 10 and 1.

Deviations from the official code, with reasons:
- the target is used as is; the official code passes it through STFT/iSTFT first,
  which changes it by float rounding only;
- auraloss is not used: its STFT losses are magnitude-based (spectral convergence,
  log/linear magnitude, phase) and none is the L1 of the complex difference.

Shapes: estimate and target are (..., samples), e.g. (b, stems, channels, samples).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..errors import UserValueError
from ..network.config import reject_unknown_keys

__all__ = [
    "PaperLossConfig",
    "build_loss",
    "multi_resolution_complex_stft_l1",
    "time_l1",
]


def time_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |estimate - target| over all elements. Args: (..., samples) each."""
    return (estimate - target).abs().mean()


def multi_resolution_complex_stft_l1(
    estimate: torch.Tensor,
    target: torch.Tensor,
    *,
    window_sizes: tuple[int, ...] = (4096, 2048, 1024, 512, 256),
    hop_length: int = 147,
    min_n_fft: int = 2048,
    normalized: bool = False,
) -> torch.Tensor:
    """sum over windows w of mean |STFT_w(estimate) - STFT_w(target)| (complex modulus).

    Args:
        estimate, target: (..., samples), same shape, computed in float32 or wider.
        window_sizes: Hann window lengths w; n_fft = max(w, min_n_fft).
        hop_length: hop in samples for every resolution.
        min_n_fft: smallest FFT size.
        normalized: passed to `torch.stft`.

    Returns:
        scalar tensor.

    Raises:
        ValueError: the signals are too short for the largest FFT's reflect padding.
    """
    if estimate.shape != target.shape:
        raise ValueError(f"loss: estimate {tuple(estimate.shape)} and target "
                         f"{tuple(target.shape)} differ in shape.")
    samples = estimate.shape[-1]
    largest = max(max(w, min_n_fft) for w in window_sizes)
    if samples <= largest // 2:
        raise UserValueError(
            f"loss: the multi-resolution STFT loss needs more than {largest // 2} samples "
            f"(n_fft {largest}), got {samples}. Fix: use a longer audio.chunk_size or smaller "
            f"window_sizes in the loss section.")
    dtype = torch.promote_types(estimate.dtype, torch.float32)
    flat_est = estimate.reshape(-1, samples).to(dtype)
    flat_tgt = target.reshape(-1, samples).to(dtype)
    total = estimate.new_zeros((), dtype=dtype)
    for w in window_sizes:
        n_fft = max(w, min_n_fft)
        window = torch.hann_window(w, dtype=dtype, device=estimate.device)
        args = dict(n_fft=n_fft, hop_length=hop_length, win_length=w, window=window,
                    center=True, pad_mode="reflect", normalized=normalized, onesided=True,
                    return_complex=True)
        diff = torch.stft(flat_est, **args) - torch.stft(flat_tgt, **args)
        total = total + diff.abs().mean()
    return total


@dataclasses.dataclass(frozen=True)
class PaperLossConfig:
    """Keys of the `loss_bsmamba2:` section; defaults are the paper's."""

    time_weight: float = 10.0
    stft_weight: float = 1.0
    window_sizes: tuple[int, ...] = (4096, 2048, 1024, 512, 256)
    hop_length: int = 147
    min_n_fft: int = 2048
    normalized: bool = False

    def __post_init__(self) -> None:
        for name in ("time_weight", "stft_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise UserValueError(f"loss_bsmamba2.{name}: expected a number >= 0, got "
                                     f"{value!r}.")
        if not self.window_sizes or any(
                isinstance(w, bool) or not isinstance(w, int) or w < 2 for w in self.window_sizes):
            raise UserValueError(f"loss_bsmamba2.window_sizes: expected a list of integers >= 2, "
                                 f"got {self.window_sizes!r}.")
        for name in ("hop_length", "min_n_fft"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserValueError(f"loss_bsmamba2.{name}: expected a positive integer, got "
                                     f"{value!r}.")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None,
                     path: str = "loss_bsmamba2") -> PaperLossConfig:
        """Parse the section (None or empty: the paper's loss); unknown keys are errors."""
        mapping = dict(mapping or {})
        reject_unknown_keys(mapping, {f.name for f in dataclasses.fields(cls)}, path)
        if isinstance(mapping.get("window_sizes"), list):
            mapping["window_sizes"] = tuple(mapping["window_sizes"])
        try:
            return cls(**mapping)
        except (TypeError, ValueError) as error:
            raise UserValueError(str(error).replace("loss_bsmamba2.", f"{path}.")) from error


def build_loss(config: PaperLossConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The weighted sum of `time_l1` and `multi_resolution_complex_stft_l1`."""

    def paper_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        estimate = estimate.float() if estimate.dtype in (torch.float16, torch.bfloat16) \
            else estimate
        target = target.to(estimate.dtype)
        loss = config.time_weight * time_l1(estimate, target)
        if config.stft_weight:
            loss = loss + config.stft_weight * multi_resolution_complex_stft_l1(
                estimate, target, window_sizes=config.window_sizes,
                hop_length=config.hop_length, min_n_fft=config.min_n_fft,
                normalized=config.normalized)
        return loss

    return paper_loss

