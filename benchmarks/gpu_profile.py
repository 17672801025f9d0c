"""Where the GPU time of one BSMamba2 training step (or inference pass) goes
(torch.profiler, CUDA kernels).

    python benchmarks/gpu_profile.py [--batch 5] [--seconds 8] [--plan selective]
        [--unfused] [--inference] [--top 25]

Paper model, kernel backend, bf16 autocast, paper loss, AdamW, the shipped memory plan
(`--plan false` keeps every activation: ~86.5 GiB at batch 5, more than an 80 GB card);
two warm-up steps, then one profiled step. `--inference`: batch 8 (unless given) under
inference mode instead. Prints the kernels sorted by total CUDA time, grouped into classes
(SSD Triton, our conv Triton, GEMM, element-wise/reduction, copy/cat/flip, norm, other).
"""

from __future__ import annotations

import argparse
import collections

import torch

from bsmamba2_plugin import BSMamba2, BSMamba2Config
from bsmamba2_plugin.training.losses import PaperLossConfig, build_loss

CLASSES = (
    ("ssd (mamba_ssm, short_scan, long_scan)", ("_chunk", "_state_passing", "_bmm_chunk",
                                                "ssd", "short_scan", "long_scan")),
    ("split_conv (ours)", ("conv_fwd", "conv_bwd", "copy_cols")),
    ("gated norm", ("_layer_norm", "gated_norm")),
    ("gemm", ("gemm", "sm90_xmma", "cutlass", "nvjet", "ampere_", "sm80_")),
    ("copy/cat/flip", ("copy", "cat", "flip", "transpose", "Cat", "index")),
    ("fft", ("fft", "FFT")),
    ("element-wise/reduce", ("elementwise", "reduce", "Reduce", "vectorized")),
)


def classify(name: str) -> str:
    for label, keys in CLASSES:
        if any(key in name for key in keys):
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, help="default 5 (training), 8 (inference)")
    parser.add_argument("--plan", default="selective", choices=("selective", "false"),
                        help="model.gradient_checkpointing (default: the shipped configs')")
    parser.add_argument("--inference", action="store_true")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--unfused", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    args.batch = args.batch or (8 if args.inference else 5)
    plan = "selective" if args.plan == "selective" else False
    model = BSMamba2(BSMamba2Config.paper(backend="kernel", fused_block=not args.unfused,
                                          gradient_checkpointing=plan)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    loss_fn = build_loss(PaperLossConfig())
    samples = int(args.seconds * 44100)
    mixture = 0.1 * torch.randn(args.batch, 2, samples, device="cuda")
    target = 0.05 * torch.randn(args.batch, 1, 2, samples, device="cuda")

    def step():
        if args.inference:
            model.eval()
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                model(mixture)
            return
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            estimate = model(mixture)
        loss_fn(estimate.float(), target).backward()
        optimizer.step()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = totals[event.name]
            entry[0] += event.device_time_total / 1e3
            entry[1] += 1
    total = sum(t for t, _ in totals.values())
    by_class: dict[str, float] = collections.defaultdict(float)
    for name, (ms, _) in totals.items():
        by_class[classify(name)] += ms
    what = "one inference pass" if args.inference else f"one train step ({args.plan})"
    print(f"\n{what}, batch {args.batch} x {args.seconds:g} s, "
          f"{'unfused' if args.unfused else 'fused'}: {total:.1f} ms of CUDA kernel time")
    print("\n| class | ms | share |\n|---|---|---|")
    for label, ms in sorted(by_class.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {ms:.1f} | {100 * ms / total:.0f} % |")
    print("\n| kernel | ms | launches |\n|---|---|---|")
    for name, (ms, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"| {name[:90]} | {ms:.1f} | {count} |")


if __name__ == "__main__":
    main()
