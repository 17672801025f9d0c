"""`bsmamba2 training-summary`: what each msst training run cost and how its loss went.

Reads, from each msst results folder, the step timing the bridge appends to
`train_timing.jsonl` (every model type; see `msst_integration.training_clock`) and the
per-step training losses msst keeps in `last_<type>.ckpt` (`all_losses`, loaded
weights-only), and writes a Markdown table (steps, audio seen, step time, first step,
seconds of audio per second, final loss), a JSON file and a PNG of the loss curves.
Used by the GPU comparison recipe and the DDP benchmark.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.outputs import write_text_atomic
from ..errors import UserFileNotFoundError, UserValueError
from .report import save_figure

__all__ = ["loss_curve", "summarise_run", "write_training_summary"]


def _checkpoint(folder: Path) -> Path:
    found = sorted(p for p in folder.glob("last_*.ckpt") if not p.stem.endswith("_ema"))
    if not found:
        raise UserFileNotFoundError(f"{folder}: no last_<model_type>.ckpt (msst writes it after "
                                    f"each epoch). Fix: point at an msst --results_path folder "
                                    f"of a run that finished at least one epoch.")
    return found[0]


def loss_curve(folder: str | Path) -> list[float]:
    """Every training step's loss, in order, from `last_<type>.ckpt`'s `all_losses`."""
    import torch

    path = _checkpoint(Path(folder))
    saved = torch.load(path, map_location="cpu", weights_only=True)
    history = saved.get("all_losses") if isinstance(saved, Mapping) else None
    if not isinstance(history, Mapping):
        raise UserValueError(f"{path}: no all_losses in the checkpoint (msst's training history).")
    epochs = sorted(history, key=lambda key: int(str(key).rsplit("_", 1)[-1]))
    return [float(value) for key in epochs for value in history[key]]


def _timing(folder: Path) -> list[dict[str, Any]]:
    path = folder / "train_timing.jsonl"
    if not path.is_file():
        raise UserFileNotFoundError(f"{path}: not found; the bridge writes it when msst trains "
                                    f"with bsmamba2-plugin installed. Fix: train with the plugin "
                                    f"installed (it times every model type).")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise_run(folder: str | Path, *, label: str | None = None,
                  loss_scale: float = 1.0) -> dict[str, Any]:
    """One run's figures (see the module docstring); losses multiplied by `loss_scale`."""
    folder = Path(folder)
    epochs = _timing(folder)
    losses = [loss_scale * value for value in loss_curve(folder)]
    medians = [e["median_step_ms"] for e in epochs if e.get("median_step_ms")]
    rates = [e["audio_seconds_per_second"] for e in epochs if e.get("audio_seconds_per_second")]
    last = epochs[-1]
    tail = [v for v in losses[-20:] if math.isfinite(v)]
    return {
        "label": label or last["model_type"], "folder": str(folder),
        "model_type": last["model_type"], "ranks": last["ranks"],
        "batch_per_rank": last["batch_per_rank"], "epochs": len(epochs),
        "steps": last["steps_total"], "audio_seconds_seen": last.get("audio_seconds_total"),
        "training_seconds": last["spent_seconds"],
        "counted_seconds": last.get("budget_spent_seconds"),
        "first_step_seconds": epochs[0].get("first_step_seconds"),
        "median_step_ms": statistics.median(medians) if medians else None,
        "audio_seconds_per_second": statistics.median(rates) if rates else None,
        "budget_seconds": last.get("budget_seconds"),
        "budget_reached": any(e.get("budget_reached") for e in epochs),
        "loss_first_20": statistics.mean(losses[:20]) if losses else None,
        "loss_last_20": statistics.mean(tail) if tail else None,
        "nonfinite_losses": sum(not math.isfinite(v) for v in losses),
        "loss_scale": loss_scale, "losses": losses,
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_training_summary(folders: Sequence[str | Path], out: str | Path, *,
                           labels: Sequence[str] | None = None,
                           loss_scales: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Write `out` (Markdown), `out` with .json, and `<out stem>_loss.png`; return the data."""
    out = Path(out)
    labels = list(labels or [])
    if labels and len(labels) != len(folders):
        raise UserValueError(f"--labels: {len(labels)} labels for {len(folders)} folders; give "
                             f"one per folder or none.")
    runs = []
    for i, folder in enumerate(folders):
        label = labels[i] if labels else None
        key = label or Path(folder).name
        scale = float((loss_scales or {}).get(key, 1.0))
        runs.append(summarise_run(folder, label=label, loss_scale=scale))
    lines = ["| run | model type | GPUs x batch | steps | audio seen (s) | training s | counted s | "
             "first step s | median step ms | s-audio/s | loss, first 20 | loss, last 20 | "
             "non-finite |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        scaled = "" if r["loss_scale"] == 1.0 else f" (x{r['loss_scale']:g})"
        lines.append(
            f"| {r['label']} | {r['model_type']} | {r['ranks']} x {r['batch_per_rank']} | "
            f"{r['steps']} | {_fmt(r['audio_seconds_seen'], 0)} | "
            f"{_fmt(r['training_seconds'], 0)} | {_fmt(r['counted_seconds'], 0)} | "
            f"{_fmt(r['first_step_seconds'])} | "
            f"{_fmt(r['median_step_ms'])} | {_fmt(r['audio_seconds_per_second'])} | "
            f"{_fmt(r['loss_first_20'], 4)}{scaled} | {_fmt(r['loss_last_20'], 4)}{scaled} | "
            f"{r['nonfinite_losses']} |")
    notes = ["", "Steps are training steps (batches) of one rank; audio seen counts every rank's "
             "batches; training s is step time inside epochs (validation excluded); counted s "
             "leaves out the first step, which includes kernel autotuning or compilation (what "
             "training.time_budget_seconds counts). Losses are each model's training "
             "loss as msst logged it" + (", multiplied where marked (x k) to the paper loss's "
                                         "scale." if any(r["loss_scale"] != 1.0 for r in runs)
                                         else ".")]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(lines + notes) + "\n")
    data = {"runs": runs}
    write_text_atomic(out.with_suffix(".json"), json.dumps(data, indent=1) + "\n")
    _plot(runs, out.with_name(f"{out.stem}_loss.png"))
    return data


def _plot(runs: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        losses = r["losses"]
        window = max(1, min(20, len(losses) // 10))
        smooth = [statistics.mean(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        line, = ax.plot(losses, alpha=0.25)
        ax.plot(smooth, color=line.get_color(),
                label=f"{r['label']} ({r['ranks']} x {r['batch_per_rank']}, mean of {window})")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss" + (" (scaled, see table)"
                                     if any(r["loss_scale"] != 1.0 for r in runs) else ""))
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
