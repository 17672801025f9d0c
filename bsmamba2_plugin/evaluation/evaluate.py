"""`bsmamba2 evaluate`: score separated vocals the way the paper does, and more.

For every model (msst checkpoints of any msst or plugin model type, e.g. bsmamba2 and
bs_roformer) and every chunk length d, each track of a MUSDB18HQ-layout folder is
separated with the paper's protocol (non-overlapping d-second chunks, `inference`) or
overlap-add, and scored against its reference vocals: uSDR, cSDR (museval-exact) and
the silence suite (`silence`), using the renderer's sample-accurate vocal activity
(`activity.json`) when a track has one. A "mixture" pseudo-model (the mixture as the
vocal estimate) is the do-nothing baseline.

Outputs in the report folder: `results.jsonl` (one row per model, chunk length and
track; the run resumes from it), `results.csv`, `summary.json`, `summary.md`, and PNG
plots: quality vs chunk length, SLR and uSDR by vocal-activity bucket, onset SDR by the
silence before the onset, and paired per-track differences between two models with
bootstrap 95 % intervals.

Headline numbers follow the paper (docs/evaluation.md): uSDR is the mean over tracks, cSDR the
median over tracks of the per-track cSDR (itself the median over 1 s frames). Every
aggregate (median, mean, std, n) stays in `summary.json`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MIXTURE", "ModelSpec", "evaluate", "write_report"]

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


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate: an msst config and checkpoint."""

    config: Path
    checkpoint: Path
    name: str | None = None
    model_type: str | None = None


def _read_checkpoint_state(path: Path) -> tuple[Any, dict, dict]:
    """(what the file holds, its state dict, its meta); weights-only."""
    from ..msst_integration.checkpoints import unwrap_state_dict
    from ..msst_integration.safe_load import load_weights_only

    checkpoint = load_weights_only(path)
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
    return checkpoint, unwrap_state_dict(checkpoint)[0], meta


def _autocast_dtype(config: Any, device: str) -> Any:
    """The precision msst trains and separates with on CUDA: autocast when
    `training.use_amp` (msst's default: on), in `training.autocast_dtype` (a plugin key;
    msst's own model types: float16); None (float32) off CUDA or without use_amp."""
    import torch

    from ..msst_integration.common import cfg_get

    if torch.device(device).type != "cuda" or not cfg_get(config.training, "use_amp", True):
        return None
    name = str(cfg_get(config.training, "autocast_dtype", "float16"))
    return torch.bfloat16 if name == "bfloat16" else torch.float16


def _load_model(spec: ModelSpec, device: str):
    """(name, model, msst config, index of the vocals output, what was scored)."""
    from ..msst_integration.registry import msst_model_loader

    try:
        get_model_from_config = msst_model_loader()
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"evaluate builds models from msst configs and needs msst ({error.name} is "
            f"missing): pip install 'bsmamba2-plugin[msst]'.", name=error.name) from error

    from ..msst_integration.config_checks import load_msst_yaml
    from ..msst_integration.run_safety import fit_problem

    load_msst_yaml(spec.config, require_model=False)  # broken YAML: one line, file and line
    stored, state, meta = _read_checkpoint_state(spec.checkpoint)
    model_type = spec.model_type or meta.get("model_type")
    if not model_type:
        raise ValueError(f"{spec.checkpoint}: the checkpoint has no meta.model_type; pass "
                         f"--model-type for it.")
    model, config = get_model_from_config(model_type, str(spec.config))
    problem = fit_problem(model, stored, path=str(spec.checkpoint), model_type=model_type,
                          config_flag="--config", type_flag="--model-type")
    if problem:
        raise ValueError(problem)
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    target = config.training.get("target_instrument") if hasattr(config.training, "get") else None
    instruments = list(config.training.instruments)
    if target:
        if target != "vocals":
            raise ValueError(f"{spec.config}: training.target_instrument is {target!r}; "
                             f"evaluate scores vocals.")
        index = 0
    elif "vocals" in instruments:
        index = instruments.index("vocals")
    else:
        raise ValueError(f"{spec.config}: training.instruments {instruments} has no 'vocals'.")
    name = spec.name or f"{model_type}:{spec.checkpoint.stem}"
    # which file and weights were scored; training-selected files also say when and why
    autocast = _autocast_dtype(config, device)
    source = {"checkpoint": str(spec.checkpoint), "weights": meta.get("weights", "unrecorded"),
              "precision": (f"{str(autocast).replace('torch.', '')} autocast" if autocast
                            else "float32")}
    source.update({k: meta[k] for k in ("epoch", "metric", "metric_value") if k in meta})
    return name, model, config, index, source


