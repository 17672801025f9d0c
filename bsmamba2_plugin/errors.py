"""Errors the user can fix, as types: what our command line prints in one line.

A `UserError` is a mistake in what the user gave us (a config key or value, a file, a
flag, a recipe) or in their environment, raised on purpose where the input enters. Its
message is one line that names the file, key or flag, what was received, what was
expected and the fix. `bsmamba2` prints it as `bsmamba2 COMMAND: error: <message>` and
exits with code 2 (`cli.main`); any other exception is a bug and keeps its traceback.

Each concrete type also derives from the standard type of its kind (docs/style.md,
Errors), so code that calls the library catches `ValueError`, `KeyError`, ... as before:

| raise | for |
|---|---|
| `UserValueError` | a value that is wrong (a config value, a flag's number, a file's content) |
| `UserKeyError` | an unknown or missing key or name (config key, recipe variable) |
| `UserTypeError` | a value of the wrong type in a config |
| `UserRuntimeError` | a step of the user's run that failed (a recipe stage, a checkpoint that does not fit the config, a model that returns NaN) |
| `UserFileNotFoundError` | a file or folder the user named that is not there |
| `UserFileExistsError` | an output that exists (no --overwrite), or that is the input |

A missing optional dependency stays a `ModuleNotFoundError` naming what to install; the
command line prints every `ModuleNotFoundError` and `OSError` (a full disk, a permission)
in one line too. This module imports nothing, so every layer may import it
(`tests/test_architecture.py`).
"""

from __future__ import annotations

__all__ = ["UserError", "UserFileExistsError", "UserFileNotFoundError", "UserKeyError",
           "UserRuntimeError", "UserTypeError", "UserValueError"]


class UserError(Exception):
    """A mistake the user can fix; `str(error)` is its one-line message (also for the
    `KeyError` kind, whose plain `str` would add quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UserValueError(UserError, ValueError):
    """A value given to us is wrong: a config value, a flag's number, a file's content."""


class UserKeyError(UserError, KeyError):
    """An unknown or missing key or name: a config key, a recipe variable or key."""


class UserTypeError(UserError, TypeError):
    """A config value of the wrong type."""


class UserRuntimeError(UserError, RuntimeError):
    """A step of the user's run failed: a recipe stage, weights that do not fit."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named is not there."""


class UserFileExistsError(UserError, FileExistsError):
    """An output exists and --overwrite was not given, or the output is the input."""
