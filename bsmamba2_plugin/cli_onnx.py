"""The `bsmamba2 export-onnx` and `bsmamba2 separate` subcommands (issue 13).

Kept out of `cli.py` (one module per concern); `cli.main` dispatches here lazily.
"""

from __future__ import annotations

import argparse

from .errors import UserFileNotFoundError, UserValueError

__all__ = ["run_onnx_command"]


def run_onnx_command(args: argparse.Namespace) -> int:
    """Run `export-onnx` or `separate`; returns the exit code (errors raise)."""
    from .data.outputs import refuse_existing
    from .inference.onnx_runtime import OnnxSeparator, export_onnx
    from .inference.song_files import load_bsmamba2, separate_to_files

    if args.command == "export-onnx":
        for path in (args.config, args.checkpoint):
            if not path.is_file():
                raise UserFileNotFoundError(f"export-onnx: no such file: {path}")
        refuse_existing([args.out], overwrite=args.overwrite,
                        inputs=[args.config, args.checkpoint], instead="another OUT")
        model, stems, rate = load_bsmamba2(args.config, args.checkpoint)
        export_onnx(model, args.out, stems=stems, sample_rate=rate)
        print(f"wrote {args.out}: features (batch, frames, {sum(model.config.band_widths)}) "
              f"-> masks (batch, {model.config.num_stems}, frames, "
              f"{sum(model.config.band_widths)}); stems {', '.join(stems)}")
        return 0

    import torch

    check_numbers(args, "separate")
    if not args.input.is_file():
        raise UserFileNotFoundError(f"separate: no such file: {args.input}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        from .inference.cpu_variants import keep_freed_memory

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
            from .inference.cpu_variants import build_cpu_variant, pick_cpu_variant

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


DEFAULT_CHUNK_SECONDS = 8.0  # the paper's, for an --onnx file (it carries no inference:)


def check_numbers(args: argparse.Namespace, command: str) -> None:
    """--chunk-seconds > 0, --overlap >= 1, --batch-size >= 1, or one line naming the flag."""
    chunks = args.chunk_seconds if isinstance(args.chunk_seconds, list) else [args.chunk_seconds]
    for value in chunks:
        if value is not None and not value > 0:
            raise UserValueError(f"{command}: --chunk-seconds: expected a number of seconds > 0, "
                                 f"got {value:g}. Fix: e.g. --chunk-seconds 8 (the paper's).")
    for flag, value, example in (("--overlap", args.overlap, "1 (non-overlapping chunks) or "
                                  "2-4 (overlap-add)"),
                                 ("--batch-size", args.batch_size, "1 (chunks per model call)")):
        if value is not None and value < 1:
            raise UserValueError(f"{command}: {flag}: expected an integer >= 1, got {value}. "
                                 f"Fix: e.g. {flag} {example}.")


def config_inference(args: argparse.Namespace, rate: int
                     ) -> tuple[tuple[float, str], tuple[int, str]]:
    """((chunk seconds, where from), (overlap, where from)): the flags when given, else the
    config's `inference:` section, as msst-inference uses it."""
    from .msst_integration.config_checks import load_msst_yaml

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
