"""Every shipped config starts a training run with the stock `msst-train` (needs msst).

Each YAML in configs/ is copied with only its run-length keys shrunk (chunk and batch
sizes, steps, epochs, accumulation, inference chunk, overlap); the model, loss, data
recipe, optimiser and scheduler sections stay as shipped, so the real model is built
(the 48M paper model, the 122M four-stem model, both BS-RoFormer baselines) and trained
for one step of 1 s on CPU, then validated on one 1 s track. The checkpoints (up to
3.5 GB for the four-stem model) are deleted at once. This is what caught
`reduce_factor: 1.0` (torch: "Factor should be < 1.0") in the paper configs.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
BIN = Path(sys.executable).parent
SECONDS = 1  # training and inference chunk
RUN_LENGTH = {  # the only keys changed; everything else runs as shipped
    "audio": {"chunk_size": SECONDS * 44100},
    "training": {"batch_size": 1, "num_steps": 1, "num_epochs": 1,
                 "gradient_accumulation_steps": 1},
    "inference": {"chunk_size": SECONDS * 44100, "batch_size": 1, "num_overlap": 1},
}


def model_type_of(path: Path) -> str:
    return "bs_roformer" if "bs_roformer" in path.name else "bsmamba2"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("configs_data")
    write_tiny_dataset(root / "train", train_tracks=2, valid_tracks=0, seconds=2.0)
    write_tiny_dataset(root / "valid", train_tracks=0, valid_tracks=1, seconds=SECONDS)
    return root


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_starts_training_with_stock_msst_train(path: Path, data: Path,
                                                              tmp_path) -> None:
    config = yaml.safe_load(path.read_text())
    for section, keys in RUN_LENGTH.items():
        config[section].update(keys)
    shrunk = tmp_path / path.name
    shrunk.write_text(yaml.safe_dump(config, sort_keys=False))
    model_type = model_type_of(path)
    result = subprocess.run(
        [str(BIN / "msst-train"), "--model_type", model_type, "--config_path", str(shrunk),
         "--data_path", str(data / "train" / "train"), "--valid_path",
         str(data / "valid" / "valid"), "--dataset_type", "1", "--results_path", "results",
         "--num_workers", "0", "--seed", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "results"
    written = sorted(p.name for p in results.glob("*.ckpt"))
    if results.is_dir():
        shutil.rmtree(results)
    assert result.returncode == 0, output
    assert "Training loss" in result.stdout, output
    assert f"last_{model_type}.ckpt" in written, output
