"""Seconds per 8 s chunk of a compiled CPU variant at one thread count (issue 13).

    python benchmarks/cpu_compiled_threads.py THREADS [VARIANT]    (default int8-compiled)

Paper model (random weights), one 8 s stereo chunk, freed memory kept; prints the first
call (which compiles, or loads TorchInductor's on-disk cache) and two timed runs. Run it
twice with different counts on one cache to see which kernels the second process gets:
torch 2.11's cache key left the implicit thread count out, so the second process ran the
first one's kernels (`network/cpu_compiled._compiled` now passes the count as an option;
`benchmarks/results/cpu_amx_xeon_2026-11-30.md`). The generated kernels' pragmas show it:

    grep -rhoa "num_threads([0-9]*)" /tmp/torchinductor_$USER | sort | uniq -c
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from bsmamba2_plugin.evaluation.cpu_variants import build_cpu_variant, keep_freed_memory
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.model import BSMamba2


def main() -> None:
    threads = int(sys.argv[1])
    variant = sys.argv[2] if len(sys.argv) > 2 else "int8-compiled"
    keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = BSMamba2(BSMamba2Config.paper(backend="reference")).eval()
    model = build_cpu_variant(base, variant, workdir=tempfile.mkdtemp(), threads=threads)
    mixture = torch.randn(1, 2, 352800, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.inference_mode():
        start = time.perf_counter()
        model(mixture)
        first = time.perf_counter() - start
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            model(mixture)
            runs.append(time.perf_counter() - start)
    print(f"threads {threads} {variant}: first {first:.1f} s, runs {runs[0]:.2f} "
          f"{runs[1]:.2f} s", flush=True)


if __name__ == "__main__":
    main()
