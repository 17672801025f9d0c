"""A user's first mistakes get one-line answers from the stock msst commands (needs msst).

Misspelt config sections and keys, and training data without the target's stem files,
are reported by `msst-train` as one `error:` line that names the file and the fix, not
as a traceback, and never silently train with msst's defaults.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

TINY = Path(__file__).parent.parent / "configs" / "config_tiny_bsmamba2.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("mistakes") / "data", train_tracks=2,
                              valid_tracks=1, seconds=2.0)


def train(config: Path, data: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "msst-train"), "--model_type", "bsmamba2", "--config_path", str(config),
         "--data_path", str(data / "train"), "--valid_path", str(data / "valid"),
         "--dataset_type", "1", "--results_path", "results", "--num_workers", "0"],
        cwd=cwd, capture_output=True, text=True, timeout=600)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `error:` line msst-train ended with (and no traceback)."""
    output = result.stdout[-2000:] + result.stderr[-2000:]
    assert result.returncode != 0, output
    assert "Traceback" not in result.stderr, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_misspelt_section_is_an_error_with_a_suggestion(data: Path, tmp_path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text(TINY.read_text().replace("loss_bsmamba2:", "loss_bsmamba:"))
    line = one_error_line(train(config, data, tmp_path))
    assert str(config) in line and "'loss_bsmamba'" in line
    assert "Did you mean 'loss_bsmamba2'?" in line


@pytest.mark.parametrize("section, typo", [("loss_bsmamba2", "time_wieght: 10.0"),
                                           ("augmentations_bsmamba2", "silence_prob: 0.1")])
def test_misspelt_key_in_a_plugin_section_is_one_line(section: str, typo: str, data: Path,
                                                      tmp_path) -> None:
    config = tmp_path / "key.yaml"
    config.write_text(TINY.read_text().replace(f"{section}:", f"{section}:\n  {typo}", 1))
    line = one_error_line(train(config, data, tmp_path))
    assert str(config) in line and f"{section}.{typo.split(':')[0]}" in line
    assert "Did you mean" in line


def test_training_log_states_the_active_setup_once(data: Path, tmp_path) -> None:
    result = train(TINY, data, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines()
             if line.startswith("bsmamba2 training setup:")]
    assert len(lines) == 1, result.stdout[-3000:]
    line = lines[0]
    assert "loss: loss_bsmamba2 = 10 x L1(time) + 1 x complex STFT L1" in line
    assert "data: augmentations_bsmamba2" in line and "silence p 0.1" in line
    assert "EMA: 0.999" in line and "best_bsmamba2.ckpt" in line
    assert "precision: float32" in line  # use_amp, but autocast only runs on CUDA


def test_missing_stem_file_is_named(tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=1, seconds=2.0)
    (data / "train" / "train 01" / "vocals.wav").unlink()
    line = one_error_line(train(TINY, data, tmp_path))
    assert "train 01" in line and "vocals.wav" in line
