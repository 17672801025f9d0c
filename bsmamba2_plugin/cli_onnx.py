"""The `bsmamba2 export-onnx` and `bsmamba2 separate` subcommands (issue 13).

Kept out of `cli.py` (one module per concern); `cli.main` dispatches here lazily.
"""

from __future__ import annotations

import argparse

__all__ = ["run_onnx_command"]


def run_onnx_command(args: argparse.Namespace) -> int:
    """Run `export-onnx` or `separate`; returns the exit code (errors raise)."""
    from .evaluation.onnx_runtime import (OnnxSeparator, export_onnx, load_bsmamba2,
                                          separate_to_files)

    if args.command == "export-onnx":
        for path in (args.config, args.checkpoint):
            if not path.is_file():
                raise FileNotFoundError(f"export-onnx: no such file: {path}")
        model, stems, rate = load_bsmamba2(args.config, args.checkpoint)
        export_onnx(model, args.out, stems=stems, sample_rate=rate)
        print(f"wrote {args.out}: features (batch, frames, {sum(model.config.band_widths)}) "
              f"-> masks (batch, {model.config.num_stems}, frames, "
              f"{sum(model.config.band_widths)}); stems {', '.join(stems)}")
        return 0

    import torch

    if not args.input.is_file():
        raise FileNotFoundError(f"separate: no such file: {args.input}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        from .evaluation.cpu_variants import keep_freed_memory

        keep_freed_memory()
    if args.onnx is not None:
        if args.variant != "fp32":
            raise ValueError("separate: --variant goes with --checkpoint; an --onnx file runs "
                             "as exported.")
        if args.config is not None:
            raise ValueError("separate: --config goes with --checkpoint; an --onnx file "
                             "carries its config.")
        if not args.onnx.is_file():
            raise FileNotFoundError(f"separate: no such file: {args.onnx}")
        model = OnnxSeparator.from_file(args.onnx, threads=args.threads)
        stems, rate = model.stems, model.sample_rate
    else:
        if args.config is None:
            raise ValueError("separate: --checkpoint needs --config YAML (the msst config "
                             "the checkpoint was trained with).")
        for path in (args.config, args.checkpoint):
            if not path.is_file():
                raise FileNotFoundError(f"separate: no such file: {path}")
        model, stems, rate = load_bsmamba2(args.config, args.checkpoint)
        if args.variant != "fp32":
            from .evaluation.cpu_variants import build_cpu_variant, pick_cpu_variant

            variant = pick_cpu_variant() if args.variant == "auto" else args.variant
            print(f"CPU variant: {variant}")
            model = build_cpu_variant(model, variant, threads=args.threads)
    written = separate_to_files(model, stems, rate, args.input, args.out_dir,
                                chunk_seconds=args.chunk_seconds, overlap=args.overlap,
                                batch_size=args.batch_size)
    for path in written:
        print(f"wrote {path}")
    return 0
