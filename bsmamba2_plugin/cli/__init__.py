"""`bsmamba2` command line: environment report and model summary.

    bsmamba2 doctor                   versions, devices, which Mamba2 backend runs and why
    bsmamba2 summary [--preset paper|tiny | --config YAML] [--seconds S] [--device D]
                                      parameter table, backend, and a timed separation of a
                                      generated test signal (untrained weights)
    bsmamba2 convert-checkpoint IN OUT [--config YAML] [--weights raw|ema]
                                      official Lightning or msst bs_mamba2 checkpoint ->
                                      msst checkpoint for --model_type bsmamba2
    bsmamba2 make-dataset OUT --tracks N --seconds S [--seed K]
                                      render a MUSDB18HQ-layout multitrack dataset
    bsmamba2 recipe run NAME|FILE [--workdir DIR] [--set k=v] [--dry-run] | recipe list
                                      run an experiment recipe through the stock msst CLIs
    bsmamba2 demo [--workdir DIR] [--quick] [--force]
                                      recipes/demo_cpu.yaml: data -> train -> valid ->
                                      separate -> report, on a CPU
    bsmamba2 evaluate --config C --checkpoint K [...] --data DIR --out REPORT
                                      uSDR, cSDR, silence suite, chunk lengths, plots
    bsmamba2 training-summary RESULTS... --out FILE.md [--labels ...] [--loss-scale L=K]
                              [--overwrite]
                                      steps, audio seen, step time and loss curves of msst
                                      training runs (any model type)
    bsmamba2 bench [--models NAME ...] [--json FILE] [--variant-timeout S]
                                      training/inference speed, memory and TFLOP/s next
                                      to msst's BS-RoFormer
    bsmamba2 export-onnx CONFIG CHECKPOINT OUT.onnx [--overwrite]
                                      the network between STFT and iSTFT as ONNX
    bsmamba2 separate (--onnx FILE | --config C --checkpoint K) IN OUT_DIR [--overwrite]
                                      separate a file with onnxruntime or PyTorch into
                                      OUT_DIR/<stem>.wav and instrumental.wav

A mistake in the files or flags given is one line on stderr and exit code 2; Ctrl-C is one
line saying what was kept, and exit code 130.

One module per command, each a thin layer over the library: `cli/<command>.py` (dashes as
underscores) has `register(commands)`, which adds its subparser with
`set_defaults(func=run, interrupted=<what Ctrl-C leaves, and how to go on>)`, and
`run(args) -> int`, which imports what it runs, so that building the parser (and
`bsmamba2 --help`) loads no torch; `main` calls `args.func`. What the user can fix is raised
as a `bsmamba2_plugin.errors.UserError` where the input enters and printed here in one line;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import UserError
from . import (bench, convert_checkpoint, demo, doctor, evaluate, export_onnx, make_dataset,
               recipe, separate, summary, training_summary)

__all__ = ["COMMANDS", "build_parser", "main"]

#: the command modules, in the order `bsmamba2 --help` lists them
COMMANDS = (doctor, summary, convert_checkpoint, make_dataset, recipe, demo, evaluate,
            training_summary, bench, export_onnx, separate)
#: exit status after Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: exit status for a mistake the user can fix (argparse's for a bad flag, too)
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bsmamba2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"bsmamba2-plugin {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"bsmamba2 {args.command}: interrupted (Ctrl-C). {args.interrupted}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UserError, ModuleNotFoundError, *_msst_user_errors()) as error:
        print(f"bsmamba2 {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # disk full, permissions, a vanished mount
        print(f"bsmamba2 {args.command}: error: {_os_error_message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _msst_user_errors() -> tuple[type[BaseException], ...]:
    """msst's errors for users (`msst.errors.MSSTError`: ConfigurationError, CheckpointError,
    ...), which msst's own commands print without a traceback; our msst patches raise them
    too (a checkpoint refused by the weights-only load). Looked up, not imported: while
    msst.errors is not loaded, none of them can have been raised."""
    errors = sys.modules.get("msst.errors")
    return (errors.MSSTError,) if errors is not None else ()


def _os_error_message(error: OSError) -> str:
    """What failed, on which file, and what to do; for a full disk, that a rerun resumes."""
    import errno

    where = f" ({error.filename})" if error.filename else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}. Nothing was left half-written under a "
                f"final name. Fix: free space (or choose another output folder) and run the "
                f"same command again; it resumes or restarts cleanly.")
    return (f"{error.strerror or error}{where}. Fix: check that the path exists and is "
            f"writable, then run the same command again.")
