"""The house rule as code: arrows point down (blueprints → services → domain / gitops / models /
drivers) and no module imports itself back through another.

`check(root, package)` walks every `.py` file under `root`, reads its imports with `ast` (those at
module level and those inside functions alike: a deferred import is still an arrow; only
`if TYPE_CHECKING:` blocks are skipped, as they never run) and returns one sentence per wrong
arrow or cycle. `tests/test_architecture.py` runs it on `relapp/` and on a small fixture tree
that holds one wrong arrow, to prove that it can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

# Layers, lowest first. A module may import its own layer's modules and the layers named for it.
# Keys are module prefixes relative to the package; the longest matching prefix wins.
LAYERS: dict[str, str] = {
    "domain": "domain",
    "exceptions": "base",
    "settings": "base",
    "roles": "base",
    "security": "base",
    "embedded": "base",
    "extensions": "runtime",
    "models": "models",
    "joblog": "runtime",
    "gitops": "gitops",
    "drivers": "drivers",
    "services": "services",
    "jobs": "jobs",
    "auth": "views",
    "errors": "web",
    "templating": "web",
    "blueprints": "views",
    "cli": "app",
    "demo": "app",
    "demo_deploy": "app",
    "run": "app",
    "wsgi": "app",
    "": "app",  # the package itself: create_app
}

ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    "base": {"domain", "base"},
    "runtime": {"domain", "base", "runtime", "models"},
    "models": {"domain", "base", "runtime", "models"},
    "gitops": {"domain", "base", "gitops"},
    "drivers": {"domain", "base", "drivers"},
    "services": {"domain", "base", "runtime", "models", "gitops", "drivers", "services"},
    "jobs": {"domain", "base", "runtime", "models", "gitops", "drivers", "services", "jobs"},
    # Views parse, call a service and render: they never touch models or the session.
    "views": {"domain", "base", "runtime", "services", "web", "views"},
    "web": {"domain", "base", "runtime", "services", "web", "views"},
    "app": {"domain", "base", "runtime", "models", "gitops", "drivers", "services", "jobs",
            "web", "views", "app"},
}

# Third-party roots a layer must not reach at all: the domain is pure.
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {
    "domain": {"flask", "flask_sqlalchemy", "sqlalchemy", "redis", "rq", "subprocess", "git"},
    "base": {"flask"},
    "views": {"sqlalchemy", "flask_sqlalchemy"},
}
# Names a layer must not import even from a module it may use: views never hold the session.
FORBIDDEN_NAMES: dict[str, set[str]] = {"views": {"db", "write_transaction"}}


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, int]]:
    """(imported module name, line) for every import that runs."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            for alias in node.names:
                # `from pkg import name` names a submodule when one exists, else a name in pkg:
                # the caller resolves the pair to the submodule, or to pkg.
                yield f"{target}\0{alias.name}", node.lineno
                if node.level or (node.module or "").split(".")[0]:
                    yield f"\1{alias.name}", node.lineno
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific module of ours that `name` refers to."""
    if "\0" in name:
        package, _, attribute = name.partition("\0")
        if f"{package}.{attribute}" in modules:
            return f"{package}.{attribute}"
        name = package
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def layer_of(module: str, package: str) -> str:
    relative = module[len(package) + 1:] if module != package else ""
    best = ""
    for prefix in LAYERS:
        if prefix and (relative == prefix or relative.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best]


def graph(root: Path, package: str) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Our module → {our imported module: line}, and the problems with third-party imports."""
    modules = _modules(root, package)
    edges: dict[str, dict[str, int]] = {name: {} for name in modules}
    problems = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        layer = layer_of(name, package)
        for imported, line in _imports(tree, name, path.name == "__init__.py"):
            if imported.startswith("\1"):
                if imported[1:] in FORBIDDEN_NAMES.get(layer, set()):
                    problems.append(f"{path}:{line}: {name} ({layer}) imports {imported[1:]}: "
                                    "views call services, which own the session")
                continue
            top = imported.split("\0")[0].split(".")[0]
            target = _resolve(imported, modules) if top == package else None
            if target is None:
                if top in FORBIDDEN_EXTERNAL.get(layer, set()):
                    problems.append(f"{path}:{line}: {name} ({layer}) imports {top}, which the "
                                    f"{layer} layer must not use")
                continue
            if target == name:
                continue
            edges[name].setdefault(target, line)
    return edges, sorted(set(problems))


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _is_ancestor(parent: str, child: str) -> bool:
    return child.startswith(parent + ".")


def check(root: Path, package: str) -> list[str]:
    """Every wrong-way arrow and every cycle under `root`, one sentence each."""
    edges, problems = graph(root, package)
    modules = _modules(root, package)
    for source, targets in edges.items():
        source_layer = layer_of(source, package)
        for target, line in targets.items():
            target_layer = layer_of(target, package)
            if target_layer not in ALLOWED[source_layer]:
                problems.append(f"{modules[source]}:{line}: {source} ({source_layer}) imports "
                                f"{target} ({target_layer}): arrows point down")
    # A package's __init__ importing its own submodules and those importing siblings is not a
    # cycle through the package; drop the implicit parent edges before looking for cycles.
    acyclic_view = {source: {t: ln for t, ln in targets.items() if not _is_ancestor(t, source)}
                    for source, targets in edges.items()}
    for component in _cycles(acyclic_view):
        problems.append("import cycle: " + " → ".join(component))
    return problems
