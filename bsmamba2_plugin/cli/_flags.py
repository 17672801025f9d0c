"""Checks of flags that several commands share (`evaluate`, `separate`)."""

from __future__ import annotations

import argparse

from ..errors import UserValueError

__all__ = ["check_numbers"]


def check_numbers(args: argparse.Namespace, command: str) -> None:
    """--chunk-seconds > 0, --overlap >= 1, --batch-size >= 1, or one line naming the flag."""
    chunks = args.chunk_seconds if isinstance(args.chunk_seconds, list) else [args.chunk_seconds]
    for value in chunks:
        if value is not None and not value > 0:
            raise UserValueError(f"{command}: --chunk-seconds: expected a number of seconds > 0, "
                                 f"got {value:g}. Fix: e.g. --chunk-seconds 8 (the paper's).")
    for flag, value, example in (("--overlap", args.overlap, "1 (non-overlapping chunks) or "
                                  "2-4 (overlap-add)"),
                                 ("--batch-size", args.batch_size, "1 (chunks per model call)")):
        if value is not None and value < 1:
            raise UserValueError(f"{command}: {flag}: expected an integer >= 1, got {value}. "
                                 f"Fix: e.g. {flag} {example}.")
