"""Seconds per 8 s chunk of a compiled CPU variant by group size and thread count (issue 13).

    cd benchmarks && for g in 1024 16384 4096 1024 16384 4096; do
        python cpu_compiled_groups.py $g; done
    python cpu_compiled_groups.py --threads 16; python cpu_compiled_groups.py --threads 2

`CompiledBiMamba2` runs the sequences of an axis in groups of about
`tokens_per_group` tokens (one compiled call and one int8 GEMM per projection per
group; `build_cpu_variant` uses 1024, or `LARGE_GROUP` after `keep_freed_memory()`,
which this script calls; without TOKENS that setting stays). One process per setting
(the compiled kernels depend on the group's shape and the thread count), random
paper-model weights, one first call (compilation, or TorchInductor's on-disk cache) and
3 timed runs; interleave settings across processes, the machine's speed drifts. Prints
the setting, the first call, the three times and the peak RSS.

Two processes with different `--threads` on one cache show which kernels the second
gets: torch 2.11's cache key left the implicit thread count out, so it ran the first
one's (`network/cpu_compiled._compiled` now passes the count as an option;
`benchmarks/results/cpu_amx_xeon_2026-11-30.md`). The kernels' pragmas show it:

    grep -rhoa "num_threads([0-9]*)" /tmp/torchinductor_$USER | sort | uniq -c
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from bsmamba2_plugin.inference.cpu_variants import build_cpu_variant, keep_freed_memory
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.cpu_compiled import CompiledBiMamba2
from bsmamba2_plugin.network.model import BSMamba2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokens", type=int, nargs="?",
                        help="tokens_per_group (default: the variant's own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=("int8-compiled", "bf16-compiled"),
                        default="int8-compiled")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_cpu_variant(BSMamba2(BSMamba2Config.paper(backend="reference")).eval(),
                              args.variant, workdir=tempfile.mkdtemp(), threads=args.threads)
    blocks = [m for m in model.modules() if isinstance(m, CompiledBiMamba2)]
    if args.tokens is not None:
        for block in blocks:
            block.tokens_per_group = args.tokens
    chunk = 0.1 * torch.randn(1, 2, 8 * 44100)
    with torch.inference_mode():
        start = time.perf_counter()
        model(chunk)
        first = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(chunk)
            times.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{args.variant}, {args.threads} threads, tokens per group "
          f"{blocks[0].tokens_per_group}: first call {first:.1f} s, runs "
          + ", ".join(f"{t:.2f}" for t in times) + f" s; peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
