"""`bsmamba2 bench`: training and inference speed, memory and TFLOP/s of BSMamba2 variants
next to msst's models (`evaluation.bench`; GPU, or CPU without one)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="time training and inference of BSMamba2 next "
                                               "to msst's BS-RoFormer (GPU; CPU without one)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="variants, '+compile' to compile (default: bsmamba2, "
                             "bsmamba2-unfused, bs_roformer_256x6, bs_roformer_256x11, "
                             "bs_mamba2; also bsmamba2-ckpt, bsmamba2-selective, "
                             "bsmamba2-reference)")
    parser.add_argument("--seconds", type=float, default=8.0, help="chunk length (default 8)")
    parser.add_argument("--train-batch", type=int, default=5)
    parser.add_argument("--infer-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --json FILE if it exists")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: bench writes only its --json "
                                               "file, at the end. Run it again."))


def run(args: argparse.Namespace) -> int:
    from ..data.outputs import refuse_existing
    from ..evaluation.bench import DEFAULT_MODELS, run_bench

    refuse_existing([args.json] if args.json else [], overwrite=args.overwrite,
                    instead="another --json FILE")
    run_bench(args.models or list(DEFAULT_MODELS), seconds=args.seconds,
              train_batch=args.train_batch, infer_batch=args.infer_batch,
              repeats=args.repeats, json_path=args.json)
    return 0
