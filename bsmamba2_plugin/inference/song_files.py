"""A song through a trained BSMamba2, from files to files: `bsmamba2 separate` (and the
model `export-onnx` exports) below the command line.

- `load_bsmamba2`: the model an msst YAML's `model:` section builds, with a checkpoint's
  weights (found by `msst_integration.checkpoints.unwrap_state_dict`, checked to fit).
- `separate_to_files`: one audio file through any model with the msst contract (a
  BSMamba2, a CPU variant, an `onnx_runtime.OnnxSeparator`) into `<stem>.wav` and
  `instrumental.wav`, read as msst-inference reads it (`audio_io.read_song`), separated
  with the paper's chunks or overlap-add (`chunked.separate`) and written atomically:
  nothing replaced without `overwrite`, never the input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.outputs import refuse_existing, temporary_beside
from ..errors import UserValueError
from ..network.config import BSMamba2Config
from ..network.model import BSMamba2

__all__ = ["DEFAULT_SAMPLE_RATE", "INSTRUMENTAL", "load_bsmamba2", "separate_to_files",
           "stem_targets"]

DEFAULT_SAMPLE_RATE = 44100  # msst's audio.sample_rate default


def load_bsmamba2(config_path: str | os.PathLike, checkpoint: str | os.PathLike | None
                  ) -> tuple[BSMamba2, list[str], int]:
    """A BSMamba2 from an msst YAML (its `model:` section) and a checkpoint.

    Args:
        config_path: msst YAML with a `model:` section of BSMamba2 keys.
        checkpoint: a `.ckpt` (weights-only) whose state dict (bare, or under `state`,
            `state_dict` or `model_state_dict`: `unwrap_state_dict`) loads strictly; None
            keeps the initial weights.

    Returns:
        (model in eval mode on the CPU, stem names, audio.sample_rate in Hz).

    Raises:
        ValueError: a broken YAML or config, or a checkpoint that does not fit it (one line).
    """
    from ..msst_integration.checkpoints import unwrap_state_dict
    from ..msst_integration.config_checks import load_msst_yaml
    from ..msst_integration.run_safety import fit_problem
    from ..msst_integration.safe_load import load_weights_only

    raw = load_msst_yaml(config_path)
    config = BSMamba2Config.from_mapping(raw["model"], path=f"{config_path}: model")
    model = BSMamba2(config)
    if checkpoint is not None:
        stored = load_weights_only(checkpoint)
        problem = fit_problem(model, stored, path=os.fspath(checkpoint), model_type="bsmamba2",
                              config_flag="--config", type_flag=None)
        if problem:
            raise UserValueError(problem)
        model.load_state_dict(unwrap_state_dict(stored)[0], strict=True)
    training = raw.get("training") or {}
    target = training.get("target_instrument")
    stems = [target] if target else list(training.get("instruments") or [])
    if len(stems) != config.num_stems:
        stems = [f"stem{i}" for i in range(config.num_stems)]
    rate = int((raw.get("audio") or {}).get("sample_rate", DEFAULT_SAMPLE_RATE))
    return model.eval(), stems, rate


INSTRUMENTAL = "instrumental"  # mixture - vocals, as msst-inference --extract_instrumental


def stem_targets(stems: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """The files `separate_to_files` writes: `<out_dir>/<stem>.wav` and instrumental.wav."""
    names = list(stems) + ([INSTRUMENTAL] if INSTRUMENTAL not in stems else [])
    return [Path(out_dir) / f"{name}.wav" for name in names]


def separate_to_files(model: nn.Module, stems: Sequence[str], sample_rate: int,
                      mixture_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                      chunk_seconds: float = 8.0, overlap: int = 1, batch_size: int = 1,
                      overwrite: bool = False, echo: Any = print) -> list[Path]:
    """Separate one audio file into `<out_dir>/<stem>.wav` and `instrumental.wav`.

    Args:
        model: the msst contract, (b, c, samples) -> (b, s, c, samples) (a BSMamba2 or
            an `OnnxSeparator`).
        stems: its stem names, in output order.
        sample_rate: the model's sample rate in Hz; a file at another rate is resampled on
            read (as msst-inference does, `audio_io.read_song`), and the stems are written
            at this rate.
        mixture_path: any file msst-inference reads (soundfile's formats; with FFmpeg
            also m4a and the like).
        out_dir: created if missing. Nothing in it is replaced unless `overwrite`, and
            never the input; all files are written to temporary names and renamed into
            place only when all are complete.
        chunk_seconds, overlap, batch_size: as in `chunked.separate`.
        echo: where the resampling line goes.

    Returns:
        the paths written: the stems, then the instrumental (the mixture minus the vocals,
        or minus the first stem without a vocals stem).
    """
    import soundfile

    from .audio_io import read_song
    from .chunked import separate

    targets = stem_targets(stems, out_dir)
    refuse_existing(targets, overwrite=overwrite, inputs=[mixture_path],
                    instead="another output folder (separate IN OUT_DIR writes OUT_DIR/<stem>.wav)")
    config: BSMamba2Config = model.config  # type: ignore[assignment]
    mixture = torch.from_numpy(read_song(Path(mixture_path), sample_rate, echo))
    if mixture.shape[0] != config.n_channels:
        if config.n_channels == 2 and mixture.shape[0] == 1:
            mixture = mixture.expand(2, -1)
        elif config.n_channels == 1:
            mixture = mixture.mean(0, keepdim=True)
        else:
            raise UserValueError(f"{mixture_path}: {mixture.shape[0]} channels, the model takes "
                                 f"{config.n_channels}. Fix: convert the file to stereo.")
    chunk = round(chunk_seconds * sample_rate)
    chunk -= chunk % overlap
    estimates = separate(model, mixture.contiguous(), chunk, overlap=overlap,
                         batch_size=batch_size)
    vocals = estimates[list(stems).index("vocals") if "vocals" in stems else 0]
    audio = list(estimates) + ([mixture - vocals] if len(targets) > len(stems) else [])
    temporaries = [temporary_beside(target) for target in targets]
    try:
        for temporary, estimate in zip(temporaries, audio):
            soundfile.write(str(temporary), estimate.T.numpy(), sample_rate, format="WAV",
                            subtype="FLOAT")
        for temporary, target in zip(temporaries, targets):
            os.replace(temporary, target)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
    return targets
