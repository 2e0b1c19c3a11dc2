"""The repository's layering, read from the source with ast (nothing is imported):

  - no file edits sys.path or loads a module by its file path: packages are imported as installed, scripts and
    benchmarks run as `python -m package.module`;
  - eval imports nothing of lumiere_pl or lumiere_research; lumiere_pl nothing of lumiere_research, bench or tests;
    lumiere_research nothing of bench or tests; bench nothing of tests;
  - lumiere_pl's import graph has no cycle: between modules, and between its subpackages and top-level modules
    (lumiere_pl.models, lumiere_pl.config, ...). Every import counts, inside functions too: a deferred import is still
    a dependency. An edge goes to the module named (`from lumiere_pl.models.stunet import STUNet`: models.stunet;
    `from lumiere_pl.models import build_model`: the package's __init__). Python running a package's __init__
    before its submodules is not an edge, so an __init__ re-exporting its submodules makes no cycle;
  - every absolute import resolves, and every experiment file that code, the Makefile or the docs name exists
    (the second reads the files' text; the first asks importlib where a module is, without importing it).
KNOWN_CYCLES and KNOWN_BACK_EDGES name the cycles that exist; each must still exist (remove it once broken).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
TREES = ("lumiere_pl", "eval", "lumiere_research", "bench", "tests")
TEST_MODULES = {p.stem for p in (ROOT / "tests").glob("*.py")}          # conftest, _eval_helpers, test_x, ...

# (importer, what it may not import: top-level names)
FORBIDDEN = [("eval", {"lumiere_pl", "lumiere_research"}),
             ("lumiere_pl", {"lumiere_research", "bench", "tests"} | TEST_MODULES),
             ("lumiere_research", {"bench", "tests"} | TEST_MODULES),
             ("bench", {"tests"} | TEST_MODULES)]

KNOWN_CYCLES: List[Set[str]] = []
KNOWN_BACK_EDGES: Set[Tuple[str, str]] = set()

# ---------------------------------------------------------------------------------------------------------------------
# reading the source


def sources(tree: str) -> Iterator[Tuple[str, Path, ast.Module]]:
    """(dotted module name, path, syntax tree) of every .py under ROOT/tree."""
    for path in sorted((ROOT / tree).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path, ast.parse(path.read_text(), str(path))


def imports(module: str, path: Path, tree: ast.Module) -> Iterator[Tuple[int, str, str | None]]:
    """(line, absolute module, imported name or None) of every import statement, wherever it stands."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                        # relative: from the module's own package up
                up = package[:len(package) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                yield node.lineno, base, alias.name


def _is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
            and node.value.id == "sys")


def path_edits(tree: ast.Module) -> Iterator[Tuple[int, str]]:
    """(line, what) of each change to sys.path, and each module loaded from a file path instead of by its name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if isinstance(node.func, ast.Attribute) and _is_sys_path(node.func.value):
                if called not in ("index", "count", "copy"):
                    yield node.lineno, f"sys.path.{called}(...)"
            elif called in ("addsitedir", "spec_from_file_location", "run_path", "SourceFileLoader"):
                yield node.lineno, f"{called}(...)"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if _is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value)):
                    yield node.lineno, "sys.path assigned"
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            yield node.lineno, "from sys import path"


# ---------------------------------------------------------------------------------------------------------------------
# lumiere_pl's import graph


def module_graph() -> Dict[str, Set[str]]:
    """lumiere_pl module -> the lumiere_pl modules it imports (see the module docstring for what an edge is)."""
    found = {m: (p, t) for m, p, t in sources("lumiere_pl")}
    graph: Dict[str, Set[str]] = {m: set() for m in found}
    for m, (path, tree) in found.items():
        for _, name, what in imports(m, path, tree):
            if name.split(".")[0] != "lumiere_pl":
                continue
            target = f"{name}.{what}" if what and f"{name}.{what}" in found else name
            if target not in found:
                raise AssertionError(f"{path}: imports {target}, which is not a module of lumiere_pl")
            if target != m:
                graph[m].add(target)
    return graph


def unit(module: str) -> str:
    """lumiere_pl.models.stunet -> lumiere_pl.models; lumiere_pl.config -> lumiere_pl.config."""
    return ".".join(module.split(".")[:2])


def unit_graph(graph: Dict[str, Set[str]], leave_out: Set[Tuple[str, str]] = frozenset()) -> Dict[str, Set[str]]:
    units: Dict[str, Set[str]] = {unit(m): set() for m in graph}
    for m, targets in graph.items():
        units[unit(m)] |= {unit(t) for t in targets if unit(t) != unit(m) and (m, t) not in leave_out}
    return units


def cycles(graph: Dict[str, Set[str]]) -> List[Set[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[Set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                    found.append(component)
    return found


def one_cycle(component: Set[str], graph: Dict[str, Set[str]]) -> List[str]:
    """A shortest cycle through the component's first node: [a, b, ..., a] (breadth-first)."""
    start = min(component)
    came_from: Dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not a cycle")


