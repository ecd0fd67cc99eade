"""The superpos console script, end to end in subprocesses."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from superpos.sweep.runs import list_notebooks, notebook_parameters

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


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["gather"], ["list"], ["book"]])
def test_help_on_every_command(command):
    result = superpos(*command, "--help")
    assert result.returncode == 0
    assert "usage: superpos" in result.stdout


def test_run_stimuli_notebook_with_parameter(tmp_path):
    result = superpos("run", "nbs/11_stimuli_natural.ipynb", "-p", "n_stimuli", "300", "-p", "image_size", "32", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "11_stimuli_natural").iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done"
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
    assert ".failed-" in run.name and str(run) in result.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    executed = nbformat.read(run / "broken.ipynb", as_version=4)
    before = next(c for c in executed.cells if c.source.startswith("first ="))
    assert before.execution_count is not None  # the cells before the failure ran
    assert any("ValueError" in str(c.get("outputs", "")) for c in executed.cells if c.cell_type == "code")


def test_yaml_and_list_parameters(tmp_path):
    """A YAML list reaches a list-valued (string-default) parameter as a list; an integer parameter refuses one."""
    notebook = write_values_notebook(tmp_path / "lists.ipynb")
    result = superpos("run", str(notebook), "-y", "name: [a, 2]", "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "runs" / "lists").iterdir())
    assert json.loads((run / "values.json").read_text())["name"] == [["a", 2], "list"]
    refused = superpos("run", str(notebook), "-y", "n: [1, 2, 3]", "--out", str(tmp_path / "runs"))
    assert refused.returncode == 1 and "parameter n of lists.ipynb is int" in refused.stderr


def test_list_shows_parameters():
    result = superpos("list")
    assert result.returncode == 0
    assert "nbs/11_stimuli_natural.ipynb" in result.stdout
    assert "n_stimuli = 2000" in result.stdout


def test_every_parameter_of_every_runnable_notebook_is_seen():
    """papermill skips a parameter line it cannot parse (e.g. an '=' in its comment): then `-p` rejects it."""
    import re

    for path in list_notebooks():
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [m.group(1) for m in re.finditer(r"^(\w+)\s*=", cell.source, flags=re.M)]
        assert sorted(notebook_parameters(path)) == sorted(assigned), f"{path.name}: a parameter line does not parse"


def write_values_notebook(path, cells=("",)):
    """A notebook with an int, two floats and a string parameter that records their values and types."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("n = 2\nlr = 0.1\nbeta = 1.0\nname = 'x'\nsleep = 0\noutput_dir = None",
                                          metadata={"tags": ["parameters"]}),
                *[nbformat.v4.new_code_cell(c) for c in cells],
                nbformat.v4.new_code_cell("import json, pathlib, time\ntime.sleep(sleep)\n"
                                          "values = {k: [v, type(v).__name__] for k, v in dict(n=n, lr=lr, beta=beta, name=name).items()}\n"
                                          "pathlib.Path(output_dir, 'values.json').write_text(json.dumps(values))")]
    nbformat.write(nb, path)
    return path


