"""The packages of PETITELib import each other in one direction only (no import cycle between them)."""
import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "PETITELib"


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(LIBRARY.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path):
    """Every PETITELib module ``path`` imports, at module level or inside functions."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            target = ".".join(part for part in (base, node.module or "") if part)
            if node.module:
                yield target
            else:
                yield from (f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _subpackage(module: str, subpackages) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "PETITELib" and parts[1] in subpackages else ""


def package_graph():
    """{subpackage: subpackages it imports} over PETITELib's subpackages (zoo, engine, peft, ...)."""
    subpackages = {p.name for p in LIBRARY.iterdir() if (p / "__init__.py").is_file()}
    graph = {name: set() for name in subpackages}
    for path in LIBRARY.rglob("*.py"):
        source = _subpackage(_module_name(path), subpackages)
        for target in map(lambda m: _subpackage(m, subpackages), _imported_modules(path)):
            if source and target and target != source:
                graph[source].add(target)
    return graph


def test_the_subpackages_import_each_other_without_a_cycle():
    graph = package_graph()
    assert "engine" in graph["commands"] and "peft" in graph["engine"]  # the scan sees imports at all
    assert "engine" not in graph["zoo"], "PETITELib.zoo must not import PETITELib.engine"
    done, active = set(), []

    def visit(node):
        assert node not in active, "import cycle: " + " -> ".join(active[active.index(node):] + [node])
        if node in done:
            return
        active.append(node)
        for target in sorted(graph[node]):
            visit(target)
        active.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_importing_the_zoo_fresh_loads_no_engine():
    code = ("import sys, PETITELib.zoo, PETITELib.zoo.selection, PETITELib.zoo.manifest; "
            "print(sorted(m for m in sys.modules if m.startswith('PETITELib.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=LIBRARY.parent).stdout
    assert out.strip() == "[]"
