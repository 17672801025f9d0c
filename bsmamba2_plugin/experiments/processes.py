"""Stage processes of `bsmamba2 recipe run` (`runner`): each command in its own process group, with
an optional time limit (SIGTERM, then SIGKILL after 60 s) and output to a log file."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import UserFileNotFoundError, UserRuntimeError


def executable(name: str) -> list[str]:
    if name == "bsmamba2":
        return [sys.executable, "-m", "bsmamba2_plugin.cli"]
    local = Path(sys.executable).parent / name
    if local.is_file():
        return [str(local)]
    found = shutil.which(name)
    if found is None:
        raise UserFileNotFoundError(f"command {name!r} not found next to {sys.executable} or on "
                                    f"PATH. Fix: install what provides it (msst commands: "
                                    f"pip install 'bsmamba2-plugin[msst]').")
    return [found]


def start_command(command: list[str], *, cwd: Path, log: Path | None = None
                   ) -> subprocess.Popen:
    """Start one stage's command in its own process group (output to `log` if given)."""
    output = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        output = log.open("ab")
    try:
        return subprocess.Popen(executable(command[0]) + command[1:], cwd=cwd,
                                start_new_session=True, stdout=output,
                                stderr=subprocess.STDOUT if output else None)
    finally:
        if output is not None:
            output.close()  # the child holds its own copy


def finish_command(process: subprocess.Popen, command: list[str], *,
                    deadline: float | None) -> str:
    """Wait for a started stage; returns "ok" or "time limit" (stopped at `deadline`)."""
    try:
        code = process.wait(timeout=None if deadline is None else
                            max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return "time limit"
    if code != 0:
        raise UserRuntimeError(f"command failed with exit code {code}: {shlex.join(command)}")
    return "ok"


def run_command(command: list[str], *, cwd: Path, time_limit: float | None) -> str:
    """Run one stage; returns "ok" or "time limit"."""
    process = start_command(command, cwd=cwd)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    try:
        return finish_command(process, command, deadline=deadline)
    except BaseException:
        if process.poll() is None:  # interrupted: stop the stage with us
            os.killpg(process.pid, signal.SIGTERM)
        raise
