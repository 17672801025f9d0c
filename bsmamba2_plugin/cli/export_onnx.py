"""`bsmamba2 export-onnx`: the network between the STFT and the iSTFT of a trained
BSMamba2 as an ONNX file (`inference.onnx_runtime`; needs the onnx extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserFileNotFoundError

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("export-onnx", help="export the network between the STFT and "
                                                     "the iSTFT to ONNX (needs the onnx extra)")
    parser.add_argument("config", type=Path, help="msst YAML with the model: section")
    parser.add_argument("checkpoint", type=Path, help="checkpoint (state dict) to export")
    parser.add_argument("out", type=Path, help="the .onnx file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: OUT is written only when "
                                               "complete. Run the same command again."))


def run(args: argparse.Namespace) -> int:
    from ..data.outputs import refuse_existing
    from ..inference.onnx_runtime import export_onnx
    from ..inference.song_files import load_bsmamba2

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
