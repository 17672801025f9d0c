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
    bsmamba2 bench [--models NAME ...] [--json FILE]
                                      training/inference speed, memory and TFLOP/s next
                                      to msst's BS-RoFormer
    bsmamba2 export-onnx CONFIG CHECKPOINT OUT.onnx [--overwrite]
                                      the network between STFT and iSTFT as ONNX
    bsmamba2 separate (--onnx FILE | --config C --checkpoint K) IN OUT_DIR [--overwrite]
                                      separate a file with onnxruntime or PyTorch into
                                      OUT_DIR/<stem>.wav and instrumental.wav

A mistake in the files or flags given is one line on stderr and exit code 2; Ctrl-C is one
line saying what was kept, and exit code 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError, UserFileNotFoundError, UserValueError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bsmamba2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"bsmamba2-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("doctor", help="print versions, devices and the Mamba2 backend that would run")

    summary = sub.add_parser("summary", help="print a model summary and separate a generated "
                                             "test signal")
    source = summary.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                        help="named model (default: paper, 48,098,188 parameters)")
    source.add_argument("--config", type=Path, metavar="YAML",
                        help="an msst YAML; its model: section is used")
    summary.add_argument("--seconds", type=float, default=1.0,
                         help="length of the generated test signal (default: 1.0; 0 skips it)")
    summary.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    summary.add_argument("--backend", choices=("auto", "reference", "kernel"),
                         help="override model.backend")

    convert = sub.add_parser(
        "convert-checkpoint", help="official BSMamba2 (Lightning) or msst bs_mamba2 checkpoint "
                                   "-> msst checkpoint for --model_type bsmamba2")
    convert.add_argument("source", type=Path, metavar="IN")
    convert.add_argument("target", type=Path, metavar="OUT")
    convert.add_argument("--config", type=Path, metavar="YAML",
                         help="msst YAML the weights belong to (model:, training.instruments); "
                              "default: the paper's model")
    convert.add_argument("--weights", choices=("raw", "ema"), default=None,
                         help="which weights to keep: of a Lightning checkpoint (default raw); "
                              "an msst file's own meta.weights is kept by default and a "
                              "conflicting value is an error")
    convert.add_argument("--trust-pickle", action="store_true",
                         help="load with torch.load(weights_only=False); only for trusted files")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    make = sub.add_parser("make-dataset", help="render a MUSDB18HQ-layout multitrack dataset "
                                               "with intermittent vocals")
    make.add_argument("out", type=Path, metavar="OUT")
    make.add_argument("--tracks", type=int, required=True, help="training tracks")
    make.add_argument("--valid-tracks", type=int, help="validation tracks (default tracks // 4, "
                                                       "at least 1)")
    make.add_argument("--test-tracks", type=int, default=0,
                      help="held-out tracks in OUT/test, for evaluation only (default 0)")
    make.add_argument("--seconds", type=float, required=True, help="length of every track")
    make.add_argument("--seed", type=int,
                      help=f"random seed; the same seed gives byte-identical files (default: "
                           f"{DEFAULT_DATASET_SEED})")
    make.add_argument("--sample-rate", type=int, default=44100)
    make.add_argument("--engine", default="synth", help="renderer (default: synth, no system "
                                                        "package needed)")
    make.add_argument("--overwrite", action="store_true",
                      help="allow writing into a non-empty OUT")
    make.add_argument("--workers", type=int, default=1,
                      help="rendering processes (default 1; the files do not depend on it)")

    recipe = sub.add_parser("recipe", help="run or list experiment recipes")
    recipe_sub = recipe.add_subparsers(dest="recipe_command", required=True, metavar="ACTION")
    recipe_sub.add_parser("list", help="the shipped recipes")
    run = recipe_sub.add_parser("run", help="run a recipe's stages (resumable)")
    run.add_argument("file", help="a name from `bsmamba2 recipe list`, or a recipe YAML path")
    run.add_argument("--workdir", type=Path, help="where everything goes (default: runs/<name>)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                     help="override a recipe variable (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    run.add_argument("--force", action="store_true",
                     help="rerun every stage, also those that finished before (needed when a "
                          "finished stage's settings changed)")

    demo = sub.add_parser("demo", help="run recipes/demo_cpu.yaml into a fresh folder")
    demo.add_argument("--workdir", type=Path, help="default: a new bsmamba2-demo-<time> folder; "
                                                   "an existing one is resumed")
    demo.add_argument("--quick", action="store_true",
                      help="seconds instead of minutes (tiny data, few steps): a smoke test")
    demo.add_argument("--force", action="store_true",
                      help="rerun every stage in an existing --workdir")

    evaluate = sub.add_parser("evaluate", help="score vocals: uSDR, cSDR, silence suite, "
                                               "chunk lengths, plots")
    # each takes several values (--name a b) or repeats (--name a --name b), in model order
    evaluate.add_argument("--config", type=Path, action="extend", nargs="+", required=True,
                          help="msst YAML of each model")
    evaluate.add_argument("--checkpoint", type=Path, action="extend", nargs="+", required=True,
                          help="each model's checkpoint, same order")
    evaluate.add_argument("--name", action="extend", nargs="+", default=[],
                          help="display names, in order")
    evaluate.add_argument("--model-type", action="extend", nargs="+", default=[],
                          help="model types, in order (default: the checkpoint's meta)")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="folder of track folders with mixture.wav and vocals.wav")
    evaluate.add_argument("--chunk-seconds", type=float, nargs="+", default=[8.0],
                          help="non-overlapping inference chunk lengths (default: 8)")
    evaluate.add_argument("--overlap", type=int, default=1,
                          help="1 = the paper's non-overlapping protocol; n > 1 = overlap-add")
    evaluate.add_argument("--batch-size", type=int, default=4)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--no-mixture", action="store_true",
                          help="leave out the mixture-as-estimate baseline")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder (resumable)")

    summary = sub.add_parser("training-summary", help="step time, audio seen and loss curves "
                                                      "of msst training runs")
    summary.add_argument("results", type=Path, nargs="+",
                         help="msst --results_path folders (train_timing.jsonl, last_*.ckpt)")
    summary.add_argument("--out", type=Path, required=True, help="Markdown file to write "
                                                                  "(.json and _loss.png beside)")
    summary.add_argument("--labels", nargs="+", help="one label per folder")
    summary.add_argument("--loss-scale", action="append", default=[], metavar="LABEL=K",
                         help="multiply a run's losses by K (e.g. bs_roformer=10: msst's "
                              "BS-RoFormer loss is the paper loss / 10)")
    summary.add_argument("--overwrite", action="store_true",
                         help="replace FILE.md (and its .json and _loss.png) if they exist")

    bench = sub.add_parser("bench", help="time training and inference of BSMamba2 next to "
                                         "msst's BS-RoFormer (GPU; CPU without one)")
    bench.add_argument("--models", nargs="+", metavar="NAME",
                       help="variants, '+compile' to compile (default: bsmamba2, "
                            "bsmamba2-unfused, bs_roformer_256x6, bs_roformer_256x11, "
                            "bs_mamba2; also bsmamba2-ckpt, bsmamba2-selective, "
                            "bsmamba2-reference)")
    bench.add_argument("--seconds", type=float, default=8.0, help="chunk length (default 8)")
    bench.add_argument("--train-batch", type=int, default=5)
    bench.add_argument("--infer-batch", type=int, default=8)
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    bench.add_argument("--overwrite", action="store_true", help="replace --json FILE if it exists")

    export = sub.add_parser("export-onnx", help="export the network between the STFT and the "
                                                "iSTFT to ONNX (needs the onnx extra)")
    export.add_argument("config", type=Path, help="msst YAML with the model: section")
    export.add_argument("checkpoint", type=Path, help="checkpoint (state dict) to export")
    export.add_argument("out", type=Path, help="the .onnx file to write")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    separate = sub.add_parser("separate", help="separate an audio file into stem WAVs")
    engine = separate.add_mutually_exclusive_group(required=True)
    engine.add_argument("--onnx", type=Path, metavar="FILE",
                        help="a file from export-onnx, run by onnxruntime")
    engine.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help="a checkpoint run by PyTorch (needs --config)")
    separate.add_argument("--config", type=Path, metavar="YAML",
                          help="msst YAML for --checkpoint")
    separate.add_argument("input", type=Path,
                          help="audio file (what msst-inference reads; another sample rate "
                               "is resampled to the model's)")
    separate.add_argument("out_dir", type=Path,
                          help="folder for <stem>.wav and instrumental.wav")
    separate.add_argument("--chunk-seconds", type=float,
                          help="chunk length (default: the config's inference.chunk_size, as "
                               "msst-inference; with --onnx 8, the paper's: the paper model "
                               "needs ~4.3 GB for onnxruntime at 8 s)")
    separate.add_argument("--overlap", type=int,
                          help="1: the paper's non-overlapping chunks; n > 1: overlap-add "
                               "(default: the config's inference.num_overlap; with --onnx 1)")
    separate.add_argument("--overwrite", action="store_true",
                          help="replace existing <stem>.wav files in OUT_DIR")
    separate.add_argument("--batch-size", type=int, default=1, help="chunks per call")
    separate.add_argument("--threads", type=int, help="CPU threads (default: all)")
    separate.add_argument("--variant", default="fp32",
                          choices=("auto", "fp32", "int8", "int8-compiled", "bf16",
                                   "bf16-compiled", "onnx-fp32", "onnx-int8"),
                          help="with --checkpoint: CPU variant (inference/cpu_variants.py); "
                               "auto picks by the CPU's flags (default: fp32)")
    separate.add_argument("--malloc", choices=("keep", "default"), default="keep",
                          help="keep (default): glibc's malloc keeps freed memory for reuse "
                               "(faster on Linux: less page zero-filling per layer; peak RSS "
                               "about one chunk's working set higher); default: glibc's own "
                               "settings. No effect off glibc")
    return parser


