"""Issue 23: a user's own songs and data through our commands.

Item 1: `separate` never replaces a file without `--overwrite`, and never its input.
Item 4: a checkpoint of another config, broken YAML and a misspelt plugin section are one
line each. Item 5: `separate` reads what msst-inference reads (other sample rates,
formats a system decoder handles), writes the instrumental, uses the config's inference
chunk and refuses a cut-short WAV; `evaluate` refuses a track without vocals and names
its flags. Item 6: doctor's hook line is a Problem, Ctrl-C is one line in every command.
(Items 2 and 3, and the msst-train prints of item 6: test_msst_training_data.py and
test_msst_chunk_boundaries.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from bsmamba2_plugin import BSMamba2
from bsmamba2_plugin.cli import main
from bsmamba2_plugin.errors import UserError
from bsmamba2_plugin.inference.chunked import separate

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "config_tiny_bsmamba2.yaml"
TINY_MODEL = {"dim": 8, "depth": 1, "stereo": True, "num_stems": 1,
              "freqs_per_bands": [32, 32, 32, 33], "stft_n_fft": 256, "stft_hop_length": 128,
              "stft_win_length": 256, "d_state": 4, "expand": 2, "headdim": 8,
              "mask_estimator_depth": 1, "backend": "reference"}
CHUNK = 22050  # the config's inference.chunk_size: 0.5 s


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def model_files(tmp_path) -> tuple[Path, Path]:
    """(config, checkpoint) of a tiny BSMamba2 whose config chunks at 0.5 s."""
    config = yaml.safe_load(TINY_YAML.read_text())
    config["model"] = dict(TINY_MODEL)
    config["inference"].update({"chunk_size": CHUNK, "num_overlap": 1, "batch_size": 2})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    model = BSMamba2(**TINY_MODEL)
    torch.save({"model_state_dict": model.state_dict(),
                "meta": {"model_type": "bsmamba2"}}, tmp_path / "tiny.ckpt")
    return path, tmp_path / "tiny.ckpt"


def song(path: Path, seconds: float = 2.0, rate: int = 44100, channels: int = 2) -> np.ndarray:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    mono = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * np.sin(2 * np.pi * 55 * t)
    audio = np.stack([mono * (1 - 0.2 * k) for k in range(channels)], 1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="FLOAT")
    return audio


def run_separate(model_files, *argv: str) -> int:
    config, checkpoint = model_files
    return main(["separate", "--config", str(config), "--checkpoint", str(checkpoint), *argv])


# ------------------------------------------------------------------ item 1
def test_separate_keeps_existing_stems_unless_overwrite(model_files, tmp_path, capsys) -> None:
    track = tmp_path / "data" / "test" / "track_000"
    song(track / "mixture.wav")
    truth = song(track / "vocals.wav", seconds=2.0)
    before = (track / "vocals.wav").read_bytes()
    assert run_separate(model_files, str(track / "mixture.wav"), str(track)) == 2
    err = one_line(capsys.readouterr().err)
    assert str(track / "vocals.wav") in err and "--overwrite" in err and "Fix:" in err
    assert (track / "vocals.wav").read_bytes() == before
    assert not (track / "instrumental.wav").exists()
    assert run_separate(model_files, str(track / "mixture.wav"), str(track), "--overwrite") == 0
    assert not np.array_equal(sf.read(track / "vocals.wav", dtype="float32")[0], truth)


def test_separate_never_writes_over_its_input(model_files, tmp_path, capsys) -> None:
    folder = tmp_path / "songs"
    song(folder / "vocals.wav")  # a mixture that happens to be named vocals.wav
    before = (folder / "vocals.wav").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert run_separate(model_files, str(folder / "vocals.wav"), str(folder), *extra) == 2
        err = one_line(capsys.readouterr().err)
        assert "is the input" in err and "Fix:" in err
    assert (folder / "vocals.wav").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["vocals.wav"]


@pytest.mark.parametrize("command", ["export-onnx", "training-summary", "bench"])
def test_other_writers_keep_an_existing_file_unless_overwrite(model_files, tmp_path,
                                                              monkeypatch, capsys,
                                                              command) -> None:
    """The same rule for every file our commands write (the writers are stand-ins here:
    what is tested is whether they are reached)."""
    from bsmamba2_plugin.evaluation import bench, training_summary
    from bsmamba2_plugin.inference import onnx_runtime

    def fake_writer(path_of):
        def write(*args, **kwargs):
            Path(path_of(args, kwargs)).write_text("new")
        return write

    monkeypatch.setattr(onnx_runtime, "export_onnx", fake_writer(lambda a, k: a[1]))
    monkeypatch.setattr(training_summary, "write_training_summary",
                        fake_writer(lambda a, k: a[1]))
    monkeypatch.setattr(bench, "run_bench", fake_writer(lambda a, k: k["json_path"]))
    target = tmp_path / {"export-onnx": "m.onnx", "training-summary": "summary.md",
                         "bench": "b.json"}[command]
    target.write_text("mine")
    argv = {"export-onnx": ["export-onnx", str(model_files[0]), str(model_files[1]),
                            str(target)],
            "training-summary": ["training-summary", str(tmp_path), "--out", str(target)],
            "bench": ["bench", "--json", str(target)]}[command]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert str(target) in err and "--overwrite" in err and "Fix:" in err
    assert target.read_text() == "mine"
    assert main([*argv, "--overwrite"]) == 0
    assert target.read_text() == "new"


# ------------------------------------------------------------------ item 4
def other_checkpoint(tmp_path: Path) -> Path:
    model = BSMamba2(**{**TINY_MODEL, "dim": 16})
    torch.save({"model_state_dict": model.state_dict(), "meta": {"model_type": "bsmamba2"}},
               tmp_path / "other.ckpt")
    return tmp_path / "other.ckpt"


def test_separate_with_a_checkpoint_of_another_config_is_one_line(model_files, tmp_path,
                                                                   capsys) -> None:
    song(tmp_path / "song.wav")
    config, _ = model_files
    assert main(["separate", "--config", str(config), "--checkpoint",
                 str(other_checkpoint(tmp_path)), str(tmp_path / "song.wav"),
                 str(tmp_path / "out")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "other.ckpt does not fit the model the config builds" in err
    assert "--config" in err and "Fix:" in err


def test_evaluate_with_a_checkpoint_of_another_config_is_one_line(model_files, tmp_path,
                                                                   capsys) -> None:
    pytest.importorskip("msst")
    song(tmp_path / "data" / "t1" / "mixture.wav")
    song(tmp_path / "data" / "t1" / "vocals.wav")
    config, _ = model_files
    assert main(["evaluate", "--config", str(config), "--checkpoint",
                 str(other_checkpoint(tmp_path)), "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "report")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "other.ckpt does not fit the model the config builds" in err and "Fix:" in err
    assert not (tmp_path / "report").exists()


def test_a_checkpoint_that_needs_unpickling_is_refused_in_one_line(model_files, tmp_path,
                                                                     monkeypatch,
                                                                     capsys) -> None:
    """Our commands load weights only; BSMAMBA2_TRUST_PICKLE (msst's commands have no flag
    for it) does not widen that, and the message does not offer it."""
    song(tmp_path / "song.wav")
    torch.save({"model_state_dict": {}, "hook": print}, tmp_path / "pickled.ckpt")
    monkeypatch.setenv("BSMAMBA2_TRUST_PICKLE", str(tmp_path / "pickled.ckpt"))
    assert main(["separate", "--config", str(model_files[0]), "--checkpoint",
                 str(tmp_path / "pickled.ckpt"), str(tmp_path / "song.wav"),
                 str(tmp_path / "out")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "Refused to load checkpoint" in err and "print" in err
    assert "convert-checkpoint" in err and "BSMAMBA2_TRUST_PICKLE" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["summary", "separate", "convert-checkpoint"])
def test_broken_yaml_is_one_line_naming_the_file_and_line(model_files, tmp_path, capsys,
                                                          command) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  dim: [16\n  depth: 1\n")
    song(tmp_path / "song.wav")
    argv = {"summary": ["summary", "--config", str(broken), "--seconds", "0"],
            "separate": ["separate", "--config", str(broken), "--checkpoint",
                         str(model_files[1]), str(tmp_path / "song.wav"), str(tmp_path / "o")],
            "convert-checkpoint": ["convert-checkpoint", str(model_files[1]),
                                   str(tmp_path / "c.ckpt"), "--config", str(broken)]}[command]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{broken}: not valid YAML" in err and "line 3" in err and "Fix:" in err


def test_an_error_from_inside_a_library_keeps_its_traceback(monkeypatch) -> None:
    """A mistake the commands anticipate is one line; an exception raised inside another
    library's code is a missing check of ours and must stay debuggable."""
    import json

    from bsmamba2_plugin.cli import summary

    monkeypatch.setattr(summary, "run", lambda args: json.loads("{"))
    with pytest.raises(json.JSONDecodeError):
        main(["summary"])


