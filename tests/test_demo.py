"""`bsmamba2 demo --quick`: the whole loop end to end in seconds (needs msst)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.msst, pytest.mark.skipif(importlib.util.find_spec("msst") is None,
                                                   reason="needs msst")]


def test_quick_demo_runs_every_stage_and_writes_the_report(tmp_path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "bsmamba2_plugin.cli", "demo", "--quick",
                             "--workdir", str(workdir)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "separated audio:" in result.stdout and "report:" in result.stdout
    assert (workdir / "separated" / "song" / "vocals.wav").is_file()
    assert (workdir / "separated" / "song" / "instrumental.wav").is_file()
    for name in ("summary.md", "results.csv", "quality_vs_chunk.png", "by_activity.png"):
        assert (workdir / "report" / name).is_file(), name
    summary = json.loads((workdir / "report" / "summary.json").read_text())
    assert {e["model"] for e in summary["table"]} == {"mixture", "bsmamba2"}
    assert {e["chunk_seconds"] for e in summary["table"]} == {1.0, 2.0}
    # the demo's own split is big enough for the paired comparison: its report must not
    # tell the user to point --data at more tracks (issue 23)
    assert summary["paired"] and summary["paired_note"] is None
    assert "Fix:" not in (workdir / "report" / "summary.md").read_text()
    stages = sorted(p.stem for p in (workdir / ".stages").glob("*.done"))
    assert stages == ["data", "report", "separate", "song", "train", "valid"]
    # a second run resumes: every stage is skipped
    again = subprocess.run([sys.executable, "-m", "bsmamba2_plugin.cli", "demo", "--quick",
                            "--workdir", str(workdir)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and again.stdout.count("skipped") == 6
