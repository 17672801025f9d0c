"""Issue 23, item 2 and the msst-train part of item 6: the training data a user brings.

msst's training reader takes samples as they are, whatever the file's rate: a folder
with 48 kHz stems trained as if it were 44.1 kHz, without a word. The dataset now refuses,
at the start, a training set whose files are not at `audio.sample_rate`, mix channel
counts or are cut short, with the offending files in one line. And a run with the paper's
data recipe no longer prints msst's "Augmentations disabled" nor numpy's RuntimeWarnings
about the stems that are not scored.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_MODEL = {"dim": 8, "depth": 1, "freqs_per_bands": [32, 32, 32, 33], "stft_n_fft": 256,
              "stft_hop_length": 128, "stft_win_length": 256, "d_state": 4, "expand": 2,
              "headdim": 8, "mask_estimator_depth": 1, "backend": "reference"}


def tiny_config(tmp_path: Path) -> Path:
    """config_tiny_bsmamba2.yaml (paper loss, data recipe without salient windows) with a
    smaller model, one step."""
    config = yaml.safe_load((REPO / "configs" / "config_tiny_bsmamba2.yaml").read_text())
    config["model"] = dict(TINY_MODEL)
    config["training"].update({"num_steps": 1, "num_epochs": 1, "batch_size": 1})
    config["audio"]["chunk_size"] = config["inference"]["chunk_size"] = 22050
    # the test data's drums are too sparse for salient windows of a few seconds
    config["augmentations_bsmamba2"]["salient_windows"] = False
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def msst_train(tmp_path: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "msst-train"), "--model_type", "bsmamba2", "--config_path",
         str(tiny_config(tmp_path)), "--data_path", str(data / "train"), "--valid_path",
         str(data / "valid"), "--dataset_type", "1", "--results_path", str(tmp_path / "results"),
         "--num_workers", "0", "--metrics", "sdr"],
        capture_output=True, text=True, timeout=900)


def rewrite(path: Path, *, rate: int | None = None, channels: int | None = None) -> None:
    import soundfile as sf

    audio, old_rate = sf.read(path, dtype="float32", always_2d=True)
    if channels is not None:
        audio = audio[:, :1] if channels == 1 else np.repeat(audio[:, :1], channels, axis=1)
    sf.write(path, audio, rate or old_rate, subtype="FLOAT")


def test_msst_train_refuses_stems_at_another_sample_rate(tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data", train_tracks=3, valid_tracks=1, seconds=2.0)
    odd = data / "train" / "train 01" / "vocals.wav"
    rewrite(odd, rate=48000)
    result = msst_train(tmp_path, data)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if str(odd) in line]
    assert "1 training file(s) are not at audio.sample_rate 44100 Hz" in line
    assert f"{odd} (48000 Hz)" in line and "Fix:" in line
    assert not list((tmp_path / "results").glob("*.ckpt"))


@pytest.fixture
def dataset_class():
    from bsmamba2_plugin.msst_integration import bridge

    bridge.install()
    import msst.utils.dataset

    return msst.utils.dataset.MSSDataset


def build(dataset_class, tmp_path: Path, data: Path):
    from ml_collections import ConfigDict

    config = ConfigDict(yaml.safe_load(tiny_config(tmp_path).read_text()))
    return dataset_class(config, str(data), metadata_path=str(tmp_path / "metadata_1.pkl"),
                         dataset_type=1, verbose=False)


def test_training_refuses_mixed_channel_counts_and_names_the_files(dataset_class,
                                                                    tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data", train_tracks=3, valid_tracks=0, seconds=1.0)
    mono = data / "train" / "train 00" / "bass.wav"
    six = data / "train" / "train 02" / "other.wav"
    rewrite(mono, channels=1)
    rewrite(six, channels=6)
    with pytest.raises(ValueError) as info:
        build(dataset_class, tmp_path, data / "train")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "1 and 2 and 6 channels" in message
    assert f"{mono} (1 ch)" in message and f"{six} (6 ch)" in message and "Fix:" in message


def test_training_refuses_a_cut_short_wav(dataset_class, tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=0, seconds=1.0)
    cut = data / "train" / "train 01" / "drums.wav"
    cut.write_bytes(cut.read_bytes()[:3000])
    with pytest.raises(ValueError, match="cut short") as info:
        build(dataset_class, tmp_path, data / "train")
    assert str(cut) in str(info.value)


def test_a_consistent_training_set_is_accepted_also_all_mono(dataset_class, tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=0, seconds=1.0)
    assert len(build(dataset_class, tmp_path, data / "train").metadata) == 2
    for path in (data / "train").rglob("*.wav"):
        rewrite(path, channels=1)  # msst duplicates mono for every stem alike
    (tmp_path / "again").mkdir()
    assert len(build(dataset_class, tmp_path / "again", data / "train").metadata) == 2


def test_msst_train_with_the_paper_recipe_prints_only_true_lines(tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=1, seconds=2.0)
    result = msst_train(tmp_path, data)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Augmentations disabled" not in output  # msst's, untrue with the recipe on
    assert "RuntimeWarning" not in output  # numpy on the empty lists of unscored stems
    assert "data: augmentations_bsmamba2" in output  # the plugin's own statement
    history = [line for line in (tmp_path / "results" / "training_history.jsonl")
               .read_text().splitlines() if line]
    assert len(history) == 1 and "NaN" not in history[0]
