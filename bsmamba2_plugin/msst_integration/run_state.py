"""What the bridge remembers about the msst training run in this process.

Kept apart from `bridge` so that `dataset` can read it without importing the bridge
(which imports the dataset): no import cycle.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["make_parse_args_train", "training_seed"]

_RUN: dict[str, Any] = {}  # process-local: the --seed msst parsed for this training run


def training_seed() -> int | None:
    """The `--seed` of the msst training run in this process (None outside one).

    msst seeds torch with seed + time under DDP and accelerate, so the dataset draws
    from this value instead (see `dataset`) and runs repeat.
    """
    return _RUN.get("seed")


def make_parse_args_train(original):
    @functools.wraps(original)
    def parse_args_train(dict_args):
        args = original(dict_args)
        _RUN["seed"] = int(args.seed)
        return args

    return parse_args_train
