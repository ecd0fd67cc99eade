"""Sweeps on a 2-worker LocalCluster: completion, a killed worker, resubmission, retries, bad grids, gathering."""
import _thread
import importlib.util
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
import xarray as xr

from superpos.cli import main
from superpos.core import ConfigError, MissingExtraError
from superpos.sweep.grid import gather, jobqueue_cluster, sweep, write_gathered
from superpos.sweep.runs import find_runs

distributed = pytest.importorskip("distributed")


def write_notebook(folder: Path) -> Path:
    """A fast notebook: writes n rows of a CSV; fails for n < 0; sleeps `sleep` seconds first."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("n = 2\nlr = 0.1\nsleep = 0.0\noutput_dir = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import pathlib, time\ntime.sleep(sleep)\nassert n >= 0, 'n must be >= 0'"),
                nbformat.v4.new_code_cell("rows = ['i,loss'] + [f'{i},{lr * i}' for i in range(n)]\n"
                                          "(pathlib.Path(output_dir) / 'losses.csv').write_text('\\n'.join(rows))")]
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def scheduler():
    """One 2-worker LocalCluster (processes, one thread each) shared by the tests of this module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(tmp_path)


def folders(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "tiny").iterdir())


def unfinished(out: Path) -> list[str]:
    return [name for name in folders(out) if re.search(r"\.(running|failed|interrupted)-[0-9a-f]+$", name)]


def done_per_identity(out: Path) -> dict:
    counts = {}
    for run in find_runs(out):
        if run["status"] == "done":
            counts[run["identity"]] = counts.get(run["identity"], 0) + 1
    return counts


def test_sweep_of_six_runs_gathers_six_runs(scheduler, notebook, tmp_path):
    out = tmp_path / "runs"
    result = sweep(notebook, {"n": [1, 2, 3], "lr": [0.1, 0.5]}, scheduler=scheduler, out=out, progress=False)
    assert result.ok and len(result.runs) == 6
    assert not unfinished(out), "every run folder has its final name"
    table = gather(out)
    assert table["run"].nunique() == 6
    assert len(table) == 2 * (1 + 2 + 3)
    per_run = table.groupby("run").agg(n=("n", "first"), lr=("lr", "first"), rows=("i", "size"), last=("loss", "max"))
    assert sorted(zip(per_run["n"], per_run["lr"])) == sorted((n, lr) for n in (1, 2, 3) for lr in (0.1, 0.5))
    assert (per_run["rows"] == per_run["n"]).all()
    assert (abs(per_run["last"] - per_run["lr"] * (per_run["n"] - 1)) < 1e-12).all()
    record = json.loads((Path(result.runs["folder"][0]) / "run.json").read_text())
    assert record["status"] == "done" and record["identity"] == result.runs["identity"][0]
    assert record["parameters"]["output_dir"] == result.runs["folder"][0]


def kill_first_running_worker(out: Path, killed: list, timeout: float = 60):
    """SIGKILL the process (a Dask worker) recorded in the first `.running-` run folder that appears."""
    end = time.time() + timeout
    while time.time() < end and not killed:
        for run in find_runs(out) if out.exists() else []:
            if run["status"] == "running" and run.get("pid") and run["pid"] != os.getpid():
                os.kill(run["pid"], signal.SIGKILL)
                killed.append(run)
                return
        time.sleep(0.05)


def test_worker_killed_mid_sweep_every_run_completes_once(scheduler, notebook, tmp_path):
    out = tmp_path / "runs"
    killed = []
    killer = threading.Thread(target=kill_first_running_worker, args=(out, killed))
    killer.start()
    result = sweep(notebook, {"n": [1, 2, 3, 4], "sleep": [1.5]}, scheduler=scheduler, out=out, progress=False)
    killer.join()
    assert killed, "no run was seen running"
    assert result.ok
    assert done_per_identity(out) == {i: 1 for i in result.runs["identity"]}
    assert not Path(killed[0]["folder"]).exists(), "the killed attempt's partial folder is removed"
    assert not unfinished(out), "the killed attempt left nothing behind"
    assert sorted(gather(out).groupby("run")["n"].first()) == [1, 2, 3, 4]


def interrupt_after(out: Path, n_done: int, timeout: float = 60):
    end = time.time() + timeout
    while time.time() < end:
        if out.exists() and sum(r["status"] == "done" for r in find_runs(out)) >= n_done:
            _thread.interrupt_main()
            return
        time.sleep(0.05)


def test_resubmitted_sweep_runs_only_the_missing_runs(scheduler, notebook, tmp_path):
    out, grid = tmp_path / "runs", {"n": [1, 2, 3, 4, 5, 6], "sleep": [0.5]}   # more runs than workers: some wait
    interrupter = threading.Thread(target=interrupt_after, args=(out, 2))
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        sweep(notebook, grid, scheduler=scheduler, out=out, progress=False)
    interrupter.join()
    finished_before = set(done_per_identity(out))
    assert 2 <= len(finished_before) < 6
    result = sweep(notebook, grid, scheduler=scheduler, out=out, progress=False)
    assert result.ok
    attempts = dict(zip(result.runs["identity"], result.runs["attempts"]))
    assert all(attempts[i] == 0 for i in finished_before), "finished runs are not run again"
    assert sum(a > 0 for a in attempts.values()) <= 6 - len(finished_before)
    assert done_per_identity(out) == {i: 1 for i in attempts}


