"""Speed of the synthetic multitrack renderer (`bsmamba2_plugin.data.render`), one run.

    python benchmarks/render_speed.py [--tracks 4] [--seconds 30] [--engine synth]

Renders `--tracks` train tracks (no valid split) into a temporary folder with the progress
bar off, writing every file as `render_dataset` does, and prints the audio rendered, the wall
time and the real-time factor. The renderer is single-threaded numpy code; BLAS and OpenMP
are held to one thread here (unless already set in the environment), so the factor is per
core. Time it on a quiet machine: a loaded core reads slower. The goal for engine "synth" is
at least 50x real time per core.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy is imported

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from bsmamba2_plugin.data.render import ENGINES, render_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--engine", choices=ENGINES, default="synth")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="render_speed_") as folder:
        summary = render_dataset(Path(folder) / "data", tracks=args.tracks,
                                 seconds=args.seconds, seed=args.seed,
                                 sample_rate=args.sample_rate, valid_tracks=0,
                                 engine=args.engine, progress=False)
    audio, wall = summary["audio_seconds"], summary["wall_seconds"]
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
          f"numpy {np.__version__}; engine {args.engine}, {args.sample_rate} Hz, "
          f"4 stems + mixture per track, float32 WAV written")
    print()
    print("| tracks | audio s | wall s | x real time | x real time per core (1 core) |")
    print("|---|---|---|---|---|")
    print(f"| {args.tracks} x {args.seconds:g} s | {audio:.1f} | {wall:.2f} | "
          f"{audio / wall:.1f} | {audio / wall:.1f} |")


if __name__ == "__main__":
    main()
