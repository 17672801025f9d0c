"""Engine "fluidsynth": the band's parts as General MIDI files played by FluidSynth.

Needs the `fluidsynth` program and the FluidR3_GM.sf2 bank (Debian: `apt-get install
fluidsynth fluid-soundfont-gm`); the vocals stay synthesised.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import UserRuntimeError
from .dsp import _Room, _with_reverb
from .instruments import _bass_notes, _drum_hits, _Note, _other_parts
from .song import _Song

__all__ = ["FLUIDSYNTH_SOUNDFONT", "missing_requirements"]

FLUIDSYNTH_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def missing_requirements() -> list[str]:
    """What this machine lacks for the engine (empty when it has everything)."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("the `fluidsynth` program")
    if not FLUIDSYNTH_SOUNDFONT.is_file():
        missing.append(f"the General MIDI soundfont {FLUIDSYNTH_SOUNDFONT}")
    return missing


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
            raise UserRuntimeError(f"fluidsynth failed (exit {process.returncode}) on "
                                   f"{midi_path.name}: {message.strip()}")
        audio, _ = soundfile.read(str(wav_path), dtype="float64", always_2d=True)
        kept = audio[:n_samples].T
        out = np.zeros((2, n_samples))
        out[:, :kept.shape[1]] = kept[:2] if len(kept) >= 2 else kept[0]
        outputs.append(out)
    return outputs
