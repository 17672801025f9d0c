"""Import-time plumbing of the msst patches: standard library only, no package imports.

`MsstPatchFinder` is a sys.meta_path entry that answers only for a given set of msst
modules: each is executed by its normal loader and then handed to a patch function.
`hook` installs one at interpreter start (its patch function imports `bridge` lazily),
`bridge.install()` on demand. Neither needs the other: both import only this module.

`defer` and `run_deferred` hold a patch that must wait for a module of this package that
is still executing. msst.utils.dataset can be imported *by* `dataset` (a DataLoader worker
unpickling our dataset imports `dataset`, which imports msst.utils.dataset), and its patch
needs the class that `dataset` has not defined yet; `dataset` runs the waiting patch on
its last line, without importing the bridge.
"""

from __future__ import annotations

import sys

__all__ = ["MsstPatchFinder", "defer", "register", "run_deferred"]


class _PatchingLoader:
    """Wraps a module's loader: execute the module, then patch it."""

    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, is_package, ... of the real loader
        return getattr(self._loader, name)


class MsstPatchFinder:
    """sys.meta_path entry that only ever answers for the msst modules we patch.

    Args:
        targets: full names of the modules to patch.
        patch: called with each of those modules right after it executed.
    """

    def __init__(self, targets, patch):
        self._targets = frozenset(targets)
        self._patch = patch

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._targets:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, MsstPatchFinder):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, self._patch)
                return spec
        return None

    def invalidate_caches(self):
        pass


def register(targets, patch) -> None:
    """Put a `MsstPatchFinder(targets, patch)` first on sys.meta_path, unless one is there."""
    if not any(isinstance(f, MsstPatchFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MsstPatchFinder(targets, patch))


_deferred: dict[str, list] = {}  # module name -> patches waiting for it to finish executing


def defer(module_name: str, action) -> None:
    """Call `action()` when `run_deferred(module_name)` is called."""
    _deferred.setdefault(module_name, []).append(action)


def run_deferred(module_name: str) -> None:
    """Call (once) the actions deferred until `module_name` is complete."""
    for action in _deferred.pop(module_name, ()):
        action()
