"""Checks of a user's audio files before they are trained on or separated (issue 23).

- `wav_cut_short`: a WAV whose header announces more audio than the file holds (an
  interrupted copy, download or export). Decoders read what is there without a word: a
  file announcing 25 s that holds 1000 bytes was separated to 239 frames.
- `training_set_problem`: msst's training reader takes samples as they are: a 48 kHz
  stem in a 44.1 kHz set trains at the wrong pitch and tempo, a mono stem among stereo
  ones is duplicated, and channels beyond two are dropped. A training set whose files
  disagree with `audio.sample_rate`, or mix channel counts, is refused at the start with
  the list of offending files.

Refused, not resampled on the fly: msst reads a random window of every stem for every
example, so resampling in the DataLoader would redo the work for every step (and a 22 kHz
stem brought up to 44.1 kHz still lacks the top octave the model is meant to learn). One
conversion before training is cheaper and visible; the message names the files.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

__all__ = ["wav_cut_short", "training_set_problem"]

_WAVE_IDS = (b"RIFF", b"WAVE")
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # written by streaming encoders that cannot seek back


def wav_cut_short(path: str | os.PathLike) -> str | None:
    """The problem with a WAV file cut short, or None (complete, or not a RIFF WAV).

    Reads the RIFF chunk headers only: the `data` chunk's declared size against the bytes
    that follow it.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or (head[:4], head[8:12]) != _WAVE_IDS:
                return None
            position, block_align, rate = 12, 0, 0
            while position + 8 <= size:
                handle.seek(position)
                chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
                if chunk_id == b"fmt " and chunk_size >= 16:
                    fmt = handle.read(16)
                    _, _, rate, _, block_align = struct.unpack("<HHIIH", fmt[:14])
                elif chunk_id == b"data":
                    present = size - position - 8
                    if chunk_size in _UNKNOWN_SIZES or chunk_size <= present or not block_align:
                        return None
                    announced, held = chunk_size // block_align, present // block_align
                    seconds = f" ({announced / rate:.1f} s)" if rate else ""
                    held_seconds = f" ({held / rate:.3f} s)" if rate else ""
                    return (f"{os.fspath(path)}: the WAV header announces {announced} frames"
                            f"{seconds}, but the file holds {held}{held_seconds}: it was cut "
                            f"short (an interrupted copy, download or export). Fix: copy or "
                            f"export the file again.")
                position += 8 + chunk_size + (chunk_size & 1)
    except (OSError, struct.error):
        return None  # unreadable: the decoder's own error says so
    return None


def _listing(items: list[str], shown: int = 4) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def training_set_problem(files: Iterable[str], sample_rate: int, source: str) -> str | None:
    """What is wrong with a training set's stem files, in one line, or None.

    Args:
        files: every stem file the dataset may read.
        sample_rate: `audio.sample_rate` of the config (msst's default 44100).
        source: the data path(s), for the message.

    Returns:
        None when every file is readable at `sample_rate`, complete and all files have the
        same channel count (1 or 2); else the problem, the offending files and the fix.
    """
    import soundfile as sf

    rates: list[str] = []
    cut: list[str] = []
    channels: dict[int, list[str]] = {}
    unreadable: list[str] = []
    for path in sorted(set(files)):
        try:
            info = sf.info(path)
        except (RuntimeError, OSError) as error:
            unreadable.append(f"{path} ({' '.join(str(error).split())[:80]})")
            continue
        if info.samplerate != sample_rate:
            rates.append(f"{path} ({info.samplerate} Hz)")
        if wav_cut_short(path):
            cut.append(path)
        channels.setdefault(info.channels, []).append(path)
    if unreadable:
        return (f"{source}: {len(unreadable)} training file(s) cannot be read: "
                f"{_listing(unreadable)}. Fix: replace them, or move their track folders out "
                f"of the data path.")
    if rates:
        return (f"{source}: {len(rates)} training file(s) are not at audio.sample_rate "
                f"{sample_rate} Hz: {_listing(rates)}. msst reads samples as they are, so they "
                f"would train at the wrong pitch and tempo. Fix: resample them to {sample_rate} "
                f"Hz (e.g. sox IN.wav -r {sample_rate} OUT.wav), or set audio.sample_rate to "
                f"theirs if the whole set is at that rate.")
    if cut:
        return (f"{source}: {len(cut)} training WAV file(s) are cut short (the header "
                f"announces more audio than the file holds): {_listing(cut)}. Fix: copy or "
                f"export them again.")
    if len(channels) > 1 or any(count > 2 for count in channels):
        counts = sorted(channels)
        odd = [f"{path} ({count} ch)" for count in counts
               for path in channels[count] if count != 2]
        return (f"{source}: the training files have {' and '.join(map(str, counts))} "
                f"channels; msst duplicates mono and drops channels beyond two, so the "
                f"stems of one mixture would not match. Files not in stereo: "
                f"{_listing(odd)}. Fix: convert them to stereo (e.g. sox IN.wav -c 2 "
                f"OUT.wav), or the whole set to one channel count.")
    return None
