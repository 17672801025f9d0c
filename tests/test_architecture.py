"""The package's layering, read from its source with `ast` (docs/architecture.md, "Layers").

Every import statement counts, at module level or inside functions (also those under
`if TYPE_CHECKING:`), plus `importlib.import_module("constant")` calls. Imports of the
parent packages that Python performs implicitly are not statements and do not count.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import bsmamba2_plugin

PACKAGE = "bsmamba2_plugin"
ROOT = Path(bsmamba2_plugin.__file__).resolve().parent
MAX_LINES = 600

# layer -> the other layers it may import (the command line, cli/, may import any)
ALLOWED_LAYERS = {
    "network": set(),
    "training": {"network"},
    "msst_integration": {"network", "training"},
    "data": set(),
    "inference": {"network", "training", "msst_integration", "data"},
    "evaluation": {"network", "training", "data", "msst_integration", "inference"},
    "experiments": {"data"},
}
# modules below every layer, which every layer may import: they import only the standard
# library (errors.py: the UserError types the command line prints in one line)
BASE_MODULES = {f"{PACKAGE}.errors"}
# third-party packages network may import (mamba_ssm and triton: the kernel backend, lazily)
NETWORK_THIRD_PARTY = {"torch", "mamba_ssm", "triton"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (ROOT.parent / Path(*name.split(".")) / "__init__.py").is_file()


def is_module(name: str) -> bool:
    path = ROOT.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file."""
    name = module_name(path)
    package = name if is_package(name) else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import module` imports pkg.module
                candidate = f"{source}.{alias.name}"
                is_submodule = candidate.startswith(PACKAGE) and is_module(candidate)
                found.append((node.lineno, candidate if is_submodule else source))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            found.append((node.lineno, node.args[0].value))
    return found


def package_files() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def layer_of(name: str) -> str | None:
    """'network' for bsmamba2_plugin.network.ssd; None for cli, errors and __init__"""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED_LAYERS else None


def import_graph() -> dict[str, set[str]]:
    """Package module -> package modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in package_files():
        edges = graph.setdefault(module_name(path), set())
        for _, target in imported_names(path):
            while target.startswith(PACKAGE) and not is_module(target):
                target = target.rpartition(".")[0]  # `import pkg.module.attr` forms
            if target.startswith(PACKAGE):
                edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_import_walker_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # both are imported lazily, inside functions
    assert f"{PACKAGE}.data.render" in graph[f"{PACKAGE}.cli.make_dataset"]
    assert f"{PACKAGE}.msst_integration.bridge" in graph[f"{PACKAGE}.msst_integration.hook"]


def test_every_layer_imports_only_the_layers_it_may() -> None:
    wrong = []
    for path in package_files():
        source = module_name(path)
        layer = layer_of(source)
        if layer is None:
            continue
        for line, target in imported_names(path):
            if not target.startswith(PACKAGE) or target in BASE_MODULES:
                continue
            other = layer_of(target)
            if other is None:  # the package root, cli
                wrong.append(f"{source}:{line} imports {target} (above every layer)")
            elif other != layer and other not in ALLOWED_LAYERS[layer]:
                allowed = sorted(ALLOWED_LAYERS[layer]) or "no other layer"
                wrong.append(f"{source}:{line} imports {target} ({layer} may import {allowed})")
    assert not wrong, "\n".join(wrong)


def test_network_imports_only_torch_the_standard_library_and_itself() -> None:
    wrong = []
    for path in package_files():
        source = module_name(path)
        if layer_of(source) != "network":
            continue
        for line, target in imported_names(path):
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top == PACKAGE and (layer_of(target) == "network" or target in BASE_MODULES):
                continue
            if top not in NETWORK_THIRD_PARTY:
                wrong.append(f"{source}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_base_modules_import_only_the_standard_library() -> None:
    """What every layer may import must not pull any layer (or torch) in behind it."""
    wrong = [f"{module_name(path)}:{line} imports {target}"
             for path in package_files() if module_name(path) in BASE_MODULES
             for line, target in imported_names(path)
             if target.split(".")[0] not in sys.stdlib_module_names | {"__future__"}]
    assert not wrong, "\n".join(wrong)
    assert all(is_module(name) for name in BASE_MODULES)


def test_only_msst_integration_imports_msst() -> None:
    wrong = [f"{module_name(path)}:{line} imports {target}"
             for path in package_files() if layer_of(module_name(path)) != "msst_integration"
             for line, target in imported_names(path) if target.split(".")[0] == "msst"]
    assert not wrong, "\n".join(wrong)


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, enclosing function) of every `os.environ` / `os.getenv` use in a module, also
    through an alias (`import os as o`, `from os import environ, getenv as g`)."""
    os_names, direct = {"os"}, set()  # names bound to the module os; to environ/getenv
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            direct |= {a.asname or a.name for a in node.names
                       if a.name in ("environ", "getenv", "environb", "getenvb")}
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef,
                                                     ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Attribute) and child.attr in ("environ", "getenv") \
                    and isinstance(child.value, ast.Name) and child.value.id in os_names:
                found.append((child.lineno, function))
            elif isinstance(child, ast.Name) and child.id in direct:
                found.append((child.lineno, function))
            visit(child, inner)

    visit(tree, "<module>")
    return found


@pytest.mark.parametrize("source, expected", [
    ("import os\ndef f():\n    return os.environ.get('X')\n", [(3, "f")]),
    ("import os as o\nX = o.getenv('X')\n", [(2, "<module>")]),
    ("from os import environ as e\ndef g():\n    return e['X']\n", [(3, "g")]),
    ("import os\nP = os.path.join('a', 'b')\n", []),
])
def test_the_environment_rule_sees_reads_through_aliases(source: str, expected) -> None:
    assert _environment_reads(ast.parse(source)) == expected


# network's one environment read: Triton's own TRITON_CACHE_AUTOTUNING, so that the
# plugin's default (autotuning cached on disk) leaves a user's explicit setting alone
NETWORK_ENV_READS = {("network.ssd", "_cache_autotuning")}


def test_network_reads_no_environment_variable() -> None:
    """The code path is the execution plan's choice (network/plan.py), made from config
    fields and the device; nothing in network/ reads the environment for behaviour."""
    wrong = []
    for path in package_files():
        source = module_name(path)
        if layer_of(source) != "network":
            continue
        short = source.removeprefix(PACKAGE + ".")
        for line, function in _environment_reads(ast.parse(path.read_text(), str(path))):
            if (short, function) not in NETWORK_ENV_READS:
                wrong.append(f"{source}:{line} ({function}) reads the environment")
    assert not wrong, "\n".join(wrong)


def _global_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of assignments to a class's attribute (`Name.attr = ...` with a
    capitalised name) and of writes to os.environ."""
    found = []
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            base = target.value if isinstance(target, (ast.Attribute, ast.Subscript)) else None
            if isinstance(target, ast.Attribute) and isinstance(base, ast.Name) \
                    and base.id[:1].isupper():
                found.append((node.lineno, f"{base.id}.{target.attr} ="))
            if isinstance(target, ast.Subscript) and ast.unparse(base) == "os.environ":
                found.append((node.lineno, "os.environ[...] ="))
        if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "os.putenv", "os.environ.setdefault", "os.environ.update", "os.environ.pop",
                "os.environ.clear", "os.unsetenv"):
            found.append((node.lineno, ast.unparse(node.func)))
    return found


def test_library_code_writes_no_class_attribute_and_no_environment_variable() -> None:
    """What runs is chosen by config and plan, not by state one module leaves for another:
    no package module assigns a class's attribute or changes the environment."""
    wrong = [f"{module_name(path)}:{line}: {what}" for path in package_files()
             for line, what in _global_writes(ast.parse(path.read_text(), str(path)))]
    assert not wrong, "\n".join(wrong)


# msst_integration's one home of shared mutable state (its docstring says what counts)
RUN_STATE_MODULE = f"{PACKAGE}.msst_integration.run_state"
# calls whose result is immutable or is not state: constants may be made with them
IMMUTABLE_CALLS = {"frozenset", "tuple", "logging.getLogger", "dataclasses.field"}


def _frozen_dataclasses(tree: ast.Module) -> set[str]:
    """Names of the classes of a module declared `@dataclasses.dataclass(frozen=True)`."""
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)
            for decorator in node.decorator_list
            if isinstance(decorator, ast.Call)
            and ast.unparse(decorator.func) in ("dataclasses.dataclass", "dataclass")
            and any(k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value
                    for k in decorator.keywords)}


def _mutable(node: ast.AST, immutable_calls: set[str]) -> bool:
    """Whether an expression makes a mutable value: a dict, list or set (literal or
    comprehension), a call (but of `immutable_calls`), or a tuple or sum holding one."""
    if isinstance(node, (ast.Dict, ast.List, ast.Set, ast.ListComp, ast.DictComp,
                         ast.SetComp)):
        return True
    if isinstance(node, ast.Tuple):
        return any(_mutable(element, immutable_calls) for element in node.elts)
    if isinstance(node, ast.BinOp):
        return _mutable(node.left, immutable_calls) or _mutable(node.right, immutable_calls)
    if isinstance(node, ast.Starred):
        return _mutable(node.value, immutable_calls)
    if isinstance(node, ast.Call):
        return ast.unparse(node.func) not in immutable_calls
    return False


def shared_state(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) of every assignment of a mutable value at module level or in a class
    body (`__all__` aside), and of every `global` statement: state a module shares."""
    immutable = IMMUTABLE_CALLS | _frozen_dataclasses(tree)
    found: list[tuple[int, str]] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # a function's locals are not shared (its `global`s are, below)
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) \
                    and node.value is not None and _mutable(node.value, immutable):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = " = ".join(ast.unparse(target) for target in targets)
                if names != "__all__":
                    found.append((node.lineno, f"{names} = {ast.unparse(node.value)[:40]}"))
            for field in ("body", "orelse", "finalbody", "handlers"):  # if, try, class, ...
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit(inner)

    visit(tree.body)
    found += [(node.lineno, f"global {', '.join(node.names)}") for node in ast.walk(tree)
              if isinstance(node, ast.Global)]
    return sorted(found)


def test_msst_integration_keeps_its_shared_state_in_the_run_state_module() -> None:
    """The msst patches share one `RunState` (issue 24): no other module of the layer keeps
    mutable state at module level or rebinds a global."""
    wrong = [f"{module_name(path)}:{line}: {what}" for path in package_files()
             if layer_of(module_name(path)) == "msst_integration"
             and module_name(path) != RUN_STATE_MODULE
             for line, what in shared_state(ast.parse(path.read_text(), str(path)))]
    assert not wrong, "module-level state outside run_state.py:\n" + "\n".join(wrong)


@pytest.mark.parametrize("source, expected", [
    ("X = {}", ["X = {}"]),
    ("X: list[int] = []", ["X = []"]),
    ("X = dict(a=1)", ["X = dict(a=1)"]),
    ("X = ({1: 2},)", ["X = ({1: 2},)"]),
    ("X = (1,) + [2]", ["X = (1,) + [2]"]),
    ("if True:\n    X = set()", ["X = set()"]),
    ("class C:\n    cache = {}", ["cache = {}"]),
    ("def f():\n    global X\n    X = 1", ["global X"]),
    ("X = frozenset({1})\nY = (1, 'a')\nZ = 'a' + 'b'\n__all__ = ['f']", []),
    ("import logging\nlogger = logging.getLogger('x')", []),
    ("@dataclasses.dataclass(frozen=True)\nclass P:\n    a: int\nPS = (P(1), P(2))", []),
    ("@dataclasses.dataclass\nclass P:\n    a: int\nPS = (P(1),)", ["PS = (P(1),)"]),
    ("def f():\n    cache = {}\n    return cache", []),
])
def test_the_state_rule_sees_what_it_should(source: str, expected: list[str]) -> None:
    assert [what for _, what in shared_state(ast.parse(source))] == expected


def test_the_startup_hook_and_the_bridge_patch_the_same_msst_modules(monkeypatch) -> None:
    """The hook cannot import the bridge (startup stays free), so both take the list of
    patched modules from import_hooks; a patch on a module outside it would never apply."""
    from bsmamba2_plugin.msst_integration import bridge, hook, import_hooks

    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path
                                           if not isinstance(f, import_hooks.MsstPatchFinder)])
    hook.register()
    finder = sys.meta_path[0]
    assert isinstance(finder, import_hooks.MsstPatchFinder)
    assert finder.targets == {patch.module for patch in bridge.PATCHES}
    assert bridge.TARGET_MODULES == finder.targets


def test_the_list_of_patched_modules_is_standard_library_only() -> None:
    """import_hooks runs at every interpreter start (through the hook)."""
    path = ROOT / "msst_integration" / "import_hooks.py"
    imported = {target.split(".")[0] for _, target in imported_names(path)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b"}}, ["b", "b"]),
])
def test_find_cycle_reports_the_cycle(graph: dict[str, set[str]],
                                      expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected


CLI = f"{PACKAGE}.cli"


def test_each_command_has_its_own_module_in_cli() -> None:
    """`bsmamba2 make-dataset` is registered and run by cli/make_dataset.py (dashes as
    underscores), and no module of cli/ but the private helpers (`_*.py`) and the package's
    `__init__`/`__main__` is anything but one command: the parser dispatches through
    `args.func`, so `main` names no command and has no fall-through."""
    import argparse

    from bsmamba2_plugin.cli import build_parser

    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    wrong, expected = [], set()
    for command, parser in action.choices.items():
        module = f"{CLI}.{command.replace('-', '_')}"
        expected.add(module)
        run = parser.get_default("func")
        if getattr(run, "__module__", None) != module:
            wrong.append(f"bsmamba2 {command} runs {run!r}, expected {module}.run")
        if not parser.get_default("interrupted"):
            wrong.append(f"bsmamba2 {command} sets no Ctrl-C message (interrupted=...)")
    modules = {module_name(path) for path in (ROOT / "cli").glob("*.py")
               if not path.name.startswith("_")}
    wrong += [f"{name} is in cli/ but is no command's module" for name in modules - expected]
    assert not wrong, "\n".join(wrong)


def test_the_command_line_dispatches_without_naming_commands() -> None:
    """No `if args.command == ...` chain: cli/ never compares `.command` with anything."""
    wrong = []
    for path in sorted((ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare) and any(
                    isinstance(part, ast.Attribute) and part.attr == "command"
                    for part in [node.left, *node.comparators]):
                wrong.append(f"{module_name(path)}:{node.lineno}: {ast.unparse(node)}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_longer_than_600_lines() -> None:
    long = {module_name(path): n for path in package_files()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_merge_conflict_markers_in_the_repository() -> None:
    """A conflict resolved halfway once reached the README's Troubleshooting section."""
    root = Path(__file__).resolve().parent.parent
    suffixes = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg"}
    found = []
    for path in root.rglob("*"):
        if (path.suffix in suffixes and path.is_file()
                and not any(part.startswith(".") or part in ("node_modules", "runs")
                            for part in path.relative_to(root).parts)):
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if line.startswith(("<<<<<<< ", ">>>>>>> ")):
                    found.append(f"{path.relative_to(root)}:{number}")
    assert not found, f"merge conflict markers: {found}"
