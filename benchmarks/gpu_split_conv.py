"""Tile sizes of the split_conv kernels on the GPU (bimamba2_fused's conv, GPU_NOTES change 6).

    python benchmarks/gpu_split_conv.py [--batch 5] [--only 32x128x4 64x64x4x8] [--before]

For the paper widths (d_inner 1024, d_state 128, 16 heads, taps 4) and both axes of a
batch of 8 s chunks in bf16 (time: batch x 62 sequences of 801 steps; bands: batch x 801
sequences of 62), times `conv_fwd`, `conv_bwd_pre` (with the partial-sum reduction that
follows it) and `conv_bwd_x` for rows x channels per program (BL x BC) and warps, with
CUDA events (median of 20 after a warm-up), and checks every setting's outputs against
the first setting (BL 32, BC 128, 4 warps; the forward's, while the backward's two kernels
run 64 x 64). Prints one table per axis. `--only` times just the settings named
(BLxBCxWARPS, or BLxBCxWARPSxSB with conv_bwd_pre's rows per step, SB, a divisor of BL;
default the package's), e.g. the ones in use, to compare kernel versions run for run.
`--before` also times, at each setting, conv_bwd_pre as it was before it walked its rows
in steps (issue 25: the whole block at once, 161-167 registers for sm_90; kept here, not
in the package) and checks its outputs the same way: old and new on one card in one run.
"""

from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl

from bsmamba2_plugin.network import split_conv_triton as k
from bsmamba2_plugin.network.split_conv import _SB_PRE
from gpu_short_scan import timed  # CUDA-event medians (run from the repository root)

DI, NS, H, TAPS = 1024, 128, 16, 4
CH = DI + 2 * NS
WIDTH = 2 * DI + 2 * NS + H  # one direction's packed projection
XOFF = DI


