"""The rule for files our commands write (issue 23): an existing file is replaced only when
the user passes --overwrite, and never the command's own input.

Files are written to a temporary name and renamed into place when complete, so an
interrupted run leaves no file of ours under a final name to be mistaken for a user's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserFileExistsError

__all__ = ["refuse_existing", "temporary_beside", "write_text_atomic"]


def refuse_existing(targets: Sequence[str | os.PathLike], *, overwrite: bool,
                    inputs: Sequence[str | os.PathLike] = (),
                    instead: str = "another output path") -> None:
    """Raise before anything is written if a target is an input, or exists without
    `overwrite`.

    Args:
        targets: the files the command is about to write.
        overwrite: the user passed --overwrite.
        inputs: files the command reads; never replaced, even with --overwrite.
        instead: what the fix suggests choosing (e.g. "another OUT_DIR").

    Raises:
        FileExistsError: one line naming the file(s) and the fix.
    """
    sources = {Path(p).resolve() for p in inputs}
    for target in targets:
        if Path(target).resolve() in sources:
            raise UserFileExistsError(f"{os.fspath(target)} is the input file; writing there would "
                                      f"destroy it. Fix: choose {instead}.")
    existing = [os.fspath(t) for t in targets if Path(t).exists()]
    if existing and not overwrite:
        verb, which = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise UserFileExistsError(f"{', '.join(existing)} already {verb}; nothing was written. "
                                  f"Fix: choose {instead}, or pass --overwrite to replace {which}.")


def temporary_beside(path: Path) -> Path:
    """A temporary name for `path` in its folder (created if missing), so that os.replace
    onto `path` is atomic. The writer creates the file, so it gets the usual permissions
    (mkstemp's are 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file of this process (`temporary_beside`), so a reader
    never sees half a file, a full disk leaves none behind and processes writing the same
    file (the ranks of a DDP run) do not take each other's temporary file."""
    temporary = temporary_beside(path)
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
