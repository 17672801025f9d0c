"""Which stages of a recipe run already finished, with which settings.

A finished stage writes `<workdir>/.stages/<name>.done` with the settings it ran with: its
resolved command, the recipe variables it uses, the resolved configs it reads, and the
fingerprint of the stage before it (whose outputs it may read). A later run skips the
stage only when all of that is unchanged. If a finished stage's settings changed (a
different `--set` value, an edited config), the run stops before running anything
(`SettingsChangedError`), names the stage and what changed, and offers a new workdir or
`force=True` (reruns every stage). It does not rerun in place on its own: that would
overwrite the earlier results, and some stages resume from their own outputs.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.outputs import write_text_atomic
from ..errors import UserRuntimeError
from .recipe import PLACEHOLDER, Recipe, Stage, fill

__all__ = ["SettingsChangedError", "check_marks", "read_mark", "resolve_stage_settings",
           "write_mark"]


class SettingsChangedError(UserRuntimeError):
    """A finished stage ran with other settings than this run resolves to."""


def resolve_stage_settings(recipe: Recipe, commands: Sequence[tuple[Stage, list[str]]],
                           values: Mapping[str, str], configs: Mapping[str, dict]
                           ) -> list[dict[str, Any]]:
    """What each stage runs with (command, variables, configs, the stage before it) and
    its fingerprint, in stage order."""
    settings: list[dict[str, Any]] = []
    previous = ""
    for stage, command in commands:
        texts = [*stage.run, *(stage.copy or {}).values(), stage.creates or "",
                 stage.time_limit_seconds or ""]
        used = sorted({key for text in texts for key in PLACEHOLDER.findall(str(text))})
        entry = {
            "command": command,
            "creates": fill(stage.creates, values, stage.name) if stage.creates else None,
            "time_limit_seconds": (None if stage.time_limit_seconds is None else
                                   fill(stage.time_limit_seconds, values, stage.name)),
            "variables": {k: values[k] for k in used if k not in configs},
            "configs": {k: configs[k] for k in used if k in configs},
            "after": previous,
        }
        entry["fingerprint"] = previous = hashlib.sha256(
            json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()
        settings.append(entry)
    return settings


def read_mark(mark: Path) -> dict[str, Any]:
    """The settings a finished stage recorded (a mark of an earlier version: its command)."""
    text = mark.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a mark of an earlier version: the command line only
        return {"legacy_command_line": text.strip()}


def write_mark(mark: Path, settings: dict[str, Any]) -> None:
    """Mark a stage finished with the settings it ran with (`resolve_stage_settings`)."""
    write_text_atomic(mark, json.dumps(settings, indent=1, default=str) + "\n")


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


def check_marks(commands: Sequence[tuple[Stage, list[str]]], settings: list[dict[str, Any]],
                 marks: Path, workdir: Path) -> None:
    """Raise SettingsChangedError when a finished stage ran with other settings."""
    changed = []
    for (stage, _), new in zip(commands, settings):
        mark = marks / f"{stage.name}.done"
        if mark.exists():
            old = read_mark(mark)
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
