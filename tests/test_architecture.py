"""The package's shape, held as tests: no import cycles, layers that point one way, small modules, and chapter
sources that only set parameters, call the library and show what it returns."""

import ast
import re
from pathlib import Path

import pytest

from sae_transfer.passes.cache import PACKAGE_DIR, _imports, module_closure

MODULES = sorted(
    "sae_transfer." + ".".join(p.relative_to(PACKAGE_DIR).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE_DIR.rglob("*.py"))
NOTEBOOKS = sorted((PACKAGE_DIR.parents[1] / "notebooks").glob("*.md"))


def _file(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    return PACKAGE_DIR / rel.with_suffix(".py") if (PACKAGE_DIR / rel.with_suffix(".py")).exists() \
        else PACKAGE_DIR / rel / "__init__.py"


def _graph() -> dict[str, set[str]]:
    """Module -> modules of the package it imports (a package's ``__init__`` counts as the package)."""
    return {m: {i for i in _imports(m, _file(m)) if i != m} for m in MODULES}


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, ()):
            if n not in graph:
                continue
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n] if n in path else path + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"


#: The layers, bottom first: a module imports only from its own folder and the folders before it. The package's
#: top-level modules (``cli``, ``__main__``) sit above everything.
LAYERS = ("core", "zoo", "models", "data", "passes", "methods", "check", "atlas", "studies", "book")


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 2 and not (PACKAGE_DIR / parts[1]).is_dir():
        return len(LAYERS)  # cli, __main__
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)


def test_every_module_has_a_layer():
    folders = {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS), f"folders and LAYERS differ: {folders ^ set(LAYERS)}"
    top = sorted(p.stem for p in PACKAGE_DIR.glob("*.py"))
    assert top == ["__init__", "__main__", "cli"], f"modules outside the layer folders: {top}"


def test_layers_point_one_way():
    upward = [(m, n) for m, deps in _graph().items() for n in deps if _layer(n) > _layer(m)]
    assert upward == [], f"imports that reach up a layer: {upward}"


def _study(module: str) -> str | None:
    """The study folder a module sits in; None outside ``studies/`` and for modules every study shares there."""
    parts = module.split(".")
    in_folder = len(parts) > 2 and parts[1] == "studies" and (PACKAGE_DIR / "studies" / parts[2]).is_dir()
    return parts[2] if in_folder else None


def test_no_study_imports_another_study():
    across = [(m, n) for m, deps in _graph().items() for n in deps
              if _study(m) and _study(n) and _study(m) != _study(n)]
    assert across == [], f"a study imports another study: {across}"


def test_the_book_never_needs_the_check_command():
    assert [(m, n) for m, deps in _graph().items() if m.startswith("sae_transfer.book") for n in deps
            if n.startswith("sae_transfer.check")] == []


def test_package_imports_sit_at_the_top_of_files():
    """Function-level imports of the package hide dependencies (and once hid a cycle)."""
    late = []
    for m in MODULES:
        tree = ast.parse(_file(m).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                late += [(m, node.name) for n in ast.walk(node)
                         if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("sae_transfer"))]
    assert late == []


@pytest.mark.parametrize("module", MODULES)
def test_modules_stay_small(module):
    assert len(_file(module).read_text().splitlines()) <= 400


def _code_cells(path: Path) -> list[tuple[str, str]]:
    """(tags line, body) of every code cell of a MyST notebook."""
    return [(m.group(1) or "", m.group(2)) for m in
            re.finditer(r"```\{code-cell\} ipython3\n(:tags: \[.*?\]\n)?(.*?)```", path.read_text(), re.S)]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapters_only_read(notebook):
    cells = [(tags, body) for tags, body in _code_cells(notebook) if "parameters" not in tags]
    lines = [line for _, body in cells for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 40, f"{notebook.name}: {len(lines)} code lines outside the parameters cell"
    loops = [type(n).__name__ for _, body in cells for n in ast.walk(ast.parse(body))
             if isinstance(n, (ast.For, ast.While, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp))]
    assert loops == [], f"{notebook.name}: loops belong in the library: {loops}"
    assert not any(".iloc" in body or ".loc[" in body for _, body in cells)
    # the one call that measures stays visible; bookkeeping (rep.*) never shows on the page
    for tags, body in cells:
        if "rep." in body and "rep = Report" not in body:
            assert "remove-cell" in tags or "remove-input" in tags, f"{notebook.name}: bookkeeping shown:\n{body}"


def test_measurement_code_fingerprint_follows_imports():
    closure = module_closure("sae_transfer.studies.residuals.measure")
    assert {"sae_transfer.studies.residuals.measure", "sae_transfer.passes.accumulators", "sae_transfer.passes.stream",
            "sae_transfer.passes.cache", "sae_transfer.models.load", "sae_transfer.core.memory"} <= set(closure)
    assert not any(m.startswith(("sae_transfer.book", "sae_transfer.studies.residuals.figures")) for m in closure)
