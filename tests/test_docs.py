"""The design documents live in docs/, and every document the repository names exists.

Two rules, read from the files as text:
- every `*.md` path named in the package, configs, recipes, tests, benchmark scripts, the
  README and docs/ itself resolves to a file of the repository, and no file cites the design
  notes that were never in the repository;
- `docs/architecture.md`'s module list names every module of the package, and no other.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bsmamba2_plugin"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"

# Design notes that lived outside the repository; nothing may cite them (written split, so
# that this file does not cite them itself).
RETIRED = re.compile(r"\b(?:" + "|".join(("SPEC", "EVAL", "MSST", "GPU", "STYLE")) +
                     r")\.md\b|\bSTYLE \d")
# Names of files that the tools write, or placeholders in usage lines: not documents.
OUTPUT_NAMES = {"summary.md", "training.md", "train_runs.md", "FILE.md", "x.md"}
MD_PATH = re.compile(r"[\w./{}$*-]*\.md\b")


def cited_files() -> list[Path]:
    """The files whose citations must resolve (benchmarks/results/ holds old logs: not read)."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "configs").glob("*.yaml"),
             *(ROOT / "recipes").glob("*.yaml"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks").glob("*.sh"),
             ROOT / "benchmarks" / "GPU_NOTES.md", ROOT / "README.md", ROOT / "pyproject.toml",
             *DOCS.glob("*.md")]
    # this file's and test_readme_results.py's examples name missing files on purpose
    examples = {Path(__file__).resolve(), ROOT / "tests" / "test_readme_results.py"}
    return sorted(path for path in files if path not in examples)


def md_citations(text: str) -> list[tuple[int, str]]:
    """(line, name) for every `*.md` name in `text` that should be a repository file."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for name in MD_PATH.findall(line):
            name = name.rstrip(".")  # a sentence's full stop
            if name.endswith(".md") and name != ".md" and not (
                    any(c in name for c in "{}$*") or name.startswith(("/", "~"))
                    or name.rsplit("/", 1)[-1] in OUTPUT_NAMES):
                found.append((number, name))
    return found


def unresolved(path: Path, name: str) -> str | None:
    """Why `name`, cited in `path`, does not resolve (None when it does)."""
    name = name.removeprefix("./")
    if "/" in name:
        candidates = [ROOT / name, path.parent / name]
    else:
        if path.parent != DOCS and (DOCS / name).is_file():
            return f"write docs/{name}"
        candidates = [ROOT / name, path.parent / name, RESULTS / name]
    if any(candidate.is_file() for candidate in candidates):
        return None
    return "no such file in the repository"


def test_every_cited_document_exists() -> None:
    wrong = []
    for path in cited_files():
        for number, name in md_citations(path.read_text()):
            why = unresolved(path, name)
            if why:
                wrong.append(f"{path.relative_to(ROOT)}:{number} names {name}: {why}")
    assert not wrong, "\n".join(wrong)


def test_no_file_cites_the_notes_outside_the_repository() -> None:
    wrong = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in cited_files()
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if RETIRED.search(line)]
    assert not wrong, "cite the matching docs/*.md instead:\n" + "\n".join(wrong)


def listed_modules() -> set[str]:
    """The modules in the first column of the tables of docs/architecture.md's "## Modules"."""
    text = (DOCS / "architecture.md").read_text()
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", section, re.MULTILINE))


def test_architecture_lists_every_module_and_only_those() -> None:
    actual = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    listed = listed_modules()
    assert not actual - listed, f"modules missing from docs/architecture.md: " \
                                f"{sorted(actual - listed)}"
    assert not listed - actual, f"docs/architecture.md lists modules that do not exist: " \
                                f"{sorted(listed - actual)}"


def test_the_readme_points_to_every_design_document() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f"docs/{path.name}" for path in sorted(DOCS.glob("*.md"))
               if f"docs/{path.name}" not in readme]
    assert not missing, f"README.md does not mention {missing}"


def test_the_citation_reader_resolves_names_as_documented(tmp_path: Path) -> None:
    text = ("see docs/architecture.md, `architecture.md`, (README.md) and\n"
            "{workdir}/report/summary.md /tmp/x/notes.md summary.md .md; MISSING.md.")
    assert md_citations(text) == [(1, "docs/architecture.md"), (1, "architecture.md"),
                                  (1, "README.md"), (2, "MISSING.md")]
    source = PACKAGE / "network" / "model.py"
    assert unresolved(source, "docs/architecture.md") is None
    assert unresolved(source, "architecture.md") == "write docs/architecture.md"
    assert unresolved(DOCS / "style.md", "architecture.md") is None
    assert unresolved(source, "cpu_speed_all_2026-11-30.md") is None  # benchmarks/results/
    assert unresolved(source, "MISSING.md") == "no such file in the repository"
    assert RETIRED.search("see SPEC" + ".md section 3") and RETIRED.search("(STYLE" + " 3.4)")
    assert not RETIRED.search("the GPU machine, GPU 1") and not RETIRED.search("GPU_NOTES.md")
