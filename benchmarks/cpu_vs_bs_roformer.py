"""CPU inference time of the paper BSMamba2 next to msst's BS-RoFormer 256x6, one run.

    python benchmarks/cpu_vs_bs_roformer.py [--threads 2] [--seconds 8] [--repeats 3]

Both models separate the same random stereo chunk (8 s at 44.1 kHz, STFT hop 441,
so 801 frames) in float32 under `torch.inference_mode()`; their runs alternate
(A B A B ...) so that drifts in machine speed hit both; the table gives the median.
BSMamba2 runs on the reference backend (pure PyTorch). Its accuracy is checked
against the same weights in float64 (relative L2 error of the output).

BS-RoFormer 256x6 is the official repository's baseline configuration (dim 256,
depth 6, 8 heads x 48, 36,847,516 parameters), built from `msst` 0.1.0
(`pip install msst==0.1.0 --no-deps rotary-embedding-torch beartype einops librosa`).
Time CPU work only on a quiet machine: a loaded 2-core machine reads several times
slower.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def build_bs_roformer() -> torch.nn.Module | None:
    try:
        from msst.models.bs_roformer import BSRoformer
    except ImportError as error:
        print(f"BS-RoFormer: msst is not importable ({error}); it is left out.")
        return None
    return BSRoformer(dim=256, depth=6, stereo=True, num_stems=1, time_transformer_depth=1,
                      freq_transformer_depth=1, dim_head=48, heads=8, stft_hop_length=441,
                      mask_estimator_depth=2, flash_attn=True)


def time_once(model: torch.nn.Module, mixture: torch.Tensor) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        model(mixture)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from bsmamba2_plugin import BSMamba2, BSMamba2Config

    models = {"BSMamba2 paper (reference backend)":
              BSMamba2(BSMamba2Config.paper(backend="reference")).eval()}
    roformer = build_bs_roformer()
    if roformer is not None:
        models["msst BS-RoFormer 256x6 (dim_head 48)"] = roformer.eval()

    samples = int(args.seconds * 44100)
    mixture = torch.randn(1, 2, samples, generator=torch.Generator().manual_seed(1)) * 0.1
    for model in models.values():  # warm-up at full size: first runs pay for allocations
        time_once(model, mixture)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(time_once(model, mixture))

    accuracy = "not measured"
    if not args.skip_accuracy:
        bsm = models["BSMamba2 paper (reference backend)"]
        with torch.inference_mode():
            fast = bsm(mixture)
        exact = BSMamba2(bsm.config).double().eval()
        exact.load_state_dict(bsm.state_dict())
        with torch.inference_mode():
            truth = exact(mixture.double())
        error = (fast.double() - truth).norm() / truth.norm()
        accuracy = f"{error.item():.1e}"

    print(f"\nCPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads; input: 1 x 2 x {samples} ({args.seconds:g} s), float32, "
          f"{args.repeats} alternating runs")
    print(f"| model | parameters | median s | min s | real-time factor |")
    print(f"|---|---|---|---|---|")
    for name, model in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        med = statistics.median(times[name])
        print(f"| {name} | {n_params:,} | {med:.2f} | {min(times[name]):.2f} | "
              f"{med / args.seconds:.2f} |")
    print(f"\nBSMamba2 float32 output vs the same weights in float64: relative L2 error "
          f"{accuracy}")


if __name__ == "__main__":
    main()
