"""superpos/ must be exactly what nbdev_export writes from nbs/."""
import filecmp
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_nbdev_export_leaves_package_unchanged(tmp_path):
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs")
    shutil.copy(ROOT / "settings.ini", tmp_path)
    (tmp_path / "superpos").mkdir()
    shutil.copy(ROOT / "superpos" / "__init__.py", tmp_path / "superpos")
    subprocess.run(["nbdev_export"], cwd=tmp_path, check=True)
    exported = sorted(p.name for p in (tmp_path / "superpos").glob("*.py"))
    committed = sorted(p.name for p in (ROOT / "superpos").glob("*.py"))
    assert exported == committed, "run nbdev_export: modules differ from notebooks"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "superpos", ROOT / "superpos", exported, shallow=False)
    assert not mismatch and not errors, f"run nbdev_export and commit: {mismatch + errors} differ from nbs/"


def test_every_notebook_is_in_the_book():
    toc = (ROOT / "_toc.yml").read_text()
    missing = [p.stem for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_") and f"nbs/{p.stem}" not in toc]
    assert not missing, f"notebooks not listed in _toc.yml: {missing}"
