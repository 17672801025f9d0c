"""The skipped tests of a CI route, and the check that they are the expected ones.

As a pytest plugin (`.ci/run` passes `-p skiplist` with `.ci` on PYTHONPATH): writes every
skipped test to the file named by CI_SKIP_LIST, one `node id<TAB>reason` line each, sorted.
A test that skips because something the route installs went missing (g++, Triton, onnx,
accelerate) would otherwise leave CI green.

As a script: `python3 .ci/skiplist.py FOUND EXPECTED ROUTE` prints the skipped tests and
exits 1, naming the differences, when FOUND and EXPECTED (same format; `#` lines are
comments) differ in a node id or a reason. An expected node id ending in `*` stands for
every node id that starts with the part before it (same reason), and must match one at least:
`tests/test_kernel_cuda.py::*<TAB>needs CUDA` keeps CUDA tests added to that file from
failing CPU CI, while a test that stops skipping, or skips for another reason, still does.
"""

from __future__ import annotations

import os
import sys

_skipped: dict[str, str] = {}


def _reason(report) -> str:
    if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
        text = report.longrepr[2]
    else:
        text = str(report.longrepr)
    return text.removeprefix("Skipped: ").replace("\t", " ").replace("\n", " ")


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped[report.nodeid] = _reason(report)


def pytest_collectreport(report) -> None:  # a whole module skipped at import
    if report.skipped:
        _skipped[report.nodeid] = _reason(report)


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get("CI_SKIP_LIST")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(f"{node}\t{why}\n" for node, why in sorted(_skipped.items()))


def _read(path: str) -> list[tuple[str, str]]:
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                node, _, why = line.rstrip("\n").partition("\t")
                entries.append((node, why))
    return sorted(entries)


def _matches(node: str, why: str, pattern: str, reason: str) -> bool:
    if pattern.endswith("*"):
        return node.startswith(pattern[:-1]) and why == reason
    return node == pattern and why == reason


def main(found_path: str, expected_path: str, route: str) -> int:
    found, expected = _read(found_path), _read(expected_path)
    print(f"CI: {route}: {len(found)} skipped tests:")
    for node, why in found:
        print(f"  {node}  ({why})")
    unexpected = [(node, why) for node, why in found
                  if not any(_matches(node, why, *entry) for entry in expected)]
    missing = [entry for entry in expected
               if not any(_matches(node, why, *entry) for node, why in found)]
    if not unexpected and not missing:
        print(f"CI: {route}: the skips are the expected ones ({expected_path}).")
        return 0
    print(f"CI: FAILED: {route}: the skipped tests differ from {expected_path}:")
    for node, why in unexpected:
        print(f"  skipped, not expected: {node}  ({why})")
    for node, why in missing:
        print(f"  expected to skip, did not (ran, or skipped for another reason): {node}"
              f"  ({why})")
    print("  Restore what the route lost (a compiler, Triton, an extra), or, if the change "
          f"is intended, update {expected_path} in the same commit.")
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
