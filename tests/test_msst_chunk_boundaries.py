"""No clicks at chunk boundaries through the stock `msst-inference` (issue 23, item 3).

msst's `num_overlap: 1` fades every chunk in and out with a window that is 0 at both
ends, and with nothing overlapping, 0/0 becomes 0: the separated vocals were exactly 0
for one or two samples at every chunk boundary. Every shipped config is run through the
real `msst-inference` with its own `audio`, `training` and `inference` sections and a
tiny model of its type in place of the `model:` section; the vocals of a non-silent
mixture must hold no exact zero.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
BIN = Path(sys.executable).parent
TINY_BSMAMBA2 = {"dim": 8, "depth": 1, "freqs_per_bands": [32, 32, 32, 33], "stft_n_fft": 256,
                 "stft_hop_length": 128, "stft_win_length": 256, "d_state": 4, "expand": 2,
                 "headdim": 8, "mask_estimator_depth": 1, "backend": "reference"}
# songs: longer than msst's border padding of every shipped config (several batches of
# chunks), and shorter than it (no padding: the first chunk's own edge is the track's)
SONG_SECONDS = {"long": 21.5, "short": 5.0}


def zero_runs(audio: np.ndarray) -> list[tuple[int, int]]:
    """(first sample, length) of every run of samples that are exactly 0 in all channels."""
    silent = np.concatenate([[0], (audio == 0).all(axis=1).astype(np.int8), [0]])
    edges = np.diff(silent)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist()))


def test_zero_runs_counts_runs_of_exact_zeros() -> None:
    audio = np.ones((10, 2))
    audio[[0, 4, 5], :] = 0
    audio[7, 0] = 0  # one channel only: not silent
    assert zero_runs(audio) == [(0, 1), (4, 2)]


def tiny_config(path: Path) -> dict:
    """The shipped config with a tiny model of its type (num_stems and stereo kept)."""
    config = yaml.safe_load(path.read_text())
    shipped = config["model"]
    if "bs_roformer" in path.name:
        model = dict(yaml.safe_load((REPO / "configs" / "config_tiny_bs_roformer.yaml")
                                    .read_text())["model"])
    else:
        model = dict(TINY_BSMAMBA2)
    model.update({k: shipped[k] for k in ("num_stems", "stereo") if k in shipped})
    config["model"] = model
    return config


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    import soundfile as sf

    folder = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(23)
    for name, seconds in SONG_SECONDS.items():
        n = int(seconds * 44100)
        t = np.arange(n) / 44100
        tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)
        stereo = np.stack([tone, 0.7 * tone + 0.01], axis=1).astype(np.float32)
        assert not zero_runs(stereo)
        sf.write(folder / f"{name}.wav", stereo, 44100, subtype="FLOAT")
    return folder


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_msst_inference_writes_no_zeroed_samples_with_any_shipped_config(
        path: Path, songs: Path, tmp_path) -> None:
    import soundfile as sf
    from ml_collections import ConfigDict

    from bsmamba2_plugin.msst_integration import bridge

    bridge.install()
    from msst.utils.settings import get_model_from_config

    config = tiny_config(path)
    config_path = tmp_path / path.name
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    model_type = "bs_roformer" if "bs_roformer" in path.name else "bsmamba2"
    model, _ = get_model_from_config(model_type, str(config_path))
    torch.save(model.state_dict(), tmp_path / "tiny.ckpt")
    result = subprocess.run(
        [str(BIN / "msst-inference"), "--model_type", model_type, "--config_path",
         str(config_path), "--start_check_point", str(tmp_path / "tiny.ckpt"),
         "--input_folder", str(songs), "--store_dir", str(tmp_path / "out"), "--force_cpu",
         "--disable_detailed_pbar"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    inference = ConfigDict(config)["inference"]
    found = {}
    for name, seconds in SONG_SECONDS.items():
        vocals, rate = sf.read(tmp_path / "out" / name / "vocals.wav", always_2d=True)
        assert rate == 44100 and len(vocals) == int(seconds * 44100)
        found[name] = zero_runs(vocals)
    assert not any(found.values()), (
        f"{path.name} (num_overlap {inference.num_overlap}, batch {inference.batch_size}): "
        + "; ".join(f"{name} song: {len(runs)} runs of exact zeros, first {runs[:4]}"
                    for name, runs in found.items()))
