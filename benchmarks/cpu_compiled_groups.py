"""Seconds per 8 s chunk of the `int8-compiled` paper model by group size (issue 13).

    cd benchmarks && for g in 1024 16384 4096 1024 16384 4096; do
        python cpu_compiled_groups.py $g; done

`CompiledBiMamba2` runs the sequences of an axis in groups of about
`cpu_tokens_per_group` tokens (one compiled call and one int8 GEMM per projection per
group; `build_cpu_variant` uses 1024, or `LARGE_GROUP` after `keep_freed_memory()`). One process per setting (the compiled kernels depend on the group's shape), glibc
keeping freed memory (`keep_freed_memory`), 2 threads, random paper-model weights, one
warm-up (compilation) and 3 timed runs; interleave settings across processes, the
machine's speed drifts. Prints the setting, the three times and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from bsmamba2_plugin.evaluation.cpu_variants import build_cpu_variant, keep_freed_memory
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.cpu_compiled import CompiledBiMamba2
from bsmamba2_plugin.network.model import BSMamba2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokens", type=int, help="cpu_tokens_per_group")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_cpu_variant(BSMamba2(BSMamba2Config.paper(backend="reference")).eval(),
                              "int8-compiled")
    for block in model.modules():
        if isinstance(block, CompiledBiMamba2):
            block.cpu_tokens_per_group = args.tokens
    chunk = 0.1 * torch.randn(1, 2, 8 * 44100)
    with torch.inference_mode():
        model(chunk)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(chunk)
            times.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"tokens per group {args.tokens}: " + ", ".join(f"{t:.2f}" for t in times)
          + f" s; peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
