"""Write superpos/__init__.py (the lazy top-level API) and the subpackage __init__.py files from the modules' __all__.

Run after adding or renaming a public name: `python .ci/make_api.py`; tests/test_architecture.py checks that
running it would change nothing.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent; PKG = ROOT / "superpos"
ORDER = ["core", "responses", "stimuli", "networks", "directions", "measures", "analyses", "brain", "disentangle", "geometry", "gallery", "book", "sweep", "cli"]
DOCS = {
    "stimuli": "Stimulus sets: natural-image patches, procedural images and image datasets, labelled by stimulus id.",
    "networks": "Vision models and their activations (stimulus x unit per layer).",
    "directions": "Direction finders in activation space (scikit-learn estimators) and the toy model of superposition.",
    "measures": "Image similarity and the interpretability measures (II, in-silico 2-AFC, MIS), and human psychophysics data.",
    "analyses": "Comparison statistics shared by the CNN and brain analyses: are directions more interpretable than units?",
    "brain": "Brain recordings: NWB layouts, synthetic files with planted features, DANDI streaming, reliability.",
    "disentangle": "Disentanglement: dSprites and natural sprite transitions, SlowVAE, and the disentanglement metrics.",
    "geometry": "Geometry of direction sets (sphere, Grassmannian) and of representations, with Geomstats.",
    "sweep": "Recorded runs of analysis notebooks and sweeps of them on Dask distributed (local, any scheduler, SLURM/PBS).",
}

def all_names(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [e.value for e in node.value.elts]
    return []

modules = {}
for path in sorted(PKG.rglob("*.py")):
    rel = path.relative_to(PKG).with_suffix("")
    if path.name.startswith("_") or rel.parts[0] not in ORDER:
        continue
    modules[".".join(rel.parts)] = all_names(path)

seen = {}
for mod, names in modules.items():
    for n in names:
        seen.setdefault(n, []).append(mod)
skip_modules = {"cli"}
attrs = {}
for mod in sorted(modules, key=lambda m: (ORDER.index(m.split(".")[0]), m)):
    if mod.split(".")[0] in skip_modules:
        continue
    # constants stay in their modules; so do names of a subpackage (`sweep`) and Sphinx's extension hook `setup`
    keep = [n for n in modules[mod] if len(seen[n]) == 1 and not n.isupper() and n not in (*ORDER, "setup")]
    if keep:
        attrs[mod] = keep
clashes = {n: m for n, m in seen.items() if len(m) > 1}

subpackages = [p for p in ORDER if (PKG / p).is_dir()]
lines = ['"""superpos: interpretable directions in neural networks and brains, automated interpretability, SlowVAE.',
         '',
         'The main public names are available at the top level and load lazily on first use, so that',
         '`import superpos` is fast: `import superpos as sp; sp.extract(...); sp.mis(...); sp.KMeansDirections()`.',
         'Constants, and names that two modules share (' + ", ".join(f"`{n}`" for n in sorted(clashes)) + ') are used from their modules.',
         '"""',
         '__version__ = "0.1.0"', '',
         'import lazy_loader as _lazy', '',
         '_SUBMODULES = ' + repr(["core", "responses", "gallery", "book", "cli"] + subpackages), '',
         '_ATTRIBUTES = {']
for mod, names in attrs.items():
    lines.append(f'    "{mod}": {names!r},')
lines += ['}', '',
          '__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=_SUBMODULES, submod_attrs=_ATTRIBUTES)', '']
(PKG / "__init__.py").write_text("\n".join(lines))
for sub in subpackages:
    mods = sorted(m.split(".")[1] for m in modules if m.startswith(sub + "."))
    text = (f'"""{DOCS.get(sub, sub)}"""\n'
            'import lazy_loader as _lazy\n\n'
            f'__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules={mods!r})\n')
    (PKG / sub / "__init__.py").write_text(text)
if __name__ == "__main__":
    print("names that two modules share, left off the top level:", sorted(clashes))
    print(sum(len(v) for v in attrs.values()), "top-level names")
