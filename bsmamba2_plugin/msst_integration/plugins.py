"""Model-type plugins for msst, discovered through Python entry points.

Any installed distribution can add a model type to msst by declaring, in its
`pyproject.toml`:

    [project.entry-points."msst.models"]
    my_type = "my_package.module:factory"

where `factory(config, *, pretrained=False) -> torch.nn.Module` receives msst's whole
loaded config. This module is generic (nothing in it is specific to BSMamba2):
discovery is lazy and cached, entry points are loaded only when their type is asked
for, two distributions claiming one name are reported, names that shadow msst's own
model types are refused, and an unknown type gets a message that lists what is
installed. It imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "GROUP",
    "MSST_MODEL_TYPES",
    "ModelPlugin",
    "PluginWarning",
    "available",
    "get_factory",
    "index_entry_points",
    "unknown_type_message",
]

GROUP = "msst.models"

# Model types built into msst 0.1.0 (utils/settings.py build_model_from_config).
MSST_MODEL_TYPES = (
    "mdx23c", "htdemucs", "segm_models", "torchseg", "mel_band_roformer",
    "mel_band_conformer", "mel_band_roformer_experimental", "bs_roformer", "bs_conformer",
    "bs_roformer_experimental", "bs_mamba2", "swin_upernet", "bandit", "bandit_v2",
    "scnet_unofficial", "scnet", "scnet_tran", "apollo", "experimental_mdx23c_stht",
    "scnet_masked", "conformer", "moises_light",
)


class PluginWarning(UserWarning):
    """A model-type plugin is duplicated, shadows an msst type, or fails to load."""


@dataclasses.dataclass(frozen=True)
class ModelPlugin:
    """One discovered model type."""

    name: str
    value: str  # "module:attribute"
    distribution: str  # who declared it ("?" when unknown)
    entry_point: Any = dataclasses.field(compare=False, repr=False)


def _distribution(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "?"


def index_entry_points(entry_points: Iterable[Any]) -> dict[str, ModelPlugin]:
    """Model types by name, from entry-point objects (what `available` does with the
    installed ones; tests pass hand-made `importlib.metadata.EntryPoint`s).

    Warns (PluginWarning) about names claimed by several distributions with different
    targets (the first by distribution name wins, so the choice is stable) and about
    names that shadow msst's own types (those are dropped).
    """
    by_name: dict[str, list[ModelPlugin]] = {}
    for ep in entry_points:
        plugin = ModelPlugin(ep.name, ep.value, _distribution(ep), ep)
        by_name.setdefault(ep.name, []).append(plugin)
    index: dict[str, ModelPlugin] = {}
    for name, plugins in sorted(by_name.items()):
        if name in MSST_MODEL_TYPES:
            warnings.warn(f"msst model-type plugin {name!r} from "
                          f"{', '.join(p.distribution for p in plugins)} is ignored: msst "
                          f"already has a model type of that name.", PluginWarning,
                          stacklevel=2)
            continue
        plugins = sorted(plugins, key=lambda p: (p.distribution, p.value))
        targets = {p.value for p in plugins}
        if len(targets) > 1:
            listing = "; ".join(f"{p.distribution} -> {p.value}" for p in plugins)
            warnings.warn(f"msst model type {name!r} is declared by several plugins ({listing}); "
                          f"using {plugins[0].distribution}'s. Uninstall the others to "
                          f"silence this.", PluginWarning, stacklevel=2)
        index[name] = plugins[0]
    return index


@functools.lru_cache(maxsize=1)
def available() -> dict[str, ModelPlugin]:
    """Installed model-type plugins by name (cached; nothing is imported)."""
    return index_entry_points(importlib.metadata.entry_points(group=GROUP))


def get_factory(name: str, plugins: dict[str, ModelPlugin] | None = None
                ) -> Callable[..., Any] | None:
    """The factory of model type `name`, or None when no plugin declares it.

    Raises:
        ImportError: the plugin is declared but cannot be loaded (names the plugin).
    """
    plugin = (available() if plugins is None else plugins).get(name)
    if plugin is None:
        return None
    try:
        return plugin.entry_point.load()
    except Exception as error:  # any failure inside someone else's import
        raise ImportError(
            f"msst model type {name!r} is provided by {plugin.distribution} "
            f"({plugin.value}), which failed to load: {type(error).__name__}: {error}. "
            f"Fix: reinstall that package, or uninstall it if it is not needed.") from error


def unknown_type_message(name: str, plugins: dict[str, ModelPlugin] | None = None) -> str:
    """Error text for a model type that neither msst nor any plugin knows."""
    plugins = available() if plugins is None else plugins
    known = sorted(set(MSST_MODEL_TYPES) | set(plugins))
    message = f"Unknown model type: {name!r}."
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        message += f" Did you mean {' or '.join(repr(c) for c in close)}?"
    squashed = name.replace("_", "").replace("-", "").lower()
    if squashed == "bsmamba2" and name != "bsmamba2":
        message += (" Note: 'bs_mamba2' is msst's own BSMamba2 (needs mamba_ssm and CUDA); "
                    "'bsmamba2' is the bsmamba2-plugin model (pip install bsmamba2-plugin).")
    installed = ", ".join(f"{n} ({p.distribution})" for n, p in sorted(plugins.items()))
    message += f" Plugin model types installed: {installed or 'none'}."
    message += f" msst's own types: {', '.join(MSST_MODEL_TYPES)}."
    return message
