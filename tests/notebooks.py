"""The book's notebooks for the tests: the notebook tests and the book build share superpos.book's executed copies."""
from pathlib import Path

from superpos.book import ExecutedPage, execute_notebook, package_digest, toc_files, toc_notebooks

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = ROOT / "_build" / "executed"
TIMEOUT = 300   # seconds per cell, as `superpos book`
PACKAGE = package_digest()   # once per test session, as one book build does


def execute(path: Path) -> ExecutedPage:
    """Execute `path` at its defaults in its own folder (as the book does), or reuse its executed copy."""
    page = execute_notebook(path, cache=EXECUTED, timeout=TIMEOUT, package=PACKAGE)
    print(f"{path.name}: " + ("executed copy reused" if page.cached else f"executed in {page.seconds:.1f} s"))
    return page


__all__ = ["ROOT", "EXECUTED", "TIMEOUT", "execute", "toc_files", "toc_notebooks"]
