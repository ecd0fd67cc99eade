"""Execute the book's notebooks once per test session; the notebook tests and the book build share the result."""
import hashlib
import os
import shutil
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = ROOT / "_build" / "executed"


def toc_files() -> list[str]:
    """The book's pages (paths without suffix, relative to the project root), in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def toc_notebooks() -> list[Path]:
    """The notebooks of the book, in reading order."""
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def _digest(path: Path) -> str:
    """A key for a notebook's source: its text and the package's source files."""
    h = hashlib.sha256(path.read_bytes())
    for module in sorted((ROOT / "superpos").rglob("*.py")):
        h.update(module.read_bytes())
    return h.hexdigest()[:16]


def execute(path: Path, *, timeout: int = 900) -> Path:
    """Execute `path` at its defaults in its own folder (as the book does); return the executed copy.

    The copy is kept under `_build/executed/`, keyed on the notebook's and the package's source, so a
    notebook runs once per change whether the notebook test or the book build asks first. A failing
    notebook raises nbclient's CellExecutionError, which names the cell and the error.
    """
    from nbclient import NotebookClient

    out = EXECUTED / f"{path.stem}.{_digest(path)}.ipynb"
    if out.exists():
        return out
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in EXECUTED.glob(f"{path.stem}.*.ipynb"):
        stale.unlink()
    tmp = out.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return out


def staged_book(stage: Path) -> Path:
    """A copy of the book's sources in `stage` whose notebooks are the executed copies (built without executing)."""
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, stage / name)
    for extra in ("references.bib",):
        if (ROOT / extra).exists():
            shutil.copy(ROOT / extra, stage / extra)
    shutil.copytree(ROOT / "nbs", stage / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))
    for notebook in toc_notebooks():
        shutil.copy(execute(notebook), stage / notebook.relative_to(ROOT))
    return stage
