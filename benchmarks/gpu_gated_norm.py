"""The fused block's gated norm alone: our kernels (`network/gated_norm.py`) against
mamba_ssm's `rmsnorm_fn` (CUDA).

    python benchmarks/gpu_gated_norm.py [--repeats 20] [--batch 5] [--sweep] [--packed]

The fused block's layout at the paper's widths: rows of both directions (2 groups of
1024 columns), bf16 y and z as under autocast (z a column slice of the in_proj output, as
the split gives it), float32 weight; rows = batch x 62 bands x 801 frames of 8 s (the same
count on both axes). Forward alone and backward alone (the output gradient given), medians
of CUDA-event timings after two warm-up calls, the memory traffic each pass must move at
least and the bandwidth that gives, and the largest difference between the two
implementations relative to each tensor's largest value. One table on stdout.
`--packed`: also the inference forward that reads z from the projection P (n, l, 2 x 2320)
(`gated_norm_forward_packed`, the config key `packed_gate`) against copying z out of
P with split_conv's copy kernel and then the plain forward, at the time axis of a batch
of 8 (496 sequences of 801 steps), with the two outputs compared.
"""

from __future__ import annotations

import argparse

import torch

from bsmamba2_plugin.network.gated_norm import gated_norm_backward, gated_norm_forward
from bsmamba2_plugin.network.ssd import load_mamba_triton
from gpu_short_scan import timed  # CUDA-event medians (benchmarks/ on the path)


def packed_table(repeats, gen, w, eps, group) -> None:
    from bsmamba2_plugin.network.split_conv import _copy_cols
    from bsmamba2_plugin.network.gated_norm import gated_norm_forward_packed

    n, length, width = 8 * 62, 801, 2320  # P's columns per direction at the paper widths
    P = torch.randn(n, length, 2 * width, device="cuda", generator=gen).bfloat16()
    y = torch.randn(n * length, 2 * group, device="cuda", generator=gen).bfloat16()
    z = torch.empty(n, length, 2 * group, device="cuda", dtype=torch.bfloat16)

    def copied():
        for d in range(2):
            _copy_cols(P, z, d * width, d * group, group, d == 1)
        return gated_norm_forward(y, z.view(-1, 2 * group), w, eps, group)

    def packed():
        return gated_norm_forward_packed(y, P, w, eps, group, width)

    same = torch.equal(copied(), packed())
    t_copied, t_packed = timed(copied, repeats), timed(packed, repeats)
    print(f"\ninference forward at {n} x {length} rows, z from P: copy + norm "
          f"{t_copied:.3f} ms, packed {t_packed:.3f} ms ({t_copied / t_packed:.2f}x), "
          f"outputs {'equal' if same else 'DIFFERENT'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--sweep", action="store_true",
                        help="also time the backward at other tile shapes, warps and "
                             "programs per SM (module constants of gated_norm)")
    parser.add_argument("--packed", action="store_true",
                        help="also the inference forward reading z from the projection")
    args = parser.parse_args()
    rmsnorm_fn = load_mamba_triton().rmsnorm_fn
    rows, width, group, eps = args.batch * 62 * 801, 2048, 1024, 1e-5
    gen = torch.Generator(device="cuda").manual_seed(0)
    y = torch.randn(rows, width, device="cuda", generator=gen).bfloat16()
    wide = torch.randn(rows, 2 * width + 160, device="cuda", generator=gen).bfloat16()
    z = wide[:, width:2 * width]
    w = 1 + 0.3 * torch.randn(width, device="cuda", generator=gen)
    dout = torch.randn(rows, width, device="cuda", generator=gen).bfloat16()

    def theirs_fwd():
        return rmsnorm_fn(y, w, None, z=z, eps=eps, group_size=group, norm_before_gate=False)

    yt, zt, wt = (t.detach().clone().requires_grad_(True) for t in (y, z, w))
    out_t = rmsnorm_fn(yt, wt, None, z=zt, eps=eps, group_size=group, norm_before_gate=False)

    def theirs_bwd():
        return torch.autograd.grad(out_t, (yt, zt, wt), dout, retain_graph=True)

    def ours_fwd():
        return gated_norm_forward(y, z, w, eps, group)

    def ours_bwd():
        return gated_norm_backward(dout, y, z, w, eps, group)

    diffs = []
    for a, b in zip([theirs_fwd(), *theirs_bwd()], [ours_fwd(), *ours_bwd()]):
        diffs.append(((a.float() - b.float()).abs().max() / a.float().abs().max()).item())
    gb = rows * width * 2 / 1e9  # one bf16 (rows, width) tensor
    moved = {"forward": 3 * gb, "backward": 5 * gb}  # y, z -> out; y, z, dout -> dy, dz
    print(f"{torch.cuda.get_device_name()}, rows {rows} x {width} (2 groups of {group}), "
          f"bf16, medians of {args.repeats}\n")
    print("| pass | mamba_ssm ms | ours ms | speed-up | ours GB/s (least traffic) |")
    print("|---|---|---|---|---|")
    for name, theirs, ours in (("forward", theirs_fwd, ours_fwd),
                               ("backward", theirs_bwd, ours_bwd)):
        t_theirs, t_ours = timed(theirs, args.repeats), timed(ours, args.repeats)
        traffic = moved[name]
        print(f"| {name} | {t_theirs:.3f} | {t_ours:.3f} | {t_theirs / t_ours:.2f}x | "
              f"{traffic / (t_ours / 1e3):.0f} |")
    print(f"\nmax |difference| / max |value| (out, dy, dz, dw): "
          + ", ".join(f"{d:.2e}" for d in diffs))
    if args.packed:
        packed_table(args.repeats, gen, w, eps, group)
    if args.sweep:
        from bsmamba2_plugin.network import gated_norm as module

        print("\n| rows a tile | warps | programs per SM | backward ms | GB/s |")
        print("|---|---|---|---|---|")
        for rows_a_tile in (1, 2, 4, 8):
            for warps in (4, 8, 16):
                for per_sm in (2, 8, 32, 1 << 20):
                    module._tiles = lambda g, backward=False, r=rows_a_tile: {"BM": r, "BG": 1024}
                    module._warps = lambda g, backward=False, n=warps: n
                    module.PROGRAMS_PER_SM = per_sm
                    t = timed(ours_bwd, 10)
                    print(f"| {rows_a_tile} | {warps} | {per_sm} | {t:.3f} | "
                          f"{moved['backward'] / (t / 1e3):.0f} |", flush=True)


if __name__ == "__main__":
    main()
