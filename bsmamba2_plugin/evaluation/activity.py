"""S0 of the silence suite: where the reference vocal is active, as labels on a frame grid.

Signals, levels and the ``LEVEL_FLOOR_DB`` floor are as defined in :mod:`.silence`, which
holds the suite (S1-S7) built on these labels; all thresholds are in :class:`SilenceConfig`.

S0, activity labels (:func:`activity_labels`, :class:`ActivityLabels`):
    frames of ``frame_s`` = 100 ms every ``hop_s`` = 50 ms (the last frame may be shorter;
    its power is the mean over the samples it has). A frame is *active* when its level is
    >= ``abs_threshold_dbfs`` (-60 dBFS) and >= L_act - ``rel_threshold_db`` (50 dB), L_act
    being the ``act_percentile`` (90th) percentile of the frame levels of ``v``.
    *Target-silent regions* R_sil are maximal runs of non-active frames whose span
    ((k - 1) * hop + frame samples for k frames) is >= ``min_silent_run_s`` (0.5 s); their
    spans are the sample masks the suite uses, and their lengths are the *gap lengths*
    (leading and trailing silence included). Frames whose samples are all exactly zero in
    every channel are flagged (``exact_zero``). Onsets are the ends of regions that stop
    before the track ends, offsets the starts of regions that begin after sample 0; with a
    50 ms hop both lie within one hop of the true boundary. *Active samples* are the
    samples of active frames that lie in no R_sil span. :func:`activity_from_segments`
    builds the same labels from a renderer sidecar's sample-accurate vocal segments.
    :meth:`SilenceConfig.sensitivity_grid` gives the threshold x min-run grid of docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import as_float64

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
]

LEVEL_FLOOR_DB = -200.0
_POWER_FLOOR = 10 ** (LEVEL_FLOOR_DB / 10)


@dataclasses.dataclass(frozen=True)
class SilenceConfig:
    """Fixed thresholds of the suite (docs/evaluation.md); change them with ``dataclasses.replace``.

    Attributes:
        frame_s: activity frame length, s.
        hop_s: activity frame hop, s (<= frame_s).
        abs_threshold_dbfs: a frame is active only at or above this level (dBFS).
        rel_threshold_db: ... and at or above L_act minus this many dB.
        act_percentile: L_act is this percentile of the reference's frame levels.
        min_silent_run_s: shortest span of non-active frames that forms a silent region, s.
        predicted_silence_dbfs: the estimate is "predicted silent" below
            max(this, L_act - rel_threshold_db) (S4).
        dropout_db: an active frame is dropped out when the estimate is at least this many
            dB below the reference (S4).
        boundary_window_s: half-width of the window around each onset (S6), s.
        leak_window_s: window after each offset for the hang-over leak (S6), s.
        csdr_active_fraction: a 1-s frame enters ``active_csdr`` with at least this fraction
            of active samples (S5).
        eps: energy epsilon of SLR and of the uSDR-style ratios.
        activity_bucket_edges: activity-ratio bucket edges (S7), increasing, in [0, 1].
        gap_bucket_edges_s: gap-length bucket edges (S7), increasing, s.
    """

    frame_s: float = 0.1
    hop_s: float = 0.05
    abs_threshold_dbfs: float = -60.0
    rel_threshold_db: float = 50.0
    act_percentile: float = 90.0
    min_silent_run_s: float = 0.5
    predicted_silence_dbfs: float = -60.0
    dropout_db: float = 20.0
    boundary_window_s: float = 0.5
    leak_window_s: float = 1.0
    csdr_active_fraction: float = 0.5
    eps: float = 1e-8
    activity_bucket_edges: tuple[float, ...] = (0.4, 0.7)
    gap_bucket_edges_s: tuple[float, ...] = (0.5, 2.0, 8.0)

    def __post_init__(self) -> None:
        positive = ("frame_s", "hop_s", "dropout_db", "boundary_window_s", "leak_window_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SilenceConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.hop_s > self.frame_s:
            raise ValueError(f"SilenceConfig.hop_s ({self.hop_s}) must be <= frame_s "
                             f"({self.frame_s}) so that frames cover every sample")
        checks = (("rel_threshold_db", self.rel_threshold_db >= 0, ">= 0"),
                  ("act_percentile", 0 <= self.act_percentile <= 100, "in [0, 100]"),
                  ("min_silent_run_s", self.min_silent_run_s >= 0, ">= 0"),
                  ("csdr_active_fraction", 0 < self.csdr_active_fraction <= 1, "in (0, 1]"),
                  ("eps", self.eps >= 0, ">= 0"))
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"SilenceConfig.{name} must be {expected}, got "
                                 f"{getattr(self, name)!r}")
        for name, low, high in (("activity_bucket_edges", 0.0, 1.0),
                                ("gap_bucket_edges_s", 0.0, math.inf)):
            edges = tuple(float(e) for e in getattr(self, name))
            object.__setattr__(self, name, edges)
            if not edges or any(b <= a for a, b in itertools.pairwise(edges)) \
                    or not all(low <= e <= high for e in edges):
                raise ValueError(f"SilenceConfig.{name} must be a non-empty, strictly "
                                 f"increasing tuple within [{low}, {high}], got {edges!r}")

    def frame_samples(self, sample_rate: int) -> int:
        """Activity frame length in samples at ``sample_rate`` Hz."""
        return max(1, round(self.frame_s * sample_rate))

    def hop_samples(self, sample_rate: int) -> int:
        """Activity frame hop in samples at ``sample_rate`` Hz."""
        return max(1, round(self.hop_s * sample_rate))

    @classmethod
    def sensitivity_grid(cls, thresholds_dbfs: Sequence[float] = (-50.0, -60.0, -70.0),
                         min_runs_s: Sequence[float] = (0.5, 1.0, 2.0),
                         **overrides: Any) -> tuple[SilenceConfig, ...]:
        """S0's sensitivity grid (docs/evaluation.md): one config per (threshold, min run).

        The threshold sets both ``abs_threshold_dbfs`` and ``predicted_silence_dbfs``;
        ``overrides`` are passed to every config.
        """
        return tuple(cls(abs_threshold_dbfs=theta, predicted_silence_dbfs=theta,
                         min_silent_run_s=run, **overrides)
                     for theta in thresholds_dbfs for run in min_runs_s)


@dataclasses.dataclass(frozen=True, eq=False)
class ActivityLabels:
    """S0 labels of one reference on the activity grid (frame ``i`` starts at ``i * hop``).

    Attributes:
        sample_rate: Hz.
        n_samples: length of the labelled signal, samples.
        frame_samples, hop_samples: the activity grid, samples.
        frame_start_s: ``(n_frames,)`` frame start times, s.
        level_db: ``(n_frames,)`` reference frame levels, dBFS (NaN from segments).
        l_act_db: L_act, dBFS (NaN from segments).
        threshold_db: the activity threshold max(abs, L_act - rel), dBFS (NaN from segments).
        active: ``(n_frames,)`` bool.
        silent_region: ``(n_frames,)`` bool, frames in R_sil.
        exact_zero: ``(n_frames,)`` bool, all samples of all channels exactly 0.
        silent_regions_samples: ``(n_regions, 2)`` int64 ``[start, stop)`` sample spans of
            R_sil.
        gap_lengths_s: ``(n_regions,)`` span lengths of R_sil, s.
        activity_ratio: active frames / frames (NaN without frames).
    """

    sample_rate: int
    n_samples: int
    frame_samples: int
    hop_samples: int
    frame_start_s: np.ndarray
    level_db: np.ndarray
    l_act_db: float
    threshold_db: float
    active: np.ndarray
    silent_region: np.ndarray
    exact_zero: np.ndarray
    silent_regions_samples: np.ndarray
    gap_lengths_s: np.ndarray
    activity_ratio: float

    @property
    def n_frames(self) -> int:
        """Number of activity frames."""
        return int(self.active.size)

    def silent_sample_mask(self) -> np.ndarray:
        """``(n_samples,)`` bool: samples inside an R_sil span."""
        spans = self.silent_regions_samples
        return _spans_to_mask(spans[:, 0], spans[:, 1], self.n_samples)

    def active_sample_mask(self) -> np.ndarray:
        """``(n_samples,)`` bool: samples of active frames outside every R_sil span."""
        starts, stops = _runs(self.active)
        spans = _frame_run_spans(starts, stops, self.n_samples, self.frame_samples,
                                 self.hop_samples)
        return _spans_to_mask(spans[:, 0], spans[:, 1], self.n_samples) \
            & ~self.silent_sample_mask()

    def onsets_samples(self) -> np.ndarray:
        """``(n_onsets,)`` ends of R_sil spans that stop before the end of the track."""
        stops = self.silent_regions_samples[:, 1]
        return stops[stops < self.n_samples]

    def offsets_samples(self) -> np.ndarray:
        """``(n_offsets,)`` starts of R_sil spans that begin after sample 0."""
        starts = self.silent_regions_samples[:, 0]
        return starts[starts > 0]


def _n_activity_frames(n_samples: int, frame: int, hop: int) -> int:
    if n_samples == 0:
        return 0
    return 1 + -(-max(n_samples - frame, 0) // hop)


def _channel_energy(signal: np.ndarray) -> np.ndarray:
    """``(t,)`` sum over channels of the squared ``(c, t)`` signal (no ``(c, t)`` temporary)."""
    return np.einsum("ct,ct->t", signal, signal)


def _window_sums(per_sample: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Sums of ``per_sample`` (1-D) over the activity frames (zero-padded at the end)."""
    n_frames = _n_activity_frames(per_sample.size, frame, hop)
    if n_frames == 0:
        return np.zeros(0, dtype=per_sample.dtype)
    padded = np.zeros((n_frames - 1) * hop + frame, dtype=per_sample.dtype)
    padded[: per_sample.size] = per_sample
    if frame % hop == 0:  # the default grid: sum hop-blocks, then frame // hop of them
        blocks = padded[: (padded.size // hop) * hop].reshape(-1, hop).sum(axis=1)
        return np.lib.stride_tricks.sliding_window_view(blocks, frame // hop).sum(axis=1)
    return np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop].sum(axis=1)


def _levels_from_sums(sums: np.ndarray, n_samples: int, n_channels: int, frame: int,
                      hop: int) -> np.ndarray:
    """Frame levels in dBFS from the frames' energy sums (`_window_sums` of the energy)."""
    counts = np.minimum(frame, n_samples - np.arange(sums.size, dtype=np.int64) * hop)
    power = sums / (counts * n_channels)
    return 10 * np.log10(np.maximum(power, _POWER_FLOOR))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[start, stop)`` indices of the maximal runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _frame_run_spans(starts: np.ndarray, stops: np.ndarray, n_samples: int, frame: int,
                     hop: int) -> np.ndarray:
    """``(n, 2)`` sample spans covered by the frame runs ``[start, stop)``."""
    span_starts = starts.astype(np.int64) * hop
    span_stops = np.minimum((stops.astype(np.int64) - 1) * hop + frame, n_samples)
    return np.stack([span_starts, span_stops], axis=1).reshape(-1, 2)


def _spans_to_mask(starts: np.ndarray, stops: np.ndarray, n_samples: int) -> np.ndarray:
    """``(n_samples,)`` bool union of the ``[start, stop)`` spans (clipped to the signal)."""
    starts = np.clip(np.asarray(starts, dtype=np.int64), 0, n_samples)
    stops = np.clip(np.asarray(stops, dtype=np.int64), 0, n_samples)
    keep = stops > starts
    order = np.argsort(starts[keep], kind="stable")
    starts, stops = starts[keep][order], stops[keep][order]
    if starts.size == 0:
        return np.zeros(n_samples, dtype=bool)
    # Merge overlapping or touching spans into disjoint ones, then lay them out with repeat.
    reach = np.maximum.accumulate(stops)
    is_new = np.concatenate(([True], starts[1:] > reach[:-1]))
    first = np.flatnonzero(is_new)
    merged_starts = starts[first]
    merged_stops = reach[np.concatenate((first[1:] - 1, [starts.size - 1]))]
    bounds = np.concatenate(([0], np.stack([merged_starts, merged_stops], 1).ravel(),
                             [n_samples]))
    values = np.zeros(bounds.size - 1, dtype=bool)
    values[1::2] = True
    return np.repeat(values, np.diff(bounds))


def _silent_runs(non_active: np.ndarray, n_samples: int, frame: int, hop: int,
                 min_run_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame mask and ``(n, 2)`` sample spans of the runs of ``non_active`` long enough."""
    starts, stops = _runs(non_active)
    spans = _frame_run_spans(starts, stops, n_samples, frame, hop)
    keep = (spans[:, 1] - spans[:, 0]) >= min_run_samples
    starts, stops = starts[keep], stops[keep]
    delta = (np.bincount(starts, minlength=non_active.size + 1)
             - np.bincount(stops, minlength=non_active.size + 1))
    frames = np.cumsum(delta[: non_active.size]) > 0
    return frames, spans[keep]


def _build_labels(active: np.ndarray, exact_zero: np.ndarray, level_db: np.ndarray,
                  l_act_db: float, threshold_db: float, n_samples: int, sample_rate: int,
                  config: SilenceConfig) -> ActivityLabels:
    frame, hop = config.frame_samples(sample_rate), config.hop_samples(sample_rate)
    min_run = round(config.min_silent_run_s * sample_rate)
    silent_region, spans = _silent_runs(~active, n_samples, frame, hop, min_run)
    n_frames = active.size
    return ActivityLabels(
        sample_rate=int(sample_rate), n_samples=int(n_samples), frame_samples=frame,
        hop_samples=hop, frame_start_s=np.arange(n_frames) * hop / sample_rate,
        level_db=level_db, l_act_db=float(l_act_db), threshold_db=float(threshold_db),
        active=active, silent_region=silent_region, exact_zero=exact_zero,
        silent_regions_samples=spans,
        gap_lengths_s=(spans[:, 1] - spans[:, 0]) / sample_rate,
        activity_ratio=float(active.mean()) if n_frames else math.nan)


def _check_rate(sample_rate: int) -> int:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _l_act_and_threshold(level_db: np.ndarray, config: SilenceConfig) -> tuple[float, float]:
    if level_db.size == 0:
        return math.nan, config.abs_threshold_dbfs
    l_act = float(np.percentile(level_db, config.act_percentile))
    return l_act, max(config.abs_threshold_dbfs, l_act - config.rel_threshold_db)


def activity_labels(reference: Any, sample_rate: int = 44100,
                    config: SilenceConfig = SilenceConfig()) -> ActivityLabels:
    """S0: activity labels of a reference vocal from its frame levels.

    Args:
        reference: ``(c, t)`` or ``(t,)`` vocal at ``sample_rate`` (numpy or torch).
        sample_rate: Hz.
        config: thresholds.

    Returns:
        The labels (see :class:`ActivityLabels` and the module docstring).
    """
    sample_rate = _check_rate(sample_rate)
    ref = as_float64(reference, "reference")
    return _labels_from_signal(ref, _channel_energy(ref), sample_rate, config)


def _labels_from_signal(ref: np.ndarray, energy: np.ndarray, sample_rate: int,
                        config: SilenceConfig) -> ActivityLabels:
    frame, hop = config.frame_samples(sample_rate), config.hop_samples(sample_rate)
    nonzero = np.any(ref != 0, axis=0).astype(np.int64)
    return _labels_from_sums(_window_sums(energy, frame, hop), _window_sums(nonzero, frame, hop),
                             ref.shape[0], ref.shape[1], sample_rate, config)


def _labels_from_sums(energy_sums: np.ndarray, nonzero_sums: np.ndarray, n_channels: int,
                      n_samples: int, sample_rate: int, config: SilenceConfig
                      ) -> ActivityLabels:
    """Labels from the activity frames' energy sums and counts of non-zero samples."""
    frame, hop = config.frame_samples(sample_rate), config.hop_samples(sample_rate)
    level_db = _levels_from_sums(energy_sums, n_samples, n_channels, frame, hop)
    l_act, threshold = _l_act_and_threshold(level_db, config)
    active = level_db >= threshold
    return _build_labels(active, nonzero_sums == 0, level_db, l_act, threshold, n_samples,
                         sample_rate, config)


def activity_from_segments(segments: Any, samples: int, sample_rate: int,
                           config: SilenceConfig = SilenceConfig()) -> ActivityLabels:
    """S0 labels from sample-accurate vocal segments (a renderer sidecar).

    A frame is active when any of its samples lies in a segment; outside the segments the
    vocal is taken to be digital silence, so ``exact_zero`` is ``~active``. Levels, L_act
    and the threshold are NaN.

    Args:
        segments: ``(n, 2)`` ``[start, end)`` sample indices (overlaps allowed; empty for a
            silent track).
        samples: the track length, samples.
        sample_rate: Hz.
        config: thresholds (frame, hop, min run).

    Returns:
        :class:`ActivityLabels` on the same grid as :func:`activity_labels`.

    Raises:
        ValueError: for a malformed segment list or segments outside ``[0, samples]``.
    """
    sample_rate = _check_rate(sample_rate)
    if int(samples) != samples or samples < 0:
        raise ValueError(f"samples must be a non-negative integer, got {samples!r}")
    spans = np.asarray(segments, dtype=np.float64).reshape(-1, 2) if len(segments) else \
        np.zeros((0, 2))
    if np.any(spans != np.round(spans)) or np.any(spans[:, 0] > spans[:, 1]) \
            or np.any(spans < 0) or np.any(spans > samples):
        raise ValueError(f"segments must be integer [start, end) pairs with 0 <= start <= end "
                         f"<= samples ({samples}), got {spans.tolist()[:5]}...")
    spans = spans.astype(np.int64)
    frame, hop = config.frame_samples(sample_rate), config.hop_samples(sample_rate)
    voiced = _spans_to_mask(spans[:, 0], spans[:, 1], int(samples)).astype(np.int64)
    active = _window_sums(voiced, frame, hop) > 0
    nan_levels = np.full(active.size, np.nan)
    return _build_labels(active, ~active, nan_levels, math.nan, math.nan, int(samples),
                         sample_rate, config)


def _bucket(value: float, edges: tuple[float, ...], labels: list[str], what: str) -> str:
    if math.isnan(value):
        raise ValueError(f"cannot bucket a NaN {what}")
    return labels[int(np.searchsorted(np.asarray(edges), value, side="right"))]


def _bucket_labels(edges: tuple[float, ...], fmt: Any, unit: str) -> list[str]:
    middle = [f"{fmt(a)}-{fmt(b)}{unit}" for a, b in itertools.pairwise(edges)]
    return [f"<{fmt(edges[0])}{unit}", *middle, f">{fmt(edges[-1])}{unit}"]


def activity_bucket(ratio: float, config: SilenceConfig = SilenceConfig()) -> str:
    """S7 activity bucket: ``"<40%"``, ``"40-70%"`` or ``">70%"`` for the default edges.

    A bucket holds ``[lower edge, upper edge)``, so 0.7 is ``">70%"``.
    """
    return _bucket(float(ratio), config.activity_bucket_edges,
                   activity_bucket_labels(config), "activity ratio")


def activity_bucket_labels(config: SilenceConfig = SilenceConfig()) -> list[str]:
    """The S7 activity bucket labels, in increasing order."""
    return _bucket_labels(config.activity_bucket_edges, lambda e: f"{100 * e:g}", "%")


def gap_bucket(seconds: float, config: SilenceConfig = SilenceConfig()) -> str:
    """S7 gap bucket: ``"<0.5 s"``, ``"0.5-2 s"``, ``"2-8 s"`` or ``">8 s"`` by default.

    A bucket holds ``[lower edge, upper edge)``, so 2.0 s is ``"2-8 s"``.
    """
    return _bucket(float(seconds), config.gap_bucket_edges_s, gap_bucket_labels(config),
                   "gap length")


def gap_bucket_labels(config: SilenceConfig = SilenceConfig()) -> list[str]:
    """The S7 gap bucket labels, in increasing order."""
    return _bucket_labels(config.gap_bucket_edges_s, lambda e: f"{e:g}", " s")
