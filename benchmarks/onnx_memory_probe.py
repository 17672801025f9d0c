"""Peak memory of onnxruntime on the exported paper network at a reduced depth (issue 13).

    python benchmarks/onnx_memory_probe.py DEPTH [--no-arena] [--no-mem-pattern] [--no-mem-reuse]
        [--order DEFAULT|PRIORITY_BASED] [--no-graph-opt] [--seconds 8] [--runs 2]
        [--onnx FILE]

Exports the paper config with `model.depth = DEPTH` (random weights) with `export_onnx`,
opens it on the CPU (2 threads) with the given session settings and runs one chunk
`--runs` times (the same random input each time),
printing the time and the process's peak RSS after each run
(`benchmarks/results/cpu_onnx_paper_2026-11-30.md`).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from bsmamba2_plugin.inference.onnx_runtime import export_onnx
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.model import BSMamba2


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("depth", type=int)
    parser.add_argument("--no-arena", action="store_true")
    parser.add_argument("--no-mem-pattern", action="store_true")
    parser.add_argument("--no-mem-reuse", action="store_true")
    parser.add_argument("--no-graph-opt", action="store_true")
    parser.add_argument("--order", default="DEFAULT")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--onnx", type=Path, help="an export of this depth to reuse (written "
                        "there first if missing)")
    args = parser.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(2)
    config = BSMamba2Config.paper(backend="reference").replace(depth=args.depth)
    model = BSMamba2(config).eval()
    with torch.inference_mode():
        _, features = model.analyse(torch.randn(1, 2, int(args.seconds * 44100)) * 0.1)
    path = args.onnx or Path(tempfile.mkdtemp(prefix="bsm2_probe_")) / "model.onnx"
    if not path.exists():
        export_onnx(model, path)
    before = peak_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.enable_cpu_mem_arena = not args.no_arena
    options.enable_mem_pattern = not args.no_mem_pattern
    options.enable_mem_reuse = not args.no_mem_reuse
    options.execution_order = getattr(ort.ExecutionOrder, args.order)
    if args.no_graph_opt:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for run in range(args.runs):
        start = time.perf_counter()
        session.run(["masks"], {"features": features.numpy()})
        print(f"depth {args.depth} {features.shape[1]} frames, arena {not args.no_arena}, "
              f"mem pattern {not args.no_mem_pattern}, mem reuse {not args.no_mem_reuse}, "
              f"order {args.order}, run {run}: "
              f"{time.perf_counter() - start:.1f} s, peak {peak_mb():.0f} MB (before the "
              f"session {before:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
