"""The layout is the architecture: no import circles, and lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT


def imports_of(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` (dotted name) and what it imports when it runs, at any depth.

    Imports under ``if TYPE_CHECKING:`` are for type checkers only, and left out.
    """
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = set()
        for node in run_time_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                graph[module].update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = resolve(module, path, node)
                graph[module].add(base)
                graph[module].update(f"{base}.{alias.name}" for alias in node.names)
    return graph


def run_time_nodes(tree: ast.AST) -> list[ast.AST]:
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        nodes.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join([*package, node.module] if node.module else package)


def project_graph() -> dict[str, set[str]]:
    graph = imports_of("core") | imports_of("importers")
    return {module: {name for name in names if name in graph} for module, names in graph.items()}


def test_nothing_under_core_or_importers_imports_config() -> None:
    offenders = {
        module: sorted(name for name in names if name == "config" or name.startswith("config."))
        for module, names in (imports_of("core") | imports_of("importers")).items()
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_core_never_imports_the_importers() -> None:
    offenders = {
        module: sorted(name for name in names if name.split(".")[0] == "importers")
        for module, names in imports_of("core").items()
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_http_get_takes_its_limits_from_its_caller_not_from_settings() -> None:
    offenders = {
        module: sorted(name for name in names if name.split(".")[0] == "django")
        for module, names in imports_of("core/http").items()
    }
    assert offenders  # the package is there to check
    assert {module: names for module, names in offenders.items() if names} == {}


@pytest.mark.parametrize("package", ["core", "importers"])
def test_there_is_no_import_circle(package: str) -> None:
    graph = project_graph()
    circles = []
    for start in (module for module in graph if module.split(".")[0] == package):
        path, seen = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                seen.discard(path.pop())
            elif following == start:
                circles.append(" -> ".join([*path, start]))
            elif following not in seen and following > start:  # each circle found once, from its least module
                path.append(following)
                seen.add(following)
                stack.append(iter(sorted(graph[following])))
    assert circles == []


COMMANDS = "importers.management.commands"
# Django's own commands fit in a screenful or three; a longer one holds steps that belong in a module.
MAX_COMMAND_LINES = 350
MAX_PRODUCT_LINES = 450


def test_no_command_imports_another_command() -> None:
    graph = imports_of("importers")
    offenders = {
        module: sorted(name for name in names if name.startswith(f"{COMMANDS}.") and name != module)
        for module, names in graph.items()
        if module.startswith(f"{COMMANDS}.")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_each_command_reads_in_a_few_screens() -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / COMMANDS.replace(".", "/")).glob("*.py")
    }
    assert {path: lines for path, lines in lengths.items() if lines > MAX_COMMAND_LINES} == {}


@pytest.mark.parametrize("package", ["importers", "core/http"])
def test_no_module_grows_past_its_job(package: str) -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    assert {path: lines for path, lines in lengths.items() if lines > MAX_PRODUCT_LINES} == {}
