"""superpos/ must be exactly what nbdev_export writes from nbs/."""
import filecmp
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "superpos"


def modules(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_nbdev_export_leaves_package_unchanged(tmp_path):
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs")
    shutil.copy(ROOT / "settings.ini", tmp_path)
    for init in PACKAGE.rglob("__init__.py*"):   # package markers and the lazy top-level API are not generated
        target = tmp_path / "superpos" / init.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(init, target)
    subprocess.run(["nbdev_export"], cwd=tmp_path, check=True)
    exported, committed = modules(tmp_path / "superpos"), modules(PACKAGE)
    assert exported == committed, "run nbdev_export: modules differ from notebooks"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "superpos", PACKAGE, exported, shallow=False)
    assert not mismatch and not errors, f"run nbdev_export and commit: {mismatch + errors} differ from nbs/"


def test_every_notebook_is_in_the_book():
    toc = (ROOT / "_toc.yml").read_text()
    missing = [p.stem for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_") and f"nbs/{p.stem}" not in toc]
    assert not missing, f"notebooks not listed in _toc.yml: {missing}"
