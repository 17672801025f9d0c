from __future__ import annotations

import pytest

from bsmamba2_plugin import BSMamba2, build_model


def test_build_model_from_an_msst_model_section() -> None:
    section = {"dim": 16, "depth": 1, "freqs_per_bands": [4, 8, 8, 13], "stft_n_fft": 64,
               "stft_hop_length": 16, "stft_win_length": 64, "d_state": 8, "expand": 2,
               "headdim": 8}
    model = build_model(section)
    assert isinstance(model, BSMamba2) and model.config.dim == 16


def test_build_model_errors_name_the_file_and_key() -> None:
    with pytest.raises(KeyError, match=r"my\.yaml: model\.dimm.*Did you mean 'dim'"):
        build_model({"dimm": 16}, path="my.yaml: model")

