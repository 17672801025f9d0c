"""Module paths from before the layered layout, kept working for one release.

`MOVED` is the one table of old -> new module names. `bsmamba2_plugin/__init__.py` appends
a small finder to the *end* of `sys.meta_path`, so it is asked only after the normal import
machinery found no file for a name, that is only for the old paths (nothing else in this
package is shadowed, and no other package is looked at). For an old path it imports the new
module and puts that very module object into `sys.modules` under the old name too, so

    import bsmamba2_plugin.render          # DeprecationWarning: ... data.render
    bsmamba2_plugin.render is bsmamba2_plugin.data.render   # True

and monkeypatching through an old name changes what the new one sees. Each old name warns
once per process (when it is first imported), with a `DeprecationWarning` that names the
new path and points at the importing line.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "find_spec"]

_PACKAGE = __name__.rpartition(".")[0]

# old module (under bsmamba2_plugin) -> new module (under bsmamba2_plugin)
MOVED = {
    "bandsplit": "network.bandsplit",
    "config": "network.config",
    "mamba2": "network.mamba2",
    "model": "network.model",
    "ssd": "network.ssd",
    "augment": "training.augment",
    "losses": "training.losses",
    "checkpoints": "msst_integration.checkpoints",
    "msst_bridge": "msst_integration.bridge",
    "msst_dataset": "msst_integration.dataset",
    "plugins": "msst_integration.plugins",
    "registry": "msst_integration.registry",
    "recipes": "data.recipes",
    "render": "data.render",
    "evaluate": "evaluation.evaluate",
    "inference": "evaluation.inference",
    "metrics": "evaluation.metrics",
    "silence": "evaluation.silence",
}


class _AliasLoader:
    """Loads an old name as the module now living at `target`."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # the default (empty) module; replaced in exec_module
        return None

    def exec_module(self, module) -> None:
        warnings.warn(f"{module.__name__} has moved to {self.target}; import it from there. "
                      f"The old path will be removed in the next release.",
                      DeprecationWarning, stacklevel=_importer_stacklevel())
        # The import system returns whatever sys.modules holds under the name after
        # exec_module, so the old name becomes the new module object itself.
        sys.modules[module.__name__] = importlib.import_module(self.target)


def _importer_stacklevel() -> int:
    """The warnings.warn stacklevel that points at the line importing the old path.

    warnings.warn itself skips the import system's frames (importlib._bootstrap); this also
    steps over `importlib.import_module`, for `importlib.import_module("...render")`.
    """
    level, frame = 2, sys._getframe(2)  # exec_module's caller
    while frame is not None:
        filename = frame.f_code.co_filename
        if not ("importlib" in filename and "_bootstrap" in filename):
            if frame.f_globals.get("__name__") != "importlib":
                return level
            level += 1
        frame = frame.f_back
    return 2


def find_spec(fullname: str):
    """A spec for an old module path under this package, else None."""
    package, _, name = fullname.rpartition(".")
    target = MOVED.get(name) if package == _PACKAGE else None
    if target is None:
        return None
    return importlib.util.spec_from_loader(fullname, _AliasLoader(f"{_PACKAGE}.{target}"))
