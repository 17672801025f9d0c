"""Synthetic multitrack renderer: generated songs written in the MUSDB18HQ layout.

`render_dataset` writes

    OUT/train/track_000/{vocals,drums,bass,other,mixture}.wav + activity.json
    OUT/valid/track_000/...

as stereo float32 WAV at the chosen sample rate. The mixture is exactly the sum of the four
float32 stems (summed in float64, then rounded once to float32). `activity.json` lists the
sample-accurate vocal segments, read back from the final vocal stem.

What the data is: synthetic songs from a small procedural composer. Each track has its own
tempo, key, chord progression and stereo placement; all stems follow them. The "synth"
engine (numpy only) renders:

- vocals: a sung-like line. A band-limited sawtooth with vibrato, note glides and pitch
  drift goes through moving vowel formants (/a e i o u/, applied per STFT frame). Phrases of
  1.5-6.5 s are built from scale notes, with breath noise before them, attack and release,
  and gaps of exact digital zeros between them (0.5-8 s; longer in mostly-silent tracks;
  every gap, leading and trailing ones included, is at least 0.5 s). The activity pattern
  is drawn per track: about 1 track in 6 is mostly silent (activity under 20 %, flagged
  `mostly_silent`), about 1 in 6 almost continuous, the rest in between;
- drums: synthesised kick, snare, hats, crash and toms, played from tempo-driven patterns
  with variations and fills;
- bass: a plucked, darkening additive tone on the chord roots, with octave jumps;
- other: detuned chord pads and/or a plucked arpeggio on the same progression.

Each stem gets its own small stereo reverb (one room per track), so the stems still sum to
the mixture. The vocal stem is gated to exact zeros in its gaps after the reverb, with a short
release. Levels put the vocals on top; one gain per track keeps the mixture peak <= 0.9.

What the data is not: real recordings. There are no lyrics or consonants, no real
instruments or production, and far less variety than in a real corpus. Separation quality
measured on it does not transfer to MUSDB18HQ. Use it for smoke tests, training-loop
sanity checks, validating silence metrics (the gaps are exact and labelled), and relative
comparisons (speed, memory, model A against model B on the same data).

Engines: "synth" renders everything with numpy. "fluidsynth" keeps the synthesised vocals
and plays the same drum, bass and other parts (same seed, same notes) as General MIDI files
through the `fluidsynth` program and the FluidR3_GM.sf2 bank, with random GM programs and
drum kits (Debian: `apt-get install fluidsynth fluid-soundfont-gm`). It is several times
slower: FluidSynth loads the 142 MB bank once per stem.

Also public: `render_track` renders one track in memory (for on-the-fly use) and
`vocal_activity` computes the activity fields from any vocal stem.

Determinism: every track draws from `numpy.random.default_rng` seeded with (seed, split,
track index), never from global state. The same arguments give byte-identical files on the
same machine, numpy and FluidSynth versions (the WAV files are written directly, without
libsndfile's time-stamped PEAK chunk).

Simplifications, and why: in mostly-silent tracks of a few seconds the phrases are shorter
than 1.5 s (otherwise 20 % activity cannot hold); reverb is computed at a quarter of the
sample rate (high- and low-passed like a typical reverb return) so that rendering stays
at tens of times real time per core.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import math
import numbers
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ENGINES",
    "RENDERER_VERSION",
    "STEMS",
    "RenderedTrack",
    "render_dataset",
    "render_track",
    "vocal_activity",
]

ENGINES = ("synth", "fluidsynth")
STEMS = ("vocals", "drums", "bass", "other")
SPLITS = ("train", "valid")
RENDERER_VERSION = 1
MIN_SECONDS = 2.0
MIN_GAP_SECONDS = 0.5
MOSTLY_SILENT_RATIO = 0.2
PEAK_LIMIT = 0.9
FLUIDSYNTH_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

_OWN_FILES = frozenset({*(f"{name}.wav" for name in (*STEMS, "mixture")), "activity.json"})
_TRACK_NAME = re.compile(r"track_(\d{3,})")
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as 0-based scale degrees (diatonic triads of the track's key).
_MAJOR_PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (1, 4, 0, 0),
                       (0, 3, 0, 4))
_MINOR_PROGRESSIONS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 5, 6), (0, 3, 6, 2))
# Vowel formants F1-F3 in Hz (rounded Peterson & Barney averages, adult voices).
_VOWELS_HZ = np.array([[750.0, 1150.0, 2600.0],   # a
                       [560.0, 1950.0, 2700.0],   # e
                       [290.0, 2450.0, 3100.0],   # i
                       [580.0, 880.0, 2550.0],    # o
                       [330.0, 900.0, 2450.0]])   # u
_FORMANT_GAINS = np.array([1.0, 0.9, 0.7])
_FORMANT_WIDTHS_HZ = np.array([110.0, 130.0, 180.0])
_STFT_SIZE = 1024
_STFT_HOP = 256
_REVERB_FACTOR = 4


# --------------------------------------------------------------------------------------------
# Public API


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


def render_dataset(out: str | Path, *, tracks: int, seconds: float, seed: int,
                   sample_rate: int = 44100, valid_tracks: int | None = None,
                   engine: str = "synth", progress: bool = True,
                   overwrite: bool = False) -> dict[str, Any]:
    """Render a MUSDB18HQ-layout dataset of synthetic songs into `out`.

    Args:
        out: output folder; it must not exist or be empty unless `overwrite` is true.
        tracks: number of train tracks (>= 1).
        seconds: length of every track in seconds (>= 2).
        seed: non-negative integer; each track draws from (seed, split, track index).
        sample_rate: sample rate in Hz of every file.
        valid_tracks: number of valid tracks; None means max(1, tracks // 4).
        engine: one of ENGINES.
        progress: show a tqdm progress bar.
        overwrite: write into a non-empty `out`, replacing files of the same names. Track
            folders of an earlier, larger rendering that hold only renderer files are removed;
            nothing else is touched.

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
    _check_engine(engine)
    out = Path(out)
    _check_out(out, overwrite)
    from tqdm.auto import tqdm
    counts = dict(zip(SPLITS, (tracks, n_valid)))
    jobs = [(split, index) for split in SPLITS for index in range(counts[split])]
    summary: list[dict[str, Any]] = []
    audio_samples = 0
    with tqdm(total=len(jobs), desc="bsmamba2 render", unit="track",
              disable=not progress) as bar:
        for split, index in jobs:
            track = render_track(seed=seed, split=split, index=index, seconds=seconds,
                                 sample_rate=sample_rate, engine=engine)
            name = _track_name(index)
            _write_track(out / split / name, track, sample_rate, seed=seed, engine=engine)
            activity = track.activity
            summary.append({"split": split, "name": name,
                            "activity_ratio": activity["activity_ratio"],
                            "mostly_silent": activity["mostly_silent"],
                            "longest_gap_seconds": activity["longest_gap_seconds"]})
            audio_samples += activity["samples"]
            bar.update()
    if overwrite:
        _remove_stale_tracks(out, counts)
    return {"out": str(out), "tracks": summary, "audio_seconds": audio_samples / sample_rate,
            "wall_seconds": time.perf_counter() - started}


def render_track(*, seed: int, split: str, index: int, seconds: float,
                 sample_rate: int = 44100, engine: str = "synth") -> RenderedTrack:
    """Render one track in memory (what `render_dataset` writes for `split`/`index`).

    Args:
        seed: non-negative integer.
        split: "train" or "valid".
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


def vocal_activity(vocals: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Where a vocal stem is non-zero, sample-accurate.

    A sample is active when any channel is non-zero. Gaps are the maximal runs of inactive
    samples, including a leading or trailing one.

    Args:
        vocals: (samples, channels) or (samples,) array.
        sample_rate: in Hz.

    Returns:
        {"sample_rate", "samples", "vocal_segments": [[start, end), ...] in samples,
        "activity_ratio": active samples / samples, "longest_gap_seconds",
        "shortest_gap_seconds" (0.0 when there is no gap), "mostly_silent": activity_ratio
        below MOSTLY_SILENT_RATIO}.
    """
    samples = np.asarray(vocals)
    samples = samples[:, None] if samples.ndim == 1 else samples
    active = samples[:, 0] != 0
    for channel in range(1, samples.shape[1]):
        active |= samples[:, channel] != 0
    n_samples = len(active)
    # runs of equal activity: [bounds[k], bounds[k + 1])
    bounds = np.concatenate([[0], np.flatnonzero(active[1:] != active[:-1]) + 1, [n_samples]])
    bounds = bounds if n_samples else bounds[:1]  # no runs at all in an empty stem
    is_active = active[bounds[:-1]]
    starts, ends = bounds[:-1][is_active], bounds[1:][is_active]
    gaps = (bounds[1:] - bounds[:-1])[~is_active]
    ratio = float(np.count_nonzero(active)) / n_samples if n_samples else 0.0
    return {"sample_rate": int(sample_rate), "samples": int(n_samples),
            "vocal_segments": [[int(s), int(e)] for s, e in zip(starts, ends)],
            "activity_ratio": ratio,
            "longest_gap_seconds": float(gaps.max()) / sample_rate if len(gaps) else 0.0,
            "shortest_gap_seconds": float(gaps.min()) / sample_rate if len(gaps) else 0.0,
            "mostly_silent": ratio < MOSTLY_SILENT_RATIO}


# --------------------------------------------------------------------------------------------
# Argument checks and file output


def _check_arguments(*, tracks: Any, seconds: Any, seed: Any, sample_rate: Any,
                     valid_tracks: Any) -> int:
    """Validate the numeric arguments; return the number of valid tracks."""
    _check_int("tracks", tracks, 1, "the number of train tracks")
    if not isinstance(seconds, numbers.Real) or isinstance(seconds, bool):
        raise TypeError(f"seconds: expected a number of seconds, got {seconds!r}.")
    if not math.isfinite(seconds) or seconds < MIN_SECONDS:
        raise ValueError(f"seconds: expected a track length >= {MIN_SECONDS} s, got "
                         f"{seconds!r}; pass seconds={MIN_SECONDS} or more.")
    _check_int("seed", seed, 0, "a non-negative random seed")
    _check_int("sample_rate", sample_rate, 8000, "a sample rate in Hz")
    if sample_rate > 192000:
        raise ValueError(f"sample_rate: expected at most 192000 Hz, got {sample_rate}.")
    if valid_tracks is None:
        return max(1, tracks // 4)
    _check_int("valid_tracks", valid_tracks, 0, "the number of valid tracks, or None")
    return int(valid_tracks)


def _check_int(name: str, value: Any, minimum: int, meaning: str) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer ({meaning}), got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum} ({meaning}), got "
                         f"{value}; pass {name}={minimum} or more.")


