"""The library's shape: packages stacked in layers, arrows only pointing down, stages that
never import each other, and one package that knows Airflow (docs/architecture.md draws it)."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "recsys_tasks"
# bottom first; a module may import its own layer and the layers below it
LAYERS = [
    {"recsys_tasks", "clock", "errors", "interrupt", "redact", "metrics", "reader"},
    {"config"},
    {"db"},
    {"storage"},
    {"data"},
    {"scoring"},
    {"learning"},
    {"pipeline"},
    {"airflow_adapter"},
    {"ops", "__main__"},
]
STAGES = {"ingest", "learn", "decide", "serve", "observe", "watch"}


def layer_of(module: str) -> int:
    """`recsys_tasks.db.publish` -> the layer of `db`."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "recsys_tasks"
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{module}: its package {top!r} is in no layer; add it to LAYERS and docs/architecture.md")


def module_name(path: Path) -> str:
    relative = path.relative_to(LIBRARY.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module imported anywhere in the file (inside functions too), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_every_import_points_to_the_same_layer_or_below():
    upward = []
    for path in library_files():
        source = module_name(path)
        for line, target in imports(path):
            if target.startswith("recsys_tasks.") and target.split(".")[1] in {m for layer in LAYERS for m in layer}:
                if layer_of(target) > layer_of(source):
                    upward.append(f"{path.relative_to(LIBRARY.parent)}:{line} imports {target}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_stages_never_import_each_other():
    crossing = []
    for stage in STAGES:
        path = LIBRARY / "pipeline" / f"{stage}.py"
        for line, target in imports(path):
            parts = target.split(".")
            if parts[:2] == ["recsys_tasks", "pipeline"] and len(parts) > 2 and parts[2] in STAGES - {stage}:
                crossing.append(f"pipeline/{stage}.py:{line} imports {target}")
    assert not crossing, "stages are siblings; share code through pipeline/context.py or inputs.py:\n" + "\n".join(crossing)


def test_only_the_adapter_imports_airflow():
    found = [
        f"{path.relative_to(LIBRARY.parent)}:{line} imports {target}"
        for path in library_files() if path.stem != "airflow_adapter"
        for line, target in imports(path) if target == "airflow" or target.startswith("airflow.")
    ]
    assert not found, "Airflow is known to recsys_tasks/airflow_adapter.py only:\n" + "\n".join(found)


def test_the_tree_reads_as_a_table_of_contents():
    """Few modules at the top, none over 400 lines, every package saying what it owns."""
    top = sorted(p.name for p in LIBRARY.glob("*.py"))
    assert len(top) <= 10, top
    long = {str(p.relative_to(LIBRARY)): n for p in library_files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
    for package in (p for p in LIBRARY.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), f"{package.name}/__init__.py says nothing"
    assert {layer_of(f"recsys_tasks.{p.name}") for p in LIBRARY.iterdir() if (p / "__init__.py").exists()}


def test_the_architecture_page_lists_every_module_and_package():
    page = (LIBRARY.parent / "docs" / "architecture.md").read_text()
    missing = [str(p.relative_to(LIBRARY)) for p in library_files() if p.name != "__init__.py" and p.name not in page]
    missing += [f"{p.name}/" for p in LIBRARY.iterdir() if (p / "__init__.py").exists() and f"{p.name}/" not in page]
    assert not missing, f"docs/architecture.md does not name: {missing}"
