"""The house keeps its shape: no import cycle between leadpulse's modules (imports inside functions and under
TYPE_CHECKING count), every layer imports only the layers below it, and the engine does no I/O.

The checker reads the source with `ast`; the tests at the end show it catching each kind of fault in a made-up tree.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FOUNDATION = tuple(f"leadpulse.core.{name}"
                   for name in ("errors", "model", "clock", "strict", "schedule", "contract", "textfiles"))
#: each layer (a module prefix) and the prefixes it may import; the most specific prefix applies
LAYERS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(FOUNDATION, FOUNDATION),
    "leadpulse.core.engine": ("leadpulse.core.engine", *(m for m in FOUNDATION if not m.endswith(".contract"))),
    "leadpulse.core.config": ("leadpulse.core.config", "leadpulse.core.engine", *FOUNDATION),
    "leadpulse.core.store": ("leadpulse.core.store", *FOUNDATION),
    "leadpulse.core.runtime": ("leadpulse.core.runtime", "leadpulse.core.config", "leadpulse.core.store",
                               "leadpulse.core.engine", *FOUNDATION),
    "leadpulse.core.cli": ("leadpulse.core",),
    "leadpulse.core.cli.demo": ("leadpulse.core", "leadpulse.sandbox"),
    "leadpulse.connectors": ("leadpulse.connectors", "leadpulse.core.contract", "leadpulse.core.model",
                             "leadpulse.core.errors", "leadpulse.core.clock", "leadpulse.core.strict",
                             "leadpulse.core.textfiles"),
    "leadpulse.sandbox": ("leadpulse.sandbox",),
}
#: what the engine may not import: files, databases, the network, processes, and what drives them
ENGINE_IO = frozenset({
    "sqlite3", "sqlite_utils", "requests", "urllib", "urllib3", "http", "socket", "ssl", "subprocess",
    "multiprocessing", "threading", "os", "shutil", "tempfile", "pathlib", "io", "yaml", "hubspot",
    "simple_salesforce", "pipedrive", "apscheduler", "prometheus_client", "click", "rich",
})
#: the top-level names the folders had before they were installed under `leadpulse`
OLD_NAMES = frozenset({"core", "connectors", "sandbox"})


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def package_dirs(root: Path) -> dict[str, Path]:
    """Import package -> folder, as pyproject.toml maps them."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {package: root / folder for package, folder in mapping.items()}


