"""Shared fixtures: a tiny config, a deterministic RNG, and the `cuda` / `slow` markers."""

from __future__ import annotations

import random

import pytest
import torch

from bsmamba2_plugin import BSMamba2Config


@pytest.fixture
def tiny_config() -> BSMamba2Config:
    """d_model 16, one layer, 4 bands, n_fft 64: the whole graph in milliseconds."""
    return BSMamba2Config(dim=16, depth=1, freqs_per_bands=(4, 8, 8, 13), stft_n_fft=64,
                          stft_hop_length=16, stft_win_length=64, d_state=8, expand=2,
                          headdim=8, backend="reference")


@pytest.fixture(autouse=True)
def deterministic_rng():
    """Seed torch and random for each test and restore their state afterwards."""
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    torch.manual_seed(0)
    random.seed(0)
    yield
    torch.set_rng_state(torch_state)
    random.setstate(py_state)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
