"""The generic entry-point registry, with hand-made EntryPoint objects."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from bsmamba2_plugin.msst_integration import plugins
from bsmamba2_plugin.msst_integration.plugins import PluginWarning, get_factory, index_entry_points


def ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=plugins.GROUP)


def test_the_installed_package_declares_bsmamba2() -> None:
    plugins.available.cache_clear()
    found = plugins.available()
    assert found["bsmamba2"].value == "bsmamba2_plugin.msst_integration.registry:build_msst_model"


def test_entry_points_resolve_lazily_to_their_factory() -> None:
    index = index_entry_points(
        [ep("bsmamba2", "bsmamba2_plugin.msst_integration.registry:build_msst_model")])
    from bsmamba2_plugin.msst_integration.registry import build_msst_model

    assert get_factory("bsmamba2", index) is build_msst_model
    assert get_factory("other", index) is None


def test_duplicate_names_warn_and_pick_a_stable_winner() -> None:
    with pytest.warns(PluginWarning, match="declared by several plugins"):
        index = index_entry_points([ep("x", "b_pkg:f"), ep("x", "a_pkg:f")])
    assert index["x"].value == "a_pkg:f"
    # the same target twice (one package seen twice on sys.path) is not a conflict
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        index_entry_points([ep("y", "p:f"), ep("y", "p:f")])


def test_plugins_cannot_shadow_msst_model_types() -> None:
    with pytest.warns(PluginWarning, match="msst already has a model type"):
        index = index_entry_points([ep("bs_roformer", "evil:f")])
    assert "bs_roformer" not in index


def test_a_broken_plugin_names_itself() -> None:
    index = index_entry_points([ep("broken", "no_such_module_here:factory")])
    with pytest.raises(ImportError, match="'broken'.*failed to load.*ModuleNotFoundError"):
        get_factory("broken", index)


def test_unknown_type_message_lists_plugins_and_mentions_bs_mamba2() -> None:
    index = index_entry_points([ep("bsmamba2", "m:f"), ep("other_net", "n:f")])
    message = plugins.unknown_type_message("BS-Mamba2", index)
    assert "msst's own BSMamba2" in message and "'bsmamba2' is the bsmamba2-plugin" in message
    assert "bsmamba2 (?), other_net (?)" in message
    assert "bs_roformer" in plugins.unknown_type_message("bs_roformr", index)


def run_python(code: str, **env: str) -> str:
    import os

    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_startup_hook_is_installed_and_imports_nothing_heavy() -> None:
    out = run_python("""
        import sys
        print(any(type(f).__name__ == "MsstPatchFinder" for f in sys.meta_path),
              "torch" in sys.modules, "bsmamba2_plugin.msst_integration.bridge" in sys.modules)
    """)
    assert out == "True False False"


def test_startup_hook_can_be_switched_off() -> None:
    out = run_python("""
        import sys
        print(any(type(f).__name__ == "MsstPatchFinder" for f in sys.meta_path))
    """, BSMAMBA2_MSST_HOOK="0")
    assert out == "False"