# ---------------------------------------------------------------------------------------------------------------------
# the tests


def test_no_file_edits_sys_path_or_loads_a_module_by_its_path():
    found = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for tree in TREES for _, path, syntax in sources(tree) for line, what in path_edits(syntax)]
    assert not found, "run scripts as `python -m package.module` and import packages as installed:\n" + "\n".join(found)


def test_each_package_imports_only_the_layers_below_it():
    found = []
    for tree, forbidden in FORBIDDEN:
        for module, path, syntax in sources(tree):
            for line, name, _ in imports(module, path, syntax):
                if name.split(".")[0] in forbidden:
                    found.append(f"{path.relative_to(ROOT)}:{line}: imports {name} ({tree} may not import "
                                 f"{', '.join(sorted(forbidden & {name.split('.')[0]}))})")
    assert not found, "\n".join(found)


def test_lumiere_pl_modules_import_each_other_without_a_cycle():
    graph = module_graph()
    found = cycles(graph)
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles in lumiere_pl, one path each:\n" + "\n".join(
        " -> ".join(one_cycle(c, graph)) for c in new)
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"no longer a cycle, remove it from KNOWN_CYCLES: {gone}"


def test_lumiere_pl_subpackages_import_each_other_without_a_cycle():
    graph = module_graph()
    units = unit_graph(graph, KNOWN_BACK_EDGES)
    found = cycles(units)
    lines = []
    for c in found:
        path = one_cycle(c, units)
        lines.append(" -> ".join(path) + ", through " + "; ".join(
            f"{a} -> {b}" for u, v in zip(path, path[1:]) for a in sorted(graph) for b in sorted(graph[a])
            if (unit(a), unit(b)) == (u, v) and (a, b) not in KNOWN_BACK_EDGES))
    assert not found, "import cycles between lumiere_pl's subpackages and modules:\n" + "\n".join(lines)
    gone = [e for e in KNOWN_BACK_EDGES if e[1] not in graph.get(e[0], set())]
    assert not gone, f"no longer imported, remove it from KNOWN_BACK_EDGES: {gone}"


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    graph = {"a": {"b", "d"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"b"}}
    assert cycles(graph) == [{"a", "b", "c", "d", "e"}]
    assert one_cycle({"a", "b", "c", "d", "e"}, graph) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert unit_graph({"lumiere_pl.models.x": {"lumiere_pl.config"}, "lumiere_pl.config": set()}) == \
        {"lumiere_pl.models": {"lumiere_pl.config"}, "lumiere_pl.config": set()}


def test_every_experiment_file_named_by_code_and_docs_exists():
    """Configs named by the benchmarks, research tools, package, Makefile and docs (as a path, or as
    ROOT / "experiments" / ... in code) exist: a renamed recipe breaks no command quietly."""
    import re

    named = set()
    files = [p for tree in ("lumiere_pl", "lumiere_research", "bench") for p in (ROOT / tree).rglob("*.py")]
    files += [ROOT / "Makefile", ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for path in files:
        text = path.read_text()
        named |= {m for m in re.findall(r"experiments/[\w/]+\.yaml", text)}
        named |= {"/".join(re.findall(r'"([\w.]+)"', m)) for m in
                  re.findall(r'"experiments"(?:\s*/\s*"[\w.]+")+', text)}
    placeholder = re.compile(r"/[A-Z_]+\.yaml$")                                   # experiments/X.yaml in usage lines
    missing = sorted(n for n in named if not placeholder.search(n) and not (ROOT / n).is_file())
    assert named and not missing, missing


# imported only where present: bench_stunet's peer U-Nets (docs/BENCHMARKS.md)
OPTIONAL_IMPORTS = {"denoising_diffusion_pytorch", "lumiere_pytorch"}


def test_every_absolute_import_resolves():
    """Each `import X` / `from X import ...` names a module this environment has (a module moved into a package and
    still imported by its bare name fails only when that code path runs: bench_diffusers did)."""
    import importlib.util

    unknown = []
    for tree in ("lumiere_pl", "eval", "lumiere_research", "bench"):
        for name, path, module in sources(tree):
            for node in ast.walk(module):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                unknown += [f"{path.relative_to(ROOT)}:{node.lineno} {top}" for top in tops
                            if top not in OPTIONAL_IMPORTS and importlib.util.find_spec(top) is None]
    assert not unknown, unknown
