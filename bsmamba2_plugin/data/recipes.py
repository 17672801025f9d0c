"""Experiment recipes: one YAML per experiment, run stage by stage through stock CLIs.

A recipe names its msst config, data, seed, hardware, expected duration and the
metrics to report, and lists stages. Each stage is either a command
(`run: [msst-train, --model_type, bsmamba2, ...]`, any console script of this
environment, `bsmamba2 ...` included) or a file copy (`copy: {from: A, to: B}`).
Strings may use `{name}` placeholders: `workdir`, `seed`, every key of the recipe's
`vars:` mapping, and the configs: with `config: PATH`, `{config}` is the resolved copy
`<workdir>/config.yaml` (the config with `config_overrides` merged in, kept beside the
outputs); with `configs: {NAME: PATH, ...}`, `{config_NAME}` is `<workdir>/config_NAME.yaml`.
`--set name=value` overrides any variable. A `run` argument that is exactly one
placeholder whose value has spaces becomes several arguments (`{chunks}` = "1 2 4").

Running is resumable: a stage that finished writes `<workdir>/.stages/<name>.done` with
the settings it ran with (its resolved command, the variables it uses, the resolved
configs it reads, and the stage before it) and is skipped next time if they are the
same. If a finished stage's settings changed (a different `--set` value, an edited
config), the run stops before running anything, names the stage and what changed, and
offers a new workdir or `force=True` (reruns every stage). It does not rerun in place on
its own: that would overwrite the earlier results, and some stages resume from their
own outputs. A stage with `time_limit_seconds` is stopped at that limit (for equal-time
comparisons) and counts as finished if the file named by its `creates:` exists.
Consecutive stages with `parallel: true` (or a placeholder that resolves to true) run at
the same time, each with its output in `<workdir>/logs/<stage>.log`; the recipe waits for
all of them before the next stage (two trainings on two GPUs, say). Nothing is ever deleted.

Schema (top level): name, description, hardware, expected_duration, seed, config or
configs, config_overrides (mapping merged into every config), config_overrides_by_config
(configs: name -> mapping merged into that config only, after config_overrides), vars,
metrics, stages.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .processes import finish_command, run_command, start_command

__all__ = ["Recipe", "SettingsChangedError", "Stage", "find_resource", "load_recipe",
           "run_recipe"]

logger = logging.getLogger("bsmamba2_plugin")

_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_TOP_KEYS = {"name", "description", "hardware", "expected_duration", "seed", "config",
             "configs", "config_overrides", "config_overrides_by_config", "vars", "metrics",
             "stages"}
_STAGE_KEYS = {"name", "run", "copy", "creates", "time_limit_seconds", "description",
               "parallel"}


def _shipped_folders(kind: str) -> list[Path]:
    """The repository checkout this package runs from, then the copy installed with it."""
    package = Path(__file__).resolve().parents[1]  # bsmamba2_plugin/
    return [package.parent / kind, package / "_data" / kind]


def find_resource(kind: str, name: str | Path) -> Path:
    """Path of a shipped config or recipe (`kind` "configs" or "recipes").

    `name` is a path, a file name, or a name without ".yaml" (as `bsmamba2 recipe list`
    prints it). Looks at the path as given, then the repository checkout this package
    runs from, then the copy installed with the package.

    Raises:
        FileNotFoundError: with the shipped names, the closest ones and the places looked at.
    """
    path = Path(name)
    names = [path] + ([path.with_name(path.name + ".yaml")] if path.suffix == "" else [])
    candidates = list(names)
    if not path.is_absolute():
        candidates += [folder / n.name for folder in _shipped_folders(kind) for n in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    shipped = sorted({p.stem for folder in _shipped_folders(kind) if folder.is_dir()
                      for p in folder.glob("*.yaml")})
    close = difflib.get_close_matches(path.stem, shipped, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = (f" Shipped {kind}: {', '.join(shipped)}" + (
        " (`bsmamba2 recipe list`)." if kind == "recipes" else ".")) if shipped else ""
    raise FileNotFoundError(f"{kind[:-1]} {str(name)!r} not found.{hint}{listing} Looked at "
                            f"{', '.join(str(c) for c in candidates)}.")


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    run: tuple[str, ...] = ()
    copy: Mapping[str, str] | None = None
    creates: str | None = None
    time_limit_seconds: str | None = None  # may hold a placeholder
    description: str = ""
    parallel: str = "false"  # may hold a placeholder


@dataclasses.dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    description: str
    hardware: str
    expected_duration: str
    seed: int
    configs: Mapping[str, Path]  # placeholder name -> source config
    config_overrides: Mapping[str, Any]
    vars: Mapping[str, Any]
    metrics: tuple[str, ...]
    stages: tuple[Stage, ...]
    #: placeholder name (config_<name>) -> overrides of that config only
    config_overrides_by_config: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict)

    def values(self, workdir: Path, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """Placeholder values: workdir, config, seed, vars; `overrides` win."""
        values = {"workdir": str(workdir), "seed": str(self.seed)}
        values.update({name: str(workdir / f"{name}.yaml") for name in self.configs})
        values.update({k: str(v) for k, v in self.vars.items()})
        for key, value in (overrides or {}).items():
            if key not in values:
                raise KeyError(f"--set {key}=...: {self.path.name} has no variable {key!r}; it "
                               f"has {', '.join(sorted(values))}.")
            values[key] = value
        return values

    def commands(self, workdir: Path, overrides: Mapping[str, str] | None = None
                 ) -> list[tuple[Stage, list[str]]]:
        """Each stage with its command after substitution (copy stages: a `cp` line)."""
        values = self.values(workdir, overrides)
        out = []
        for stage in self.stages:
            if stage.copy is not None:
                out.append((stage, ["cp", _fill(stage.copy["from"], values, stage.name),
                                    _fill(stage.copy["to"], values, stage.name)]))
            else:
                command: list[str] = []
                for part in stage.run:
                    filled = _fill(part, values, stage.name)
                    # an argument that is one placeholder expands to several words
                    whole = _PLACEHOLDER.fullmatch(part)
                    command += shlex.split(filled) if whole and " " in filled else [filled]
                out.append((stage, command))
        return out


def _fill(text: str, values: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"stage {where!r}: unknown placeholder {{{key}}}; known: "
                           f"{', '.join(sorted(values))}.")
        return values[key]

    return _PLACEHOLDER.sub(replace, str(text))


def load_recipe(path: str | Path) -> Recipe:
    """Parse and check a recipe YAML.

    Raises:
        FileNotFoundError, KeyError, ValueError: naming the file and key.
    """
    path = find_resource("recipes", path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level.")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise KeyError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: "
                       f"{', '.join(sorted(_TOP_KEYS))}.")
    for key in ("name", "stages", "seed", "hardware", "expected_duration", "metrics"):
        if key not in raw:
            raise KeyError(f"{path}: missing required key {key!r}.")
    if ("config" in raw) == ("configs" in raw):
        raise KeyError(f"{path}: give exactly one of 'config' (one path) or 'configs' "
                       f"(name -> path).")
    if "config" in raw:
        configs = {"config": find_resource("configs", raw["config"])}
    else:
        configs = {f"config_{name}": find_resource("configs", value)
                   for name, value in dict(raw["configs"]).items()}
    by_config = raw.get("config_overrides_by_config") or {}
    if by_config and "configs" not in raw:
        raise KeyError(f"{path}: config_overrides_by_config needs 'configs' (name -> path); "
                       f"with one 'config' use config_overrides.")
    unknown = [name for name in by_config if f"config_{name}" not in configs]
    if unknown or not all(isinstance(v, dict) for v in by_config.values()):
        raise KeyError(f"{path}: config_overrides_by_config: expected a mapping per config "
                       f"name of 'configs' ({', '.join(n[len('config_'):] for n in configs)}), "
                       f"got {', '.join(map(str, by_config))}.")
    stages = []
    for i, item in enumerate(raw["stages"]):
        where = f"{path}: stages[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{where}: expected a mapping with a 'name'.")
        extra = set(item) - _STAGE_KEYS
        if extra:
            raise KeyError(f"{where}: unknown key(s) {', '.join(sorted(extra))}; valid: "
                           f"{', '.join(sorted(_STAGE_KEYS))}.")
        if ("run" in item) == ("copy" in item):
            raise ValueError(f"{where} ({item['name']}): give exactly one of 'run' or 'copy'.")
        if "copy" in item and set(item["copy"]) != {"from", "to"}:
            raise ValueError(f"{where}: copy needs exactly 'from' and 'to'.")
        stages.append(Stage(name=str(item["name"]),
                            run=tuple(str(p) for p in item.get("run", ())),
                            copy=item.get("copy"), creates=item.get("creates"),
                            time_limit_seconds=(None if item.get("time_limit_seconds") is None
                                                else str(item["time_limit_seconds"])),
                            description=str(item.get("description", "")),
                            parallel=str(item.get("parallel", False)).lower()))
        if "copy" in item and stages[-1].parallel != "false":
            raise ValueError(f"{where} ({item['name']}): only 'run' stages can be parallel.")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names must be unique, got {names}.")
    return Recipe(path=path, name=str(raw["name"]), description=str(raw.get("description", "")),
                  hardware=str(raw["hardware"]), expected_duration=str(raw["expected_duration"]),
                  seed=int(raw["seed"]), configs=configs,
                  config_overrides=raw.get("config_overrides") or {},
                  vars=raw.get("vars") or {}, metrics=tuple(raw["metrics"]),
                  stages=tuple(stages),
                  config_overrides_by_config={f"config_{name}": value
                                              for name, value in by_config.items()})


def _merge(base: dict, changes: Mapping[str, Any], values: Mapping[str, str]) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, values)
        elif isinstance(value, str):
            out[key] = yaml.safe_load(_fill(value, values, "config_overrides"))
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_configs(recipe: Recipe, values: Mapping[str, str]) -> dict[str, dict]:
    """Each config (by placeholder name) with the recipe's overrides merged in."""
    return {name: _merge(_merge(yaml.safe_load(source.read_text()), recipe.config_overrides,
                                values), recipe.config_overrides_by_config.get(name, {}),
                         values)
            for name, source in recipe.configs.items()}


