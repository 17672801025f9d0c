"""Issue 12 row 5: random lengths, channel counts and amplitudes through the chunked
inference give finite stems of the input's shape (tiny model, few examples)."""

from __future__ import annotations

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings
from hypothesis import strategies as st

from bsmamba2_plugin import BSMamba2
from bsmamba2_plugin.inference.chunked import separate


@settings(max_examples=15, deadline=None, derandomize=True)
@given(samples=st.integers(1, 1500), stereo=st.booleans(),
       amplitude=st.sampled_from([0.0, 1e-6, 1e-2, 1.0, 30.0, 1e4]),
       chunk=st.sampled_from([64, 100, 256]), overlap=st.sampled_from([1, 2, 4]),
       batch=st.integers(1, 3))
def test_chunked_inference_gives_finite_stems_of_the_input_shape(samples, stereo, amplitude,
                                                                 chunk, overlap,
                                                                 batch) -> None:
    from bsmamba2_plugin import BSMamba2Config

    config = BSMamba2Config(dim=16, depth=1, stereo=stereo, freqs_per_bands=(4, 8, 8, 13),
                            stft_n_fft=64, stft_hop_length=16, stft_win_length=64, d_state=8,
                            expand=2, headdim=8, backend="reference")
    torch.manual_seed(samples)
    model = BSMamba2(config).eval()
    channels = config.n_channels
    mixture = amplitude * torch.randn(channels, samples, generator=torch.Generator().manual_seed(1))
    stems = separate(model, mixture, chunk - chunk % overlap, overlap=overlap, batch_size=batch)
    assert stems.shape == (1, channels, samples)
    assert stems.dtype == torch.float32
    assert torch.isfinite(stems).all()
    if amplitude == 0.0:
        assert not stems.any()
