"""Time cSDR, uSDR and the silence suite on one 3-minute 44.1-kHz stereo track.

    python benchmarks/csdr_speed.py [--seconds 180] [--repeats 5]

The track is seeded white noise with 30 % of its seconds exactly silent (museval skips
those frames), the estimate the track plus noise, the mixture the track plus louder noise.
Each function runs ``--repeats`` times after one warm-up call; the table gives the median
and the fastest wall time. museval 0.4.1 itself took 10.7 s for cSDR of the same kind of
track on this project's 2-core VM (docs/evaluation.md). Time on a quiet machine: a busy 2-core
machine reads several times slower.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from bsmamba2_plugin.evaluation.metrics import csdr, framewise_sdr, usdr
from bsmamba2_plugin.evaluation.silence import activity_labels, silence_suite


def make_track(seconds: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n_samples = round(seconds * sample_rate)
    reference = 0.1 * rng.standard_normal((2, n_samples))
    n_seconds = n_samples // sample_rate
    for second in rng.choice(n_seconds, size=int(0.3 * n_seconds), replace=False):
        reference[:, second * sample_rate:(second + 1) * sample_rate] = 0.0
    estimate = reference + 0.01 * rng.standard_normal((2, n_samples))
    mixture = reference + 0.1 * rng.standard_normal((2, n_samples))
    return reference, estimate, mixture


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_call(function: Callable[[], object], repeats: int) -> list[float]:
    function()  # warm-up: first-touch page faults of the temporaries
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args(argv)
    rate = args.sample_rate
    reference, estimate, mixture = make_track(args.seconds, rate)
    frames = framewise_sdr(reference, estimate, rate)
    cases = {
        "csdr (museval v4 grid, NaN rule)": lambda: csdr(reference, estimate, rate),
        "usdr (msst sdr)": lambda: usdr(reference, estimate),
        "activity_labels (S0)": lambda: activity_labels(reference, rate),
        "silence_suite (S0-S7)": lambda: silence_suite(reference, estimate, mixture, rate),
    }
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} "
          f"{platform.release()}, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"track: {args.seconds:g} s stereo at {rate} Hz, {frames.size} 1-s frames, "
          f"{int(np.isnan(frames).sum())} NaN; cSDR {csdr(reference, estimate, rate):.3f} dB, "
          f"uSDR {usdr(reference, estimate):.3f} dB")
    print()
    print("| function | median s | fastest s | runs |")
    print("|---|---|---|---|")
    for name, function in cases.items():
        times = time_call(function, args.repeats)
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {len(times)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
