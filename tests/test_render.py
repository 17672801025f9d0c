"""The synthetic multitrack renderer: layout, exact sums, exact silences, determinism, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bsmamba2_plugin.data.render import (
    ENGINES,
    FLUIDSYNTH_SOUNDFONT,
    RENDERER_VERSION,
    STEMS,
    fluidsynth_engine,
    render_dataset,
    vocal_activity,
)

sf = pytest.importorskip("soundfile")

SR = 44100
FILES = (*STEMS, "mixture")
ACTIVITY_KEYS = {"sample_rate", "samples", "vocal_segments", "activity_ratio",
                 "longest_gap_seconds", "shortest_gap_seconds", "mostly_silent", "seed",
                 "engine", "renderer_version"}
HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None and FLUIDSYNTH_SOUNDFONT.is_file()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """6 train + 1 valid tracks of 6 s, seed 0 (train track_005 is mostly silent)."""
    out = tmp_path_factory.mktemp("render") / "synthetic"
    return out, render_dataset(out, tracks=6, seconds=6.0, seed=0, progress=False)


def track_folders(root: Path) -> list[Path]:
    return sorted(folder for split in ("train", "valid") for folder in (root / split).iterdir())


def read(folder: Path, name: str) -> np.ndarray:
    audio, rate = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
    assert rate == SR
    return audio


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_layout_names_and_formats_follow_musdb18hq(dataset) -> None:
    root, _ = dataset
    assert sorted(p.name for p in root.iterdir()) == ["train", "valid"]
    assert [p.name for p in sorted((root / "train").iterdir())] == [
        f"track_{i:03d}" for i in range(6)]
    assert [p.name for p in (root / "valid").iterdir()] == ["track_000"]  # max(1, 6 // 4)
    for folder in track_folders(root):
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{name}.wav" for name in FILES] + ["activity.json"])
        for name in FILES:
            info = sf.info(str(folder / f"{name}.wav"))
            assert (info.channels, info.samplerate, info.subtype, info.frames) == (
                2, SR, "FLOAT", 6 * SR)


def test_summary_lists_every_track_and_the_audio_rendered(dataset) -> None:
    root, summary = dataset
    assert summary["out"] == str(root)
    assert [(t["split"], t["name"]) for t in summary["tracks"]] == [
        *(("train", f"track_{i:03d}") for i in range(6)), ("valid", "track_000")]
    assert summary["audio_seconds"] == pytest.approx(7 * 6.0)
    assert summary["wall_seconds"] > 0
    for entry, folder in zip(summary["tracks"], track_folders(root)):
        activity = json.loads((folder / "activity.json").read_text())
        assert entry["activity_ratio"] == activity["activity_ratio"]
        assert entry["mostly_silent"] == activity["mostly_silent"]
        assert entry["longest_gap_seconds"] == activity["longest_gap_seconds"]


def test_stems_read_back_sum_to_the_mixture(dataset) -> None:
    root, _ = dataset
    for folder in track_folders(root):
        stems = sum(read(folder, name).astype(np.float64) for name in STEMS)
        mixture = read(folder, "mixture")
        assert np.max(np.abs(stems - mixture)) <= 1e-6
        assert 0.3 < np.max(np.abs(mixture)) <= 0.9
        for name in STEMS:
            assert np.any(read(folder, name) != 0), name


def test_activity_json_matches_the_nonzero_samples_of_vocals_wav(dataset) -> None:
    root, _ = dataset
    for folder in track_folders(root):
        activity = json.loads((folder / "activity.json").read_text())
        assert set(activity) == ACTIVITY_KEYS
        assert (activity["seed"], activity["engine"], activity["renderer_version"],
                activity["sample_rate"], activity["samples"]) == (
                    0, "synth", RENDERER_VERSION, SR, 6 * SR)
        active = np.any(read(folder, "vocals") != 0, axis=1)
        expected = np.zeros(len(active), dtype=bool)
        for start, end in activity["vocal_segments"]:
            assert 0 <= start < end <= len(active)
            expected[start:end] = True
        np.testing.assert_array_equal(active, expected)
        assert activity["activity_ratio"] == pytest.approx(active.mean())


def test_every_track_has_a_gap_and_enough_activity_unless_mostly_silent(dataset) -> None:
    root, summary = dataset
    for folder in track_folders(root):
        active = np.any(read(folder, "vocals") != 0, axis=1)
        edges = np.flatnonzero(np.diff(np.concatenate([[1], active, [1]]).astype(np.int8)))
        gaps = edges[1::2] - edges[0::2]  # runs of exact zeros, from the file itself
        assert gaps.max() >= 0.5 * SR, folder
        assert gaps.min() >= 0.5 * SR, folder  # no gap is shorter than 0.5 s either
        activity = json.loads((folder / "activity.json").read_text())
        assert activity["longest_gap_seconds"] == gaps.max() / SR
        assert activity["mostly_silent"] == (active.mean() < 0.2)
        assert active.mean() > 0
    flags = [track["mostly_silent"] for track in summary["tracks"]]
    assert flags[5] and not all(flags)  # seed 0: train track_005 is mostly silent


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    kwargs = {"tracks": 2, "seconds": 3.0, "seed": 11, "progress": False}
    render_dataset(tmp_path / "a", **kwargs)
    render_dataset(tmp_path / "b", **kwargs)
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert len(first) == 3 * 6 and first == second


def test_test_split_is_held_out_and_workers_do_not_change_the_files(tmp_path: Path) -> None:
    kwargs = {"tracks": 2, "seconds": 2.0, "seed": 3, "valid_tracks": 1, "test_tracks": 2,
              "progress": False}
    one = render_dataset(tmp_path / "a", **kwargs)
    two = render_dataset(tmp_path / "b", workers=2, **kwargs)
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert [(t["split"], t["name"]) for t in two["tracks"]] == [
        (t["split"], t["name"]) for t in one["tracks"]]
    assert sorted(p.name for p in (tmp_path / "a" / "test").iterdir()) == [
        "track_000", "track_001"]
    held_out = read(tmp_path / "a" / "test" / "track_000", "mixture")
    for split in ("train", "valid"):  # same index, other split: other audio
        assert not np.array_equal(held_out, read(tmp_path / "a" / split / "track_000",
                                                 "mixture"))


def test_different_seeds_or_tracks_give_different_audio(tmp_path: Path) -> None:
    render_dataset(tmp_path / "a", tracks=2, seconds=3.0, seed=11, valid_tracks=0,
                   progress=False)
    render_dataset(tmp_path / "b", tracks=2, seconds=3.0, seed=12, valid_tracks=0,
                   progress=False)
    for name in FILES:
        a0, a1 = (read(tmp_path / "a" / "train" / t, name) for t in ("track_000", "track_001"))
        b0 = read(tmp_path / "b" / "train" / "track_000", name)
        assert not np.array_equal(a0, b0), name
        assert not np.array_equal(a0, a1), name


def test_nonempty_out_is_refused_and_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "data"
    (out / "train" / "track_000").mkdir(parents=True)
    (out / "train" / "track_000" / "vocals.wav").write_bytes(b"user data")
    (out / "notes.txt").write_text("mine")
    before = file_bytes(out)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        render_dataset(out, tracks=1, seconds=2.0, seed=0, progress=False)
    assert file_bytes(out) == before
    with pytest.raises(FileExistsError, match="is a file"):
        render_dataset(out / "notes.txt", tracks=1, seconds=2.0, seed=0, progress=False)


def test_overwrite_replaces_an_earlier_rendering_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "data"
    render_dataset(out, tracks=2, seconds=2.0, seed=0, valid_tracks=1, progress=False)
    (out / "notes.txt").write_text("mine")
    (out / "valid" / "track_000" / "extra.txt").write_text("mine too")
    render_dataset(out, tracks=1, seconds=2.0, seed=1, valid_tracks=0, overwrite=True,
                   progress=False)
    assert [p.name for p in (out / "train").iterdir()] == ["track_000"]  # stale one removed
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "valid" / "track_000" / "extra.txt").exists()  # not only renderer files
    assert json.loads((out / "train" / "track_000" / "activity.json").read_text())["seed"] == 1


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"tracks": 0}, ValueError, "tracks: expected an integer >= 1"),
    ({"tracks": 1.5}, TypeError, "tracks"),
    ({"seconds": 1.5}, ValueError, "seconds: expected a track length >= 2"),
    ({"seconds": float("nan")}, ValueError, "seconds"),
    ({"seed": -1}, ValueError, "seed"),
    ({"valid_tracks": -1}, ValueError, "valid_tracks"),
    ({"test_tracks": -1}, ValueError, "test_tracks"),
    ({"workers": 0}, ValueError, "workers: expected an integer >= 1"),
    ({"sample_rate": 100}, ValueError, "sample_rate"),
    ({"engine": "timidity"}, ValueError, "valid engines: 'synth', 'fluidsynth'"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path, kwargs, error,
                                                              message) -> None:
    arguments = {"tracks": 1, "seconds": 2.0, "seed": 0, "progress": False, **kwargs}
    with pytest.raises(error, match=message):
        render_dataset(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


def test_engines_are_synth_and_fluidsynth() -> None:
    assert ENGINES == ("synth", "fluidsynth")


def test_fluidsynth_engine_without_fluidsynth_names_the_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fluidsynth_engine, "FLUIDSYNTH_SOUNDFONT", tmp_path / "missing.sf2")
    with pytest.raises(ValueError, match=r"soundfont .*fluidsynth fluid-soundfont-gm"):
        render_dataset(tmp_path / "out", tracks=1, seconds=2.0, seed=0, engine="fluidsynth",
                       progress=False)
    monkeypatch.setattr(fluidsynth_engine.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="the `fluidsynth` program"):
        render_dataset(tmp_path / "out", tracks=1, seconds=2.0, seed=0, engine="fluidsynth",
                       progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="needs fluidsynth and fluid-soundfont-gm")
def test_fluidsynth_engine_renders_a_consistent_dataset(tmp_path: Path) -> None:
    render_dataset(tmp_path / "a", tracks=1, seconds=3.0, seed=5, valid_tracks=0,
                   engine="fluidsynth", progress=False)
    render_dataset(tmp_path / "b", tracks=1, seconds=3.0, seed=5, valid_tracks=0,
                   engine="fluidsynth", progress=False)
    folder = tmp_path / "a" / "train" / "track_000"
    stems = sum(read(folder, name).astype(np.float64) for name in STEMS)
    assert np.max(np.abs(stems - read(folder, "mixture"))) <= 1e-6
    for name in STEMS:
        assert np.any(read(folder, name) != 0), name
    activity = json.loads((folder / "activity.json").read_text())
    assert activity["engine"] == "fluidsynth"
    assert activity["longest_gap_seconds"] >= 0.5
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")


def test_vocal_activity_counts_runs_of_exact_zeros() -> None:
    vocals = np.zeros((10, 2), dtype=np.float32)
    vocals[2:4, 0] = 0.5
    vocals[7, 1] = -0.1
    vocals[8, 0] = -0.0  # negative zero is silence too
    activity = vocal_activity(vocals, sample_rate=2)
    assert activity["vocal_segments"] == [[2, 4], [7, 8]]
    assert activity["activity_ratio"] == 0.3 and activity["mostly_silent"] is False
    assert (activity["longest_gap_seconds"], activity["shortest_gap_seconds"]) == (1.5, 1.0)
