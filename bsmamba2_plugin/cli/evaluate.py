"""`bsmamba2 evaluate`: score vocals of one or more models (uSDR, cSDR, the silence suite,
chunk lengths, plots; `evaluation.evaluate`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserFileNotFoundError, UserValueError
from ._flags import check_numbers

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("evaluate", help="score vocals: uSDR, cSDR, silence suite, "
                                                  "chunk lengths, plots")
    # each takes several values (--name a b) or repeats (--name a --name b), in model order
    parser.add_argument("--config", type=Path, action="extend", nargs="+", required=True,
                        help="msst YAML of each model")
    parser.add_argument("--checkpoint", type=Path, action="extend", nargs="+", required=True,
                        help="each model's checkpoint, same order")
    parser.add_argument("--name", action="extend", nargs="+", default=[],
                        help="display names, in order")
    parser.add_argument("--model-type", action="extend", nargs="+", default=[],
                        help="model types, in order (default: the checkpoint's meta)")
    parser.add_argument("--data", type=Path, required=True,
                        help="folder of track folders with mixture.wav and vocals.wav")
    parser.add_argument("--chunk-seconds", type=float, nargs="+", default=[8.0],
                        help="non-overlapping inference chunk lengths (default: 8)")
    parser.add_argument("--overlap", type=int, default=1,
                        help="1 = the paper's non-overlapping protocol; n > 1 = overlap-add")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-mixture", action="store_true",
                        help="leave out the mixture-as-estimate baseline")
    parser.add_argument("--out", type=Path, required=True, help="report folder (resumable)")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: every scored row is in "
                                               "results.jsonl. Run the same command again; it "
                                               "resumes there."))


def run(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import ModelSpec, evaluate

    check_numbers(args, "evaluate")
    if len(args.config) != len(args.checkpoint):
        raise UserValueError(f"evaluate: {len(args.config)} --config but "
                             f"{len(args.checkpoint)} --checkpoint; give one of each per "
                             f"model, in the same order.")
    for option, values in (("--name", args.name), ("--model-type", args.model_type)):
        if values and len(values) != len(args.config):
            raise UserValueError(f"evaluate: {option} has {len(values)} value(s) for "
                                 f"{len(args.config)} model(s); give one per model, in the "
                                 f"order of --config, or leave {option} out.")
    specs = [ModelSpec(config=c, checkpoint=k,
                       name=args.name[i] if args.name else None,
                       model_type=args.model_type[i] if args.model_type else None)
             for i, (c, k) in enumerate(zip(args.config, args.checkpoint))]
    for spec in specs:
        for path in (spec.config, spec.checkpoint):
            if not path.is_file():
                raise UserFileNotFoundError(f"evaluate: no such file: {path}")
    evaluate(specs, args.data, args.out, chunk_seconds=args.chunk_seconds,
             overlap=args.overlap, batch_size=args.batch_size, device=args.device,
             include_mixture=not args.no_mixture, echo=print)
    print(f"report: {args.out / 'summary.md'}")
    print((args.out / "summary.md").read_text())
    return 0
