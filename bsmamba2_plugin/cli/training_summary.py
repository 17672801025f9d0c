"""`bsmamba2 training-summary`: steps, audio seen, step time and loss curves of msst
training runs of any model type (`evaluation.training_summary`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserValueError

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("training-summary", help="step time, audio seen and loss "
                                                          "curves of msst training runs")
    parser.add_argument("results", type=Path, nargs="+",
                        help="msst --results_path folders (train_timing.jsonl, last_*.ckpt)")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write "
                                                                 "(.json and _loss.png beside)")
    parser.add_argument("--labels", nargs="+", help="one label per folder")
    parser.add_argument("--loss-scale", action="append", default=[], metavar="LABEL=K",
                        help="multiply a run's losses by K (e.g. bs_roformer=10: msst's "
                             "BS-RoFormer loss is the paper loss / 10)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace FILE.md (and its .json and _loss.png) if they exist")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: the report is written only when "
                                               "complete. Run the same command again."))


def run(args: argparse.Namespace) -> int:
    from ..data.outputs import refuse_existing
    from ..evaluation.training_summary import write_training_summary

    scales = {}
    for item in args.loss_scale:
        label, sep, value = item.partition("=")
        try:
            scales[label] = float(value) if sep else float("nan")
        except ValueError:
            scales[label] = float("nan")
        if not sep or not label or scales[label] != scales[label]:
            raise UserValueError(f"--loss-scale: expected LABEL=NUMBER (e.g. bs_roformer=10), "
                                 f"got {item!r}.")
    out = args.out
    refuse_existing([out, out.with_suffix(".json"), out.with_name(f"{out.stem}_loss.png")],
                    overwrite=args.overwrite, instead="another --out FILE.md")
    write_training_summary(args.results, out, labels=args.labels, loss_scales=scales)
    print(args.out.read_text())
    return 0
