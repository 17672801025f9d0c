"""`bsmamba2 recipe run | list`: run an experiment recipe's stages through the stock msst
and `bsmamba2` commands, resumable (`experiments`), or list the shipped recipes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("recipe", help="run or list experiment recipes")
    actions = parser.add_subparsers(dest="recipe_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="the shipped recipes")
    stages = actions.add_parser("run", help="run a recipe's stages (resumable)")
    stages.add_argument("file", help="a name from `bsmamba2 recipe list`, or a recipe YAML path")
    stages.add_argument("--workdir", type=Path, help="where everything goes (default: "
                                                     "runs/<name>)")
    stages.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a recipe variable (repeatable)")
    stages.add_argument("--dry-run", action="store_true",
                        help="print the commands, run nothing")
    stages.add_argument("--force", action="store_true",
                        help="rerun every stage, also those that finished before (needed when "
                             "a finished stage's settings changed)")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: finished stages are marked and "
                                               "kept. Run the same command again; it resumes at "
                                               "the stage that was running."))


def run(args: argparse.Namespace) -> int:
    from ..data.resources import find_resource
    from ..experiments.recipe import load_recipe, parse_overrides
    from ..experiments.runner import run_recipe

    if args.recipe_command == "list":
        folder = find_resource("recipes", "demo_cpu.yaml").parent
        for path in sorted(folder.glob("*.yaml")):
            recipe = load_recipe(path)
            print(f"{path.stem:<42} {recipe.hardware}; {recipe.expected_duration}")
        return 0
    recipe = load_recipe(args.file)
    workdir = args.workdir or Path("runs") / recipe.name
    run_recipe(recipe, workdir, overrides=parse_overrides(args.set), dry_run=args.dry_run,
               force=args.force, echo=print)
    return 0
