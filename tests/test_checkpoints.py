"""Checkpoint import: msst bs_mamba2 / bare state dicts and official Lightning files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bsmamba2_plugin import BSMamba2, BSMamba2Config
from bsmamba2_plugin.cli import main
from bsmamba2_plugin.msst_integration.checkpoints import convert_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from official_oracle import official_forward, official_state_dict  # noqa: E402

WIDTHS = dict(dim=16, depth=2, freqs_per_bands=(8, 8, 8, 9), d_state=8, expand=2, headdim=8)
MODEL = dict(WIDTHS, num_stems=1, stft_n_fft=64, stft_hop_length=16, stft_win_length=64)


def official(seed: int) -> dict[str, torch.Tensor]:
    return official_state_dict(**WIDTHS, n_stems=1, seed=seed, dtype=torch.float32)


def load_converted(path: Path) -> tuple[BSMamba2, dict]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = BSMamba2(BSMamba2Config.from_mapping(MODEL))
    model.load_state_dict(payload["model_state_dict"], strict=True)
    return model, payload["meta"]


def test_msst_bs_mamba2_state_dict_converts_and_gives_the_same_output(tmp_path) -> None:
    state = official(seed=1)
    torch.save({"model_state_dict": state, "meta": {"model_type": "bs_mamba2"}},
               tmp_path / "bs_mamba2.ckpt")
    meta = convert_checkpoint(tmp_path / "bs_mamba2.ckpt", tmp_path / "out.ckpt", model=MODEL,
                              instruments=["vocals", "other"], target_instrument="vocals")
    model, stored = load_converted(tmp_path / "out.ckpt")
    assert meta == stored and stored["model_type"] == "bsmamba2"
    assert stored["target_stem_count"] == 1 and stored["target_instrument"] == "vocals"
    audio = torch.randn(1, 2, 600)
    expected = official_forward({k: v.double() for k, v in state.items()}, audio.double(),
                                **WIDTHS, n_stems=1, n_fft=64, hop_length=16, win_length=64)
    got = model.double()(audio.double())
    assert ((got - expected).norm() / expected.norm()).item() < 1e-6


def lightning_checkpoint(raw: dict, ema: dict) -> dict:
    return {
        "epoch": 3, "global_step": 300, "pytorch-lightning_version": "2.1.0",
        "state_dict": {"featurizer.spectrogram.window": torch.hann_window(2048),
                       **{f"model.{k}": v for k, v in raw.items()},
                       "inverse_featurizer.window": torch.hann_window(2048)},
        "optimizer_states": [{"opt": {"state": {}, "param_groups": []},
                              "ema": tuple(ema.values()), "current_step": 300,
                              "decay": 0.999, "every_n_steps": 1}],
        "lr_schedulers": [],
    }


@pytest.mark.parametrize("weights", ["raw", "ema"])
def test_lightning_checkpoint_with_prefix_and_ema_converts(tmp_path, weights: str) -> None:
    raw, ema = official(seed=2), official(seed=3)
    torch.save(lightning_checkpoint(raw, ema), tmp_path / "sota_model.ckpt")
    convert_checkpoint(tmp_path / "sota_model.ckpt", tmp_path / "out.ckpt", model=MODEL,
                       weights=weights)
    model, meta = load_converted(tmp_path / "out.ckpt")
    expected = raw if weights == "raw" else ema
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert meta["weights"] == weights and "Lightning" in meta["converted_from"]


def test_missing_ema_and_wrong_config_are_clear_errors(tmp_path) -> None:
    torch.save({"model_state_dict": official(seed=4)}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="no EMA weights"):
        convert_checkpoint(tmp_path / "plain.ckpt", tmp_path / "a.ckpt", model=MODEL,
                           weights="ema")
    with pytest.raises(RuntimeError, match="does not fit the model config.*--config"):
        convert_checkpoint(tmp_path / "plain.ckpt", tmp_path / "b.ckpt",
                           model=dict(MODEL, dim=32))
    assert not (tmp_path / "b.ckpt").exists()


def test_existing_output_is_never_overwritten_by_default(tmp_path) -> None:
    torch.save(official(seed=5), tmp_path / "bare.ckpt")
    (tmp_path / "out.ckpt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_checkpoint(tmp_path / "bare.ckpt", tmp_path / "out.ckpt", model=MODEL)
    assert (tmp_path / "out.ckpt").read_text() == "mine"


def test_pickled_objects_are_refused_unless_trusted(tmp_path) -> None:
    torch.save({"state_dict": {f"model.{k}": v for k, v in official(seed=6).items()},
                "hyper_parameters": {"cfg": Path("x")}}, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match="--trust-pickle"):
        convert_checkpoint(tmp_path / "pickled.ckpt", tmp_path / "o.ckpt", model=MODEL)
    convert_checkpoint(tmp_path / "pickled.ckpt", tmp_path / "o.ckpt", model=MODEL, trust=True)


def test_cli_converts_with_an_msst_yaml(tmp_path, capsys) -> None:
    torch.save(official(seed=7), tmp_path / "bare.ckpt")
    yaml_text = "model:\n" + "".join(f"  {k}: {list(v) if isinstance(v, tuple) else v}\n"
                                     for k, v in MODEL.items())
    yaml_text += "training:\n  instruments: [vocals, other]\n  target_instrument: vocals\n"
    (tmp_path / "c.yaml").write_text(yaml_text)
    assert main(["convert-checkpoint", str(tmp_path / "bare.ckpt"), str(tmp_path / "o.ckpt"),
                 "--config", str(tmp_path / "c.yaml")]) == 0
    assert "meta.model_type bsmamba2" in capsys.readouterr().out
    assert main(["convert-checkpoint", str(tmp_path / "bare.ckpt"), str(tmp_path / "o.ckpt"),
                 "--config", str(tmp_path / "c.yaml")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_ema_weights_stay_labelled_ema_through_conversion(tmp_path, capsys) -> None:
    """last_bsmamba2_ema.ckpt / best_bsmamba2.ckpt say meta.weights: ema; so does OUT."""
    state = official(seed=8)
    torch.save({"model_state_dict": state, "n_averaged": 3,
                "meta": {"model_type": "bsmamba2", "weights": "ema"}},
               tmp_path / "last_bsmamba2_ema.ckpt")
    meta = convert_checkpoint(tmp_path / "last_bsmamba2_ema.ckpt", tmp_path / "out.ckpt",
                              model=MODEL)
    model, stored = load_converted(tmp_path / "out.ckpt")
    assert meta["weights"] == stored["weights"] == "ema"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    yaml_text = "model:\n" + "".join(f"  {k}: {list(v) if isinstance(v, tuple) else v}\n"
                                     for k, v in MODEL.items())
    (tmp_path / "c.yaml").write_text(yaml_text)
    assert main(["convert-checkpoint", str(tmp_path / "last_bsmamba2_ema.ckpt"),
                 str(tmp_path / "cli.ckpt"), "--config", str(tmp_path / "c.yaml")]) == 0
    assert "weights ema" in capsys.readouterr().out


def test_weights_that_contradict_the_source_meta_are_an_error(tmp_path, capsys) -> None:
    torch.save({"model_state_dict": official(seed=9),
                "meta": {"model_type": "bsmamba2", "weights": "ema"}}, tmp_path / "best.ckpt")
    with pytest.raises(ValueError, match="meta.weights says it holds ema weights, but "
                                         "--weights raw.*last_bsmamba2.ckpt"):
        convert_checkpoint(tmp_path / "best.ckpt", tmp_path / "out.ckpt", model=MODEL,
                           weights="raw")
    assert not (tmp_path / "out.ckpt").exists()


def test_every_reader_finds_the_weights_under_the_same_key_as_msst(tmp_path) -> None:
    """One unwrapping, in msst's key order (`state`, `state_dict`, `model_state_dict`):
    convert-checkpoint, the fit check, `separate` / `export-onnx` and `evaluate` load the
    tensors msst-valid would load, even from a file with two candidate keys."""
    from bsmamba2_plugin.evaluation.evaluate import _read_checkpoint_state
    from bsmamba2_plugin.inference.song_files import load_bsmamba2
    from bsmamba2_plugin.msst_integration.checkpoints import (extract_state_dict,
                                                              unwrap_state_dict)
    from bsmamba2_plugin.msst_integration.run_safety import fit_problem

    fits = BSMamba2(**MODEL).state_dict()
    other = BSMamba2(**{**MODEL, "dim": 8}).state_dict()
    assert unwrap_state_dict(fits) == (fits, "")
    assert unwrap_state_dict({"model_state_dict": fits}) == (fits, "model_state_dict")
    assert unwrap_state_dict({"state": {"model_state_dict": fits}}) == (
        fits, "state/model_state_dict")
    both = {"model_state_dict": other, "state": fits, "meta": {"model_type": "bsmamba2"}}
    assert unwrap_state_dict(both) == (fits, "state")
    state, kind = extract_state_dict(both)
    assert state == fits and kind == "msst checkpoint (state)"
    assert fit_problem(BSMamba2(**MODEL), both, path="both.ckpt", model_type="bsmamba2") is None
    torch.save(both, tmp_path / "both.ckpt")
    assert _read_checkpoint_state(tmp_path / "both.ckpt")[1].keys() == fits.keys()
    config = tmp_path / "c.yaml"
    config.write_text("model:\n" + "".join(f"  {k}: {list(v) if isinstance(v, tuple) else v}\n"
                                           for k, v in MODEL.items()))
    model, _, _ = load_bsmamba2(config, tmp_path / "both.ckpt")
    assert all(torch.equal(value, fits[key]) for key, value in model.state_dict().items())
