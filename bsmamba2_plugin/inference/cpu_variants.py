"""Faster CPU inference variants of BSMamba2, and the rule that picks one (issue 13).

Every variant has the msst model contract ((b, c, samples) -> (b, s, c, samples)) and
keeps the model's STFT/iSTFT in float32 torch:

- `fp32`: the model as it is (reference backend).
- `int8`: `torch.ao.quantization.quantize_dynamic` on every `nn.Linear` (in/out
  projections, band split, mask estimators): int8 weights, activations quantised per
  call; fbgemm uses VNNI where the CPU has it. The scan, convs and norms stay float32.
- `int8-compiled`: `int8`, and every BiMamba2 block's element-wise work (conv, SiLU,
  the scan's decays, norms) compiled by TorchInductor (`network/cpu_compiled.py`), the
  scan's matrix products in bfloat16 where the CPU has native bfloat16 (else float32).
  Needs a C++ compiler; the first call per input shape and thread count compiles
  (seconds to a minute).
- `bf16-compiled`: `int8-compiled`'s compiled blocks with their projections in bfloat16
  instead of int8 (oneDNN; AMX tiles where the CPU has them) and the rest of the model
  under bfloat16 autocast. Slower than `int8-compiled` on both CPUs measured, one with
  AMX (`benchmarks/results/cpu_amx_xeon_2026-11-30.md`), so never picked.
- `bf16`: the model under `torch.autocast("cpu", torch.bfloat16)`: matmuls in bfloat16
  (AVX512-BF16 / AMX when present); the SSD accumulates in float32 (ssd.py).
- `onnx-fp32`, `onnx-int8`: `onnx_runtime.OnnxSeparator` on the exported network, as
  exported or after onnxruntime's dynamic int8 quantisation of its MatMul/Gemm weights.

`pick_cpu_variant` chooses from what the CPU supports (`cpu_features`). Which variant is
fastest is a measurement (`benchmarks/cpu_speed.py`); the order in `PREFERENCE` holds
only variants that passed the quality guard (`evaluation.variant_quality`: uSDR within
0.1 dB of fp32, or outputs within 1e-4 of the peak for onnx-fp32) and must be re-checked by a timing on a quiet machine.
"""

from __future__ import annotations

import copy
import ctypes
import importlib.util
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import UserRuntimeError
from ..network.model import BSMamba2

__all__ = ["PREFERENCE", "VARIANTS", "build_cpu_variant", "cpu_features", "keep_freed_memory",
           "pick_cpu_variant"]

VARIANTS = ("fp32", "int8", "int8-compiled", "bf16", "bf16-compiled", "onnx-fp32", "onnx-int8")
# Tried in this order; the first the CPU supports wins (see the module docstring).
PREFERENCE = ("int8-compiled", "int8", "onnx-fp32", "fp32")


