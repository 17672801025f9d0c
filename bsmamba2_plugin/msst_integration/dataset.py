"""msst's training dataset with the paper's data recipe (imported only with msst).

`BSMamba2Dataset` replaces `msst.utils.dataset.MSSDataset` (see `bridge`). For every
model type it first checks the stem files (issue 23, `training.audio_files`): a set whose
files are not at `audio.sample_rate`, mix channel counts or are cut short is refused with
the offending files, because msst reads samples as they are (a 48 kHz stem trained as
44.1 kHz audio, without a word). Otherwise it behaves exactly like msst's class unless the
config has an `augmentations_bsmamba2:` section; then msst's start-up line "no
augmentations block ... disabled" (true only of msst's own augmentations) is replaced by
one that says the paper recipe is on, and, for msst's dataset_type 1 (each stem from a
random track), every stem
of every example is drawn as `augment` describes: a salient (SAD) window, a gain in
U(gain_min, gain_max), silence with probability silence_p. msst's own per-stem
`augmentations:` still apply to each drawn window, and the mixture is still the sum of
the stems, so a silenced stem is exact zeros in both the mixture and the target.

Salient windows are found once per dataset (every stem file is read once, with a
progress bar) and cached beside msst's metadata cache, keyed by file size, mtime and
the SAD settings, and kept sorted by file and start (msst's track order is the order its
metadata threads finish, so the same --seed would otherwise draw other windows); a track folder without a file for one of the stems is an error that
names it.

Random draws come from a numpy Generator per process that draws, seeded from
(seed, rank, worker, epoch) and then advanced draw by draw (the step):
- seed: the `--seed` given to msst-train, as the bridge recorded it in the process's
  `run_state.RunState` (msst itself seeds DDP and accelerate runs with seed + time, and
  every DDP rank alike, so `torch.initial_seed()` repeats neither across runs nor differs
  across ranks);
  outside an msst training run, `torch.initial_seed()` of the process that built the
  dataset;
- rank: `torch.distributed`'s rank when a process group is up (DDP, accelerate), else 0;
- worker: the DataLoader worker id + 1, 0 for the main process;
- epoch: set by the bridge before each epoch (`bsmamba2_set_epoch`), so workers that
  msst restarts every epoch draw new examples; persistent workers keep their Generator.
msst's own random choices (its window choice when `salient_windows: false`, and its
`augmentations:`) keep msst's seeding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from typing import Any

import numpy as np
import soundfile as sf
import torch
from msst.utils.dataset import MSSDataset, load_chunk
from tqdm.auto import tqdm

from ..errors import UserFileNotFoundError, UserValueError
from ..training.audio_files import training_set_problem
from ..training.augment import AugmentConfig, apply_draw, draw_stem, salient_starts
from . import run_state

__all__ = ["SECTION", "BSMamba2Dataset"]

SECTION = "augmentations_bsmamba2"


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


# how msst's start-up line about a missing augmentations: section begins (dataset.py)
_MSST_NO_AUG = "There is no augmentations block in config"


class _ReplacedLine:
    """A stdout wrapper that writes `line` instead of a print that starts with `prefix`."""

    def __init__(self, stream: Any, prefix: str, line: str) -> None:
        self._stream, self._prefix, self._line = stream, prefix, line

    def write(self, text: str) -> int:
        return self._stream.write(self._line if text.startswith(self._prefix) else text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class BSMamba2Dataset(MSSDataset):
    """msst's MSSDataset plus the paper's stem sampling (see the module docstring)."""

    def __init__(self, config, data_path, metadata_path="metadata.pkl", dataset_type=1,
                 batch_size=None, verbose=True, metadata=None) -> None:
        super().__init__(config, data_path, metadata_path=metadata_path,
                         dataset_type=dataset_type, batch_size=batch_size, verbose=verbose,
                         metadata=metadata)
        problem = training_set_problem(self._stem_files(), self.sample_rate,
                                       f"--data_path {data_path}")
        if problem:
            raise UserValueError(problem)
        section = config[SECTION] if SECTION in config else None
        self.recipe = None if section is None else AugmentConfig.from_mapping(section)
        self.salient: dict[str, list[tuple[str, int]]] | None = None
        run = run_state.current()
        seed = run.seed
        self.seed = int(torch.initial_seed() if seed is None else seed)
        self.rank = _rank()
        self.epoch = 0
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, Any] | None = None
        run.datasets.add(self)  # the accelerate launcher advances their epochs
        if self.recipe is not None and self.recipe.salient_windows:
            if dataset_type != 1:
                raise UserValueError(
                    f"{SECTION}.salient_windows draws every stem from its own track, which "
                    f"is msst's --dataset_type 1; got --dataset_type {dataset_type}. Fix: "
                    f"train with --dataset_type 1, or set salient_windows: false.")
            self.salient = self._index_salient_windows(metadata_path)

    def _initialize_training_runtime(self, metadata):
        config = self.config
        if SECTION not in config or "augmentations" in config:
            return super()._initialize_training_runtime(metadata)
        line = ("bsmamba2: msst's own augmentations are off (no augmentations: section); "
                "the paper's data recipe (augmentations_bsmamba2:) is on")
        with contextlib.redirect_stdout(_ReplacedLine(sys.stdout, _MSST_NO_AUG, line)):
            return super()._initialize_training_runtime(metadata)

    def _stem_files(self) -> list[str]:
        """Every stem file the dataset may read (and type 6's mixtures)."""
        if isinstance(self.metadata, dict):  # types 2 and 3: instrument -> [(path, length)]
            return [entry[0] for entries in self.metadata.values() for entry in entries]
        names = list(self.instruments) + (["mixture"] if self.dataset_type == 6 else [])
        found = (self._stem_file(track_path, name) for track_path, *_ in self.metadata
                 for name in names)
        return [path for path in found if path is not None]

    # ------------------------------------------------------------------ SAD
    def _stem_file(self, track_path: str, instr: str) -> str | None:
        for extension in self.file_types:
            path = f"{track_path}/{instr}.{extension}"
            if os.path.isfile(path):
                return path
        return None

    def _index_salient_windows(self, metadata_path: str) -> dict[str, list[tuple[str, int]]]:
        recipe, chunk = self.recipe, int(self.chunk_size)
        hop = max(1, int(round(recipe.sad_hop_seconds * self.sample_rate)))
        settings = dict(chunk=chunk, hop=hop, n_chunks=recipe.sad_chunks,
                        quantile=recipe.sad_quantile, floor=recipe.sad_floor,
                        min_active=recipe.sad_min_active)
        jobs, missing = [], []
        for track_path, _length in self.metadata:
            for instr in self.instruments:
                path = self._stem_file(track_path, instr)
                if path is None:
                    missing.append(f"{track_path}/{instr}.{self.file_types[0]}")
                    continue
                stat = os.stat(path)
                jobs.append((instr, path, f"{path}|{stat.st_size}|{stat.st_mtime_ns}"))
        # msst lists tracks in the order its metadata threads finish (as_completed), which
        # differs from run to run: sort, so that the same --seed draws the same windows
        jobs.sort(key=lambda job: (job[0], job[1]))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise UserFileNotFoundError(
                f"{SECTION}: {len(missing)} stem file(s) missing from the training data: "
                f"{shown}{more} (or .{' or .'.join(self.file_types[1:])}). Every track folder "
                f"needs one file per stem of training.instruments "
                f"({', '.join(self.instruments)}). Fix: add the file(s), or move those track "
                f"folders out of --data_path.")
        key = hashlib.sha256(json.dumps([settings, [j[2] for j in jobs]]).encode()).hexdigest()
        cache = os.path.join(os.path.dirname(os.path.abspath(metadata_path)),
                             f"bsmamba2_salient_{key[:16]}.json")
        if os.path.isfile(cache):
            with open(cache) as handle:
                stored = json.load(handle)
            return {instr: sorted((p, int(s)) for p, s in windows)
                    for instr, windows in stored.items()}

        salient: dict[str, list[tuple[str, int]]] = {instr: [] for instr in self.instruments}
        for instr, path, _ in tqdm(jobs, desc="bsmamba2: salient windows", disable=not self.verbose):
            audio, _sr = sf.read(path, dtype="float32", always_2d=True)
            starts = salient_starts(audio.T, chunk, hop, n_chunks=recipe.sad_chunks,
                                    quantile=recipe.sad_quantile, floor=recipe.sad_floor,
                                    min_active=recipe.sad_min_active)
            salient[instr].extend((path, int(s)) for s in starts)
        empty = [instr for instr, windows in salient.items() if not windows]
        if empty:
            raise UserValueError(
                f"{SECTION}: no salient {self.chunk_size}-sample window for stem(s) "
                f"{', '.join(empty)} in {self.data_path}. Every stem needs at least one "
                f"window where more than {recipe.sad_min_active:.0%} of sub-chunks are above "
                f"RMS {recipe.sad_floor}. Fix: use longer or louder tracks, lower sad_floor, "
                f"or set salient_windows: false.")
        # every rank of msst-train-ddp computes and writes the same cache: each through a
        # temporary file of its own (a shared name let one rank's os.replace take the
        # other's file away mid-write), the last replace wins with the same content
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        temporary = f"{cache}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w") as handle:
                json.dump(salient, handle)
            os.replace(temporary, cache)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return salient

    # ---------------------------------------------------------------- draws
    def bsmamba2_set_epoch(self, epoch: int) -> None:
        """The epoch about to start (the bridge calls this; see the module docstring)."""
        self.epoch = int(epoch)

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id + 1
        owner = (os.getpid(), worker, self.epoch)
        if self._rng is None or self._rng_owner != owner:
            entropy = [self.seed % 2**64, self.rank, worker, self.epoch]
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
            self._rng_owner = owner
        return self._rng

    def load_source(self, metadata, instr):
        if self.recipe is None:
            return super().load_source(metadata, instr)
        rng = self._generator()
        if self.salient is None:  # msst's own source choice, then gain and silence
            source = super().load_source(metadata, instr).numpy()
            draw = draw_stem(rng, 1, self.recipe)
        else:
            windows = self.salient[instr]
            draw = draw_stem(rng, len(windows), self.recipe)
            path, start = windows[draw.window]
            # the window lies inside the file, so msst reads exactly chunk_size frames
            source = load_chunk(path, start + self.chunk_size, self.chunk_size, offset=start)
            if self.aug:
                source = self.augm_data(source, instr)
        return torch.from_numpy(apply_draw(source, draw))


# the MSSDataset patch, if the bridge deferred it while we loaded
run_state.current().run_deferred(__name__)
