"""The silence-robustness suite S0-S7 of EVAL.md section 2.2, for one track.

cSDR (museval) drops frames whose reference is digitally silent and takes a median, so it
cannot see vocals leaking into gaps ("ghost vocals") or vocals dropped at exact zero
(EVAL.md 2.1). This module measures those behaviours with fixed thresholds
(:class:`SilenceConfig`), vectorised numpy, float64.

Signals are one track each, ``(c, t)`` numpy arrays or torch tensors (``(t,)`` is mono):
the reference vocal ``v``, the estimate ``y`` and the mixture ``x``. ``y`` and ``x`` are cut
or zero-padded to the reference length. "Power" is the mean of the square over channels
and samples; levels are ``10 log10(power)`` in dBFS (full scale 1.0), floored at
``LEVEL_FLOOR_DB`` = -200 dB so that exact silence stays finite.

S0, the activity labels (frames, target-silent regions R_sil, onsets, offsets, active
samples), is in :mod:`.activity` (:func:`activity_labels`, :func:`activity_from_segments`,
:class:`ActivityLabels`, :class:`SilenceConfig`); its names are importable from here too.

Keys of :func:`silence_suite` (all floats; NaN where undefined):

- ``usdr``, ``csdr``: :func:`bsmamba2_plugin.evaluation.metrics.usdr` and ``csdr`` (museval v4
  grid, 1-s frames), dB. ``csdr_frames``: number of 1-s frames; ``csdr_nan_frames``: those NaN
  under museval's exact-zero rule.
- ``slr_db`` (S1, silence-leakage ratio): 10 log10((sum_Rsil y^2 + eps) /
  (sum_Rsil x^2 + eps)), eps = ``eps`` = 1e-8, sums over channels and R_sil samples.
  Anchors: passthrough (y = x) 0 dB exactly; an estimate that is exact zero in R_sil goes to
  10 log10(eps / sum_Rsil x^2) (about -100 dB). NaN without R_sil.
- ``slr_residual_db``: the same with (y - v) in place of y (robust to low-level bleed in
  the reference). Equal to ``slr_db`` when v is exactly zero in R_sil.
- ``ghost_db`` (S2): 10 log10(max(mean_Rsil y^2, 1e-20) / P_act), P_act the power of v over
  active samples: how loud the leak is relative to the singer. NaN without R_sil or active
  samples. Anchor: about -200 dB - level(v) for exact-zero gaps.
- ``pes_db``, ``eps_db`` (S3, Schulze-Forster et al., "Weakly Informed Audio Source
  Separation", WASPAA 2019, paper variant): on museval's 1-s grid, PES averages
  10 log10(sum y^2 + 1e-12) over frames where v is exactly zero in every sample and
  channel; EPS averages 10 log10(sum v^2 + 1e-12) over frames where y is exactly zero and
  v is not. dB of absolute energy (gain dependent); lower is better; oracle PES = -120 dB.
  ``pes_frames`` / ``eps_frames`` count the frames used. NaN when no frame qualifies.
- ``silence_precision``, ``silence_recall``, ``silence_f1`` (S4): predicted-silent frames
  are runs (the same ``min_silent_run_s``) of frames whose estimate level is below
  max(``predicted_silence_dbfs``, L_act - ``rel_threshold_db``), L_act from v; scored
  against R_sil frames. precision = TP / predicted (NaN if none predicted), recall =
  TP / |R_sil| (NaN without R_sil), F1 = 2 TP / (predicted + |R_sil|) (NaN if both 0).
  Anchors: oracle 1, passthrough 0 (when the accompaniment is louder than the threshold).
- ``dropout_rate`` (S4): the fraction of active frames where the estimate's level is
  >= ``dropout_db`` (20 dB) below v's. Oracle 0. NaN without active frames.
- ``active_usdr`` (S5): uSDR (eps 1e-8) over active samples only, dB.
- ``active_csdr`` (S5): median over 1-s museval-grid frames with >= ``csdr_active_fraction``
  (50 %) active samples of 10 log10(sum v^2 / sum (y - v)^2). Unlike museval no frame is
  dropped for an exact-zero estimate (a dropped-out frame scores about 0 dB rather than
  vanishing), which takes the "NaN lottery" out.
- ``onset_sdr`` (S6): uSDR (eps 1e-8) over the union of [onset - 0.5 s, onset + 0.5 s)
  (``boundary_window_s``), dB; NaN without onsets. ``n_onsets`` counts them.
- ``offset_leak_db`` (S6): ``ghost_db`` over the first ``leak_window_s`` (1 s) of each R_sil
  region that follows an offset (hang-over after the singer stops), dB re P_act. NaN
  without offsets.
- ``activity_ratio`` (S7): active frames / frames. ``longest_gap_s``: the longest R_sil
  span in seconds (0 without any). ``n_silent_regions``: number of R_sil regions.
  :func:`activity_bucket` and :func:`gap_bucket` give the S7 bucket labels.

Anchor values, from the five behaviours of EVAL.md 2.2's demo table on the synthetic 17-s
track of ``tests/test_silence.py`` (harmonic tone bursts with exact-zero gaps, vocal L_act
-18.6 dBFS, accompaniment about -21 dBFS; 17 1-s frames):

=========================  =====  =====  ====  ======  ======  ====  =====  ======  =====
estimate                   usdr   csdr   NaN   slr     ghost   F1    drop   act.    onset
                                                                            usdr    sdr
=========================  =====  =====  ====  ======  ======  ====  =====  ======  =====
oracle (float32-rounded)   121.1  151.6  3     -115.9  -181.3  1.00  0.00   121.1   112.5
leak -20 dB only in gaps   25.3   151.5  3     -20.0   -22.5   0.00  0.00   121.1   22.5
leak -30 dB everywhere     30.6   32.5   3     -30.0   -32.5   0.00  0.00   32.5    29.5
0.3-s onset dropouts       10.9   151.5  5     -115.9  -181.3  0.93  0.08   10.9    2.2
mixture passthrough        0.6    2.5    3     0.0     -2.5    0.00  0.00   2.5     -0.5
=========================  =====  =====  ====  ======  ======  ====  =====  ======  =====

Sources: EVAL.md section 2.2 (the suite, SLR after a public research plan it cites);
Schulze-Forster et al. WASPAA 2019 and their evaluation code for PES/EPS; museval 0.4.1 for
the 1-s grid (see :mod:`bsmamba2_plugin.evaluation.metrics`). Deviations, with reasons:

- EVAL.md's S1 formula has no epsilon; ``eps`` = 1e-8 (as in the SLR source EVAL.md 2.1
  quotes, and msst's uSDR) keeps an exact-zero estimate finite; it only matters below
  about -80 dB. ``ghost_db`` floors the leak power at 1e-20 (-200 dB) for the same reason.
- S6 pools all onset windows (and all post-offset windows) into one number per track
  rather than averaging per-boundary values, so short and long phrases weigh by duration.
- ``active_csdr`` does not apply museval's silent-estimate rule (see its key above).
- PES/EPS use museval's 1-s grid (trailing partial second dropped, as in the reference
  code's default) and pool channels, so they line up with cSDR's NaN frames; the reference
  code is mono and takes its window from the framewise SDR it accompanies. EPS follows the
  paper (frames where the target is also silent are left out), not the code's default.
- Predicted silence uses the same minimum run as R_sil, so an oracle scores F1 = 1 even
  when the vocal has pauses shorter than ``min_silent_run_s``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .activity import (
    _POWER_FLOOR,
    LEVEL_FLOOR_DB,
    ActivityLabels,
    SilenceConfig,
    _channel_energy,
    _check_rate,
    _frame_levels,
    _l_act_and_threshold,
    _labels_from_signal,
    _silent_runs,
    _spans_to_mask,
    activity_bucket,
    activity_from_segments,
    activity_labels,
    gap_bucket,
)
from .metrics import _museval_n_frames, _nanmedian, match_length

__all__ = [
    "LEVEL_FLOOR_DB",
    "ActivityLabels",
    "SilenceConfig",
    "activity_bucket",
    "activity_from_segments",
    "activity_labels",
    "gap_bucket",
    "silence_suite",
]

# Schulze-Forster et al.'s constant inside the logarithm of PES / EPS.
_PES_EPS_FLOOR = 1e-12
#: uSDR's epsilon (msst's `sdr`, as `metrics.usdr`)
USDR_EPS = 1e-8
#: the suite reads a track in float64 blocks of this many seconds (whole museval frames)
SCORE_BLOCK_SECONDS = 30


def _energy_ratio_db(num: float, den: float, eps: float) -> float:
    return float(10 * np.log10((num + eps) / (den + eps)))


def _masked_sum(per_sample: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sum(per_sample, where=mask))


def _masked_sdr(ref_energy: np.ndarray, err_energy: np.ndarray, mask: np.ndarray,
                eps: float) -> float:
    """uSDR (dB) restricted to the samples of ``mask``; NaN for an empty mask."""
    if not mask.any():
        return math.nan
    return _energy_ratio_db(_masked_sum(ref_energy, mask), _masked_sum(err_energy, mask), eps)


def _relative_power_db(energy: np.ndarray, n_channels: int, mask: np.ndarray,
                       p_act: float) -> float:
    """10 log10(max(power over ``mask``, floor) / p_act); NaN if undefined."""
    n_masked = int(np.count_nonzero(mask))
    if n_masked == 0 or not p_act > 0:
        return math.nan
    power = _masked_sum(energy, mask) / (n_masked * n_channels)
    return float(10 * np.log10(max(power, _POWER_FLOOR) / p_act))


def _museval_frames(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(c, n_frames, frame)`` view of the museval 1-s grid (trailing part dropped)."""
    n_channels, n_samples = signal.shape
    n_frames = _museval_n_frames(n_samples, sample_rate, sample_rate)
    length = min(sample_rate, n_samples)
    return signal[:, : n_frames * length].reshape(n_channels, n_frames, length)