def test_a_failed_check_of_ours_keeps_its_traceback(model_files, tmp_path, monkeypatch) -> None:
    """Only a UserError (and msst's errors for users) is one line: an internal check that
    fails inside the package, here `chunked.separate` handed empty audio by a broken reader,
    is a bug (issue 24: it was printed as a user error because it was raised in our code)."""
    from bsmamba2_plugin.inference import audio_io

    song(tmp_path / "song.wav")
    monkeypatch.setattr(audio_io, "read_song", lambda *args: np.zeros((2, 0), np.float32))
    with pytest.raises(ValueError, match="samples >= 1") as caught:
        run_separate(model_files, str(tmp_path / "song.wav"), str(tmp_path / "out"))
    assert not isinstance(caught.value, UserError)


def test_summary_refuses_a_misspelt_plugin_section(model_files, tmp_path, capsys) -> None:
    config = yaml.safe_load(model_files[0].read_text())
    config["loss_bsmamba"] = config.pop("loss_bsmamba2")
    path = tmp_path / "misspelt.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["summary", "--config", str(path), "--seconds", "0"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "unknown top-level section 'loss_bsmamba'" in err
    assert "Did you mean 'loss_bsmamba2'" in err and str(path) in err


# ------------------------------------------------------------------ item 5
def test_separate_resamples_another_rate_on_read_like_msst_inference(model_files, tmp_path,
                                                                      capsys) -> None:
    librosa = pytest.importorskip("librosa")
    song(tmp_path / "song48k.wav", rate=48000)
    assert run_separate(model_files, str(tmp_path / "song48k.wav"), str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "48000 Hz" in line]
    assert len(said) == 1 and "44100 Hz" in said[0] and "resampl" in said[0]
    expected, _ = librosa.load(tmp_path / "song48k.wav", sr=44100, mono=False)  # msst's read
    for name in ("vocals", "instrumental"):
        audio, rate = sf.read(tmp_path / "out" / f"{name}.wav", always_2d=True)
        assert rate == 44100 and audio.shape == (expected.shape[-1], 2)


