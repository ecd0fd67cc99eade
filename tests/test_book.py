"""The book machinery on a tiny temporary book: failures fail the build (and again), caching, science-first pages."""
import nbformat
import pytest
import yaml

import superpos.book
import superpos.cli

from superpos.book import build_book, stage_book
from superpos.core import SuperposError

CONFIG = {"title": "tiny", "only_build_toc_files": True, "exclude_patterns": ["_build"],
          "execute": {"execute_notebooks": "off"}}


def _notebook(path, *sources):
    path.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s) for s in sources])))


@pytest.fixture
def book(tmp_path):
    """Two pages: `a` counts its executions in executions.txt; `b` is a library page in nbdev's layout."""
    (tmp_path / "nbs").mkdir()
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "nbs/index",
                                                       "chapters": [{"file": "nbs/a"}, {"file": "nbs/b"}]}))
    (tmp_path / "nbs" / "index.md").write_text("# Tiny\n\nA tiny book.\n")
    _notebook(tmp_path / "nbs" / "a.ipynb", "md:# Page A", "with open('executions.txt', 'a') as f:\n    f.write('run\\n')",
              "print('hello from a')")
    _notebook(tmp_path / "nbs" / "b.ipynb", "#| default_exp demo", "#| export\nimport sys", "#| hide\nimport math",
              "md:# Page B\n\n> A library page.", "#| export\ndef double(x):\n    return 2 * x",
              "import sys\nprint('progress' + '-bar', file=sys.stderr)\ndouble(21)", "assert double(1) == 2")
    return tmp_path


def executions(book):
    path = book / "nbs" / "executions.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_unchanged_notebook_is_not_re_executed(book):
    stage_book(book, timeout=60)
    stage_book(book, timeout=60)
    assert executions(book) == 1
    nb = nbformat.read(book / "nbs" / "a.ipynb", as_version=4)
    nb.cells[-1].source = "print('changed')"
    nbformat.write(nb, book / "nbs" / "a.ipynb")
    stage_book(book, timeout=60)
    assert executions(book) == 2


def test_failing_cell_fails_the_build_again_until_fixed(book, capsys):
    _notebook(book / "nbs" / "b.ipynb", "md:# Page B", "x = 1", "raise RuntimeError('planted failure')")
    for attempt in range(2):
        with pytest.raises(SuperposError, match=r"b\.ipynb: cell 2 \(\"raise RuntimeError\('planted failure'\)\"\) failed with RuntimeError"):
            build_book(book, timeout=60)
    assert not (book / "_build" / "html").exists(), "no HTML from a failed execution"
    assert executions(book) == 1, "the page that worked was cached, not re-executed"
    assert "nbs/b.ipynb: FAILED" in capsys.readouterr().out
    _notebook(book / "nbs" / "b.ipynb", "md:# Page B", "x = 1")
    assert build_book(book, timeout=60).exists()


def test_cell_time_out_names_the_cell(book):
    _notebook(book / "nbs" / "b.ipynb", "md:# Page B", "import time\ntime.sleep(30)")
    with pytest.raises(SuperposError, match=r"b\.ipynb: cell 1 \('import time'\) ran past the 2 s cell time-out"):
        stage_book(book, timeout=2)


def test_rendered_page_is_science_first(book):
    html = build_book(book, timeout=60).parent
    page = (html / "nbs" / "b.html").read_text()
    assert "double" in page and "42" in page and "hide-input" in page, "usage example shown, implementation folded"
    for absent in ("default_exp", "#|", "import math", "progress-bar", "assert double", "Traceback", "/tmp/"):
        assert absent not in page, f"the rendered page shows {absent!r}"
    assert "hello from a" in (html / "nbs" / "a.html").read_text()


def test_machine_path_in_an_output_fails_the_build(book):
    _notebook(book / "nbs" / "b.ipynb", "md:# Page B", "print('written to /tmp/run/out.nc')")
    with pytest.raises(SuperposError, match=r"b\.ipynb: cell 1 .* shows '/tmp/'"):
        build_book(book, timeout=60)


@pytest.mark.xfail(getattr(superpos.cli, "build_book", superpos.book.build_book) is not superpos.book.build_book, strict=True,
                   reason="`superpos book` still calls the old superpos.cli.build_book (whose rebuild after a failure "
                          "passes): the CLI must call superpos.book.build_book")
def test_superpos_book_exits_non_zero_on_a_failing_cell(book, monkeypatch, capsys):
    from superpos.cli import main
    _notebook(book / "nbs" / "b.ipynb", "md:# Page B", "raise RuntimeError('planted failure')")
    monkeypatch.chdir(book)
    assert main(["book"]) == 1
    assert main(["book"]) == 1, "a second build after a failure fails again"
    assert "superpos book: error:" in capsys.readouterr().err


def test_math_is_served_from_the_book_itself(tmp_path):
    """With django-static-mathjax installed, the book's pages load MathJax 3 from their own _static (offline math)."""
    pytest.importorskip("mathjax")
    es5 = superpos.book.local_mathjax()
    assert es5 is not None and (es5 / "tex-mml-chtml.js").is_file()
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text('extensions = ["sphinx.ext.autodoc", "superpos.book"]\n')
    (src / "index.rst").write_text("Title\n=====\n\n.. math::\n\n   e^{i\\pi} + 1 = 0\n")
    from sphinx.cmd.build import build_main
    assert build_main(["-q", "-b", "html", str(src), str(tmp_path / "html")]) == 0
    page = (tmp_path / "html" / "index.html").read_text()
    assert 'src="_static/mathjax/tex-mml-chtml.js' in page and "cdn.jsdelivr.net/npm/mathjax" not in page
    static = tmp_path / "html" / "_static" / "mathjax"
    assert (static / "tex-mml-chtml.js").read_bytes() == (es5 / "tex-mml-chtml.js").read_bytes()
    assert "Apache License" in (static / "LICENSE").read_text()
    assert len(list((static / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))) >= 20
