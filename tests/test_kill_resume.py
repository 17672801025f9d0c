"""Issue 12: training killed at any moment never leaves a broken checkpoint, resumes where
it stopped, and a NaN/Inf loss never reaches the weights (safe_load, run_safety)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

ROOT = Path(__file__).parent.parent


def _benchmark():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" /
                                                  "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- atomic save
def test_failed_save_keeps_the_previous_checkpoint(tmp_path) -> None:
    from bsmamba2_plugin.msst_integration.safe_load import atomic_save

    path = tmp_path / "last_bsmamba2.ckpt"
    atomic_save(torch, {"model_state_dict": {"w": torch.ones(2)}}, path)

    class Failing:
        @staticmethod
        def save(obj, handle):
            handle.write(b"PK\x03\x04 half a zip")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(Failing, {"model_state_dict": {"w": torch.zeros(2)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["model_state_dict"]["w"],
                       torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last_bsmamba2.ckpt"]


_SLOW_SAVE = """
import sys, time, torch
from bsmamba2_plugin.msst_integration.safe_load import atomic_save
class Slow:
    @staticmethod
    def save(obj, handle):
        handle.write(b"PK\\x03\\x04 first half"); handle.flush()
        print("writing", flush=True); time.sleep(60)
atomic_save(Slow, {"model_state_dict": {"w": torch.zeros(2)}}, sys.argv[1])
"""


def test_sigkill_during_a_save_keeps_the_previous_checkpoint(tmp_path) -> None:
    from bsmamba2_plugin.msst_integration.safe_load import atomic_save

    path = tmp_path / "last_bsmamba2.ckpt"
    atomic_save(torch, {"model_state_dict": {"w": torch.ones(2)}}, path)
    child = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"  # mid-write now
    child.kill()
    child.wait()
    assert torch.equal(torch.load(path, weights_only=True)["model_state_dict"]["w"],
                       torch.ones(2))


def test_the_guarded_save_adds_the_resume_block_to_the_runs_last_checkpoint_only(
        tmp_path) -> None:
    from bsmamba2_plugin.msst_integration import run_safety
    from bsmamba2_plugin.msst_integration.run_state import RunState
    from bsmamba2_plugin.msst_integration.safe_load import TorchView

    run = RunState(model_is_plugin=True)
    view = TorchView(torch, "msst._training", run)
    last, other = tmp_path / "last_bsmamba2.ckpt", tmp_path / "model_bsmamba2_ep_0.ckpt"
    view.save({"epoch": 0}, str(last))  # before the first epoch ends: no block yet
    assert run_safety.RESUME_KEY not in torch.load(last, weights_only=True)
    run_safety.epoch_started(run, argparse.Namespace(results_path=str(tmp_path),
                                                     model_type="bsmamba2"), None)
    run_safety.epoch_ended(run, None)
    for path in (last, other):
        view.save({"epoch": 0}, str(path))
    block = torch.load(last, weights_only=True)[run_safety.RESUME_KEY]
    assert torch.equal(block["rng"]["torch"], run.rng["torch"])
    assert run_safety.RESUME_KEY not in torch.load(other, weights_only=True)


def test_nan_weights_are_never_written(tmp_path) -> None:
    from bsmamba2_plugin.msst_integration.safe_load import atomic_save

    path = tmp_path / "model.ckpt"
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        atomic_save(torch, {"model_state_dict": {"w": torch.tensor([1.0, float("nan")])}},
                    path)
    assert not path.exists()


# ------------------------------------------------------------------ NaN loss
def test_nonfinite_loss_skips_the_step_and_stops_after_the_limit(tmp_path) -> None:
    """compute_training_loss as msst's train_one_epoch calls it, with a model that
    returns NaN: the step leaves the weights' grads empty; the limit stops training."""
    import argparse

    import msst._training
    import yaml
    from ml_collections import ConfigDict

    from bsmamba2_plugin.msst_integration import bridge, run_safety, run_state

    bridge.install()
    counts = run_state.current().nonfinite
    config = ConfigDict(yaml.safe_load((ROOT / "configs/config_tiny_bsmamba2.yaml").read_text()))
    del config["loss_bsmamba2"]
    config.training.max_nonfinite_steps = 3

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return (x * self.scale * float("nan")).unsqueeze(1)

    model = Broken()
    args = argparse.Namespace(model_type="bsmamba2", use_standard_loss=True)
    y = torch.randn(2, 1, 2, 256)
    multi_loss = lambda estimate, target, x, mask: (estimate - target).abs().mean()
    counts.in_a_row = 0
    counts.new_epoch(5)
    for _ in range(2):
        loss, _ = msst._training.compute_training_loss(
            model, config, args, (y, y.sum(1)), torch.device("cpu"), [0], multi_loss, False)
        loss.backward()
        assert torch.isfinite(loss) and model.scale.grad is None
    with pytest.raises(run_safety.NonFiniteLossError, match="epoch 5 step 3") as error:
        msst._training.compute_training_loss(
            model, config, args, (y, y.sum(1)), torch.device("cpu"), [0], multi_loss, False)
    assert "learning rate" in str(error.value) and "max_nonfinite_steps=3" in str(error.value)
    counts.in_a_row = 0


