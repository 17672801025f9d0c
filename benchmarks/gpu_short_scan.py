"""The band axis's scan alone: `short_scan` against mamba_ssm's chunked scan (CUDA).

    python benchmarks/gpu_short_scan.py [--repeats 20] [--sweep]

Paper widths (both directions as 2 groups of 16 heads, headdim 64, d_state 128), bf16
inputs as under autocast, 62 steps; n = batch x 801 frames of 8 s. Forward alone and
forward + backward, medians of CUDA-event timings after two warm-up calls, and the
largest difference of the outputs and gradients between the two, relative to each
tensor's largest value. One table on stdout. `--sweep` then times short_scan's backward
half alone (`short_scan_backward`, n = 5 x 801) at 4, 8 and 16 warps and 1, 2 and 3
software-pipelining stages (`_BWD_WARPS`, `_BWD_STAGES`), each setting's gradients beside
the shipped setting's (largest difference relative to the shipped gradient's largest
value): a second table.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics

import torch

from bsmamba2_plugin.network import short_scan as module
from bsmamba2_plugin.network.short_scan import short_scan
from bsmamba2_plugin.network.ssd import load_mamba_triton


def inputs(n: int, length: int, seed: int = 0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    heads, groups, headdim, dstate = 32, 2, 64, 128

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    x = randn(n, length, heads, headdim).bfloat16()
    dt = (randn(n, length, heads) - 1).bfloat16()
    A = -torch.exp(torch.rand(heads, device="cuda", generator=gen) * math.log(16))
    B = (randn(n, length, groups, dstate) / 4).bfloat16()
    C = (randn(n, length, groups, dstate) / 4).bfloat16()
    return [t.requires_grad_() for t in (x, dt, A, B, C, randn(heads), 0.5 * randn(heads))]


def timed(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(begin.elapsed_time(end))
    return statistics.median(times)


def record_and_compare(results: dict, name: str, both) -> str:
    """Run `both` (output and gradients) once, keep them under `name` in `results`, and
    return the largest difference of each to the first scan's kept ones, relative to this
    scan's largest value ("" for the first scan)."""
    y, grads = both()
    results[name] = [y.float(), *(g.float() for g in grads)]
    if len(results) < 2:
        return ""
    first = next(iter(results.values()))
    return " ".join(f"{((u - v).abs().max() / v.abs().max()).item():.1e}"
                    for u, v in zip(first, results[name]))


def sweep_backward(repeats: int, n: int = 5 * 801) -> None:
    """Time `short_scan_backward` at each warps x stages setting (restored after), and
    give each setting's gradients' largest difference to the shipped setting's."""
    from triton.runtime.errors import OutOfResources  # the package imports triton lazily

    x, dt, A, B, C, D, dt_bias = (t.detach() for t in inputs(n, 62))
    probe = torch.randn_like(x)
    call = functools.partial(module.short_scan_backward, probe, None, x, dt, A, B, C, D=D,
                             dt_bias=dt_bias, dt_softplus=True)
    shipped = (module._BWD_WARPS, module._BWD_STAGES)
    settings = [shipped] + [(w, s) for w in (4, 8, 16) for s in (1, 2, 3) if (w, s) != shipped]
    print(f"\nshort_scan's backward half, n = {n} sequences of 62 steps, by launch setting "
          f"(shipped: {shipped[0]} warps, {shipped[1]} stages)")
    print("| warps | stages | bwd half ms | max rel. diff to shipped "
          "(dx, ddt, dA, dB, dC, dD, ddt_bias) |")
    print("|---|---|---|---|")
    reference = None
    try:
        for warps, stages in settings:
            module._BWD_WARPS, module._BWD_STAGES = warps, stages
            try:
                grads = [g.float() for g in call()]
                torch.cuda.synchronize()
                ms = f"{timed(call, repeats):.2f}"
            except OutOfResources as error:  # e.g. shared memory
                print(f"| {warps} | {stages} | {type(error).__name__}: {str(error)[:80]} | |",
                      flush=True)
                continue
            if reference is None:
                reference = grads
            diff = " ".join(f"{((u - v).abs().max() / v.abs().max()).item():.1e}"
                            for u, v in zip(grads, reference))
            print(f"| {warps} | {stages} | {ms} | {diff} |", flush=True)
    finally:
        module._BWD_WARPS, module._BWD_STAGES = shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sweep", action="store_true",
                        help="also time the backward half at each warps x stages setting")
    args = parser.parse_args()
    chunked = load_mamba_triton().mamba_chunk_scan_combined
    scans = {"mamba_ssm chunk 64": lambda *a, **k: chunked(*a[:5], 64, **k),
             "short_scan": lambda *a, **k: short_scan(*a[:5], None, **k)}
    print("| n (sequences) | scan | fwd ms | fwd+bwd ms | max rel. diff (y, grads) |")
    print("|---|---|---|---|---|")
    for n in (5 * 801, 8 * 801):
        leaves = inputs(n, 62)
        x, dt, A, B, C, D, dt_bias = leaves
        probe = torch.randn_like(x)
        results = {}
        for name, scan in scans.items():
            def fwd():
                with torch.no_grad():
                    return scan(x, dt, A, B, C, D=D, dt_bias=dt_bias, dt_softplus=True)

            def both():
                y = scan(x, dt, A, B, C, D=D, dt_bias=dt_bias, dt_softplus=True)
                return y, torch.autograd.grad(y, leaves, probe)

            diff = record_and_compare(results, name, both)
            print(f"| {n} | {name} | {timed(fwd, args.repeats):.2f} | "
                  f"{timed(both, args.repeats):.2f} | {diff} |")
    if args.sweep:
        sweep_backward(args.repeats)


if __name__ == "__main__":
    main()
