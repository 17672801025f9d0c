"""The one state the msst patches of a process share: `RunState` (issue 24).

msst 0.1.0 hands the patches nothing but the arguments of the functions they wrap, yet some
facts must outlive one call: which model type was built (it decides whether checkpoint
loads are guarded), the user's `--seed`, the RNG state the next epoch starts from (also the
resume block of `last_<type>.ckpt`), the training clock. They all live in one `RunState`
per process, made on first use (`current()`: when the bridge applies its first patch, or a
DataLoader worker unpickles the dataset) and passed by the bridge to every patch factory
(`bridge.Patch.make(original, run)`). Per process by design: every DataLoader worker and DDP
rank has its own.

What counts as state, and where it may live (`tests/test_architecture.py` checks it): no
module of `msst_integration/` other than this one assigns a mutable value at module level
(a dict, list or set, or the result of a call) or rebinds a module global with `global`.
Allowed there: constants (strings, numbers, tuples, frozensets, frozen dataclasses such as
`bridge.PATCHES`), caches of pure functions through `functools.lru_cache`
(`plugins.available`), and `logging` loggers.

Standard library only and no package imports: every patch module imports this one, so it
imports none of them (no import cycle; the behaviour lives in those modules, the data here).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["NonFiniteCounts", "RunState", "TrainingClock", "current"]


@dataclasses.dataclass
class TrainingClock:
    """Step times and the budget spent (`training_clock` reads and writes it)."""

    spent: float = 0.0  # seconds inside finished epochs
    epoch_start: float | None = None
    ticks: list[float] = dataclasses.field(default_factory=list)
    exhausted: bool = False  # a step would have started past training.time_budget_seconds
    finished: bool = False  # ... and training has ended: msst's later epochs are empty
    steps_total: int = 0
    samples_total: int = 0
    excluded: float | None = None  # the run's first step, outside the budget
    managed: bool = False  # epochs come through msst's train_one_epoch (not accelerate)
    warned: bool = False

    def now_spent(self, now: float) -> float:
        return self.spent + (0.0 if self.epoch_start is None else now - self.epoch_start)

    def budget_spent(self, now: float) -> float:
        return self.now_spent(now) - (self.excluded or 0.0)


@dataclasses.dataclass
class NonFiniteCounts:
    """NaN/Inf training losses (`run_safety.check_loss`): `in_a_row` resets on a finite
    loss, `total` never; `step` and `epoch` name where the last one happened; `pending`
    is a loss whose check waits (`run_safety.settle_losses`): (loss, limit, epoch, step)."""

    in_a_row: int = 0
    total: int = 0
    step: int = 0
    epoch: int = 0
    pending: tuple | None = None

    def new_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0


@dataclasses.dataclass(eq=False)
class RunState:
    """Everything the msst patches of this process share.

    What is trusted: `model_type` / `model_is_plugin` of the model msst built last
    (`safe_load.guard_on`). The training run: `seed` (`--seed`), `rng` (the RNG state the
    next epoch starts from, and the resume block of `last_checkpoint`), `clock`,
    `nonfinite`, `ema` (msst's AveragedModel) and `datasets` (the live `BSMamba2Dataset`s).
    The bridge's own records: per-config step setups, the patch report, deferred patches.
    """

    model_type: str | None = None
    model_is_plugin: bool = False
    seed: int | None = None
    rng: dict[str, Any] | None = None
    last_checkpoint: str | None = None  # absolute path of msst's last_<type>.ckpt
    clock: TrainingClock = dataclasses.field(default_factory=TrainingClock)
    nonfinite: NonFiniteCounts = dataclasses.field(default_factory=NonFiniteCounts)
    ema: Any = None
    datasets: weakref.WeakSet = dataclasses.field(default_factory=weakref.WeakSet)
    step_setups: dict[int, tuple[Any, Any]] = dataclasses.field(default_factory=dict)
    announced: dict[int, Any] = dataclasses.field(default_factory=dict)
    patch_report: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    msst_version_checked: bool = False
    deferred: dict[str, list[Callable[[], None]]] = dataclasses.field(default_factory=dict)

    def note_model(self, model_type: str, *, is_plugin: bool) -> None:
        """Record the effective type of the model msst just built (the bridge's factory)."""
        self.model_type, self.model_is_plugin = model_type, is_plugin

    def per_config(self, table: dict[int, tuple[Any, Any]], config: Any,
                   build: Callable[[Any], Any]) -> Any:
        """`build(config)`, once per config object (msst passes the same one every step;
        a ConfigDict is not hashable, so the table is keyed by id and holds the config)."""
        cached = table.get(id(config))
        if cached is None or cached[0] is not config:
            cached = (config, build(config))
            table[id(config)] = cached
        return cached[1]

    def defer(self, module_name: str, action: Callable[[], None]) -> None:
        """Call `action()` when `run_deferred(module_name)` is called (a patch that waits
        for a module of this package that is still executing; see `bridge._make_dataset`)."""
        self.deferred.setdefault(module_name, []).append(action)

    def run_deferred(self, module_name: str) -> None:
        """Call (once) the actions deferred until `module_name` is complete."""
        for action in self.deferred.pop(module_name, ()):
            action()


_CURRENT: list[RunState] = []  # the one RunState of this process, made on first use


def current() -> RunState:
    """This process's `RunState` (made on the first call)."""
    if not _CURRENT:
        _CURRENT.append(RunState())
    return _CURRENT[0]
