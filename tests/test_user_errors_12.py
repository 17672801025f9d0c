"""Issue 12: what users get for bad configs, bad audio, full disks and interrupted runs.

Rows: (1) config errors name the key path, got vs expected and the fix, through the real
`bsmamba2 summary` and `msst-inference` console scripts; (2) make-dataset, recipe copy
stages, evaluate and convert-checkpoint never leave half-written files and never
overwrite without --overwrite; (3) NaN/Inf, empty, one-sample and silent audio through
BSMamba2.forward, the chunked inference and evaluate. Row 5 (property-based) is in
test_property_inference.py.
"""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bsmamba2_plugin import BSMamba2
from bsmamba2_plugin.cli import main
from bsmamba2_plugin.inference.chunked import separate

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "config_tiny_bsmamba2.yaml"
BIN = Path(sys.executable).parent


def _script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"console script {name} is not installed")
    return str(path)


def _bad_config(tmp_path: Path, section: str, key: str, value) -> Path:
    config = yaml.safe_load(TINY_YAML.read_text())
    config[section][key] = value
    path = tmp_path / f"{section}_{key}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ------------------------------------------------------------ row 1: configs
CONFIG_ERRORS = [
    ("model", "dimm", 32, ["model.dimm: unknown key", "Did you mean 'dim'"]),
    ("model", "depth", "two", ["model.depth: expected a positive integer, got 'two'", "Fix:"]),
    ("model", "depth", 0, ["model.depth: expected a positive integer, got 0", "Fix:"]),
    ("model", "freqs_per_bands", [8, 8, 16],
     ["model.freqs_per_bands", "hold 32 bins", "gives 257 bins", "Fix: make the bands sum"]),
    ("model", "headdim", 24, ["model.headdim", "64 is not a multiple of headdim=24", "Fix:"]),
    ("loss_bsmamba2", "time_wieght", 1.0,
     ["loss_bsmamba2.time_wieght: unknown key", "Did you mean 'time_weight'"]),
    ("loss_bsmamba2", "window_sizes", "big",
     ["loss_bsmamba2.window_sizes: expected a list of integers", "got 'big'"]),
    ("augmentations_bsmamba2", "gain_mn", 0.5,
     ["augmentations_bsmamba2.gain_mn: unknown key", "Did you mean 'gain_min'"]),
    ("augmentations_bsmamba2", "silence_p", "often",
     ["augmentations_bsmamba2.silence_p: expected a number", "got 'often'"]),
]


@pytest.mark.parametrize("section,key,value,expected", CONFIG_ERRORS)
def test_summary_config_errors_name_the_key_and_the_fix(tmp_path, section, key, value,
                                                        expected) -> None:
    path = _bad_config(tmp_path, section, key, value)
    result = subprocess.run([_script("bsmamba2"), "summary", "--config", str(path),
                             "--seconds", "0"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"bsmamba2 summary: error: {path}: ")
    for fragment in expected:
        assert fragment in result.stderr


@pytest.mark.msst
@pytest.mark.parametrize("key,value,fragment", [
    ("dimm", 32, "model.dimm: unknown key. Did you mean 'dim'?"),
    ("headdim", 24, "model.headdim: d_inner = dim * expand = 32 * 2 = 64 is not a multiple")])
def test_stock_msst_inference_reports_model_key_errors_without_a_traceback(
        tmp_path, key, value, fragment) -> None:
    pytest.importorskip("msst")
    path = _bad_config(tmp_path, "model", key, value)
    (tmp_path / "in").mkdir()
    (tmp_path / "none.ckpt").write_bytes(b"")  # msst builds the model before loading it
    result = subprocess.run(
        [_script("msst-inference"), "--model_type", "bsmamba2", "--config_path", str(path),
         "--start_check_point", str(tmp_path / "none.ckpt"), "--input_folder",
         str(tmp_path / "in"), "--store_dir", str(tmp_path / "out"), "--force_cpu"],
        capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert fragment in output


# ------------------------------------------- row 2: disk full, interrupted, reruns
class _FullDisk(io.BufferedWriter):
    """A file that takes `room` bytes and then fails like a full disk."""

    room = 5000

    def write(self, data) -> int:
        if type(self).room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device", self.name)
        type(self).room -= len(memoryview(data).cast("B"))
        return super().write(data)


def _full_disk_open(path, mode="r", *args, **kwargs):
    if "w" not in mode:
        return open(path, mode, *args, **kwargs)
    return _FullDisk(io.FileIO(path, "w"))


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_make_dataset_on_a_full_disk_leaves_no_half_file_and_reruns_cleanly(
        tmp_path, monkeypatch, capsys) -> None:
    from bsmamba2_plugin.data.render import mixing

    out = tmp_path / "data"
    argv = ["make-dataset", str(out), "--tracks", "2", "--valid-tracks", "1", "--seconds",
            "2", "--seed", "3"]
    _FullDisk.room = 400_000  # the first file fits, the disk fills during the second
    monkeypatch.setattr(mixing, "open", _full_disk_open, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Fix: free space" in err
    assert "Traceback" not in err
    written = _files(out)
    assert not [name for name in written if name.endswith(".tmp")]
    assert all(size > 1000 for size in written.values())  # only whole files
    monkeypatch.undo()  # space freed
    assert main(argv) == 2  # OUT is not empty: never overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert _files(out) == written
    assert main([*argv, "--overwrite"]) == 0
    fresh = tmp_path / "fresh"
    assert main([*argv[:1], str(fresh), *argv[2:]]) == 0
    assert {k: v for k, v in _files(out).items()} == _files(fresh)
    for name in _files(fresh):
        assert (out / name).read_bytes() == (fresh / name).read_bytes()


def test_make_dataset_interrupted_then_rerun_with_overwrite_completes(tmp_path, monkeypatch,
                                                                      capsys) -> None:
    from bsmamba2_plugin.data.render import mixing

    real = mixing._write_track
    calls = []

    def interrupted(folder, *args, **kwargs):
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(folder, *args, **kwargs)

    monkeypatch.setattr("bsmamba2_plugin.data.render.tracks._write_track", interrupted)
    out = tmp_path / "data"
    argv = ["make-dataset", str(out), "--tracks", "2", "--valid-tracks", "1", "--seconds", "2"]
    assert main(argv) == 130  # Ctrl-C: one line, no traceback (issue 23)
    assert "--overwrite to finish" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(argv) == 2
    assert "completes an interrupted run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert len(list(out.glob("*/track_*/mixture.wav"))) == 3


def test_convert_checkpoint_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch, capsys) -> None:
    from bsmamba2_plugin.msst_integration import checkpoints

    model = BSMamba2(dim=16, depth=1, freqs_per_bands=(4, 8, 8, 13), stft_n_fft=64,
                     stft_hop_length=16, stft_win_length=64, d_state=8, expand=2, headdim=8)
    torch.save(model.state_dict(), tmp_path / "in.ckpt")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": model.config.to_dict(), "training": {
        "instruments": ["vocals", "other"], "target_instrument": "vocals"}}))

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoints.torch, "save", full)
    argv = ["convert-checkpoint", str(tmp_path / "in.ckpt"), str(tmp_path / "out.ckpt"),
            "--config", str(config)]
    assert main(argv) == 2
    assert "no space left on the device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "in.ckpt"]
    monkeypatch.undo()
    assert main(argv) == 0
    (tmp_path / "out.ckpt").write_bytes(b"mine")
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out.ckpt").read_bytes() == b"mine"


