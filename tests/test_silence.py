"""The silence suite (docs/evaluation.md) tells its five synthetic anchor behaviours apart."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from bsmamba2_plugin.evaluation.silence import (
    SilenceConfig,
    activity_bucket,
    activity_from_segments,
    activity_labels,
    gap_bucket,
    silence_suite,
)

RATE = 44100
DURATION_S = 17.0
# Vocal phrases, seconds: a leading gap of 0.8 s, gaps of 1.5 s and 2.75 s, a trailing gap of
# 0.8 s, and a 0.2 s pause inside the second phrase (too short for a silent region). All
# boundaries are multiples of the 50 ms hop, so the frame labels are exact.
PHRASES_S = ((0.8, 4.0), (5.5, 9.0), (11.75, 16.2))
PAUSE_S = (7.0, 7.2)
SEGMENTS_S = ((0.8, 4.0), (5.5, 7.0), (7.2, 9.0), (11.75, 16.2))
DROPOUT_S = 0.3

REQUIRED_KEYS = {
    "usdr", "csdr", "csdr_nan_frames", "slr_db", "slr_residual_db", "ghost_db", "pes_db",
    "eps_db", "silence_precision", "silence_recall", "silence_f1", "dropout_rate",
    "active_usdr", "active_csdr", "onset_sdr", "offset_leak_db", "activity_ratio",
    "longest_gap_s", "n_silent_regions", "onset_sdr_gap_0.5-2s", "n_onsets_gap_0.5-2s",
}


def _samples(seconds: float) -> int:
    return round(seconds * RATE)


def build_track() -> tuple[np.ndarray, np.ndarray]:
    """(vocal, accompaniment), each (2, 17 s): harmonic tone bursts with exact-zero gaps."""
    n_samples = _samples(DURATION_S)
    time = np.arange(n_samples) / RATE
    voice = np.zeros(n_samples)
    for k, (start, stop) in enumerate(PHRASES_S):
        i, j = _samples(start), _samples(stop)
        f0 = 196.0 * 2 ** (k / 4)
        phase = 2 * np.pi * f0 * (time[i:j] - time[i])
        voice[i:j] = 0.15 * sum(np.cos(h * phase) / h for h in range(1, 6))
    voice[_samples(PAUSE_S[0]):_samples(PAUSE_S[1])] = 0.0
    vocal = np.stack([voice, 0.8 * voice])
    rng = np.random.default_rng(0)
    accompaniment = 0.05 * rng.standard_normal((2, n_samples)) \
        + 0.1 * np.cos(2 * np.pi * 55.0 * time)
    return vocal, accompaniment


@pytest.fixture(scope="module")
def track() -> dict:
    vocal, accompaniment = build_track()
    mixture = vocal + accompaniment
    labels = activity_labels(vocal, RATE)
    in_gaps = labels.silent_sample_mask()
    oracle = vocal.astype(np.float32).astype(np.float64)  # float32 rounding, exact-zero gaps
    dropouts = oracle.copy()
    for start, _ in PHRASES_S:
        dropouts[:, _samples(start):_samples(start + DROPOUT_S)] = 0.0
    estimates = {
        "oracle": oracle,
        "gap_leak": oracle + 10 ** (-20 / 20) * accompaniment * in_gaps,
        "leak_everywhere": oracle + 10 ** (-30 / 20) * accompaniment,
        "dropouts": dropouts,
        "passthrough": mixture,
    }
    return {"vocal": vocal, "mixture": mixture, "labels": labels, "estimates": estimates,
            "suite": {name: silence_suite(vocal, est, mixture, RATE)
                      for name, est in estimates.items()}}


def test_labels_find_the_designed_gaps(track: dict) -> None:
    labels = track["labels"]
    np.testing.assert_array_equal(labels.silent_regions_samples / RATE,
                                  [[0.0, 0.8], [4.0, 5.5], [9.0, 11.75], [16.2, 17.0]])
    np.testing.assert_allclose(labels.gap_lengths_s, [0.8, 1.5, 2.75, 0.8])
    np.testing.assert_array_equal(labels.onsets_samples() / RATE, [0.8, 5.5, 11.75])
    np.testing.assert_array_equal(labels.offsets_samples() / RATE, [4.0, 9.0, 16.2])
    pause = (labels.frame_start_s >= PAUSE_S[0]) & (labels.frame_start_s < PAUSE_S[1] - 0.1)
    assert not labels.active[pause].any() and not labels.silent_region[pause].any()
    assert np.all(labels.exact_zero[labels.silent_region])
    assert labels.activity_ratio == pytest.approx(np.mean(labels.active))
    assert labels.threshold_db == -60.0 and labels.l_act_db > -30.0


def test_activity_from_segments_agrees_with_activity_labels(track: dict) -> None:
    labels = track["labels"]
    segments = [[_samples(a), _samples(b)] for a, b in SEGMENTS_S]
    from_segments = activity_from_segments(segments, labels.n_samples, RATE)
    for name in ("active", "silent_region", "exact_zero", "silent_regions_samples",
                 "gap_lengths_s", "frame_start_s"):
        np.testing.assert_array_equal(getattr(from_segments, name), getattr(labels, name))
    assert from_segments.activity_ratio == labels.activity_ratio
    assert np.all(np.isnan(from_segments.level_db))
    with_segments = silence_suite(track["vocal"], track["estimates"]["gap_leak"],
                                  track["mixture"], RATE, activity=from_segments)
    assert with_segments == pytest.approx(track["suite"]["gap_leak"], nan_ok=True)


def test_suite_returns_every_documented_key_as_float(track: dict) -> None:
    for result in track["suite"].values():
        assert set(result) >= REQUIRED_KEYS
        assert all(type(value) is float for value in result.values())


def test_oracle_anchors(track: dict) -> None:
    oracle = track["suite"]["oracle"]
    assert oracle["silence_f1"] == oracle["silence_precision"] == oracle["silence_recall"] == 1
    assert oracle["dropout_rate"] == 0.0
    assert oracle["slr_db"] < -100 and oracle["ghost_db"] < -150
    assert oracle["pes_db"] == pytest.approx(-120.0) and math.isnan(oracle["eps_db"])
    assert oracle["csdr_frames"] == 17 and oracle["csdr_nan_frames"] == 3
    assert oracle["active_usdr"] > 100 and oracle["onset_sdr"] > 100


def test_gap_leak_is_seen_by_slr_while_csdr_barely_moves(track: dict) -> None:
    oracle, leak = track["suite"]["oracle"], track["suite"]["gap_leak"]
    assert leak["slr_db"] == pytest.approx(-20.0, abs=1e-6)
    assert leak["slr_residual_db"] == pytest.approx(-20.0, abs=1e-6)
    assert leak["slr_db"] > oracle["slr_db"] + 80
    assert abs(leak["csdr"] - oracle["csdr"]) < 1.0
    assert leak["active_usdr"] == oracle["active_usdr"]
    assert leak["usdr"] < oracle["usdr"] - 80
    assert leak["ghost_db"] > oracle["ghost_db"] + 100
    assert leak["offset_leak_db"] == pytest.approx(leak["ghost_db"], abs=1.0)
    assert leak["silence_f1"] == 0.0 and leak["pes_db"] > oracle["pes_db"] + 100


def test_leak_everywhere_lowers_active_quality(track: dict) -> None:
    oracle, leak = track["suite"]["oracle"], track["suite"]["leak_everywhere"]
    assert leak["slr_db"] == pytest.approx(-30.0, abs=1e-6)
    assert leak["active_usdr"] < oracle["active_usdr"] - 60
    assert leak["active_csdr"] < oracle["active_csdr"] - 60
    assert leak["csdr"] < oracle["csdr"] - 60
    assert leak["dropout_rate"] == 0.0 and leak["csdr_nan_frames"] == oracle["csdr_nan_frames"]


def test_onset_dropouts_show_as_dropouts_and_nan_frames(track: dict) -> None:
    oracle, drop = track["suite"]["oracle"], track["suite"]["dropouts"]
    assert drop["dropout_rate"] > 0.05
    # [0, 1) s and [11, 12) s become all-zero estimates: museval skips them.
    assert drop["csdr_nan_frames"] == oracle["csdr_nan_frames"] + 2
    assert abs(drop["csdr"] - oracle["csdr"]) < 1.0  # the cSDR blind spot
    assert drop["onset_sdr"] < 10 and drop["active_usdr"] < 20
    assert drop["eps_frames"] == 2 and np.isfinite(drop["eps_db"])
    assert drop["slr_db"] == oracle["slr_db"] and drop["silence_recall"] == 1.0
    assert drop["silence_precision"] < 1.0


def test_passthrough_is_the_slr_anchor(track: dict) -> None:
    passthrough = track["suite"]["passthrough"]
    assert passthrough["slr_db"] == 0.0
    assert passthrough["slr_residual_db"] == pytest.approx(0.0, abs=1e-9)
    assert passthrough["silence_f1"] == 0.0 and math.isnan(passthrough["silence_precision"])
    assert passthrough["active_usdr"] < 10


# (better, worse, metric, higher_is_better, margin): every pair of behaviours, told apart in
# the right direction by a metric that targets the difference.
PAIRS = [
    ("oracle", "gap_leak", "slr_db", False, 80.0),
    ("oracle", "leak_everywhere", "active_usdr", True, 60.0),
    ("oracle", "dropouts", "dropout_rate", False, 0.05),
    ("oracle", "passthrough", "slr_db", False, 100.0),
    ("gap_leak", "leak_everywhere", "active_usdr", True, 60.0),
    ("leak_everywhere", "gap_leak", "slr_db", False, 9.0),
    ("dropouts", "gap_leak", "slr_db", False, 80.0),
    ("gap_leak", "dropouts", "dropout_rate", False, 0.05),
    ("gap_leak", "passthrough", "slr_db", False, 19.0),
    ("dropouts", "leak_everywhere", "slr_db", False, 80.0),
    ("leak_everywhere", "dropouts", "onset_sdr", True, 20.0),
    ("leak_everywhere", "passthrough", "active_usdr", True, 20.0),
    ("dropouts", "passthrough", "slr_db", False, 100.0),
    ("passthrough", "dropouts", "dropout_rate", False, 0.05),
    ("oracle", "dropouts", "csdr_nan_frames", False, 1.0),
]


@pytest.mark.parametrize(("better", "worse", "metric", "higher_is_better", "margin"), PAIRS)
def test_every_pair_of_behaviours_is_told_apart(track: dict, better: str, worse: str,
                                                metric: str, higher_is_better: bool,
                                                margin: float) -> None:
    good, bad = track["suite"][better][metric], track["suite"][worse][metric]
    gap = good - bad if higher_is_better else bad - good
    assert gap >= margin, f"{metric}: {better}={good:.3f} vs {worse}={bad:.3f}"


def test_pairs_cover_all_ten_pairs() -> None:
    names = ["oracle", "gap_leak", "leak_everywhere", "dropouts", "passthrough"]
    covered = {frozenset(p[:2]) for p in PAIRS}
    assert covered == {frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1:]}


def test_min_silent_run_is_respected(track: dict) -> None:
    vocal = track["vocal"]
    for run_s, gaps in ((1.0, [1.5, 2.75]), (2.0, [2.75]), (3.0, [])):
        labels = activity_labels(vocal, RATE, SilenceConfig(min_silent_run_s=run_s))
        np.testing.assert_allclose(labels.gap_lengths_s, gaps)
    tiny = activity_labels(vocal, RATE, SilenceConfig(min_silent_run_s=0.1))
    assert tiny.gap_lengths_s.size == 5  # the 0.2 s pause becomes a region


def test_absolute_and_relative_thresholds_are_respected() -> None:
    time = np.arange(RATE) / RATE
    tone = np.sqrt(2) * np.sin(2 * np.pi * 440 * time)         # 0 dBFS (RMS 1)
    quiet = 10 ** (-55 / 20) * tone                            # -55 dBFS
    loud_then_quiet = np.concatenate([0.7 * tone, 10 ** (-56 / 20) * tone])[None]
    assert activity_labels(quiet, RATE).active.all()
    assert not activity_labels(quiet, RATE, SilenceConfig(abs_threshold_dbfs=-50)).active.any()
    # L_act is about -3 dBFS: -56 dBFS fails the default relative test (L_act - 50) ...
    labels = activity_labels(loud_then_quiet, RATE)
    assert labels.l_act_db == pytest.approx(20 * math.log10(0.7), abs=0.01)
    assert labels.active[:19].all() and not labels.active[21:].any()
    # ... and passes with a 60 dB relative range.
    wide = activity_labels(loud_then_quiet, RATE, SilenceConfig(rel_threshold_db=60))
    assert wide.active.all()


def test_dropout_and_predicted_silence_thresholds_are_respected(track: dict) -> None:
    vocal, mixture = track["vocal"], track["mixture"]
    softer = vocal * 10 ** (-15 / 20)
    assert silence_suite(vocal, softer, mixture, RATE)["dropout_rate"] == 0.0
    assert silence_suite(vocal, softer, mixture, RATE,
                         SilenceConfig(dropout_db=10))["dropout_rate"] == 1.0
    leak = track["estimates"]["leak_everywhere"]   # about -51 dBFS in the gaps
    lenient = silence_suite(vocal, leak, mixture, RATE,
                            SilenceConfig(predicted_silence_dbfs=-40))
    assert lenient["silence_f1"] == 1.0 and track["suite"]["leak_everywhere"]["silence_f1"] == 0


def test_no_silent_region_gives_nan_not_numbers() -> None:
    time = np.arange(3 * RATE) / RATE
    vocal = np.stack([0.3 * np.sin(2 * np.pi * 330 * time)] * 2)
    result = silence_suite(vocal, 0.9 * vocal, vocal + 0.01, RATE)
    for key in ("slr_db", "slr_residual_db", "ghost_db", "pes_db", "eps_db",
                "silence_recall", "silence_f1", "onset_sdr", "offset_leak_db"):
        assert math.isnan(result[key]), key
    assert result["n_silent_regions"] == 0 and result["longest_gap_s"] == 0
    assert result["activity_ratio"] == 1.0 and result["dropout_rate"] == 0.0
    assert np.isfinite(result["active_usdr"]) and np.isfinite(result["csdr"])


def test_silent_reference_keeps_quality_metrics_nan() -> None:
    silent = np.zeros((2, 2 * RATE))
    noise = 0.01 * np.random.default_rng(1).standard_normal((2, 2 * RATE))
    result = silence_suite(silent, noise, noise, RATE)
    assert result["slr_db"] == pytest.approx(0.0) and result["n_silent_regions"] == 1
    for key in ("csdr", "active_usdr", "active_csdr", "dropout_rate", "ghost_db"):
        assert math.isnan(result[key]), key


def test_torch_inputs_and_length_handling_match_numpy(track: dict) -> None:
    vocal, mixture = track["vocal"], track["mixture"]
    estimate = track["estimates"]["dropouts"]
    as_torch = silence_suite(torch.from_numpy(vocal), torch.from_numpy(estimate),
                             torch.from_numpy(mixture), RATE)
    assert as_torch == pytest.approx(track["suite"]["dropouts"], nan_ok=True)
    longer = np.concatenate([estimate, np.ones((2, 1000))], axis=1)
    assert silence_suite(vocal, longer, mixture[:, :-500], RATE)["slr_db"] == pytest.approx(
        silence_suite(vocal, estimate, np.pad(mixture[:, :-500], ((0, 0), (0, 500))),
                      RATE)["slr_db"])
    with pytest.raises(ValueError, match="activity labels"):
        silence_suite(vocal[:, :-1], estimate, mixture, RATE, activity=track["labels"])


def test_config_is_frozen_validated_and_has_the_sensitivity_grid() -> None:
    config = SilenceConfig()
    assert (config.frame_samples(RATE), config.hop_samples(RATE)) == (4410, 2205)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hop_s = 0.1  # type: ignore[misc]
    for bad in ({"hop_s": 0.2}, {"frame_s": 0}, {"act_percentile": 101},
                {"gap_bucket_edges_s": (2.0, 1.0)}, {"activity_bucket_edges": (0.5, 1.5)}):
        with pytest.raises(ValueError, match="SilenceConfig"):
            SilenceConfig(**bad)
    grid = SilenceConfig.sensitivity_grid()
    assert len(grid) == 9
    assert {(c.abs_threshold_dbfs, c.min_silent_run_s) for c in grid} == {
        (t, r) for t in (-50.0, -60.0, -70.0) for r in (0.5, 1.0, 2.0)}


def test_s7_buckets() -> None:
    assert [activity_bucket(r) for r in (0.0, 0.39, 0.4, 0.69, 0.7, 1.0)] == [
        "<40%", "<40%", "40-70%", "40-70%", ">70%", ">70%"]
    assert [gap_bucket(s) for s in (0.3, 0.5, 1.99, 2.0, 8.0, 30.0)] == [
        "<0.5 s", "0.5-2 s", "0.5-2 s", "2-8 s", ">8 s", ">8 s"]
    assert gap_bucket(3.0, SilenceConfig(gap_bucket_edges_s=(1.0, 4.0))) == "1-4 s"
    with pytest.raises(ValueError, match="NaN"):
        activity_bucket(math.nan)


def test_segments_are_validated() -> None:
    with pytest.raises(ValueError, match="segments"):
        activity_from_segments([[10, 5]], 100, RATE)
    with pytest.raises(ValueError, match="segments"):
        activity_from_segments([[0, 200]], 100, RATE)
    empty = activity_from_segments([], RATE, RATE)
    assert empty.activity_ratio == 0.0 and empty.gap_lengths_s.tolist() == [1.0]


def _long_track(seconds: float, dtype=np.float32) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(3)
    n = round(seconds * 44100)
    gate = (np.sin(np.arange(n) / 44100 * 2 * np.pi * 0.15) > 0.2).astype(dtype)
    ref = (0.1 * rng.standard_normal((2, n)) * gate).astype(dtype)
    est = (0.8 * ref + 0.01 * rng.standard_normal((2, n))).astype(dtype)
    mix = (ref + 0.2 * rng.standard_normal((2, n))).astype(dtype)
    return ref, est, mix


@pytest.mark.parametrize("config", [SilenceConfig(), SilenceConfig(hop_s=0.033),
                                    SilenceConfig(frame_s=0.12, hop_s=0.05)])
def test_block_size_does_not_change_the_suite(monkeypatch, config) -> None:
    """The suite reads a track in float64 blocks; 1-s blocks, 30-s blocks and float64
    copies of the float32 track give the same numbers."""
    from bsmamba2_plugin.evaluation import silence

    ref, est, mix = _long_track(75.3)
    results = []
    for seconds, cast in ((30, np.float32), (1, np.float32), (30, np.float64)):
        monkeypatch.setattr(silence, "SCORE_BLOCK_SECONDS", seconds)
        results.append(silence_suite(ref.astype(cast), est.astype(cast), mix.astype(cast),
                                     44100, config))
    for other in results[1:]:
        for key, value in results[0].items():
            assert value == pytest.approx(other[key], rel=1e-12, nan_ok=True), key


def test_scoring_memory_grows_by_less_than_the_track() -> None:
    """Going from 3 to 6 minutes of float32 stereo, the suite's peak memory grows by less
    than those 3 minutes of audio (it held about 13 float64-sized copies of the track
    before the block-wise pass; what grows now is the boolean region masks)."""
    import tracemalloc

    peaks = []
    for seconds in (180.0, 360.0):
        ref, est, mix = _long_track(seconds)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            silence_suite(ref, est, mix, 44100)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
    added_audio = ref.nbytes / 2
    assert peaks[1] - peaks[0] < 0.75 * added_audio, (peaks[1] - peaks[0]) / added_audio


def test_onsets_are_scored_by_the_silence_before_them() -> None:
    """Phrases after gaps of 1 s, 3 s and 10 s; the estimate misses the first 0.3 s after
    the 10 s gap only: that bucket's onset SDR drops, the others stay high, and the buckets
    partition the onsets."""
    rng = np.random.default_rng(5)
    segments_s = ((0.0, 2.0), (3.0, 5.0), (8.0, 10.0), (20.0, 22.0))
    n = 24 * RATE
    ref = np.zeros((2, n), dtype=np.float32)
    for a, b in segments_s:
        ref[:, round(a * RATE):round(b * RATE)] = 0.1 * rng.standard_normal(
            (2, round(b * RATE) - round(a * RATE)))
    est = ref + 1e-3 * rng.standard_normal((2, n)).astype(np.float32)
    est[:, 20 * RATE:round(20.3 * RATE)] = 0.0
    segments = np.round(np.array(segments_s) * RATE).astype(np.int64)
    labels = activity_from_segments(segments, n, RATE)
    out = silence_suite(ref, est, ref + 0.1, RATE, activity=labels)
    counts = {k: out[k] for k in out if k.startswith("n_onsets_gap_")}
    assert counts == {"n_onsets_gap_lt0.5s": 0.0, "n_onsets_gap_0.5-2s": 1.0,
                      "n_onsets_gap_2-8s": 1.0, "n_onsets_gap_gt8s": 1.0}
    assert sum(counts.values()) == out["n_onsets"]
    assert math.isnan(out["onset_sdr_gap_lt0.5s"])
    assert out["onset_sdr_gap_0.5-2s"] > 30 and out["onset_sdr_gap_2-8s"] > 30
    assert out["onset_sdr_gap_gt8s"] < 10
    assert out["onset_sdr_gap_gt8s"] < out["onset_sdr"] < out["onset_sdr_gap_2-8s"]


def test_an_empty_reference_is_a_clear_error() -> None:
    empty = np.zeros((2, 0), dtype=np.float32)
    with pytest.raises(ValueError, match="no samples"):
        silence_suite(empty, empty, empty, RATE)
