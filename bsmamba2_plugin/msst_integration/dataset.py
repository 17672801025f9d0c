"""msst's training dataset with the paper's data recipe (imported only with msst).

`BSMamba2Dataset` replaces `msst.utils.dataset.MSSDataset` (see `bridge`). It
behaves exactly like msst's class unless the config has an `augmentations_bsmamba2:`
section; then, for msst's dataset_type 1 (each stem from a random track), every stem
of every example is drawn as `augment` describes: a salient (SAD) window, a gain in
U(gain_min, gain_max), silence with probability silence_p. msst's own per-stem
`augmentations:` still apply to each drawn window, and the mixture is still the sum of
the stems, so a silenced stem is exact zeros in both the mixture and the target.

Salient windows are found once per dataset (every stem file is read once, with a
progress bar) and cached beside msst's metadata cache, keyed by file size, mtime and
the SAD settings. Random draws come from a numpy Generator seeded from
`torch.initial_seed()` of the process that draws (msst seeds torch; each DataLoader
worker gets its own seed per epoch), so runs with the same seed repeat.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import soundfile as sf
import torch
from msst.utils.dataset import MSSDataset, load_chunk
from tqdm.auto import tqdm

from ..training.augment import AugmentConfig, apply_draw, draw_stem, salient_starts
from .import_hooks import run_deferred

__all__ = ["SECTION", "BSMamba2Dataset"]

SECTION = "augmentations_bsmamba2"


class BSMamba2Dataset(MSSDataset):
    """msst's MSSDataset plus the paper's stem sampling (see the module docstring)."""

    def __init__(self, config, data_path, metadata_path="metadata.pkl", dataset_type=1,
                 batch_size=None, verbose=True, metadata=None) -> None:
        super().__init__(config, data_path, metadata_path=metadata_path,
                         dataset_type=dataset_type, batch_size=batch_size, verbose=verbose,
                         metadata=metadata)
        section = config[SECTION] if SECTION in config else None
        self.recipe = None if section is None else AugmentConfig.from_mapping(section)
        self.salient: dict[str, list[tuple[str, int]]] | None = None
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, Any] | None = None
        if self.recipe is not None and self.recipe.salient_windows:
            if dataset_type != 1:
                raise ValueError(
                    f"{SECTION}.salient_windows draws every stem from its own track, which "
                    f"is msst's --dataset_type 1; got --dataset_type {dataset_type}. Fix: "
                    f"train with --dataset_type 1, or set salient_windows: false.")
            self.salient = self._index_salient_windows(metadata_path)

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
        jobs = []
        for track_path, _length in self.metadata:
            for instr in self.instruments:
                path = self._stem_file(track_path, instr)
                if path is not None:
                    stat = os.stat(path)
                    jobs.append((instr, path, f"{path}|{stat.st_size}|{stat.st_mtime_ns}"))
        key = hashlib.sha256(json.dumps([settings, [j[2] for j in jobs]]).encode()).hexdigest()
        cache = os.path.join(os.path.dirname(os.path.abspath(metadata_path)),
                             f"bsmamba2_salient_{key[:16]}.json")
        if os.path.isfile(cache):
            with open(cache) as handle:
                stored = json.load(handle)
            return {instr: [(p, int(s)) for p, s in windows] for instr, windows in stored.items()}

        salient: dict[str, list[tuple[str, int]]] = {instr: [] for instr in self.instruments}
        for instr, path, _ in tqdm(jobs, desc="bsmamba2: salient windows", disable=not self.verbose):
            audio, _sr = sf.read(path, dtype="float32", always_2d=True)
            starts = salient_starts(audio.T, chunk, hop, n_chunks=recipe.sad_chunks,
                                    quantile=recipe.sad_quantile, floor=recipe.sad_floor,
                                    min_active=recipe.sad_min_active)
            salient[instr].extend((path, int(s)) for s in starts)
        empty = [instr for instr, windows in salient.items() if not windows]
        if empty:
            raise ValueError(
                f"{SECTION}: no salient {self.chunk_size}-sample window for stem(s) "
                f"{', '.join(empty)} in {self.data_path}. Every stem needs at least one "
                f"window where more than {recipe.sad_min_active:.0%} of sub-chunks are above "
                f"RMS {recipe.sad_floor}. Fix: use longer or louder tracks, lower sad_floor, "
                f"or set salient_windows: false.")
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache + ".tmp", "w") as handle:
            json.dump(salient, handle)
        os.replace(cache + ".tmp", cache)
        return salient

    # ---------------------------------------------------------------- draws
    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else (info.id, info.seed))
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(torch.initial_seed())
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


run_deferred(__name__)  # the MSSDataset patch, if the bridge deferred it while we loaded