#: what an interrupted command leaves, and how to go on (Ctrl-C)
INTERRUPTED = {
    "doctor": "Nothing is lost: doctor only reads. Run it again.",
    "summary": "Nothing is lost: summary writes nothing. Run it again.",
    "convert-checkpoint": "Nothing is lost: OUT is written only when complete. Run the same "
                          "command again.",
    "make-dataset": "Nothing is lost: every file written is complete (renamed into place "
                    "when done). Run the same command with --overwrite to finish the dataset.",
    "recipe": "Nothing is lost: finished stages are marked and kept. Run the same command "
              "again; it resumes at the stage that was running.",
    "demo": "Nothing is lost: finished stages are marked and kept. Run the same command "
            "with --workdir <the folder it printed>; it resumes at the stage that was running.",
    "evaluate": "Nothing is lost: every scored row is in results.jsonl. Run the same command "
                "again; it resumes there.",
    "training-summary": "Nothing is lost: the report is written only when complete. Run the "
                        "same command again.",
    "bench": "Nothing is lost: bench writes only its --json file, at the end. Run it again.",
    "export-onnx": "Nothing is lost: OUT is written only when complete. Run the same command "
                   "again.",
    "separate": "Nothing is lost: the stems are written only when all are complete, and "
                "nothing was. Run the same command again.",
}
#: exit status after Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: exit status for a mistake the user can fix (argparse's for a bad flag, too)
EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"bsmamba2 {args.command}: interrupted (Ctrl-C). {INTERRUPTED[args.command]}",
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


