from __future__ import annotations

import json
import os

import pytest
import torch

from bsmamba2_plugin.cli import main


def test_doctor_reports_versions_and_backend(capsys: pytest.CaptureFixture) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "backend on cpu" in out and "reference" in out
    # the shipped configs' plan on the CPU: selective acts as whole-block recomputation
    assert ("plan on cpu  " in out and "while training: whole blocks recomputed" in out
            and "groups of about 1024 tokens" in out)


def test_summary_prints_the_execution_plan_of_the_config(tmp_path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  gradient_checkpointing: true\n")
    assert main(["summary", "--config", str(config), "--seconds", "0"]) == 0
    out = capsys.readouterr().out
    plan = out[out.index("Execution plan on cpu"):].splitlines()[1:4]
    assert [line.strip() for line in plan] == [
        "backend: reference (tensors are on 'cpu'; the mamba_ssm kernels need CUDA)",
        "while training: whole blocks recomputed in the backward pass",
        "inference on the CPU: sequences in groups of about 1024 tokens"]


def test_summary_of_the_tiny_preset_runs_the_test_signal(capsys) -> None:
    assert main(["summary", "--preset", "tiny", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "finite: True" in out and "(1, 1, 2, 8820)" in out


def test_summary_of_the_paper_preset_counts_48_098_188(capsys) -> None:
    assert main(["summary", "--seconds", "0"]) == 0
    assert "48,098,188" in capsys.readouterr().out


def test_summary_reads_an_msst_yaml(tmp_path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  dim: 16\n  depth: 1\n  stft_n_fft: 64\n  stft_hop_length: 16\n"
                      "  stft_win_length: 64\n  freqs_per_bands: [4, 8, 8, 13]\n"
                      "  d_state: 8\n  expand: 2\n  headdim: 8\n")
    assert main(["summary", "--config", str(config), "--seconds", "0.1"]) == 0
    assert str(config) in capsys.readouterr().out


def test_bad_config_key_is_reported_with_the_file(tmp_path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  dimm: 16\n")
    assert main(["summary", "--config", str(config), "--seconds", "0"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: model.dimm" in err and "Did you mean 'dim'" in err


def test_missing_config_file_is_reported(capsys) -> None:
    assert main(["summary", "--config", "nope.yaml"]) == 2
    assert "no such file: nope.yaml" in capsys.readouterr().err


def test_doctor_names_an_unloadable_torchaudio_and_the_fix(tmp_path) -> None:
    """A torchaudio whose compiled library cannot load (as torchaudio 2.11.1 beside torch
    2.11.0): doctor says so, prints the command that fixes it, and exits non-zero."""
    import os
    import subprocess
    import sys

    stub = tmp_path / "stub" / "torchaudio"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "raise OSError('libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n")
    env = dict(os.environ, PYTHONPATH=str(stub.parent))
    result = subprocess.run([sys.executable, "-m", "bsmamba2_plugin.cli", "doctor"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CANNOT LOAD: OSError: libtorchaudio.so: undefined symbol" in result.stdout
    problem = result.stdout.split("Problem:", 1)[1]
    assert "msst-train" in problem and "Fix:" in problem and "-m pip install" in problem
    assert "torchaudio==" in problem


def test_torchaudio_fix_matches_the_torch_release() -> None:
    from bsmamba2_plugin.cli.doctor import _torchaudio_fix

    assert _torchaudio_fix("2.11.0+cu130").endswith("'torchaudio==2.11.0'")
    assert _torchaudio_fix("2.9.1").endswith("'torchaudio==2.9.1'")
    newer = _torchaudio_fix("2.13.0+cpu")
    assert "'torch==2.11.0' 'torchaudio==2.11.0'" in newer and "/lib/*.so" in newer


def test_make_dataset_without_seed_uses_the_default_and_prints_it(tmp_path, capsys) -> None:
    out = tmp_path / "data"
    assert main(["make-dataset", str(out), "--tracks", "1", "--seconds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "seed 0 (the default; --seed K renders another dataset)" in printed
    assert json.loads((out / "train" / "track_000" / "activity.json").read_text())["seed"] == 0


def test_bench_variants_are_configs_and_change_no_process_state() -> None:
    """Each bench variant is a paper config with its own switches (`short_scan: false` for
    the chunked-scan ones, `fused_block: false` for unfused); building one changes nothing
    for the next (no environment variable, no class attribute)."""
    from bsmamba2_plugin.evaluation.bench import build_variant

    environ = dict(os.environ)
    cpu = torch.device("cpu")
    expected = {"bsmamba2": (False, True, True),
                "bsmamba2-selective-chunked-scan": ("selective", True, False),
                "bsmamba2-unfused": (False, False, True),
                "bsmamba2-selective-mamba-time-scan": ("selective", True, True)}
    for name, (recompute, fused, short) in [*expected.items(), ("bsmamba2",
                                                                 expected["bsmamba2"])]:
        config = build_variant(name, cpu)[0].config
        assert (config.gradient_checkpointing, config.fused_block, config.short_scan) == (
            recompute, fused, short), name
        assert config.long_scan == (not name.endswith("-mamba-time-scan")), name
    assert dict(os.environ) == environ


def test_bench_rejects_an_unknown_model_with_the_valid_names(capsys) -> None:
    assert main(["bench", "--models", "bs_roformerr", "--seconds", "0.1", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'bs_roformerr'" in err and "bs_roformer_256x6" in err


def test_separate_offers_every_cpu_variant() -> None:
    """The CLI restates the variant names (importing cpu_variants would put torch into
    the CLI's import); this keeps the two lists the same."""
    from bsmamba2_plugin.cli import build_parser
    from bsmamba2_plugin.inference.cpu_variants import VARIANTS

    parser = build_parser()
    separate = next(action for action in parser._subparsers._group_actions[0].choices[
        "separate"]._actions if action.dest == "variant")
    assert tuple(separate.choices) == ("auto", *VARIANTS)
