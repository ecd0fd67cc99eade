"""The package's shape: layers that import downwards only, whole classes, exact __all__, short modules, a lazy top level."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "superpos"
# reading order of the pipeline; a module may import from its own layer and the layers below it
LAYERS = {"core": 0, "responses": 1, "stimuli": 2, "networks": 3, "directions": 4, "measures": 5,
          "brain": 6, "disentangle": 6, "geometry": 6, "analyses": 7, "gallery": 8, "sweep": 8, "book": 9, "cli": 10}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if not p.name.startswith("_") and "__pycache__" not in p.parts)


def name_of(path: Path) -> str:
    return ".".join(("superpos", *path.relative_to(PACKAGE).with_suffix("").parts))


def layer_of(module: str) -> str:
    return module.split(".")[1]


def imports(path: Path):
    """(module, names) of every `from superpos... import names` in the module, relative imports resolved."""
    package = name_of(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("superpos"):
                yield module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("superpos."):
                    yield alias.name, []


def test_every_module_is_in_a_known_layer():
    unknown = [name_of(p) for p in MODULES if layer_of(name_of(p)) not in LAYERS]
    assert not unknown, f"add these to the layer map (and CONTRIBUTING.md): {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_dependencies_point_down(path):
    here = layer_of(name_of(path))
    for module, _ in imports(path):
        if module == "superpos":
            continue
        there = layer_of(module)
        same_parallel_chapter = here == there
        assert same_parallel_chapter or LAYERS[there] < LAYERS[here], f"{name_of(path)} imports {module} (a layer above or beside it)"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_no_private_names_across_modules(path):
    private = [(m, n) for m, names in imports(path) for n in names if n.startswith("_") and m != "superpos"]
    assert not private, f"{name_of(path)} imports private names {private}: make them public or move them"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_classes_are_defined_whole(path):
    tree = ast.parse(path.read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    attached = [ast.unparse(t) for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in classes]
    assert not attached, f"{name_of(path)} attaches {attached} after the class definition: define them in the class"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_module_is_one_topic_of_modest_size(path):
    n_lines = len(path.read_text().splitlines())
    assert n_lines <= 450, f"{name_of(path)} has {n_lines} lines: split it into topics"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_all_lists_exactly_the_public_names(path):
    tree = ast.parse(path.read_text())
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    public = {n for n in defined if not n.startswith("_")}
    module = importlib.import_module(name_of(path))
    assert set(module.__all__) == public, f"{name_of(path)}: __all__ differs from its public names by {set(module.__all__) ^ public}"


def test_import_superpos_is_lazy():
    code = "import sys, superpos; print(sorted(m for m in ('torch', 'xarray', 'sklearn', 'superpos.core') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import superpos loaded {out.strip()}: keep the top level lazy"


def test_top_level_names_resolve_to_their_modules():
    import superpos
    assert {"extract", "mis", "KMeansDirections", "as_responses"} <= set(superpos.__all__)
    for module, names in superpos._ATTRIBUTES.items():
        mod = importlib.import_module(f"superpos.{module}")
        for name in names:
            assert getattr(superpos, name) is getattr(mod, name), f"superpos.{name} is not superpos.{module}.{name}"
    missing = [n for n in ("directions", "measures", "geometry") if not hasattr(superpos, n)]
    assert not missing, f"subpackages not reachable from the top level: {missing}"


def test_lazy_api_files_are_current(tmp_path):
    """`.ci/make_api.py` would leave the __init__ files as committed (rerun it after changing a public name)."""
    inits = {p: p.read_text() for p in PACKAGE.rglob("__init__.py")}
    try:
        subprocess.run([sys.executable, str(ROOT / ".ci" / "make_api.py")], check=True, capture_output=True)
        changed = [str(p.relative_to(ROOT)) for p, text in inits.items() if p.read_text() != text]
    finally:
        for p, text in inits.items():
            p.write_text(text)
    assert not changed, f"run python .ci/make_api.py and commit: {changed} are out of date"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_one_seed_name_per_module(path):
    """`random_state` in the modules of scikit-learn estimators, `seed` elsewhere: never both in one module."""
    names = {a.arg for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             for a in node.args.args + node.args.kwonlyargs if a.arg in ("seed", "random_state")}
    assert len(names) < 2, f"{name_of(path)} takes both `seed` and `random_state`: use one"