def test_failing_run_is_retried_then_reported(scheduler, notebook, tmp_path):
    out = tmp_path / "runs"
    result = sweep(notebook, {"n": [1, -1, 2]}, scheduler=scheduler, out=out, retries=1, progress=False)
    assert not result.ok
    failed = result.runs[result.runs["status"] == "failed"]
    assert list(failed["parameters"]) == [{"n": -1}]
    assert failed["attempts"].iloc[0] == 2
    assert "n must be >= 0" in failed["error"].iloc[0] and ".failed-" in failed["folder"].iloc[0]
    assert sum(".failed-" in name for name in folders(out)) == 2   # both attempts kept with their error
    assert sorted(gather(out).groupby("run")["n"].first()) == [1, 2]
    assert "failed after 2 attempt(s): {'n': -1}" in result.report()


def test_cli_exit_code_says_whether_all_runs_succeeded(scheduler, notebook, tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("grid:\n  n: [1, 2]\n")
    bad.write_text("runs:\n  - {n: -3}\n")
    args = [str(notebook), "--scheduler", scheduler, "--out", str(tmp_path / "runs")]
    assert main(["sweep", *args, "--grid", str(good)]) == 0
    assert main(["sweep", *args, "--grid", str(bad)]) == 1
    assert "n must be >= 0" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["gather", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "2 finished runs gathered; left out:" in printed and "  failed: " in printed
    gathered = tmp_path / "runs" / "gathered"
    assert (gathered / "losses.csv").read_text().count("\n") == 1 + 1 + 2
    assert xr.load_dataset(gathered / "losses.nc")["n"].values.tolist() == [1, 2, 2]


@pytest.mark.parametrize("grid, message", [
    ({"m": [1, 2]}, "unknown parameter(s) ['m'] for tiny.ipynb; its parameters are: n (default 2), lr (default 0.1)"),
    ({"n": []}, "grid parameter(s) ['n'] have an empty list"),
    ({"n": [1, "two"]}, "parameter n of tiny.ipynb is int (default 2), got 'two'"),
    ({"lr": [True]}, "parameter lr of tiny.ipynb is float"),
    ({"runs": [{"n": 1, "output_dir": "x"}]}, "output_dir of tiny.ipynb is set by the runner"),
    ("n: [1, 2", "the grid is not valid YAML"),
    ({"grid": {"n": [1]}, "seeds": [1]}, "unknown grid keys ['seeds']"),
    ({"runs": []}, "the grid has no runs"),
])
def test_bad_grid_fails_before_any_run(notebook, tmp_path, grid, message):
    with pytest.raises(ConfigError) as err:
        sweep(notebook, grid, workers=1, out=tmp_path / "runs", progress=False)
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_grid_file_errors(notebook, tmp_path):
    with pytest.raises(ConfigError, match="grid file .*missing.yaml not found"):
        sweep(notebook, str(tmp_path / "missing.yaml"), out=tmp_path / "runs")
    (tmp_path / "g.yaml").write_text("grid: {lr: [1e-4, 1E-3]}\n")
    with pytest.raises(ConfigError, match="retries must be a non-negative integer"):
        sweep(notebook, str(tmp_path / "g.yaml"), out=tmp_path / "runs", retries=-1)


def test_parquet_needs_pyarrow_or_round_trips(scheduler, notebook, tmp_path):
    out = tmp_path / "runs"
    sweep(notebook, {"n": [3]}, scheduler=scheduler, out=out, progress=False)
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(MissingExtraError, match="pip install pyarrow"):
            write_gathered(out, format="parquet")
    else:
        import pandas as pd
        path = write_gathered(out, format="parquet")[0]
        assert pd.read_parquet(path)["n"].tolist() == [3, 3, 3]


def test_cluster_settings_errors():
    with pytest.raises(ConfigError, match="unknown cluster 'sge'"):
        jobqueue_cluster("sge")
    if importlib.util.find_spec("dask_jobqueue") is None:
        with pytest.raises(MissingExtraError, match=r"superpos\[cluster\]"):
            jobqueue_cluster("slurm")
    else:
        import dask
        with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
            with pytest.raises(ConfigError, match="jobqueue.yaml"):
                jobqueue_cluster("slurm")


def test_slowvae_page_shows_a_gathered_sweep_of_itself(scheduler, tmp_path):
    """The SlowVAE page swept over two models, then run with `stored_sweep`: it shows the gathered runs."""
    from superpos.disentangle.runs import comparison_from_logs
    from superpos.sweep.runs import run_notebook
    tiny = {"n_iterations": 4, "eval_every": 4, "log_every": 2, "checkpoint_every": 4, "eval_samples": 200,
            "batch_size": 16, "compare_results": None, "seed": 1}
    grid = {"parameters": tiny, "runs": [{"beta": 1.0, "gamma": 10.0}, {"beta": 8.0, "gamma": 0.0}]}
    out = tmp_path / "runs"
    assert sweep("slowvae", grid, scheduler=scheduler, out=out, progress=False).ok
    table, curves = comparison_from_logs(gather(out, table="log"))
    assert sorted(table.model) == ["SlowVAE", "beta-VAE"] and set(table.seed) == {1} and set(table.step) == {4}
    assert table[["mcc", "mig"]].notna().all().all() and set(curves.metric) >= {"mcc", "mig", "loss"}
    shown = run_notebook("slowvae", {**tiny, "stored_sweep": str(out / "78_slowvae")}, out=tmp_path / "show")
    text = (shown / "78_slowvae.ipynb").read_text()
    assert "2 finished runs of a sweep" in text and "SlowVAE above beta-VAE for" in text
