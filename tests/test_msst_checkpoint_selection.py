"""Which weights get scored, and resuming from the right file (needs msst).

Training writes `best_<type>.ckpt`, the validation-selected (EMA) weights, whose meta
says epoch, metric and weights; the paper and baseline recipes score that file; training
refuses to resume from a file of EMA weights and names `last_<type>.ckpt`, and resuming
from `last_<type>.ckpt` restores the EMA from the file beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "config_tiny_bsmamba2.yaml"
BIN = Path(sys.executable).parent


def train(work: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "msst-train"), "--model_type", "bsmamba2", "--config_path", str(TINY),
         "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
         "--results_path", "results", "--num_workers", "0", *extra],
        cwd=work, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("selection")
    write_tiny_dataset(work / "data", train_tracks=2, valid_tracks=1, seconds=2.0)
    result = train(work)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return work


def test_training_writes_the_validation_selected_ema_weights_as_best(trained: Path) -> None:
    results = trained / "results"
    best = torch.load(results / "best_bsmamba2.ckpt", map_location="cpu", weights_only=True)
    ema = torch.load(results / "last_bsmamba2_ema.ckpt", map_location="cpu", weights_only=True)
    meta = best["meta"]
    assert meta["model_type"] == "bsmamba2" and meta["weights"] == "ema"
    assert meta["epoch"] == 0 and meta["metric"] == "sdr"
    history = [line for line in (results / "training_history.jsonl").read_text().splitlines()]
    assert meta["metric_value"] == pytest.approx(
        yaml.safe_load(history[-1])["metrics_avg"]["sdr"])
    for name, tensor in ema["model_state_dict"].items():
        assert torch.equal(best["model_state_dict"][name], tensor), name
    assert not list(results.glob("*.tmp"))  # written atomically


@pytest.mark.parametrize("recipe, model_type", [("musdb18hq_vocals_paper", "bsmamba2"), (
    "musdb18hq_vocals_bs_roformer_baseline", "bs_roformer")])
def test_paper_recipes_score_the_validation_selected_checkpoint(recipe: str,
                                                                model_type: str) -> None:
    stages = {s["name"]: s for s in
              yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())["stages"]}
    for name in ("valid", "evaluate"):
        assert f"{{workdir}}/train/best_{model_type}.ckpt" in stages[name]["run"], name


@pytest.mark.parametrize("start", ["best_bsmamba2.ckpt", "last_bsmamba2_ema.ckpt",
                                   "model_bsmamba2_ep_0_*.ckpt"])
def test_resuming_from_ema_weights_is_refused_naming_the_raw_file(trained: Path,
                                                                   start: str) -> None:
    path = next((trained / "results").glob(start)).relative_to(trained)
    result = train(trained, "--start_check_point", str(path), "--results_path", "resumed")
    output = result.stdout[-2000:] + result.stderr[-2000:]
    assert result.returncode != 0 and "Traceback" not in result.stderr, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert str(path) in errors[0] and "meta.weights: ema" in errors[0]
    assert "resume from results/last_bsmamba2.ckpt" in errors[0]


def test_resuming_from_last_restores_raw_weights_and_the_ema(trained: Path) -> None:
    # a full resume continues after the saved epoch: give it one more epoch to run
    config = yaml.safe_load(TINY.read_text())
    config["training"]["num_epochs"] = int(config["training"]["num_epochs"]) + 1
    longer = trained / "config_one_more_epoch.yaml"
    longer.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(BIN / "msst-train"), "--model_type", "bsmamba2", "--config_path", str(longer),
         "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
         "--results_path", "resumed_ok", "--num_workers", "0",
         "--start_check_point", "results/last_bsmamba2.ckpt"],
        cwd=trained, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "EMA weights restored from results/last_bsmamba2_ema.ckpt" in result.stdout


def test_a_converted_ema_file_is_a_warm_start_not_a_resume(tmp_path) -> None:
    from msst.utils.model_utils import load_start_checkpoint

    from bsmamba2_plugin import BSMamba2, BSMamba2Config

    model = BSMamba2(BSMamba2Config.tiny())
    args = argparse.Namespace(start_check_point="converted.ckpt", model_type="bsmamba2",
                              load_only_compatible_weights=False, lora_checkpoint_loralib=None)
    checkpoint = {"model_state_dict": BSMamba2(BSMamba2Config.tiny()).state_dict(),
                  "meta": {"model_type": "bsmamba2", "weights": "ema",
                           "converted_from": "sota_model.ckpt (official Lightning checkpoint "
                                             "(EMA weights))"}}
    load_start_checkpoint(args, model, checkpoint, type_="train")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint["model_state_dict"][name]), name


def test_evaluate_records_which_checkpoint_and_weights_it_scored(trained: Path) -> None:
    import json

    result = subprocess.run(
        [sys.executable, "-m", "bsmamba2_plugin.cli", "evaluate", "--config", str(TINY),
         "--checkpoint", "results/best_bsmamba2.ckpt", "--name", "best", "--data",
         "data/valid", "--chunk-seconds", "1", "--no-mixture", "--out", "report"],
        cwd=trained, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [json.loads(line) for line in (trained / "report" / "results.jsonl").open()]
    assert rows and all(r["checkpoint"] == "results/best_bsmamba2.ckpt" for r in rows)
    assert all(r["weights"] == "ema" for r in rows)
