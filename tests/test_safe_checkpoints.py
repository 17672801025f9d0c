"""Issue 12: --start_check_point files in msst's stock commands (safe_load, run_safety).

A checkpoint whose pickle runs code is refused by every msst command that loads one, for
plugin model types, without running it (a marker file its payload would create never
appears); plain msst checkpoints and .safetensors load; a file that does not fit the
model, or is truncated, gets one message. CLI rows run msst's console scripts.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "config_tiny_bsmamba2.yaml"
BIN = Path(sys.executable).parent
TRUST = "BSMAMBA2_TRUST_PICKLE"


class _Payload:
    """Unpickling this runs `touch <marker>` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def evil_checkpoint(path: Path, marker: Path, *, plain_pickle: bool = False) -> Path:
    if plain_pickle:  # the file from the issue: pickle.dump, not torch.save
        with open(path, "wb") as handle:
            pickle.dump(_Payload(marker), handle, protocol=2)
    else:  # a real checkpoint with one extra object in it
        torch.save({"model_state_dict": {}, "hyper_parameters": _Payload(marker)}, path)
    return path


def tiny_checkpoint(path: Path, **model_overrides) -> Path:
    from bsmamba2_plugin.msst_integration.registry import build_model

    model_cfg = {**yaml.safe_load(TINY.read_text())["model"], **model_overrides}
    torch.manual_seed(0)
    model = build_model(model_cfg)
    torch.save({"model_state_dict": model.state_dict(),
                "meta": {"format_version": 1, "model_type": "bsmamba2"}}, path)
    return path


