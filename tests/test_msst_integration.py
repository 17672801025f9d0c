"""The stock msst commands and API with `--model_type bsmamba2` (needs msst installed).

Runs msst's own console scripts in subprocesses, as a user would, on a tiny generated
dataset with configs/config_tiny_bsmamba2.yaml: train (2 DataLoader workers, our loss,
our data recipe, EMA), valid, inference, check, and the Python API.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "config_tiny_bsmamba2.yaml"
BIN = Path(sys.executable).parent


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=cwd, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One stock msst-train run shared by the tests below."""
    work = tmp_path_factory.mktemp("msst")
    write_tiny_dataset(work / "data")
    run("msst-train", "--model_type", "bsmamba2", "--config_path", str(TINY),
        "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
        "--results_path", "results", "--num_workers", "2", "--seed", "7", cwd=work)
    return work


def test_msst_train_writes_bsmamba2_checkpoints_with_ema(trained: Path) -> None:
    results = trained / "results"
    best = sorted(results.glob("model_bsmamba2_ep_0_*.ckpt"))
    assert best, sorted(p.name for p in results.iterdir())
    for path in (results / "last_bsmamba2.ckpt", results / "last_bsmamba2_ema.ckpt", best[0]):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        assert ckpt["meta"]["model_type"] == "bsmamba2"
        assert "band_split.to_features.0.0.gamma" in ckpt["model_state_dict"]
    # the best checkpoint was selected on, and holds, the EMA weights
    best_ckpt = torch.load(best[0], map_location="cpu", weights_only=False)
    ema = torch.load(results / "last_bsmamba2_ema.ckpt", map_location="cpu", weights_only=True)
    raw = torch.load(results / "last_bsmamba2.ckpt", map_location="cpu", weights_only=False)
    assert best_ckpt["meta"]["weights"] == "ema"
    name = "layers.0.0.forward_blocks.0.mixer.in_proj.weight"
    assert torch.equal(best_ckpt["model_state_dict"][name], ema["model_state_dict"][name])
    assert not torch.equal(raw["model_state_dict"][name], ema["model_state_dict"][name])
    assert list(results.glob("bsmamba2_salient_*.json"))  # the SAD index was built


def test_msst_valid_reports_sdr(trained: Path) -> None:
    out = run("msst-valid", "--model_type", "bsmamba2", "--config_path", str(TINY),
              "--start_check_point", "results/last_bsmamba2_ema.ckpt", "--valid_path",
              "data/valid", "--store_dir", "valid_out", "--metrics", "sdr", "--force_cpu",
              cwd=trained)
    assert "Instr vocals sdr:" in out.stdout + out.stderr


def test_msst_inference_writes_separated_files(trained: Path) -> None:
    import soundfile as sf

    songs = trained / "songs"
    songs.mkdir(exist_ok=True)
    mixture, rate = sf.read(trained / "data" / "valid" / "valid 00" / "mixture.wav")
    sf.write(songs / "song.wav", mixture, rate)
    run("msst-inference", "--model_type", "bsmamba2", "--config_path", str(TINY),
        "--start_check_point", "results/last_bsmamba2_ema.ckpt", "--input_folder", "songs",
        "--store_dir", "separated", "--force_cpu", "--extract_instrumental", cwd=trained)
    vocals, rate_out = sf.read(trained / "separated" / "song" / "vocals.wav")
    assert rate_out == rate and vocals.shape == mixture.shape
    assert (trained / "separated" / "song" / "instrumental.wav").is_file()


def test_msst_check_passes(trained: Path) -> None:
    out = run("msst-check", "--model_type", "bsmamba2", "--config_path", str(TINY),
              "--results_path", "check", "--data_path", "data/train", "--valid_path",
              "data/valid", cwd=trained)
    assert "[PASS] model: Constructed BSMamba2" in out.stdout
    assert "[FAIL]" not in out.stdout


def test_msst_separator_api(trained: Path) -> None:
    import msst
    import numpy as np

    separator = msst.Separator(config_path=str(TINY), model_type="bsmamba2", force_cpu=True,
                               checkpoint_path=str(trained / "results" / "last_bsmamba2_ema.ckpt"),
                               detailed_progress=False)
    stems = separator.separate(0.1 * np.random.default_rng(0).standard_normal((2, 50000)),
                               sample_rate=44100)
    assert set(stems) == {"vocals"} and stems["vocals"].shape == (2, 50000)


