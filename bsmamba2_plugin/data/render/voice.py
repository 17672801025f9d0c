"""The vocal stem: phrase plan, singing synthesis, gating, and reading the activity back."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .dsp import _pan, _polyblep_saw, _Room, _sin_cycles, _smoothstep, _with_reverb
from .song import _midi_hz, _Song

__all__ = ["MIN_GAP_SECONDS", "MOSTLY_SILENT_RATIO", "vocal_activity"]

MIN_GAP_SECONDS = 0.5
MOSTLY_SILENT_RATIO = 0.2
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
