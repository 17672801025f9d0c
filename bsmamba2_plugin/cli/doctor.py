"""`bsmamba2 doctor`: versions, devices, the Mamba2 backend, torchaudio and the msst hook.

Every problem found ends the report as a `Problem: ...` line with the command that fixes
it, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

from .. import __version__

__all__ = ["doctor", "register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("doctor", help="print versions, devices and the Mamba2 "
                                                "backend that would run")
    parser.set_defaults(func=run, interrupted="Nothing is lost: doctor only reads. Run it again.")


def run(args: argparse.Namespace) -> int:
    return doctor()


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def doctor() -> int:
    """Print the environment report; 1 when a problem was found (each with its fix)."""
    import torch

    from ..msst_integration.bridge import doctor_rows, hook_problem
    from ..network.config import BSMamba2Config
    from ..network.plan import resolve_plan
    from ..network.ssd import describe_backend

    rows = [
        ("bsmamba2-plugin", __version__),
        ("python", f"{platform.python_version()} ({sys.platform}, {platform.machine()})"),
        ("torch", f"{torch.__version__} (CPU threads: {torch.get_num_threads()})"),
        ("msst", _dist_version("msst")),
        ("mamba_ssm", _dist_version("mamba_ssm")),
        ("triton", _dist_version("triton")),
    ]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            rows.append((f"cuda:{i}", torch.cuda.get_device_name(i)))
            devices.append(torch.device("cuda", i))
    else:
        rows.append(("CUDA", "not available"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        rows.append(("mps", "available"))
        devices.append(torch.device("mps"))
    shipped = BSMamba2Config.paper(gradient_checkpointing="selective")  # the paper configs
    for device in devices:
        name, reason = describe_backend("auto", device)
        rows.append((f"backend on {device}", f"{name}: {reason}"))
        # the rest of the execution plan the shipped configs get there (network/plan.py)
        rows.append((f"plan on {device}", "; ".join(resolve_plan(shipped, device).describe()[1:])))
    torchaudio_row, fix = _torchaudio_check(torch.__version__)
    rows.append(torchaudio_row)
    problems = [fix] if fix else []
    problems += [problem for problem in [hook_problem()] if problem]
    rows.extend(doctor_rows())
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if problems:
        print()
        for problem in problems:
            print(f"Problem: {problem}")
        return 1
    return 0


# msst's training code imports torchaudio.transforms (through its losses), which loads
# torchaudio's compiled library; that fails unless torchaudio was built for this torch.
_TORCHAUDIO_PROBE = "import torchaudio, torchaudio.transforms; print(torchaudio.__version__)"


def _torchaudio_check(torch_version: str) -> tuple[tuple[str, str], str | None]:
    """Load torchaudio in a child process (a crash there cannot take doctor down).

    Returns: the report row and, when torchaudio cannot load, the problem with its fix.
    """
    import subprocess

    if importlib.util.find_spec("torchaudio") is None:
        if importlib.util.find_spec("msst") is None:
            return ("torchaudio", "not installed (only msst's training needs it)"), None
        return ("torchaudio", "NOT INSTALLED"), (
            f"msst is installed but torchaudio is not; msst-train, msst-valid and "
            f"msst-inference import it. Fix: {_torchaudio_fix(torch_version)}")
    env = dict(os.environ, BSMAMBA2_MSST_HOOK="0")
    try:
        probe = subprocess.run([sys.executable, "-c", _TORCHAUDIO_PROBE], capture_output=True,
                               text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return ("torchaudio", "import did not finish in 300 s"), None
    if probe.returncode == 0:
        return ("torchaudio", f"{probe.stdout.strip()} (loads)"), None
    lines = [line for line in (probe.stderr or probe.stdout).strip().splitlines() if line]
    reason = lines[-1] if lines else f"exit code {probe.returncode}"
    version = _dist_version("torchaudio")
    return ("torchaudio", f"{version} CANNOT LOAD: {reason}"), (
        f"torchaudio {version} cannot load beside torch {torch_version} ({reason}), so "
        f"msst-train, msst-valid and msst-inference fail for every model type. torchaudio "
        f"must be built for the installed torch. Fix: {_torchaudio_fix(torch_version)}")


def _torchaudio_fix(torch_version: str) -> str:
    """The command that gives a torchaudio that loads beside `torch_version`."""
    base = torch_version.split("+")[0]
    major, minor = (int(p) if p.isdigit() else 0 for p in (base.split(".") + ["0", "0"])[:2])
    pip = f"{sys.executable} -m pip install"
    if (major, minor) <= (2, 11):
        # since torch 2.1, each torch release has a torchaudio release of the same number
        return f"{pip} 'torchaudio=={base}'"
    # PyPI has no torchaudio for torch >= 2.12; msst uses only torchaudio's Python parts
    spec = importlib.util.find_spec("torchaudio")
    folder = Path(spec.origin).parent if spec is not None and spec.origin else Path("torchaudio")
    return (f"{pip} 'torch==2.11.0' 'torchaudio==2.11.0' (the pair msst 0.1.0 is tested "
            f"with), or keep torch {torch_version} and delete torchaudio's compiled parts, "
            f"which msst does not use: rm -f {folder}/lib/*.so")