def test_standard_loss_path_still_works(trained: Path) -> None:
    run("msst-train", "--model_type", "bsmamba2", "--config_path", str(TINY),
        "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
        "--results_path", "results_std", "--num_workers", "0", "--use_standard_loss",
        "--loss", "l1_loss", "multistft_loss", cwd=trained)
    assert (trained / "results_std" / "last_bsmamba2.ckpt").is_file()


def _build_in_spawned_child(config_path: str, queue) -> None:
    from msst.utils.settings import get_model_from_config

    model, _ = get_model_from_config("bsmamba2", config_path)
    queue.put(type(model).__name__)


def test_spawned_processes_see_the_plugin() -> None:
    import multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_build_in_spawned_child, args=(str(TINY), queue))
    process.start()
    process.join(300)
    assert process.exitcode == 0 and queue.get(timeout=5) == "BSMamba2"


def test_paper_recipe_examples_repeat_under_a_seed(tmp_path) -> None:
    from msst.utils.settings import load_config

    from bsmamba2_plugin.msst_integration.dataset import BSMamba2Dataset

    write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=0)
    config = load_config("bsmamba2", str(TINY))

    def examples(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        dataset = BSMamba2Dataset(config, [str(tmp_path / "data" / "train")],
                                  metadata_path=str(tmp_path / "meta.pkl"), verbose=False)
        return [torch.cat([stems.flatten(), mix.flatten()]) for stems, mix in
                (dataset[i] for i in range(4))]

    first, again, other = examples(1), examples(1), examples(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # another seed: every example is another one (not one of the four drawn under seed 1)
    assert not any(torch.equal(a, b) for a in first for b in other)


def test_unknown_type_mentions_installed_plugins_and_bs_mamba2() -> None:
    from msst.errors import ConfigurationError
    from msst.utils.settings import get_model_from_config

    with pytest.raises(ConfigurationError, match="Did you mean.*bsmamba2.*Plugin model types "
                                                 "installed: bsmamba2"):
        get_model_from_config("bsmambaa2", str(TINY))


def test_changed_msst_function_is_left_unpatched_with_a_warning() -> None:
    import types

    from bsmamba2_plugin.msst_integration.bridge import MsstCompatibilityWarning, patch_module

    fake = types.ModuleType("msst.utils.settings")

    def build_model_from_config(model_type, config, extra, *, pretrained=False):
        return "original"

    fake.build_model_from_config = build_model_from_config
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patch_module(fake)
    assert fake.build_model_from_config is build_model_from_config
    assert any(issubclass(w.category, MsstCompatibilityWarning)
               and "left unpatched" in str(w.message) for w in caught)


def test_silenced_stems_are_zero_in_mixture_and_target(tmp_path) -> None:
    from msst.utils.settings import load_config

    from bsmamba2_plugin.msst_integration.dataset import BSMamba2Dataset

    write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=0)
    config = load_config("bsmamba2", str(TINY))
    config.augmentations_bsmamba2.silence_p = 1.0  # every stem silent
    config.training.target_instrument = None
    dataset = BSMamba2Dataset(config, [str(tmp_path / "data" / "train")],
                              metadata_path=str(tmp_path / "meta.pkl"), verbose=False)
    stems, mixture = dataset[0]
    assert stems.shape[0] == 4 and not stems.any() and not mixture.any()


def test_draws_do_not_depend_on_the_order_msst_lists_the_tracks(tmp_path) -> None:
    """msst lists tracks in the order its metadata threads finish (as_completed): two runs
    with the same --seed must still draw the same examples (seen on a 32-core GPU host)."""
    from msst.utils.settings import load_config

    from bsmamba2_plugin.msst_integration.dataset import BSMamba2Dataset

    write_tiny_dataset(tmp_path / "data", train_tracks=3, valid_tracks=0, seconds=3.0)
    config = load_config("bsmamba2", str(TINY))
    examples = []
    for run, reverse in (("a", False), ("b", True)):
        original = BSMamba2Dataset._index_salient_windows

        def index(self, metadata_path, original=original, reverse=reverse):
            self.metadata = sorted(self.metadata, reverse=reverse)  # the other finish order
            return original(self, metadata_path)

        BSMamba2Dataset._index_salient_windows = index
        try:
            torch.manual_seed(3)
            dataset = BSMamba2Dataset(config, [str(tmp_path / "data" / "train")],
                                      metadata_path=str(tmp_path / f"meta_{run}.pkl"),
                                      verbose=False)
        finally:
            BSMamba2Dataset._index_salient_windows = original
        examples.append(torch.cat([dataset[i][0].flatten() for i in range(4)]))
    assert torch.equal(examples[0], examples[1])


def test_batch_augmentation_and_paper_loss_in_the_training_step(tmp_path) -> None:
    import argparse

    from msst._training import compute_training_loss
    from msst.utils.settings import load_config

    from bsmamba2_plugin import BSMamba2
    from bsmamba2_plugin.training.losses import PaperLossConfig, build_loss

    config = load_config("bsmamba2", str(TINY))
    config.training.target_instrument = None
    config.augmentations_bsmamba2.batch = [{"name": "PolarityInversion", "p": 1.0}]
    config.model.num_stems = 4
    model = BSMamba2(**dict(config.model))
    stems = 0.1 * torch.randn(2, 4, 2, 44100)
    args = argparse.Namespace(model_type="bsmamba2", use_standard_loss=False)
    loss, mask = compute_training_loss(model, config, args, (stems, stems.sum(1)), "cpu", [0],
                                       None, True)
    assert mask is None and loss.ndim == 0
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    # PolarityInversion with p=1 is deterministic: every stem inverted, the mixture rebuilt
    # from them. So the step is the paper loss of the model on the inverted batch.
    paper = build_loss(PaperLossConfig.from_mapping(config["loss_bsmamba2"]))
    model.zero_grad()
    expected = paper(model(-stems.sum(1)), -stems)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(torch.allclose(g, p.grad, rtol=1e-4, atol=1e-7)
               for g, p in zip(grads, model.parameters()))
    # and the check can tell: the model is not odd, so the uninverted batch scores otherwise
    # (by over 100x the tolerance above)
    plain = paper(model(stems.sum(1)), stems).item()
    assert abs(plain - expected.item()) > 1e-4 * expected.item()


def test_stem_count_mismatch_is_reported_with_the_keys(tmp_path) -> None:
    from msst.errors import ConfigurationError
    from msst.utils.settings import get_model_from_config

    text = TINY.read_text().replace("target_instrument: vocals", "target_instrument: null")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigurationError, match="model.num_stems is 1.*num_stems: 4"):
        get_model_from_config("bsmamba2", str(tmp_path / "c.yaml"))


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="needs accelerate")
def test_msst_train_accelerate_uses_the_plugin(trained: Path) -> None:
    out = run("msst-train-accelerate", "--model_type", "bsmamba2", "--config_path", str(TINY),
              "--data_path", "data/train", "--valid_path", "data/valid", "--dataset_type", "1",
              "--results_path", "results_acc", "--num_workers", "0", cwd=trained)
    assert "Training loss" in out.stdout
    ckpt = torch.load(trained / "results_acc" / "last_bsmamba2.ckpt", map_location="cpu",
                      weights_only=False)
    assert ckpt["meta"]["model_type"] == "bsmamba2"
    assert "band_split.to_features.0.0.gamma" in ckpt["model_state_dict"]


