"""Startup hook (loaded from bsmamba2_plugin_msst.pth): patch msst modules as they load.

Only a tiny meta-path finder (`import_hooks.MsstPatchFinder`) is installed here: no torch,
no msst, no importlib.abc. When one of the msst modules that `bridge` patches
(`import_hooks.PATCHED_MODULES`, the list the bridge's table uses too) is imported, its
normal loader runs first and `bridge.patch_module` runs right after (the bridge, and with
it the process's `run_state.RunState`, is made then, not at startup). Set the environment
variable BSMAMBA2_MSST_HOOK=0 to start Python without the hook (then call
`bsmamba2_plugin.msst_integration.bridge.install()` yourself, or msst will not know
`bsmamba2`).
"""

from __future__ import annotations

import os

from .import_hooks import PATCHED_MODULES, MsstPatchFinder
from .import_hooks import register as _register_finder

__all__ = ["MsstPatchFinder", "register"]


def _patch_module(module) -> None:
    from .bridge import patch_module

    patch_module(module)


def register() -> None:
    """Put the finder first on sys.meta_path (once)."""
    _register_finder(PATCHED_MODULES, _patch_module)


if os.environ.get("BSMAMBA2_MSST_HOOK", "1") != "0":
    register()
