"""Imports run one way: flows -> tasks -> indexops. The core never imports Prefect, `flows` or
`tasks`; its modules import each other without a cycle; no module grows past 500 lines."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import indexops

PACKAGE_DIR = Path(indexops.__file__).resolve().parent
ALL_MODULES = sorted(m.name for m in pkgutil.walk_packages(indexops.__path__, "indexops."))


def _is_cli(name: str) -> bool:
    return name == "indexops.cli" or name.startswith("indexops.cli.")


# The front door (`indexops.cli`, the only exemption) may start flows and tasks; everything else is core.
CORE = [m for m in ALL_MODULES if not _is_cli(m)]

MAX_LINES = 500
# Modules allowed past MAX_LINES, each for a reason (none today):
TOO_LONG_ALLOWED: set[str] = set()


def _path(module: str) -> Path:
    rel = module.split(".")[1:]
    p = PACKAGE_DIR.joinpath(*rel)
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(module: str) -> set[str]:
    """Modules `module` imports when it is imported: top-level statements (and those in top-level
    if/try blocks), not those inside functions or classes, nor under `if TYPE_CHECKING`."""
    tree = ast.parse(_path(module).read_text())
    package = module if _path(module).name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return out


def _graph(modules: list[str]) -> dict[str, set[str]]:
    known = set(modules)
    return {m: {i for i in _module_level_imports(m) if i in known and i != m} for m in modules}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = dfs(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = dfs(m)
            if found:
                return found
    return None


def test_core_modules_do_not_import_prefect():
    code = "import sys\n" + "".join(f"import {m}\n" for m in CORE) + "print(sorted(k for k in sys.modules if k == 'prefect' or k.startswith('prefect.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"core imported Prefect: {out[:300]}"


def test_cli_help_is_prefect_free_and_core_list_is_not_empty():
    assert "indexops.ingest.stages" in CORE and "indexops.ledger.facade" in CORE and "indexops.index.context" in CORE
    assert not any(_is_cli(m) for m in CORE) and "indexops.cli.common" in ALL_MODULES
    code = "import sys, indexops.cli; print('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_core_never_imports_flows_or_tasks():
    """Anywhere in a core module, functions included: only the CLI starts flows."""
    offenders = []
    for m in CORE:
        for node in ast.walk(ast.parse(_path(m).read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{m} imports {n}" for n in names if n.split(".")[0] in ("flows", "tasks")]
    assert not offenders, offenders


def test_no_import_cycle_among_indexops_modules():
    graph = _graph(ALL_MODULES)
    assert sum(len(v) for v in graph.values()) > 50  # the graph was read (a parser that sees nothing passes vacuously)
    assert graph["indexops.ingest.stages"] >= {"indexops.index.context", "indexops.ingest.plan"}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_embedding_backends_do_not_import_the_factory():
    """Only `embed.factory` picks backends: a backend that imported it would close the old circle."""
    graph = _graph(ALL_MODULES)
    for backend in ("hashing", "torch", "onnx", "openvino", "protocol", "cpu"):
        assert "indexops.embed.factory" not in graph[f"indexops.embed.{backend}"], backend
        assert "indexops.embed.factory" not in _all_imports(f"indexops.embed.{backend}"), backend


def _all_imports(module: str) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_module_exceeds_500_lines():
    too_long = {}
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = p.relative_to(PACKAGE_DIR.parent).as_posix()
        n = len(p.read_text().splitlines())
        if n > MAX_LINES and rel not in TOO_LONG_ALLOWED:
            too_long[rel] = n
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
    stale = {rel for rel in TOO_LONG_ALLOWED if len((PACKAGE_DIR.parent / rel).read_text().splitlines()) <= MAX_LINES}
    assert not stale, f"allow-listed but no longer over {MAX_LINES} lines (remove them from TOO_LONG_ALLOWED): {stale}"


def _is_ledger(name: str) -> bool:
    return name == "indexops.ledger" or name.startswith("indexops.ledger.")


def test_only_the_ledger_touches_its_tables():
    """SQL stays behind the ledger's query methods: no other core module imports SQLAlchemy, the
    schema or a table (re-exported by `indexops.ledger` for tests), or reaches for `ledger.engine`."""
    from indexops.ledger import schema

    tables = set(schema.metadata.tables) | {"metadata"}
    offenders = []
    for m in ALL_MODULES:
        if _is_ledger(m):
            continue
        sql_source = m == "indexops.ingest.sql_table"  # reads the user's table with SQLAlchemy, never the ledger's
        for node in ast.walk(ast.parse(_path(m).read_text())):
            if sql_source and (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy"
                               or isinstance(node, ast.Import) and all(a.name.split(".")[0] == "sqlalchemy" for a in node.names)):
                continue
            if isinstance(node, ast.Import):
                offenders += [f"{m} imports {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy" or a.name == "indexops.ledger.schema"]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mod = node.module or ""
                if mod.split(".")[0] == "sqlalchemy" or mod == "indexops.ledger.schema":
                    offenders.append(f"{m} imports {mod}")
                elif mod == "indexops.ledger":
                    offenders += [f"{m} imports the table {a.name}" for a in node.names if a.name in tables]
            elif isinstance(node, ast.Attribute) and node.attr == "engine" and "ledger" in ast.unparse(node.value).lower():
                offenders.append(f"{m} uses {ast.unparse(node)}")
    assert not offenders, offenders
    assert {"documents", "query_sets", "locks"} <= tables  # the table list was read

