"""The package layers stay acyclic: no two stic modules import each other (counting imports inside
functions too), the codec never imports training, and the captioner and the caption coders share
the models layer instead of importing each other."""

import ast
from pathlib import Path

import stic

SOURCE = Path(stic.__file__).parent


def _imports() -> dict[str, set[str]]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("stic", *path.relative_to(SOURCE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stic"):
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("stic"))
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if _reaches(graph, b, a)})
    assert not cycles, f"import cycles: {cycles}"


def test_package_layers():
    graph = _imports()
    package = lambda module: ".".join(module.split(".")[:2])
    edges = {(package(a), package(b)) for a in graph for b in graph[a]}
    for lower, upper in [("stic.image", "stic.train"), ("stic.caption", "stic.text"), ("stic.text", "stic.caption"),
                         ("stic.models", "stic.text"), ("stic.models", "stic.caption")]:  # fmt: skip
        assert (lower, upper) not in edges, f"{lower} must not import {upper}"
