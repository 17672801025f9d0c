"""Importing the package is free: no torch, mamba_ssm, triton or CUDA initialisation."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_loads_no_heavy_module_and_prints_nothing() -> None:
    out = run_python("""
        import os, sys
        before = dict(os.environ)
        import bsmamba2_plugin
        heavy = [m for m in ("torch", "mamba_ssm", "triton") if m in sys.modules]
        print("heavy:", heavy, "env-changed:", dict(os.environ) != before)
    """)
    assert out == "heavy: [] env-changed: False\n"


def test_building_and_running_on_cpu_never_touches_cuda_or_kernels() -> None:
    out = run_python("""
        import sys, torch
        from bsmamba2_plugin import BSMamba2, BSMamba2Config
        model = BSMamba2(BSMamba2Config.tiny())
        model(torch.randn(1, 2, 2000))
        print(torch.cuda.is_initialized(), "mamba_ssm" in sys.modules, "triton" in sys.modules)
    """)
    assert out == "False False False\n"


def test_public_names_resolve_lazily() -> None:
    out = run_python("""
        import bsmamba2_plugin as p
        print(p.BSMamba2.__name__, p.BSMamba2Config.__name__, p.build_model.__name__,
              p.__version__)
    """)
    assert out.split()[:3] == ["BSMamba2", "BSMamba2Config", "build_model"]


def test_the_command_line_parser_loads_no_heavy_module() -> None:
    """`bsmamba2 --help` builds every command's parser; the commands import what they run
    inside `run`, so that neither torch nor numpy is loaded for it."""
    out = run_python("""
        import sys
        from bsmamba2_plugin.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print("heavy:", [m for m in ("torch", "numpy", "yaml") if m in sys.modules])
    """)
    assert "usage: bsmamba2" in out and out.endswith("heavy: []\n")
