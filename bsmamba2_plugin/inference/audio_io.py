"""Reading a user's audio for `bsmamba2 separate` and `bsmamba2 evaluate` (issue 23).

Every entry point takes the same files:
- `read_song` (separate) reads as msst-inference does: librosa, which decodes what
  soundfile reads and, through a system decoder (FFmpeg), formats such as m4a; a file at
  another sample rate is resampled on read to the model's (soxr_hq, librosa's default, as
  msst-inference loads it), said in one line. Without librosa (installed with the msst
  extra) soundfile reads the file and another rate is an error naming the fix.
- `read_track_file` (evaluate) reads a MUSDB-layout stem with soundfile, as msst-valid
  does; `resample` brings a track to the model's rate and the estimate back, as msst-valid
  does for a file at another rate.
Both refuse a WAV whose header announces more audio than it holds (`wav_cut_short`), an
empty file and NaN/Inf samples, with one line that names the file and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserValueError
from ..training.audio_files import wav_cut_short

__all__ = ["read_song", "read_track_file", "resample"]

RESAMPLER = "soxr_hq"  # librosa.load's default: what msst-inference reads files with


def _check(path: Path, audio: np.ndarray, where: str) -> None:
    if audio.shape[-1] == 0:
        raise UserValueError(f"{path}: the file holds 0 samples. Fix: replace the file{where}.")
    if not np.isfinite(audio).all():
        raise UserValueError(f"{path}: the audio holds NaN or infinite samples. Fix: repair the "
                             f"file{where}; nothing was written for it.")


def _decoder_errors() -> tuple[type[BaseException], ...]:
    try:
        from audioread.exceptions import DecodeError
    except ImportError:
        return ()
    return (DecodeError,)


def read_song(path: Path, sample_rate: int, echo: Callable[[str], None]) -> np.ndarray:
    """A song at `sample_rate`, read as msst-inference reads it.

    Returns: (channels, samples) float32, C-contiguous.

    Raises:
        ValueError: unreadable, cut short, empty or non-finite audio (one line, with the fix).
        ModuleNotFoundError: another sample rate without librosa.
    """
    problem = wav_cut_short(path)
    if problem:
        raise UserValueError(problem)
    try:
        import librosa
    except ModuleNotFoundError:
        librosa = None
    try:
        if librosa is None:
            import soundfile as sf

            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            audio = audio.T
        else:
            with warnings.catch_warnings():  # librosa announces its fallback to a decoder
                warnings.filterwarnings("ignore", message="PySoundFile failed")
                warnings.filterwarnings("ignore", message=".*__audioread_load",
                                        category=FutureWarning)
                audio, rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
    except _decoder_errors() as error:
        raise UserValueError(
            f"{path}: soundfile cannot read this format and no system decoder for it is "
            f"installed ({type(error).__name__}). Fix: install FFmpeg (e.g. apt install "
            f"ffmpeg), which librosa and msst-inference use for such files, or convert the "
            f"file to WAV or FLAC.") from error
    except (RuntimeError, EOFError, ValueError) as error:  # corrupt, empty, unknown format
        raise UserValueError(f"{path}: cannot read the audio ({' '.join(str(error).split())}). "
                             f"Fix: replace the file, or convert it to WAV or FLAC.") from error
    audio = audio[np.newaxis] if audio.ndim == 1 else audio
    _check(path, audio, "")
    if rate != sample_rate:
        if librosa is None:
            raise ModuleNotFoundError(
                f"{path} is at {rate} Hz and the model takes {sample_rate} Hz; resampling "
                f"needs librosa. Fix: pip install librosa (or 'bsmamba2-plugin[msst]'), or "
                f"resample the file first.", name="librosa")
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate,
                                 res_type=RESAMPLER)
        echo(f"{path}: {rate} Hz, resampled on read to {sample_rate} Hz, the model's rate "
             f"(as msst-inference reads it); the stems are written at {sample_rate} Hz")
    return np.ascontiguousarray(audio, dtype=np.float32)


def read_track_file(path: Path) -> tuple[np.ndarray, int]:
    """One stem of a track folder, checked. Returns ((channels, samples) view, rate)."""
    import soundfile as sf

    problem = wav_cut_short(path)
    if problem:
        raise UserValueError(f"{problem[:-1]}, or move its track folder out of --data.")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except RuntimeError as error:  # corrupt, empty, unknown format
        raise UserValueError(f"{path}: cannot read the audio ({error}). Fix: replace the file, "
                             f"or move its track folder out of --data.") from error
    _check(path, audio.T, ", or move its track folder out of --data")
    # (channels, samples) view of the (samples, channels) array: a long track is not copied
    return audio.T, rate


def resample(audio: np.ndarray, rate: int, target: int, length: int | None = None
             ) -> np.ndarray:
    """(channels, samples) float32 at `target` Hz (librosa, soxr_hq), optionally cut or
    zero-padded to `length` samples."""
    try:
        import librosa
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"audio at {rate} Hz for a model at {target} Hz needs librosa to resample. Fix: "
            f"pip install librosa (or 'bsmamba2-plugin[msst]').", name="librosa") from error
    out = librosa.resample(np.asarray(audio, dtype=np.float32), orig_sr=rate, target_sr=target,
                           res_type=RESAMPLER)
    if length is not None:
        out = librosa.util.fix_length(out, size=length, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)
