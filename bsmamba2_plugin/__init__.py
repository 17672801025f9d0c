"""BSMamba2 (arXiv 2508.14556) as an msst model type: `--model_type bsmamba2`.

Importing this package is free: it loads no torch, mamba_ssm, Triton or CUDA.
The public names below are imported on first use. Module paths from before the layered
layout (`bsmamba2_plugin.model`, `.render`, `.msst_bridge`, ...) still import, with a
DeprecationWarning, for one release (`_moved`).
"""

from __future__ import annotations

import importlib
import sys

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


class _MovedModules:
    """Finder of last resort for the old module paths; the table lives in `_moved`.

    At the end of sys.meta_path it is asked only for names no other finder found, and it
    imports `_moved` only for names inside this package.
    """

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None) -> object:
        if not fullname.startswith(__name__ + "."):
            return None
        from ._moved import find_spec

        return find_spec(fullname)


if not any(getattr(finder, "__module__", None) == __name__ for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules)
