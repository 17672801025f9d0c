from __future__ import annotations

import math

import pytest
import torch

from bsmamba2_plugin.training.losses import (
    PaperLossConfig,
    build_loss,
    multi_resolution_complex_stft_l1,
    time_l1,
)


def direct_paper_loss(est: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """The SPEC formula written out in float64 with an explicit windowed DFT."""
    est, tgt = est.double().reshape(-1, est.shape[-1]), tgt.double().reshape(-1, tgt.shape[-1])
    total = 10 * (est - tgt).abs().mean()
    for w in (4096, 2048, 1024, 512, 256):
        n_fft = max(w, 2048)
        # periodic Hann of w samples, centred in an n_fft frame
        window = torch.zeros(n_fft, dtype=torch.float64)
        k = torch.arange(w, dtype=torch.float64)
        left = (n_fft - w) // 2
        window[left:left + w] = 0.5 - 0.5 * torch.cos(2 * math.pi * k / w)
        pad = n_fft // 2
        diff = torch.nn.functional.pad((est - tgt).unsqueeze(1), (pad, pad), mode="reflect")[:, 0]
        n_frames = 1 + (diff.shape[-1] - n_fft) // 147
        frames = torch.stack([diff[:, i * 147:i * 147 + n_fft] for i in range(n_frames)], 1)
        spectrum = torch.fft.rfft(frames * window, dim=-1)  # STFT is linear: STFT(a)-STFT(b)
        total = total + torch.sqrt(spectrum.real ** 2 + spectrum.imag ** 2).mean()
    return total


def test_paper_loss_equals_a_direct_float64_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 1, 2, 6000, generator=gen)
    estimate = target + 0.3 * torch.randn(2, 1, 2, 6000, generator=gen)
    ours = build_loss(PaperLossConfig())(estimate.double(), target.double())
    direct = direct_paper_loss(estimate, target)
    assert abs(ours.item() - direct.item()) / direct.item() < 1e-5


def test_complex_l1_uses_the_modulus() -> None:
    assert time_l1(torch.tensor([3.0]), torch.tensor([0.0])).item() == 3.0
    # A unit impulse: in every frame its spectrum's modulus is the same in every bin, the
    # window's value where the impulse sits (its real or imaginary part alone, or its
    # square, would differ bin by bin). So the mean modulus over frames and bins is the mean
    # over frames of that window value, written out here without an STFT.
    samples, where, w, n_fft, hop = 4096, 2048, 256, 2048, 32
    est = torch.zeros(1, samples, dtype=torch.float64)
    est[0, where] = 1.0
    value = multi_resolution_complex_stft_l1(est, torch.zeros_like(est), window_sizes=(w,),
                                             hop_length=hop, min_n_fft=n_fft)
    frames = 1 + samples // hop  # centred frames (reflect padding of n_fft // 2 each side)
    left = (n_fft - w) // 2  # torch.stft centres the w-sample window in the n_fft frame
    heights = []
    for frame in range(frames):
        k = where + n_fft // 2 - frame * hop - left  # the impulse's place in the window
        heights.append(0.5 - 0.5 * math.cos(2 * math.pi * k / w) if 0 <= k < w else 0.0)
    assert sum(h > 0 for h in heights) >= 2  # the impulse lies inside several frames
    assert value.item() == pytest.approx(sum(heights) / frames, rel=1e-9)


def test_loss_section_is_validated_with_key_names() -> None:
    with pytest.raises(KeyError, match="loss_bsmamba2.time_weigth.*time_weight"):
        PaperLossConfig.from_mapping({"time_weigth": 10})
    with pytest.raises(ValueError, match="my.yaml: loss_bsmamba2.hop_length"):
        PaperLossConfig.from_mapping({"hop_length": 0}, path="my.yaml: loss_bsmamba2")
    cfg = PaperLossConfig.from_mapping({"window_sizes": [1024, 512], "time_weight": 1})
    assert cfg.window_sizes == (1024, 512) and cfg.time_weight == 1


def test_too_short_signals_get_a_clear_error() -> None:
    with pytest.raises(ValueError, match="audio.chunk_size"):
        build_loss(PaperLossConfig())(torch.zeros(1, 1000), torch.zeros(1, 1000))


def test_weights_scale_the_terms() -> None:
    gen = torch.Generator().manual_seed(1)
    tgt, est = torch.randn(1, 5000, generator=gen), torch.randn(1, 5000, generator=gen)
    only_time = build_loss(PaperLossConfig(stft_weight=0.0))(est, tgt)
    assert torch.isclose(only_time, 10 * time_l1(est, tgt))
    both = build_loss(PaperLossConfig())(est, tgt)
    assert torch.isclose(both, only_time + multi_resolution_complex_stft_l1(est, tgt))


def test_bf16_estimates_are_scored_in_float32() -> None:
    gen = torch.Generator().manual_seed(2)
    tgt, est = torch.randn(1, 5000, generator=gen), torch.randn(1, 5000, generator=gen)
    loss = build_loss(PaperLossConfig())(est.bfloat16(), tgt)
    assert loss.dtype == torch.float32
    assert torch.isclose(loss, build_loss(PaperLossConfig())(est.bfloat16().float(), tgt))
