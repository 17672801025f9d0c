from __future__ import annotations

import numpy as np
import pytest
import torch

from bsmamba2_plugin.training.augment import (
    AugmentConfig,
    apply_draw,
    build_batch_augment,
    draw_stem,
    salient_starts,
)

SR = 1000  # a small "sample rate" keeps these tests fast; SAD is rate-agnostic


def test_sad_keeps_active_windows_and_drops_silent_ones() -> None:
    rng = np.random.default_rng(0)
    audio = 0.1 * rng.standard_normal((2, 20 * SR))
    audio[:, 8 * SR:14 * SR] = 0.0  # 6 s of silence
    starts = salient_starts(audio, window=4 * SR, hop=1 * SR)
    # windows [s, s+4) that are more than half inside the silence are dropped
    assert set(starts // SR) == {0, 1, 2, 3, 4, 5, 13, 14, 15, 16}
    assert len(salient_starts(np.zeros((2, 20 * SR)), window=4 * SR, hop=SR)) == 0


def test_sad_needs_every_channel_active() -> None:
    noise = 0.1 * np.random.default_rng(1).standard_normal((2, 10 * SR))
    left_only = noise * np.array([[1.0], [0.0]])
    assert len(salient_starts(left_only, window=2 * SR, hop=SR)) == 0
    assert len(salient_starts(noise, window=2 * SR, hop=SR)) == 9


def test_sad_on_audio_shorter_than_a_window_finds_nothing() -> None:
    assert len(salient_starts(np.ones((1, 10)), window=20, hop=5)) == 0


def test_silence_rate_over_10000_draws_and_silenced_stems_are_exact_zeros() -> None:
    rng = np.random.default_rng(123)
    config = AugmentConfig()
    chunk = np.ones((2, 8), dtype=np.float32)
    draws = [draw_stem(rng, 50, config) for _ in range(10_000)]
    rate = np.mean([d.silent for d in draws])
    assert 0.09 <= rate <= 0.11
    gains = np.array([d.gain for d in draws])
    assert gains.min() >= 0.5 and gains.max() <= 1.5
    for draw in draws[:200]:
        stems = [apply_draw(chunk, draw), apply_draw(chunk, draw_stem(rng, 50, config))]
        mixture = stems[0] + stems[1]
        if draw.silent:
            assert not stems[0].any()
            assert np.array_equal(mixture, stems[1])


def test_draws_are_reproducible_under_a_seed() -> None:
    config = AugmentConfig()
    a = [draw_stem(np.random.default_rng(7), 9, config) for _ in range(3)]
    b = [draw_stem(np.random.default_rng(7), 9, config) for _ in range(3)]
    assert a == b


def test_config_section_is_validated() -> None:
    with pytest.raises(KeyError, match="silence_prob.*silence_p"):
        AugmentConfig.from_mapping({"silence_prob": 0.1})
    with pytest.raises(ValueError, match="silence_p"):
        AugmentConfig.from_mapping({"silence_p": 1.5})
    with pytest.raises(ValueError, match="batch\\[0\\]"):
        AugmentConfig.from_mapping({"batch": [{"name": "PitchShift"}]})
    cfg = AugmentConfig.from_mapping({"batch": [{"name": "Gain", "p": 1.0}]})
    assert cfg.batch[0]["name"] == "Gain" and AugmentConfig.from_mapping(cfg.to_dict()) == cfg


def test_batch_augmentation_acts_per_stem_and_follows_torch_seed() -> None:
    augment = build_batch_augment([{"name": "PolarityInversion", "p": 1.0}], sample_rate=44100)
    stems = torch.randn(2, 3, 2, 1000)
    assert torch.equal(augment(stems), -stems)
    gain = build_batch_augment([{"name": "Gain", "p": 1.0, "min_gain_in_db": -6,
                                 "max_gain_in_db": 6}], sample_rate=44100)
    torch.manual_seed(5)
    first = gain(stems)
    torch.manual_seed(5)
    assert torch.equal(first, gain(stems))
    ratios = (first / stems)[..., 0, 0].flatten()
    assert len(set(ratios.round(decimals=4).tolist())) > 1  # independent per stem
    assert build_batch_augment([], 44100) is None