def _run(args: argparse.Namespace) -> int:
    """Dispatch to the command; errors propagate to `main`."""
    if args.command == "doctor":
        return _doctor()
    if args.command == "convert-checkpoint":
        return _convert(args)
    if args.command == "make-dataset":
        return _make_dataset(args)
    if args.command == "recipe":
        return _recipe(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "training-summary":
        return _training_summary(args)
    if args.command in ("export-onnx", "separate"):
        from .cli_onnx import run_onnx_command

        return run_onnx_command(args)
    if args.command == "bench":
        from .data.outputs import refuse_existing
        from .evaluation.bench import DEFAULT_MODELS, run_bench

        refuse_existing([args.json] if args.json else [], overwrite=args.overwrite,
                        instead="another --json FILE")
        run_bench(args.models or list(DEFAULT_MODELS), seconds=args.seconds,
                  train_batch=args.train_batch, infer_batch=args.infer_batch,
                  repeats=args.repeats, json_path=args.json)
        return 0
    return _summary(args)


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


# ------------------------------------------------------------------- doctor
def _doctor() -> int:
    from .cli_doctor import doctor

    return doctor()


# ------------------------------------------------------------------ convert
def _convert(args: argparse.Namespace) -> int:
    from .msst_integration.checkpoints import convert_checkpoint

    model = instruments = target_instrument = None
    if args.config is not None:
        config = _load_yaml(args.config)
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


# ------------------------------------------------------------- data, recipes
DEFAULT_DATASET_SEED = 0


def _make_dataset(args: argparse.Namespace) -> int:
    from .data.render import render_dataset

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


def _recipe(args: argparse.Namespace) -> int:
    from .data.resources import find_resource
    from .experiments.recipe import load_recipe, parse_overrides
    from .experiments.runner import run_recipe

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


# Variables of demo_cpu.yaml for --quick: seconds, not minutes (CI runs this). Two
# validation tracks: the report's paired comparison needs two (with one, the report told
# the user to point --data at more tracks, which the demo chooses itself).
QUICK_DEMO = {"tracks": "2", "valid_tracks": "2", "seconds": "6", "epochs": "1", "steps": "2",
              "chunks": "1 2"}


def _demo(args: argparse.Namespace) -> int:
    import json
    import time as clock

    from .experiments.recipe import load_recipe
    from .experiments.runner import run_recipe

    recipe = load_recipe("demo_cpu.yaml")
    workdir = args.workdir or Path(f"bsmamba2-demo-{clock.strftime('%Y%m%d-%H%M%S')}")
    print(f"bsmamba2 demo: {recipe.description.strip()}\nworking in {workdir.resolve()}")
    start = clock.monotonic()
    run_recipe(recipe, workdir, overrides=QUICK_DEMO if args.quick else None,
               force=args.force, echo=print)
    summary = json.loads((workdir / "report" / "summary.json").read_text())
    print(f"\ndone in {clock.monotonic() - start:.0f} s")
    print(f"separated audio: {(workdir / 'separated' / 'song').resolve()}")
    print(f"report:          {(workdir / 'report' / 'summary.md').resolve()}")
    print("  vocals on the validation tracks, as the paper reports them:")
    for entry in summary["table"]:
        n = f"{entry['tracks']} track{'s' if entry['tracks'] != 1 else ''}"
        print(f"  {entry['model']:<10} chunk {entry['chunk_seconds']:g} s: uSDR "
              f"{entry['headline']['usdr']:.2f} dB (mean over {n}), cSDR "
              f"{entry['headline']['csdr']:.2f} dB (median over {n})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .cli_onnx import check_numbers
    from .evaluation.evaluate import ModelSpec, evaluate

    check_numbers(args, "evaluate")
    if len(args.config) != len(args.checkpoint):
        raise UserValueError(f"evaluate: {len(args.config)} --config but {len(args.checkpoint)} "
                             f"--checkpoint; give one of each per model, in the same order.")
    for option, values in (("--name", args.name), ("--model-type", args.model_type)):
        if values and len(values) != len(args.config):
            raise UserValueError(f"evaluate: {option} has {len(values)} value(s) for "
                                 f"{len(args.config)} model(s); give one per model, in the order "
                                 f"of --config, or leave {option} out.")
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


def _training_summary(args: argparse.Namespace) -> int:
    from .data.outputs import refuse_existing
    from .evaluation.training_summary import write_training_summary

    scales = {}
    for item in args.loss_scale:
        label, sep, value = item.partition("=")
        try:
            scales[label] = float(value) if sep else float("nan")
        except ValueError:
            scales[label] = float("nan")
        if not sep or not label or scales[label] != scales[label]:
            raise UserValueError(f"--loss-scale: expected LABEL=NUMBER (e.g. bs_roformer=10), got "
                                 f"{item!r}.")
    out = args.out
    refuse_existing([out, out.with_suffix(".json"), out.with_name(f"{out.stem}_loss.png")],
                    overwrite=args.overwrite, instead="another --out FILE.md")
    write_training_summary(args.results, out, labels=args.labels, loss_scales=scales)
    print(args.out.read_text())
    return 0


# ------------------------------------------------------------------ summary
def _load_yaml(path: Path) -> dict:
    from .msst_integration.config_checks import load_msst_yaml

    return load_msst_yaml(path)


def generated_mixture(seconds: float, channels: int, sample_rate: int = 44100) -> Any:
    """A deterministic mixture: a vibrato tone that stops and starts, a bass line, noise.

    Returns: (1, channels, samples) float32 tensor.
    """
    import torch

    n = max(1, int(round(seconds * sample_rate)))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    pitch = 220.0 * (1 + 0.01 * torch.sin(2 * torch.pi * 5.5 * t))
    phase = 2 * torch.pi * torch.cumsum(pitch, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 6)) * (torch.sin(torch.pi * t) > 0)
    voice = voice * ((t % 1.0) < 0.6)  # sings 0.6 s of every second
    bass = 0.5 * torch.sin(2 * torch.pi * 55.0 * t)
    noise = 0.05 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mono = 0.3 * (voice + bass + noise)
    return mono.repeat(channels, 1).unsqueeze(0).float()


def _check_plugin_sections(raw: dict, path: Path) -> None:
    """Check the sections as msst-train does for bsmamba2 (a misspelt section name) and
    parse the plugin's training sections, so that `summary --config` finds their errors now
    rather than at msst-train's start or first step."""
    from .msst_integration.config_checks import unknown_section
    from .training.augment import AugmentConfig
    from .training.losses import PaperLossConfig

    problem = unknown_section(raw, "bsmamba2", str(path))
    if problem:
        raise UserValueError(problem)
    for section, parse in (("loss_bsmamba2", PaperLossConfig.from_mapping),
                           ("augmentations_bsmamba2", AugmentConfig.from_mapping)):
        if section in raw:
            parse(raw[section], path=f"{path}: {section}")


def _summary(args: argparse.Namespace) -> int:
    import torch

    from .network.config import BSMamba2Config
    from .network.model import BSMamba2
    from .network.plan import describe_plan

    if args.config is not None:
        raw = _load_yaml(args.config)
        config = BSMamba2Config.from_mapping(raw["model"], path=f"{args.config}: model")
        _check_plugin_sections(raw, args.config)
        source = str(args.config)
    else:
        config = getattr(BSMamba2Config, args.preset)()
        source = f"preset {args.preset}"
    if args.backend:
        config = config.replace(backend=args.backend)
    device = torch.device(args.device)
    model = BSMamba2(config).to(device).eval()

    print(f"BSMamba2 ({source})")
    for key, value in config.to_dict().items():
        if key == "freqs_per_bands":
            value = f"{len(value)} bands, {sum(value)} bins"
        print(f"  {key:<22} {value}")
    parts = [("band_split", model.band_split)]
    parts += [(f"layers.{i} (time, band)", layer) for i, layer in enumerate(model.layers)]
    parts += [("final_norm", model.final_norm), ("mask_estimators", model.mask_estimators)]
    total = sum(p.numel() for p in model.parameters())
    print(f"\n  {'module':<24} {'parameters':>12}")
    for name, module in parts:
        print(f"  {name:<24} {sum(p.numel() for p in module.parameters()):>12,}")
    print(f"  {'total':<24} {total:>12,}   ({total * 4 / 1e6:.1f} MB in float32)")
    print(f"\n  Execution plan on {device} (network/plan.py):")
    for line in describe_plan(config, device):
        print(f"    {line}")

    if args.seconds > 0:
        mixture = generated_mixture(args.seconds, config.n_channels).to(device)
        with torch.inference_mode():
            start = time.perf_counter()
            stems = model(mixture)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
        print(f"  separated a {args.seconds:g} s generated test signal "
              f"{tuple(mixture.shape)} -> {tuple(stems.shape)} in {elapsed:.2f} s "
              f"(real-time factor {elapsed / args.seconds:.2f}); finite: "
              f"{bool(torch.isfinite(stems).all())}. Weights are untrained: the stems are not "
              f"meaningful yet.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
