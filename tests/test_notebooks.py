"""Every notebook executes at its defaults (one test each, named after the notebook); then the book builds with -W."""
import nbformat
import pytest

from notebooks import ROOT, execute, staged_book, toc_files, toc_notebooks
from superpos.cli import build_book, list_notebooks


@pytest.mark.book
@pytest.mark.parametrize("notebook", toc_notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_at_its_defaults(notebook):
    executed = nbformat.read(execute(notebook), as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), f"{notebook.name}: not every cell ran"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name} shows an error: {errors[0]['ename']}"


@pytest.mark.book
def test_book_builds_with_warnings_as_errors(tmp_path):
    """Sphinx -W -n over the executed notebooks: every page present, no traceback, figures shown."""
    index = build_book(staged_book(tmp_path), execute=False, strict=True)
    html = index.parent
    for file in toc_files():
        page = html / f"{file}.html"
        assert page.exists(), f"{file} missing from the book"
        assert "Traceback (most recent call last)" not in page.read_text(), f"{file} shows an error"
    analysis_pages = [p for p in list_notebooks(ROOT) if f"nbs/{p.stem}" in toc_files()]   # the pages with parameters
    assert analysis_pages, "no analysis page in the book"
    without = [p.stem for p in analysis_pages if "<img" not in (html / "nbs" / f"{p.stem}.html").read_text()]
    assert not without, f"analysis pages without their figures: {without}"
