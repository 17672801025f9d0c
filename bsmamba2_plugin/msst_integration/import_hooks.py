"""Import-time plumbing of the msst patches: standard library only, no package imports.

`PATCHED_MODULES` names every msst module the bridge patches: the one list that the
startup hook (`hook`, which must not import the bridge) and the bridge's table share
(`tests/test_architecture.py` checks that it is exactly the modules of `bridge.PATCHES`).

`MsstPatchFinder` is a sys.meta_path entry that answers only for a given set of msst
modules: each is executed by its normal loader and then handed to a patch function.
`hook` installs one at interpreter start (its patch function imports `bridge` lazily),
`bridge.install()` on demand. Neither needs the other: both import only this module.
"""

from __future__ import annotations

import sys

__all__ = ["PATCHED_MODULES", "MsstPatchFinder", "register"]

PATCHED_MODULES = frozenset({
    "msst.utils.settings", "msst.utils.model_utils", "msst.utils.dataset",
    "msst._training", "msst._train_accelerate", "msst._validation", "msst._valid_ddp",
    "msst._inference", "msst.preflight",
})


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

    @property
    def targets(self) -> frozenset[str]:
        """The modules this finder patches."""
        return self._targets

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
