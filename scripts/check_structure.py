"""Fail on import cycles between project modules, imports against the arrows between rooms,
private names imported across modules, and modules past the size limit. Part of `make check`.

Every import counts, including those inside functions: a function-level import is a cycle
in disguise (STYLE.md 14). Imports under `if TYPE_CHECKING:` (annotations only) do not.
Migrations, tests and bench are not project modules here.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "config", "threads", "sessions_app", "handoffs", "tasks", "console")
SKIP_PARTS = {"migrations", "__pycache__"}
MAX_LINES = 450
# The rooms, lowest first: a room imports only rooms at or below its own level.
# console (the dashboard and /metrics) reads every room below it and is imported by config only.
LEVELS = {
    "common": 0,
    "threads": 1,
    "sessions_app": 2,
    "handoffs": 3,
    "tasks": 4,
    "console": 4,
    "config": 5,
}
# The exceptions, each a module any room may import: threads asks about sessions through
# one selector; the Celery app and the environment readers are leaves every room may use.
OPEN_MODULES = {"sessions_app.selectors", "config.celery", "config.env"}
# Packages inside a room that only some of its modules may import: threads.portability (export
# and import) sits on top of threads' storage and conversation, under its API and commands.
INNER_ROOMS = {"threads.portability": ("threads.portability", "threads.api", "threads.management")}


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if SKIP_PARTS & set(path.relative_to(ROOT).parts):
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (a module, or the package that holds a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]):
    """Yield (line, target module, imported names) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name, modules)
                if target:
                    yield node.lineno, target, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:  # `from package import module`
                    yield node.lineno, full, []
                else:
                    target = resolve(base, modules)
                    if target:
                        yield node.lineno, target, [alias.name]


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(child, ast.If)
                and isinstance(child.test, ast.Name)
                and child.test.id == "TYPE_CHECKING"
            ):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def against_the_arrows(module: str, target: str) -> bool:
    if target in OPEN_MODULES:
        return False
    for room, allowed in INNER_ROOMS.items():
        inside = target == room or is_ancestor(room, target)
        if inside and not any(module == a or is_ancestor(a, module) for a in allowed):
            return True
    return LEVELS[target.split(".")[0]] > LEVELS[module.split(".")[0]]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
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
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def is_ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def main() -> int:
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems: list[str] = []
    for module, path in sorted(modules.items()):
        rel = path.relative_to(ROOT)
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            problems.append(f"{rel}: {lines} lines (limit {MAX_LINES})")
        for lineno, target, names in imports_of(module, path, modules):
            if target == module:
                continue
            # A package's __init__ importing its own submodules (or a submodule importing
            # its package) is how Python packages work, not a cycle between rooms.
            if not (is_ancestor(module, target) or is_ancestor(target, module)):
                graph[module].add(target)
            if against_the_arrows(module, target):
                problems.append(f"{rel}:{lineno}: imports {target} (a room above)")
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    problems.append(f"{rel}:{lineno}: imports private {name!r} from {target}")
    for component in find_cycles(graph):
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
        problems.append("import cycle: " + "; ".join(edges))
    problems = list(dict.fromkeys(problems))  # one line per import statement
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} structure problem(s)")
        return 1
    print(f"structure ok: {len(modules)} modules; no cycles, no imports against the arrows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
