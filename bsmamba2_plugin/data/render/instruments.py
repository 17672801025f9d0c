"""The band: drum kit and patterns, bass line, chord pads and arpeggios ("synth" engine).

The note choices (`_drum_hits`, `_bass_notes`, `_other_parts`) are also what the
"fluidsynth" engine plays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .dsp import _add_at, _pan, _pan_gains, _pluck, _Room, _sin_cycles, _wavetable, _with_reverb
from .song import _midi_hz, _nearest_with_pc, _Song

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
