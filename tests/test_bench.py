"""`bsmamba2 bench`'s own behaviour: every variant in its own process, so that one that
crashes is reported in its row and the rest still run; variants that cannot fit the card
are not started. (Speed is measured by the bench, not asserted here.)"""

from __future__ import annotations

import sys

import pytest

from bsmamba2_plugin.evaluation import bench


@pytest.mark.parametrize("name, batch, seconds, card, fits", [
    ("bsmamba2", 5, 8.0, 79.2, False),  # 86.5 GiB measured at batch 5: not on an H100
    ("bsmamba2", 5, 8.0, 139.8, True),  # an H200
    ("bsmamba2", 2, 8.0, 79.2, True),  # 34.6 GiB
    ("bsmamba2+compile", 5, 8.0, 79.2, False),
    ("bsmamba2-selective", 5, 8.0, 79.2, True),  # nothing measured that would not fit
    ("bsmamba2", 5, 8.0, None, True),  # the CPU: no card
])
def test_a_variant_that_cannot_fit_the_card_is_not_started(name, batch, seconds, card,
                                                           fits) -> None:
    note = bench.memory_note(name, batch, seconds, card)
    assert (note is None) == fits
    if not fits:
        assert note.startswith("not run: needs ~86.5 GiB to train at batch 5 x 8 s")
        assert "this card has 79 GiB" in note


def test_a_crashing_variant_is_reported_and_the_next_still_runs(monkeypatch) -> None:
    """The first variant's process dies the way a poisoned CUDA context ends one (an
    uncaught error, exit code 1); the second runs for real (paper model, CPU, 0.05 s)."""
    real = bench._child_command

    def command(name, **kwargs):
        if name == "bsmamba2-reference":
            return [sys.executable, "-c",
                    "raise RuntimeError('CUDA error: an illegal memory access was encountered')"]
        return real(name, **kwargs)

    monkeypatch.setattr(bench, "_child_command", command)
    printed = []
    results = bench.run_bench(["bsmamba2-reference", "bsmamba2"], seconds=0.05, repeats=1,
                              echo=printed.append)
    crashed, ran = results
    assert crashed.note.startswith("crashed (exit code 1): RuntimeError: CUDA error: an "
                                   "illegal memory access")
    assert crashed.train_ms is None
    assert ran.note == "" and ran.train_ms > 0 and ran.infer_ms > 0
    assert ran.params == 48_098_188 and ran.fwd_gflop_per_audio_s > 0
    table = printed[-1]
    assert "| bsmamba2-reference |" in table and "crashed (exit code 1)" in table


def test_each_row_is_printed_and_saved_when_its_variant_ends(monkeypatch, tmp_path) -> None:
    """A run stopped from outside (a time limit, Ctrl-C) keeps what it measured: after the
    first variant (stopped at its --variant-timeout) its row is printed and the JSON file
    holds it, marked incomplete; the finished run's file says complete."""
    import json

    real = bench._child_command
    seen = []

    def command(name, **kwargs):
        if name == "bsmamba2-reference":
            return [sys.executable, "-c", "import time; time.sleep(60)"]
        seen.append(json.loads((tmp_path / "b.json").read_text()))  # before the 2nd starts
        return real(name, **kwargs)

    real_run = bench._run_child
    timeouts = []

    def run_child(name, cmd, flops, echo, timeout_s):
        timeouts.append(timeout_s)  # what --variant-timeout gave; the sleeper gets 1 s
        return real_run(name, cmd, flops, echo, 1.0 if name == "bsmamba2-reference"
                        else timeout_s)

    monkeypatch.setattr(bench, "_child_command", command)
    monkeypatch.setattr(bench, "_run_child", run_child)
    printed = []
    bench.run_bench(["bsmamba2-reference", "bsmamba2"], seconds=0.05, repeats=1,
                    json_path=tmp_path / "b.json", variant_timeout_s=300.0,
                    echo=printed.append)
    assert timeouts == [300.0, 300.0]
    partial, = seen
    assert partial["complete"] is False
    assert [r["model"] for r in partial["results"]] == ["bsmamba2-reference"]
    assert partial["results"][0]["note"].startswith("not finished within 1 s (stopped")
    rows = [line for line in printed if line.startswith("bench: | ")]
    assert [row.split("|")[1].strip() for row in rows] == ["bsmamba2-reference", "bsmamba2"]
    final = json.loads((tmp_path / "b.json").read_text())
    assert final["complete"] is True and len(final["results"]) == 2
    assert final["results"][1]["train_ms"] > 0


def test_a_variant_timeout_of_zero_is_refused_in_one_line(capsys) -> None:
    from bsmamba2_plugin.cli import main

    assert main(["bench", "--models", "bsmamba2", "--variant-timeout", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--variant-timeout" in err and "Fix:" in err


def test_graph_and_compile_suffixes_are_known_and_a_misspelt_one_is_refused() -> None:
    from bsmamba2_plugin.errors import UserValueError

    bench._check_names(["bsmamba2-selective+graph", "bs_roformer_256x6+compile+graph"])
    with pytest.raises(UserValueError, match=r"unknown model 'bsmamba2\+grph'.*'\+graph'"):
        bench._check_names(["bsmamba2+grph"])


def test_graphed_inference_is_refused_without_cuda() -> None:
    import torch

    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        bench._graphed_inference(torch.nn.Identity(), None, torch.zeros(1), torch.float32,
                                 torch.device("cpu"))


def test_option_suffixes_combine_into_config_keys_and_only_on_our_two_base_variants() -> None:
    assert bench.variant_options("bsmamba2-selective-long-scan-packed-gate") == (
        "bsmamba2-selective", {"long_scan": True, "packed_gate": True})
    assert bench.variant_options("bsmamba2-packed-gate-mamba-norm") == (
        "bsmamba2", {"gated_norm": "mamba_ssm", "packed_gate": True})
    assert bench.variant_options("bsmamba2-selective") == ("bsmamba2-selective", {})
    # the defaults turned off, and mamba_ssm's time-axis chunk
    assert bench.variant_options("bsmamba2-selective-mamba-time-scan-copied-gate-chunk256") == (
        "bsmamba2-selective", {"long_scan": False, "packed_gate": False, "chunk_size": 256})
    # our time-axis backward
    assert bench.variant_options("bsmamba2-selective-own-time-backward") == (
        "bsmamba2-selective", {"long_scan_backward": "bsmamba2"})
    # a suffix twice, or on another base, is no option set
    assert bench.variant_options("bsmamba2-long-scan-long-scan")[1] == {}
    assert bench.variant_options("bsmamba2-ckpt-long-scan")[1] == {}
    bench._check_names(["bsmamba2-selective-chunked-scan-long-scan+graph"])
    from bsmamba2_plugin.errors import UserValueError

    with pytest.raises(UserValueError, match="unknown model"):
        bench._check_names(["bsmamba2-ckpt-long-scan"])
