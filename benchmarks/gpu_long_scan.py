"""The time axis's scan alone: `long_scan` against mamba_ssm's chunked scan (CUDA).

    python benchmarks/gpu_long_scan.py [--repeats 20] [--n 310] [--length 801] [--sweep]

Paper widths (both directions as 2 groups of 16 heads, headdim 64, d_state 128), bf16
inputs as under autocast; n = 5 songs x 62 bands of 8 s (801 frames) by default. Forward
alone, forward + backward, and the backward half alone (`long_scan_backward` /
mamba_ssm's `_mamba_chunk_scan_combined_bwd`, what the selective-recompute path calls; mamba_ssm
at chunks of 128, the model's default, 64 and 256),
medians of CUDA-event timings after two warm-up calls; the peak memory of forward +
backward above the inputs; the largest difference of the outputs and gradients between
the two scans, relative to each tensor's largest value. `--sweep` also times long_scan's
forward for chunks of 16 to 64 steps, 4 and 8 warps, 1 and 3 software-pipelining stages,
and its backward half for chunks of 32 and 64 at 4 and 8 warps, 1 and 2 stages of its
per-chunk kernel (the state kernels at their defaults), with each run's peak memory and
its largest difference to the default launch's results (relative to each tensor's largest
value). Tables on stdout.
"""

from __future__ import annotations

import argparse
import functools

import torch
from triton.runtime.errors import OutOfResources

# benchmarks/ on the path: the script's folder, or PYTHONPATH under python -P
from gpu_short_scan import inputs, record_and_compare, timed

from bsmamba2_plugin.network import long_scan as module
from bsmamba2_plugin.network.ssd import load_mamba_triton


def peak_mib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--n", type=int, default=5 * 62)
    parser.add_argument("--length", type=int, default=801)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    ops = load_mamba_triton()
    chunked = ops.mamba_chunk_scan_combined
    _, mamba_bwd = ops.scan_halves
    leaves = inputs(args.n, args.length)
    x, dt, A, B, C, D, dt_bias = leaves
    probe = torch.randn_like(x)
    kw = {"D": D, "dt_bias": dt_bias, "dt_softplus": True}
    plain = [t.detach() for t in (x, dt, A, B, C)]
    scans = {
        f"mamba_ssm chunk {q}": (functools.partial(chunked, x, dt, A, B, C, q, **kw),
                                 functools.partial(lambda y, q: mamba_bwd(probe, y, *plain, q,
                                                                          **kw), q=q))
        for q in (128, 64, 256)
    }
    scans |= {
        "long_scan": (lambda: module.long_scan(x, dt, A, B, C, None, **kw),
                      lambda y: module.long_scan_backward(probe, y, *plain, None, **kw)),
    }
    print(f"n = {args.n} sequences of {args.length} steps, bf16, H 32, G 2, P 64, NS 128")
    print("| scan | fwd ms | fwd+bwd ms | bwd half ms | fwd+bwd peak MiB | "
          "max rel. diff (y, dx, ddt, dA, dB, dC, dD, ddt_bias) |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, (scan, backward) in scans.items():
        def fwd():
            with torch.no_grad():
                return scan()

        def both():
            y = scan()
            return y, torch.autograd.grad(y, leaves, probe)

        diff = record_and_compare(results, name, both)
        y = fwd()
        print(f"| {name} | {timed(fwd, args.repeats):.2f} | {timed(both, args.repeats):.2f} | "
              f"{timed(lambda: backward(y), args.repeats):.2f} | {peak_mib(both):.0f} | "
              f"{diff} |", flush=True)
    if not args.sweep:
        return
    print("\nlong_scan's launch settings (forward; backward half: its per-chunk kernel)")
    print("| pass | chunk L | warps | stages | ms | peak MiB | max rel. diff to the default |")
    print("|---|---|---|---|---|---|---|")
    y = module.long_scan_forward(*plain, **kw)
    reference = {"fwd": [y], "bwd": module.long_scan_backward(probe, y, *plain, **kw)}

    def difference(kind, got):
        got = [got] if kind == "fwd" else got
        return max(((a.float() - b.float()).abs().max()
                    / b.float().abs().max().clamp_min(1e-12)).item()
                   for a, b in zip(got, reference[kind]))
    defaults = (module._FWD_WARPS, module._FWD_STAGES, module._BWD_WARPS, module._BWD_STAGES)
    runs = [("fwd", chunk, warps, stages) for chunk in (16, 32, 64) for warps in (4, 8)
            for stages in (1, 3)] + [("fwd", 128, 8, 1)]
    runs += [("bwd", chunk, warps, stages) for chunk in (32, 64) for warps in (4, 8)
             for stages in (1, 2)]
    for kind, chunk, warps, stages in runs:
        if kind == "fwd":
            module._FWD_WARPS, module._FWD_STAGES = warps, stages
            call = functools.partial(module.long_scan_forward, *plain, **kw, scan_chunk=chunk)
        else:
            module._BWD_WARPS, module._BWD_STAGES = warps, stages
            call = functools.partial(module.long_scan_backward, probe, y, *plain, **kw,
                                     scan_chunk=chunk)
        try:
            cells = (f"{timed(call, args.repeats):.2f} | {peak_mib(call):.0f} | "
                     f"{difference(kind, call()):.1e}")
        except (OutOfResources, torch.OutOfMemoryError) as error:  # e.g. shared memory
            cells = f"{type(error).__name__}: {str(error)[:80]} | |"
        print(f"| {kind} | {chunk} | {warps} | {stages} | {cells} |", flush=True)
        module._FWD_WARPS, module._FWD_STAGES, module._BWD_WARPS, module._BWD_STAGES = \
            defaults


if __name__ == "__main__":
    main()
