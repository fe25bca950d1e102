"""The import graph of the ``logdistill`` package: no cycles, no layer breaches.

Built from the source alone (every module's AST, function-level imports included: a lazy import
still runs, and a cycle hidden in a function is still a cycle), so it needs none of the packages
it checks for. Imports under ``if TYPE_CHECKING:`` never run and are left out.

Layers (transitively, over internal imports):

* the operator never reaches torch or transformers (so never a torch engine module of ``model``);
* the edge reaches neither torch, transformers, kopf nor kubernetes;
* of ``logdistill.model``, the edge and the operator import only ``logdistill.model.runtime.*`` (torch-free,
  which reaches neither torch, transformers, scikit-learn nor the cluster clients);
* inside ``model``, subpackages import downwards only: runtime <- engine <- cli <- bench, with services
  (the teacher service) beside cli (see ``MODEL_LAYERS``);
* ``logdistill.contracts``, ``logdistill.spec`` and ``logdistill.timefmt`` (the wire formats, the typed spec
  and the timestamp format, loaded by every process) import only the standard library, pydantic, yaml and
  each other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each part of the package lives (pyproject.toml: package-dir).
PACKAGES = {"logdistill": ROOT / "src" / "logdistill", "logdistill.operator": ROOT / "operator",
            "logdistill.model": ROOT / "model", "logdistill.edge": ROOT / "edge"}

# Cycles that exist today, each the full set of modules of one strongly connected component.
# Issue #15: this list only shrinks. A cycle not listed fails the test, and so does a listed one
# that is gone (remove it here).
ALLOWED_CYCLES: list[frozenset[str]] = []

HEAVY_ML = {"torch", "transformers"}
# logdistill.model subpackage -> the internal packages it may import besides itself.
_LIGHT_BASE = {"logdistill.contracts", "logdistill.spec", "logdistill.timefmt"}
MODEL_LAYERS: dict[str, set[str]] = {
    "logdistill.model.runtime": _LIGHT_BASE,
    "logdistill.model.engine": _LIGHT_BASE | {"logdistill.model.runtime"},
    "logdistill.model.cli": _LIGHT_BASE | {"logdistill.model.runtime", "logdistill.model.engine"},
    "logdistill.model.services": _LIGHT_BASE | {"logdistill.podannotation", "logdistill.edge",
                                                "logdistill.model.runtime", "logdistill.model.engine"},
    "logdistill.model.bench": _LIGHT_BASE | {"logdistill.edge", "logdistill.model.runtime", "logdistill.model.engine",
                                             "logdistill.model.cli"},
}
CLUSTER = {"kopf", "kubernetes"}
LIGHT_ALLOWED = {"pydantic", "yaml"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if name in PACKAGES and path.name != "__init__.py":
                continue
            if any(name.startswith(f"{other}.") or name == other for other in PACKAGES if other != package
                   and other.startswith(f"{package}.")):
                continue  # e.g. src/logdistill/operator would be shadowed by operator/
            found[name] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for inner in node.body:
                    skip.update(id(n) for n in ast.walk(inner))
    return skip


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(internal modules, external top-level packages) that module ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    internal: set[str] = set()
    external: set[str] = set()

    def resolve(target: str) -> None:
        if target == "logdistill" or target.startswith("logdistill."):
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                internal.add(".".join(parts))
        else:
            external.add(target.split(".")[0])

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import module` imports the submodule
                if f"{source}.{alias.name}" in modules:
                    resolve(f"{source}.{alias.name}")
                else:
                    resolve(source)
    internal.discard(name)
    return internal, external


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    edges, external = {}, {}
    for name, path in modules.items():
        edges[name], external[name] = _imports(name, path, modules)
    return edges, external


def _cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _reach(edges: dict[str, set[str]], external: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """External package -> one import path from ``start`` that reaches it."""
    paths: dict[str, list[str]] = {}
    seen = {start}
    queue = [[start]]
    while queue:
        path = queue.pop(0)
        for package in external[path[-1]]:
            paths.setdefault(package, path)
        for child in sorted(edges[path[-1]]):
            if child not in seen:
                seen.add(child)
                queue.append(path + [child])
    return paths


EDGES, EXTERNAL = _graph()


def test_the_graph_sees_the_whole_package():
    assert {"logdistill.contracts", "logdistill.spec", "logdistill.model.engine.pipeline", "logdistill.operator.handlers",
            "logdistill.edge.classifier"} <= set(EDGES)
    assert "logdistill.contracts" in EDGES["logdistill.operator.summary"]
    assert "torch" in EXTERNAL["logdistill.model.engine.train"]


def test_no_import_cycles_beyond_the_allow_list():
    cycles = _cycles(EDGES)
    new = [sorted(c) for c in cycles if c not in ALLOWED_CYCLES]
    assert not new, f"import cycles (break them, do not extend ALLOWED_CYCLES): {new}"
    gone = [sorted(c) for c in ALLOWED_CYCLES if c not in cycles]
    assert not gone, f"these allowed cycles are gone or changed: update ALLOWED_CYCLES (#15): {gone}"


def _breaches(prefix: str, forbidden: set[str]) -> list[str]:
    out = []
    for name in sorted(EDGES):
        if name == prefix or name.startswith(prefix + "."):
            for package, path in sorted(_reach(EDGES, EXTERNAL, name).items()):
                if package in forbidden:
                    out.append(f"{name} reaches {package} via {' -> '.join(path)}")
    return out


def test_the_operator_never_reaches_torch():
    assert not _breaches("logdistill.operator", HEAVY_ML)


def test_the_edge_reaches_neither_torch_nor_the_cluster_clients():
    assert not _breaches("logdistill.edge", HEAVY_ML | CLUSTER)


@pytest.mark.parametrize("module", ["logdistill.operator.names", "logdistill.operator.manifests"])
def test_the_operator_names_and_manifests_stay_pure(module):
    """The names and the manifest builders are data in, data out: no cluster client, no kopf."""
    assert not _breaches(module, CLUSTER)


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("importer", ["logdistill.edge", "logdistill.operator"])
def test_the_edge_and_the_operator_import_only_the_model_runtime(importer):
    wrong = sorted(f"{name} imports {target}" for name in EDGES if _in(name, importer) for target in EDGES[name]
                   if _in(target, "logdistill.model") and not _in(target, "logdistill.model.runtime"))
    assert not wrong, wrong


def test_the_model_runtime_stays_torch_free():
    assert not _breaches("logdistill.model.runtime", HEAVY_ML | CLUSTER | {"sklearn"})


def test_model_subpackages_import_downwards_only():
    stray = sorted(n for n in EDGES if _in(n, "logdistill.model") and n != "logdistill.model"
                   and not any(_in(n, layer) for layer in MODEL_LAYERS))
    assert not stray, f"modules of logdistill.model outside every MODEL_LAYERS subpackage: {stray}"
    wrong = []
    for layer, allowed in MODEL_LAYERS.items():
        for name in EDGES:
            if _in(name, layer):
                wrong += [f"{name} imports {target}" for target in sorted(EDGES[name])
                          if target != "logdistill" and not _in(target, layer)
                          and not any(_in(target, ok) for ok in allowed)]
    assert not wrong, wrong


@pytest.mark.parametrize("module", ["logdistill.contracts", "logdistill.spec", "logdistill.timefmt", "logdistill.policy"])
def test_contracts_and_spec_stay_light(module):
    reach = _reach(EDGES, EXTERNAL, module)
    heavy = {p: path for p, path in reach.items() if p not in LIGHT_ALLOWED and p not in sys.stdlib_module_names}
    assert not heavy, f"{module} pulls in {heavy}"
    internal = EDGES[module] - {"logdistill.contracts", "logdistill.spec", "logdistill"}
    assert not internal, f"{module} imports {sorted(internal)}"


def test_a_cycle_and_a_breach_are_detected():
    """The checks themselves: a made-up cycle is found, a made-up breach is reported with its path."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [frozenset({"a", "b", "c"})]
    external = {"a": set(), "b": {"torch"}, "c": set(), "d": set()}
    assert _reach(edges, external, "d")["torch"] == ["d", "a", "b"]
