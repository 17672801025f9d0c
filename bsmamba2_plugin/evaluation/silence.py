"""The silence-robustness suite S0-S7 (docs/evaluation.md), for one track.

cSDR (museval) drops frames whose reference is digitally silent and takes a median, so it
cannot see vocals leaking into gaps ("ghost vocals") or vocals dropped at exact zero
(docs/evaluation.md). This module measures those behaviours with fixed thresholds
(:class:`SilenceConfig`), vectorised numpy, float64, in one pass over the track in
blocks of whole seconds (:class:`_Pass`): a float32 track is never copied whole.

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
  ``onset_sdr_gap_<bucket>`` / ``n_onsets_gap_<bucket>``: the same for the onsets whose
  preceding silent region falls in each S7 gap bucket (``gap_lt0.5s``, ``gap_0.5-2s``,
  ``gap_2-8s``, ``gap_gt8s`` for the default edges, :func:`gap_key`): onsets after silence.
- ``offset_leak_db`` (S6): ``ghost_db`` over the first ``leak_window_s`` (1 s) of each R_sil
  region that follows an offset (hang-over after the singer stops), dB re P_act. NaN
  without offsets.
- ``activity_ratio`` (S7): active frames / frames. ``longest_gap_s``: the longest R_sil
  span in seconds (0 without any). ``n_silent_regions``: number of R_sil regions.
  :func:`activity_bucket` and :func:`gap_bucket` give the S7 bucket labels.

Anchor values, from the five behaviours of docs/evaluation.md (Anchors) on the synthetic 17-s
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

Sources: docs/evaluation.md (the suite; SLR after a public research plan);
Schulze-Forster et al. WASPAA 2019 and their evaluation code for PES/EPS; museval 0.4.1 for
the 1-s grid (see :mod:`bsmamba2_plugin.evaluation.metrics`). Deviations, with reasons:

- The S1 formula as designed has no epsilon; ``eps`` = 1e-8 (as in the SLR source
  we follow, and msst's uSDR) keeps an exact-zero estimate finite; it only matters below
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
    _l_act_and_threshold,
    _labels_from_sums,
    _levels_from_sums,
    _n_activity_frames,
    _window_sums,
    _silent_runs,
    _spans_to_mask,
    activity_bucket,
    activity_bucket_labels,
    activity_from_segments,
    activity_labels,
    gap_bucket,
    gap_bucket_labels,
)
from .metrics import USDR_EPS, _museval_n_frames, _nanmedian, frame_sdr, match_length

__all__ = [
    "LEVEL_FLOOR_DB",
    "ActivityLabels",
    "SilenceConfig",
    "activity_bucket",
    "activity_bucket_labels",
    "activity_from_segments",
    "activity_labels",
    "gap_bucket",
    "gap_bucket_labels",
    "gap_key",
    "silence_suite",
]

# Schulze-Forster et al.'s constant inside the logarithm of PES / EPS.
_PES_EPS_FLOOR = 1e-12
#: the suite reads a track in float64 blocks of this many seconds (whole museval frames)
SCORE_BLOCK_SECONDS = 30


def _energy_ratio_db(num: float, den: float, eps: float) -> float:
    return float(10 * np.log10((num + eps) / (den + eps)))


def _region_sdr(ref_sum: float, err_sum: float, n_masked: int, eps: float) -> float:
    """uSDR-style ratio over a region from its energy sums; NaN for an empty region."""
    if n_masked == 0:
        return math.nan
    return _energy_ratio_db(ref_sum, err_sum, eps)


def _relative_power_db(energy_sum: float, n_masked: int, n_channels: int,
                       p_act: float) -> float:
    """Mean power over a region relative to the active power, dB; NaN when undefined."""
    if n_masked == 0 or not p_act > 0:
        return math.nan
    power = energy_sum / (n_masked * n_channels)
    return float(10 * np.log10(max(power, _POWER_FLOOR) / p_act))


def _pes_eps(ref_frames: np.ndarray, est_frames: np.ndarray) -> dict[str, float]:
    """PES / EPS from the museval frames' energy sums (channels and samples pooled). A
    frame is all zero exactly when its energy sum is (squares of float32 samples never
    underflow in float64)."""
    ref_zero, est_zero = ref_frames == 0, est_frames == 0
    pes = 10 * np.log10(est_frames[ref_zero] + _PES_EPS_FLOOR)
    eps = 10 * np.log10(ref_frames[est_zero & ~ref_zero] + _PES_EPS_FLOOR)
    return {"pes_db": float(pes.mean()) if pes.size else math.nan,
            "eps_db": float(eps.mean()) if eps.size else math.nan,
            "pes_frames": float(pes.size), "eps_frames": float(eps.size)}


def _active_csdr(ref_frames: np.ndarray, err_frames: np.ndarray,
                 active_fraction: np.ndarray, min_fraction: float) -> float:
    """cSDR over the museval frames with at least `min_fraction` active samples."""
    chosen = (active_fraction >= min_fraction) & (ref_frames > 0)
    if not chosen.any():
        return math.nan
    with np.errstate(divide="ignore"):
        sdr = 10 * np.log10(ref_frames[chosen] / err_frames[chosen])
    return float(np.median(sdr))


def gap_key(label: str) -> str:
    """Result-key form of a gap bucket label: "<0.5 s" -> "gap_lt0.5s"."""
    return "gap_" + label.replace("<", "lt").replace(">", "gt").replace(" ", "")


def _onset_windows_by_gap(activity: ActivityLabels, boundary: int, config: SilenceConfig
                          ) -> dict[str, tuple[np.ndarray, int]]:
    """For each S7 gap bucket: the merged [onset - boundary, onset + boundary) windows of
    the onsets whose preceding silent region falls in it, and how many onsets that is."""
    regions = activity.silent_regions_samples
    regions = regions[regions[:, 1] < activity.n_samples]  # regions that end in an onset
    labels = [gap_bucket((stop - start) / activity.sample_rate, config)
              for start, stop in regions]
    out = {}
    for label in gap_bucket_labels(config):
        onsets = np.array([stop for (_, stop), got in zip(regions, labels) if got == label],
                          dtype=np.int64)
        starts = np.clip(onsets - boundary, 0, activity.n_samples)
        stops = np.clip(onsets + boundary, 0, activity.n_samples)
        out[gap_key(label)] = (_merge_spans(starts, stops), onsets.size)
    return out


def _merge_spans(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """(k, 2) sorted, disjoint spans covering the union of [start, stop) spans."""
    order = np.argsort(starts, kind="stable")
    merged: list[list[int]] = []
    for a, b in zip(starts[order], stops[order]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], int(b))
        elif b > a:
            merged.append([int(a), int(b)])
    return np.array(merged, dtype=np.int64).reshape(-1, 2)


class _Pass:
    """One pass over a track in float64 blocks of whole seconds (and whole activity hops),
    gathering every sum the suite needs, so that no full-length float64 array (per-sample
    energies, a float64 copy of the track) is ever held: scoring memory does not grow with
    the track beyond its boolean region masks. Sums over frames are the same numbers as on
    the whole track; sums over regions add block by block."""

    def __init__(self, ref: np.ndarray, est: np.ndarray, sample_rate: int, frame: int,
                 hop: int) -> None:
        self.ref, self.est, self.rate, self.frame, self.hop = ref, est, sample_rate, frame, hop
        self.n_samples = ref.shape[1]
        unit = math.lcm(sample_rate, hop)
        wanted = SCORE_BLOCK_SECONDS * sample_rate
        # a grid with no small common multiple of 1 s and the hop: one block
        self.block = unit * max(1, round(wanted / unit)) if unit <= 4 * wanted \
            else max(self.n_samples, 1)
        self.n_windows = _n_activity_frames(self.n_samples, frame, hop)
        self.frame_length = min(sample_rate, self.n_samples)
        self.n_museval = _museval_n_frames(self.n_samples, sample_rate, sample_rate)

    def _windows(self, values: np.ndarray, start: int) -> np.ndarray:
        """Activity-frame sums of `values` (per sample from `start`, running `frame`
        samples past the block) for the frames that start inside the block."""
        take = min(-(-self.block // self.hop), self.n_windows - start // self.hop)
        return _window_sums(values, self.frame, self.hop)[:max(take, 0)]

    def _museval(self, values: np.ndarray) -> np.ndarray:
        """(frames, frame length) view of the block's part of the museval grid."""
        k = values.shape[-1] // self.frame_length
        return values[..., :k * self.frame_length].reshape(
            *values.shape[:-1], k, self.frame_length)

    def labels_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference's activity-frame energy sums and non-zero sample counts."""
        energy, nonzero = [], []
        for start in range(0, self.n_samples, self.block):
            r = self.ref[:, start:start + self.block + self.frame].astype(np.float64)
            energy.append(self._windows(_channel_energy(r), start))
            nonzero.append(self._windows(np.any(r != 0, axis=0).astype(np.int64), start))
        return np.concatenate(energy), np.concatenate(nonzero)

    def run(self, mix: np.ndarray, masks: dict[str, np.ndarray],
            spans: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Every sum: activity-frame energy sums of ref and est; museval-frame sums of the
        ref, est and error energies, all-zero channel sums and active fractions; masked
        sums of each energy over each region; totals; and `ref:<key>` / `err:<key>` sums
        over each set of disjoint, sorted `[start, stop)` spans in `spans`."""
        spans = spans or {}
        parts: dict[str, list] = {k: [] for k in ("ref_windows", "est_windows", "ref_frames",
                                                  "est_frames", "err_frames", "silent_frames",
                                                  "active_fraction")}
        sums: dict[str, float] = {}

        def add(key: str, energy: np.ndarray, mask: np.ndarray) -> None:
            sums[key] = sums.get(key, 0.0) + float(np.sum(energy, where=mask))

        for start in range(0, self.n_samples, self.block):
            stop = min(start + self.block, self.n_samples)
            inside = slice(start, stop)
            r = self.ref[:, start:stop + self.frame].astype(np.float64)
            e = self.est[:, start:stop + self.frame].astype(np.float64)
            ref_e, est_e = _channel_energy(r), _channel_energy(e)
            parts["ref_windows"].append(self._windows(ref_e, start))
            parts["est_windows"].append(self._windows(est_e, start))
            n = stop - start
            r, e, ref_e, est_e = r[:, :n], e[:, :n], ref_e[:n], est_e[:n]
            silent_sum = (self._museval(r.sum(axis=0)) == 0).all(-1) \
                | (self._museval(e.sum(axis=0)) == 0).all(-1)
            np.subtract(e, r, out=e)
            err_e = _channel_energy(e)
            for key, energy in (("ref", ref_e), ("est", est_e), ("err", err_e)):
                parts[f"{key}_frames"].append(self._museval(energy).sum(-1))
                sums[f"{key}_total"] = sums.get(f"{key}_total", 0.0) + float(energy.sum())
            parts["silent_frames"].append(silent_sum)
            parts["active_fraction"].append(self._museval(masks["active"][inside]).mean(-1))
            add("est_silent", est_e, masks["silent"][inside])
            add("err_silent", err_e, masks["silent"][inside])
            add("ref_active", ref_e, masks["active"][inside])
            add("err_active", err_e, masks["active"][inside])
            add("ref_onset", ref_e, masks["near_onset"][inside])
            add("err_onset", err_e, masks["near_onset"][inside])
            add("est_after_offset", est_e, masks["after_offset"][inside])
            for key, where in spans.items():
                low = np.clip(where[:, 0], start, stop) - start
                high = np.clip(where[:, 1], start, stop) - start
                for a, b in zip(low[high > low], high[high > low]):
                    sums[f"ref:{key}"] = sums.get(f"ref:{key}", 0.0) + float(ref_e[a:b].sum())
                    sums[f"err:{key}"] = sums.get(f"err:{key}", 0.0) + float(err_e[a:b].sum())
            if masks["silent"][inside].any():
                add("mix_silent", _channel_energy(mix[:, inside].astype(np.float64)),
                    masks["silent"][inside])
        out: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0)
                               for k, v in parts.items()}
        museval = slice(0, self.n_museval)  # whole blocks may hold a trailing partial frame
        for key in ("ref_frames", "est_frames", "err_frames", "silent_frames",
                    "active_fraction"):
            out[key] = out[key][museval]
        out.update(sums)
        return out


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
        ValueError: for mismatched channels, lengths of ``activity`` or its grid, or an
            empty reference.
    """
    sample_rate = _check_rate(sample_rate)
    # float32 tracks stay float32 here; everything is computed in float64, block by block
    ref, est = match_length(reference, estimate, keep_float32=True)
    _, mix = match_length(ref, mixture, estimate_name="mixture", keep_float32=True)
    n_channels, n_samples = ref.shape
    if n_samples == 0:
        raise ValueError("silence_suite: the reference has no samples; there is nothing to "
                         "score (check the file's length).")
    frame, hop = config.frame_samples(sample_rate), config.hop_samples(sample_rate)
    scan = _Pass(ref, est, sample_rate, frame, hop)
    if activity is None:
        activity = _labels_from_sums(*scan.labels_sums(), n_channels, n_samples,
                                     sample_rate, config)
    elif (activity.n_samples, activity.sample_rate, activity.frame_samples,
          activity.hop_samples) != (n_samples, sample_rate, frame, hop):
        raise ValueError(
            f"activity labels are for {activity.n_samples} samples at {activity.sample_rate} Hz "
            f"with frame/hop {activity.frame_samples}/{activity.hop_samples}; expected "
            f"{n_samples} samples at {sample_rate} Hz with frame/hop {frame}/{hop} (build "
            "them with the same signal, sample_rate and config)")
    silent = activity.silent_sample_mask()
    active = activity.active_sample_mask()
    onsets = activity.onsets_samples()
    boundary = round(config.boundary_window_s * sample_rate)
    near_onset = _spans_to_mask(onsets - boundary, onsets + boundary, n_samples)
    # the first leak_window_s of each silent region that follows an offset
    regions = activity.silent_regions_samples
    regions = regions[regions[:, 0] > 0]
    leak_stop = np.minimum(regions[:, 0] + round(config.leak_window_s * sample_rate),
                           regions[:, 1])
    after_offset = _spans_to_mask(regions[:, 0], leak_stop, n_samples)
    by_gap = _onset_windows_by_gap(activity, boundary, config)
    got = scan.run(mix, {"silent": silent, "active": active, "near_onset": near_onset,
                         "after_offset": after_offset},
                   {key: windows for key, (windows, _) in by_gap.items()})

    ref_level = _levels_from_sums(got["ref_windows"], n_samples, n_channels, frame, hop)
    est_level = _levels_from_sums(got["est_windows"], n_samples, n_channels, frame, hop)
    l_act, _ = _l_act_and_threshold(ref_level, config)
    frames = frame_sdr(got["ref_frames"], got["err_frames"], got["silent_frames"])
    out: dict[str, float] = {
        "usdr": _energy_ratio_db(got["ref_total"], got["err_total"], USDR_EPS)
        if n_samples else math.nan,
        "csdr": _nanmedian(frames),
        "csdr_frames": float(frames.size), "csdr_nan_frames": float(np.isnan(frames).sum()),
    }
    eps = config.eps
    n_silent, n_active = int(np.count_nonzero(silent)), int(np.count_nonzero(active))
    if n_silent:
        mix_energy = got["mix_silent"]
        out["slr_db"] = _energy_ratio_db(got["est_silent"], mix_energy, eps)
        out["slr_residual_db"] = _energy_ratio_db(got["err_silent"], mix_energy, eps)
    else:
        out["slr_db"] = out["slr_residual_db"] = math.nan
    p_act = got["ref_active"] / (n_active * n_channels) if n_active else math.nan
    out["ghost_db"] = _relative_power_db(got["est_silent"], n_silent, n_channels, p_act)
    out.update(_pes_eps(got["ref_frames"], got["est_frames"]))
    out.update(_silence_detection(est_level, activity, l_act, config))

    active_frames = activity.active
    if active_frames.any():
        dropped = est_level[active_frames] <= ref_level[active_frames] - config.dropout_db
        out["dropout_rate"] = float(dropped.mean())
    else:
        out["dropout_rate"] = math.nan
    out["active_usdr"] = _region_sdr(got["ref_active"], got["err_active"], n_active, eps)
    out["active_csdr"] = _active_csdr(got["ref_frames"], got["err_frames"],
                                      got["active_fraction"], config.csdr_active_fraction)
    out["onset_sdr"] = _region_sdr(got["ref_onset"], got["err_onset"],
                                   int(np.count_nonzero(near_onset)), eps)
    out["n_onsets"] = float(onsets.size)
    for key, (windows, count) in by_gap.items():  # S6 by the silence before each onset
        out[f"onset_sdr_{key}"] = (_energy_ratio_db(got.get(f"ref:{key}", 0.0),
                                                    got.get(f"err:{key}", 0.0), eps)
                                   if count else math.nan)
        out[f"n_onsets_{key}"] = float(count)
    out["offset_leak_db"] = _relative_power_db(got["est_after_offset"],
                                               int(np.count_nonzero(after_offset)),
                                               n_channels, p_act)

    gaps = activity.gap_lengths_s
    out["activity_ratio"] = activity.activity_ratio
    out["longest_gap_s"] = float(gaps.max()) if gaps.size else 0.0
    out["n_silent_regions"] = float(gaps.size)
    return out
