"""Separation metrics: uSDR, museval-exact framewise SDR / cSDR, aggregation, paired bootstrap.

Every function takes one track as a ``(c, t)`` array (channels, samples; a 1-D ``(t,)``
array is one channel), as numpy arrays or torch tensors, and computes in float64. The
estimate is cut or zero-padded at the end to the reference's length, as museval's
``pad_or_truncate`` does. Importing this module does not import torch.

Definitions (docs/evaluation.md):

- ``usdr``: utterance-level SDR, 10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)) over
  all channels and samples of the track, eps = 1e-8. This is msst 0.1.0's
  ``msst.utils.metrics.sdr`` for one track; MDX21 and BSMamba2's code use eps = 1e-7.
- ``framewise_sdr`` / ``csdr``: the SDR of museval 0.4.1 (BSSEval v4 images,
  ``museval.evaluate(..., win=rate, hop=rate, mode="v4")``) for one evaluated source, and
  its per-track ``np.nanmedian`` (SiSEC18 "cSDR" before the median over tracks). With
  time-invariant filters the images decomposition's three error terms add up to s_hat - s,
  so each frame's SDR is 10 log10(sum s^2 / sum (s_hat - s)^2) over the frame's samples of
  both channels; the 512-tap filters only matter for ISR/SIR/SAR. The museval rules kept
  exactly (read in museval 0.4.1's ``metrics.py``):

  * grid: window = hop = ``sample_rate`` samples; frame k covers
    [k * hop, k * hop + win); there are floor((t - win + hop) / hop) frames when
    win < t, so a trailing partial second is dropped; when t <= win there is one frame,
    the whole signal;
  * silent frames: a frame is NaN when, for the reference or for the estimate, the sum over
    channels is exactly 0 at every sample of the frame (museval ``_any_source_silent``:
    ``np.all(np.sum(x, axis=channels) == 0)``). It is an exact test on the channel sum, not
    a threshold, so a frame whose channels are exact negatives of each other counts as
    silent too, and one silent channel does not make a frame silent (for stereo the test
    gives the same answer in any float dtype);
  * no epsilon anywhere: SDR = 10 log10(num / den) with num the reference energy; a zero
    error energy gives +inf (museval ``_safe_db``); a reference so small that its energy
    underflows to 0 gives -inf.

Deviations from museval, with reasons:

- museval sums its three error terms, so float round-off could leave a tiny error where
  the estimate equals the reference; here that frame is +inf exactly (museval also gave
  +inf for a perfect estimate in a check with version 0.4.1);
- museval raises ``ValueError`` when the whole reference or estimate is silent (channel
  sum all zero); here every frame is NaN and ``csdr`` returns NaN, so a batch of tracks
  does not stop at one silent stem;
- only one source is scored. museval's NaN mask is the union over all sources scored
  jointly (docs/evaluation.md), so scoring vocals together with accompaniment can give
  more NaN frames; score the other stems with their own calls for the same mask rule.

``usdr`` differs from msst's validation only in length handling: msst cuts both signals to
the shorter length, here the estimate is padded or cut to the reference length.

``aggregate`` and ``paired_bootstrap_ci`` summarise per-track values over tracks
(docs/evaluation.md, paired comparison).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "aggregate",
    "as_float64",
    "csdr",
    "framewise_sdr",
    "match_length",
    "paired_bootstrap_ci",
    "usdr",
]

# Bootstrap resamples are drawn in blocks of at most this many indices (memory bound).
_BOOTSTRAP_BLOCK_ELEMENTS = 2_000_000


def _to_numpy(values: Any) -> Any:
    """A torch tensor as a float64 CPU numpy array; anything else unchanged."""
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is not None and isinstance(values, torch.Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64).numpy()
    return values


def as_float64(signal: Any, name: str = "signal") -> np.ndarray:
    """One track as a float64 ``(c, t)`` numpy array, from a numpy array or torch tensor.

    Args:
        signal: ``(c, t)`` or ``(t,)`` array-like or torch tensor (any device, real dtype).
        name: the argument's name, for error messages.

    Returns:
        ``(c, t)`` float64 numpy array (``(1, t)`` for a 1-D input); no copy when the input
        already is a float64 numpy array.

    Raises:
        TypeError: for a non-real dtype.
        ValueError: for inputs that are not 1-D or 2-D.
    """
    return _as_track(signal, name, keep_float32=False)


def _as_track(signal: Any, name: str, *, keep_float32: bool) -> np.ndarray:
    """`as_float64`; with keep_float32 a float32 numpy array stays as it is (no copy)."""
    array = np.asarray(_to_numpy(signal))
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real audio samples, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{name}: expected shape (channels, samples) or (samples,), got "
                         f"{array.shape}; score one track (and one stem) per call")
    if keep_float32 and array.dtype == np.float32:
        return array
    return np.asarray(array, dtype=np.float64)


def match_length(reference: Any, estimate: Any, *, estimate_name: str = "estimate",
                 keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 ``(c, t)``, the estimate cut or zero-padded to the reference.

    Args:
        reference: ``(c, t)`` or ``(t,)``.
        estimate: ``(c, t')`` or ``(t',)`` with the reference's channel count.
        estimate_name: the estimate's name, for error messages.

        keep_float32: leave float32 numpy inputs in float32 (callers that compute in
            float64 block by block, so that a long track is never copied whole).

    Returns:
        ``(reference, estimate)``, both ``(c, t)`` float64 (or float32, see keep_float32).

    Raises:
        ValueError: when the channel counts differ.
    """
    ref = _as_track(reference, "reference", keep_float32=keep_float32)
    est = _as_track(estimate, estimate_name, keep_float32=keep_float32)
    if est.shape[0] != ref.shape[0]:
        raise ValueError(f"{estimate_name} has {est.shape[0]} channels, the reference has "
                         f"{ref.shape[0]}; expected (channels, samples) arrays with equal "
                         "channel counts (transpose a (samples, channels) array)")
    n_samples = ref.shape[1]
    if est.shape[1] > n_samples:
        est = est[:, :n_samples]
    elif est.shape[1] < n_samples:
        est = np.pad(est, ((0, 0), (0, n_samples - est.shape[1])))
    return ref, est


