"""ONNX export of the BSMamba2 network and separation with onnxruntime (issue 13).

The exported graph is `network.portable.PortableNetwork`: real band features
(b, t, f * c * 2) in, real masks (b, s, t, f * c * 2) out, with dynamic b and t. The
STFT and iSTFT stay outside it (`BSMamba2.analyse` / `BSMamba2.synthesise`, in torch),
so the graph holds no complex tensor. The model's config (and the stem names) travel in
the ONNX file's metadata, so `OnnxSeparator.from_file` needs nothing but the file.

`OnnxSeparator` has the msst model contract ((b, c, samples) -> (b, s, c, samples)), so
`evaluation.inference.separate` chunks a whole track through it exactly as it does the
PyTorch model; `separate_to_files` writes the stems atomically.

onnx, onnxscript and onnxruntime are optional: `pip install 'bsmamba2-plugin[onnx]'`.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..network.config import BSMamba2Config
from ..network.model import BSMamba2
from ..network.portable import PortableNetwork

__all__ = ["ONNX_INSTALL_HINT", "OnnxSeparator", "export_onnx",
           "load_bsmamba2", "read_onnx_metadata", "separate_to_files", "stem_targets"]

ONNX_INSTALL_HINT = "Install the onnx extra: pip install 'bsmamba2-plugin[onnx]'."
CONFIG_KEY = "bsmamba2_config"
STEMS_KEY = "bsmamba2_stems"
RATE_KEY = "bsmamba2_sample_rate"
DEFAULT_SAMPLE_RATE = 44100  # msst's audio.sample_rate default
INPUT_NAME = "features"
OUTPUT_NAME = "masks"


def _require(name: str, purpose: str) -> Any:
    """Import an optional dependency, or raise ModuleNotFoundError naming the extra."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"{purpose} needs {name}, which is not installed. "
                                  f"{ONNX_INSTALL_HINT}", name=name) from error


