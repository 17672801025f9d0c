"""The song every stem of a track follows: tempo, key, scale and chord progression."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as 0-based scale degrees (diatonic triads of the track's key).
_MAJOR_PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (1, 4, 0, 0),
                       (0, 3, 0, 4))
_MINOR_PROGRESSIONS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 5, 6), (0, 3, 6, 2))


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
