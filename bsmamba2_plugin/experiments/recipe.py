"""Experiment recipes: one YAML per experiment, run stage by stage through stock CLIs.

This module is the recipe itself: its schema, its placeholders and its configs.
`runner.run_recipe` runs it (resumable: `stage_marks`), each command in its own process
(`processes`).

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
A stage may also say `creates:` (the file it must leave), `time_limit_seconds:` and
`parallel:` (see `runner`).

Schema (top level): name, description, hardware, expected_duration, seed, config or
configs, config_overrides (mapping merged into every config), config_overrides_by_config
(configs: name -> mapping merged into that config only, after config_overrides), vars,
metrics, stages.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..data.outputs import write_text_atomic
from ..data.resources import find_resource
from ..errors import UserKeyError, UserValueError

__all__ = ["PLACEHOLDER", "Recipe", "Stage", "fill", "load_recipe", "parse_overrides",
           "resolve_configs", "write_configs"]

PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_TOP_KEYS = {"name", "description", "hardware", "expected_duration", "seed", "config",
             "configs", "config_overrides", "config_overrides_by_config", "vars", "metrics",
             "stages"}
_STAGE_KEYS = {"name", "run", "copy", "creates", "time_limit_seconds", "description",
               "parallel"}


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
                raise UserKeyError(f"--set {key}=...: {self.path.name} has no variable {key!r}; it "
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
                out.append((stage, ["cp", fill(stage.copy["from"], values, stage.name),
                                    fill(stage.copy["to"], values, stage.name)]))
            else:
                command: list[str] = []
                for part in stage.run:
                    filled = fill(part, values, stage.name)
                    # an argument that is one placeholder expands to several words
                    whole = PLACEHOLDER.fullmatch(part)
                    command += shlex.split(filled) if whole and " " in filled else [filled]
                out.append((stage, command))
        return out


def fill(text: str, values: Mapping[str, str], where: str) -> str:
    """`text` with every `{name}` placeholder replaced from `values` (`where`: the stage,
    for the message of an unknown one)."""

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise UserKeyError(f"stage {where!r}: unknown placeholder {{{key}}}; known: "
                               f"{', '.join(sorted(values))}.")
        return values[key]

    return PLACEHOLDER.sub(replace, str(text))


def load_recipe(path: str | Path) -> Recipe:
    """Parse and check a recipe YAML.

    Raises:
        FileNotFoundError, KeyError, ValueError: naming the file and key.
    """
    path = find_resource("recipes", path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise UserValueError(f"{path}: expected a mapping at the top level.")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise UserKeyError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: "
                           f"{', '.join(sorted(_TOP_KEYS))}.")
    for key in ("name", "stages", "seed", "hardware", "expected_duration", "metrics"):
        if key not in raw:
            raise UserKeyError(f"{path}: missing required key {key!r}.")
    if ("config" in raw) == ("configs" in raw):
        raise UserKeyError(f"{path}: give exactly one of 'config' (one path) or 'configs' "
                           f"(name -> path).")
    if "config" in raw:
        configs = {"config": find_resource("configs", raw["config"])}
    else:
        configs = {f"config_{name}": find_resource("configs", value)
                   for name, value in dict(raw["configs"]).items()}
    by_config = raw.get("config_overrides_by_config") or {}
    if by_config and "configs" not in raw:
        raise UserKeyError(f"{path}: config_overrides_by_config needs 'configs' (name -> path); "
                           f"with one 'config' use config_overrides.")
    unknown = [name for name in by_config if f"config_{name}" not in configs]
    if unknown or not all(isinstance(v, dict) for v in by_config.values()):
        raise UserKeyError(f"{path}: config_overrides_by_config: expected a mapping per config "
                           f"name of 'configs' ({', '.join(n[len('config_'):] for n in configs)}), "
                           f"got {', '.join(map(str, by_config))}.")
    stages = []
    for i, item in enumerate(raw["stages"]):
        where = f"{path}: stages[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise UserValueError(f"{where}: expected a mapping with a 'name'.")
        extra = set(item) - _STAGE_KEYS
        if extra:
            raise UserKeyError(f"{where}: unknown key(s) {', '.join(sorted(extra))}; valid: "
                               f"{', '.join(sorted(_STAGE_KEYS))}.")
        if ("run" in item) == ("copy" in item):
            raise UserValueError(f"{where} ({item['name']}): give exactly one of 'run' or 'copy'.")
        if "copy" in item and set(item["copy"]) != {"from", "to"}:
            raise UserValueError(f"{where}: copy needs exactly 'from' and 'to'.")
        stages.append(Stage(name=str(item["name"]),
                            run=tuple(str(p) for p in item.get("run", ())),
                            copy=item.get("copy"), creates=item.get("creates"),
                            time_limit_seconds=(None if item.get("time_limit_seconds") is None
                                                else str(item["time_limit_seconds"])),
                            description=str(item.get("description", "")),
                            parallel=str(item.get("parallel", False)).lower()))
        if "copy" in item and stages[-1].parallel != "false":
            raise UserValueError(f"{where} ({item['name']}): only 'run' stages can be parallel.")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise UserValueError(f"{path}: stage names must be unique, got {names}.")
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
            out[key] = yaml.safe_load(fill(value, values, "config_overrides"))
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
        write_text_atomic(target, header + yaml.safe_dump(resolved, sort_keys=False))
        written.append(target)
    return written


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserValueError(f"--set expects name=value, got {item!r}.")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out
