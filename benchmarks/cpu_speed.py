"""CPU separation time of every BSMamba2 variant next to msst's BS-RoFormer 256x6 (issue 13).

    python benchmarks/cpu_speed.py [--threads 2] [--seconds 8] [--repeats 5]
        [--checkpoint CKPT --config YAML] [--guard-config YAML --guard-checkpoint CKPT
        --guard-data DIR] [--variants ...] [--profile]

One 8 s stereo chunk at 44.1 kHz (801 frames), float32 in and out, under
`torch.inference_mode()`. The models run round-robin (A B C ... A B C ...) after one
warm-up each, so drifts in machine speed hit all of them; the table gives medians.
BSMamba2 is the paper config (random weights, or --config/--checkpoint); its variants
(`bsmamba2_plugin.inference.cpu_variants`): fp32 (reference backend), int8 (dynamic
quantisation of the Linears), int8-compiled (int8 + TorchInductor-compiled blocks; its
first call compiles, "first call s"), bf16 (CPU autocast), bf16-compiled (the compiled
blocks with bfloat16 projections), onnx-fp32 and onnx-int8 (onnxruntime).
BS-RoFormer 256x6 is msst 0.1.0's BSRoformer with the official baseline widths
(36,847,516 parameters), fp32.

Quality columns:
- "err/peak": max |variant - fp32| / max |fp32| on the timed chunk (paper config);
- "guard dB": uSDR(variant) - uSDR(fp32), mean over rendered tracks, with a trained model:
  --guard-config/--guard-checkpoint/--guard-data (e.g. the demo's model and valid set);
  without them the script renders 3 songs at 8 kHz and trains a tiny model for 40 steps
  (the guard of tests/test_cpu_variants.py). Goal: |guard dB| <= 0.1 (int8, bf16) and
  err/peak <= 1e-4 (onnx-fp32).

Time only on a quiet machine: a loaded 2-core machine reads several times slower, and
unevenly across models.

"faults/run" counts the minor page faults of one timed run (median): memory that glibc's
malloc handed back to the kernel and takes again, zero-filled page by page (glibc maps
blocks above its mmap threshold, at most 32 MB by default, afresh and unmaps them on
free). With glibc's defaults about half of BS-RoFormer's time goes there (2026-11-30: 7.6 M
faults per 8 s chunk). The same run with the allocator keeping its memory, `--malloc keep`
(`cpu_variants.keep_freed_memory`, what `bsmamba2 separate` does by default) or the
environment variables

    MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=8000000000 python cpu_speed.py

shows it without that cost (the header says which); compare the two tables before quoting
a speed ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bsmamba2_plugin.evaluation.variant_quality import quality_guard
from bsmamba2_plugin.inference.cpu_variants import (VARIANTS, build_cpu_variant, cpu_features,
                                                    keep_freed_memory, pick_cpu_variant)
from bsmamba2_plugin.inference.song_files import load_bsmamba2
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.model import BSMamba2
from cpu_vs_bs_roformer import build_bs_roformer  # the same baseline (run from benchmarks/)

ROFORMER = "BS-RoFormer 256x6 fp32"


def run_once(model: torch.nn.Module, mixture: torch.Tensor
             ) -> tuple[float, torch.Tensor, int]:
    """Seconds, output and minor page faults of one call."""
    with torch.inference_mode():
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        out = model(mixture)
        seconds = time.perf_counter() - start
        return seconds, out, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def _read_track(track: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import soundfile

    mixture, _ = soundfile.read(track / "mixture.wav", dtype="float32", always_2d=True)
    vocals, _ = soundfile.read(track / "vocals.wav", dtype="float32", always_2d=True)
    return torch.from_numpy(mixture.T.copy()), torch.from_numpy(vocals.T.copy())


def guard_model(args: argparse.Namespace, workdir: Path) -> tuple[BSMamba2, list, int]:
    """(trained model, [(mixture, vocals)], sample rate) for the quality guard."""
    if args.guard_config is not None:
        model, _, rate = load_bsmamba2(args.guard_config, args.guard_checkpoint)
        tracks = [_read_track(t) for t in sorted(Path(args.guard_data).iterdir()) if t.is_dir()]
        return model, tracks, rate
    from bsmamba2_plugin.data.render import render_dataset

    rate = 8000
    render_dataset(workdir / "rendered", tracks=2, valid_tracks=1, seconds=2, seed=0,
                   sample_rate=rate, progress=False)
    tracks = [_read_track(t) for split in ("train", "valid")
              for t in sorted((workdir / "rendered" / split).iterdir())]
    torch.manual_seed(0)
    model = BSMamba2(BSMamba2Config(dim=32, depth=1, freqs_per_bands=(4, 8, 8, 13),
                                    stft_n_fft=64, stft_hop_length=16, stft_win_length=64,
                                    d_state=16, expand=2, headdim=16, backend="reference"))
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        mixture, vocals = tracks[int(torch.randint(2, (1,), generator=generator))]
        start = int(torch.randint(mixture.shape[1] - 2000, (1,), generator=generator))
        loss = (model(mixture[None, :, start:start + 2000])[:, 0]
                - vocals[None, :, start:start + 2000]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tracks, rate


def profile(model: torch.nn.Module, mixture: torch.Tensor, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch.inference_mode(), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        model(mixture)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--config", type=Path, help="msst YAML of the timed BSMamba2")
    parser.add_argument("--checkpoint", type=Path, help="its weights (default: random)")
    parser.add_argument("--guard-config", type=Path)
    parser.add_argument("--guard-checkpoint", type=Path)
    parser.add_argument("--guard-data", type=Path, help="folder of track folders with "
                        "mixture.wav and vocals.wav")
    parser.add_argument("--no-roformer", action="store_true")
    parser.add_argument("--malloc", choices=("default", "keep"), default="default",
                        help="keep: glibc keeps freed memory (keep_freed_memory), for every "
                             "model of the run")
    parser.add_argument("--profile", action="store_true",
                        help="print torch.profiler's table for the fp32 model on one chunk")
    args = parser.parse_args()
    kept = args.malloc == "keep" and keep_freed_memory()
    if args.malloc == "keep" and not kept:
        parser.error("--malloc keep: this is not glibc on Linux")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    workdir = Path(tempfile.mkdtemp(prefix="cpu_speed_"))

    if args.config is not None:
        base, _, _ = load_bsmamba2(args.config, args.checkpoint)
    else:
        base = BSMamba2(BSMamba2Config.paper(backend="reference")).eval()
    samples = int(args.seconds * 44100)
    mixture = torch.randn(1, 2, samples, generator=torch.Generator().manual_seed(1)) * 0.1
    if args.profile:
        profile(base, mixture)

    models: dict[str, torch.nn.Module] = {}
    if not args.no_roformer:
        roformer = build_bs_roformer()
        if roformer is not None:
            models[ROFORMER] = roformer.eval()
    setup: dict[str, float] = {}
    exported: Path | None = None  # the onnx variants share one export of the paper model
    for variant in args.variants:
        start = time.perf_counter()
        model = build_cpu_variant(base, variant, workdir=workdir / variant,
                                  threads=args.threads, onnx_file=exported)
        if variant.startswith("onnx") and exported is None:
            exported = workdir / variant / "bsmamba2_fp32.onnx"
        models[f"bsmamba2 {variant}"] = model
        setup[f"bsmamba2 {variant}"] = time.perf_counter() - start

    outputs: dict[str, torch.Tensor] = {}
    first: dict[str, float] = {}
    for name, timed_model in models.items():  # warm-up at full size (and compilation)
        first[name], outputs[name], _ = run_once(timed_model, mixture)
    times: dict[str, list[float]] = {name: [] for name in models}
    faults: dict[str, list[int]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, timed_model in models.items():
            seconds, _, count = run_once(timed_model, mixture)
            times[name].append(seconds)
            faults[name].append(count)

    reference = outputs.get("bsmamba2 fp32")
    guard_rows: dict[str, dict[str, float]] = {}
    guard_note = "not run (no fp32 variant)"
    if reference is not None:
        g_model, g_tracks, g_rate = guard_model(args, workdir)
        guard_note = (f"{len(g_tracks)} tracks, " + ("--guard-* model" if args.guard_config
                      else "tiny model trained 40 steps on 3 rendered 8 kHz songs"))
        for variant in args.variants:
            if variant != "fp32":
                fast = build_cpu_variant(g_model, variant, workdir=workdir / f"guard-{variant}",
                                         threads=args.threads)
                guard_rows[variant] = quality_guard(g_model, fast, g_tracks,
                                                    chunk_samples=g_rate)

    features = cpu_features()
    print(f"\nCPU: {platform.processor() or platform.machine()}; flags: "
          f"{', '.join(k for k, v in features.items() if v)}; torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), {args.threads} threads; "
          f"pick_cpu_variant() -> {pick_cpu_variant(features)}")
    print(f"input: 1 x 2 x {samples} ({args.seconds:g} s), {args.repeats} alternating runs "
          f"after one warm-up each; guard: {guard_note}")
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"allocator: glibc malloc, {malloc or 'no MALLOC_ variables'}; "
          f"{'freed memory kept (--malloc keep)' if kept else 'mallopt not called'}\n")
    base_time = statistics.median(times[ROFORMER]) if ROFORMER in times else None
    print("| model | median s | min s | speed vs BS-RoFormer | err/peak vs fp32 | "
          "guard uSDR fp32 | guard dB | faults/run | setup s | first call s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in models:
        med = statistics.median(times[name])
        ratio = f"{base_time / med:.2f}x" if base_time else "-"
        err = "-"
        if reference is not None and name.startswith("bsmamba2"):
            err = f"{((outputs[name] - reference).abs().max() / reference.abs().max()).item():.1e}"
        row = guard_rows.get(name.removeprefix("bsmamba2 "))
        g_ref = f"{row['usdr_reference']:.2f}" if row else "-"
        g_delta = f"{row['usdr_delta_db']:+.3f}" if row else "-"
        print(f"| {name} | {med:.2f} | {min(times[name]):.2f} | {ratio} | {err} | {g_ref} | "
              f"{g_delta} | {statistics.median(faults[name]) / 1e3:.0f}k | "
              f"{setup.get(name, 0.0):.1f} | {first[name]:.1f} |")


if __name__ == "__main__":
    main()