class _Decoder:
    """A system decoder as audioread offers one (FFmpeg's, for m4a): int16 PCM blocks."""

    def __init__(self, source: Path) -> None:
        self.audio, self.samplerate = sf.read(source, dtype="int16", always_2d=True)
        self.channels = self.audio.shape[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __iter__(self):
        for start in range(0, len(self.audio), 4096):
            yield self.audio[start:start + 4096].tobytes()


def test_separate_reads_a_format_that_needs_a_system_decoder(model_files, tmp_path,
                                                             monkeypatch, capsys) -> None:
    """msst-inference reads .m4a through librosa and a system decoder; so does separate."""
    audioread = pytest.importorskip("audioread")
    song(tmp_path / "pcm.wav")
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    monkeypatch.setattr(audioread, "audio_open", lambda path: _Decoder(tmp_path / "pcm.wav"))
    assert run_separate(model_files, str(tmp_path / "song.m4a"), str(tmp_path / "out")) == 0
    vocals, rate = sf.read(tmp_path / "out" / "vocals.wav", always_2d=True)
    assert rate == 44100 and vocals.shape == (88200, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_separate_without_a_decoder_for_the_format_is_one_line(model_files, tmp_path,
                                                               monkeypatch, capsys) -> None:
    audioread = pytest.importorskip("audioread")
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))

    def no_backend(path):
        raise audioread.exceptions.NoBackendError()

    monkeypatch.setattr(audioread, "audio_open", no_backend)
    assert run_separate(model_files, str(tmp_path / "song.m4a"), str(tmp_path / "out")) == 2
    err = one_line(capsys.readouterr().err)
    assert "song.m4a" in err and "FFmpeg" in err and "Fix:" in err


