"""`bsmamba2 separate`: an audio file into `<stem>.wav` and `instrumental.wav`, with a
checkpoint run by PyTorch (optionally as a CPU variant) or an exported file run by
onnxruntime (`inference.song_files`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserFileNotFoundError, UserValueError
from ._flags import check_numbers

__all__ = ["DEFAULT_CHUNK_SECONDS", "register", "run"]

DEFAULT_CHUNK_SECONDS = 8.0  # the paper's, for an --onnx file (it carries no inference:)


def register(commands: Any) -> None:
    parser = commands.add_parser("separate", help="separate an audio file into stem WAVs")
    engine = parser.add_mutually_exclusive_group(required=True)
    engine.add_argument("--onnx", type=Path, metavar="FILE",
                        help="a file from export-onnx, run by onnxruntime")
    engine.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help="a checkpoint run by PyTorch (needs --config)")
    parser.add_argument("--config", type=Path, metavar="YAML",
                        help="msst YAML for --checkpoint")
    parser.add_argument("input", type=Path,
                        help="audio file (what msst-inference reads; another sample rate "
                             "is resampled to the model's)")
    parser.add_argument("out_dir", type=Path,
                        help="folder for <stem>.wav and instrumental.wav")
    parser.add_argument("--chunk-seconds", type=float,
                        help="chunk length (default: the config's inference.chunk_size, as "
                             "msst-inference; with --onnx 8, the paper's: the paper model "
                             "needs ~4.3 GB for onnxruntime at 8 s)")
    parser.add_argument("--overlap", type=int,
                        help="1: the paper's non-overlapping chunks; n > 1: overlap-add "
                             "(default: the config's inference.num_overlap; with --onnx 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing <stem>.wav files in OUT_DIR")
    parser.add_argument("--batch-size", type=int, default=1, help="chunks per call")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all)")
    # the names of inference.cpu_variants.VARIANTS, restated: importing that module here
    # would put torch into `bsmamba2 --help` (tests/test_cli.py keeps the lists equal)
    parser.add_argument("--variant", default="fp32",
                        choices=("auto", "fp32", "int8", "int8-compiled", "bf16",
                                 "bf16-compiled", "onnx-fp32", "onnx-int8"),
                        help="with --checkpoint: CPU variant (inference/cpu_variants.py); "
                             "auto picks by the CPU's flags (default: fp32)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep (default): glibc's malloc keeps freed memory for reuse "
                             "(faster on Linux: less page zero-filling per layer; peak RSS "
                             "about one chunk's working set higher); default: glibc's own "
                             "settings. No effect off glibc")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: the stems are written only when "
                                               "all are complete, and nothing was. Run the same "
                                               "command again."))


def run(args: argparse.Namespace) -> int:
    from ..inference.onnx_runtime import OnnxSeparator
    from ..inference.song_files import load_bsmamba2, separate_to_files

    import torch

    check_numbers(args, "separate")
    if not args.input.is_file():
        raise UserFileNotFoundError(f"separate: no such file: {args.input}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        from ..inference.cpu_variants import keep_freed_memory

        keep_freed_memory()
    chunk = (args.chunk_seconds, "--chunk-seconds")
    overlap = (args.overlap, "--overlap")
    if args.onnx is not None:
        if args.variant != "fp32":
            raise UserValueError("separate: --variant goes with --checkpoint; an --onnx file runs "
                                 "as exported.")
        if args.config is not None:
            raise UserValueError("separate: --config goes with --checkpoint; an --onnx file "
                                 "carries its config.")
        if not args.onnx.is_file():
            raise UserFileNotFoundError(f"separate: no such file: {args.onnx}")
        model = OnnxSeparator.from_file(args.onnx, threads=args.threads)
        stems, rate = model.stems, model.sample_rate
        chunk = (args.chunk_seconds or DEFAULT_CHUNK_SECONDS,
                 "--chunk-seconds" if args.chunk_seconds else "the default for --onnx")
        overlap = (args.overlap or 1, "--overlap" if args.overlap else "the default")
    else:
        if args.config is None:
            raise UserValueError("separate: --checkpoint needs --config YAML (the msst config "
                                 "the checkpoint was trained with).")
        for path in (args.config, args.checkpoint):
            if not path.is_file():
                raise UserFileNotFoundError(f"separate: no such file: {path}")
        model, stems, rate = load_bsmamba2(args.config, args.checkpoint)
        chunk, overlap = config_inference(args, rate)
        if args.variant != "fp32":
            from ..inference.cpu_variants import build_cpu_variant, pick_cpu_variant

            variant = pick_cpu_variant() if args.variant == "auto" else args.variant
            print(f"CPU variant: {variant}")
            model = build_cpu_variant(model, variant, threads=args.threads)
    mode = "non-overlapping" if overlap[0] == 1 else f"overlap-add x{overlap[0]}"
    print(f"chunks of {chunk[0]:g} s ({chunk[1]}), {mode} ({overlap[1]})")
    written = separate_to_files(model, stems, rate, args.input, args.out_dir,
                                chunk_seconds=chunk[0], overlap=overlap[0],
                                batch_size=args.batch_size, overwrite=args.overwrite,
                                echo=print)
    for path in written:
        print(f"wrote {path}")
    return 0


def config_inference(args: argparse.Namespace, rate: int
                     ) -> tuple[tuple[float, str], tuple[int, str]]:
    """((chunk seconds, where from), (overlap, where from)): the flags when given, else the
    config's `inference:` section, as msst-inference uses it."""
    from ..msst_integration.config_checks import load_msst_yaml

    raw = load_msst_yaml(args.config)
    inference = raw.get("inference") or {}
    if args.chunk_seconds is not None:
        chunk = (args.chunk_seconds, "--chunk-seconds")
    else:
        key = "inference.chunk_size" if inference.get("chunk_size") else "audio.chunk_size"
        samples = inference.get("chunk_size") or (raw.get("audio") or {}).get("chunk_size")
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise UserValueError(f"{args.config}: {key}: expected a positive number of samples, "
                                 f"got {samples!r}. Fix: set it, or pass --chunk-seconds.")
        chunk = (samples / rate, f"{key} of {args.config.name}")
    if args.overlap is not None:
        overlap = (args.overlap, "--overlap")
    else:
        value = inference.get("num_overlap", 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserValueError(f"{args.config}: inference.num_overlap: expected an integer >= 1, "
                                 f"got {value!r}. Fix: set it, or pass --overlap.")
        overlap = (value, f"inference.num_overlap of {args.config.name}")
    return chunk, overlap
