"""The renderer's entry points: `render_dataset` (files) and `render_track` (in memory).

Every track draws from generators seeded with (seed, split, track index), one per part, so
the same arguments give the same audio; see the package docstring.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserFileExistsError, UserTypeError, UserValueError
from .dsp import _plan_room
from .fluidsynth_engine import _render_band_fluidsynth, missing_requirements
from .instruments import _render_bass, _render_drums, _render_other
from .mixing import RenderedTrack, _mix, _remove_stale_tracks, _track_name, _write_track
from .song import _plan_song
from .voice import _render_vocals, vocal_activity

__all__ = ["ENGINES", "MIN_SECONDS", "SPLITS", "render_dataset", "render_track"]

ENGINES = ("synth", "fluidsynth")
SPLITS = ("train", "valid", "test")  # a track's seed uses its split's index here
MIN_SECONDS = 2.0


def render_dataset(out: str | Path, *, tracks: int, seconds: float, seed: int,
                   sample_rate: int = 44100, valid_tracks: int | None = None,
                   test_tracks: int = 0, engine: str = "synth", progress: bool = True,
                   overwrite: bool = False, workers: int = 1) -> dict[str, Any]:
    """Render a MUSDB18HQ-layout dataset of synthetic songs into `out`.

    Args:
        out: output folder; it must not exist or be empty unless `overwrite` is true.
        tracks: number of train tracks (>= 1).
        seconds: length of every track in seconds (>= 2).
        seed: non-negative integer; each track draws from (seed, split, track index).
        sample_rate: sample rate in Hz of every file.
        valid_tracks: number of valid tracks; None means max(1, tracks // 4).
        test_tracks: number of held-out tracks in `out/test` (default 0: none), for an
            evaluation that neither training nor checkpoint selection has seen.
        engine: one of ENGINES.
        progress: show a tqdm progress bar.
        overwrite: write into a non-empty `out`, replacing files of the same names. Track
            folders of an earlier, larger rendering that hold only renderer files are removed;
            nothing else is touched.
        workers: processes rendering tracks at once (each track is single-threaded numpy);
            the files do not depend on it.

    Returns:
        {"out": str, "tracks": [{"split", "name", "activity_ratio", "mostly_silent",
        "longest_gap_seconds"}, ...], "audio_seconds": track lengths summed (each track
        counts once, not once per stem), "wall_seconds": float}.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range, an unknown engine, or engine "fluidsynth"
            without the `fluidsynth` program or the FluidR3_GM soundfont.
        FileExistsError: `out` is a file, or a non-empty folder and `overwrite` is false.
    """
    started = time.perf_counter()
    n_valid = _check_arguments(tracks=tracks, seconds=seconds, seed=seed,
                               sample_rate=sample_rate, valid_tracks=valid_tracks)
    _check_int("test_tracks", test_tracks, 0, "the number of held-out test tracks")
    _check_int("workers", workers, 1, "the number of rendering processes")
    _check_engine(engine)
    out = Path(out)
    _check_out(out, overwrite)
    from tqdm.auto import tqdm
    counts = dict(zip(SPLITS, (tracks, n_valid, int(test_tracks))))
    jobs = [dict(out=str(out), seed=seed, split=split, index=index, seconds=seconds,
                 sample_rate=sample_rate, engine=engine)
            for split in SPLITS for index in range(counts[split])]
    summary: list[dict[str, Any]] = []
    audio_samples = 0
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(jobs), desc="bsmamba2 render", unit="track",
                                       disable=not progress))
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(jobs))))
            results = pool.map(_render_and_write, jobs)
        else:
            results = map(_render_and_write, jobs)
        for entry, samples in results:  # in job order, whatever the number of workers
            summary.append(entry)
            audio_samples += samples
            bar.update()
    if overwrite:
        _remove_stale_tracks(out, counts)
    return {"out": str(out), "tracks": summary, "audio_seconds": audio_samples / sample_rate,
            "wall_seconds": time.perf_counter() - started}


def _render_and_write(job: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Render one track and write its files (a worker's unit of work)."""
    track = render_track(seed=job["seed"], split=job["split"], index=job["index"],
                         seconds=job["seconds"], sample_rate=job["sample_rate"],
                         engine=job["engine"])
    name = _track_name(job["index"])
    _write_track(Path(job["out"]) / job["split"] / name, track, job["sample_rate"],
                 seed=job["seed"], engine=job["engine"])
    activity = track.activity
    return ({"split": job["split"], "name": name,
             "activity_ratio": activity["activity_ratio"],
             "mostly_silent": activity["mostly_silent"],
             "longest_gap_seconds": activity["longest_gap_seconds"]}, activity["samples"])


def render_track(*, seed: int, split: str, index: int, seconds: float,
                 sample_rate: int = 44100, engine: str = "synth") -> RenderedTrack:
    """Render one track in memory (what `render_dataset` writes for `split`/`index`).

    Args:
        seed: non-negative integer.
        split: "train", "valid" or "test".
        index: track index within the split (>= 0).
        seconds: track length in seconds (>= 2); samples = round(seconds * sample_rate).
        sample_rate: in Hz.
        engine: one of ENGINES.

    Returns:
        The stems, mixture (each (samples, 2) float32) and the vocal activity.

    Raises:
        ValueError, TypeError: as for `render_dataset`.
    """
    _check_arguments(tracks=1, seconds=seconds, seed=seed, sample_rate=sample_rate,
                     valid_tracks=0)
    _check_engine(engine)
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}.")
    if not isinstance(index, numbers.Integral) or isinstance(index, bool) or index < 0:
        raise ValueError(f"index: expected an integer >= 0, got {index!r}.")
    n_samples = round(seconds * sample_rate)
    seeds = np.random.SeedSequence([int(seed), SPLITS.index(split), int(index)]).spawn(6)
    rngs = [np.random.default_rng(child) for child in seeds]
    song = _plan_song(rngs[0], n_samples, sample_rate)
    room = _plan_room(rngs[0], sample_rate, n_samples)
    vocals = _render_vocals(rngs[1], song, room)
    if engine == "synth":
        band = {"drums": _render_drums(rngs[2], song, room),
                "bass": _render_bass(rngs[3], song, room),
                "other": _render_other(rngs[4], song, room)}
    else:  # the same notes (drawn first from the same generators), other instruments
        band = _render_band_fluidsynth(rngs[2:5], song, room)
    stems, mixture = _mix({"vocals": vocals, **band}, rngs[5])
    return RenderedTrack(stems=stems, mixture=mixture,
                         activity=vocal_activity(stems["vocals"], sample_rate))


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_arguments(*, tracks: Any, seconds: Any, seed: Any, sample_rate: Any,
                     valid_tracks: Any) -> int:
    """Validate the numeric arguments; return the number of valid tracks."""
    _check_int("tracks", tracks, 1, "the number of train tracks")
    if not isinstance(seconds, numbers.Real) or isinstance(seconds, bool):
        raise UserTypeError(f"seconds: expected a number of seconds, got {seconds!r}.")
    if not math.isfinite(seconds) or seconds < MIN_SECONDS:
        raise UserValueError(f"seconds: expected a track length >= {MIN_SECONDS} s, got "
                             f"{seconds!r}; pass seconds={MIN_SECONDS} or more.")
    _check_int("seed", seed, 0, "a non-negative random seed")
    _check_int("sample_rate", sample_rate, 8000, "a sample rate in Hz")
    if sample_rate > 192000:
        raise UserValueError(f"sample_rate: expected at most 192000 Hz, got {sample_rate}.")
    if valid_tracks is None:
        return max(1, tracks // 4)
    _check_int("valid_tracks", valid_tracks, 0, "the number of valid tracks, or None")
    return int(valid_tracks)


def _check_int(name: str, value: Any, minimum: int, meaning: str) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise UserTypeError(f"{name}: expected an integer ({meaning}), got {value!r}.")
    if value < minimum:
        raise UserValueError(f"{name}: expected an integer >= {minimum} ({meaning}), got "
                             f"{value}; pass {name}={minimum} or more.")


def _check_engine(engine: Any) -> None:
    if engine not in ENGINES:
        valid = ", ".join(repr(name) for name in ENGINES)
        raise UserValueError(f"engine: unknown engine {engine!r}; valid engines: {valid}.")
    if engine == "fluidsynth":
        missing = missing_requirements()
        if missing:
            raise UserValueError(
                f"engine: 'fluidsynth' needs {' and '.join(missing)}, which this machine "
                "lacks; on Debian/Ubuntu run `apt-get install fluidsynth fluid-soundfont-gm`, "
                "or pass engine='synth'.")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserFileExistsError(f"out: {out} exists and is a file; pass a folder path.")
    if out.is_dir() and not overwrite:
        entries = sorted(entry.name for entry in out.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise UserFileExistsError(
                f"out: {out} is not empty ({len(entries)} entries: {shown}); nothing was "
                "written. Fix: pass a new or empty folder, or --overwrite (Python: "
                "overwrite=True) to render into it again (this also completes an "
                "interrupted run; files other than the renderer's are kept).")