def test_separate_writes_the_instrumental_with_the_config_chunk(model_files, tmp_path) -> None:
    mixture = song(tmp_path / "song.wav")
    assert run_separate(model_files, str(tmp_path / "song.wav"), str(tmp_path / "out")) == 0
    vocals, _ = sf.read(tmp_path / "out" / "vocals.wav", dtype="float32", always_2d=True)
    instrumental, _ = sf.read(tmp_path / "out" / "instrumental.wav", dtype="float32",
                              always_2d=True)
    np.testing.assert_allclose(vocals + instrumental, mixture, atol=1e-6)
    model = BSMamba2(**TINY_MODEL).eval()
    model.load_state_dict(torch.load(model_files[1], weights_only=True)["model_state_dict"])
    wave = torch.from_numpy(mixture.T.copy())
    at_config_chunk = separate(model, wave, CHUNK)[0].numpy().T
    at_8_seconds = separate(model, wave, 8 * 44100)[0].numpy().T
    np.testing.assert_allclose(vocals, at_config_chunk, atol=1e-6)
    assert np.abs(vocals - at_8_seconds).max() > 1e-3


def test_separate_refuses_a_cut_short_wav(model_files, tmp_path, capsys) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, np.zeros((25 * 44100, 2), np.int16), 44100, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes(full.read_bytes()[:1000])
    assert run_separate(model_files, str(tmp_path / "cut.wav"), str(tmp_path / "out")) == 2
    err = one_line(capsys.readouterr().err)
    assert "cut.wav" in err and "25.0 s" in err and "cut short" in err and "Fix:" in err
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_track_folder_without_vocals(model_files, tmp_path, capsys) -> None:
    for name in ("t1", "t2", "t3"):
        song(tmp_path / "data" / name / "mixture.wav")
        if name != "t2":
            song(tmp_path / "data" / name / "vocals.wav")
    config, checkpoint = model_files
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(checkpoint),
                 "--data", str(tmp_path / "data"), "--out", str(tmp_path / "report")]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(tmp_path / "data" / "t2") in err and "vocals.wav" in err and "Fix:" in err
    assert not (tmp_path / "report").exists()


def test_evaluate_separates_a_track_at_another_rate_like_msst_valid(model_files, tmp_path,
                                                                    capsys) -> None:
    """msst-valid resamples a track to the model's rate and the estimate back; evaluate
    does the same (it refused the track before), and says so once per model and rate."""
    pytest.importorskip("msst")
    pytest.importorskip("librosa")
    import json

    for name in ("t1", "t2"):
        song(tmp_path / "data" / name / "mixture.wav", rate=48000)
        song(tmp_path / "data" / name / "vocals.wav", rate=48000, seconds=2.0)
    config, checkpoint = model_files
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(checkpoint),
                 "--name", "tiny", "--data", str(tmp_path / "data"), "--chunk-seconds", "1",
                 "--out", str(tmp_path / "report")]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "48000 Hz" in line]
    assert len(said) == 1 and "44100 Hz" in said[0] and "tiny" in said[0]
    rows = [json.loads(line) for line in (tmp_path / "report" / "results.jsonl").read_text()
            .splitlines()]
    assert {(r["model"], r["track"]) for r in rows} == {
        (m, t) for m in ("mixture", "tiny") for t in ("t1", "t2")}
    assert all(np.isfinite(r["usdr"]) for r in rows)


@pytest.mark.parametrize("command,flag,value", [
    ("evaluate", "--chunk-seconds", "0"), ("evaluate", "--overlap", "0"),
    ("evaluate", "--batch-size", "0"), ("separate", "--chunk-seconds", "0"),
    ("separate", "--overlap", "0"), ("separate", "--batch-size", "0"),
    ("separate", "--chunk-seconds", "-1")])
