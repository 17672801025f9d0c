"""Run a test script under Triton's interpreter (TRITON_INTERPRET=1) on the CPU, in a child
process: the variable must be set before triton is imported, and this process may have
imported it already."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_interpreted(script: str, timeout: int = 600) -> str:
    """Run `script` (dedented) with TRITON_INTERPRET=1; assert it exits 0 and its output
    starts with "ok"; return that output."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                            capture_output=True, text=True, timeout=timeout,
                            env=dict(os.environ, TRITON_INTERPRET="1"))
    assert result.returncode == 0 and result.stdout.startswith("ok"), (
        result.stdout[-2000:] + result.stderr[-3000:])
    return result.stdout
