"""Startup hook (loaded from bsmamba2_plugin_msst.pth): patch msst modules as they load.

Only a tiny meta-path finder is installed here: no torch, no msst, no importlib.abc.
When one of the msst modules that `bridge` patches is imported, its normal loader
runs first and `bridge.patch_module` runs right after. Set the environment variable
BSMAMBA2_MSST_HOOK=0 to start Python without the hook (then call
`bsmamba2_plugin.msst_integration.bridge.install()` yourself, or msst will not know `bsmamba2`).
"""

from __future__ import annotations

import os
import sys

__all__ = ["register"]

_TARGETS = frozenset({
    "msst.utils.settings", "msst.utils.model_utils", "msst.utils.dataset",
    "msst._training", "msst._train_accelerate",
})


class _PatchingLoader:
    """Wraps a module's loader: execute the module, then patch it."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        from .bridge import patch_module

        patch_module(module)

    def __getattr__(self, name):  # get_source, is_package, ... of the real loader
        return getattr(self._loader, name)


class MsstPatchFinder:
    """sys.meta_path entry that only ever answers for the msst modules we patch."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, MsstPatchFinder):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None

    def invalidate_caches(self):
        pass


def register() -> None:
    """Put the finder first on sys.meta_path (once)."""
    if not any(isinstance(f, MsstPatchFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MsstPatchFinder())


if os.environ.get("BSMAMBA2_MSST_HOOK", "1") != "0":
    register()