def _energies(ref: np.ndarray, est: np.ndarray, sample_rate: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample float64 energies (summed over channels) of ref, est and est - ref, and
    per sample whether ref's / est's channel sum is exactly zero ((2, t) bool), computed
    in blocks of whole seconds: a long track is never copied whole in float64."""
    n_samples = ref.shape[1]
    ref_energy, est_energy, err_energy = (np.empty(n_samples) for _ in range(3))
    channel_sum_zero = np.empty((2, n_samples), dtype=bool)
    block = SCORE_BLOCK_SECONDS * sample_rate
    for start in range(0, n_samples, block):
        part = slice(start, start + block)
        r = ref[:, part].astype(np.float64)
        e = est[:, part].astype(np.float64)
        ref_energy[part] = _channel_energy(r)
        est_energy[part] = _channel_energy(e)
        channel_sum_zero[0, part] = r.sum(axis=0) == 0
        channel_sum_zero[1, part] = e.sum(axis=0) == 0
        np.subtract(e, r, out=e)
        err_energy[part] = _channel_energy(e)
    return ref_energy, est_energy, err_energy, channel_sum_zero


def _masked_energy(signal: np.ndarray, mask: np.ndarray, sample_rate: int) -> float:
    """Sum over the masked samples of the signal's float64 energy, block by block."""
    block = SCORE_BLOCK_SECONDS * sample_rate
    total = 0.0
    for start in range(0, signal.shape[1], block):
        part = slice(start, start + block)
        total += _masked_sum(_channel_energy(signal[:, part].astype(np.float64)), mask[part])
    return total


def _framewise_sdr(ref_energy: np.ndarray, err_energy: np.ndarray,
                   channel_sum_zero: np.ndarray, sample_rate: int) -> np.ndarray:
    """`metrics.framewise_sdr` (museval v4, 1-s frames) from the per-sample energies."""
    num, den = (_museval_frames(x[None, :], sample_rate)[0].sum(axis=1)
                for x in (ref_energy, err_energy))
    is_silent = _museval_frames(channel_sum_zero, sample_rate).all(axis=2).any(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr = 10 * np.log10(num / den)
    sdr[den == 0] = np.inf
    sdr[is_silent] = np.nan
    return sdr


def _pes_eps(ref_energy: np.ndarray, est_energy: np.ndarray, sample_rate: int
             ) -> dict[str, float]:
    # a frame is all zero exactly when its channel energies are (float64 squares of
    # float32 samples never underflow)
    r, e = (_museval_frames(x[None, :], sample_rate)[0] for x in (ref_energy, est_energy))
    ref_zero = ~np.any(r != 0, axis=1)
    est_zero = ~np.any(e != 0, axis=1)
    pes = 10 * np.log10(e.sum(axis=1)[ref_zero] + _PES_EPS_FLOOR)
    eps = 10 * np.log10(r.sum(axis=1)[est_zero & ~ref_zero] + _PES_EPS_FLOOR)
    return {"pes_db": float(pes.mean()) if pes.size else math.nan,
            "eps_db": float(eps.mean()) if eps.size else math.nan,
            "pes_frames": float(pes.size), "eps_frames": float(eps.size)}


def _active_csdr(ref_energy: np.ndarray, err_energy: np.ndarray, active: np.ndarray,
                 sample_rate: int, min_fraction: float) -> float:
    """Median framewise SDR over 1-s frames with enough active samples, no NaN rule."""
    per_frame = [_museval_frames(x[None, :], sample_rate)[0]
                 for x in (ref_energy, err_energy, active)]
    num, den = per_frame[0].sum(axis=1), per_frame[1].sum(axis=1)
    chosen = (per_frame[2].mean(axis=1) >= min_fraction) & (num > 0)
    if not chosen.any():
        return math.nan
    num, den = num[chosen], den[chosen]
    with np.errstate(divide="ignore"):
        sdr = 10 * np.log10(num / den)
    return float(np.median(sdr))


def _silence_detection(est_level: np.ndarray, labels: ActivityLabels, l_act_db: float,
                       config: SilenceConfig) -> dict[str, float]:
    threshold = config.predicted_silence_dbfs
    if not math.isnan(l_act_db):
        threshold = max(threshold, l_act_db - config.rel_threshold_db)
    min_run = round(config.min_silent_run_s * labels.sample_rate)
    predicted, _ = _silent_runs(est_level < threshold, labels.n_samples,
                                labels.frame_samples, labels.hop_samples, min_run)
    target = labels.silent_region
    tp = float(np.sum(predicted & target))
    n_pred, n_true = float(predicted.sum()), float(target.sum())
    return {"silence_precision": tp / n_pred if n_pred else math.nan,
            "silence_recall": tp / n_true if n_true else math.nan,
            "silence_f1": 2 * tp / (n_pred + n_true) if n_pred + n_true else math.nan}


def silence_suite(reference: Any, estimate: Any, mixture: Any, sample_rate: int = 44100,
                  config: SilenceConfig = SilenceConfig(),
                  activity: ActivityLabels | None = None) -> dict[str, float]:
    """S0-S7 for one track: every key of the module docstring.

    Args:
        reference: ``(c, t)`` or ``(t,)`` reference vocal at ``sample_rate``.
        estimate: ``(c, t')``; cut or zero-padded to ``t``.
        mixture: ``(c, t'')``; cut or zero-padded to ``t``.
        sample_rate: Hz.
        config: thresholds.
        activity: labels to use instead of :func:`activity_labels` of the reference (e.g.
            :func:`activity_from_segments`); must be on ``config``'s grid with ``t`` samples.

    Returns:
        A flat ``dict[str, float]``; NaN where a quantity is undefined.

    Raises:
        ValueError: for mismatched channels, lengths of ``activity`` or its grid.
    """
    sample_rate = _check_rate(sample_rate)
    # float32 tracks stay float32 here; everything is computed in float64, block by block
    ref, est = match_length(reference, estimate, keep_float32=True)
    _, mix = match_length(ref, mixture, estimate_name="mixture", keep_float32=True)
    n_channels, n_samples = ref.shape
    frame, hop = config.frame_samples(sample_rate), config.hop_samples(sample_rate)
    ref_energy, est_energy, err_energy, channel_sum_zero = _energies(ref, est, sample_rate)
    if activity is None:
        activity = _labels_from_signal(ref, ref_energy, sample_rate, config)
    elif (activity.n_samples, activity.sample_rate, activity.frame_samples,
          activity.hop_samples) != (n_samples, sample_rate, frame, hop):
        raise ValueError(
            f"activity labels are for {activity.n_samples} samples at {activity.sample_rate} Hz "
            f"with frame/hop {activity.frame_samples}/{activity.hop_samples}; expected "
            f"{n_samples} samples at {sample_rate} Hz with frame/hop {frame}/{hop} (build "
            "them with the same signal, sample_rate and config)")
    ref_level = _frame_levels(ref_energy, n_channels, frame, hop)
    est_level = _frame_levels(est_energy, n_channels, frame, hop)
    l_act, _ = _l_act_and_threshold(ref_level, config)

    frames = _framewise_sdr(ref_energy, err_energy, channel_sum_zero, sample_rate)
    out: dict[str, float] = {
        "usdr": _energy_ratio_db(float(ref_energy.sum()), float(err_energy.sum()), USDR_EPS),
        "csdr": _nanmedian(frames),
        "csdr_frames": float(frames.size), "csdr_nan_frames": float(np.isnan(frames).sum()),
    }

    silent = activity.silent_sample_mask()
    active = activity.active_sample_mask()
    eps = config.eps
    if silent.any():
        mix_energy = _masked_energy(mix, silent, sample_rate)
        out["slr_db"] = _energy_ratio_db(_masked_sum(est_energy, silent), mix_energy, eps)
        out["slr_residual_db"] = _energy_ratio_db(_masked_sum(err_energy, silent), mix_energy,
                                                  eps)
    else:
        out["slr_db"] = out["slr_residual_db"] = math.nan
    n_active = int(np.count_nonzero(active))
    p_act = _masked_sum(ref_energy, active) / (n_active * n_channels) if n_active else math.nan
    out["ghost_db"] = _relative_power_db(est_energy, n_channels, silent, p_act)
    out.update(_pes_eps(ref_energy, est_energy, sample_rate))
    out.update(_silence_detection(est_level, activity, l_act, config))

    active_frames = activity.active
    if active_frames.any():
        dropped = est_level[active_frames] <= ref_level[active_frames] - config.dropout_db
        out["dropout_rate"] = float(dropped.mean())
    else:
        out["dropout_rate"] = math.nan
    out["active_usdr"] = _masked_sdr(ref_energy, err_energy, active, eps)
    out["active_csdr"] = _active_csdr(ref_energy, err_energy, active, sample_rate,
                                      config.csdr_active_fraction)

    onsets = activity.onsets_samples()
    boundary = round(config.boundary_window_s * sample_rate)
    near_onset = _spans_to_mask(onsets - boundary, onsets + boundary, n_samples)
    out["onset_sdr"] = _masked_sdr(ref_energy, err_energy, near_onset, eps)
    out["n_onsets"] = float(onsets.size)
    # The first leak_window_s of each silent region that follows an offset.
    regions = activity.silent_regions_samples
    regions = regions[regions[:, 0] > 0]
    leak_stop = np.minimum(regions[:, 0] + round(config.leak_window_s * sample_rate),
                           regions[:, 1])
    after_offset = _spans_to_mask(regions[:, 0], leak_stop, n_samples)
    out["offset_leak_db"] = _relative_power_db(est_energy, n_channels, after_offset, p_act)

    gaps = activity.gap_lengths_s
    out["activity_ratio"] = activity.activity_ratio
    out["longest_gap_s"] = float(gaps.max()) if gaps.size else 0.0
    out["n_silent_regions"] = float(gaps.size)
    return out