def _atomic_target(path: Path) -> Path:
    """A temporary path next to `path` (same folder, so os.replace is atomic). The file
    is created by its writer, so it gets the usual permissions (mkstemp's are 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


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
            raise ValueError(problem)
        model.load_state_dict(unwrap_state_dict(stored)[0], strict=True)
    training = raw.get("training") or {}
    target = training.get("target_instrument")
    stems = [target] if target else list(training.get("instruments") or [])
    if len(stems) != config.num_stems:
        stems = [f"stem{i}" for i in range(config.num_stems)]
    rate = int((raw.get("audio") or {}).get("sample_rate", DEFAULT_SAMPLE_RATE))
    return model.eval(), stems, rate


def export_onnx(model: BSMamba2, path: str | os.PathLike, *, stems: Sequence[str] | None = None,
                sample_rate: int = DEFAULT_SAMPLE_RATE, example_frames: int = 101) -> Path:
    """Export `PortableNetwork(model)` (features -> masks) to an ONNX file, atomically.

    Args:
        model: the BSMamba2 to export (its weights are copied into the file).
        path: the .onnx file to write; replaced only once complete.
        stems: stem names stored in the metadata (default stem0, stem1, ...).
        sample_rate: the model's sample rate in Hz, stored in the metadata.
        example_frames: frame count of the example input used for tracing; the exported
            graph takes any batch and any frame count >= 2.

    Returns:
        the path written.
    """
    onnx = _require("onnx", "export-onnx")
    _require("onnxscript", "export-onnx")
    config = model.config
    stems = list(stems) if stems is not None else [f"stem{i}" for i in range(config.num_stems)]
    if len(stems) != config.num_stems:
        raise ValueError(f"export_onnx: {len(stems)} stem names for a model with "
                         f"model.num_stems={config.num_stems}.")
    n_features = sum(config.band_widths)
    network = PortableNetwork(model).eval()
    example = torch.randn(2, example_frames, n_features)
    batch = torch.export.Dim("batch", min=1)
    frames = torch.export.Dim("frames", min=2)
    with torch.no_grad():
        program = torch.onnx.export(
            network, (example,), dynamo=True, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes={"features": {0: batch, 1: frames}},
            verbose=False)
    proto = program.model_proto
    for key, value in ((CONFIG_KEY, json.dumps(config.to_dict())),
                       (STEMS_KEY, json.dumps(stems)), (RATE_KEY, str(sample_rate))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    target = Path(path)
    temporary = _atomic_target(target)
    try:
        onnx.save_model(proto, str(temporary))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def read_onnx_metadata(path: str | os.PathLike) -> tuple[BSMamba2Config, list[str], int]:
    """(config, stem names, sample rate in Hz) stored by `export_onnx` in an ONNX file."""
    onnx = _require("onnx", "reading an exported model")
    proto = onnx.load(str(path), load_external_data=False)
    props = {entry.key: entry.value for entry in proto.metadata_props}
    if CONFIG_KEY not in props:
        raise ValueError(f"{path}: no {CONFIG_KEY} metadata; export it with "
                         f"`bsmamba2 export-onnx`.")
    config = BSMamba2Config.from_mapping(json.loads(props[CONFIG_KEY]))
    stems = json.loads(props.get(STEMS_KEY, "[]"))
    return config, stems, int(props.get(RATE_KEY, DEFAULT_SAMPLE_RATE))


class OnnxSeparator(nn.Module):
    """Waveform in, stems out, with onnxruntime running the exported network.

    Args:
        session: an `onnxruntime.InferenceSession` of a file from `export_onnx`.
        config: the model config stored with it (`read_onnx_metadata`).
        stems: the stem names stored with it.
        sample_rate: the sample rate stored with it, in Hz.
    """

    def __init__(self, session: Any, config: BSMamba2Config, stems: Sequence[str] = (),
                 sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.stems = list(stems) or [f"stem{i}" for i in range(config.num_stems)]
        self.sample_rate = sample_rate
        # The STFT stages read only the config: built on the meta device, no weights, and
        # held outside the module tree so that `parameters()` stays empty (CPU device).
        with torch.device("meta"):
            self._stages = [BSMamba2(config)]

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, threads: int | None = None
                  ) -> OnnxSeparator:
        """Open an exported file on the CPU (`threads`: intra-op threads, None = all)."""
        ort = _require("onnxruntime", "separate --onnx")
        config, stems, rate = read_onnx_metadata(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # onnxruntime's buffer-reuse plan keeps the buffers it means to hand on to later
        # tensors; with the graph's symbolic frame counts that kept nearly every
        # intermediate of a run alive (paper model, 4 s chunk, depth 2: 15.5 GB with reuse,
        # 3.5 GB without, and 3x faster: benchmarks/results/cpu_onnx_paper_2026-11-30.md)
        options.enable_mem_reuse = False
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return cls(session, config, stems, rate)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Args: mixture (b, c, samples). Returns: (b, s, c, samples) float32."""
        stages = self._stages[0]
        mixture = stages._check_input(mixture).float().cpu()
        spec, features = stages.analyse(mixture)
        masks = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(
            features.numpy(), dtype=np.float32)})[0]
        return stages.synthesise(spec, torch.from_numpy(masks), mixture.shape[-1])


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
        chunk_seconds, overlap, batch_size: as in `evaluation.inference.separate`.
        echo: where the resampling line goes.

    Returns:
        the paths written: the stems, then the instrumental (the mixture minus the vocals,
        or minus the first stem without a vocals stem).
    """
    import soundfile

    from ..data.outputs import refuse_existing
    from .audio_io import read_song
    from .inference import separate

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
            raise ValueError(f"{mixture_path}: {mixture.shape[0]} channels, the model takes "
                             f"{config.n_channels}. Fix: convert the file to stereo.")
    chunk = round(chunk_seconds * sample_rate)
    chunk -= chunk % overlap
    estimates = separate(model, mixture.contiguous(), chunk, overlap=overlap,
                         batch_size=batch_size)
    vocals = estimates[list(stems).index("vocals") if "vocals" in stems else 0]
    audio = list(estimates) + ([mixture - vocals] if len(targets) > len(stems) else [])
    temporaries = [_atomic_target(target) for target in targets]
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
