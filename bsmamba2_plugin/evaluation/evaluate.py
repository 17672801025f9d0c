"""`bsmamba2 evaluate`: score separated vocals the way the paper does, and more.

For every model (msst checkpoints of any msst or plugin model type, e.g. bsmamba2 and
bs_roformer) and every chunk length d, each track of a MUSDB18HQ-layout folder is
separated with the paper's protocol (non-overlapping d-second chunks, `inference.chunked`) or
overlap-add, and scored against its reference vocals: uSDR, cSDR (museval-exact) and
the silence suite (`silence`), using the renderer's sample-accurate vocal activity
(`activity.json`) when a track has one. A "mixture" pseudo-model (the mixture as the
vocal estimate) is the do-nothing baseline.

The rows go to `results.jsonl` in the report folder (one row per model, chunk length and
track; the run resumes from it); `report.write_report` turns them into the report files.
"""


from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.outputs import write_text_atomic
from ..errors import UserFileNotFoundError, UserValueError
from .report import MIXTURE, write_report

__all__ = ["ModelSpec", "evaluate", "find_tracks"]


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
        raise UserValueError(f"{spec.checkpoint}: the checkpoint has no meta.model_type; pass "
                             f"--model-type for it.")
    model, config = get_model_from_config(model_type, str(spec.config))
    problem = fit_problem(model, stored, path=str(spec.checkpoint), model_type=model_type,
                          config_flag="--config", type_flag="--model-type")
    if problem:
        raise UserValueError(problem)
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    target = config.training.get("target_instrument") if hasattr(config.training, "get") else None
    instruments = list(config.training.instruments)
    if target:
        if target != "vocals":
            raise UserValueError(f"{spec.config}: training.target_instrument is {target!r}; "
                                 f"evaluate scores vocals.")
        index = 0
    elif "vocals" in instruments:
        index = instruments.index("vocals")
    else:
        raise UserValueError(f"{spec.config}: training.instruments {instruments} has no 'vocals'.")
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
    from ..inference.audio_io import read_track_file

    mixture, rate = read_track_file(track / "mixture.wav")
    vocals, vocal_rate = read_track_file(track / "vocals.wav")
    if vocal_rate != rate or vocals.shape != mixture.shape:
        raise UserValueError(f"{track}: vocals.wav ({vocals.shape}, {vocal_rate} Hz) and "
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

    from ..inference.audio_io import resample
    from ..inference.chunked import separate
    from .silence import SilenceConfig, activity_from_segments

    echo = echo or logging.getLogger("bsmamba2_plugin").info
    tracks = find_tracks(data)
    loaded = [_load_model(spec, device) for spec in models]
    names = [MIXTURE] * include_mixture + [name for name, *_ in loaded]
    if len(set(names)) != len(names):
        raise UserValueError(f"model names must differ, got {names}; pass --name for each model.")
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
        write_text_atomic(rows_path, "".join(json.dumps(r) + "\n" for r in rows))
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
        write_text_atomic(path, "".join(line + "\n" for line in lines))
    return [json.loads(line) for line in lines if line.strip()]


def find_tracks(data: Path) -> list[Path]:
    """Track folders of `data`: every folder with a mixture.wav or a vocals.wav, which must
    have both.

    Raises:
        FileNotFoundError: no track folder, or folders that lack one of the two files.
    """
    folders = sorted(p for p in data.iterdir() if p.is_dir() and (
        (p / "mixture.wav").is_file() or (p / "vocals.wav").is_file())) if data.is_dir() else []
    if not folders:
        raise UserFileNotFoundError(f"--data {data}: no track folders with mixture.wav and "
                                    f"vocals.wav. Fix: point it at a split folder (e.g. "
                                    f"DATA/valid).")
    incomplete = [f"{p} (no {name})" for p in folders
                  for name in ("mixture.wav", "vocals.wav") if not (p / name).is_file()]
    if incomplete:
        shown = ", ".join(incomplete[:3]) + (f" and {len(incomplete) - 3} more"
                                             if len(incomplete) > 3 else "")
        raise UserFileNotFoundError(
            f"--data {data}: {len(incomplete)} track folder(s) lack a file every track needs: "
            f"{shown}. Fix: add it (vocals.wav: the reference the estimate is scored against), "
            f"or move the folder out of --data.")
    return folders
