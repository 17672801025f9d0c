"""The README backs its numbers with files under benchmarks/results/: every such path it
cites must exist (a renamed or never-committed results file fails here)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
CITED = re.compile(r"benchmarks/results/[\w./-]*[\w/]")


def cited_results(text: str) -> list[str]:
    return sorted(set(CITED.findall(text)))


def test_the_pattern_finds_paths_as_the_readme_writes_them() -> None:
    text = ("(`benchmarks/results/a_2026-11-30.md`, command there), [report]"
            "(benchmarks/results/b/README.md); see benchmarks/results/c/.")
    assert cited_results(text) == ["benchmarks/results/a_2026-11-30.md",
                                   "benchmarks/results/b/README.md", "benchmarks/results/c/"]


def test_every_results_path_the_readme_cites_exists() -> None:
    cited = cited_results(README.read_text(encoding="utf-8"))
    assert len(cited) >= 20, cited  # the README cites its results files by full path
    missing = [path for path in cited if not (ROOT / path).exists()]
    assert not missing, f"README.md cites results that do not exist: {missing}"
