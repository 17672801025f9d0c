"""The model against docs/architecture.md: parameter count, shapes, official layout, oracle."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch

from bsmamba2_plugin import BSMamba2, BSMamba2Config

sys.path.insert(0, str(Path(__file__).parent))
from official_oracle import official_forward, official_state_dict  # noqa: E402

PAPER_PARAMS = 48_098_188


@pytest.fixture(scope="module")
def paper_model() -> BSMamba2:
    torch.manual_seed(0)
    return BSMamba2().eval()


def test_paper_config_has_48_098_188_parameters(paper_model: BSMamba2) -> None:
    assert sum(p.numel() for p in paper_model.parameters()) == PAPER_PARAMS
    assert len(paper_model.state_dict()) == 675


def test_paper_model_separates_one_second_of_stereo(paper_model: BSMamba2) -> None:
    mixture = 0.1 * torch.randn(1, 2, 44100)
    with torch.inference_mode():
        out = paper_model(mixture)
        silent = paper_model(torch.zeros(1, 2, 44100))
    assert out.shape == (1, 1, 2, 44100) and torch.isfinite(out).all()
    assert silent.shape == (1, 1, 2, 44100) and torch.isfinite(silent).all()


@pytest.mark.parametrize("seconds", [1, 8, 16])
def test_paper_length_inputs_keep_shape_and_length(seconds: int) -> None:
    # Paper STFT and 62 bands (so 101 / 801 / 1601 frames), narrow layers for speed.
    model = BSMamba2(BSMamba2Config.paper(dim=16, depth=1, d_state=8, expand=2, headdim=8))
    samples = seconds * 44100 + 7
    with torch.inference_mode():
        out = model(0.1 * torch.randn(1, 2, samples))
    assert out.shape == (1, 1, 2, samples) and torch.isfinite(out).all()


@pytest.mark.parametrize("samples", [1, 2, 32, 33, 100, 1000])
@pytest.mark.parametrize("stereo", [True, False])
def test_any_length_gives_the_same_length(tiny_config, samples: int, stereo: bool) -> None:
    model = BSMamba2(tiny_config.replace(stereo=stereo, num_stems=2))
    channels = 2 if stereo else 1
    out = model(torch.randn(3, channels, samples))
    assert out.shape == (3, 2, channels, samples) and torch.isfinite(out).all()


def test_mono_model_accepts_batch_by_samples(tiny_config) -> None:
    model = BSMamba2(tiny_config.replace(stereo=False))
    assert model(torch.randn(2, 500)).shape == (2, 1, 1, 500)


def test_float64_input_gives_float64_output(tiny_config) -> None:
    model = BSMamba2(tiny_config).double()
    assert model(torch.randn(1, 2, 300, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("stereo", [True, False])
@pytest.mark.parametrize("n_stems", [1, 2])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_official_state_dict_loads_strictly_and_matches_the_oracle(
        stereo: bool, n_stems: int, chunk_size: int | None) -> None:
    widths = dict(dim=16, depth=2, freqs_per_bands=(8, 8, 8, 9), d_state=8, expand=2,
                  headdim=8)
    state = official_state_dict(**widths, n_stems=n_stems, stereo=stereo, seed=3)
    config = BSMamba2Config(**widths, num_stems=n_stems, stereo=stereo, stft_n_fft=64,
                            stft_hop_length=16, stft_win_length=64, chunk_size=chunk_size)
    model = BSMamba2(config).double()
    model.load_state_dict(state, strict=True)
    audio = torch.randn(2, 2 if stereo else 1, 700, dtype=torch.float64)
    expected = official_forward(state, audio, **widths, n_stems=n_stems, stereo=stereo,
                                n_fft=64, hop_length=16, win_length=64)
    got = model(audio)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-12
    with torch.inference_mode():
        fast = model(audio)
    assert ((fast - expected).norm() / expected.norm()).item() < 1e-12


def test_paper_state_dict_keys_and_shapes_are_the_official_ones(paper_model) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from official_oracle import official_param_shapes

    expected = official_param_shapes(dim=256, depth=6, n_stems=1,
                                     freqs_per_bands=paper_model.config.freqs_per_bands,
                                     d_state=128, expand=4, headdim=64)
    got = {k: tuple(v.shape) for k, v in paper_model.state_dict().items()}
    assert got == expected


def test_model_pickles_and_predicts_the_same(tiny_config) -> None:
    model = BSMamba2(tiny_config).eval()
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(1, 2, 400)
    assert torch.equal(model(x), clone(x))


def test_msst_style_keyword_construction_with_ignored_keys() -> None:
    with pytest.warns(UserWarning, match="heads"):
        model = BSMamba2(dim=16, depth=1, stereo=True, num_stems=1, heads=8,
                         freqs_per_bands=[4, 8, 8, 13], stft_n_fft=64, stft_hop_length=16,
                         stft_win_length=64, d_state=8, expand=2, headdim=8)
    assert model.config.freqs_per_bands == (4, 8, 8, 13)


@pytest.mark.parametrize("bad, error, match", [
    (torch.randn(1, 3, 100), ValueError, "takes 2 channel"),
    (torch.randn(2, 100), ValueError, "expected \\(batch, channels, samples\\)"),
    (torch.zeros(1, 2, 100, dtype=torch.int16), TypeError, "floating-point"),
    (torch.zeros(1, 2, 0), ValueError, "0 samples"),
])
def test_bad_inputs_fail_early_with_a_clear_message(tiny_config, bad, error, match) -> None:
    with pytest.raises(error, match=match):
        BSMamba2(tiny_config)(bad)


def test_both_constructor_styles_at_once_is_an_error(tiny_config) -> None:
    with pytest.raises(TypeError, match="not both"):
        BSMamba2(tiny_config, dim=8)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config) -> None:
    plain = BSMamba2(tiny_config.replace(depth=2))
    recomputed = BSMamba2(tiny_config.replace(depth=2, gradient_checkpointing=True))
    recomputed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 2, 500)
    for model in (plain, recomputed):
        model(x).square().mean().backward()
    for a, b in zip(plain.parameters(), recomputed.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-7)
