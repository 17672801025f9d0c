"""A user's first steps with msst installed: the README's Python example, msst's own
`bs_mamba2` on a machine without mamba_ssm, and `evaluate` with too few tracks.

Uses untrained tiny checkpoints (configs/config_tiny_bsmamba2.yaml), so it runs in
seconds; tests/test_msst_integration.py covers trained ones.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "config_tiny_bsmamba2.yaml"


def untrained_checkpoint(path: Path, seed: int = 0) -> Path:
    """An msst checkpoint of the tiny config, with the meta msst-train writes."""
    from bsmamba2_plugin.msst_integration.registry import build_model

    torch.manual_seed(seed)
    model = build_model(yaml.safe_load(TINY.read_text())["model"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": model.state_dict(),
                "meta": {"format_version": 1, "model_type": "bsmamba2"}}, path)
    return path


def readme_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"expected one README python block with {containing!r}"
    return found[0]


def test_readme_separator_example_runs_as_written(tmp_path, monkeypatch) -> None:
    """The README's `msst.Separator(model_type="bsmamba2", ...)` block, executed verbatim in
    a folder where its file names hold the tiny config, an untrained checkpoint and a song."""
    import soundfile as sf

    code = readme_block('msst.Separator(model_type="bsmamba2"')
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config_vocals_bsmamba2.yaml").write_text(TINY.read_text())
    untrained_checkpoint(tmp_path / "results" / "bsmamba2" / "last_bsmamba2_ema.ckpt")
    song = (0.1 * np.random.default_rng(0).standard_normal((50000, 2))).astype(np.float32)
    sf.write(tmp_path / "song.wav", song, 44100, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    for name in ("vocals", "instrumental"):
        audio, rate = sf.read(tmp_path / f"song_{name}.wav")
        assert rate == 44100 and audio.shape == song.shape, name


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None,
                    reason="mamba_ssm is installed here, so msst's bs_mamba2 builds")
def test_msst_bs_mamba2_without_mamba_ssm_points_to_bsmamba2() -> None:
    from msst.errors import OptionalDependencyError
    from msst.utils.settings import get_model_from_config

    with pytest.raises(OptionalDependencyError) as caught:
        get_model_from_config("bs_mamba2", str(TINY))
    error = caught.value
    message = str(error)
    # msst's own error, unchanged ...
    assert message.startswith("The 'bs_mamba2' model requires the optional dependency "
                              "'mamba_ssm'.")
    assert error.dependency == "mamba_ssm" and error.extra == "bs-mamba2"
    # ... with the way out
    assert "--model_type bsmamba2" in message and "pure PyTorch" in message
    assert "convert-checkpoint" in message


def test_evaluate_two_models_one_track_says_why_no_paired_comparison(tmp_path, capsys) -> None:
    from bsmamba2_plugin.cli import main

    write_tiny_dataset(tmp_path / "data", train_tracks=0, valid_tracks=1, seconds=2.0)
    a = untrained_checkpoint(tmp_path / "a.ckpt", seed=1)
    b = untrained_checkpoint(tmp_path / "b.ckpt", seed=2)
    assert main(["evaluate", "--config", str(TINY), str(TINY), "--checkpoint", str(a), str(b),
                 "--name", "a", "b", "--data", str(tmp_path / "data" / "valid"),
                 "--chunk-seconds", "1", "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    note = "No paired comparison of a - b: the paired bootstrap needs at least 2 tracks"
    assert note in out
    assert note in (tmp_path / "report" / "summary.md").read_text()


def test_evaluate_rescores_a_model_whose_checkpoint_changed(tmp_path, capsys) -> None:
    """A rerun into the same --out (as `recipe run --force` does after retraining) must not
    present the earlier checkpoint's rows as the new one's."""
    import json

    from bsmamba2_plugin.cli import main

    write_tiny_dataset(tmp_path / "data", train_tracks=0, valid_tracks=1, seconds=2.0)
    checkpoint = tmp_path / "model.ckpt"
    command = ["evaluate", "--config", str(TINY), "--checkpoint", str(checkpoint), "--name",
               "m", "--no-mixture", "--data", str(tmp_path / "data" / "valid"),
               "--chunk-seconds", "1", "--out", str(tmp_path / "report")]
    untrained_checkpoint(checkpoint, seed=1)
    assert main(command) == 0
    first = json.loads((tmp_path / "report" / "results.jsonl").read_text())
    assert main(command) == 0  # unchanged: resumed
    assert "0 to do" in capsys.readouterr().out
    untrained_checkpoint(checkpoint, seed=2)  # "retrained"
    assert main(command) == 0
    assert "1 to do" in capsys.readouterr().out
    (row,) = [json.loads(line) for line in
              (tmp_path / "report" / "results.jsonl").read_text().splitlines()]
    assert row["model_fingerprint"] != first["model_fingerprint"]
    assert row["usdr"] != first["usdr"]
    kept = json.loads((tmp_path / "report" / "results.replaced.jsonl").read_text())
    assert kept == first  # nothing deleted