def run(*command: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    import numpy as np
    import soundfile as sf

    root = tmp_path_factory.mktemp("safe")
    write_tiny_dataset(root / "data", train_tracks=1, valid_tracks=1, seconds=2.0)
    (root / "songs").mkdir()
    song = (0.1 * np.random.default_rng(0).standard_normal((30000, 2))).astype(np.float32)
    sf.write(root / "songs" / "song.wav", song, 44100, subtype="FLOAT")
    return root


def _command(name: str, checkpoint: Path) -> list[str]:
    common = ["--model_type", "bsmamba2", "--config_path", str(TINY), "--start_check_point",
              str(checkpoint)]
    if name == "msst-inference":
        return [name, *common, "--input_folder", "songs", "--store_dir", "out", "--force_cpu"]
    if name == "msst-valid":
        return [name, *common, "--valid_path", "data/valid", "--store_dir", "out",
                "--force_cpu", "--metrics", "sdr"]
    if name == "msst-check":
        return [name, *common, "--results_path", "check", "--data_path", "data/train",
                "--valid_path", "data/valid"]
    return [name, *common, "--data_path", "data/train", "--valid_path", "data/valid",
            "--dataset_type", "1", "--results_path", "results", "--num_workers", "0"]


COMMANDS = ["msst-inference", "msst-valid", "msst-train", "msst-check",
            pytest.param("msst-train-accelerate", marks=pytest.mark.skipif(
                importlib.util.find_spec("accelerate") is None, reason="needs accelerate"))]


@pytest.mark.parametrize("command", COMMANDS)
def test_pickle_with_code_is_refused_by_every_msst_command(work: Path, command: str) -> None:
    marker = work / f"PWNED-{command}"
    evil = evil_checkpoint(work / f"evil-{command}.ckpt", marker,
                           plain_pickle=command in ("msst-inference", "msst-check"))
    out = run(*_command(command, evil), cwd=work)
    text = out.stdout + out.stderr
    assert not marker.exists(), text[-3000:]
    assert "Refused to load checkpoint" in text and str(evil) in text, text[-3000:]
    assert TRUST in text and "safetensors" in text
    if command != "msst-check":  # msst-check reports and exits 0 only when all pass
        assert out.returncode != 0
    else:
        assert "[FAIL]" in text or out.returncode != 0


def test_ddp_and_module_loaders_are_guarded(tmp_path) -> None:
    """msst-train-ddp needs CUDA, so its loaders are tested in-process: the `torch` that
    msst._training (train_model, used by DDP ranks) and msst._valid_ddp call."""
    import msst._training
    import msst._valid_ddp
    import msst.utils.model_utils
    from msst.errors import CheckpointError

    from bsmamba2_plugin.msst_integration import bridge, run_state

    bridge.install()
    run_state.current().note_model("bsmamba2", is_plugin=True)
    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    for module in (msst._training, msst._valid_ddp, msst.utils.model_utils):
        with pytest.raises(CheckpointError, match="Refused to load"):
            module.torch.load(str(evil), weights_only=False, map_location="cpu")
    assert not marker.exists()


def test_trust_variable_names_one_file(tmp_path, monkeypatch) -> None:
    import msst._inference

    from bsmamba2_plugin.msst_integration import bridge, run_state

    bridge.install()
    run_state.current().note_model("bsmamba2", is_plugin=True)
    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    monkeypatch.setenv(TRUST, str(tmp_path / "other.ckpt"))
    with pytest.raises(RuntimeError, match="Refused"):
        msst._inference.torch.load(str(evil), weights_only=False)
    assert not marker.exists()
    monkeypatch.setenv(TRUST, str(evil))
    msst._inference.torch.load(str(evil), weights_only=False)
    assert marker.exists()  # the explicit opt-in loads it as msst would


def test_msst_types_keep_msst_loading_unless_switched_on(tmp_path, monkeypatch) -> None:
    import msst._inference

    from bsmamba2_plugin.msst_integration import bridge, run_state, safe_load

    bridge.install()
    run_state.current().note_model("bs_roformer", is_plugin=False)
    monkeypatch.delenv(safe_load.ALL_ENV, raising=False)
    try:
        marker = tmp_path / "PWNED"
        msst._inference.torch.load(str(evil_checkpoint(tmp_path / "a.ckpt", marker)),
                                   weights_only=False)
        assert marker.exists()  # msst's own behaviour, unchanged by default
        marker.unlink()
        monkeypatch.setenv(safe_load.ALL_ENV, "1")
        with pytest.raises(RuntimeError, match="Refused"):
            msst._inference.torch.load(str(evil_checkpoint(tmp_path / "b.ckpt", marker)),
                                       weights_only=False)
        assert not marker.exists()
    finally:
        run_state.current().note_model("bsmamba2", is_plugin=True)


def test_checkpoints_msst_writes_load_weights_only(tmp_path) -> None:
    """save_weights' full checkpoint (optimizer, scheduler, numpy metric history) loads."""
    import argparse

    import numpy as np
    from msst.utils import model_utils

    from bsmamba2_plugin.msst_integration import bridge, run_state

    bridge.install()
    run_state.current().note_model("bsmamba2", is_plugin=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max")
    args = argparse.Namespace(train_lora_peft=False, train_lora_loralib=False,
                              checkpoint_meta={"model_type": "bsmamba2"})
    path = tmp_path / "model.ckpt"
    model_utils.save_weights(str(path), model, [0], optimizer, 3,
                             {"epoch_0": {"sdr": [np.float64(1.5)]}}, {"epoch_0": [0.5]},
                             np.float64(1.5), args, scheduler)
    loaded = model_utils.torch.load(str(path), weights_only=False, map_location="cpu")
    assert loaded["epoch"] == 3 and "state" in loaded["optimizer_state_dict"]
    assert torch.equal(loaded["model_state_dict"]["weight"], model.weight)


def test_safetensors_weights_load(tmp_path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    import msst._inference

    from bsmamba2_plugin.msst_integration import bridge, run_state

    bridge.install()
    run_state.current().note_model("bsmamba2", is_plugin=True)
    weights = {"a.weight": torch.randn(2, 3)}
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file(weights, str(path))
    loaded = msst._inference.torch.load(str(path), weights_only=False, map_location="cpu")
    assert torch.equal(loaded["a.weight"], weights["a.weight"])


# ------------------------------------------------------------------- row 2
def test_wrong_shapes_give_one_message_in_inference(work: Path) -> None:
    bad = tiny_checkpoint(work / "dim16.ckpt", dim=16)
    out = run(*_command("msst-inference", bad), cwd=work)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "does not fit the model the config builds" in text, text[-3000:]
    assert "with other shapes" in text and "--config_path this checkpoint" in text
    assert "size mismatch for" not in text  # not torch's page of load_state_dict errors


def test_other_model_and_truncated_file_in_valid(work: Path) -> None:
    other = work / "other.ckpt"
    torch.save({"encoder.weight": torch.zeros(4, 4)}, other)  # another model's weights
    out = run(*_command("msst-valid", other), cwd=work)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "does not fit the model the config builds" in text, \
        text[-3000:]
    assert "unexpected (e.g. encoder.weight)" in text

    good = tiny_checkpoint(work / "good.ckpt")
    truncated = work / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:5000])
    out = run(*_command("msst-valid", truncated), cwd=work)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "is not a complete PyTorch checkpoint" in text, text[-3000:]
    assert "truncated" in text
