"""ONNX export of the BSMamba2 network and separation with onnxruntime (issue 13).

The exported graph is `network.portable.PortableNetwork`: real band features
(b, t, f * c * 2) in, real masks (b, s, t, f * c * 2) out, with dynamic b and t. The
STFT and iSTFT stay outside it (`BSMamba2.analyse` / `BSMamba2.synthesise`, in torch),
so the graph holds no complex tensor. The model's config (and the stem names) travel in
the ONNX file's metadata, so `OnnxSeparator.from_file` needs nothing but the file.

`OnnxSeparator` has the msst model contract ((b, c, samples) -> (b, s, c, samples)), so
`chunked.separate` (and `song_files.separate_to_files`, behind `bsmamba2 separate --onnx`)
takes a whole track through it exactly as through the PyTorch model.

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

from ..data.outputs import temporary_beside
from ..errors import UserValueError
from ..network.config import BSMamba2Config
from ..network.model import BSMamba2
from ..network.portable import PortableNetwork
from .song_files import DEFAULT_SAMPLE_RATE

__all__ = ["ONNX_INSTALL_HINT", "OnnxSeparator", "export_onnx", "read_onnx_metadata"]

ONNX_INSTALL_HINT = "Install the onnx extra: pip install 'bsmamba2-plugin[onnx]'."
CONFIG_KEY = "bsmamba2_config"
STEMS_KEY = "bsmamba2_stems"
RATE_KEY = "bsmamba2_sample_rate"
INPUT_NAME = "features"
OUTPUT_NAME = "masks"


def _require(name: str, purpose: str) -> Any:
    """Import an optional dependency, or raise ModuleNotFoundError naming the extra."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"{purpose} needs {name}, which is not installed. "
                                  f"{ONNX_INSTALL_HINT}", name=name) from error


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
    temporary = temporary_beside(target)
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
        raise UserValueError(f"{path}: no {CONFIG_KEY} metadata; export it with "
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