#: bumped when a row gains or changes scores, so that a resumed report scores old rows
#: again (2: onset SDR by the length of the silence before the onset)
SCORES_VERSION = 2


def _fingerprint(spec: ModelSpec, overlap: int) -> str:
    """Identifies what a model's scores depend on: checkpoint and config bytes, the
    model type given and the overlap."""
    digest = hashlib.sha256()
    for path in (spec.checkpoint, spec.config):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(f"|{spec.model_type}|overlap={overlap}|scores={SCORES_VERSION}".encode())
    return digest.hexdigest()[:16]


def _load_track(track: Path, from_segments, config) -> dict[str, Any]:
    """Audio and (when the renderer wrote one) the sample-accurate vocal activity."""
    from .audio_io import read_track_file

    mixture, rate = read_track_file(track / "mixture.wav")
    vocals, vocal_rate = read_track_file(track / "vocals.wav")
    if vocal_rate != rate or vocals.shape != mixture.shape:
        raise ValueError(f"{track}: vocals.wav ({vocals.shape}, {vocal_rate} Hz) and "
                         f"mixture.wav ({mixture.shape}, {rate} Hz) do not match.")
    info, activity = None, None
    sidecar = track / "activity.json"
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
        activity = from_segments(info["vocal_segments"], vocals.shape[-1], rate, config)
    return {"track": track.name, "mixture": mixture, "vocals": vocals, "rate": rate,
            "info": info, "activity": activity}


def _score(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray, rate: int,
           activity) -> dict[str, float]:
    from .silence import silence_suite

    return {k: float(v) for k, v in silence_suite(reference, estimate, mixture, rate,
                                                   activity=activity).items()}


