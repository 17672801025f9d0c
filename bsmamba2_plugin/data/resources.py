"""The configs and recipes shipped with the package, found by name.

They live in the repository's `configs/` and `recipes/` folders and are installed with the
package under `bsmamba2_plugin/_data/` (pyproject.toml), so that `bsmamba2 demo`,
`bsmamba2 recipe` and `bsmamba2 bench` find them outside a checkout too.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import UserFileNotFoundError

__all__ = ["find_resource"]


def _shipped_folders(kind: str) -> list[Path]:
    """The repository checkout this package runs from, then the copy installed with it."""
    package = Path(__file__).resolve().parents[1]  # bsmamba2_plugin/
    return [package.parent / kind, package / "_data" / kind]


def find_resource(kind: str, name: str | Path) -> Path:
    """Path of a shipped config or recipe (`kind` "configs" or "recipes").

    `name` is a path, a file name, or a name without ".yaml" (as `bsmamba2 recipe list`
    prints it). Looks at the path as given, then the repository checkout this package
    runs from, then the copy installed with the package.

    Raises:
        FileNotFoundError: with the shipped names, the closest ones and the places looked at.
    """
    path = Path(name)
    names = [path] + ([path.with_name(path.name + ".yaml")] if path.suffix == "" else [])
    candidates = list(names)
    if not path.is_absolute():
        candidates += [folder / n.name for folder in _shipped_folders(kind) for n in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    shipped = sorted({p.stem for folder in _shipped_folders(kind) if folder.is_dir()
                      for p in folder.glob("*.yaml")})
    close = difflib.get_close_matches(path.stem, shipped, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = (f" Shipped {kind}: {', '.join(shipped)}" + (
        " (`bsmamba2 recipe list`)." if kind == "recipes" else ".")) if shipped else ""
    raise UserFileNotFoundError(f"{kind[:-1]} {str(name)!r} not found.{hint}{listing} Looked at "
                                f"{', '.join(str(c) for c in candidates)}.")


