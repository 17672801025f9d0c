"""Band split (spectrogram -> band tokens) and the per-band mask estimator.

Both follow BS-RoFormer (Lu et al., arXiv 2309.02612) as used by BSMamba2:
each band k holds f_k STFT bins; its real features are ordered (bin, channel,
re/im), d_k = 2 * channels * f_k of them. Module and parameter names equal the
official BSMamba2 / msst `bs_mamba2` ones (`to_features.{k}.0.gamma`,
`to_freqs.{k}.0.0.weight`, ...) so their checkpoints load strictly.

Axes: b batch, t frames, k bands, d features.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BandSplit", "MaskEstimator", "ScaledL2Norm"]


class ScaledL2Norm(nn.Module):
    """RMSNorm written as L2-normalise * sqrt(d) * gamma (BS-RoFormer's `RMSNorm`).

    Kept distinct from mamba's RMSNorm (`mamba2.RMSNorm`): this one has no eps inside
    the root (F.normalize clamps the norm at 1e-12) and names its weight `gamma`.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (..., dim). Returns: (..., dim)."""
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class BandSplit(nn.Module):
    """Per band: ScaledL2Norm over its d_k features, then Linear(d_k -> dim)."""

    def __init__(self, dim: int, band_widths: tuple[int, ...]) -> None:
        super().__init__()
        self.band_widths = tuple(band_widths)
        self.to_features = nn.ModuleList(
            nn.Sequential(ScaledL2Norm(d_k), nn.Linear(d_k, dim)) for d_k in self.band_widths
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (b, t, sum(d_k)). Returns: (b, t, k, dim)."""
        bands = x.split(self.band_widths, dim=-1)
        return torch.stack([net(band) for band, net in zip(bands, self.to_features)], dim=-2)


def _mlp(dim_in: int, dim_hidden: int, dim_out: int, depth: int) -> nn.Sequential:
    """Linear layers with Tanh between them: depth 1 is a single Linear."""
    dims = (dim_in,) + (dim_hidden,) * (depth - 1) + (dim_out,)
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class MaskEstimator(nn.Module):
    """Per band: MLP(dim -> 4*dim -> 2*d_k) then GLU -> d_k real mask values.

    The mask is unbounded; `model.BSMamba2` reads it as a complex mask.
    """

    def __init__(self, dim: int, band_widths: tuple[int, ...], depth: int,
                 expansion: int = 4) -> None:
        super().__init__()
        self.band_widths = tuple(band_widths)
        self.to_freqs = nn.ModuleList(
            nn.Sequential(_mlp(dim, dim * expansion, 2 * d_k, depth), nn.GLU(dim=-1))
            for d_k in self.band_widths
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (b, t, k, dim). Returns: (b, t, sum(d_k))."""
        return torch.cat([net(band) for band, net in zip(x.unbind(dim=-2), self.to_freqs)],
                         dim=-1)
