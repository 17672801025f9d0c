from __future__ import annotations

import warnings

import pytest

from bsmamba2_plugin import BSMamba2Config
from bsmamba2_plugin.network.config import DEFAULT_FREQS_PER_BANDS, IgnoredConfigKeysWarning


def test_paper_defaults_are_the_papers_values() -> None:
    cfg = BSMamba2Config.paper()
    assert (cfg.dim, cfg.depth, cfg.stereo, cfg.num_stems) == (256, 6, True, 1)
    assert (cfg.stft_n_fft, cfg.stft_hop_length, cfg.stft_win_length) == (2048, 441, 2048)
    assert (cfg.d_state, cfg.expand, cfg.headdim, cfg.d_conv) == (128, 4, 64, 4)
    assert cfg.n_bands == 62 and sum(cfg.freqs_per_bands) == 1025
    assert cfg.nheads == 16 and cfg.band_widths[0] == 8 and cfg.band_widths[-1] == 516


def test_from_mapping_accepts_yaml_lists_and_round_trips() -> None:
    raw = {"dim": 64, "freqs_per_bands": list(DEFAULT_FREQS_PER_BANDS), "backend": "reference"}
    cfg = BSMamba2Config.from_mapping(raw)
    assert cfg.freqs_per_bands == DEFAULT_FREQS_PER_BANDS
    assert BSMamba2Config.from_mapping(cfg.to_dict()) == cfg


def test_unknown_key_names_the_path_and_closest_match() -> None:
    with pytest.raises(KeyError) as info:
        BSMamba2Config.from_mapping({"d_sate": 64}, path="configs/x.yaml: model")
    message = str(info.value)
    assert "configs/x.yaml: model.d_sate" in message
    assert "Did you mean 'd_state'?" in message
    assert "headdim" in message  # the valid keys are listed


def test_msst_transformer_keys_are_ignored_with_one_warning() -> None:
    msst_section = {"dim": 32, "heads": 8, "dim_head": 64, "attn_dropout": 0.1,
                    "flash_attn": True, "time_module_depth": 1, "module_type": "mamba2",
                    "multi_stft_resolution_loss_weight": 1.0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = BSMamba2Config.from_mapping(msst_section)
    relevant = [w for w in caught if issubclass(w.category, IgnoredConfigKeysWarning)]
    assert len(relevant) == 1
    for key in ("heads", "dim_head", "attn_dropout", "flash_attn", "module_type"):
        assert key in str(relevant[0].message)
    assert cfg.dim == 32


@pytest.mark.parametrize("key, value", [("module_type", "transformer"), ("mamba_gmlp", True),
                                        ("time_module_depth", 2)])
def test_msst_keys_we_cannot_honour_are_errors(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"model.{key}"):
        BSMamba2Config.from_mapping({key: value})


@pytest.mark.parametrize("changes, match", [
    ({"freqs_per_bands": (2, 2)}, "sums to|hold 4 bins"),
    ({"headdim": 48}, "not a multiple of headdim"),
    ({"backend": "cuda"}, "model.backend"),
    ({"dim": 0}, "positive integer"),
    ({"stft_win_length": 4096}, "longer than"),
    ({"chunk_size": -1}, "positive integer"),
])
def test_invalid_values_are_rejected_with_the_key(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BSMamba2Config.paper(**changes)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError, match="model.depth"):
        BSMamba2Config.from_mapping({"depth": "6"})
    with pytest.raises(TypeError, match="model.stereo"):
        BSMamba2Config.from_mapping({"stereo": "yes"})
    for bad in ("yes", 1, "Selective"):
        with pytest.raises(TypeError, match="model.gradient_checkpointing.*'selective'"):
            BSMamba2Config.from_mapping({"gradient_checkpointing": bad})
    assert BSMamba2Config.from_mapping(
        {"gradient_checkpointing": "selective"}).gradient_checkpointing == "selective"
