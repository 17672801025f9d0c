"""Kill msst-train mid-run with SIGKILL, resume it, and compare with an uninterrupted run.

Usage (CPU, a few minutes; needs msst and matplotlib):

    python benchmarks/kill_resume.py --out benchmarks/results/kill_resume

Both runs use configs/config_tiny_bsmamba2.yaml with more epochs, the same seed and a
generated tiny dataset. The second run is SIGKILLed while it trains the epoch after the
first `last_bsmamba2.ckpt` was written, then restarted with `--start_check_point
<results>/last_bsmamba2.ckpt`. The per-step training losses of both (msst keeps them in the
checkpoint's `all_losses`) are written to losses.json and plotted to kill_resume.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "config_tiny_bsmamba2.yaml"
BIN = Path(sys.executable).parent


def write_config(path: Path, *, epochs: int, steps: int) -> Path:
    config = yaml.safe_load(TINY.read_text())
    config["training"].update(num_epochs=epochs, num_steps=steps)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_command(config: Path, results: Path, *extra: str) -> list[str]:
    return [str(BIN / "msst-train"), "--model_type", "bsmamba2", "--config_path", str(config),
            "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
            "--results_path", str(results), "--num_workers", "0", "--seed", "7", *extra]


def losses_of(checkpoint: Path) -> list[list[float]]:
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    history = saved["all_losses"]
    return [list(history[f"epoch_{e}"]) for e in range(len(history))]


def saved_epoch(checkpoint: Path) -> int:
    import torch

    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, OSError):
        return -1


def kill_and_resume(work: Path, config: Path, results: Path, *, kill_after_epoch: int,
                    steps_per_epoch: int, delay_s: float) -> dict:
    """Start training, SIGKILL it `delay_s` after the first step of epoch
    `kill_after_epoch + 1` (mid-epoch), note the files it left, resume. Returns what
    happened."""
    last = results / "last_bsmamba2.ckpt"
    with open(work / "killed_run.log", "w") as log:
        process = subprocess.Popen(train_command(config, results), cwd=work, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 900
        marker = f"Train epoch: {kill_after_epoch + 1} "
        while True:  # until one step of the next epoch is done (tqdm prints "1/<steps>")
            text = (work / "killed_run.log").read_text(errors="replace")
            if marker in text and f" 1/{steps_per_epoch} " in text.split(marker, 1)[1]:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"training ended before the kill point; see {log.name}")
            time.sleep(0.1)
        time.sleep(delay_s)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    left = sorted(p.name for p in results.iterdir())
    temporaries = [name for name in left if ".tmp" in name]
    epoch_at_kill = saved_epoch(last)
    resumed = subprocess.run(train_command(config, results, "--start_check_point", str(last)),
                             cwd=work, capture_output=True, text=True, timeout=1800,
                             check=False)
    if resumed.returncode != 0:
        raise RuntimeError(resumed.stdout[-3000:] + resumed.stderr[-3000:])
    return {"killed_after_saved_epoch": epoch_at_kill, "files_after_kill": left,
            "temporaries_after_kill": temporaries,
            "resume_log": [line for line in (resumed.stdout + resumed.stderr).splitlines()
                           if "resuming" in line]}


def plot(path: Path, uninterrupted: list[list[float]], resumed: list[list[float]],
         killed_epoch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flat_a = [x for epoch in uninterrupted for x in epoch]
    flat_b = [x for epoch in resumed for x in epoch]
    steps_per_epoch = len(uninterrupted[0])
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.plot(flat_a, "o-", label="uninterrupted", linewidth=3, alpha=0.5)
    axis.plot(flat_b, "x--", label="killed (SIGKILL) and resumed", color="black")
    axis.axvline((killed_epoch + 1) * steps_per_epoch - 0.5, color="red", linestyle=":",
                 label="resume point (epoch after the last saved one)")
    axis.set_xlabel("training step")
    axis.set_ylabel("training loss (paper loss)")
    axis.set_title("msst-train --model_type bsmamba2, tiny config, seed 7")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/kill_resume")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--kill-after-epoch", type=int, default=1)
    parser.add_argument("--delay-s", type=float, default=0.5)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import tempfile

    from conftest_data import write_tiny_dataset

    work = args.work or Path(tempfile.mkdtemp(prefix="kill_resume_"))
    write_tiny_dataset(work / "data", train_tracks=2, valid_tracks=1, seconds=2.0)
    config = write_config(work / "config.yaml", epochs=args.epochs, steps=args.steps)
    subprocess.run(train_command(config, work / "uninterrupted"), cwd=work, check=True,
                   capture_output=True)
    report = kill_and_resume(work, config, work / "killed", kill_after_epoch=args.kill_after_epoch,
                             steps_per_epoch=args.steps, delay_s=args.delay_s)
    a = losses_of(work / "uninterrupted" / "last_bsmamba2.ckpt")
    b = losses_of(work / "killed" / "last_bsmamba2.ckpt")
    flat_a = [x for e in a for x in e]
    flat_b = [x for e in b for x in e]
    report.update(uninterrupted=a, killed_and_resumed=b,
                  max_abs_difference=max(abs(x - y) for x, y in zip(flat_a, flat_b)),
                  same_length=len(flat_a) == len(flat_b))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "losses.json").write_text(json.dumps(report, indent=1))
    plot(args.out / "kill_resume.png", a, b, report["killed_after_saved_epoch"])
    print(json.dumps({k: report[k] for k in ("killed_after_saved_epoch", "same_length",
                                              "max_abs_difference", "temporaries_after_kill")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