def test_recipe_copy_stage_on_a_full_disk_leaves_no_half_copy(tmp_path, monkeypatch) -> None:
    from bsmamba2_plugin.experiments import recipe, runner

    source = tmp_path / "song.wav"
    source.write_bytes(b"x" * 10000)
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "name": "copy", "description": "d", "hardware": "cpu", "expected_duration": "1 s",
        "seed": 1, "metrics": ["usdr"], "config": str(TINY_YAML),
        "stages": [{"name": "song", "copy": {
            "from": str(source), "to": "{workdir}/songs/song.wav"}}]}))

    def full(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(runner.shutil, "copyfile", full)
    with pytest.raises(OSError):
        runner.run_recipe(recipe.load_recipe(recipe_path), tmp_path / "w", echo=lambda s: None)
    assert not [p for p in (tmp_path / "w").rglob("*") if p.is_file() and "song" in p.name]
    monkeypatch.undo()  # space freed
    runner.run_recipe(recipe.load_recipe(recipe_path), tmp_path / "w", echo=lambda s: None)
    assert (tmp_path / "w" / "songs" / "song.wav").read_bytes() == source.read_bytes()


def test_evaluate_drops_a_cut_short_results_line_and_scores_it_again(tmp_path) -> None:
    from bsmamba2_plugin.evaluation.evaluate import _read_rows

    rows = tmp_path / "results.jsonl"
    rows.write_text(json.dumps({"model": "a", "track": "t1"}) + "\n" + '{"model": "a", "tr')
    messages: list[str] = []
    assert _read_rows(rows, messages.append) == [{"model": "a", "track": "t1"}]
    assert "incomplete" in messages[0]
    assert rows.read_text() == json.dumps({"model": "a", "track": "t1"}) + "\n"


def test_evaluate_missing_data_is_a_clear_error(tmp_path, capsys) -> None:
    (tmp_path / "c.yaml").write_text(TINY_YAML.read_text())
    (tmp_path / "k.ckpt").write_bytes(b"")
    assert main(["evaluate", "--config", str(tmp_path / "c.yaml"), "--checkpoint",
                 str(tmp_path / "k.ckpt"), "--data", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "no track folders with mixture.wav" in err and "Fix:" in err


# ------------------------------------------------------------- row 3: audio
@pytest.fixture
def tiny_model(tiny_config) -> BSMamba2:
    return BSMamba2(tiny_config).eval()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_forward_and_separate_refuse_non_finite_samples(tiny_model, bad: float) -> None:
    x = torch.zeros(1, 2, 300)
    x[0, 1, 123] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite samples \(first at .* \[0, 1, 123\]"):
        tiny_model(x)
    with pytest.raises(ValueError, match="NaN or infinite sample at sample 123"):
        separate(tiny_model, x[0], 64)


def test_empty_audio_is_refused_one_sample_and_silence_work(tiny_model) -> None:
    with pytest.raises(ValueError, match="0 samples"):
        tiny_model(torch.zeros(1, 2, 0))
    with pytest.raises(ValueError, match="samples >= 1"):
        separate(tiny_model, torch.zeros(2, 0), 64)
    one = tiny_model(torch.full((1, 2, 1), 0.3))
    assert one.shape == (1, 1, 2, 1) and torch.isfinite(one).all()
    assert separate(tiny_model, torch.full((2, 1), 0.3), 64).shape == (1, 2, 1)
    for samples in (1, 64, 1000):
        assert torch.equal(tiny_model(torch.zeros(1, 2, samples)), torch.zeros(1, 1, 2, samples))
        assert torch.equal(separate(tiny_model, torch.zeros(2, samples), 64, overlap=2),
                           torch.zeros(1, 2, samples))


def test_evaluate_refuses_nan_empty_and_corrupt_audio(tmp_path) -> None:
    import soundfile as sf

    from bsmamba2_plugin.inference.audio_io import read_track_file as _read

    nan = np.zeros((100, 2), np.float32)
    nan[7, 0] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 44100, subtype="FLOAT")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), np.float32), 44100, subtype="FLOAT")
    for name, fragment in (("nan", "NaN or infinite"), ("empty", "cannot read"),
                           ("corrupt", "cannot read"), ("zero", "0 samples")):
        with pytest.raises(ValueError, match=fragment) as info:
            _read(tmp_path / f"{name}.wav")
        assert "Fix:" in str(info.value)


