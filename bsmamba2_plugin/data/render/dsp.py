"""Signal primitives (oscillators, envelopes, panning) and the reverb rooms.

All vectorised numpy; mono signals are (samples,), stereo ones (2, samples).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

_REVERB_FACTOR = 4
_BLOCK = 1 << 16  # samples per block in the mixing loops (keeps the arrays in cache)


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