def test_a_deferred_loss_check_counts_later_and_stops_naming_its_own_step(caplog) -> None:
    """On CUDA with msst's GradScaler the loss is judged at the next step or the epoch's
    end (no GPU->CPU wait between forward and backward): the same counts, warnings and
    stop as an immediate check, one call later, naming the step the loss came from."""
    from bsmamba2_plugin.msst_integration import run_safety
    from bsmamba2_plugin.msst_integration.run_state import NonFiniteCounts

    counts = NonFiniteCounts()
    counts.new_epoch(4)
    nan, one = torch.tensor(float("nan")), torch.tensor(1.0)
    assert run_safety.check_loss(counts, nan, 2, deferred=True)  # step 1: not judged yet
    assert counts.total == 0 and counts.pending is not None
    assert run_safety.check_loss(counts, one, 2, deferred=True)  # judges step 1
    assert (counts.total, counts.in_a_row) == (1, 1)
    assert "epoch 4 step 1: training loss is nan" in caplog.text
    run_safety.settle_losses(counts)  # step 2 was finite
    assert (counts.total, counts.in_a_row, counts.pending) == (1, 0, None)
    run_safety.check_loss(counts, nan, 2, deferred=True)  # step 3
    run_safety.check_loss(counts, nan, 2, deferred=True)  # step 4; judges step 3
    counts.new_epoch(5)  # (an epoch's end settles first: ema.train_one_epoch)
    with pytest.raises(run_safety.NonFiniteLossError, match="epoch 4 step 4"):
        run_safety.settle_losses(counts)
    assert counts.total == 3 and counts.pending is None


# ------------------------------------------------------------ kill and resume
def test_sigkill_mid_epoch_then_resume_joins_the_uninterrupted_loss_curve(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest_data import write_tiny_dataset

    bench = _benchmark()
    write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=1, seconds=2.0)
    config = bench.write_config(tmp_path / "config.yaml", epochs=2, steps=2)
    started = time.monotonic()
    subprocess.run(bench.train_command(config, tmp_path / "a"), cwd=tmp_path, check=True,
                   capture_output=True, timeout=900)
    assert time.monotonic() - started < 900
    report = bench.kill_and_resume(tmp_path, config, tmp_path / "b", kill_after_epoch=0,
                                   steps_per_epoch=2, delay_s=0.0)
    assert report["killed_after_saved_epoch"] == 0  # killed inside epoch 1
    # a kill during a save leaves at most a temporary, which the next save removes
    assert all(".tmp-" in name for name in report["temporaries_after_kill"])
    assert not list((tmp_path / "b").glob("*.tmp-*"))
    assert report["resume_log"], "the resumed run did not restore its state"
    uninterrupted = bench.losses_of(tmp_path / "a" / "last_bsmamba2.ckpt")
    resumed = bench.losses_of(tmp_path / "b" / "last_bsmamba2.ckpt")
    assert len(resumed) == len(uninterrupted) == 2
    flat = [x for epoch in resumed for x in epoch]
    assert flat == pytest.approx([x for epoch in uninterrupted for x in epoch], rel=1e-5,
                                 abs=1e-6)


def test_msst_train_diverging_to_nan_stops_with_a_message_and_saves_nothing(tmp_path
                                                                           ) -> None:
    """lr 1e30: step 1 is finite and blows the weights up, later losses are NaN. (NaN in
    the audio files is no way to inject it: msst's dataset then retries forever.)"""
    import yaml

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest_data import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data", train_tracks=1, valid_tracks=1, seconds=2.0)
    config = yaml.safe_load((ROOT / "configs/config_tiny_bsmamba2.yaml").read_text())
    config["training"].update(num_steps=3, max_nonfinite_steps=2, lr=1.0e30)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(_benchmark().train_command(tmp_path / "config.yaml", tmp_path / "r"),
                         cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "step 2: training loss is nan; step skipped (1 in a row" in text, text[-3000:]
    assert "Training stopped at epoch 0 step 3" in text and "learning rate" in text
    assert not list((tmp_path / "r").glob("*.ckpt"))


def test_two_processes_writing_one_file_do_not_take_each_others_temporary(
        tmp_path, monkeypatch) -> None:
    """The ranks of msst-train-ddp write the same salient-window cache: another process's
    whole write landing between this one's write and rename (simulated here with another
    pid) must leave this process's content, and no temporary file behind (a shared
    temporary name made the second rename fail with FileNotFoundError)."""
    import os

    from bsmamba2_plugin.data.outputs import write_text_atomic

    target = tmp_path / "cache.json"
    real_replace, done = os.replace, []

    def replace(src, dst):
        if not done:
            done.append(True)
            with monkeypatch.context() as other:
                other.setattr(os, "getpid", lambda: 4_000_000)
                write_text_atomic(target, "the other rank's")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_text_atomic(target, "this rank's")
    assert target.read_text() == "this rank's"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