def write_configs(recipe: Recipe, workdir: Path, values: Mapping[str, str]) -> list[Path]:
    """Each config with the recipe's overrides, written to <workdir>/<name>.yaml."""
    written = []
    for name, resolved in resolve_configs(recipe, values).items():
        target = workdir / f"{name}.yaml"
        header = (f"# Resolved by `bsmamba2 recipe run {recipe.path.name}` from "
                  f"{recipe.configs[name].name} and the recipe's config_overrides.\n")
        _write_atomic(target, header + yaml.safe_dump(resolved, sort_keys=False))
        written.append(target)
    return written


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# ---------------------------------------------------------------- stage cache
# A finished stage's mark holds the settings it ran with: its resolved command, the
# recipe variables it uses, the resolved configs it reads, and the fingerprint of the
# stage before it (whose outputs it may read). A later run skips the stage only when
# all of that is unchanged; otherwise it stops before running anything (see run_recipe).
class SettingsChangedError(RuntimeError):
    """A finished stage ran with other settings than this run resolves to."""


def _stage_settings(recipe: Recipe, commands: Sequence[tuple[Stage, list[str]]],
                    values: Mapping[str, str], configs: Mapping[str, dict]
                    ) -> list[dict[str, Any]]:
    settings: list[dict[str, Any]] = []
    previous = ""
    for stage, command in commands:
        texts = [*stage.run, *(stage.copy or {}).values(), stage.creates or "",
                 stage.time_limit_seconds or ""]
        used = sorted({key for text in texts for key in _PLACEHOLDER.findall(str(text))})
        entry = {
            "command": command,
            "creates": _fill(stage.creates, values, stage.name) if stage.creates else None,
            "time_limit_seconds": (None if stage.time_limit_seconds is None else
                                   _fill(stage.time_limit_seconds, values, stage.name)),
            "variables": {k: values[k] for k in used if k not in configs},
            "configs": {k: configs[k] for k in used if k in configs},
            "after": previous,
        }
        entry["fingerprint"] = previous = hashlib.sha256(
            json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()
        settings.append(entry)
    return settings


def _read_mark(mark: Path) -> dict[str, Any]:
    text = mark.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a mark of an earlier version: the command line only
        return {"legacy_command_line": text.strip()}


def _is_done(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if "legacy_command_line" in old:
        return old["legacy_command_line"] == shlex.join(new["command"])
    return old.get("fingerprint") == new["fingerprint"]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a stage's recorded settings and this run's, in words."""
    if "legacy_command_line" in old:
        return [f"command {old['legacy_command_line']!r} -> {shlex.join(new['command'])!r}"]
    changes = []
    before, after = old.get("variables", {}), new["variables"]
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changes.append(f"{{{key}}} {before.get(key)!r} -> {after.get(key)!r}")
    for name in sorted(set(old.get("configs", {})) | set(new["configs"])):
        a, b = _flat(old.get("configs", {}).get(name, {})), _flat(new["configs"].get(name, {}))
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append(f"{{{name}}} {key} {a.get(key, '(unset)')!r} -> "
                               f"{b.get(key, '(unset)')!r}")
    if not changes and old.get("command") != new["command"]:
        changes.append(f"command {shlex.join(old.get('command', []))!r} -> "
                       f"{shlex.join(new['command'])!r}")
    if not changes and old.get("after") != new["after"]:
        changes.append("it ran after an earlier stage whose settings were different")
    return changes


def _check_marks(commands: Sequence[tuple[Stage, list[str]]], settings: list[dict[str, Any]],
                 marks: Path, workdir: Path) -> None:
    """Raise SettingsChangedError when a finished stage ran with other settings."""
    changed = []
    for (stage, _), new in zip(commands, settings):
        mark = marks / f"{stage.name}.done"
        if mark.exists():
            old = _read_mark(mark)
            if not _is_done(old, new):
                changed.append((stage.name, _changes(old, new)))
    if not changed:
        return
    first, reasons = changed[0]
    lines = [(f"stage {first!r} finished in {workdir} with other settings than this run's: "
              f"{'; '.join(reasons)}.")]
    own = [(name, r) for name, r in changed[1:]
           if r != ["it ran after an earlier stage whose settings were different"]]
    for name, r in own:
        lines.append(f"Stage {name!r} too: {'; '.join(r)}.")
    later = [name for name, r in changed[1:] if (name, r) not in own]
    if later:
        lines.append(f"The finished stages after it ({', '.join(repr(n) for n in later)}) "
                     f"used its results.")
    lines.append(f"{'Their results are' if len(changed) > 1 else 'Its results are'} not "
                 "those of the new settings, so they are not skipped as done; nothing was run "
                 "or rewritten. Fix: give a new --workdir to run "
                 "with the new settings beside these results, or add --force to rerun every "
                 "stage in this workdir.")
    raise SettingsChangedError(" ".join(lines))


def _is_parallel(stage: Stage, values: Mapping[str, str]) -> bool:
    text = _fill(stage.parallel, values, stage.name).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"stage {stage.name!r}: parallel: expected true or false, got "
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
    settings = _stage_settings(recipe, commands, values, resolve_configs(recipe, values))
    if not force and marks.is_dir():
        _check_marks(commands, settings, marks, workdir)
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
        raise RuntimeError(f"stage {stage.name!r} ended ({outcome}) without creating "
                           f"{creates}.")
    _write_atomic(mark, json.dumps(stage_settings, indent=1, default=str) + "\n")
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
            raise RuntimeError("; ".join(failures))
    except BaseException:
        for *_, process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        raise
    return [results[entry[1][0][0].name] for entry in group]


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects name=value, got {item!r}.")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out
