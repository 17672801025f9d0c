"""Matrix-product rates of the CPU at the paper model's projection shapes (issue 13).

    taskset -c 0,1 python benchmarks/cpu_gemm_shapes.py [--threads 2]

G multiply-adds per second of one product, fp32 and bf16 `matmul`, a bf16 `nn.Linear`
(oneDNN; AMX tiles where the CPU has them) and fbgemm's dynamic int8 `nn.Linear`, for a
square 4096^3 problem and the mixers' in_proj (801 x 62 tokens, 256 -> 2320) and
out_proj (1024 -> 256) over one 8 s chunk. Results:
`benchmarks/results/cpu_amx_xeon_2026-11-30.md`.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def rate(function, multiply_adds: int, repeats: int = 5) -> float:
    function()  # warm-up (oneDNN builds its kernel for the shape)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return multiply_adds * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(parser.parse_args().threads)
    print("| M x K x N | fp32 matmul | bf16 matmul | bf16 nn.Linear | int8 dynamic (fbgemm) |")
    print("|---|---|---|---|---|")
    for m, k, n in ((4096, 4096, 4096), (49662, 256, 2320), (49662, 1024, 256)):
        a, w = torch.randn(m, k), torch.randn(n, k)
        a16, w16 = a.bfloat16(), w.bfloat16()
        linear16 = nn.Linear(k, n).bfloat16()
        int8 = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(k, n)),
                                                      {nn.Linear}, dtype=torch.qint8)
        with torch.inference_mode():
            rates = [rate(lambda: a @ w.t(), m * k * n), rate(lambda: a16 @ w16.t(), m * k * n),
                     rate(lambda: linear16(a16), m * k * n), rate(lambda: int8(a), m * k * n)]
        print(f"| {m} x {k} x {n} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")


if __name__ == "__main__":
    main()