def _check_engine(engine: Any) -> None:
    if engine not in ENGINES:
        valid = ", ".join(repr(name) for name in ENGINES)
        raise ValueError(f"engine: unknown engine {engine!r}; valid engines: {valid}.")
    if engine == "fluidsynth":
        missing = []
        if shutil.which("fluidsynth") is None:
            missing.append("the `fluidsynth` program")
        if not FLUIDSYNTH_SOUNDFONT.is_file():
            missing.append(f"the General MIDI soundfont {FLUIDSYNTH_SOUNDFONT}")
        if missing:
            raise ValueError(
                f"engine: 'fluidsynth' needs {' and '.join(missing)}, which this machine "
                "lacks; on Debian/Ubuntu run `apt-get install fluidsynth fluid-soundfont-gm`, "
                "or pass engine='synth'.")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out: {out} exists and is a file; pass a folder path.")
    if out.is_dir() and not overwrite:
        entries = sorted(entry.name for entry in out.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise FileExistsError(
                f"out: {out} is not empty ({len(entries)} entries: {shown}); pass a new or "
                "empty folder, or overwrite=True to replace a dataset rendered there.")


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
    (folder / "activity.json").write_text(json.dumps(activity) + "\n", encoding="utf-8")


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
    with open(path, "wb") as handle:
        handle.write(b"RIFF" + struct.pack("<I", size) + b"WAVE")
        handle.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        handle.write(b"fact" + struct.pack("<I", len(fact)) + fact)
        handle.write(b"data" + struct.pack("<I", data.nbytes))
        handle.write(memoryview(data).cast("B"))


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


# --------------------------------------------------------------------------------------------
# The song: tempo, key, chords


@dataclasses.dataclass(frozen=True)
class _Song:
    """Shared musical plan of one track.

    Attributes:
        sample_rate: in Hz.
        n_samples: track length.
        beat_samples: one beat, in samples (not rounded).
        key_pc: pitch class of the tonic (0 = C).
        scale: semitone offsets of the 7 scale degrees.
        chords: pitch classes (root, third, fifth) of each chord of the progression.
        chord_beats: beats per chord.
    """

    sample_rate: int
    n_samples: int
    beat_samples: float
    key_pc: int
    scale: tuple[int, ...]
    chords: tuple[tuple[int, int, int], ...]
    chord_beats: int

    @property
    def bar_samples(self) -> float:
        return 4 * self.beat_samples

    def chord_at(self, sample: int | np.ndarray) -> np.ndarray:
        """Index into `chords` of the chord sounding at `sample`."""
        span = np.floor_divide(sample, self.chord_beats * self.beat_samples).astype(np.int64)
        return span % len(self.chords)

    def scale_notes(self, low: int, high: int) -> np.ndarray:
        """MIDI notes of the key's scale in [low, high]."""
        notes = np.arange(low, high + 1)
        pcs = {(self.key_pc + step) % 12 for step in self.scale}
        return notes[[int(note) % 12 in pcs for note in notes]]


def _plan_song(rng: np.random.Generator, n_samples: int, sample_rate: int) -> _Song:
    bpm = rng.uniform(78.0, 140.0)
    is_minor = bool(rng.random() < 0.4)
    scale = _MINOR if is_minor else _MAJOR
    progressions = _MINOR_PROGRESSIONS if is_minor else _MAJOR_PROGRESSIONS
    progression = progressions[rng.integers(len(progressions))]
    key_pc = int(rng.integers(12))
    chords = tuple(tuple((key_pc + _degree_semitones(scale, degree + step)) % 12
                         for step in (0, 2, 4)) for degree in progression)
    return _Song(sample_rate=sample_rate, n_samples=n_samples,
                 beat_samples=60.0 / bpm * sample_rate, key_pc=key_pc, scale=scale,
                 chords=chords,  # type: ignore[arg-type]
                 chord_beats=int(rng.choice([2, 4, 4, 8])))


def _degree_semitones(scale: Sequence[int], degree: int) -> int:
    return 12 * (degree // 7) + scale[degree % 7]


def _midi_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * np.exp2((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _nearest_with_pc(low: int, pc: int) -> int:
    """The lowest MIDI note >= low with pitch class pc."""
    return low + (pc - low) % 12


# --------------------------------------------------------------------------------------------
# Signal helpers (all vectorised; mono signals are (samples,), stereo ones (2, samples))


def _sin_cycles(cycles: np.ndarray) -> np.ndarray:
    """sin(2 pi cycles) in float32; the phase is wrapped in float64 first."""
    return np.sin((2.0 * np.pi * (cycles - np.floor(cycles))).astype(np.float32))


def _polyblep_saw(frac: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Band-limited sawtooth in [-1, 1] (polyBLEP), harmonics falling as 1/k.

    Args:
        frac: (samples,) phase in cycles, in [0, 1).
        step: (samples,) phase increment per sample (f0 / sample_rate), in (0, 0.5).
    """
    saw = 2.0 * frac - 1.0
    head = frac < step
    x = frac[head] / step[head]
    saw[head] -= 2.0 * x - x * x - 1.0
    tail = frac > 1.0 - step
    y = (frac[tail] - 1.0) / step[tail]
    saw[tail] -= y * y + 2.0 * y + 1.0
    return saw


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pan_gains(pan: float | np.ndarray) -> np.ndarray:
    """Constant-power (left, right) gains, (2,) or (2, voices); pan in [-1 left, 1 right]."""
    angle = (np.asarray(pan, dtype=np.float64) + 1.0) * np.pi / 4.0
    return np.stack([np.cos(angle), np.sin(angle)])


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan of a (samples,) signal; returns (2, samples)."""
    return np.outer(_pan_gains(pan), mono)


def _add_at(out: np.ndarray, start: int, signal: np.ndarray) -> None:
    """out[..., start:start + length] += signal, clipped to out's length (last axis: time)."""
    stop = min(out.shape[-1], start + signal.shape[-1])
    if stop > start >= 0:
        out[..., start:stop] += signal[..., :stop - start]


def _pluck(freq_hz: float, n_samples: int, sample_rate: int, *, n_harmonics: int,
           rolloff: float, decay: float, darkening: float) -> np.ndarray:
    """An additive plucked tone whose upper harmonics die first (a closing low-pass).

    Harmonic k has amplitude k**-rolloff and decays at (decay + darkening * (k - 1)) 1/s.
    A 3 ms attack and 15 ms release avoid clicks. Returns (n_samples,) float64, peak ~1.
    """
    k = np.arange(1, n_harmonics + 1)
    k = k[(k == 1) | (k * freq_hz < 0.45 * sample_rate)]  # never empty
    t = np.arange(n_samples) / sample_rate
    rates = decay + darkening * (k - 1)
    partials = _sin_cycles(np.outer(k * freq_hz, t)) * np.exp(-np.outer(rates, t))
    tone = (k ** -rolloff) @ partials
    edge = np.minimum(1.0, np.minimum(t / 0.003, (n_samples - np.arange(n_samples))
                                      / (0.015 * sample_rate)))
    return tone * edge / np.sum(k ** -rolloff)


def _wavetable(freq_hz: float, n_samples: int, sample_rate: int, *, rolloff: float,
               phase: float, size: int = 4096) -> np.ndarray:
    """A band-limited periodic tone (harmonic k at k**-rolloff) read from one cycle table.

    Returns (n_samples,) float32, peak <= ~1.
    """
    n_harmonics = max(1, min(40, int(0.45 * sample_rate / freq_hz)))
    spectrum = np.zeros(size // 2 + 1, dtype=np.complex128)
    k = np.arange(1, n_harmonics + 1)
    spectrum[k] = -0.5j * size * k ** -rolloff
    table = np.fft.irfft(spectrum, size).astype(np.float32)
    table /= np.max(np.abs(table))
    # 32-bit fixed-point phase accumulator; the top bits index the table
    increment = round(freq_hz / sample_rate * 2.0 ** 32)
    accumulator = int(phase * 2.0 ** 32) + np.arange(n_samples, dtype=np.int64) * increment
    return table[(accumulator >> (32 - int(math.log2(size)))) & (size - 1)]


def _fast_length(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n (a fast FFT size)."""
    best = 1 << max(0, (n - 1).bit_length())
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35 * (1 << max(0, math.ceil(math.log2(n / power35))))
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


# --------------------------------------------------------------------------------------------
# Reverb: decaying stereo noise, convolved at a quarter of the sample rate


@dataclasses.dataclass(frozen=True)
class _Room:
    """A stereo reverb impulse response, as its spectrum at the reduced rate.

    Attributes:
        spectrum: (2, fft_size // 2 + 1) complex, one row per output channel.
        fft_size: FFT length at the reduced rate.
    """

    spectrum: np.ndarray
    fft_size: int


def _plan_room(rng: np.random.Generator, sample_rate: int, n_samples: int) -> _Room:
    low_rate = sample_rate / _REVERB_FACTOR
    rt60 = rng.uniform(0.6, 1.8)
    n_tail = int(min(1.2 * rt60, 2.5) * low_rate)
    n_predelay = int(rng.uniform(0.008, 0.03) * low_rate)
    t = np.arange(n_tail) / low_rate
    noise = rng.standard_normal((2, n_tail)) * np.exp(-6.91 * t / rt60)
    noise = 0.5 * (noise + np.roll(noise, 1, axis=1))  # darker tail
    noise /= np.sqrt(np.sum(noise ** 2, axis=1, keepdims=True))
    response = np.concatenate([np.zeros((2, n_predelay)), noise], axis=1)
    fft_size = _fast_length(n_samples // _REVERB_FACTOR + 2 + response.shape[1])
    # Reverb returns are usually high-passed; the low-pass also keeps the images of the
    # linear upsampling (around multiples of sample_rate / 4) small.
    freqs = np.fft.rfftfreq(fft_size, 1.0 / low_rate)
    shape = (freqs / 150.0) ** 2 / (1.0 + (freqs / 150.0) ** 2) / (1.0 + (freqs / 3500.0) ** 4)
    return _Room(spectrum=np.fft.rfft(response, fft_size) * shape, fft_size=fft_size)


def _reverb(room: _Room, send: np.ndarray) -> np.ndarray:
    """Wet stereo signal (2, ceil(samples / 4)) at a quarter rate, for a mono `send`.

    The send is low-passed with a triangle kernel, decimated by 4 and convolved with the
    room; `_add_upsampled` brings it back (the room's tail is dark, so little is lost).
    """
    # low[k] = sum_j kernel[j] * send[4k + j - 3]: the filter evaluated at the kept samples
    kernel = np.array([1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]) / 16.0
    count = -(-len(send) // _REVERB_FACTOR)
    padded = np.zeros(_REVERB_FACTOR * count + len(kernel))
    padded[3:3 + len(send)] = send
    low = np.zeros(count)
    for j, weight in enumerate(kernel):
        low += weight * padded[j:j + _REVERB_FACTOR * count:_REVERB_FACTOR]
    wet = np.fft.irfft(np.fft.rfft(low, room.fft_size) * room.spectrum, room.fft_size)
    return wet[:, :count]


def _add_upsampled(out: np.ndarray, low: np.ndarray, gain: float) -> None:
    """out += gain * `low` upsampled by _REVERB_FACTOR (linear interpolation), in place.

    Args:
        out: (channels, samples); low: (channels, ceil(samples / _REVERB_FACTOR)).
    """
    slope = np.diff(low, axis=1, append=low[:, -1:])
    step = _BLOCK // _REVERB_FACTOR
    for first in range(0, low.shape[1], step):  # block by block, to stay in cache
        part = out[:, first * _REVERB_FACTOR:(first + step) * _REVERB_FACTOR]
        for phase in range(_REVERB_FACTOR):
            view = part[:, phase::_REVERB_FACTOR]
            stop = first + view.shape[1]
            view += gain * (low[:, first:stop] + slope[:, first:stop] * (phase / _REVERB_FACTOR))


def _with_reverb(stereo: np.ndarray, room: _Room, send: float) -> np.ndarray:
    """Add to `stereo` (2, samples), in place, its reverb; returns `stereo`.

    The reverb is fed with the mid signal (mean of the channels) at level `send`.
    """
    _add_upsampled(stereo, _reverb(room, 0.5 * (stereo[0] + stereo[1])), send)
    return stereo


# --------------------------------------------------------------------------------------------
# Vocals: phrase plan


@dataclasses.dataclass(frozen=True)
class _Phrases:
    """Vocal phrases and notes, in samples (ends exclusive), sorted in time.

    A phrase region is [start, breath_end) breath, [breath_end, sung_end) notes,
    [sung_end, end) release and reverb tail; the vocal stem is exactly zero outside regions.

    Attributes:
        start, breath_end, sung_end, end: (regions,) int64.
        note_start, note_end: (notes,) int64.
        note_midi, note_from_midi: (notes,) pitch and the pitch the glide starts from.
        note_vowel, note_from_vowel: (notes,) vowel index into _VOWELS_HZ.
        note_dip: (notes,) depth of the articulation dip at the note onset (0 for the first
            note of a phrase).
    """

    start: np.ndarray
    breath_end: np.ndarray
    sung_end: np.ndarray
    end: np.ndarray
    note_start: np.ndarray
    note_end: np.ndarray
    note_midi: np.ndarray
    note_from_midi: np.ndarray
    note_vowel: np.ndarray
    note_from_vowel: np.ndarray
    note_dip: np.ndarray


def _plan_regions(rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
    """Phrase regions (start, end) in seconds, with the track's activity pattern.

    About 1 track in 6 is mostly silent (activity < 20 %), 1 in 6 almost continuous, the
    rest in between. Every track keeps a gap of at least MIN_GAP_SECONDS, and all gaps,
    including leading and trailing ones, are 0 or at least that long.
    """
    style = rng.choice(["mostly_silent", "continuous", "varied"], p=[1 / 6, 1 / 6, 2 / 3])
    if style == "mostly_silent":
        return _sparse_regions(rng, seconds)
    if style == "continuous":
        draw_phrase = functools.partial(rng.uniform, 3.0, 6.5)
        draw_gap = functools.partial(rng.uniform, MIN_GAP_SECONDS, 1.2)
    else:
        phrase_high = rng.uniform(2.5, 6.0)
        gap_high = math.exp(rng.uniform(0.0, math.log(8.0)))
        gap_low = math.exp(rng.uniform(math.log(MIN_GAP_SECONDS), math.log(gap_high)))

        def draw_phrase() -> float:
            return rng.uniform(1.5, phrase_high)

        def draw_gap() -> float:
            return math.exp(rng.uniform(math.log(gap_low), math.log(gap_high)))
    for _ in range(20):
        regions = _sequential_regions(rng, seconds, draw_phrase, draw_gap)
        if _is_acceptable(regions, seconds):
            return regions
    lead = MIN_GAP_SECONDS
    return [(lead, lead + 0.5 * seconds)]


def _sequential_regions(rng: np.random.Generator, seconds: float,
                        draw_phrase: Callable[[], float],
                        draw_gap: Callable[[], float]) -> list[tuple[float, float]]:
    regions: list[tuple[float, float]] = []
    t = 0.0 if rng.random() < 0.2 else draw_gap()
    while seconds - t >= 1.0:
        end = min(seconds, t + draw_phrase())
        if seconds - end < MIN_GAP_SECONDS:
            end = seconds  # no trailing gap shorter than MIN_GAP_SECONDS
        regions.append((t, end))
        t = end + draw_gap()
    return regions


def _is_acceptable(regions: list[tuple[float, float]], seconds: float) -> bool:
    if not regions:
        return False
    bounds = [0.0, *(x for region in regions for x in region), seconds]
    gaps = [b - a for a, b in zip(bounds[0::2], bounds[1::2])]
    active = sum(end - start for start, end in regions)
    return max(gaps) >= MIN_GAP_SECONDS and active / seconds >= MOSTLY_SILENT_RATIO + 0.01


def _sparse_regions(rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
    """1 or more short phrases covering 4-17 % (at most 19 %) of the track."""
    total = float(np.clip(rng.uniform(0.04, 0.17) * seconds, 0.3, 0.19 * seconds))
    count = int(np.clip(round(total / rng.uniform(2.0, 5.0)), 1, max(1, total // 0.3)))
    lengths = 0.3 + (total - 0.3 * count) * rng.dirichlet(np.full(count, 4.0))
    free = seconds - total - (count + 1) * MIN_GAP_SECONDS
    gaps = MIN_GAP_SECONDS + free * rng.dirichlet(np.ones(count + 1))
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths[:-1])])
    return [(float(s), float(s + length)) for s, length in zip(starts, lengths)]


def _plan_phrases(rng: np.random.Generator, song: _Song) -> _Phrases:
    sr = song.sample_rate
    regions = _plan_regions(rng, song.n_samples / sr)
    rows = []
    for start_s, end_s in regions:
        length = end_s - start_s
        breath = 0.0 if rng.random() < 0.15 else min(rng.uniform(0.12, 0.3), 0.2 * length)
        tail = min(rng.uniform(0.2, 0.4), 0.25 * length)
        rows.append([start_s, start_s + breath, end_s - tail, end_s])
    bounds = np.round(np.array(rows) * sr).astype(np.int64)
    bounds = np.minimum(bounds, song.n_samples)
    notes = _plan_notes(rng, song, bounds[:, 1], bounds[:, 2])
    return _Phrases(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3], **notes)


def _plan_notes(rng: np.random.Generator, song: _Song, sung_start: np.ndarray,
                sung_end: np.ndarray) -> dict[str, np.ndarray]:
    """Melody notes filling each phrase: a scale random walk that leans on chord tones."""
    center = int(rng.integers(55, 70))
    pitches = song.scale_notes(center - 9, center + 9)
    min_note = int(0.12 * song.sample_rate)
    beats = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    starts, ends, midi, first = [], [], [], []
    for a, b in zip(sung_start, sung_end):
        position = int(rng.integers(len(pitches) // 3, 2 * len(pitches) // 3 + 1))
        t = int(a)
        while t < b:
            length = int(rng.choice(beats, p=[0.25, 0.35, 0.15, 0.15, 0.1]) * song.beat_samples)
            stop = int(b) if b - (t + length) < min_note else t + length
            position = int(np.clip(position + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]),
                                   0, len(pitches) - 1))
            if rng.random() < 0.5:
                position = _nearest_chord_tone(pitches, position, song.chords[song.chord_at(t)])
            starts.append(t)
            ends.append(stop)
            midi.append(float(pitches[position]))
            first.append(t == a)
            t = stop
    is_first = np.array(first, dtype=bool)
    note_midi = np.array(midi)
    from_midi = np.concatenate([[note_midi[0]], note_midi[:-1]]) if len(midi) else note_midi
    from_midi = np.where(is_first, note_midi - rng.uniform(0.3, 1.2, len(midi)), from_midi)
    vowel = rng.integers(0, len(_VOWELS_HZ), len(midi))
    vowel = np.where(rng.random(len(midi)) < 0.3, np.roll(vowel, 1), vowel)
    from_vowel = np.where(is_first, vowel, np.roll(vowel, 1))
    return {"note_start": np.array(starts, dtype=np.int64),
            "note_end": np.array(ends, dtype=np.int64), "note_midi": note_midi,
            "note_from_midi": from_midi, "note_vowel": vowel, "note_from_vowel": from_vowel,
            "note_dip": np.where(is_first, 0.0, rng.uniform(0.25, 0.6, len(midi)))}


def _nearest_chord_tone(pitches: np.ndarray, position: int, chord: Sequence[int]) -> int:
    candidates = np.flatnonzero(np.isin(pitches % 12, chord))
    if not len(candidates):
        return position
    return int(candidates[np.argmin(np.abs(candidates - position))])


# --------------------------------------------------------------------------------------------
# Vocals: synthesis


@dataclasses.dataclass(frozen=True)
class _Voice:
    """Per-track singing style.

    Attributes:
        glide_s: (notes,) duration of the glide into each note.
        vibrato_hz, vibrato_depth, vibrato_delay_s, vibrato_phase: vibrato rate, relative
            depth of f0, delay after each note onset, and start phase in cycles.
        drift_hz, drift_phase: (2,) slow pitch drift components (6 and 4 cents).
        attack_s: phrase attack.
        breath_level: breath noise level against the voice.
        formant_scale: formant frequencies times this (1 for low voices, up to 1.15).
    """

    glide_s: np.ndarray
    vibrato_hz: float
    vibrato_depth: float
    vibrato_delay_s: float
    vibrato_phase: float
    drift_hz: np.ndarray
    drift_phase: np.ndarray
    attack_s: float
    breath_level: float
    formant_scale: float


def _draw_voice(rng: np.random.Generator, phrases: _Phrases) -> _Voice:
    high = bool(np.median(phrases.note_midi) > 62)
    return _Voice(glide_s=rng.uniform(0.04, 0.12, len(phrases.note_midi)),
                  vibrato_hz=rng.uniform(5.0, 6.0), vibrato_depth=0.01 * rng.uniform(0.7, 1.3),
                  vibrato_delay_s=rng.uniform(0.15, 0.35), vibrato_phase=rng.random(),
                  drift_hz=np.array([rng.uniform(0.2, 0.5), rng.uniform(0.7, 1.3)]),
                  drift_phase=rng.random(2), attack_s=rng.uniform(0.03, 0.08),
                  breath_level=rng.uniform(0.08, 0.2),
                  formant_scale=rng.uniform(1.0, 1.15) if high else 1.0)


def _render_vocals(rng: np.random.Generator, song: _Song, room: _Room) -> np.ndarray:
    """The gated stereo vocal stem (2, samples), float64, exact zeros outside phrases.

    Only the phrase regions are synthesised, one at a time (short arrays stay in cache).
    """
    phrases = _plan_phrases(rng, song)
    voice = _draw_voice(rng, phrases)
    sr = song.sample_rate
    dry = np.zeros(song.n_samples)
    for region, (start, end) in enumerate(zip(phrases.start, phrases.end)):
        excitation = _region_excitation(rng, phrases, voice, region, sr)
        dry[start:end] = _formant_filter(excitation, start, phrases, voice.formant_scale,
                                         rng.uniform(0.06, 0.14), sr)
    wet = _with_reverb(_pan(dry, rng.uniform(-0.1, 0.1)), room, rng.uniform(0.12, 0.3))
    gate = _phrase_gate(phrases, song.n_samples, sr)
    return np.where(gate > 0.0, wet * gate, 0.0)


def _region_excitation(rng: np.random.Generator, phrases: _Phrases, voice: _Voice,
                       region: int, sr: int) -> np.ndarray:
    """(region length,) source signal of one phrase region: voice, aspiration and breath."""
    start, breath_end = int(phrases.start[region]), int(phrases.breath_end[region])
    inside = np.arange(start, int(phrases.end[region]))
    note = np.clip(np.searchsorted(phrases.note_start, inside, side="right") - 1, 0, None)
    tau = (inside - phrases.note_start[note]) / sr  # seconds since the note's onset
    f0 = _vocal_f0(voice, phrases, inside, note, tau, sr)
    cycles = np.cumsum(f0 / sr)
    source = _polyblep_saw(cycles - np.floor(cycles), f0 / sr)
    aspiration = rng.standard_normal(len(inside), dtype=np.float32)
    excitation = _voice_envelope(voice, phrases, region, inside, note, tau, sr) * (
        source + 0.06 * aspiration)
    # breath: high-passed noise with a raised-sine shape before the first note
    length = breath_end - start
    shape = np.sin(np.pi * (np.arange(length) + 0.5) / max(length, 1)) ** 2
    excitation[:length] += voice.breath_level * shape * np.diff(rng.standard_normal(length + 1))
    return excitation


def _vocal_f0(voice: _Voice, phrases: _Phrases, inside: np.ndarray, note: np.ndarray,
              tau: np.ndarray, sr: int) -> np.ndarray:
    """f0 in Hz at the samples `inside`: glides between notes, delayed vibrato, slow drift.

    Args:
        inside: (m,) sample indices; note: (m,) index of the latest note started there;
            tau: (m,) seconds since that note's onset.
    """
    glide = _smoothstep(tau / voice.glide_s[note])
    pitch = phrases.note_from_midi[note] + (phrases.note_midi[note]
                                            - phrases.note_from_midi[note]) * glide
    t = inside / sr
    depth = voice.vibrato_depth * np.clip((tau - voice.vibrato_delay_s) / 0.25, 0.0, 1.0)
    vibrato = depth * _sin_cycles(voice.vibrato_hz * t + voice.vibrato_phase)
    drift_cents = (6.0 * _sin_cycles(voice.drift_hz[0] * t + voice.drift_phase[0])
                   + 4.0 * _sin_cycles(voice.drift_hz[1] * t + voice.drift_phase[1]))
    return _midi_hz(pitch + drift_cents / 100.0) * (1.0 + vibrato)


def _voice_envelope(voice: _Voice, phrases: _Phrases, region: int, inside: np.ndarray,
                    note: np.ndarray, tau: np.ndarray, sr: int) -> np.ndarray:
    """Voice amplitude at the samples `inside` of one region (see `_vocal_f0`).

    A phrase-level attack, arc and release, times a short dip at every note onset but the
    first of a phrase (articulation).
    """
    since = (inside - phrases.breath_end[region]) / sr
    after = (inside - phrases.sung_end[region]) / sr
    sung_s = max(int(phrases.sung_end[region] - phrases.breath_end[region]), 1) / sr
    release_s = 0.6 * max(int(phrases.end[region] - phrases.sung_end[region]), 1) / sr
    attack = np.clip(since / voice.attack_s, 0.0, 1.0)
    release = np.clip(1.0 - np.maximum(after, 0.0) / release_s, 0.0, 1.0) ** 2
    arc = 0.85 + 0.15 * np.sin(np.pi * np.clip(since / sung_s, 0.0, 1.0))
    dip = 1.0 - phrases.note_dip[note] * np.clip(1.0 - tau / 0.06, 0.0, 1.0)
    return attack * release * arc * dip


def _formant_filter(segment: np.ndarray, offset: int, phrases: _Phrases, formant_scale: float,
                    transition_s: float, sr: int) -> np.ndarray:
    """Apply the moving vowel formants to one phrase region, frame by frame (STFT).

    Args:
        segment: (length,) excitation of the region.
        offset: the region's first sample in the track.
    Returns:
        (length,) filtered signal (Hann analysis and synthesis windows, hop N/4).
    """
    size, hop = _STFT_SIZE, _STFT_HOP
    pad = size - hop
    n_frames = (len(segment) + pad) // hop + 1
    padded = np.zeros((n_frames + 3) * hop)
    padded[pad:pad + len(segment)] = segment
    window = np.hanning(size + 1)[:size].astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:n_frames]
    spectra = np.fft.rfft(frames.astype(np.float32) * window, axis=1)
    centres = offset - pad + np.arange(n_frames) * hop + size // 2
    envelope = _formant_envelope(centres, phrases, formant_scale, transition_s, sr)
    blocks = (np.fft.irfft(spectra * envelope, size, axis=1) * window).reshape(
        n_frames, size // hop, hop)
    out = np.zeros((n_frames + size // hop - 1, hop))
    for quarter in range(size // hop):
        out[quarter:quarter + n_frames] += blocks[:, quarter]
    return out.ravel()[pad:pad + len(segment)] / 1.5  # sum of Hann**2 at hop N/4


def _formant_envelope(centres: np.ndarray, phrases: _Phrases, formant_scale: float,
                      transition_s: float, sr: int) -> np.ndarray:
    """(frames, bins) float32 magnitude: three resonances gliding between vowel targets."""
    note = np.clip(np.searchsorted(phrases.note_start, centres, side="right") - 1, 0, None)
    weight = _smoothstep((centres - phrases.note_start[note]) / (transition_s * sr))[:, None]
    source = _VOWELS_HZ[phrases.note_from_vowel[note]]
    target = _VOWELS_HZ[phrases.note_vowel[note]]
    formants = (formant_scale * (source + (target - source) * weight)).astype(np.float32)
    bins = np.fft.rfftfreq(_STFT_SIZE, 1.0 / sr).astype(np.float32)
    envelope = np.full((len(centres), len(bins)), 0.02, dtype=np.float32)
    for j in range(3):
        offset = (bins[None, :] - formants[:, j:j + 1]) / np.float32(_FORMANT_WIDTHS_HZ[j] / 2)
        envelope += np.float32(_FORMANT_GAINS[j]) / (1.0 + offset * offset)
    singer = 0.3 / (1.0 + ((bins - 3000.0 * formant_scale) / 300.0) ** 2)  # singer's formant
    highpass = (bins / 90.0) ** 2 / (1.0 + (bins / 90.0) ** 2)
    tilt = 1.0 / np.sqrt(1.0 + (bins / 800.0) ** 2)  # with the saw's 1/k: -12 dB/octave
    return (envelope + singer[None, :]) * (highpass * tilt)[None, :]


def _phrase_gate(phrases: _Phrases, n: int, sr: int) -> np.ndarray:
    """(samples,) vocal gate: 1 in each region, exactly 0 outside.

    A 5 ms fade-in and a cosine fade over the last half of the region's tail; strictly
    positive on every sample of a region, so the segments are exactly the regions.
    """
    gate = np.zeros(n)
    for start, sung_end, end in zip(phrases.start, phrases.sung_end, phrases.end):
        length = int(end - start)
        if length <= 0:
            continue
        k = np.arange(length, dtype=np.float64)
        fade_in = np.minimum(1.0, (k + 1.0) / (0.005 * sr + 1.0))
        fade_length = max(1, (end - sung_end) // 2)
        fade_pos = np.clip(k - (length - fade_length) + 1.0, 0.0, None) / (fade_length + 1.0)
        gate[start:end] = fade_in * 0.5 * (1.0 + np.cos(np.pi * fade_pos))
    return gate


# --------------------------------------------------------------------------------------------
# Drums


_KICK_PATTERNS = ((0, 4, 8, 12), (0, 8, 10), (0, 6, 8, 11), (0, 3, 8, 10), (0, 7, 10))
_DRUM_LEVELS = {"kick": 1.0, "snare": 0.75, "hat": 0.3, "open": 0.3, "crash": 0.35,
                "tom_high": 0.6, "tom_mid": 0.6, "tom_low": 0.65}


def _render_drums(rng: np.random.Generator, song: _Song, room: _Room) -> np.ndarray:
    """Stereo drum stem (2, samples), float64."""
    hits = _drum_hits(rng, song)
    kit = _drum_kit(rng, song.sample_rate)
    pans = _drum_pans(rng)
    placed = {name: [_DRUM_LEVELS[name] * _pan(variant, pans[name]) for variant in variants]
              for name, variants in kit.items()}  # (2, length) each
    out = np.zeros((2, song.n_samples))
    for (name, position, velocity), draw in zip(hits, rng.random(len(hits))):
        _add_at(out, position, velocity * placed[name][int(draw * len(placed[name]))])
    return _with_reverb(out, room, rng.uniform(0.06, 0.15))


def _drum_pans(rng: np.random.Generator) -> dict[str, float]:
    hat = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.45))
    return {"kick": 0.0, "snare": rng.uniform(-0.1, 0.1), "hat": hat, "open": hat,
            "crash": -hat, "tom_high": -0.35, "tom_mid": 0.05, "tom_low": 0.4}


def _drum_kit(rng: np.random.Generator, sr: int) -> dict[str, list[np.ndarray]]:
    """Variants (different noise) of each drum sound, each (length,) with peak 1."""
    kick = (rng.uniform(110, 170), rng.uniform(42, 60), rng.uniform(0.02, 0.045),
            rng.uniform(0.15, 0.3))
    snare_hz = rng.uniform(170, 230)
    snare_decay = rng.uniform(0.09, 0.18)
    hat_hz = rng.uniform(280, 420)
    hat_decay = rng.uniform(0.02, 0.05)
    tom_hz = rng.uniform(0.85, 1.15) * np.array([210.0, 150.0, 105.0])
    kit: dict[str, list[np.ndarray]] = {name: [] for name in _DRUM_LEVELS}
    for variant in range(3):
        kit["kick"].append(_drum_tone(rng, sr, *kick, click=0.35))
        kit["snare"].append(_snare(rng, sr, snare_hz, snare_decay))
        kit["hat"].append(_cymbal(rng, sr, hat_hz, hat_decay, 0.2))
        if variant < 2:  # long sounds: two variants are enough
            kit["open"].append(_cymbal(rng, sr, hat_hz, rng.uniform(0.2, 0.35), 0.9))
            kit["crash"].append(_cymbal(rng, sr, 1.3 * hat_hz, rng.uniform(0.6, 0.9), 2.0))
        for name, hz in zip(("tom_high", "tom_mid", "tom_low"), tom_hz):
            kit[name].append(_drum_tone(rng, sr, hz, 0.7 * hz, 0.05, 0.22, click=0.1))
    return kit


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.max(np.abs(x))


def _drum_tone(rng: np.random.Generator, sr: int, start_hz: float, end_hz: float,
               pitch_decay_s: float, decay_s: float, *, click: float) -> np.ndarray:
    """Kick or tom: a sine whose pitch drops from start_hz to end_hz, plus a noise click."""
    t = np.arange(int(min(0.6, 3.0 * decay_s) * sr)) / sr
    freq = end_hz + (start_hz - end_hz) * np.exp(-t / pitch_decay_s)
    body = _sin_cycles(np.cumsum(freq) / sr) * np.exp(-t / decay_s)
    clicks = click * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.003)
    return _normalised(np.tanh(1.5 * (body + clicks)))


def _snare(rng: np.random.Generator, sr: int, tone_hz: float, decay_s: float) -> np.ndarray:
    """Snare: two drum modes plus band-limited noise (a first difference, then [1 2 1] / 4)."""
    t = np.arange(int(0.45 * sr)) / sr
    tone = (_sin_cycles(tone_hz * t) + 0.5 * _sin_cycles(1.7 * tone_hz * t)) * np.exp(-t / 0.05)
    noise = np.convolve(np.diff(rng.standard_normal(len(t) + 1)), [0.25, 0.5, 0.25], mode="same")
    return _normalised(0.5 * tone + noise * np.exp(-t / decay_s))


def _cymbal(rng: np.random.Generator, sr: int, base_hz: float, decay_s: float,
            seconds: float) -> np.ndarray:
    """Hat or crash: six detuned square waves (808-style ratios) and noise, high-passed."""
    t = np.arange(int(seconds * sr)) / sr
    ratios = np.array([1.0, 1.4471, 1.617, 1.9265, 2.5028, 2.6637])
    cycles = np.outer(ratios * base_hz, t) + rng.random((6, 1))
    metal = np.sum(cycles - np.floor(cycles) < 0.5, axis=0) - 3.0  # six square waves
    mixed = 0.15 * metal + rng.standard_normal(len(t))
    high = np.diff(mixed, n=2, prepend=[mixed[0], mixed[0]])
    return _normalised(high * np.exp(-t / decay_s))


def _drum_hits(rng: np.random.Generator, song: _Song) -> list[tuple[str, int, float]]:
    """(sound, onset sample, velocity) for the whole track on a 16th-note grid."""
    step = song.beat_samples / 4
    n_bars = math.ceil(song.n_samples / (16 * step))
    kick = _KICK_PATTERNS[rng.integers(len(_KICK_PATTERNS))]
    snare = (8,) if rng.random() < 0.2 else (4, 12)
    hats = range(0, 16, 1 if rng.random() < 0.35 else 2)
    fill_every = int(rng.choice([4, 8]))
    open_hat = bool(rng.random() < 0.5)
    hits: list[tuple[str, float, float]] = []
    crash_next = bool(rng.random() < 0.6)
    for bar in range(n_bars):
        fill_from = 8 if bar % fill_every == fill_every - 1 and rng.random() < 0.7 else 16
        grid: list[tuple[str, int, float]] = []
        if crash_next:
            grid.append(("crash", 0, 0.9))
        grid += [("kick", s, 1.0) for s in kick if s < fill_from]
        if rng.random() < 0.25:
            grid.append(("kick", int(rng.choice([2, 6, 14])), 0.7))
        grid += [("snare", s, 1.0) for s in snare if s < fill_from]
        if rng.random() < 0.3:
            grid.append(("snare", int(rng.choice([7, 9, 15])), 0.25))
        for s in hats:
            name = "open" if open_hat and s == 14 and rng.random() < 0.5 else "hat"
            if s < fill_from:
                grid.append((name, s, 0.9 if s % 4 == 0 else 0.6))
        grid += _fill(rng, fill_from)
        crash_next = fill_from < 16
        for name, s, velocity in grid:
            jitter = rng.normal(0.0, 0.0015 * song.sample_rate)
            hits.append((name, bar * 16 * step + s * step + jitter,
                         velocity * rng.uniform(0.85, 1.0)))
    return [(name, max(0, round(at)), v) for name, at, v in hits if at < song.n_samples]


def _fill(rng: np.random.Generator, fill_from: int) -> list[tuple[str, int, float]]:
    """Snare and tom hits from step `fill_from` to the end of the bar, getting louder."""
    if fill_from >= 16:
        return []
    voices = ("snare", "tom_high", "tom_mid", "tom_low")
    steps = range(fill_from, 16, int(rng.choice([1, 2])))
    order = np.sort(rng.integers(0, len(voices), len(steps)))
    return [(voices[v], s, 0.55 + 0.45 * (s - fill_from) / (16 - fill_from))
            for v, s in zip(order, steps)]


# --------------------------------------------------------------------------------------------
# Bass and other


_BASS_PATTERNS = (((0, 1), (1, 1), (2, 1), (3, 1)),
                  tuple((i / 2, 0.5) for i in range(8)),
                  ((0, 1.5), (1.5, 0.5), (2, 1.5), (3.5, 0.5)),
                  ((0, 0.75), (0.75, 0.75), (1.5, 1.0), (2.5, 0.5), (3, 1.0)))


def _notes_in_bars(song: _Song, pattern: Sequence[tuple[float, float]],
                   ) -> list[tuple[int, int, float]]:
    """A one-bar pattern of (beat, beats) repeated to the end of the track.

    Returns:
        (onset, length) in samples and the beat within the bar, per note.
    """
    notes = []
    for bar in range(math.ceil(song.n_samples / song.bar_samples)):
        for beat, beats in pattern:
            onset = round((4 * bar + beat) * song.beat_samples)
            if onset < song.n_samples:
                notes.append((onset, int(beats * song.beat_samples), beat))
    return notes


class _Note(NamedTuple):
    """One note: onset and length in samples, MIDI pitch, velocity in (0, 1]."""

    onset: int
    length: int
    midi: int
    velocity: float


def _bass_notes(rng: np.random.Generator, song: _Song) -> list[_Note]:
    """Chord roots in a one-bar rhythm, with octave jumps off the downbeat and some fifths."""
    low = int(rng.integers(28, 34))
    legato = rng.uniform(0.75, 0.95)
    pattern = _BASS_PATTERNS[rng.integers(len(_BASS_PATTERNS))]
    notes = []
    for onset, length, beat in _notes_in_bars(song, pattern):
        midi = _nearest_with_pc(low, song.chords[song.chord_at(onset)][0])
        jump = rng.random()
        midi += 12 if jump < 0.2 and beat > 0 else 7 if jump > 0.92 else 0
        notes.append(_Note(onset, int(length * legato), midi, rng.uniform(0.8, 1.0)))
    return notes


def _render_bass(rng: np.random.Generator, song: _Song, room: _Room) -> np.ndarray:
    """Stereo bass stem (2, samples): `_bass_notes` played by a darkening pluck."""
    notes = _bass_notes(rng, song)
    tone = {"n_harmonics": 10, "rolloff": rng.uniform(0.9, 1.4),
            "decay": rng.uniform(1.0, 3.0), "darkening": rng.uniform(3.0, 8.0)}
    out = _play_plucks(notes, song, tone)
    return _with_reverb(_pan(out, rng.uniform(-0.05, 0.05)), room, rng.uniform(0.02, 0.05))


def _play_plucks(notes: Sequence[_Note], song: _Song, tone: dict[str, float]) -> np.ndarray:
    """(samples,) sum of `_pluck` notes; each distinct (pitch, length) is rendered once."""
    cache: dict[tuple[int, int], np.ndarray] = {}
    out = np.zeros(song.n_samples)
    for note in notes:
        key = (note.midi, note.length)
        if key not in cache:
            cache[key] = _pluck(float(_midi_hz(note.midi)), note.length, song.sample_rate,
                                **tone)  # type: ignore[arg-type]
        _add_at(out, note.onset, note.velocity * cache[key])
    return out


@dataclasses.dataclass(frozen=True)
class _OtherParts:
    """The notes of the 'other' stem: held chords and/or an arpeggio (either may be empty).

    Attributes:
        chords: (onset, length, MIDI pitches) per chord span, in samples.
        arpeggio: plucked notes.
        arpeggio_level: gain of the arpeggio against the chords.
    """

    chords: list[tuple[int, int, tuple[int, ...]]]
    arpeggio: list[_Note]
    arpeggio_level: float


def _other_parts(rng: np.random.Generator, song: _Song) -> _OtherParts:
    use_chords = rng.random() > 0.15
    use_arpeggio = not use_chords or rng.random() < 0.6
    return _OtherParts(chords=_chord_spans(rng, song) if use_chords else [],
                       arpeggio=_arpeggio_notes(rng, song) if use_arpeggio else [],
                       arpeggio_level=rng.uniform(0.4, 0.8))


def _render_other(rng: np.random.Generator, song: _Song, room: _Room) -> np.ndarray:
    """Stereo 'other' stem (2, samples): detuned pads and/or a plucked arpeggio."""
    parts = _other_parts(rng, song)
    out = np.zeros((2, song.n_samples))
    if parts.chords:
        out += _pads(rng, song, parts.chords)
    if parts.arpeggio:
        tone = {"n_harmonics": 14, "rolloff": 1.0, "decay": rng.uniform(3.0, 6.0),
                "darkening": rng.uniform(4.0, 10.0)}
        plucks = _play_plucks(parts.arpeggio, song, tone)
        out += parts.arpeggio_level * _pan(plucks, rng.uniform(-0.5, 0.5))
    return _with_reverb(out, room, rng.uniform(0.18, 0.35))


def _chord_midi(song: _Song, chord: int, low: int) -> list[int]:
    root = _nearest_with_pc(low, song.chords[chord][0])
    return [root + (pc - root) % 12 for pc in song.chords[chord]]


def _chord_spans(rng: np.random.Generator,
                 song: _Song) -> list[tuple[int, int, tuple[int, ...]]]:
    """One voiced chord per chord span (triad, sometimes with the root an octave up)."""
    span = int(song.chord_beats * song.beat_samples)
    low = int(rng.integers(52, 58))
    add_octave = bool(rng.random() < 0.5)
    spans = []
    for onset in range(0, song.n_samples, span):
        notes = _chord_midi(song, int(song.chord_at(onset)), low)
        spans.append((onset, span, tuple(notes + [notes[0] + 12] * add_octave)))
    return spans


def _pads(rng: np.random.Generator, song: _Song,
          chords: list[tuple[int, int, tuple[int, ...]]]) -> np.ndarray:
    """(2, samples) detuned soft-saw chords, slow attack, release into the next chord,
    the two detuned voices spread left and right."""
    sr = song.sample_rate
    attack_s, release_s = rng.uniform(0.15, 0.6), rng.uniform(0.3, 0.6)
    detune_cents = rng.uniform(4.0, 12.0)
    spread = _pan_gains(np.array([-1.0, 1.0]) * rng.uniform(0.3, 0.7))  # (2 outputs, 2 voices)
    rendered: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    out = np.zeros((2, song.n_samples))
    for onset, span, notes in chords:
        if (span, notes) not in rendered:
            length = span + int(release_s * sr)
            t = np.arange(length) / sr
            envelope = (np.clip(t / attack_s, 0.0, 1.0)
                        * np.clip(1.0 - (t - span / sr) / release_s, 0.0, 1.0))
            voices = [sum(_wavetable(float(_midi_hz(m + sign * detune_cents / 100)), length,
                                     sr, rolloff=1.6, phase=rng.random()) for m in notes)
                      for sign in (-1, 1)]
            rendered[span, notes] = spread @ np.stack(voices) * (envelope / len(notes))
        pad = rendered[span, notes]
        stop = min(song.n_samples, onset + pad.shape[1])
        out[:, onset:stop] += pad[:, :stop - onset]
    return out


def _arpeggio_notes(rng: np.random.Generator, song: _Song) -> list[_Note]:
    """Chord tones on 8th or 16th notes (up, down or up-down), accents on the beat."""
    per_beat = int(rng.choice([2, 4]))
    order = [(0, 1, 2, 3), (3, 2, 1, 0), (0, 1, 2, 3, 2, 1)][rng.integers(3)]
    low = int(rng.integers(60, 67))
    length = int(0.9 * song.beat_samples / per_beat * rng.uniform(1.0, 2.0))
    pattern = [(i / per_beat, 1 / per_beat) for i in range(4 * per_beat)]
    notes = []
    for step, (onset, _, _) in enumerate(_notes_in_bars(song, pattern)):
        chord = _chord_midi(song, int(song.chord_at(onset)), low)
        midi = (chord + [chord[0] + 12])[order[step % len(order)]]
        notes.append(_Note(onset, length, midi, 0.9 if step % per_beat == 0 else 0.7))
    return notes


# --------------------------------------------------------------------------------------------
# Levels and mixture


_BLOCK = 1 << 16  # samples per block in the mixing loops (keeps the arrays in cache)


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


# --------------------------------------------------------------------------------------------
# Engine "fluidsynth": drums, bass and other from General MIDI

_GM_DRUMS = {"kick": 36, "snare": 38, "hat": 42, "open": 46, "crash": 49, "tom_high": 50,
             "tom_mid": 47, "tom_low": 43}
_GM_KITS = (0, 8, 16, 25, 32)  # Standard, Room, Power, TR-808, Jazz
_GM_BASSES = (32, 33, 34, 38)  # acoustic, finger, pick, synth bass
_GM_CHORDS = (0, 4, 16, 48, 49, 89)  # piano, e-piano, organ, strings, slow strings, warm pad
_GM_PLUCKS = (0, 5, 11, 24, 46)  # piano, e-piano 2, vibraphone, nylon guitar, harp
_MIDI_PPQ = 960


def _render_band_fluidsynth(rngs: Sequence[np.random.Generator], song: _Song,
                            room: _Room) -> dict[str, np.ndarray]:
    """Drums, bass and other (each (2, samples) float64) rendered by FluidSynth.

    Args:
        rngs: the generators of drums, bass and other. The notes are drawn first, as in the
            synth engine, so both engines play the same parts for the same seed.

    The parts are written as General MIDI files and played with FluidR3_GM.sf2 (FluidSynth's
    own reverb and chorus off; the track's room is added as in the synth engine).
    """
    drums_rng, bass_rng, other_rng = rngs
    drums = [_midi_note(9, note.midi, note)
             for note in _drum_notes(_drum_hits(drums_rng, song), song.sample_rate)]
    drums.append(_midi_program(9, int(drums_rng.choice(_GM_KITS)), 0.0))  # sorted to time 0
    bass = [_midi_note(0, note.midi, note) for note in _bass_notes(bass_rng, song)]
    bass.append(_midi_program(0, int(bass_rng.choice(_GM_BASSES)), bass_rng.uniform(-0.05, 0.05)))
    parts = _other_parts(other_rng, song)
    other = [_midi_program(0, int(other_rng.choice(_GM_CHORDS)), 0.0),
             _midi_program(1, int(other_rng.choice(_GM_PLUCKS)), other_rng.uniform(-0.5, 0.5),
                           volume=int(100 * parts.arpeggio_level))]
    for onset, span, notes in parts.chords:
        other += [_midi_note(0, midi, _Note(onset, span, midi, 0.7)) for midi in notes]
    other += [_midi_note(1, note.midi, note) for note in parts.arpeggio]
    sends = {"drums": drums_rng.uniform(0.06, 0.15), "bass": bass_rng.uniform(0.02, 0.05),
             "other": other_rng.uniform(0.18, 0.35)}
    with tempfile.TemporaryDirectory(prefix="bsmamba2_render_") as folder:
        paths = []
        for name, events in (("drums", drums), ("bass", bass), ("other", other)):
            paths.append(Path(folder) / f"{name}.mid")
            paths[-1].write_bytes(_midi_file(events, song))
        rendered = _fluidsynth(paths, song.sample_rate, song.n_samples)
    return {name: _with_reverb(stereo, room, sends[name])
            for name, stereo in zip(("drums", "bass", "other"), rendered)}


_MidiEvent = tuple[int, int, bytes]  # (onset in samples, order within a time, message)


def _drum_notes(hits: list[tuple[str, int, float]], sample_rate: int) -> list[_Note]:
    """General MIDI drum notes from `_drum_hits`.

    Each note lasts until the next hit of the same sound (at most 2 s), so that no note-off
    cuts a later hit short.
    """
    longest = 2 * sample_rate
    notes = []
    for name, key in _GM_DRUMS.items():
        onsets = sorted((at, velocity) for sound, at, velocity in hits if sound == name)
        following = [at for at, _ in onsets[1:]] + [onsets[-1][0] + longest] if onsets else []
        notes += [_Note(at, min(end - at, longest), key, velocity)
                  for (at, velocity), end in zip(onsets, following)]
    return notes


def _midi_program(channel: int, program: int, pan: float, volume: int = 100) -> list[_MidiEvent]:
    """Program change, pan (CC 10), volume (CC 7), and reverb/chorus sends (CC 91/93) at 0."""
    controls = ((10, round(64 + 63 * pan)), (7, volume), (91, 0), (93, 0))
    return [(0, 0, bytes([0xC0 | channel, program]))] + [
        (0, 0, bytes([0xB0 | channel, number, value])) for number, value in controls]


def _midi_note(channel: int, midi: int, note: _Note) -> list[_MidiEvent]:
    velocity = int(np.clip(round(20 + 107 * note.velocity), 1, 127))
    return [(note.onset, 2, bytes([0x90 | channel, midi, velocity])),
            (note.onset + max(note.length, 1), 1, bytes([0x80 | channel, midi, 0]))]


def _midi_file(parts: list[list[_MidiEvent]], song: _Song) -> bytes:
    """A format-0 Standard MIDI File of the events (note-offs before note-ons at a tick)."""
    ticks_per_sample = _MIDI_PPQ / song.beat_samples
    events = sorted((round(at * ticks_per_sample), order, message)
                    for part in parts for at, order, message in part)
    tempo = round(song.beat_samples / song.sample_rate * 1e6)  # microseconds per beat
    track = bytearray(_vlq(0) + b"\xff\x51\x03" + tempo.to_bytes(3, "big"))
    last = 0
    for tick, _, message in events:
        track += _vlq(tick - last) + message
        last = tick
    end = round((song.n_samples + 0.5 * song.sample_rate) * ticks_per_sample)
    track += _vlq(max(0, end - last)) + b"\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1]) + _MIDI_PPQ.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def _fluidsynth(midi_paths: Sequence[Path], sample_rate: int,
                n_samples: int) -> list[np.ndarray]:
    """Render MIDI files with FluidSynth, one process each, all started at once.

    Returns:
        One (2, n_samples) float64 array per file, cut or zero-padded to n_samples.

    Raises:
        RuntimeError: a fluidsynth process failed (its message is included).
    """
    import soundfile
    processes = []
    for midi_path in midi_paths:
        command = ["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "0.6",
                   "-r", str(sample_rate), "-O", "float", "-T", "wav",
                   "-F", str(midi_path.with_suffix(".wav")), str(FLUIDSYNTH_SOUNDFONT),
                   str(midi_path)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    messages = [process.communicate()[0] for process in processes]
    outputs = []
    for midi_path, process, message in zip(midi_paths, processes, messages):
        wav_path = midi_path.with_suffix(".wav")
        if process.returncode != 0 or not wav_path.is_file():
            raise RuntimeError(f"fluidsynth failed (exit {process.returncode}) on "
                               f"{midi_path.name}: {message.strip()}")
        audio, _ = soundfile.read(str(wav_path), dtype="float64", always_2d=True)
        kept = audio[:n_samples].T
        out = np.zeros((2, n_samples))
        out[:, :kept.shape[1]] = kept[:2] if len(kept) >= 2 else kept[0]
        outputs.append(out)
    return outputs
