"""Training through the stock msst commands on GPUs: step time, DDP scaling, loss curves.

    python benchmarks/gpu_train_runs.py --work /tmp/runs --out OUT [--steps 200]

Needs 2 CUDA GPUs (`nvidia-h200-x2`), msst and bsmamba2-plugin installed (on the lent
machine: `bash benchmarks/gpu_session.sh train-runs`). Renders a small dataset, then runs
the paper BSMamba2 config (batch per GPU as named, gradient accumulation 1, EMA 0.99, seed 7)
through `msst-train` and `msst-train-ddp`:

| run | command | GPUs x batch | what it answers |
|---|---|---|---|
| 1gpu_b5 | msst-train | 1 x 5 | the 200-step run of issue 11 and the 1-GPU throughput |
| ref_b1, kernel_b1 | msst-train | 1 x 1 | first steps: reference backend vs kernel path |
| 1gpu_b4 | msst-train | 1 x 4 | the loss curve at global batch 4 |
| ddp_b5 | msst-train-ddp | 2 x 5 | throughput scaling 1 -> 2 GPUs at the paper's batch |
| ddp_b2 | msst-train-ddp | 2 x 2 | the loss curve at global batch 4, against 1gpu_b4 |

The two single-GPU lanes (GPU 0: 1gpu_b5, 1gpu_b4; GPU 1: ref_b1, kernel_b1) run at the
same time, then the DDP runs; `--only NAME...` picks runs (results of others already in
--work join the report). Timing comes from the bridge's `train_timing.jsonl` (median
step, first step with its autotuning), losses from msst's `all_losses` in `last_*.ckpt`.
Prints one table and writes `train_runs.md`, `train_runs.json` and loss-curve PNGs to
--out (and the run logs, packed in `train_runs_logs.tar.gz`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "configs" / "config_musdb18_bsmamba2.yaml"
BIN = Path(sys.executable).parent


def _command(name: str) -> str:
    local = BIN / name
    return str(local) if local.exists() else name


def write_config(path: Path, *, batch: int, steps: int, backend: str = "auto") -> Path:
    config = yaml.safe_load(PAPER.read_text())
    config["model"]["backend"] = backend
    config["training"].update(batch_size=batch, num_steps=steps, num_epochs=1,
                              gradient_accumulation_steps=1, ema_momentum=0.99)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(name: str, work: Path, *, gpus: list[int], batch: int, steps: int,
        backend: str = "auto", deadline: float) -> dict:
    """One msst training run of `steps` steps on each of `gpus`."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    # msst-train-ddp runs num_steps steps on every rank (its dataset is num_steps x batch x
    # ranks long and the DistributedSampler splits it)
    config = write_config(folder / "config.yaml", batch=batch, steps=steps, backend=backend)
    launcher = "msst-train-ddp" if len(gpus) > 1 else "msst-train"
    command = [_command(launcher), "--model_type", "bsmamba2", "--config_path", str(config),
               "--data_path", str(work / "data" / "train"), "--valid_path",
               str(work / "data" / "valid"), "--dataset_type", "1", "--results_path",
               str(folder / "results"), "--num_workers", "8", "--seed", "7",
               "--device_ids", *map(str, gpus)]
    started = time.monotonic()
    with (folder / "log.txt").open("w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        # its own process group: on a timeout the DDP ranks msst spawned go too (left
        # running, they would hold the GPUs' memory for whatever runs next)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=max(10.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = "timeout"
    wall = time.monotonic() - started
    print(f"{name}: exit {code} after {wall:.0f} s ({launcher}, GPUs {gpus}, batch {batch})",
          flush=True)
    return {"name": name, "exit": code, "wall_seconds": round(wall, 1), "command": command,
            "folder": str(folder / "results")}


def lane(specs: list[dict], work: Path, deadline: float) -> list[dict]:
    return [run(work=work, deadline=deadline, **spec) for spec in specs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200, help="steps per run (per rank)")
    parser.add_argument("--first-steps", type=int, default=20,
                        help="steps of the reference-vs-kernel runs")
    parser.add_argument("--seconds", type=float, default=560.0, help="overall time limit")
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS),
                        help="runs to make (default: all); results of other runs already in "
                             "--work (an earlier call on the same machine) join the report")
    args = parser.parse_args()
    import torch

    needed = 1 + max(max(RUNS[name](args)["gpus"]) for name in args.only)
    if torch.cuda.device_count() < needed:
        raise SystemExit(f"{', '.join(args.only)} need {needed} CUDA GPUs; found "
                         f"{torch.cuda.device_count()}")
    for key, value in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
                       ("NVSHMEM_DISABLE_NVLS", "1")):
        os.environ.setdefault(key, value)
    deadline = time.monotonic() + args.seconds
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from bsmamba2_plugin.data.render import render_dataset

    started = time.monotonic()
    if not (args.work / "data" / "valid").is_dir():
        render_dataset(args.work / "data", tracks=40, valid_tracks=1, seconds=20.0, seed=3,
                       workers=16, progress=False, overwrite=True)
        print(f"data rendered in {time.monotonic() - started:.0f} s", flush=True)
    specs = {name: dict(name=name, **RUNS[name](args)) for name in args.only}
    lanes = [[s for s in specs.values() if s["gpus"] == [gpu]] for gpu in (0, 1)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # the single-GPU runs, one lane per GPU
        futures = [pool.submit(lane, specs_of_lane, args.work, deadline)
                   for specs_of_lane in lanes if specs_of_lane]
        runs = [r for future in futures for r in future.result()]
    runs += [run(work=args.work, deadline=deadline, **spec) for spec in specs.values()
             if len(spec["gpus"]) > 1]
    runs += [{"name": name, "exit": "earlier call", "wall_seconds": None, "command": [],
              "folder": str(args.work / name / "results")}
             for name in RUNS if name not in specs
             and (args.work / name / "results" / "train_timing.jsonl").is_file()]
    report(runs, args.work, args.out)
    return 0


# name -> run settings (GPU 0 lane, GPU 1 lane, then the DDP runs); steps are per rank
RUNS = {
    "1gpu_b5": lambda a: dict(gpus=[0], batch=5, steps=a.steps),
    "ref_b1": lambda a: dict(gpus=[1], batch=1, steps=a.first_steps, backend="reference"),
    "kernel_b1": lambda a: dict(gpus=[1], batch=1, steps=a.first_steps),
    "1gpu_b4": lambda a: dict(gpus=[0], batch=4, steps=a.steps),
    "ddp_b5": lambda a: dict(gpus=[0, 1], batch=5, steps=a.steps // 2),
    "ddp_b2": lambda a: dict(gpus=[0, 1], batch=2, steps=a.steps),
}


def report(runs: list[dict], work: Path, out: Path) -> None:
    from bsmamba2_plugin.evaluation.training_summary import summarise_run, \
        write_training_summary

    by_name = {}
    for r in runs:
        try:
            by_name[r["name"]] = {**r, **summarise_run(r["folder"], label=r["name"])}
        except (FileNotFoundError, ValueError, OSError, RuntimeError) as error:
            by_name[r["name"]] = {**r, "error": str(error)}
            print(f"{r['name']}: no results ({error})", flush=True)
    lines = ["| run | exit | GPUs x batch | steps | first step s | median step ms | "
             "s-audio/s | loss, first 20 | loss, last 20 | non-finite |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in by_name.items():
        if "error" in r:
            lines.append(f"| {name} | {r['exit']} | - | - | - | - | - | - | - | - |")
            continue
        lines.append(f"| {name} | {r['exit']} | {r['ranks']} x {r['batch_per_rank']} | "
                     f"{r['steps']} | {r['first_step_seconds']} | {r['median_step_ms']:.1f} | "
                     f"{r['audio_seconds_per_second']} | {r['loss_first_20']:.4f} | "
                     f"{r['loss_last_20']:.4f} | {r['nonfinite_losses']} |")
    derived = {}
    one, two = by_name.get("1gpu_b5", {}), by_name.get("ddp_b5", {})
    if one.get("audio_seconds_per_second") and two.get("audio_seconds_per_second"):
        derived["ddp_scaling"] = round(two["audio_seconds_per_second"]
                                       / one["audio_seconds_per_second"], 3)
    ref, ker = by_name.get("ref_b1", {}), by_name.get("kernel_b1", {})
    if ref.get("losses") and ker.get("losses"):
        pairs = list(zip(ref["losses"], ker["losses"]))
        derived["ref_vs_kernel_max_rel_diff"] = max(abs(a - b) / abs(a) for a, b in pairs)
        derived["ref_vs_kernel_losses"] = pairs
    a, b = by_name.get("1gpu_b4", {}), by_name.get("ddp_b2", {})
    if a.get("losses") and b.get("losses"):
        n = min(len(a["losses"]), len(b["losses"]))
        windows = [(i, min(i + 50, n)) for i in range(0, n, 50)]
        derived["loss_windows_1gpu_b4_vs_ddp_b2"] = [
            (f"{lo + 1}-{hi}", statistics.mean(a["losses"][lo:hi]),
             statistics.mean(b["losses"][lo:hi]),
             statistics.stdev(a["losses"][lo:hi]) if hi - lo > 1 else 0.0)
            for lo, hi in windows]
    lines += ["", f"derived: {json.dumps({k: v for k, v in derived.items() if k != 'ref_vs_kernel_losses'})}"]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_runs.md").write_text(text)
    (out / "train_runs.json").write_text(json.dumps({"runs": by_name, "derived": derived},
                                                    indent=1, default=str) + "\n")
    for title, names in (("loss_1gpu_vs_ddp", ["1gpu_b4", "ddp_b2"]),
                         ("loss_ref_vs_kernel", ["ref_b1", "kernel_b1"]),
                         ("loss_b5", ["1gpu_b5", "ddp_b5"])):
        present = [n for n in names if "error" not in by_name.get(n, {"error": 1})]
        if present:
            write_training_summary([by_name[n]["folder"] for n in present],
                                   work / f"{title}.md", labels=present)
    with tarfile.open(out / "train_runs_logs.tar.gz", "w:gz") as tar:
        for path in sorted(work.glob("*/log.txt")) + sorted(work.glob("*/config.yaml")) + \
                sorted(work.glob("*/results/train_timing.jsonl")) + \
                sorted(work.glob("*/results/ddp_logs/*.log")) + sorted(work.glob("loss_*")):
            tar.add(path, arcname=str(path.relative_to(work)))


if __name__ == "__main__":
    sys.exit(main())
