"""Tile sizes of the split_conv kernels on the GPU (bimamba2_fused's conv, GPU_NOTES change 6).

    python benchmarks/gpu_split_conv.py [--batch 5] [--only 32x128x4 64x64x4]

For the paper widths (d_inner 1024, d_state 128, 16 heads, taps 4) and both axes of a
batch of 8 s chunks in bf16 (time: batch x 62 sequences of 801 steps; bands: batch x 801
sequences of 62), times `conv_fwd`, `conv_bwd_pre` (with the partial-sum reduction that
follows it) and `conv_bwd_x` for rows x channels per program (BL x BC) and warps, with
CUDA events (median of 20 after a warm-up), and checks every setting's outputs against
the first setting (BL 32, BC 128, 4 warps; the forward's, while the backward's two kernels
run 64 x 64). Prints one table per axis. `--only` times just the settings named
(BLxBCxWARPS), e.g. the two in use, to compare kernel versions run for run.
"""

from __future__ import annotations

import argparse

import torch

from bsmamba2_plugin.network import split_conv_triton as k
from gpu_short_scan import timed  # CUDA-event medians (run from the repository root)

DI, NS, H, TAPS = 1024, 128, 16, 4
CH = DI + 2 * NS
WIDTH = 2 * DI + 2 * NS + H  # one direction's packed projection
XOFF = DI


def run(n: int, length: int, bl: int, bc: int, warps: int, P, w, b, grads):
    blocks = (length + bl - 1) // bl
    grid = (n * blocks, (CH + bc - 1) // bc, 2)
    x = P.new_empty(n, length, 2 * DI)
    B = P.new_empty(n, length, 2 * NS)
    C = P.new_empty(n, length, 2 * NS)
    dpre = torch.empty(n, length, 2, CH, device=P.device, dtype=torch.float32)
    partial = torch.empty(n * blocks, 2, CH, TAPS + 1, device=P.device, dtype=torch.float32)
    dP = torch.zeros_like(P)
    g_x, g_B, g_C = grads
    common = dict(CH=CH, TAPS=TAPS, BL=bl, BC=bc, num_warps=warps)

    def fwd():
        k.conv_fwd[grid](P, w, b, x, B, C, length, blocks, P.stride(0), P.stride(1),
                         E=WIDTH, XOFF=XOFF, DI=DI, NS=NS, **common)

    def pre():
        k.conv_bwd_pre[grid](P, w, b, g_x, g_B, g_C, dpre, partial, length, blocks,
                             P.stride(0), P.stride(1), E=WIDTH, XOFF=XOFF, DI=DI, NS=NS,
                             **common)
        return partial.sum(0)

    def bwd_x():
        k.conv_bwd_x[grid](w, dpre, dP, length, blocks, dP.stride(0), dP.stride(1),
                           E=WIDTH, XOFF=XOFF, **common)

    times = (timed(fwd, 20), timed(pre, 20), timed(bwd_x, 20))
    fwd()
    sums = pre()
    bwd_x()
    return times, [x.float(), B.float(), C.float(), sums, dP.float()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--only", nargs="+", metavar="BLxBCxWARPS",
                        help="time only these settings (default: the whole sweep)")
    args = parser.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    settings = [(bl, bc, warps) for bl in (32, 64, 128) for bc in (64, 128, 256)
                for warps in (4, 8) if bl * bc <= 16384]
    if args.only:
        settings = [tuple(int(v) for v in s.split("x")) for s in args.only]
    for axis, n, length in (("time", args.batch * 62, 801), ("bands", args.batch * 801, 62)):
        P = torch.randn(n, length, 2 * WIDTH, device="cuda", generator=gen).to(torch.bfloat16)
        w = torch.randn(2, CH, TAPS, device="cuda", generator=gen) * 0.3
        b = torch.randn(2, CH, device="cuda", generator=gen) * 0.1
        grads = [torch.randn(n, length, 2 * width, device="cuda", generator=gen)
                 .to(torch.bfloat16) for width in (DI, NS, NS)]
        base_times, base = run(n, length, 32, 128, 4, P, w, b, grads)
        print(f"\n{axis} axis: {n} sequences x {length} steps, bf16; ms, median of 20\n")
        print("| BL x BC, warps | conv_fwd | conv_bwd_pre + sum | conv_bwd_x | backward | "
              "max rel. diff |")
        print("|---|---|---|---|---|---|")
        for bl, bc, warps in settings:
            times, outs = ((base_times, base) if (bl, bc, warps) == (32, 128, 4)
                           else run(n, length, bl, bc, warps, P, w, b, grads))
            diff = max(((o - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
                       for o, r in zip(outs, base))
            mark = " (forward's setting)" if (bl, bc, warps) == (32, 128, 4) else ""
            print(f"| {bl} x {bc}, {warps}{mark} | {times[0]:.3f} | {times[1]:.3f} | "
                  f"{times[2]:.3f} | {times[1] + times[2]:.3f} | {diff:.1e} |", flush=True)
        del P, grads
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
