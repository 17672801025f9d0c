"""Stem levels and the mixture, and the files of a track (float WAV and activity.json)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .dsp import _BLOCK

__all__ = ["PEAK_LIMIT", "RENDERER_VERSION", "STEMS", "RenderedTrack"]

STEMS = ("vocals", "drums", "bass", "other")
RENDERER_VERSION = 1
PEAK_LIMIT = 0.9

_OWN_FILES = frozenset({*(f"{name}.wav" for name in (*STEMS, "mixture")), "activity.json"})
_TRACK_NAME = re.compile(r"track_(\d{3,})")


@dataclasses.dataclass(frozen=True)
class RenderedTrack:
    """One rendered track, in memory.

    Attributes:
        stems: stem name (STEMS order) -> (samples, 2) float32 array.
        mixture: (samples, 2) float32, the float64 sum of the stems rounded to float32.
        activity: `vocal_activity` of the vocal stem.
    """

    stems: dict[str, np.ndarray]
    mixture: np.ndarray
    activity: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Levels and mixture


def _mix(stems: dict[str, np.ndarray],
         rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Set stem levels (vocals on top), one common gain for a mixture peak <= PEAK_LIMIT.

    Args:
        stems: name -> (2, samples) float64.
    Returns:
        name -> (samples, 2) float32 stems, and the (samples, 2) float32 mixture, the float64
        sum of the float32 stems rounded once.
    """
    levels_db = {"vocals": 0.0, "drums": rng.uniform(-5.0, -1.0),
                 "bass": rng.uniform(-8.0, -3.0), "other": rng.uniform(-10.0, -4.0)}
    scales = {name: 10.0 ** (levels_db[name] / 20.0) / _sounding_rms(stems[name])
              for name in STEMS}
    n_samples = stems["vocals"].shape[1]
    blocks = [slice(start, start + _BLOCK) for start in range(0, n_samples, _BLOCK)]
    peak = max(float(np.max(np.abs(sum(scales[name] * stems[name][:, block]
                                       for name in STEMS)))) for block in blocks)
    gain = rng.uniform(0.5, PEAK_LIMIT - 0.01) / max(peak, 1e-12)
    out = {name: np.empty((n_samples, 2), dtype=np.float32) for name in STEMS}
    mixture = np.empty((n_samples, 2), dtype=np.float32)
    for block in blocks:
        total = np.zeros((len(range(n_samples)[block]), 2))
        for name in STEMS:
            piece = (stems[name][:, block].T * (scales[name] * gain)).astype(np.float32)
            out[name][block] = piece
            total += piece
        mixture[block] = total
    return out, mixture


def _sounding_rms(stem: np.ndarray) -> float:
    """RMS of a (2, samples) stem over the samples where it is not exactly silent."""
    energy = float(np.dot(stem[0], stem[0]) + np.dot(stem[1], stem[1]))
    sounding = sum(int(np.count_nonzero((stem[0, start:start + _BLOCK] != 0)
                                        | (stem[1, start:start + _BLOCK] != 0)))
                   for start in range(0, stem.shape[1], _BLOCK))
    return max(math.sqrt(energy / max(2 * sounding, 1)), 1e-12)


def _track_name(index: int) -> str:
    return f"track_{index:03d}"


def _write_track(folder: Path, track: RenderedTrack, sample_rate: int, *, seed: int,
                 engine: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in STEMS:
        _write_float_wav(folder / f"{name}.wav", track.stems[name], sample_rate)
    _write_float_wav(folder / "mixture.wav", track.mixture, sample_rate)
    activity = {**track.activity, "seed": int(seed), "engine": engine,
                "renderer_version": RENDERER_VERSION}
    _write_replacing(folder / "activity.json",
                     (json.dumps(activity) + "\n").encode("utf-8"))


def _write_replacing(path: Path, payload: bytes | memoryview, *parts: bytes | memoryview) -> None:
    """Write through `.<name>.tmp` and rename, so that an interrupted or failed write (disk
    full) never leaves a half-written file under the final name."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            for part in (payload, *parts):
                handle.write(part)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_float_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (samples, channels) audio as a 32-bit float WAV (RIFF, IEEE float format 3).

    Written here rather than by libsndfile, which stamps the wall-clock time into float
    files (so equal audio would not give equal bytes) and, through a Python buffer, was
    the slowest part of rendering.
    """
    data = np.ascontiguousarray(audio, dtype="<f4")
    frames, channels = data.shape
    block = 4 * channels
    fmt = struct.pack("<HHIIHHH", 3, channels, sample_rate, sample_rate * block, block, 32, 0)
    fact = struct.pack("<I", frames)
    size = 4 + (8 + len(fmt)) + (8 + len(fact)) + (8 + data.nbytes)
    header = (b"RIFF" + struct.pack("<I", size) + b"WAVE"
              + b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"fact" + struct.pack("<I", len(fact)) + fact
              + b"data" + struct.pack("<I", data.nbytes))
    _write_replacing(path, header, memoryview(data).cast("B"))


def _remove_stale_tracks(out: Path, counts: dict[str, int]) -> None:
    """Remove track folders past `counts` that hold nothing but renderer files."""
    for split, count in counts.items():
        split_dir = out / split
        if not split_dir.is_dir():
            continue
        for folder in split_dir.iterdir():
            match = _TRACK_NAME.fullmatch(folder.name)
            if not folder.is_dir() or match is None or int(match.group(1)) < count:
                continue
            contents = list(folder.iterdir())
            if all(item.is_file() and item.name in _OWN_FILES for item in contents):
                for item in contents:
                    item.unlink()
                folder.rmdir()
