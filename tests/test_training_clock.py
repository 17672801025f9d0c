"""Step timing and `training.time_budget_seconds` (msst_integration.training_clock)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


def _config(training: dict) -> object:
    from ml_collections import ConfigDict

    return ConfigDict({"training": {"batch_size": 2, **training},
                       "audio": {"chunk_size": 44100, "sample_rate": 44100}})


def test_epoch_timing_is_recorded_and_the_budget_stops_at_a_step(tmp_path, monkeypatch) -> None:
    from bsmamba2_plugin.msst_integration import training_clock

    times = iter([10.0, 10.0, 12.0, 12.5, 13.0, 13.0, 14.0])
    monkeypatch.setattr(training_clock.time, "perf_counter", lambda: next(times))
    training_clock.reset()
    config = _config({"time_budget_seconds": 0.9})
    args = argparse.Namespace(model_type="bsmamba2", results_path=str(tmp_path))
    training_clock.epoch_started()                  # 10.0
    training_clock.tick(config, "cpu")              # 10.0 step 0 (autotune: 2 s)
    training_clock.tick(config, "cpu")              # 12.0 step 1 (0.5 s); step 0 not counted
    training_clock.tick(config, "cpu")              # 12.5 step 2 (0.5 s): 0.5 s counted
    with pytest.raises(training_clock.BudgetReached):
        training_clock.tick(config, "cpu")          # 13.0: 1.0 s counted >= 0.9
    training_clock.epoch_ended(config, args, 0, None)  # 13.0
    record = json.loads((tmp_path / training_clock.TIMING_FILE).read_text())
    assert record["steps"] == 3 and record["first_step_seconds"] == 2.0
    assert record["median_step_ms"] == 500.0
    assert record["audio_seconds_per_second"] == 4.0  # batch 2 x 1 s / 0.5 s
    assert record["budget_reached"] and record["spent_seconds"] == 3.0
    assert record["budget_spent_seconds"] == 1.0
    with pytest.raises(SystemExit) as stop:
        training_clock.stop_if_exhausted(args)
    assert stop.value.code == 0
    training_clock.reset()


@pytest.mark.parametrize("value", ["1h", 0, -5, True, float("inf")])
def test_a_bad_budget_names_the_key_and_the_fix(value) -> None:
    from bsmamba2_plugin.msst_integration import training_clock

    with pytest.raises(ValueError, match=r"cfg.yaml: training.time_budget_seconds: expected a "
                                         r"number of seconds > 0 or null.*Fix"):
        training_clock.check_budget_value(value, "cfg.yaml")


def test_msst_train_stops_at_the_budget_with_checkpoints_and_timing(tmp_path) -> None:
    """The stock msst-train: a budget spent after the first step ends the run after that
    epoch with status 0, its checkpoints written and the timing recorded."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest_data import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=1, seconds=2.0)
    config = yaml.safe_load((ROOT / "configs/config_tiny_bsmamba2.yaml").read_text())
    config["training"].update(num_epochs=5, num_steps=4, time_budget_seconds=0.001)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [str(BIN / "msst-train"), "--model_type", "bsmamba2", "--config_path", "config.yaml",
         "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
         "--results_path", "out", "--num_workers", "0", "--seed", "7"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = (tmp_path / "out" / "train_timing.jsonl").read_text().splitlines()
    assert len(lines) == 1  # one epoch, then the run stopped
    record = json.loads(lines[0])
    # the first step is outside the budget; the data wait before it is not
    assert record["steps"] in (1, 2) and record["budget_reached"] and record["epoch"] == 0
    assert (f"training.time_budget_seconds reached after {record['steps']} steps"
            in result.stdout)
    assert (tmp_path / "out" / "last_bsmamba2.ckpt").is_file()
    assert (tmp_path / "out" / "last_bsmamba2_ema.ckpt").is_file()

    from bsmamba2_plugin.cli import main

    assert main(["training-summary", str(tmp_path / "out"), "--labels", "tiny", "--loss-scale",
                 "tiny=10", "--out", str(tmp_path / "rep" / "training.md")]) == 0
    data = json.loads((tmp_path / "rep" / "training.json").read_text())["runs"][0]
    assert data["steps"] == record["steps"] and len(data["losses"]) == record["steps"]
    assert data["loss_scale"] == 10.0 and data["model_type"] == "bsmamba2"
    assert (tmp_path / "rep" / "training_loss.png").stat().st_size > 1000
    assert main(["training-summary", str(tmp_path / "out"), "--loss-scale", "tiny",
                 "--out", str(tmp_path / "x.md")]) == 2