def _write_folder(folder: Path) -> None:
    import soundfile as sf

    folder.mkdir()
    rng = np.random.default_rng(0)
    (folder / "a_corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    (folder / "b_empty.wav").write_bytes(b"")
    nan = (0.1 * rng.standard_normal((4410, 2))).astype(np.float32)
    nan[100, 1] = np.nan
    sf.write(folder / "c_nan.wav", nan, 44100, subtype="FLOAT")
    sf.write(folder / "d_six_channels.wav", 0.1 * rng.standard_normal((4410, 6)), 44100)
    sf.write(folder / "e_mono.wav", 0.1 * rng.standard_normal(4410), 44100)
    sf.write(folder / "f_48k.wav", 0.1 * rng.standard_normal((4800, 2)), 48000)
    sf.write(folder / "g_100_samples.wav", 0.1 * rng.standard_normal((100, 2)), 44100)
    sf.write(folder / "h_silent.wav", np.zeros((4410, 2)), 44100, subtype="FLOAT")
    sf.write(folder / "i_normal.wav", 0.1 * rng.standard_normal((4410, 2)), 44100)


@pytest.mark.msst
def test_stock_msst_inference_skips_bad_files_with_one_line_each(tmp_path) -> None:
    pytest.importorskip("msst")
    import soundfile as sf

    from bsmamba2_plugin.msst_integration.registry import build_model

    torch.save(build_model(yaml.safe_load(TINY_YAML.read_text())["model"]).state_dict(),
               tmp_path / "tiny.ckpt")
    _write_folder(tmp_path / "in")
    command = [_script("msst-inference"), "--model_type", "bsmamba2", "--config_path",
               str(TINY_YAML), "--start_check_point", str(tmp_path / "tiny.ckpt"),
               "--input_folder", str(tmp_path / "in"), "--force_cpu",
               "--disable_detailed_pbar"]
    result = subprocess.run([*command, "--store_dir", str(tmp_path / "out"), "--skip_errors"],
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    skipped = [line for line in output.splitlines() if line.startswith("Cannot process track")]
    assert sorted(Path(line.split(": ", 1)[1]).name for line in skipped) == [
        "a_corrupt.wav", "b_empty.wav", "c_nan.wav", "d_six_channels.wav"]
    # librosa's load refuses it first ("Audio buffer is not finite everywhere"); msst and
    # the streamed demix would too
    assert "not finite" in output or "NaN or infinite" in output
    assert "Model expects 2 audio channel(s), but received 6" in output
    expected = {"e_mono": 4410, "f_48k": 4410, "g_100_samples": 100, "h_silent": 4410,
                "i_normal": 4410}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(expected)
    for name, samples in expected.items():
        vocals, rate = sf.read(tmp_path / "out" / name / "vocals.wav", always_2d=True)
        assert rate == 44100 and vocals.shape == (samples, 2), name
        assert np.isfinite(vocals).all()
    silent, _ = sf.read(tmp_path / "out" / "h_silent" / "vocals.wav")
    assert not silent.any()

    stopped = subprocess.run([*command, "--store_dir", str(tmp_path / "out2")],
                             capture_output=True, text=True, timeout=600)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0
    assert "Cannot process audio file" in output and "a_corrupt.wav" in output
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())