def cpu_features(cpuinfo: str | None = None) -> dict[str, bool]:
    """What this CPU offers the variants.

    Args:
        cpuinfo: text of /proc/cpuinfo (default: read it; empty where there is none).

    Returns:
        {"avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "fbgemm", "onnxruntime",
        "cxx"}: the cpuinfo flags, whether torch's int8 engine fbgemm is built in, whether
        onnxruntime is installed and whether TorchInductor can build C++ kernels here (a
        compiler on the PATH, `find_cxx`, and Python's C headers).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    found = {name: name in flags for name in ("avx512_vnni", "avx_vnni", "avx512_bf16",
                                               "amx_tile")}
    found["fbgemm"] = "fbgemm" in torch.backends.quantized.supported_engines
    found["onnxruntime"] = importlib.util.find_spec("onnxruntime") is not None
    found["cxx"] = find_cxx() is not None and _has_python_headers()
    return found


# mallopt parameters (malloc.h) and the largest value its int argument takes
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _MALLOPT_MOST = -1, -3, 2**31 - 1
_memory_kept = False  # keep_freed_memory() succeeded in this process


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the
    kernel: `mallopt` of M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to 2 GiB, what
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment do.

    CPU inference allocates and frees tensors of megabytes to hundreds of megabytes per
    layer. With glibc's defaults freed memory above its trim threshold goes back to the
    kernel (and blocks above its mmap threshold are mappings of their own), and the
    kernel zero-fills every page again on the next touch (measured on a 2-core EPYC,
    `benchmarks/cpu_speed.py`: 7.6 M page faults and about half of BS-RoFormer 256x6's
    time per 8 s chunk; 0.2-0.3 M for BSMamba2's int8 variants). Kept, the memory is
    reused (peak RSS grows by about one chunk's working set: 1.25 -> 2.05 GB for
    BS-RoFormer). Blocks of more than ~32 MB may still be mapped afresh (seen with 64 MB
    blocks on glibc 2.36).

    Process-wide and not undone: commands call it (`bsmamba2 separate`), importing this
    package never does. After it, `build_cpu_variant("int8-compiled")` runs larger groups
    of sequences (`CompiledBiMamba2.LARGE_GROUP`), faster only with memory kept. Returns
    whether it was applied: False off Linux/glibc (macOS, musl, Windows), where nothing is
    changed.
    """
    global _memory_kept
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    _memory_kept = all(libc.mallopt(option, ctypes.c_int(_MALLOPT_MOST)) == 1
                       for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
    return _memory_kept


def _has_python_headers() -> bool:
    """TorchInductor's CPU kernels include Python.h (Debian: the python3-dev package)."""
    return (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()


def find_cxx() -> str | None:
    """The C++ compiler TorchInductor would use: $CXX if set (and found), else the first of
    g++, c++, clang++ on the PATH; None if there is none."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return next((path for name in ("g++", "c++", "clang++")
                 if (path := shutil.which(name)) is not None), None)


def native_bf16(features: Mapping[str, bool]) -> bool:
    """Whether `cpu_features()` shows native bfloat16 dot products (AVX512-BF16 or AMX)."""
    return features["avx512_bf16"] or features["amx_tile"]


def _supported(variant: str, features: Mapping[str, bool]) -> bool:
    if variant in ("int8", "int8-compiled"):  # fbgemm's int8 GEMM is only fast with VNNI
        return (features["fbgemm"] and (features["avx512_vnni"] or features["avx_vnni"])
                and (variant == "int8" or features["cxx"]))
    if variant == "bf16":  # without native bf16 the casts cost more than they save
        return native_bf16(features)
    if variant.startswith("onnx"):
        return features["onnxruntime"]
    return variant == "fp32"


def pick_cpu_variant(features: Mapping[str, bool] | None = None) -> str:
    """The first variant of `PREFERENCE` that `features` (default `cpu_features()`) allows."""
    features = cpu_features() if features is None else features
    return next(v for v in PREFERENCE if _supported(v, features))


class _Autocast(nn.Module):
    """Runs the wrapped model under CPU autocast to bfloat16; float32 stems out."""

    def __init__(self, model: BSMamba2) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(mixture).float()


def _compiled_blocks(model: BSMamba2, variant: str) -> BSMamba2:
    """A copy of `model` whose BiMamba2 blocks are `CompiledBiMamba2` (the projections in
    float32 for `int8-compiled`, which quantises them next, or in bfloat16)."""
    fallback = "int8" if variant == "int8-compiled" else "bf16"
    if find_cxx() is None:
        raise UserRuntimeError(
            f"build_cpu_variant: {variant!r} needs a C++ compiler for TorchInductor and "
            f"none was found (tried $CXX, g++, c++, clang++). Fix: install one (Debian/Ubuntu: "
            f"apt install g++) or use the {fallback!r} variant.")
    if not _has_python_headers():
        raise UserRuntimeError(
            f"build_cpu_variant: {variant!r} needs Python's C headers for TorchInductor "
            f"and {sysconfig.get_paths()['include']}/Python.h does not exist. Fix: install "
            f"them (Debian/Ubuntu: apt install python3-dev) or use the {fallback!r} variant.")
    from ..network.cpu_compiled import CompiledBiMamba2

    bf16 = variant == "bf16-compiled"
    ssd_dtype = torch.bfloat16 if bf16 or native_bf16(cpu_features()) else torch.float32
    compiled = copy.deepcopy(model)
    for pair in compiled.layers:
        for index, block in enumerate(pair):
            pair[index] = CompiledBiMamba2(
                block, ssd_dtype, torch.bfloat16 if bf16 else torch.float32,
                # (see CompiledBiMamba2.LARGE_GROUP)
                **({"tokens_per_group": CompiledBiMamba2.LARGE_GROUP} if _memory_kept else {}))
    return compiled


def build_cpu_variant(model: BSMamba2, variant: str, *, workdir: str | os.PathLike | None = None,
                      threads: int | None = None,
                      onnx_file: str | os.PathLike | None = None) -> nn.Module:
    """`variant` of `model` (its weights; `model` itself is left unchanged).

    Args:
        model: a float32 BSMamba2 on the CPU.
        variant: one of `VARIANTS`.
        workdir: where the onnx variants write their files (default: a new temporary
            folder that lives as long as the process).
        threads: onnxruntime intra-op threads (None: all).
        onnx_file: an `export_onnx` file of this same `model` for the onnx variants to
            start from instead of exporting again (a paper-config export takes minutes).

    Returns:
        an eval-mode module with the msst contract and a `config` attribute.
    """
    if variant not in VARIANTS:
        raise ValueError(f"build_cpu_variant: variant must be one of {', '.join(VARIANTS)}, "
                         f"got {variant!r}.")
    model = model.eval()
    if variant == "fp32":
        return model
    if variant == "bf16":
        return _Autocast(model).eval()
    if variant == "int8":
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
        return quantized.eval()
    if variant == "int8-compiled":  # also quantises the blocks' projections (nn.Linear)
        return torch.ao.quantization.quantize_dynamic(
            _compiled_blocks(model, variant), {nn.Linear}, dtype=torch.qint8).eval()
    if variant == "bf16-compiled":
        return _Autocast(_compiled_blocks(model, variant)).eval()
    from .onnx_runtime import OnnxSeparator, _require, export_onnx

    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bsm2-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = (Path(onnx_file) if onnx_file is not None
            else export_onnx(model, folder / "bsmamba2_fp32.onnx"))
    if variant == "onnx-int8":
        quantization = _require("onnxruntime.quantization", "the onnx-int8 variant")
        target = folder / "bsmamba2_int8.onnx"
        quantization.quantize_dynamic(str(path), str(target),
                                      weight_type=quantization.QuantType.QInt8)
        path = target
    return OnnxSeparator.from_file(path, threads=threads).eval()
