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

Modules, by what they make: `tracks` (the entry points and argument checks), `song` (tempo,
key, chords), `dsp` (signal primitives and the reverb), `voice` (the vocal line and its
activity), `instruments` (drums, bass, pads, arpeggios), `mixing` (levels, the mixture, the
WAV and JSON files) and `fluidsynth_engine` (the "fluidsynth" engine).
"""

from __future__ import annotations

from .fluidsynth_engine import FLUIDSYNTH_SOUNDFONT
from .mixing import PEAK_LIMIT, RENDERER_VERSION, STEMS, RenderedTrack
from .tracks import ENGINES, MIN_SECONDS, SPLITS, render_dataset, render_track
from .voice import MIN_GAP_SECONDS, MOSTLY_SILENT_RATIO, vocal_activity

__all__ = [
    "ENGINES",
    "FLUIDSYNTH_SOUNDFONT",
    "MIN_GAP_SECONDS",
    "MIN_SECONDS",
    "MOSTLY_SILENT_RATIO",
    "PEAK_LIMIT",
    "RENDERER_VERSION",
    "SPLITS",
    "STEMS",
    "RenderedTrack",
    "render_dataset",
    "render_track",
    "vocal_activity",
]
