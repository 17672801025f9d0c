"""`bsmamba2 convert-checkpoint`: an official BSMamba2 (Lightning) or msst `bs_mamba2`
checkpoint into an msst checkpoint for `--model_type bsmamba2`
(`msst_integration.checkpoints`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "convert-checkpoint", help="official BSMamba2 (Lightning) or msst bs_mamba2 checkpoint "
                                   "-> msst checkpoint for --model_type bsmamba2")
    parser.add_argument("source", type=Path, metavar="IN")
    parser.add_argument("target", type=Path, metavar="OUT")
    parser.add_argument("--config", type=Path, metavar="YAML",
                        help="msst YAML the weights belong to (model:, training.instruments); "
                             "default: the paper's model")
    parser.add_argument("--weights", choices=("raw", "ema"), default=None,
                        help="which weights to keep: of a Lightning checkpoint (default raw); "
                             "an msst file's own meta.weights is kept by default and a "
                             "conflicting value is an error")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load with torch.load(weights_only=False); only for trusted files")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: OUT is written only when "
                                               "complete. Run the same command again."))


def run(args: argparse.Namespace) -> int:
    from ..msst_integration.checkpoints import convert_checkpoint
    from ..msst_integration.config_checks import load_msst_yaml

    model = instruments = target_instrument = None
    if args.config is not None:
        config = load_msst_yaml(args.config)
        model = config["model"]
        training = config.get("training") or {}
        instruments = training.get("instruments")
        target_instrument = training.get("target_instrument")
    meta = convert_checkpoint(args.source, args.target, model=model, weights=args.weights,
                              instruments=instruments, target_instrument=target_instrument,
                              trust=args.trust_pickle, overwrite=args.overwrite)
    print(f"wrote {args.target}: {meta['converted_from']}, weights {meta['weights']}, "
          f"meta.model_type {meta['model_type']}")
    return 0