def test_bad_numbers_name_the_flag_and_write_nothing(model_files, tmp_path, capsys, command,
                                                     flag, value) -> None:
    song(tmp_path / "data" / "t1" / "mixture.wav")
    song(tmp_path / "data" / "t1" / "vocals.wav")
    config, checkpoint = model_files
    out = tmp_path / "out"
    argv = (["evaluate", "--config", str(config), "--checkpoint", str(checkpoint), "--data",
             str(tmp_path / "data"), "--out", str(out)] if command == "evaluate" else
            ["separate", "--config", str(config), "--checkpoint", str(checkpoint),
             str(tmp_path / "data" / "t1" / "mixture.wav"), str(out)])
    assert main([*argv, flag, value]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{flag}: expected" in err and f"got {value}" in err
    assert "chunk_samples" not in err
    assert not out.exists()


# ------------------------------------------------------------------ item 6
def test_doctor_with_the_msst_hook_off_ends_with_a_problem_and_exit_1() -> None:
    pytest.importorskip("msst")
    env = dict(os.environ, BSMAMBA2_MSST_HOOK="0")
    result = subprocess.run([sys.executable, "-m", "bsmamba2_plugin.cli", "doctor"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    problem = result.stdout.split("Problem:", 1)[1]
    assert "BSMAMBA2_MSST_HOOK" in problem and "Fix:" in problem


HANDLERS = {  # command -> (module, attribute main reaches it through, argv)
    "doctor": ("bsmamba2_plugin.cli.doctor", "run", ["doctor"]),
    "summary": ("bsmamba2_plugin.cli.summary", "run", ["summary"]),
    "convert-checkpoint": ("bsmamba2_plugin.cli.convert_checkpoint", "run",
                           ["convert-checkpoint", "a.ckpt", "b.ckpt"]),
    "make-dataset": ("bsmamba2_plugin.cli.make_dataset", "run",
                     ["make-dataset", "d", "--tracks", "1", "--seconds", "1"]),
    "recipe": ("bsmamba2_plugin.cli.recipe", "run", ["recipe", "run", "demo_cpu"]),
    "demo": ("bsmamba2_plugin.cli.demo", "run", ["demo"]),
    "evaluate": ("bsmamba2_plugin.cli.evaluate", "run",
                 ["evaluate", "--config", "c", "--checkpoint", "k", "--data", "d", "--out", "o"]),
    "training-summary": ("bsmamba2_plugin.cli.training_summary", "run",
                         ["training-summary", "r", "--out", "summary.md"]),
    "bench": ("bsmamba2_plugin.evaluation.bench", "run_bench", ["bench"]),
    "export-onnx": ("bsmamba2_plugin.cli.export_onnx", "run",
                    ["export-onnx", "c.yaml", "k.ckpt", "o.onnx"]),
    "separate": ("bsmamba2_plugin.cli.separate", "run",
                 ["separate", "--onnx", "m.onnx", "in.wav", "out"]),
}


@pytest.mark.parametrize("command", sorted(HANDLERS))
def test_ctrl_c_is_one_line_saying_nothing_is_lost(command, monkeypatch, capsys) -> None:
    import importlib

    module, name, argv = HANDLERS[command]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    try:
        code = main(argv)
    except KeyboardInterrupt:
        pytest.fail(f"bsmamba2 {command}: Ctrl-C escaped main() as a KeyboardInterrupt")
    assert code == 130
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"bsmamba2 {command}: interrupted (Ctrl-C)")
    assert "Nothing is lost" in err


def test_ctrl_c_from_the_terminal_gives_no_traceback() -> None:
    """A real SIGINT while summary builds and separates its 10-minute test signal."""
    process = subprocess.Popen([sys.executable, "-u", "-m", "bsmamba2_plugin.cli", "summary",
                                "--preset", "tiny", "--seconds", "600"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if "Execution plan on cpu" in line:  # printed just before the separation
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert one_line(err).startswith("bsmamba2 summary: interrupted (Ctrl-C). Nothing is lost")
