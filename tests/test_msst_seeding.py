"""The paper recipe's draws under DDP: distinct per rank, repeatable under --seed (needs msst).

Two real `torch.distributed` ranks (gloo, CPU) each build the training DataLoader with
msst's own `prepare_data` (DistributedSampler, as msst-train-ddp does) after seeding
torch the way msst's DDP setup does: the same `seed + time` on every rank. Batches are
compared across ranks, across reruns with the same `--seed` (another "time"), and with
another `--seed`, with 0 and 2 DataLoader workers, over two epochs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest_data import write_tiny_dataset

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]

TINY = Path(__file__).parent.parent / "configs" / "config_tiny_bsmamba2.yaml"
WORLD = 2
RUNS = {  # label: (--seed, what msst's DDP setup adds: int(time.time()))
    "seed7": (7, 1_700_000_000), "seed7_rerun": (7, 1_700_003_600), "seed8": (8, 1_700_000_000)}


def _rank_batches(rank: int, work: str) -> None:
    import torch.distributed as dist
    from msst._training import parse_args_train
    from msst.utils.dataset import prepare_data
    from msst.utils.settings import load_config

    dist.init_process_group("gloo", init_method=f"file://{work}/rendezvous", rank=rank,
                            world_size=WORLD)
    config = load_config("bsmamba2", str(TINY))
    config.training.num_steps = 4
    out = {}
    for workers in (0, 2):
        for label, (seed, clock) in RUNS.items():
            args = parse_args_train({  # msst-train's argument parsing (records --seed)
                "model_type": "bsmamba2", "config_path": str(TINY), "seed": seed,
                "data_path": [f"{work}/data/train"], "valid_path": [f"{work}/data/valid"],
                "results_path": f"{work}/results", "num_workers": workers,
                "dataset_type": 1})
            torch.manual_seed((seed + clock) % 55535 + 10000)  # msst: same on every rank
            loader = prepare_data(config, args, config.training.batch_size)
            epochs = []
            for epoch in range(2):
                loader.sampler.set_epoch(epoch)  # msst-train-ddp, every epoch
                loader.dataset.bsmamba2_set_epoch(epoch)  # the bridge, every epoch
                # one row per example: its stems and its mixture
                epochs.append(torch.cat([torch.cat([stems.flatten(1), mix.flatten(1)], 1)
                                         for stems, mix in loader]))
            out[(workers, label)] = epochs
    torch.save(out, f"{work}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[int, dict]:
    import torch.multiprocessing as mp

    work = tmp_path_factory.mktemp("seeding")
    write_tiny_dataset(work / "data", train_tracks=3, valid_tracks=1, seconds=3.0)
    mp.spawn(_rank_batches, args=(str(work),), nprocs=WORLD, join=True)
    return {rank: torch.load(work / f"rank{rank}.pt", weights_only=False)
            for rank in range(WORLD)}


def _shared(first: torch.Tensor, second: torch.Tensor) -> int:
    """How many examples (rows) of `first` also occur in `second`."""
    return sum(any(torch.equal(row, other) for other in second) for row in first)


@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_draw_different_examples(batches, workers: int) -> None:
    for epoch in range(2):
        rank0 = batches[0][(workers, "seed7")][epoch]
        rank1 = batches[1][(workers, "seed7")][epoch]
        assert len(rank0) == len(rank1) >= 4
        assert _shared(rank0, rank1) == 0  # no example of one rank is one of the other's


@pytest.mark.parametrize("workers", [0, 2])
def test_the_same_seed_repeats_whatever_msst_adds(batches, workers: int) -> None:
    for rank in range(WORLD):
        for first, again in zip(batches[rank][(workers, "seed7")],
                                batches[rank][(workers, "seed7_rerun")]):
            assert torch.equal(first, again)


@pytest.mark.parametrize("workers", [0, 2])
def test_another_seed_and_another_epoch_draw_other_examples(batches, workers: int) -> None:
    for rank in range(WORLD):
        seven, eight = batches[rank][(workers, "seed7")], batches[rank][(workers, "seed8")]
        assert _shared(seven[0], eight[0]) == 0
        assert _shared(seven[0], seven[1]) == 0


def test_two_ranks_writing_the_salient_window_cache_at_once(tmp_path, monkeypatch) -> None:
    """Every rank of msst-train-ddp computes the salient windows and writes the same cache
    file. Another rank's whole write landing between this rank's write and rename
    (simulated: another pid, inside this rank's os.replace) must not fail this rank (a
    shared temporary name did: FileNotFoundError) nor leave a temporary file."""
    import os

    from msst._training import parse_args_train
    from msst.utils.dataset import prepare_data
    from msst.utils.settings import load_config

    write_tiny_dataset(tmp_path / "data", train_tracks=2, valid_tracks=1, seconds=3.0)
    config = load_config("bsmamba2", str(TINY))
    args = parse_args_train({
        "model_type": "bsmamba2", "config_path": str(TINY), "seed": 7,
        "data_path": [f"{tmp_path}/data/train"], "valid_path": [f"{tmp_path}/data/valid"],
        "results_path": f"{tmp_path}/results", "num_workers": 0, "dataset_type": 1})
    real_replace, interleaved = os.replace, []

    def replace(src, dst):
        if "bsmamba2_salient_" in str(dst) and not interleaved:
            interleaved.append(True)
            with monkeypatch.context() as other_rank:
                other_rank.setattr(os, "getpid", lambda: 4_000_000)
                prepare_data(config, args, config.training.batch_size)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    prepare_data(config, args, config.training.batch_size)
    assert interleaved
    written = [p.name for p in tmp_path.rglob("bsmamba2_salient_*")]
    assert len(written) == 1 and written[0].endswith(".json"), written