def modules(dirs: Mapping[str, Path]) -> dict[str, Path]:
    """Every module of the project: its dotted name and its file (a package is its ``__init__.py``)."""
    found = {}
    for package, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(name: str, path: Path, known: Iterable[str]) -> Iterator[Import]:
    """Every import in the module, wherever it stands, as the module or package it names; ``from package import
    module`` names the module."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                child = f"{base}.{alias.name}"
                yield Import(name, child if child in known else base, node.lineno)


def graph(root: Path) -> tuple[dict[str, Path], list[Import]]:
    found = modules(package_dirs(root))
    return found, [edge for name, path in found.items() for edge in imports(name, path, found)]


def cycles(names: Iterable[str], edges: Iterable[Import]) -> list[list[str]]:
    """The import cycles among `names` (Tarjan's strongly connected components of two or more, or a self-import)."""
    names = set(names)
    out: dict[str, set[str]] = {name: set() for name in names}
    for edge in edges:
        if edge.target in names:
            out[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(out[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in out[node]:
                found.append(sorted(component))

    for name in sorted(names):
        if name not in index:
            visit(name)
    return found


def _allowed(module: str) -> tuple[str, ...] | None:
    layer = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len,
                default=None)
    return None if layer is None else LAYERS[layer]


def _within(target: str, prefixes: Iterable[str]) -> bool:
    return any(target == prefix or target.startswith(prefix + ".") for prefix in prefixes)


def layer_faults(edges: Iterable[Import], paths: Mapping[str, Path]) -> list[str]:
    """Imports that point up or sideways, the engine's I/O, and imports of the old top-level names."""
    faults = []
    for edge in edges:
        where = f"{paths[edge.source].relative_to(paths[edge.source].parents[2])}:{edge.line}"
        top = edge.target.split(".")[0]
        if top in OLD_NAMES:
            faults.append(f"{where}: {edge.source} imports {edge.target}; it is leadpulse.{edge.target} now")
        elif top == "leadpulse":
            allowed = _allowed(edge.source) or ()
            if not _within(edge.target, allowed):
                faults.append(f"{where}: {edge.source} imports {edge.target}, outside its layer ({', '.join(allowed)})")
        elif edge.source.startswith("leadpulse.core.engine") and top in ENGINE_IO:
            faults.append(f"{where}: {edge.source} imports {edge.target}: the engine does no I/O")
    return faults


# -- the project -------------------------------------------------------------------------------------------------


def test_there_is_no_import_cycle_between_the_projects_modules():
    found, edges = graph(ROOT)
    assert len(found) > 60  # the mapping was read: every folder of the three packages is here
    assert cycles(found, edges) == []


def test_every_layer_imports_only_the_layers_below_it_and_the_engine_does_no_io():
    found, edges = graph(ROOT)
    assert layer_faults(edges, found) == []


def test_every_module_belongs_to_a_layer():
    found, _ = graph(ROOT)
    assert [name for name in found if _allowed(name) is None and name != "leadpulse.core"] == []


def test_every_package_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found, _ = graph(ROOT)
    packages = {name for name, path in found.items() if path.name == "__init__.py"}
    assert packages == listed


# -- the checker finds what it is for ----------------------------------------------------------------------------


def make_tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.package-dir]\n"leadpulse.core" = "core"\n"leadpulse.connectors" = "connectors"\n'
        '"leadpulse.sandbox" = "sandbox"\n')
    for name, text in {"core/__init__.py": "", "core/engine/__init__.py": "", "connectors/__init__.py": "",
                       "sandbox/__init__.py": "", **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checker_finds_a_cycle_closed_by_an_import_inside_a_function(tmp_path):
    root = make_tree(tmp_path, {
        "core/model.py": "from leadpulse.core import errors\n",
        "core/errors.py": "def late():\n    from leadpulse.core.model import Thing\n",
    })
    found, edges = graph(root)
    assert cycles(found, edges) == [["leadpulse.core.errors", "leadpulse.core.model"]]


def test_the_checker_finds_a_cycle_closed_under_type_checking_and_by_a_relative_import(tmp_path):
    root = make_tree(tmp_path, {
        "sandbox/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "sandbox/b.py": "from . import a\n",
    })
    found, edges = graph(root)
    assert cycles(found, edges) == [["leadpulse.sandbox.a", "leadpulse.sandbox.b"]]


@pytest.mark.parametrize(("module", "text", "fault"), [
    ("core/engine/rules.py", "import sqlite3\n", "the engine does no I/O"),
    ("core/engine/rules.py", "def f():\n    import requests\n", "the engine does no I/O"),
    ("core/engine/rules.py", "from leadpulse.core.store.store import Store\n", "outside its layer"),
    ("core/engine/rules.py", "from leadpulse.connectors.hubspot import HubSpotConnector\n", "outside its layer"),
    ("core/store/store.py", "from leadpulse.core.runtime import logs\n", "outside its layer"),
    ("core/runtime/pipeline.py", "from leadpulse.connectors import hubspot\n", "outside its layer"),
    ("core/runtime/pipeline.py", "from leadpulse.sandbox import Sandbox\n", "outside its layer"),
    ("core/cli/sync.py", "from leadpulse.sandbox import Sandbox\n", "outside its layer"),
    ("connectors/hubspot.py", "from leadpulse.core.runtime import metrics\n", "outside its layer"),
    ("sandbox/app.py", "from leadpulse.core.model import Contact\n", "outside its layer"),
    ("core/runtime/pipeline.py", "from core.store import Store\n", "it is leadpulse.core.store now"),
])
def test_the_checker_finds_an_import_out_of_its_layer(tmp_path, module, text, fault):
    root = make_tree(tmp_path, {module: text})
    found, edges = graph(root)
    [message] = layer_faults(edges, found)
    assert fault in message and module in message


def test_the_checker_lets_the_demo_import_the_sandbox(tmp_path):
    root = make_tree(tmp_path, {"core/cli/demo.py": "from leadpulse.sandbox import Sandbox\n"})
    found, edges = graph(root)
    assert layer_faults(edges, found) == []
