"""How fast could the paper BSMamba2 separate an 8 s chunk on this CPU at best? (issue 13)

    cd benchmarks && python cpu_floor.py [--threads 2]

A lower bound from this machine's own measured ceilings, next to BS-RoFormer 256x6 (fp32,
glibc keeping freed memory, `cpu_variants.keep_freed_memory`) timed in the same run:

- the model's projections (every nn.Linear: in/out projections, fusion, band split, mask
  estimators), counted by hooks on a 2 s chunk and scaled to 8 s (their work is
  proportional to the frame count), at the best int8 rate this CPU reaches: fbgemm's
  dynamic int8 Linear on a large square problem (VNNI; the fastest matrix engine here
  unless the CPU has AMX);
- the SSD's matrix products at their smallest for any chunking: on the time axis only the
  chunk-state terms, 2 x heads x d_state x headdim multiply-adds per token (B^T x into the
  state, C h out of it; every chunking does at least these), on the band axis the
  one-chunk quadratic form (62 x d_state + heads x 62 x headdim per token), at the best
  bfloat16 matmul rate (oneDNN, AVX512-BF16/AMX) or float32 where there is no native
  bfloat16;
- the bytes every implementation must move at least once per mixer: in_proj's output
  (2320 values per token) written as float32 by the int8 GEMM and read once, and the
  gated-norm output (1024 per token) written and read once as int8, at the measured copy
  bandwidth.

Everything else (conv, SiLU, softplus, decays, norms, quantisation, STFT, masks) counts as
free, so the bound is optimistic. If it is above half of BS-RoFormer's time, no
implementation of this model on this CPU reaches 2x BS-RoFormer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from bsmamba2_plugin.inference.cpu_variants import cpu_features, keep_freed_memory, native_bf16
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.model import BSMamba2
from cpu_vs_bs_roformer import build_bs_roformer  # the same baseline (run from benchmarks/)

RATE = 44100


def best_seconds(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def copy_bandwidth(values: int = 2**28) -> float:
    """Bytes per second of a float32 copy of `values` elements (read + write)."""
    source = torch.randn(values)
    target = torch.empty_like(source)
    return 2 * values * 4 / best_seconds(lambda: target.copy_(source))


def linear_macs(model: nn.Module, seconds: float) -> int:
    """Multiply-adds of every nn.Linear of `model` on one stereo chunk of `seconds`."""
    total = 0

    def hook(module, inputs, _output):
        nonlocal total
        total += inputs[0].numel() // module.in_features * module.in_features \
            * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Linear)]
    with torch.inference_mode():
        model(torch.randn(1, 2, int(seconds * RATE)) * 0.1)
    for handle in handles:
        handle.remove()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    kept = keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BSMamba2Config.paper(backend="reference")
    model = BSMamba2(config).eval()

    frames = {s: int(s * RATE) // config.stft_hop_length + 1 for s in (2.0, 8.0)}
    proj_macs = linear_macs(model, 2.0) * frames[8.0] / frames[2.0]
    bands = len(config.freqs_per_bands)
    tokens = frames[8.0] * bands  # per axis and direction
    heads = config.expand * config.dim // config.headdim
    d_inner = heads * config.headdim
    per_token_time = 2 * heads * config.d_state * config.headdim
    per_token_band = bands * config.d_state + heads * bands * config.headdim
    mixers_per_axis = 2 * config.depth  # two directions per block
    ssd_macs = mixers_per_axis * tokens * (per_token_time + per_token_band)
    in_width = 2 * d_inner + 2 * config.d_state + heads
    min_bytes = 2 * mixers_per_axis * tokens * (2 * 4 * in_width + 2 * 1 * d_inner)

    # this CPU's ceilings
    n = 4096
    square = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(n, n, bias=False)),
                                                    {nn.Linear}, dtype=torch.qint8).eval()
    x = torch.randn(2 * n, n)
    with torch.inference_mode():
        int8_rate = 2 * n * n * n / best_seconds(lambda: square(x))  # multiply-adds/s
    features = cpu_features()
    ssd_dtype = torch.bfloat16 if native_bf16(features) else torch.float32
    a = torch.randn(n, n, dtype=ssd_dtype)
    matmul_rate = n ** 3 / best_seconds(lambda: a @ a)
    bandwidth = copy_bandwidth()

    roformer = build_bs_roformer()
    roformer_s = None
    if roformer is not None:
        chunk = torch.randn(1, 2, int(8.0 * RATE)) * 0.1
        with torch.inference_mode():
            roformer.eval()(chunk)  # warm-up
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                roformer(chunk)
                runs.append(time.perf_counter() - start)
        roformer_s = statistics.median(runs)

    rows = [
        ("projections (every nn.Linear), int8", f"{proj_macs / 1e9:.0f} G multiply-adds",
         f"{int8_rate / 1e9:.0f} G/s (fbgemm int8, {2 * n}x{n}x{n})", proj_macs / int8_rate),
        (f"SSD products, {str(ssd_dtype).removeprefix('torch.')}",
         f"{ssd_macs / 1e9:.0f} G multiply-adds",
         f"{matmul_rate / 1e9:.0f} G/s (matmul {n}^3)", ssd_macs / matmul_rate),
        ("bytes moved at least once", f"{min_bytes / 1e9:.1f} GB",
         f"{bandwidth / 1e9:.1f} GB/s (copy, read + write)", min_bytes / bandwidth),
    ]
    floor = sum(row[3] for row in rows)
    print(f"\nCPU: {', '.join(k for k, v in features.items() if v)}; torch {torch.__version__}, "
          f"{args.threads} threads; glibc keeps freed memory: {kept}")
    print("paper BSMamba2, one 8 s stereo chunk "
          f"({frames[8.0]} frames x {bands} bands, {4 * config.depth} mixers)\n")
    print("| part | work | this CPU's best rate | floor s |")
    print("|---|---|---|---|")
    for part, work, rate, seconds in rows:
        print(f"| {part} | {work} | {rate} | {seconds:.2f} |")
    print(f"| **sum (everything else free)** | | | **{floor:.2f}** |")
    if roformer_s is not None:
        print(f"\nBS-RoFormer 256x6 fp32, same process, median of 3: {roformer_s:.2f} s; "
              f"2x would be <= {roformer_s / 2:.2f} s; the floor is "
              f"{floor / (roformer_s / 2):.2f}x that.")


if __name__ == "__main__":
    main()