def test_float_spellings_reach_the_notebook_as_floats(tmp_path):
    notebook = write_values_notebook(tmp_path / "values.ipynb")
    result = superpos("run", str(notebook), "-p", "lr", "1e-4", "-y", "{beta: 1E4, name: '1e-4'}", "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "runs" / "values").iterdir())
    values = json.loads((run / "values.json").read_text())
    assert values == {"n": [2, "int"], "lr": [1e-4, "float"], "beta": [1e4, "float"], "name": ["1e-4", "str"]}
    assert json.loads((run / "run.json").read_text())["parameters"]["lr"] == 1e-4


@pytest.mark.parametrize("args, message", [
    (["-y", "lr: [1e-4"], "-y is not valid YAML"),
    (["-y", "- 1"], "-y must be a YAML mapping"),
    (["-p", "n", "two"], "parameter n of values.ipynb is int (default 2), got 'two'"),
    (["-p", "output_dir", "elsewhere"], "output_dir of values.ipynb is set by the runner"),
])
def test_bad_values_are_clear_errors_before_a_run(tmp_path, args, message):
    notebook = write_values_notebook(tmp_path / "values.ipynb")
    result = superpos("run", str(notebook), *args, "--out", str(tmp_path / "runs"))
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_kernel_is_a_clear_error_with_a_run_record(tmp_path):
    notebook = write_values_notebook(tmp_path / "values.ipynb")
    result = superpos("run", str(notebook), "--kernel", "no-such-kernel", "--out", str(tmp_path / "runs"))
    assert result.returncode == 1
    assert "no Jupyter kernel named 'no-such-kernel'" in result.stderr and "ipykernel install" in result.stderr
    run = next((tmp_path / "runs" / "values").iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "no-such-kernel" in record["error"]


def start_slow_run(tmp_path):
    notebook = write_values_notebook(tmp_path / "values.ipynb")
    launcher = "import sys; from superpos.cli import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", launcher, "run", str(notebook), "-p", "sleep", "60", "--out", str(tmp_path / "runs")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline:   # wait until papermill writes the executing notebook into the run folder
        if list((tmp_path / "runs").glob("values/*.running-*/values.ipynb")):
            time.sleep(2)
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the run did not start")


def test_sigterm_marks_the_run_interrupted(tmp_path):
    process = start_slow_run(tmp_path)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    run = next((tmp_path / "runs" / "values").iterdir())
    assert ".interrupted-" in run.name and str(run) in stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_sigkilled_run_is_recognisable_as_interrupted(tmp_path):
    from superpos.sweep.runs import find_runs
    process = start_slow_run(tmp_path)
    process.kill()
    process.wait(timeout=30)
    run = next((tmp_path / "runs" / "values").iterdir())
    record = json.loads((run / "run.json").read_text())
    assert ".running-" in run.name and record["status"] == "running" and record["pid"] == process.pid
    assert [r["status"] for r in find_runs(tmp_path / "runs")] == ["interrupted"]


def test_run_folders_vanishing_during_the_search_are_skipped(tmp_path):
    """Sweep workers create and rename run folders while find_runs walks."""
    import shutil
    import threading
    from superpos.sweep.runs import find_runs
    done = tmp_path / "runs" / "done-run"
    done.mkdir(parents=True)
    (done / "run.json").write_text(json.dumps({"status": "done"}))
    stop = threading.Event()

    def churn():   # folders appearing and vanishing, as a worker's temporary run folders do
        i = 0
        while not stop.is_set():
            folder = tmp_path / "runs" / f".running-{i % 4}"
            (folder / "a" / "b").mkdir(parents=True, exist_ok=True)
            (folder / "run.json").write_text(json.dumps({"status": "done"}))
            shutil.rmtree(folder, ignore_errors=True)
            i += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        seen = [[r["folder"] for r in find_runs(tmp_path / "runs") if ".running-" not in r["folder"]] for _ in range(300)]
    finally:
        stop.set()
        thread.join()
    assert all(s == [str(done)] for s in seen)


def test_identical_runs_started_together_get_their_own_folders(tmp_path):
    notebook = write_values_notebook(tmp_path / "values.ipynb")
    launcher = "import sys; from superpos.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", launcher, "run", str(notebook), "-p", "n", "5", "--out", str(tmp_path / "runs")]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    runs = sorted((tmp_path / "runs" / "values").iterdir())
    assert len(runs) == 2 and all(json.loads((r / "run.json").read_text())["status"] == "done" for r in runs)
    assert len({json.loads((r / "run.json").read_text())["identity"] for r in runs}) == 1


def as_typed(default_text):
    """How a user types a default on the command line: a string literal without its quotes."""
    import ast
    try:
        value = ast.literal_eval(default_text)
    except (ValueError, SyntaxError):
        return default_text
    return value if isinstance(value, str) else default_text


def test_every_listed_parameter_can_be_set_from_the_command_line(tmp_path):
    """`-p NAME DEFAULT` for every parameter of every runnable notebook passes the checks and is injected as that value."""
    import ast

    import papermill

    from superpos.cli import collect_parameters
    from superpos.sweep.runs import check_parameters
    for path in list_notebooks():
        known = notebook_parameters(path)
        pairs = [(name, as_typed(p["default"])) for name, p in known.items() if name != "output_dir"]
        parameters = collect_parameters(pairs)
        check_parameters(path, parameters, known)
        target = tmp_path / path.name
        papermill.execute_notebook(str(path), str(target), parameters=parameters, prepare_only=True, log_output=False)
        injected = next(c for c in nbformat.read(target, as_version=4).cells if "injected-parameters" in c.metadata.get("tags", []))
        values = {t.targets[0].id: t.value for t in ast.parse(injected.source).body}
        for name, p in known.items():
            if name == "output_dir":
                continue
            try:
                expected = ast.literal_eval(p["default"])
            except (ValueError, SyntaxError):
                continue
            injected_value = ast.literal_eval(values[name])
            if isinstance(expected, str):   # `-p seeds 0` gives 0 for a default "0": notebooks read both with as_list
                injected_value = str(injected_value)
            assert injected_value == expected, f"{path.name}: -p {name} {as_typed(p['default'])} is not its default"
