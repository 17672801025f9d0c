"""The report of `bsmamba2 evaluate`, written from its result rows.

Files in the report folder: `results.csv`, `summary.json`, `summary.md`, and PNG plots:
quality vs chunk length, SLR and uSDR by vocal-activity bucket, onset SDR by the silence
before the onset, and paired per-track differences between two models with bootstrap
95 % intervals. Each is written under a temporary name and renamed when complete.

Headline numbers follow the paper (docs/evaluation.md): uSDR is the mean over tracks, cSDR the
median over tracks of the per-track cSDR (itself the median over 1 s frames). Every
aggregate (median, mean, std, n) stays in `summary.json`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.outputs import write_text_atomic

__all__ = ["MIXTURE", "save_figure", "write_report"]

MIXTURE = "mixture"  # name of the do-nothing baseline
_HEADLINE = ("usdr", "csdr", "slr_db", "ghost_db", "active_usdr", "dropout_rate",
             "silence_f1", "onset_sdr")
# The paper's aggregate over tracks for each headline metric, and what it means.
PAPER_AGGREGATES = {"usdr": "mean", "csdr": "median"}
HEADLINE_DEFINITION = {
    "usdr": "mean over tracks of the per-track uSDR (whole track, channels pooled)",
    "csdr": "median over tracks of the per-track cSDR (the median over its 1 s frames)",
}
# paired_bootstrap_ci is only run with at least this many tracks scored by both models
MIN_PAIRED_TRACKS = 2


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def write_report(rows: list[dict[str, Any]], out: Path, *, order: Sequence[str] | None = None
                 ) -> dict[str, Any]:
    """summary.json, summary.md, results.csv and the plots from result rows."""
    from .metrics import aggregate, paired_bootstrap_ci
    from .silence import SilenceConfig, activity_bucket

    names = list(order) if order else sorted({r["model"] for r in rows})
    chunks = sorted({r["chunk_seconds"] for r in rows})
    summary: dict[str, Any] = {"models": names, "chunk_seconds": chunks,
                               "headline_definition": HEADLINE_DEFINITION, "table": [],
                               "buckets": [], "paired": [], "paired_note": None}
    for name in names:
        for d in chunks:
            sel = [r for r in rows if r["model"] == name and r["chunk_seconds"] == d]
            if not sel:
                continue
            entry = {"model": name, "chunk_seconds": d, "tracks": len(sel)}
            for key in _HEADLINE:
                entry[key] = aggregate([r.get(key, math.nan) for r in sel])
            entry["headline"] = {key: entry[key][how] for key, how in PAPER_AGGREGATES.items()}
            summary["table"].append(entry)
    config = SilenceConfig()
    longest = chunks[-1] if chunks else None
    for name in names:
        sel = [r for r in rows if r["model"] == name and r["chunk_seconds"] == longest]
        for bucket in sorted({activity_bucket(r["activity_ratio"], config) for r in sel}):
            group = [r for r in sel if activity_bucket(r["activity_ratio"], config) == bucket]
            summary["buckets"].append({
                "model": name, "chunk_seconds": longest, "bucket": bucket,
                "usdr": aggregate([r["usdr"] for r in group]),
                "slr_db": aggregate([r["slr_db"] for r in group])})
    summary["onsets"] = _onset_buckets(rows, names, longest, config)
    models = [n for n in names if n != MIXTURE]
    reference = models[1] if len(models) > 1 else (MIXTURE if MIXTURE in names else None)
    if models and reference:
        first = models[0]
        skipped: list[tuple[float, str, int]] = []
        for d in chunks:
            for key in ("usdr", "csdr", "slr_db"):
                a = {r["track"]: r[key] for r in rows if r["model"] == first
                     and r["chunk_seconds"] == d}
                b = {r["track"]: r[key] for r in rows if r["model"] == reference
                     and r["chunk_seconds"] == d}
                common = [t for t in sorted(a) if t in b and np.isfinite(a[t]) and np.isfinite(b[t])]
                if len(common) < MIN_PAIRED_TRACKS:
                    skipped.append((d, key, len(common)))
                    continue
                ci = paired_bootstrap_ci([a[t] for t in common], [b[t] for t in common])
                summary["paired"].append({"a": first, "b": reference, "chunk_seconds": d,
                                          "metric": key, **ci})
        if skipped:
            summary["paired_note"] = _paired_note(first, reference, skipped,
                                                  everything=not summary["paired"])
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float))
    _write_csv(rows, out / "results.csv")
    _write_markdown(summary, out / "summary.md")
    _plot(summary, rows, out)
    return summary


def _onset_buckets(rows: list[dict[str, Any]], names: Sequence[str], chunk: Any,
                   config: Any) -> list[dict[str, Any]]:
    """Onset SDR after silence per gap bucket (the silence before the onset), over the
    tracks that have such onsets, at chunk length `chunk`."""
    from .metrics import aggregate
    from .silence import gap_bucket_labels, gap_key

    out = []
    for name in names:
        sel = [r for r in rows if r["model"] == name and r["chunk_seconds"] == chunk]
        for label in gap_bucket_labels(config):
            key = gap_key(label)
            stat = aggregate([r.get(f"onset_sdr_{key}", math.nan) for r in sel])
            if stat["n"]:
                out.append({"model": name, "chunk_seconds": chunk, "gap": label,
                            "onset_sdr": stat,
                            "onsets": int(sum(r.get(f"n_onsets_{key}", 0) for r in sel))})
    return out


def _paired_note(a: str, b: str, skipped: list[tuple[float, str, int]], *,
                 everything: bool) -> str:
    """Why (some of) the paired comparison is missing, and what is needed."""
    what = "" if everything else " for " + ", ".join(f"{key} at {d:g} s"
                                                      for d, key, _ in skipped)
    found = " or ".join(str(n) for n in sorted({n for *_, n in skipped}))
    return (f"No paired comparison of {a} - {b}{what}: the paired bootstrap needs at least "
            f"{MIN_PAIRED_TRACKS} tracks on which both have a finite value, found {found} "
            f"(cSDR is NaN on a track whose every 1 s frame is silent). Fix: point --data at "
            f"a folder with at least {MIN_PAIRED_TRACKS} tracks (`bsmamba2 make-dataset` "
            f"renders them with --valid-tracks {MIN_PAIRED_TRACKS} or more).")


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    import io

    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def _cell(stat: dict[str, float], which: str = "median") -> str:
    value = stat.get(which, math.nan)
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _write_markdown(summary: dict[str, Any], path: Path) -> None:
    lines = ["# Evaluation summary", "",
             ("Headlines follow the paper: uSDR = mean over tracks of the per-track uSDR; "
              "cSDR = median over tracks of the per-track cSDR, each the median over 1 s "
              "frames."), "",
             ("The other columns are medians over tracks; every aggregate (median, mean, std, "
              "n) is in summary.json. uSDR, cSDR, SLR and ghost level in dB; SLR is the leak "
              "into target-silent regions relative to the mixture there (0 dB = no "
              "suppression, lower is better)."), "",
             ("| model | chunk s | tracks | uSDR (mean) | cSDR (median) | SLR dB | ghost dB | "
              "active uSDR | dropout rate | silence F1 |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary["table"]:
        lines.append(
            f"| {e['model']} | {e['chunk_seconds']:g} | {e['tracks']} | "
            f"{_cell(e['usdr'], 'mean')} | {_cell(e['csdr'], 'median')} | {_cell(e['slr_db'])} | "
            f"{_cell(e['ghost_db'])} | {_cell(e['active_usdr'])} | {_cell(e['dropout_rate'])} | "
            f"{_cell(e['silence_f1'])} |")
    if summary["paired"]:
        lines += ["", "Paired per-track differences (first minus second), mean with bootstrap "
                  "95 % interval:", "", "| a - b | chunk s | metric | mean diff | 95 % CI | n |",
                  "|---|---|---|---|---|---|"]
        for p in summary["paired"]:
            lines.append(f"| {p['a']} - {p['b']} | {p['chunk_seconds']:g} | {p['metric']} | "
                         f"{p['mean_diff']:.2f} | [{p['low']:.2f}, {p['high']:.2f}] | {p['n']} |")
    if summary.get("paired_note"):
        lines += ["", summary["paired_note"]]
    if summary.get("onsets"):
        lines += ["", f"Onsets after silence ({summary['onsets'][0]['chunk_seconds']:g} s "
                  "chunks): uSDR over [onset - 0.5 s, onset + 0.5 s), by the length of the "
                  "silent region before the onset; median over the tracks with such onsets "
                  "(mean in brackets):", "", "| model | silence before | tracks | onsets | "
                  "onset SDR |", "|---|---|---|---|---|"]
        for o in summary["onsets"]:
            lines.append(f"| {o['model']} | {o['gap']} | {o['onset_sdr']['n']} | {o['onsets']} | "
                         f"{_cell(o['onset_sdr'])} ({_cell(o['onset_sdr'], 'mean')}) |")
    write_text_atomic(path, "\n".join(lines) + "\n")


def save_figure(fig: Any, path: Path) -> None:
    """savefig through a temporary file (a full disk leaves no half PNG)."""
    temporary = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(temporary, dpi=120)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


#: metrics where a smaller value is the better result (leak and ghost levels, dropouts)
LOWER_IS_BETTER = frozenset({"slr_db", "ghost_db", "dropout_rate"})


def _plot(summary: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, chunks = summary["models"], summary["chunk_seconds"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "usdr", "uSDR (dB)"), (axes[1], "csdr", "cSDR (dB)")):
        for name in names:
            entries = [e for e in summary["table"] if e["model"] == name]
            ax.plot([e["chunk_seconds"] for e in entries],
                    [e["headline"][key] for e in entries], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(chunks, [f"{c:g}" for c in chunks])
        ax.set_xlabel("chunk length (s), non-overlapping")
        ax.set_ylabel(f"{PAPER_AGGREGATES[key]} {label} over tracks")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Quality vs inference chunk length")
    fig.tight_layout()
    save_figure(fig, out / "quality_vs_chunk.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    from .silence import activity_bucket_labels

    present = {b["bucket"] for b in summary["buckets"]}
    buckets = [b for b in activity_bucket_labels() if b in present]  # in order of activity
    width = 0.8 / max(1, len(names))
    for ax, key, label in ((axes[0], "slr_db", "SLR (dB, lower = less leak)"),
                           (axes[1], "usdr", "uSDR (dB)")):
        for i, name in enumerate(names):
            values = []
            for bucket in buckets:
                match = [b for b in summary["buckets"] if b["model"] == name
                         and b["bucket"] == bucket]
                values.append(match[0][key]["median"] if match else np.nan)
            ax.bar(np.arange(len(buckets)) + i * width, values, width, label=name)
        counts = {b["bucket"]: b[key]["n"] for b in summary["buckets"]
                  if b["model"] == names[-1]}
        ax.set_xticks(np.arange(len(buckets)) + width * (len(names) - 1) / 2,
                      [f"{b}\n{counts.get(b, 0)} tracks" for b in buckets])
        ax.set_xlabel("vocal activity of the track")
        ax.set_ylabel(f"median {label}")
        ax.grid(alpha=0.3, axis="y")
    # one legend under the title: inside an axis it covers bars
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncol=len(names),
               fontsize=8)
    fig.suptitle(f"By vocal-activity bucket ({summary['chunk_seconds'][-1]:g} s chunks)",
                 x=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(fig, out / "by_activity.png")
    plt.close(fig)

    if summary.get("onsets"):
        gaps = list(dict.fromkeys(o["gap"] for o in summary["onsets"]))
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            by_gap = {o["gap"]: o for o in summary["onsets"] if o["model"] == name}
            ax.bar(np.arange(len(gaps)) + i * width,
                   [by_gap[g]["onset_sdr"]["median"] if g in by_gap else np.nan for g in gaps],
                   width, label=name)
        counts = {o["gap"]: o["onset_sdr"]["n"] for o in summary["onsets"]
                  if o["model"] == names[-1]}
        ax.set_xticks(np.arange(len(gaps)) + width * (len(names) - 1) / 2,
                      [f"{g}\n{counts.get(g, 0)} tracks" for g in gaps])
        ax.set_xlabel("silence before the onset")
        ax.set_ylabel("median onset SDR (dB), higher is better")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
        ax.set_title(f"Onsets after silence ({summary['onsets'][0]['chunk_seconds']:g} s "
                     f"chunks)", fontsize=10)
        fig.tight_layout()
        save_figure(fig, out / "onset_after_silence.png")
        plt.close(fig)

    if summary["paired"]:
        metrics = sorted({p["metric"] for p in summary["paired"]})
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            sel = [p for p in summary["paired"] if p["metric"] == metric]
            x = [p["chunk_seconds"] for p in sel]
            mean = np.array([p["mean_diff"] for p in sel])
            low, high = np.array([p["low"] for p in sel]), np.array([p["high"] for p in sel])
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="o-", capsize=4)
            for p in sel:
                tracks = [r for r in rows if r["chunk_seconds"] == p["chunk_seconds"]]
                a = {r["track"]: r[metric] for r in tracks if r["model"] == p["a"]}
                b = {r["track"]: r[metric] for r in tracks if r["model"] == p["b"]}
                diffs = _finite([a[t] - b[t] for t in a if t in b])
                ax.scatter([p["chunk_seconds"]] * len(diffs), diffs, s=8, alpha=0.4,
                           color="gray")
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [f"{c:g}" for c in x])
            ax.set_xlabel("chunk length (s)")
            verdict = "worse" if metric in LOWER_IS_BETTER else "better"
            ax.set_title(f"{metric}: {sel[0]['a']} - {sel[0]['b']}\n(above 0: {sel[0]['a']} "
                         f"{verdict})", fontsize=9)
            ax.grid(alpha=0.3)
        fig.suptitle("Paired per-track differences, mean and bootstrap 95 % CI")
        fig.tight_layout()
        save_figure(fig, out / "paired_differences.png")
        plt.close(fig)
