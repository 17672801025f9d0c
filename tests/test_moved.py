"""Old module paths (before the layered layout) still import, as the new modules, with a warning.

Also: the startup-hook line of an older install's .pth (`import bsmamba2_plugin._msst_hook`)
and the shipped one both install the msst patch finder.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import bsmamba2_plugin
from bsmamba2_plugin._moved import MOVED

PACKAGE_ROOT = Path(bsmamba2_plugin.__file__).resolve().parents[1]
SHIPPED_PTH = PACKAGE_ROOT / "bsmamba2_plugin" / "_pth" / "bsmamba2_plugin_msst.pth"
HAS_MSST = importlib.util.find_spec("msst") is not None


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_module_path_is_the_new_module_and_warns_with_the_new_path(old: str,
                                                                       new: str) -> None:
    if old == "msst_dataset" and not HAS_MSST:
        pytest.skip("the dataset module subclasses msst's dataset; msst is not installed")
    old_name, new_name = f"bsmamba2_plugin.{old}", f"bsmamba2_plugin.{new}"
    assert not (PACKAGE_ROOT / "bsmamba2_plugin" / f"{old}.py").exists()
    sys.modules.pop(old_name, None)
    vars(bsmamba2_plugin).pop(old, None)
    try:
        with pytest.warns(DeprecationWarning, match=re.escape(f"moved to {new_name};")) as caught:
            module = importlib.import_module(old_name)
        assert module is importlib.import_module(new_name)
        assert sys.modules[old_name] is module
        assert module.__name__ == new_name  # the real module, not a copy
        assert [Path(w.filename).resolve() for w in caught] == [Path(__file__).resolve()]
    finally:
        sys.modules.pop(old_name, None)
        vars(bsmamba2_plugin).pop(old, None)


def test_unknown_module_names_still_fail() -> None:
    with pytest.raises(ModuleNotFoundError, match="bsmamba2_plugin.no_such_module"):
        importlib.import_module("bsmamba2_plugin.no_such_module")


def test_the_shipped_pth_imports_the_new_hook_module() -> None:
    assert SHIPPED_PTH.read_text() == "import bsmamba2_plugin.msst_integration.hook\n"


@pytest.mark.skipif(not HAS_MSST, reason="needs msst")
@pytest.mark.parametrize("pth_line", ["import bsmamba2_plugin._msst_hook",  # older installs
                                      "import bsmamba2_plugin.msst_integration.hook"])
def test_pth_line_installs_the_patch_finder_quietly(pth_line: str) -> None:
    # -S: no site-packages .pth files run; the line under test is the only hook.
    code = f"""
        import sys, warnings
        sys.path[:0] = [{str(PACKAGE_ROOT)!r}, {sysconfig.get_paths()["purelib"]!r}]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the hook must stay silent
            {pth_line}
        heavy = "torch" in sys.modules
        finder = any(type(f).__name__ == "MsstPatchFinder" for f in sys.meta_path)
        import msst.utils.settings as settings
        print(finder, heavy, hasattr(settings.build_model_from_config, "__bsmamba2_original__"))
    """
    result = subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True"]
