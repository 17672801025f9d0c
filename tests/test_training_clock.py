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
    from bsmamba2_plugin.msst_integration.run_state import TrainingClock

    times = iter([10.0, 10.0, 12.0, 12.5, 13.0, 13.0, 14.0])
    monkeypatch.setattr(training_clock.time, "perf_counter", lambda: next(times))
    clock = TrainingClock()
    config = _config({"time_budget_seconds": 0.9})
    args = argparse.Namespace(model_type="bsmamba2", results_path=str(tmp_path))
    assert not training_clock.end_of_training(clock, args)
    training_clock.epoch_started(clock)                    # 10.0
    training_clock.tick(clock, config, "cpu")              # 10.0 step 0 (autotune: 2 s)
    training_clock.tick(clock, config, "cpu")              # 12.0 step 1; step 0 not counted
    training_clock.tick(clock, config, "cpu")              # 12.5 step 2: 0.5 s counted
    with pytest.raises(training_clock.BudgetReached):
        training_clock.tick(clock, config, "cpu")          # 13.0: 1.0 s counted >= 0.9
    training_clock.epoch_ended(clock, config, args, 0, None)  # 13.0
    record = json.loads((tmp_path / training_clock.TIMING_FILE).read_text())
    assert record["steps"] == 3 and record["first_step_seconds"] == 2.0
    assert record["median_step_ms"] == 500.0
    assert record["audio_seconds_per_second"] == 4.0  # batch 2 x 1 s / 0.5 s
    assert record["budget_reached"] and record["spent_seconds"] == 3.0
    assert record["budget_spent_seconds"] == 1.0
    assert not clock.finished  # msst saves and validates the epoch the budget ended
    assert training_clock.end_of_training(clock, args) and clock.finished
    assert training_clock.end_of_training(clock, args)  # every later epoch is empty too


def test_a_launcher_without_epochs_ignores_the_budget_with_a_warning(caplog) -> None:
    """msst-train-accelerate has no train_one_epoch to end an epoch at the budget."""
    from bsmamba2_plugin.msst_integration import training_clock
    from bsmamba2_plugin.msst_integration.run_state import TrainingClock

    config = _config({"time_budget_seconds": 1e-9})
    clock = TrainingClock()
    for _ in range(3):
        training_clock.tick(clock, config, "cpu")  # no BudgetReached
    assert "time_budget_seconds is ignored by this launcher" in caplog.text


def test_after_the_budget_the_epochs_left_in_msst_loop_are_empty(tmp_path, caplog) -> None:
    """Training ends through msst's own loop (no SystemExit): once the budget is spent, the
    four calls of the loop's body return at once without running msst's code."""
    from bsmamba2_plugin.msst_integration import ema
    from bsmamba2_plugin.msst_integration.run_state import RunState

    ran = []

    def train_one_epoch(model, config, args, optimizer, device, device_ids, epoch, use_amp,
                        scaler, scheduler, gradient_accumulation_steps, train_loader,
                        multi_loss, all_losses=None, world_size=None, ema_model=None,
                        safe_mode=None):
        ran.append("train")

    def compute_epoch_metrics(model, args, config, device, device_ids, best_metric, epoch,
                              scheduler, optimizer, all_time_all_metrics, all_losses,
                              world_size=None, metrics_avg=None, all_metrics=None):
        ran.append("metrics")

    run = RunState()
    run.clock.exhausted = True  # a step of the last epoch would have started past the budget
    args = argparse.Namespace(model_type="bsmamba2", results_path=str(tmp_path))
    train = ema.make_train_one_epoch(train_one_epoch, run)
    save = ema.make_save_last_weights(lambda *a, **k: ran.append("save"), run)
    valid = ema.make_valid_multi_gpu(lambda *a, **k: ran.append("valid"), run)
    metrics = ema.make_compute_epoch_metrics(compute_epoch_metrics, run)
    caplog.set_level("INFO", logger="bsmamba2_plugin")
    for epoch in (3, 4):
        assert train(None, _config({}), args, None, "cpu", [0], epoch, False, None, None, 1,
                     None, None, {}) is None
        assert save(args, None, [0], None, epoch, {}, {}, 2.5, None) is None
        assert valid(None, args, None, [0]) == (None, None)
        assert metrics(model=None, args=args, config=None, device="cpu", device_ids=[0],
                       best_metric=2.5, epoch=epoch, scheduler=None, optimizer=None,
                       all_time_all_metrics={}, all_losses={}) == 2.5
    assert ran == [] and run.clock.finished
    assert caplog.text.count("time_budget_seconds reached") == 1


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
    assert (tmp_path / "out" / "last_bsmamba2_ema.ckpt").is_file()
    # msst's own loop ran out its other four epochs empty: nothing trained or saved again
    import torch

    last = torch.load(tmp_path / "out" / "last_bsmamba2.ckpt", weights_only=True)
    assert last["epoch"] == 0 and "bsmamba2_resume" in last
    assert result.stdout.count("Train epoch:") == 1

    from bsmamba2_plugin.cli import main

    assert main(["training-summary", str(tmp_path / "out"), "--labels", "tiny", "--loss-scale",
                 "tiny=10", "--out", str(tmp_path / "rep" / "training.md")]) == 0
    data = json.loads((tmp_path / "rep" / "training.json").read_text())["runs"][0]
    assert data["steps"] == record["steps"] and len(data["losses"]) == record["steps"]
    assert data["loss_scale"] == 10.0 and data["model_type"] == "bsmamba2"
    assert (tmp_path / "rep" / "training_loss.png").stat().st_size > 1000
    assert main(["training-summary", str(tmp_path / "out"), "--loss-scale", "tiny",
                 "--out", str(tmp_path / "x.md")]) == 2


def _agree(rank: int, work: str, results) -> None:
    import torch.distributed as dist

    from bsmamba2_plugin.msst_integration import training_clock

    dist.init_process_group("gloo", init_method=f"file://{work}/rendezvous", rank=rank,
                            world_size=2)
    try:
        results.put((rank, training_clock._all_ranks_agree(rank == 0, "cpu"),
                     training_clock._all_ranks_agree(False, "cpu")))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_stop_at_the_same_step(tmp_path) -> None:
    """One rank past the budget stops every rank (else the others hang in all_reduce)."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_agree, args=(rank, str(tmp_path), results))
                 for rank in range(2)]
    for process in processes:
        process.start()
    got = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert got == [(0, True, False), (1, True, False)]