def test_evaluate_two_models_writes_the_report_and_resumes(trained: Path) -> None:
    from bsmamba2_plugin.data.render import render_dataset

    render_dataset(trained / "rendered", tracks=1, valid_tracks=2, seconds=4, seed=3,
                   progress=False)
    ckpt = str(trained / "results" / "last_bsmamba2_ema.ckpt")
    command = ["bsmamba2", "evaluate", "--config", str(TINY), "--checkpoint", ckpt, "--name",
               "a", "--config", str(TINY), "--checkpoint",
               str(trained / "results" / "last_bsmamba2.ckpt"), "--name", "b", "--data",
               "rendered/valid", "--chunk-seconds", "1", "2", "--out", "report"]
    first = subprocess.run([sys.executable, "-m", "bsmamba2_plugin.cli", *command[1:]],
                           cwd=trained, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    report = trained / "report"
    for name in ("summary.md", "summary.json", "results.csv", "quality_vs_chunk.png",
                 "by_activity.png", "paired_differences.png"):
        assert (report / name).is_file(), name
    rows = (report / "results.jsonl").read_text().splitlines()
    assert len(rows) == 3 * 2 * 2  # models (with the mixture) x chunk lengths x tracks
    assert "| a - b |" in (report / "summary.md").read_text()
    again = subprocess.run([sys.executable, "-m", "bsmamba2_plugin.cli", *command[1:]],
                           cwd=trained, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 to do" in again.stdout
    assert len((report / "results.jsonl").read_text().splitlines()) == 12
