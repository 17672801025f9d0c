"""Running a recipe (`recipe.Recipe`): its stages in order, resumable.

Stages that finished before with the same settings are skipped, and a finished stage
whose settings changed stops the run before anything runs (`stage_marks`). A stage with
`time_limit_seconds` is stopped at that limit (for equal-time comparisons) and counts as
finished if the file named by its `creates:` exists. Consecutive stages with
`parallel: true` (or a placeholder that resolves to true) run at the same time, each with
its output in `<workdir>/logs/<stage>.log`; the recipe waits for all of them before the
next stage (two trainings on two GPUs, say). Nothing is ever deleted.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UserRuntimeError, UserValueError
from .processes import finish_command, run_command, start_command
from .recipe import Recipe, Stage, fill, resolve_configs, write_configs
from .stage_marks import check_marks, resolve_stage_settings, write_mark

__all__ = ["PARALLEL_POLL_SECONDS", "run_recipe"]

logger = logging.getLogger("bsmamba2_plugin")


def _is_parallel(stage: Stage, values: Mapping[str, str]) -> bool:
    text = fill(stage.parallel, values, stage.name).strip().lower()
    if text not in ("true", "false"):
        raise UserValueError(f"stage {stage.name!r}: parallel: expected true or false, got "
                             f"{text!r}.")
    return text == "true"


def run_recipe(recipe: Recipe, workdir: str | Path, *, overrides: Mapping[str, str] | None = None,
               dry_run: bool = False, force: bool = False,
               echo: Callable[[str], None] | None = None) -> list[tuple[str, str]]:
    """Run (or with dry_run, list) the stages; returns [(stage, "ok" | "skipped" | ...)].

    Progress and the commands go to `echo` (default: the `bsmamba2_plugin` logger).

    Raises:
        RuntimeError: a stage failed or did not create what it promised.
    """
    echo = echo or logger.info
    workdir = Path(workdir).resolve()
    values = recipe.values(workdir, overrides)
    commands = recipe.commands(workdir, overrides)
    if dry_run:
        echo(f"# {recipe.name}: {len(commands)} stages in {workdir}")
        for name, source in recipe.configs.items():
            echo(f"# {{{name}}} = {values[name]}: {source} with the recipe's config_overrides")
        for stage, command in commands:
            echo(shlex.join(command))
        return [(stage.name, "dry-run") for stage, _ in commands]
    marks = workdir / ".stages"
    settings = resolve_stage_settings(recipe, commands, values, resolve_configs(recipe, values))
    if not force and marks.is_dir():
        check_marks(commands, settings, marks, workdir)
    marks.mkdir(parents=True, exist_ok=True)
    write_configs(recipe, workdir, values)
    results: list[tuple[str, str]] = []
    entries = list(enumerate(zip(commands, settings), 1))
    position = 0
    while position < len(entries):
        group = [entries[position]]
        if _is_parallel(group[0][1][0][0], values):
            while (position + len(group) < len(entries) and
                   _is_parallel(entries[position + len(group)][1][0][0], values)):
                group.append(entries[position + len(group)])
        position += len(group)
        if len(group) == 1:
            results.append(_run_stage(group[0], len(commands), workdir, marks, force, echo))
        else:
            results += _run_parallel(group, len(commands), workdir, marks, force, echo)
    return results


def _stage_done(stage: Stage, mark: Path, header: str, force: bool,
                echo: Callable[[str], None]) -> bool:
    if mark.exists() and not force:
        echo(f"{header}: done before with the same settings, skipped ({mark})")
        return True
    return False


def _finish_stage(stage: Stage, stage_settings: dict[str, Any], outcome: str, mark: Path,
                  header: str, start: float, echo: Callable[[str], None]) -> tuple[str, str]:
    creates = stage_settings["creates"]
    if creates and not Path(creates).exists():
        raise UserRuntimeError(f"stage {stage.name!r} ended ({outcome}) without creating "
                               f"{creates}.")
    write_mark(mark, stage_settings)
    echo(f"{header}: {outcome} in {time.monotonic() - start:.0f} s")
    return stage.name, outcome


def _run_stage(entry: Any, total: int, workdir: Path, marks: Path, force: bool,
               echo: Callable[[str], None]) -> tuple[str, str]:
    index, ((stage, command), stage_settings) = entry
    mark = marks / f"{stage.name}.done"
    header = f"[{index}/{total}] {stage.name}"
    if _stage_done(stage, mark, header, force, echo):
        return stage.name, "skipped"
    echo(f"{header}: {shlex.join(command)}")
    start = time.monotonic()
    if stage.copy is not None:
        target = Path(command[2])
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")  # no half copy on a full disk
        try:
            shutil.copyfile(command[1], temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        outcome = "ok"
    else:
        limit = (None if stage_settings["time_limit_seconds"] is None
                 else float(stage_settings["time_limit_seconds"]))
        outcome = run_command(command, cwd=workdir, time_limit=limit)
    return _finish_stage(stage, stage_settings, outcome, mark, header, start, echo)


#: how often a group of parallel stages is checked for stages that ended
PARALLEL_POLL_SECONDS = 0.5


def _run_parallel(group: list[Any], total: int, workdir: Path, marks: Path, force: bool,
                  echo: Callable[[str], None]) -> list[tuple[str, str]]:
    """Start every unfinished stage of the group, then wait for all of them."""
    results: dict[str, tuple[str, str]] = {}
    running = []
    try:
        for index, ((stage, command), stage_settings) in group:
            mark = marks / f"{stage.name}.done"
            header = f"[{index}/{total}] {stage.name}"
            if _stage_done(stage, mark, header, force, echo):
                results[stage.name] = (stage.name, "skipped")
                continue
            log = workdir / "logs" / f"{stage.name}.log"
            echo(f"{header} (parallel, output in {log}): {shlex.join(command)}")
            start = time.monotonic()
            limit = stage_settings["time_limit_seconds"]
            deadline = None if limit is None else start + float(limit)
            process = start_command(command, cwd=workdir, log=log)
            running.append((stage, command, stage_settings, mark, header, start, deadline,
                            process))
        failures = []
        waiting = list(running)
        while waiting:  # in the order they end, so that each reports its own wall time
            ended = [entry for entry in waiting if entry[-1].poll() is not None
                     or entry[-2] is not None and time.monotonic() >= entry[-2]]
            if not ended:
                time.sleep(PARALLEL_POLL_SECONDS)
                continue
            for entry in ended:
                waiting.remove(entry)
                stage, command, stage_settings, mark, header, start, deadline, process = entry
                try:
                    outcome = finish_command(process, command, deadline=deadline)
                    results[stage.name] = _finish_stage(stage, stage_settings, outcome, mark,
                                                        header, start, echo)
                except RuntimeError as error:  # wait for the others before reporting
                    failures.append(f"stage {stage.name!r}: {error} (log: "
                                    f"{workdir / 'logs' / (stage.name + '.log')})")
        if failures:
            raise UserRuntimeError("; ".join(failures))
    except BaseException:
        for *_, process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        raise
    return [results[entry[1][0][0].name] for entry in group]
