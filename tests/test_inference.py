from __future__ import annotations

import pytest
import torch

from bsmamba2_plugin import BSMamba2
from bsmamba2_plugin.inference.chunked import separate


class Identity(torch.nn.Module):
    """An identity-like separator: one stem equal to the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


class CountCalls(Identity):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        return super().forward(x)


@pytest.mark.parametrize("samples", [1, 999, 1000, 1001, 4321])
def test_non_overlapping_chunks_reproduce_the_input_exactly(samples: int) -> None:
    mixture = torch.randn(2, samples)
    out = separate(Identity(), mixture, chunk_samples=1000, batch_size=3)
    assert out.shape == (1, 2, samples)
    assert torch.equal(out[0], mixture)  # no zeroed samples at chunk boundaries
    assert (out[0, :, 999:1001] != 0).all()


@pytest.mark.parametrize("overlap", [2, 4])
def test_overlap_add_of_an_identity_model_is_the_input(overlap: int) -> None:
    mixture = torch.randn(2, 5555)
    out = separate(Identity(), mixture, chunk_samples=1000, overlap=overlap)
    assert torch.allclose(out[0], mixture, atol=1e-5)


def test_chunks_are_batched() -> None:
    model = CountCalls()
    separate(model, torch.randn(1, 3500), chunk_samples=1000, batch_size=3)
    assert model.seen == [3, 1]


def test_bsmamba2_separates_a_track_in_chunks(tiny_config) -> None:
    model = BSMamba2(tiny_config.replace(num_stems=2)).eval()
    out = separate(model, torch.randn(2, 3000), chunk_samples=1024)
    assert out.shape == (2, 2, 3000) and torch.isfinite(out).all()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="channels, samples"):
        separate(Identity(), torch.randn(1, 2, 10), chunk_samples=4)
    with pytest.raises(ValueError, match="divisible"):
        separate(Identity(), torch.randn(2, 10), chunk_samples=10, overlap=3)
