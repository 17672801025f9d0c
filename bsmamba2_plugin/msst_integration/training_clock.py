"""Step timing and a training time budget for every model type msst trains.

The bridge calls `tick` at the start of every training step (its `compute_training_loss`
wrapper) and `epoch_started` / `epoch_ended` around msst's `train_one_epoch`; this holds
for msst's own model types too, so BS-RoFormer and BSMamba2 are timed the same way.

- Timing: msst's loop reads `loss.item()` (and, under DDP, all-reduces the loss) after every
  optimizer step, so the GPU has finished step i when step i + 1 starts: the gap between two
  ticks is one whole step (data wait, forward, loss, backward, optimizer). At the end of each
  epoch the first rank logs the first step (kernel autotuning or compilation happens there),
  the median of the others and seconds of audio trained per second, and appends one JSON line
  to `<results_path>/train_timing.jsonl`.
- Budget: `training.time_budget_seconds: S` stops training once S seconds have been spent
  inside training epochs, not counting the run's first step (its one-time kernel
  autotuning or compilation, cached on disk for later runs, is reported on its own) nor
  validation and checkpoint writing between epochs. The step that would start past the budget is
  not run (`tick` raises `BudgetReached`, which the bridge's `train_one_epoch` wrapper
  catches); msst then finishes that epoch as usual (last and best checkpoints, EMA,
  validation). Training then ends through msst's own loop: `end_of_training` makes every
  later epoch of it empty (the patched `train_one_epoch`, `save_last_weights`,
  `valid_multi_gpu` and `compute_epoch_metrics` return at once), so msst's `train_model`
  returns as at the end of any run and the command exits with status 0 (a Python caller of
  msst's `train_model` gets a normal return, not SystemExit). Under DDP all ranks stop at
  the same step (the decision is all-reduced). Equal-time comparisons use it.

The clock itself (`run_state.TrainingClock`) is part of the process's `RunState`; the
functions here read and write the one they are given.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from typing import Any

from .common import cfg_get, ensure_console, first_rank
from .run_state import TrainingClock

__all__ = ["BUDGET_KEY", "TIMING_FILE", "BudgetReached", "check_budget_value", "end_of_training",
           "epoch_ended", "epoch_started", "tick"]

logger = logging.getLogger("bsmamba2_plugin")

BUDGET_KEY = "time_budget_seconds"
TIMING_FILE = "train_timing.jsonl"


class BudgetReached(BaseException):
    """Raised at the start of the step that would run past the budget.

    A BaseException, so that msst's `--safe_mode` (which catches Exception around each
    step) cannot swallow it; the bridge's `train_one_epoch` wrapper catches it, so it never
    leaves the patches.
    """


def check_budget_value(value: Any, source: str) -> None:
    """Raise ValueError unless `training.time_budget_seconds` is null or a number > 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not \
            math.isfinite(value) or value <= 0:
        raise ValueError(f"{source}: training.{BUDGET_KEY}: expected a number of seconds > 0 "
                         f"or null, got {value!r}. Fix: e.g. `{BUDGET_KEY}: 3600` trains for "
                         f"one hour of step time, or remove the key.")


def _budget(config: Any) -> float | None:
    value = cfg_get(config.training, BUDGET_KEY, None)
    check_budget_value(value, "config")
    return None if value is None else float(value)


