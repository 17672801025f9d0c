"""Every YAML in configs/ loads (safe_load and msst's loader) and builds its model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from bsmamba2_plugin import BSMamba2, BSMamba2Config
from bsmamba2_plugin.training.augment import AugmentConfig
from bsmamba2_plugin.training.losses import PaperLossConfig

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
HAS_MSST = importlib.util.find_spec("msst") is not None
SMALL = dict(dim=16, depth=1, d_state=8, expand=2, headdim=8)
PARAMS = {  # what the full-size configs must build
    "config_musdb18_bsmamba2.yaml": 48_098_188,
    "config_vocals_bsmamba2.yaml": 48_098_188,
    "config_multistem_bsmamba2.yaml": 122_262_436,
    "config_musdb18_bs_roformer_256x6.yaml": 36_847_516,
    "config_musdb18_bs_roformer_256x11.yaml": 48_944_636,
}


def test_the_expected_configs_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert set(PARAMS) | {"config_tiny_bsmamba2.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_safe_yaml_with_msst_sections(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    for section in ("audio", "model", "training", "inference"):
        assert section in config, section
    for key in ("chunk_size", "min_mean_abs"):
        assert key in config["audio"]
    for key in ("instruments", "batch_size", "num_steps", "num_epochs", "lr", "optimizer",
                "grad_clip", "patience", "reduce_factor", "target_instrument"):
        assert key in config["training"], key
    assert {"num_overlap", "batch_size"} <= set(config["inference"])


@pytest.mark.parametrize("path", [p for p in CONFIGS if "bsmamba2" in p.name],
                         ids=lambda p: p.name)
def test_bsmamba2_config_builds_its_model_and_sections(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model_cfg = BSMamba2Config.from_mapping(config["model"], path=f"{path.name}: model")
    PaperLossConfig.from_mapping(config.get("loss_bsmamba2"))
    AugmentConfig.from_mapping(config.get("augmentations_bsmamba2"))
    expected = PARAMS.get(path.name)
    if expected is not None:
        assert sum(p.numel() for p in BSMamba2(model_cfg).parameters()) == expected
    small = BSMamba2(model_cfg.replace(**SMALL)) if expected else BSMamba2(model_cfg)
    import torch

    samples = int(config["audio"]["chunk_size"]) // 8
    out = small(torch.randn(1, 2, samples))
    stems = 1 if config["training"]["target_instrument"] else len(config["training"]["instruments"])
    assert out.shape == (1, stems, 2, samples)


@pytest.mark.skipif(not HAS_MSST, reason="needs msst")
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_msst_and_builds_there(path: Path) -> None:
    from msst.utils.settings import get_model_from_config

    model_type = "bs_roformer" if "bs_roformer" in path.name else "bsmamba2"
    model, config = get_model_from_config(model_type, str(path))
    assert config.training.instruments
    expected = PARAMS.get(path.name)
    if expected is not None:
        assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_scheduler_keys_are_valid_and_paper_configs_keep_the_lr_constant(path: Path) -> None:
    training = yaml.safe_load(path.read_text())["training"]
    # msst builds ReduceLROnPlateau(patience, factor) from these; torch needs factor < 1
    assert 0 < training["reduce_factor"] < 1
    if path.name in PARAMS:  # the paper recipe has no LR schedule: patience is never reached
        assert training["patience"] > training["num_epochs"]
