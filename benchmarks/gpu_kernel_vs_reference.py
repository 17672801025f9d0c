"""GPU check and timing: the kernel backend (mamba_ssm Triton) against the reference
backend (pure PyTorch) on the paper model, same weights.

    python benchmarks/gpu_kernel_vs_reference.py [--seconds 8] [--skip-timing]
        [--set KEY=VALUE ...]

For float32 and for bf16 autocast it prints the relative L2 error
||kernel - reference|| / ||reference|| of the output and of the gradient of a
mean-squared-error loss with respect to all parameters (as one vector; and the worst
single tensor), and the error of each against the same weights run in float64 on the
reference backend. Then it times inference and a training step on both backends.
(MSE, not L1: the gradient of L1 jumps where an output crosses its target, which
would measure that jump rather than the backends.)
Needs CUDA and mamba_ssm (a build without its CUDA extension is enough). The
reference model uses gradient checkpointing (same gradients, less memory). `--set`
changes model config keys of the kernel model (values as in YAML), e.g.
`--set long_scan_backward=bsmamba2` checks our time-axis backward.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def run_once(model, mixture, target, autocast):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = model(mixture)
    loss = (out.to(target.dtype) - target).square().mean()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return out.detach(), grads


def compare(kernel_model, reference_model, truth, mixture, target, autocast):
    out_k, g_k = run_once(kernel_model, mixture, target, autocast)
    out_r, g_r = run_once(reference_model, mixture, target, autocast)
    out_t, g_t = truth
    flat = {name: torch.cat([g.flatten().double() for g in grads.values()])
            for name, grads in (("k", g_k), ("r", g_r), ("t", g_t))}
    worst = max((rel(g_k[n], g_r[n]), n) for n in g_r if g_r[n].norm() > 0)
    return {
        "out": rel(out_k, out_r), "grad": rel(flat["k"], flat["r"]), "worst": worst,
        "out_k_t": rel(out_k, out_t), "out_r_t": rel(out_r, out_t),
        "grad_k_t": rel(flat["k"], flat["t"]), "grad_r_t": rel(flat["r"], flat["t"]),
    }


def timed(fn, repeats=5):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="model config keys of the kernel model")
    args = parser.parse_args()
    import yaml

    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item}: expected KEY=VALUE")
        changes[key] = yaml.safe_load(value)
    if not torch.cuda.is_available():
        print("CUDA is not available; nothing to check.")
        return 1

    from bsmamba2_plugin import BSMamba2, BSMamba2Config
    from bsmamba2_plugin.network.ssd import load_mamba_triton

    ops = load_mamba_triton()
    print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"mamba_ssm {ops.version} ({ops.how})")
    torch.manual_seed(0)
    device = torch.device("cuda")
    kernel_model = BSMamba2(BSMamba2Config.paper(backend="kernel", **changes)).to(device)
    # The reference stores far more activations than the fused kernels: recompute them
    # block by block (identical gradients) so that the paper model fits in 80 GB.
    reference_model = BSMamba2(BSMamba2Config.paper(
        backend="reference", gradient_checkpointing=True)).to(device)
    reference_model.load_state_dict(kernel_model.state_dict())
    samples = int(args.seconds * 44100)
    gen = torch.Generator(device=device).manual_seed(1)
    mixture = 0.1 * torch.randn(1, 2, samples, device=device, generator=gen)
    target = 0.1 * torch.randn(1, 1, 2, samples, device=device, generator=gen)

    exact = BSMamba2(BSMamba2Config.paper(backend="reference", gradient_checkpointing=True))
    exact = exact.to(device).double()
    exact.load_state_dict(kernel_model.state_dict())
    truth = run_once(exact, mixture.double(), target.double(), autocast=False)
    del exact
    torch.cuda.empty_cache()

    print(f"\nkernel vs reference, paper config{''.join(f', {k}: {v}' for k, v in changes.items())}, input 1 x 2 x {samples} ({args.seconds:g} s); "
          f"relative L2 errors; 'truth' = reference backend in float64")
    print("| precision | output k-r | gradient k-r | worst gradient tensor k-r | output k-truth "
          "| output r-truth | gradient k-truth | gradient r-truth | limit (k-r) |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for label, autocast, limit in (("float32", False, 2e-3), ("bf16 autocast", True, 2e-2)):
        e = compare(kernel_model, reference_model, truth, mixture, target, autocast)
        results[label] = max(e["out"], e["grad"]) <= limit
        print(f"| {label} | {e['out']:.2e} | {e['grad']:.2e} | {e['worst'][0]:.2e} "
              f"({e['worst'][1]}) | {e['out_k_t']:.2e} | {e['out_r_t']:.2e} | "
              f"{e['grad_k_t']:.2e} | {e['grad_r_t']:.2e} | {limit:g} |")

    if not args.skip_timing:
        print("\n| backend | inference batch 4, bf16 (ms) | x real time | train step batch 2, "
              "bf16 fwd+bwd (ms) | peak GB |")
        print("|---|---|---|---|---|")
        infer_in = 0.1 * torch.randn(4, 2, samples, device=device, generator=gen)
        train_in = 0.1 * torch.randn(2, 2, samples, device=device, generator=gen)
        train_target = 0.1 * torch.randn(2, 1, 2, samples, device=device, generator=gen)
        for name, model in (("kernel", kernel_model), ("reference", reference_model)):
            def infer(model=model):
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    model(infer_in)

            def train(model=model):
                model.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = model(train_in)
                (out.float() - train_target).square().mean().backward()

            infer_ms = timed(infer)
            torch.cuda.reset_peak_memory_stats()
            train_ms = timed(train, repeats=3)
            peak = torch.cuda.max_memory_allocated() / 1e9
            print(f"| {name} | {infer_ms:.0f} | {4 * args.seconds * 1000 / infer_ms:.0f} | "
                  f"{train_ms:.0f} | {peak:.1f} |")
    print("\nwithin limits: " + ", ".join(f"{k}: {v}" for k, v in results.items()))
    return 0 if all(results.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
