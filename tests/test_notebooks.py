"""Every notebook executes at its defaults (one test each, named after the notebook); then the book builds with -W."""
import re

import nbformat
import pytest

from notebooks import ROOT, TIMEOUT, execute, toc_files, toc_notebooks
from superpos.book import build_book
from superpos.cli import list_notebooks

ERROR_OUTPUT = re.compile(r'class="[^"]*\btraceback\b')   # how myst-nb renders an error output
DIRECTIVE = re.compile(r'<span class="c1">#\s*\|')   # a `#| ...` comment in a rendered code cell (not a string)


@pytest.mark.book
@pytest.mark.parametrize("notebook", toc_notebooks(ROOT), ids=lambda p: p.stem)
def test_notebook_runs_at_its_defaults(notebook):
    executed = nbformat.read(execute(notebook).path, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), f"{notebook.name}: not every cell ran"


@pytest.mark.book
def test_book_builds_with_warnings_as_errors():
    """Sphinx -W -n over the executed notebooks (reused from the tests above): every page present, figures shown."""
    html = build_book(ROOT, execute=True, strict=True, timeout=TIMEOUT).parent
    for file in toc_files(ROOT):
        page = html / f"{file}.html"
        assert page.exists(), f"{file} missing from the book"
        text = page.read_text()
        assert not ERROR_OUTPUT.search(text), f"{file} shows an error"
        assert not DIRECTIVE.search(text), f"{file} shows an nbdev directive"
    analysis_pages = [p for p in list_notebooks(ROOT) if f"nbs/{p.stem}" in toc_files(ROOT)]   # the pages with parameters
    assert analysis_pages, "no analysis page in the book"
    without = [p.stem for p in analysis_pages if "<img" not in (html / "nbs" / f"{p.stem}.html").read_text()]
    assert not without, f"analysis pages without their figures: {without}"