def _all_ranks_agree(flag: bool, device: Any) -> bool:
    """True on every rank if `flag` is true on any (DDP); `flag` itself otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def tick(clock: TrainingClock, config: Any, device: Any) -> None:
    """Start of a training step: record the time; stop here if the budget is spent.

    Raises:
        BudgetReached: `training.time_budget_seconds` is spent (on any rank).
    """
    now = time.perf_counter()
    if clock.epoch_start is None:  # a caller that is not msst's train_one_epoch
        clock.epoch_start = now
    if clock.excluded is None and clock.steps_total == 0 and len(clock.ticks) == 1:
        clock.excluded = now - clock.ticks[0]  # the run's first step has just finished
    budget = _budget(config)
    if budget is not None and not clock.managed:
        if not clock.warned and first_rank():  # msst-train-accelerate has no epoch hook
            clock.warned = True
            ensure_console()
            logger.warning("bsmamba2: training.%s is ignored by this launcher (it works with "
                           "msst-train and msst-train-ddp)", BUDGET_KEY)
        budget = None
    if budget is not None and clock.ticks:
        if _all_ranks_agree(clock.budget_spent(now) >= budget, device):
            clock.exhausted = True
            raise BudgetReached()
    clock.ticks.append(now)


def epoch_started(clock: TrainingClock) -> None:
    clock.managed = True
    clock.epoch_start = time.perf_counter()
    clock.ticks = []


def epoch_ended(clock: TrainingClock, config: Any, args: Any, epoch: int,
                world_size: int | None) -> None:
    """Account the epoch's time; log and record its timing (first rank only). A spent
    budget ends training at the next epoch's start (`end_of_training`), after msst has
    saved and validated this one."""
    end = time.perf_counter()
    if clock.epoch_start is None:
        return
    elapsed = end - clock.epoch_start
    clock.spent += elapsed
    ticks = clock.ticks + [end]
    steps = len(clock.ticks)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    batch = int(cfg_get(config.training, "batch_size", 1))
    ranks = int(world_size or 1)
    chunk = int(cfg_get(config.audio, "chunk_size", 0))
    rate = int(cfg_get(config.audio, "sample_rate", 44100))
    if clock.excluded is None and clock.steps_total == 0 and gaps:
        clock.excluded = gaps[0]
    clock.steps_total += steps
    clock.samples_total += steps * batch * ranks
    median = statistics.median(gaps[1:]) if len(gaps) > 1 else None
    record = {
        "model_type": args.model_type, "epoch": int(epoch), "steps": steps,
        "epoch_seconds": round(elapsed, 3),
        "first_step_seconds": round(gaps[0], 3) if gaps else None,
        "median_step_ms": None if median is None else round(1000 * median, 2),
        "audio_seconds_per_second": (None if not median or not chunk else
                                     round(batch * ranks * chunk / rate / median, 2)),
        "batch_per_rank": batch, "ranks": ranks,
        "spent_seconds": round(clock.spent, 3),
        "budget_spent_seconds": round(clock.spent - (clock.excluded or 0.0), 3),
        "steps_total": clock.steps_total,
        "audio_seconds_total": round(clock.samples_total * chunk / rate, 1) if chunk else None,
        "budget_seconds": _budget(config), "budget_reached": clock.exhausted,
    }
    clock.epoch_start = None
    if first_rank():
        ensure_console()
        logger.info(
            "bsmamba2-plugin timing (%s), epoch %d: %d steps in %.1f s; first step %.2f s (includes kernel "
            "autotuning or compilation); median step %s; %s s of audio per second; %.0f s "
            "spent in training after the first step%s", args.model_type, epoch, steps, elapsed,
            record["first_step_seconds"] or 0.0,
            "n/a" if median is None else f"{1000 * median:.1f} ms",
            record["audio_seconds_per_second"], record["budget_spent_seconds"],
            "" if record["budget_seconds"] is None else
            f" of a {record['budget_seconds']:g} s budget")
        results = getattr(args, "results_path", None)
        if results:
            os.makedirs(results, exist_ok=True)
            with open(os.path.join(results, TIMING_FILE), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def end_of_training(clock: TrainingClock, args: Any) -> bool:
    """Called before an epoch starts: True once the budget is spent, then this epoch and
    every later one of msst's loop are empty. Logs, once, where the run stopped."""
    if not clock.exhausted:
        return False
    if not clock.finished and first_rank():
        ensure_console()
        logger.info("bsmamba2: training.%s reached after %d steps (%.0f s of counted step "
                    "time; %.0f s in training epochs with the first step); training ends "
                    "here (the remaining epochs of msst's loop are skipped); last and best "
                    "checkpoints are in %s", BUDGET_KEY, clock.steps_total,
                    clock.spent - (clock.excluded or 0.0), clock.spent,
                    getattr(args, "results_path", "?"))
    clock.finished = True
    return True
