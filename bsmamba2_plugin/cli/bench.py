"""`bsmamba2 bench`: training and inference speed, memory and TFLOP/s of BSMamba2 variants
next to msst's models (`evaluation.bench`; GPU, or CPU without one)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]

#: what Ctrl-C prints
INTERRUPTED = ("Nothing is lost: bench writes only its --json file, after each variant "
               "(\"complete\": false until the end). Run it again, with --overwrite to reuse "
               "that file.")


def register(commands: Any) -> None:
    from ..evaluation.bench import CHILD_TIMEOUT_S, DEFAULT_MODELS, EXTRA_MODELS  # torch-free

    parser = commands.add_parser("bench", help="time training and inference of BSMamba2 next "
                                               "to msst's BS-RoFormer (GPU; CPU without one)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help=f"variants, '+compile' to compile, '+graph' for inference as one CUDA "
                             f"graph (default: "
                             f"{', '.join(DEFAULT_MODELS)}; also {', '.join(EXTRA_MODELS)})")
    parser.add_argument("--seconds", type=float, default=8.0, help="chunk length (default 8)")
    parser.add_argument("--train-batch", type=int, default=5)
    parser.add_argument("--infer-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("--variant-timeout", type=float, default=CHILD_TIMEOUT_S,
                        metavar="SECONDS",
                        help="stop a variant that runs longer and say so in its row "
                             f"(default {CHILD_TIMEOUT_S}; torch.compile variants take minutes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --json FILE if it exists")
    parser.set_defaults(func=run, interrupted=INTERRUPTED)


def run(args: argparse.Namespace) -> int:
    from ..data.outputs import refuse_existing
    from ..errors import UserValueError
    from ..evaluation.bench import DEFAULT_MODELS, run_bench

    if not args.variant_timeout > 0:
        raise UserValueError(f"bench: --variant-timeout must be a number of seconds > 0, got "
                             f"{args.variant_timeout:g}. Fix: e.g. --variant-timeout 900, or "
                             f"leave it out.")
    refuse_existing([args.json] if args.json else [], overwrite=args.overwrite,
                    instead="another --json FILE")
    run_bench(args.models or list(DEFAULT_MODELS), seconds=args.seconds,
              train_batch=args.train_batch, infer_batch=args.infer_batch,
              repeats=args.repeats, json_path=args.json,
              variant_timeout_s=args.variant_timeout)
    return 0
