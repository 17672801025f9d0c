"""msst's own models as baselines (BS-RoFormer, msst's `bs_mamba2`), built from our YAMLs.

Used by `bsmamba2 bench`; here because only this subpackage imports msst.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["bs_roformer", "msst_bs_mamba2"]


def _model_keys(config_path: Path) -> dict:
    import yaml

    with Path(config_path).open() as handle:  # msst reads its YAMLs with FullLoader too
        return dict(yaml.load(handle, Loader=yaml.FullLoader)["model"])


def bs_roformer(config_path: Path, *, flash_attn: bool = True):
    """msst's BSRoformer with the `model:` keys of `config_path` (flash_attn optionally off)."""
    from msst.models.bs_roformer import BSRoformer

    keys = _model_keys(config_path)
    if not flash_attn:
        keys["flash_attn"] = False
    return BSRoformer(**keys)


def msst_bs_mamba2(config_path: Path):
    """msst's `bs_mamba2` (the same graph, mamba_ssm's modules) with the widths of
    `config_path`, as its Mamba2 blocks run without CUDA extensions: mamba_ssm's plain
    path (Triton scan, `F.conv1d`; docs/performance.md)."""
    import importlib.util
    import sys
    import types

    from ..network.ssd import load_mamba_triton

    load_mamba_triton()  # a mamba_ssm without its CUDA extension imports this way only
    if importlib.util.find_spec("selective_scan_cuda") is None:
        # msst's module imports mamba_ssm's Mamba-1 code, which imports this CUDA
        # extension at import time; the Mamba2 blocks never call it.
        sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    from msst.models.bs_mamba2_code.bs_mamba2 import BSMamba2Model

    allowed = {"dim", "depth", "stereo", "num_stems", "stft_n_fft", "stft_hop_length",
               "stft_win_length", "stft_normalized", "mask_estimator_depth"}
    keys = {k: v for k, v in _model_keys(config_path).items() if k in allowed}
    # msst's class defaults to its transformer variant: the paper graph is module_type mamba2
    model = BSMamba2Model(**keys, module_type="mamba2", mamba_gmlp=False)
    for module in model.modules():
        if hasattr(module, "use_mem_eff_path"):
            module.use_mem_eff_path = False  # that path needs causal-conv1d's CUDA build
    return model