def evaluate(models: Sequence[ModelSpec], data: Path, out: Path, *,
             chunk_seconds: Sequence[float] = (8.0,), overlap: int = 1, batch_size: int = 4,
             device: str = "cpu", include_mixture: bool = True, progress: bool = True,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Separate and score every track; resumes from `out/results.jsonl`. Returns summary.

    Progress lines go to `echo` (default: the `bsmamba2_plugin` logger).
    """
    import logging

    import torch
    from tqdm.auto import tqdm

    from .audio_io import find_tracks, resample
    from .inference import separate
    from .silence import SilenceConfig, activity_from_segments

    echo = echo or logging.getLogger("bsmamba2_plugin").info
    tracks = find_tracks(data)
    loaded = [_load_model(spec, device) for spec in models]
    names = [MIXTURE] * include_mixture + [name for name, *_ in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must differ, got {names}; pass --name for each model.")
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder
    rows_path = out / "results.jsonl"
    rows: list[dict[str, Any]] = []
    if rows_path.exists():
        rows = _read_rows(rows_path, echo)
    # a row is reused only if it was scored with the same checkpoint, config and --overlap
    fingerprints = {MIXTURE: MIXTURE}
    fingerprints.update({name: _fingerprint(spec, overlap)
                         for (name, *_), spec in zip(loaded, models)})

    def is_stale(row: dict[str, Any]) -> bool:
        return (row["model"] in fingerprints
                and row.get("model_fingerprint") != fingerprints[row["model"]])

    stale = [r for r in rows if is_stale(r)]
    if stale:
        replaced = out / "results.replaced.jsonl"
        with replaced.open("a") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in stale)
        rows = [r for r in rows if not is_stale(r)]
        _write_text(rows_path, "".join(json.dumps(r) + "\n" for r in rows))
        echo(f"evaluate: {len(stale)} rows in {rows_path} were scored with another checkpoint, "
             f"config or --overlap (or by an older version) of "
             f"{', '.join(sorted({r['model'] for r in stale}))}; moved to {replaced}, scoring "
             f"them again")
    done = {(r["model"], r["chunk_seconds"], r["track"]) for r in rows}
    jobs = [(name, float(d), track) for track in tracks for name in names
            for d in chunk_seconds if (name, float(d), track.name) not in done]
    echo(f"evaluate: {len(tracks)} tracks x {len(chunk_seconds)} chunk lengths x {len(names)} "
         f"models; {len(jobs)} to do, {len(done)} already in {rows_path}")
    by_name = {name: (model, config, index, _autocast_dtype(config, device))
               for name, model, config, index, _ in loaded}
    sources = {name: source for name, *_, source in loaded}
    for name, source in sources.items():
        echo(f"evaluate: {name} = " + ", ".join(f"{k} {v}" for k, v in source.items()))
    current: dict[str, Any] = {}
    resampled: set[tuple[str, int]] = set()
    with rows_path.open("a") as sink:
        for name, d, track in tqdm(jobs, desc="evaluate", disable=not progress):
            if current.get("track") != track.name:
                current = _load_track(track, activity_from_segments, SilenceConfig())
            mixture, vocals, rate = current["mixture"], current["vocals"], current["rate"]
            if name == MIXTURE:
                estimate = mixture
            else:
                model, config, index, autocast = by_name[name]
                expected = int(config.audio.get("sample_rate", 44100))
                source = mixture
                if rate != expected:  # as msst-valid: separate at the model's rate, score
                    source = resample(mixture, rate, expected)  # at the file's
                    if (name, rate) not in resampled:
                        resampled.add((name, rate))
                        echo(f"evaluate: {track.name} and every other track at {rate} Hz is "
                             f"resampled to {expected} Hz for {name}, and the estimate back "
                             f"to {rate} Hz for scoring (as msst-valid does)")
                chunk = int(round(d * expected))
                chunk -= chunk % overlap
                stems = separate(model, torch.from_numpy(source), chunk, overlap=overlap,
                                 batch_size=batch_size, device=device,
                                 autocast=autocast)
                estimate = stems[index].numpy()
                if rate != expected:
                    estimate = resample(estimate, expected, rate, length=mixture.shape[-1])
            row = {"model": name, "chunk_seconds": d, "track": track.name, "overlap": overlap,
                   "model_fingerprint": fingerprints[name],
                   **_score(vocals, estimate, mixture, rate, current["activity"])}
            if name in sources:
                row["checkpoint"], row["weights"] = (sources[name]["checkpoint"],
                                                     sources[name]["weights"])
                row["precision"] = sources[name]["precision"]
            if current["info"] is not None:
                row["mostly_silent"] = bool(current["info"].get("mostly_silent", False))
            rows.append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
    return write_report(rows, out, order=names)


def _read_rows(path: Path, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rows of results.jsonl; a last line cut short (killed run, full disk) is dropped and
    the file rewritten without it, so the rerun scores that row again."""
    text = path.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        echo(f"evaluate: the last line of {path} is incomplete (an interrupted run); "
             f"dropping it and scoring that row again")
        lines = lines[:-1]
        _write_text(path, "".join(line + "\n" for line in lines))
    return [json.loads(line) for line in lines if line.strip()]


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
    _write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
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
    _write_text(path, buffer.getvalue())


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
    _write_text(path, "\n".join(lines) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader never sees half a report."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _save_figure(fig: Any, path: Path) -> None:
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
    _save_figure(fig, out / "quality_vs_chunk.png")
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
    _save_figure(fig, out / "by_activity.png")
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
        _save_figure(fig, out / "onset_after_silence.png")
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
        _save_figure(fig, out / "paired_differences.png")
        plt.close(fig)
