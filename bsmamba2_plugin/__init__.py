"""BSMamba2 (arXiv 2508.14556) as an msst model type: `--model_type bsmamba2`.

Importing this package is free: it loads no torch, mamba_ssm, Triton or CUDA.
The public names below are imported on first use.
"""

from __future__ import annotations

import importlib

# `typing` is not imported: this module runs at every interpreter start (the msst startup
# hook lives in the package), where importing typing would cost ~15 ms.
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "BSMamba2": "network.model",
    "BSMamba2Config": "network.config",
    "build_model": "msst_integration.registry",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from .msst_integration.registry import build_model
    from .network.config import BSMamba2Config
    from .network.model import BSMamba2


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bsmamba2_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

