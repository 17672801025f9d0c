"""evaluation.metrics against museval 0.4.1 (committed numbers), msst's sdr and by hand."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bsmamba2_plugin.evaluation.metrics import (
    aggregate,
    csdr,
    framewise_sdr,
    paired_bootstrap_ci,
    usdr,
)

FIXTURES = Path(__file__).parent / "fixtures"
MUSEVAL_TOLERANCE_DB = 1e-6


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("make_museval_fixtures",
                                                  FIXTURES / "make_museval_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURE_MODULE = _load_fixture_module()
MUSEVAL = json.loads((FIXTURES / "museval_csdr.json").read_text())


def _signal(seed: int, shape: tuple[int, ...], scale: float = 0.1) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(shape)


def test_fixture_covers_the_recipe_and_both_lengths() -> None:
    cases = MUSEVAL["cases"]
    assert [c["name"] for c in cases] == [c["name"] for c in FIXTURE_MODULE.build_cases()]
    seconds = {c["n_samples"] // c["sample_rate"] for c in cases}
    assert {30, 180} <= seconds
    assert any(c["zero_estimate_seconds"] for c in cases)
    assert any(c["antiphase_seconds"] for c in cases)


@pytest.mark.parametrize("case", MUSEVAL["cases"], ids=lambda c: c["name"])
def test_csdr_matches_museval_framewise_and_median(case: dict) -> None:
    reference, estimate = FIXTURE_MODULE.make_case(**FIXTURE_MODULE.recipe_args(case))
    # The recipe must still give the signals museval scored (else regenerate the JSON).
    assert np.sum(reference ** 2) == pytest.approx(case["reference_energy"], rel=1e-12)
    assert np.sum(estimate ** 2) == pytest.approx(case["estimate_energy"], rel=1e-12)

    expected = np.array([math.nan if v is None else v for v in case["museval_framewise_sdr"]])
    ours = framewise_sdr(reference, estimate, case["sample_rate"])
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    finite = ~np.isnan(expected)
    assert np.max(np.abs(ours[finite] - expected[finite])) <= MUSEVAL_TOLERANCE_DB
    assert abs(csdr(reference, estimate, case["sample_rate"])
               - case["museval_nanmedian_sdr"]) <= MUSEVAL_TOLERANCE_DB


def test_usdr_is_msst_sdr() -> None:
    msst_metrics = pytest.importorskip("msst.utils.metrics")
    for seed, shape in ((0, (2, 44100)), (1, (1, 5000)), (2, (2, 12345))):
        reference = _signal(seed, shape)
        estimate = reference + _signal(seed + 10, shape, scale=0.03)
        expected = float(msst_metrics.sdr(reference[None], estimate[None])[0])
        assert usdr(reference, estimate) == expected
    silent = np.zeros((2, 100))
    assert usdr(silent, silent) == float(msst_metrics.sdr(silent[None], silent[None])[0]) == 0.0


def test_usdr_by_hand_and_epsilon() -> None:
    reference = np.ones((2, 10))
    estimate = reference * 0.9
    assert usdr(reference, estimate, eps=0.0) == pytest.approx(20.0)
    assert usdr(np.zeros((2, 10)), np.full((2, 10), 1e-4), eps=1e-7) == pytest.approx(
        10 * math.log10(1e-7 / (20 * 1e-8 + 1e-7)))


def test_framewise_sdr_by_hand_pools_channels_per_second() -> None:
    rate = 100
    reference = _signal(3, (2, 350))
    error = _signal(4, (2, 350), scale=0.01)
    frames = framewise_sdr(reference, reference + error, sample_rate=rate)
    assert frames.shape == (3,)  # the trailing half second is dropped
    for k in range(3):
        s, e = reference[:, k * rate:(k + 1) * rate], error[:, k * rate:(k + 1) * rate]
        assert frames[k] == pytest.approx(10 * math.log10(np.sum(s ** 2) / np.sum(e ** 2)),
                                          abs=1e-12)


def test_museval_silent_frame_rule_is_exact_zero_of_the_channel_sum() -> None:
    rate = 100
    reference = _signal(5, (2, 500))
    estimate = reference + _signal(6, (2, 500), scale=0.01)
    reference[:, 0:100] = 0.0                       # silent reference second
    reference[1, 100:200] = -reference[0, 100:200]  # anti-phase: channel sum is 0
    reference[0, 200:300] = 0.0                     # one channel silent: evaluated
    reference[:, 300:400] = 1e-300                  # tiny but not zero: evaluated
    estimate[:, 400:500] = 0.0                      # silent estimate second
    frames = framewise_sdr(reference, estimate, sample_rate=rate)
    np.testing.assert_array_equal(np.isnan(frames), [True, True, False, False, True])
    assert math.isnan(csdr(np.zeros((2, 300)), estimate[:, :300], sample_rate=rate))


def test_perfect_estimate_is_infinite_and_short_or_empty_signals() -> None:
    reference = _signal(7, (2, 250))
    assert np.all(np.isposinf(framewise_sdr(reference, reference, sample_rate=100)))
    assert csdr(reference, reference, sample_rate=100) == math.inf
    short = framewise_sdr(reference, reference + 0.01, sample_rate=1000)
    assert short.shape == (1,) and np.isfinite(short[0])  # one frame: the whole signal
    assert framewise_sdr(np.zeros((2, 0)), np.zeros((2, 0))).shape == (0,)
    assert math.isnan(csdr(np.zeros((2, 0)), np.zeros((2, 0))))


def test_estimate_is_cut_or_zero_padded_to_the_reference_length() -> None:
    rate = 100
    reference = _signal(8, (2, 500))
    estimate = reference + _signal(9, (2, 500), scale=0.05)
    longer = np.concatenate([estimate, _signal(10, (2, 70))], axis=1)
    assert usdr(reference, longer) == usdr(reference, estimate)
    np.testing.assert_array_equal(framewise_sdr(reference, longer, rate),
                                  framewise_sdr(reference, estimate, rate))
    shorter = estimate[:, :250]
    padded = np.concatenate([shorter, np.zeros((2, 250))], axis=1)
    assert usdr(reference, shorter) == usdr(reference, padded)
    frames = framewise_sdr(reference, shorter, rate)
    np.testing.assert_array_equal(frames, framewise_sdr(reference, padded, rate))
    np.testing.assert_array_equal(np.isnan(frames), [False, False, False, True, True])


def test_torch_and_numpy_inputs_give_the_same_numbers() -> None:
    reference = _signal(11, (2, 3000)).astype(np.float32)
    estimate = (reference + _signal(12, (2, 3000), scale=0.02)).astype(np.float32)
    reference[:, :1000] = 0
    for convert in (torch.from_numpy, lambda a: torch.from_numpy(a).double()):
        ref_t, est_t = convert(reference), convert(estimate)
        assert usdr(ref_t, est_t) == usdr(reference, estimate)
        np.testing.assert_array_equal(framewise_sdr(ref_t, est_t, 1000),
                                      framewise_sdr(reference, estimate, 1000))
        assert csdr(ref_t, est_t, 1000) == csdr(reference, estimate, 1000)
    mono = torch.from_numpy(reference[0])
    assert usdr(mono, mono * 0.5) == pytest.approx(usdr(reference[:1], reference[:1] * 0.5))


def test_bad_inputs_raise_with_the_expected_shape() -> None:
    with pytest.raises(ValueError, match="channels"):
        usdr(np.zeros((2, 10)), np.zeros((1, 10)))
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        csdr(np.zeros((1, 2, 10)), np.zeros((1, 2, 10)))
    with pytest.raises(ValueError, match="sample_rate"):
        framewise_sdr(np.zeros((2, 10)), np.zeros((2, 10)), sample_rate=0)
    with pytest.raises(TypeError, match="dtype"):
        usdr(np.zeros((2, 10), dtype=complex), np.zeros((2, 10)))


def test_aggregate_uses_finite_values_only() -> None:
    result = aggregate([1.0, 2.0, 3.0, math.nan, math.inf, 4.0])
    assert result == {"median": 2.5, "mean": 2.5, "std": pytest.approx(math.sqrt(1.25)),
                      "n": 4}
    assert aggregate(torch.tensor([1.0, 3.0]))["mean"] == 2.0
    empty = aggregate([math.nan])
    assert empty["n"] == 0 and math.isnan(empty["median"]) and math.isnan(empty["std"])


def test_paired_bootstrap_ci_contains_the_true_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(13)
    b = rng.normal(10.0, 2.0, size=50)         # per-track spread shared by both systems
    a = b + 0.5 + rng.normal(0.0, 0.3, size=50)
    result = paired_bootstrap_ci(a, b)
    assert result["n"] == 50
    assert result["mean_diff"] == pytest.approx(np.mean(a - b))
    assert result["low"] < 0.5 < result["high"]
    assert 0.0 < result["low"] < result["mean_diff"] < result["high"]
    assert result["high"] - result["low"] < 0.4
    assert paired_bootstrap_ci(a, b) == result
    assert paired_bootstrap_ci(a, b, seed=1) != result
    assert paired_bootstrap_ci(b, a)["mean_diff"] == pytest.approx(-result["mean_diff"])
    wider = paired_bootstrap_ci(a, b, confidence=0.99)
    assert wider["low"] < result["low"] and wider["high"] > result["high"]


def test_paired_bootstrap_ci_is_the_percentile_bootstrap_of_the_mean() -> None:
    """With 4 tracks the bootstrap distribution of the mean difference is exact: the 4**4
    equally likely resamples. Its percentiles fall on atoms well away from a jump of the
    distribution (the differences are chosen so), so enough random resamples must give
    exactly those atoms, whatever generator or order an implementation uses."""
    import itertools

    b = np.array([3.0, -1.0, 2.0, 0.5])
    a = b + np.array([3.0, 3.0, 7.0, 10.0])  # skewed differences: percentile != basic CI
    diff = a - b
    means = np.sort([diff[list(idx)].mean() for idx in itertools.product(range(4), repeat=4)])
    cdf = np.arange(1, means.size + 1) / means.size
    for confidence in (0.9, 0.95):
        result = paired_bootstrap_ci(a, b, n_resamples=100_000, confidence=confidence,
                                     seed=5)
        expected = []
        for q in ((1 - confidence) / 2, (1 + confidence) / 2):
            atom = means[np.searchsorted(cdf, q)]  # the exact q-quantile
            below = cdf[means < atom].max(initial=0.0)
            assert below + 0.004 < q < cdf[means <= atom].max() - 0.004  # not near a jump
            expected.append(atom)
        assert (result["low"], result["high"]) == pytest.approx(expected, abs=1e-12)
        assert result["mean_diff"] == pytest.approx(diff.mean()) and result["n"] == 4


def test_paired_bootstrap_ci_drops_non_finite_pairs_and_checks_inputs() -> None:
    result = paired_bootstrap_ci([1.0, 2.0, math.nan, 4.0], [0.0, 1.0, 0.0, math.inf])
    assert result["n"] == 2 and result["mean_diff"] == result["low"] == result["high"] == 1.0
    assert math.isnan(paired_bootstrap_ci([math.nan], [1.0])["mean_diff"])
    with pytest.raises(ValueError, match="lengths"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_ci([1.0], [1.0], confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap_ci([1.0], [1.0], n_resamples=0)
