"""`bsmamba2 evaluate`'s report from result rows (no msst, no models needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bsmamba2_plugin.cli import build_parser, main
from bsmamba2_plugin.evaluation.report import write_report


def make_rows(model: str, usdr: list[float], csdr: list[float], chunk: float = 8.0
              ) -> list[dict]:
    return [{"model": model, "chunk_seconds": chunk, "track": f"track_{i:03d}", "overlap": 1,
             "usdr": u, "csdr": c, "slr_db": -20.0, "ghost_db": -60.0, "active_usdr": u,
             "dropout_rate": 0.0, "silence_f1": 1.0, "onset_sdr": u, "activity_ratio": 0.5}
            for i, (u, c) in enumerate(zip(usdr, csdr))]


def test_report_headlines_usdr_mean_and_csdr_median_over_tracks(tmp_path: Path) -> None:
    # mean and median differ for both metrics, so the test tells them apart
    rows = make_rows("bsmamba2", usdr=[0.0, 0.0, 9.0], csdr=[1.0, 2.0, 9.0])
    write_report(rows, tmp_path, order=["bsmamba2"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    (entry,) = summary["table"]
    assert entry["headline"] == {"usdr": 3.0, "csdr": 2.0}
    # the other aggregates stay available
    assert entry["usdr"]["median"] == 0.0 and entry["csdr"]["mean"] == 4.0
    assert "mean over tracks" in summary["headline_definition"]["usdr"]
    assert "median over tracks" in summary["headline_definition"]["csdr"]
    text = (tmp_path / "summary.md").read_text()
    header = [line for line in text.splitlines() if line.startswith("Headlines follow the paper")]
    assert len(header) == 1
    assert "uSDR = mean over tracks" in header[0] and "cSDR = median over tracks" in header[0]
    assert "1 s frames" in header[0]
    row = next(line for line in text.splitlines() if line.startswith("| bsmamba2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    columns = [c.strip() for c in next(line for line in text.splitlines()
                                       if line.startswith("| model |")).strip("|").split("|")]
    assert cells[columns.index("uSDR (mean)")] == "3.00"
    assert cells[columns.index("cSDR (median)")] == "2.00"


def test_demo_prints_the_headline_aggregates(tmp_path: Path, monkeypatch, capsys) -> None:
    from bsmamba2_plugin.experiments import runner

    def fake_run_recipe(recipe, workdir, **kwargs):
        write_report(make_rows("bsmamba2", usdr=[0.0, 0.0, 9.0], csdr=[1.0, 2.0, 9.0]),
                     Path(workdir) / "report", order=["bsmamba2"])
        return []

    (tmp_path / "demo" / "report").mkdir(parents=True)
    monkeypatch.setattr(runner, "run_recipe", fake_run_recipe)
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "uSDR 3.00 dB (mean over 3 tracks)" in out
    assert "cSDR 2.00 dB (median over 3 tracks)" in out


def test_report_has_onsets_after_silence_by_gap_bucket(tmp_path: Path) -> None:
    """Per gap bucket: the median over the tracks that have such onsets (NaN = none), the
    onset count, a table in summary.md and a plot; rows without the keys (older reports)
    give no onset section."""
    rows = make_rows("m", [5.0, 6.0, 7.0], [5.0, 6.0, 7.0])
    for row, short, long, n_long in zip(rows, [1.0, 3.0, float("nan")], [-2.0, 8.0, 4.0],
                                        [1, 2, 1]):
        row.update({"onset_sdr_gap_0.5-2s": short, "n_onsets_gap_0.5-2s": 0 if short != short
                    else 1, "onset_sdr_gap_gt8s": long, "n_onsets_gap_gt8s": n_long})
    summary = write_report(rows, tmp_path, order=["m"])
    by_gap = {o["gap"]: o for o in summary["onsets"]}
    assert list(by_gap) == ["0.5-2 s", ">8 s"]
    assert by_gap["0.5-2 s"]["onset_sdr"]["median"] == 2.0
    assert by_gap["0.5-2 s"]["onset_sdr"]["n"] == 2 and by_gap["0.5-2 s"]["onsets"] == 2
    assert by_gap[">8 s"]["onset_sdr"]["median"] == 4.0 and by_gap[">8 s"]["onsets"] == 4
    text = (tmp_path / "summary.md").read_text()
    assert "| m | >8 s | 3 | 4 | 4.00 (3.33) |" in text
    assert (tmp_path / "onset_after_silence.png").stat().st_size > 0
    (tmp_path / "old").mkdir()
    old = write_report(make_rows("m", [5.0], [5.0]), tmp_path / "old", order=["m"])
    assert old["onsets"] == []
    assert not (tmp_path / "old" / "onset_after_silence.png").exists()


def test_two_models_on_one_track_say_why_there_is_no_paired_comparison(tmp_path: Path) -> None:
    rows = make_rows("a", [5.0], [5.0]) + make_rows("b", [4.0], [4.0])
    summary = write_report(rows, tmp_path, order=["a", "b"])
    assert summary["paired"] == []
    note = summary["paired_note"]
    assert "a - b" in note and "at least 2 tracks" in note and "found 1" in note
    assert "--data" in note  # the fix
    assert note in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "paired_differences.png").exists()


def test_two_tracks_give_a_paired_comparison_and_no_note(tmp_path: Path) -> None:
    rows = make_rows("a", [5.0, 6.0], [2.0, 9.0]) + make_rows("b", [4.0, 4.5], [1.0, 1.0])
    for row, slr in zip(rows, [-20.0, -18.0, -21.0, -21.0]):
        row["slr_db"] = slr
    # a - b per track, a different pair for each metric: (1, 1.5), (1, 8), (1, 3)
    summary = write_report(rows, tmp_path, order=["a", "b"])
    assert summary.get("paired_note") is None
    by_metric = {p["metric"]: p for p in summary["paired"]}
    assert sorted(by_metric) == ["csdr", "slr_db", "usdr"] and len(summary["paired"]) == 3
    for metric, (first, second) in {"usdr": (1.0, 1.5), "csdr": (1.0, 8.0),
                                    "slr_db": (1.0, 3.0)}.items():
        pair = by_metric[metric]
        assert (pair["a"], pair["b"], pair["chunk_seconds"], pair["n"]) == ("a", "b", 8.0, 2)
        assert pair["mean_diff"] == pytest.approx((first + second) / 2)
        # with two tracks a resampled mean is either difference with probability 1/4 each,
        # so the 2.5 % and 97.5 % points of the bootstrap are the two differences
        assert (pair["low"], pair["high"]) == pytest.approx((first, second))


@pytest.mark.parametrize("argv", [
    ["--config", "a.yaml", "b.yaml", "--checkpoint", "a.ckpt", "b.ckpt", "--name", "m1", "m2"],
    ["--config", "a.yaml", "--checkpoint", "a.ckpt", "--name", "m1",
     "--config", "b.yaml", "--checkpoint", "b.ckpt", "--name", "m2"],
], ids=["one-flag-several-values", "repeated-flags"])
def test_evaluate_accepts_several_values_per_flag_and_repeated_flags(argv: list[str]) -> None:
    args = build_parser().parse_args(["evaluate", *argv, "--data", "d", "--out", "o"])
    assert args.name == ["m1", "m2"]
    assert [p.name for p in args.config] == ["a.yaml", "b.yaml"]
    assert [p.name for p in args.checkpoint] == ["a.ckpt", "b.ckpt"]


def test_models_are_scored_in_the_precision_msst_runs_them() -> None:
    """On CUDA: autocast as msst trains each model (bsmamba2 configs: bfloat16; msst's own
    types: float16, which BS-RoFormer's flash attention needs); float32 elsewhere."""
    import torch
    from ml_collections import ConfigDict

    from bsmamba2_plugin.evaluation.evaluate import _autocast_dtype

    plugin = ConfigDict({"training": {"use_amp": True, "autocast_dtype": "bfloat16"}})
    msst_own = ConfigDict({"training": {"use_amp": True}})
    no_amp = ConfigDict({"training": {"use_amp": False}})
    assert _autocast_dtype(plugin, "cuda") is torch.bfloat16
    assert _autocast_dtype(msst_own, "cuda:1") is torch.float16
    assert _autocast_dtype(no_amp, "cuda") is None
    assert _autocast_dtype(plugin, "cpu") is None