@triton.jit
def conv_bwd_pre_before(P, W, Bias, Gx, Gb, Gc, Dpre, Partial, length, n_l_blocks,
                        stride_pn, stride_pl, E: tl.constexpr, XOFF: tl.constexpr,
                        CH: tl.constexpr, DI: tl.constexpr, NS: tl.constexpr,
                        TAPS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    # the package's conv_bwd_pre before issue 25: the whole (BL, BC) block at once, its tap
    # tiles loaded again for the dW sums
    pid, seq, row0, i, s, c, d = k._block(length, n_l_blocks, BL, BC)
    cmask = c < CH
    valid = s < length
    anchor = k._anchor(row0, length, d)
    rows = P + seq * stride_pn + anchor.to(tl.int64) * stride_pl + d * E + XOFF
    acc = k._conv_pre(rows, W, Bias, anchor, i, s, c, d, cmask, length, stride_pl, CH,
                      TAPS, BL, BC)
    sig = tl.sigmoid(acc)
    mask2 = valid[:, None] & cmask[None, :]
    g = k._load3(Gx, Gb, Gc, seq * length + s[:, None], c[None, :], d, mask2, DI, NS)
    dpre = g * sig * (1.0 + acc * (1.0 - sig))
    dpre = tl.where(mask2, dpre, 0.0)
    tl.store(Dpre + ((seq * length + s[:, None]) * 2 + d) * CH + c[None, :], dpre,
             mask=mask2)
    part = Partial + (pid.to(tl.int64) * 2 + d) * (CH * (TAPS + 1)) + c * (TAPS + 1)
    for tap in tl.static_range(TAPS):
        xv = k._tap_tile(rows, anchor, i, d, tap, c, cmask, valid, length, stride_pl, TAPS)
        tl.store(part + tap, tl.sum(dpre * xv, axis=0), mask=cmask)
    tl.store(part + TAPS, tl.sum(dpre, axis=0), mask=cmask)


def run(n: int, length: int, setting: tuple[int, int, int, int], P, w, b, grads,
        before: bool = False):
    """Times (conv_fwd, conv_bwd_pre + sum, conv_bwd_x[, the old conv_bwd_pre + sum]) and
    outputs (x, B, C, dW and dbias sums, dP[, the same two after the old kernel])."""
    bl, bc, warps, sb = setting
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

    def launch_pre(kernel, **extra):
        kernel[grid](P, w, b, g_x, g_B, g_C, dpre, partial, length, blocks,
                     P.stride(0), P.stride(1), E=WIDTH, XOFF=XOFF, DI=DI, NS=NS,
                     **common, **extra)
        return partial.sum(0)

    def pre():
        return launch_pre(k.conv_bwd_pre, SB=sb)

    def pre_before():
        return launch_pre(conv_bwd_pre_before)

    def bwd_x():
        k.conv_bwd_x[grid](w, dpre, dP, length, blocks, dP.stride(0), dP.stride(1),
                           E=WIDTH, XOFF=XOFF, **common)

    times = [timed(fwd, 20), timed(pre, 20), timed(bwd_x, 20)]
    fwd()
    sums = pre()
    bwd_x()
    outs = [x.float(), B.float(), C.float(), sums, dP.float()]
    if before:
        times.append(timed(pre_before, 20))
        sums = pre_before()
        bwd_x()
        outs += [sums, dP.float()]
    return times, outs


def _diff(outs, refs) -> float:
    return max(((o - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
               for o, r in zip(outs, refs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--only", nargs="+", metavar="BLxBCxWARPS[xSB]",
                        help="time only these settings (default: the whole sweep)")
    parser.add_argument("--before", action="store_true",
                        help="also time conv_bwd_pre as it was before issue 25")
    args = parser.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    settings = [(bl, bc, warps, min(_SB_PRE, bl)) for bl in (32, 64, 128)
                for bc in (64, 128, 256) for warps in (4, 8) if bl * bc <= 16384]
    if args.only:
        settings = [tuple(int(v) for v in s.split("x")) for s in args.only]
        settings = [s if len(s) == 4 else (*s, min(_SB_PRE, s[0])) for s in settings]
    for bl, _, _, sb in settings:
        if bl % sb:
            parser.error(f"conv_bwd_pre's rows per step ({sb}) must divide BL ({bl})")
    base_setting = (32, 128, 4, min(_SB_PRE, 32))
    for axis, n, length in (("time", args.batch * 62, 801), ("bands", args.batch * 801, 62)):
        P = torch.randn(n, length, 2 * WIDTH, device="cuda", generator=gen).to(torch.bfloat16)
        w = torch.randn(2, CH, TAPS, device="cuda", generator=gen) * 0.3
        b = torch.randn(2, CH, device="cuda", generator=gen) * 0.1
        grads = [torch.randn(n, length, 2 * width, device="cuda", generator=gen)
                 .to(torch.bfloat16) for width in (DI, NS, NS)]
        base_times, base = run(n, length, base_setting, P, w, b, grads)
        print(f"\n{axis} axis: {n} sequences x {length} steps, bf16; ms, median of 20\n")
        before = " before: conv_bwd_pre + sum | before: max rel. diff |" if args.before else ""
        print("| BL x BC, warps, SB | conv_fwd | conv_bwd_pre + sum | conv_bwd_x | backward | "
              f"max rel. diff |{before}")
        print("|---|---|---|---|---|---|" + "---|---|" * args.before)
        for setting in settings:
            times, outs = ((base_times, base) if setting == base_setting and not args.before
                           else run(n, length, setting, P, w, b, grads, args.before))
            mark = " (forward's setting)" if setting == base_setting else ""
            row = (f"| {setting[0]} x {setting[1]}, {setting[2]}, {setting[3]}{mark} | "
                   f"{times[0]:.3f} | {times[1]:.3f} | {times[2]:.3f} | "
                   f"{times[1] + times[2]:.3f} | {_diff(outs[:5], base):.1e} |")
            if args.before:
                row += f" {times[3]:.3f} | {_diff(outs[5:], base[3:]):.1e} |"
            print(row, flush=True)
        del P, grads
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
