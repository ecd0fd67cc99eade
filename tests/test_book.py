"""The book: every notebook executes at its defaults and Sphinx builds it with warnings as errors."""
from pathlib import Path

import nbformat
import pytest
import yaml

from superpos.cli import build_book

ROOT = Path(__file__).resolve().parent.parent


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


@pytest.mark.book
def test_book_builds_with_every_notebook_executed():
    index = build_book(ROOT, execute=True, strict=True)
    assert index.exists()
    html = index.parent
    for file in toc_files():
        page = html / f"{file}.html"
        assert page.exists(), f"{file} missing from the book"
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, f"{file} shows an error"
        if (ROOT / f"{file}.ipynb").exists():
            executed = nbformat.read(ROOT / "_build" / "jupyter_execute" / f"{file}.ipynb", as_version=4)
            code = [c for c in executed.cells if c.cell_type == "code"]
            assert code and all(c.execution_count for c in code), f"{file} was not executed"
    assert "<img" in (html / "nbs" / "01_images.html").read_text(), "figures are in the book"
