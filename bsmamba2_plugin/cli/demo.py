"""`bsmamba2 demo`: recipes/demo_cpu.yaml into a fresh folder (data -> train -> valid ->
separate -> report, on a CPU), and its headline numbers."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["QUICK_DEMO", "register", "run"]

# Variables of demo_cpu.yaml for --quick: seconds, not minutes (CI runs this). Two
# validation tracks: the report's paired comparison needs two (with one, the report told
# the user to point --data at more tracks, which the demo chooses itself).
QUICK_DEMO = {"tracks": "2", "valid_tracks": "2", "seconds": "6", "epochs": "1", "steps": "2",
              "chunks": "1 2"}


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run recipes/demo_cpu.yaml into a fresh folder")
    parser.add_argument("--workdir", type=Path, help="default: a new bsmamba2-demo-<time> "
                                                     "folder; an existing one is resumed")
    parser.add_argument("--quick", action="store_true",
                        help="seconds instead of minutes (tiny data, few steps): a smoke test")
    parser.add_argument("--force", action="store_true",
                        help="rerun every stage in an existing --workdir")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: finished stages are marked and "
                                               "kept. Run the same command with --workdir <the "
                                               "folder it printed>; it resumes at the stage that "
                                               "was running."))


def run(args: argparse.Namespace) -> int:
    from ..experiments.recipe import load_recipe
    from ..experiments.runner import run_recipe

    recipe = load_recipe("demo_cpu.yaml")
    workdir = args.workdir or Path(f"bsmamba2-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"bsmamba2 demo: {recipe.description.strip()}\nworking in {workdir.resolve()}")
    start = time.monotonic()
    run_recipe(recipe, workdir, overrides=QUICK_DEMO if args.quick else None,
               force=args.force, echo=print)
    summary = json.loads((workdir / "report" / "summary.json").read_text())
    print(f"\ndone in {time.monotonic() - start:.0f} s")
    print(f"separated audio: {(workdir / 'separated' / 'song').resolve()}")
    print(f"report:          {(workdir / 'report' / 'summary.md').resolve()}")
    print("  vocals on the validation tracks, as the paper reports them:")
    for entry in summary["table"]:
        n = f"{entry['tracks']} track{'s' if entry['tracks'] != 1 else ''}"
        print(f"  {entry['model']:<10} chunk {entry['chunk_seconds']:g} s: uSDR "
              f"{entry['headline']['usdr']:.2f} dB (mean over {n}), cSDR "
              f"{entry['headline']['csdr']:.2f} dB (median over {n})")
    return 0
