"""The superpos console script, end to end in subprocesses."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def superpos(*args, cwd=ROOT):
    launcher = "import sys; from superpos.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", launcher, *args], cwd=cwd, capture_output=True, text=True)


def write_notebook(path, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("n = 2\noutput_dir = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("first = n * 10"),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["book"]])
def test_help_on_every_command(command):
    result = superpos(*command, "--help")
    assert result.returncode == 0
    assert "usage: superpos" in result.stdout


def test_run_stimuli_notebook_with_parameter(tmp_path):
    result = superpos("run", "nbs/11_stimuli_natural.ipynb", "-p", "n_stimuli", "300", "-p", "image_size", "32", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "11_stimuli_natural").iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "ok"
    assert record["parameters"]["n_stimuli"] == 300
    assert {"torch", "numpy", "superpos"} <= set(record["versions"])
    executed = nbformat.read(run / "11_stimuli_natural.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_unknown_parameter_lists_valid_ones(tmp_path):
    result = superpos("run", "nbs/11_stimuli_natural.ipynb", "-p", "n_stimul", "3", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "unknown parameter(s) ['n_stimul']" in result.stderr
    assert "n_stimuli (default 2000)" in result.stderr


def test_missing_notebook(tmp_path):
    result = superpos("run", "no_such_analysis", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "not found; runnable notebooks:" in result.stderr


def test_failing_notebook_keeps_partial_output(tmp_path):
    notebook = write_notebook(tmp_path / "broken.ipynb", "raise ValueError('bad data')")
    result = superpos("run", str(notebook), "-p", "n", "7", "--out", str(tmp_path / "runs"))
    assert result.returncode == 1
    assert "ValueError: bad data" in result.stderr
    run = next((tmp_path / "runs" / "broken").iterdir())
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    executed = nbformat.read(run / "broken.ipynb", as_version=4)
    before = next(c for c in executed.cells if c.source.startswith("first ="))
    assert before.execution_count is not None  # the cells before the failure ran
    assert any("ValueError" in str(c.get("outputs", "")) for c in executed.cells if c.cell_type == "code")


def test_yaml_and_list_parameters(tmp_path):
    notebook = write_notebook(tmp_path / "lists.ipynb", "import json, pathlib\npathlib.Path(output_dir, 'n.json').write_text(json.dumps(n))")
    result = superpos("run", str(notebook), "-y", "n: [1, 2, 3]", "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "runs" / "lists").iterdir())
    assert json.loads((run / "n.json").read_text()) == [1, 2, 3]


def test_list_shows_parameters():
    result = superpos("list")
    assert result.returncode == 0
    assert "nbs/11_stimuli_natural.ipynb" in result.stdout
    assert "n_stimuli = 2000" in result.stdout


def test_every_parameter_of_every_runnable_notebook_is_seen():
    """papermill skips a parameter line it cannot parse (e.g. an '=' in its comment): then `-p` rejects it."""
    import re

    from superpos.cli import list_notebooks, notebook_parameters
    for path in list_notebooks():
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [m.group(1) for m in re.finditer(r"^(\w+)\s*=", cell.source, flags=re.M)]
        assert sorted(notebook_parameters(path)) == sorted(assigned), f"{path.name}: a parameter line does not parse"