#: uSDR's epsilon (msst's `sdr`)
USDR_EPS = 1e-8


def usdr(reference: Any, estimate: Any, eps: float = USDR_EPS) -> float:
    """Track-level SDR in dB (msst ``sdr``, MDX21 style), channels and samples pooled.

    Args:
        reference: ``(c, t)`` or ``(t,)`` target.
        estimate: ``(c, t')`` or ``(t',)``; cut or zero-padded to ``t``.
        eps: added to both energies (msst: 1e-8; MDX21 / BSMamba2 code: 1e-7).

    Returns:
        10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)), in dB.
    """
    ref, est = match_length(reference, estimate)
    num = np.sum(np.square(ref)) + eps
    den = np.sum(np.square(ref - est)) + eps
    return float(10 * np.log10(num / den))


def _museval_n_frames(n_samples: int, win: int, hop: int) -> int:
    if n_samples == 0:
        return 0
    if win < n_samples:
        return (n_samples - win + hop) // hop
    return 1


def framewise_sdr(reference: Any, estimate: Any, sample_rate: int = 44100) -> np.ndarray:
    """museval v4 framewise SDR (1-s windows, 1-s hop) of one source, in dB.

    Args:
        reference: ``(c, t)`` or ``(t,)`` target at ``sample_rate``.
        estimate: ``(c, t')`` or ``(t',)``; cut or zero-padded to ``t``.
        sample_rate: Hz; the window and hop are ``sample_rate`` samples.

    Returns:
        ``(n_frames,)`` float64: NaN where museval skips the frame (reference or estimate
        channel sum exactly zero over the whole frame), +inf where the error is exactly
        zero. ``n_frames = t // sample_rate`` for ``t > sample_rate``, 1 for
        ``0 < t <= sample_rate``, 0 for ``t = 0``.

    Raises:
        ValueError: for a non-positive ``sample_rate`` or mismatched channel counts.
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    ref, est = match_length(reference, estimate)
    n_channels, n_samples = ref.shape
    win = hop = int(sample_rate)
    n_frames = _museval_n_frames(n_samples, win, hop)
    if n_frames == 0:
        return np.empty(0)
    frame_len = min(win, n_samples)
    # (c, t) -> (c, frames, frame_len); frames do not overlap because win == hop.
    ref_frames = ref[:, : n_frames * frame_len].reshape(n_channels, n_frames, frame_len)
    est_frames = est[:, : n_frames * frame_len].reshape(n_channels, n_frames, frame_len)
    is_silent = (np.all(ref_frames.sum(axis=0) == 0, axis=-1)
                 | np.all(est_frames.sum(axis=0) == 0, axis=-1))
    num = np.einsum("cft,cft->f", ref_frames, ref_frames)
    err = est_frames - ref_frames
    return frame_sdr(num, np.einsum("cft,cft->f", err, err), is_silent)


def frame_sdr(num: np.ndarray, den: np.ndarray, is_silent: np.ndarray) -> np.ndarray:
    """museval's per-frame SDR from the frames' reference and error energies: +inf where
    the error is exactly zero, NaN where the frame is silent (see `framewise_sdr`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr = 10 * np.log10(num / den)
    sdr[den == 0] = np.inf
    sdr[is_silent] = np.nan
    return sdr


def csdr(reference: Any, estimate: Any, sample_rate: int = 44100) -> float:
    """Chunk-level SDR: ``np.nanmedian`` of :func:`framewise_sdr` (museval per-track value).

    Args:
        reference: ``(c, t)`` or ``(t,)`` target at ``sample_rate``.
        estimate: ``(c, t')`` or ``(t',)``; cut or zero-padded to ``t``.
        sample_rate: Hz.

    Returns:
        The median over non-NaN 1-s frames in dB; NaN when every frame is NaN (or t = 0).
    """
    return _nanmedian(framewise_sdr(reference, estimate, sample_rate))


def _nanmedian(values: np.ndarray) -> float:
    """``np.nanmedian`` without its all-NaN warning: NaN when no value is a number."""
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else math.nan


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(_to_numpy(values), dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of per-track values, got shape "
                         f"{array.shape}")
    return array


def aggregate(values: Sequence[float] | np.ndarray | Any) -> dict[str, float]:
    """Median, mean and standard deviation over the finite values (per-track metrics).

    Args:
        values: 1-D per-track values; NaN and +-inf are left out (e.g. a track whose cSDR is
            NaN because every frame was silent).

    Returns:
        ``{"median", "mean", "std", "n"}``: ``std`` is the population standard deviation
        (``np.std``, ddof 0, as BSMamba2's official evaluation logs it); ``n`` is the count
        used (an int). All NaN when ``n == 0``.
    """
    array = _as_1d(values, "values")
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {"median": math.nan, "mean": math.nan, "std": math.nan, "n": 0}
    return {"median": float(np.median(array)), "mean": float(np.mean(array)),
            "std": float(np.std(array)), "n": int(array.size)}


def paired_bootstrap_ci(a: Any, b: Any, *, n_resamples: int = 10000, confidence: float = 0.95,
                        seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap CI of the mean paired difference ``a - b`` over tracks.

    Tracks are resampled with replacement (``np.random.default_rng(seed)``); the interval is
    the (1 - confidence)/2 and (1 + confidence)/2 percentiles of the resampled means
    (docs/evaluation.md: paired per-track differences, e.g. BSMamba2 minus BS-RoFormer).

    Args:
        a: ``(n_tracks,)`` metric of system A per track.
        b: ``(n_tracks,)`` metric of system B on the same tracks, same order.
        n_resamples: bootstrap resamples, >= 1.
        confidence: in (0, 1).
        seed: the generator's seed; equal inputs and seed give equal outputs.

    Returns:
        ``{"mean_diff", "low", "high", "n"}``: pairs where either value is not finite are
        dropped and ``n`` (an int) counts the pairs used; all NaN when ``n == 0``.

    Raises:
        ValueError: for unequal lengths, ``n_resamples < 1`` or ``confidence`` outside (0, 1).
    """
    x = _as_1d(a, "a")
    y = _as_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must hold one value per track for the same tracks, got "
                         f"lengths {x.size} and {y.size}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    keep = np.isfinite(x) & np.isfinite(y)
    diff = x[keep] - y[keep]
    n = diff.size
    if n == 0:
        return {"mean_diff": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(int(n_resamples))
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    for start in range(0, int(n_resamples), block):
        stop = min(start + block, int(n_resamples))
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return {"mean_diff": float(diff.mean()), "low": float(low), "high": float(high),
            "n": int(n)}
