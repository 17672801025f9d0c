"""`bsmamba2 make-dataset`: render a MUSDB18HQ-layout multitrack dataset with intermittent
vocals (`data.render`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_DATASET_SEED", "register", "run"]

DEFAULT_DATASET_SEED = 0


def register(commands: Any) -> None:
    parser = commands.add_parser("make-dataset", help="render a MUSDB18HQ-layout multitrack "
                                                      "dataset with intermittent vocals")
    parser.add_argument("out", type=Path, metavar="OUT")
    parser.add_argument("--tracks", type=int, required=True, help="training tracks")
    parser.add_argument("--valid-tracks", type=int, help="validation tracks (default tracks "
                                                         "// 4, at least 1)")
    parser.add_argument("--test-tracks", type=int, default=0,
                        help="held-out tracks in OUT/test, for evaluation only (default 0)")
    parser.add_argument("--seconds", type=float, required=True, help="length of every track")
    parser.add_argument("--seed", type=int,
                        help=f"random seed; the same seed gives byte-identical files (default: "
                             f"{DEFAULT_DATASET_SEED})")
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--engine", default="synth", help="renderer (default: synth, no "
                                                          "system package needed)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow writing into a non-empty OUT")
    parser.add_argument("--workers", type=int, default=1,
                        help="rendering processes (default 1; the files do not depend on it)")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: every file written is complete "
                                               "(renamed into place when done). Run the same "
                                               "command with --overwrite to finish the dataset."))


def run(args: argparse.Namespace) -> int:
    from ..data.render import render_dataset

    seed = DEFAULT_DATASET_SEED if args.seed is None else args.seed
    summary = render_dataset(args.out, tracks=args.tracks, seconds=args.seconds, seed=seed,
                             sample_rate=args.sample_rate, valid_tracks=args.valid_tracks,
                             test_tracks=args.test_tracks, engine=args.engine,
                             overwrite=args.overwrite, workers=args.workers)
    tracks = summary["tracks"]
    silent = sum(t["mostly_silent"] for t in tracks)
    speed = summary["audio_seconds"] / max(summary["wall_seconds"], 1e-9)
    print(f"wrote {len(tracks)} tracks to {args.out} ({silent} mostly silent): "
          f"{summary['audio_seconds']:.0f} s of audio in {summary['wall_seconds']:.1f} s "
          f"({speed:.0f}x real time), seed {seed}" + (
              " (the default; --seed K renders another dataset)" if args.seed is None else ""))
    return 0
