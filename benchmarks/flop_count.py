"""Counted forward FLOPs of one 8 s stereo chunk, per op, for the models we compare.

    python benchmarks/flop_count.py [--seconds 8] [--models bsmamba2 bs_roformer_256x6]

The counting is `bsmamba2 bench`'s (`evaluation.bench.forward_flop_counts`), so these are
the figures behind every TFLOP/s it reports: `torch.utils.flop_counter` on one forward pass
in float32 on the CPU, 2 FLOPs per multiply-add, counting matrix products (every Linear, the
SSD's and attention's products) and convolutions only. Element-wise work, normalisations,
softmax, the STFT/iSTFT and the loss are not counted. BSMamba2 is counted through the
reference backend (the kernel does the same products); BS-RoFormer without flash attention
(the same products, written as einsum). Needs msst for the BS-RoFormer models.
"""

from __future__ import annotations

import argparse
import datetime
import platform

import torch

from bsmamba2_plugin.evaluation.bench import forward_flop_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--models", nargs="+", default=["bsmamba2", "bs_roformer_256x6"])
    args = parser.parse_args()
    device = torch.device("cpu")
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}; one {args.seconds:g} s stereo chunk, forward\n")
    print("| model | op | GFLOP |")
    print("|---|---|---|")
    totals = {}
    for name in args.models:
        counts = forward_flop_counts(name, args.seconds, device)
        for op, flops in sorted(counts.items(), key=lambda item: -item[1]):
            print(f"| {name} | {op} | {flops / 1e9:.1f} |")
        totals[name] = sum(counts.values())
        print(f"| {name} | **total** | **{totals[name] / 1e9:.1f}** "
              f"({totals[name] / args.seconds / 1e9:.2f} GFLOP per audio second) |")
    first = args.models[0]
    for name in args.models[1:]:
        print(f"\n{first} / {name}: {totals[first] / totals[name]:.2f}x the counted FLOPs")


if __name__ == "__main__":
    main()
