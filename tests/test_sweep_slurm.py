"""A sweep on a SLURM cluster through dask-jobqueue, with a stand-in `sbatch`/`scancel` on PATH that runs each
job script on this machine: the job scripts dask-jobqueue writes from the usual YAML settings start workers that
join the sweep's scheduler, every run completes once, and closing the sweep cancels the jobs."""
import importlib.util
import os
import stat
import time
from pathlib import Path

import pytest

from superpos.sweep.grid import gather, sweep
from test_sweep import done_per_identity, write_notebook

# not imported here: dask-jobqueue's import sets a SIGINT handler (superpos restores it around its own import)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("dask_jobqueue") is None, reason="needs dask-jobqueue (superpos[cluster])")

SBATCH = """#!/bin/bash
# stand-in for SLURM's sbatch: record the job script, run it in the background, print the job id
# (dask-jobqueue deletes its script once sbatch returns: run the recorded copy)
copy="$FAKE_SLURM/job-$(date +%s%N).sh"
cp "${@: -1}" "$copy"
nohup bash "$copy" > "$copy.log" 2>&1 &
echo "Submitted batch job $!"
"""
SCANCEL = """#!/bin/bash
# stand-in for SLURM's scancel: stop each job (the job script's shell and the worker it started)
for job in "$@"; do
    echo "$job" >> "$FAKE_SLURM/cancelled"
    pkill -TERM -P "$job" 2>/dev/null
    kill -TERM "$job" 2>/dev/null
done
exit 0
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A folder of stand-in SLURM commands first on PATH, and dask-jobqueue's SLURM settings as a user sets them."""
    import signal
    import dask
    handler = signal.getsignal(signal.SIGINT)
    import dask_jobqueue  # noqa: F401 - loads its defaults before the settings below (and sets a SIGINT handler)
    signal.signal(signal.SIGINT, handler)
    import yaml
    defaults = yaml.safe_load((Path(dask_jobqueue.__file__).parent / "jobqueue.yaml").read_text())
    dask.config.update(dask.config.config, defaults, priority="old")   # lost if first imported inside a config.set
    bin_dir, record = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(record))
    settings = {"jobqueue.slurm.cores": 1, "jobqueue.slurm.processes": 1, "jobqueue.slurm.memory": "2GB",
                "jobqueue.slurm.walltime": "00:10:00", "jobqueue.slurm.interface": "lo",
                "jobqueue.slurm.log-directory": str(record)}
    with dask.config.set(settings):
        yield record


def test_sweep_on_slurm_runs_every_run_once_and_cancels_its_jobs(fake_slurm, tmp_path):
    notebook = write_notebook(tmp_path)
    out = tmp_path / "runs"
    result = sweep(notebook, {"grid": {"n": [1, 2, 3], "lr": [0.5]}}, cluster="slurm", workers=2, out=out, progress=False)
    assert result.ok, result.table
    counts = done_per_identity(out)
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
    table = gather(out / "tiny")
    assert sorted(table.groupby("n").size().to_dict().items()) == [(1, 1), (2, 2), (3, 3)]
    scripts = sorted(fake_slurm.glob("job-*.sh"))
    assert len(scripts) == 2, "one job per requested worker"
    text = scripts[0].read_text()
    assert "#SBATCH" in text and "--mem=" in text and "-t 00:10:00" in text and "distributed.cli.dask_worker" in text
    deadline = time.time() + 30
    while not (fake_slurm / "cancelled").exists() and time.time() < deadline:
        time.sleep(0.2)
    cancelled = (fake_slurm / "cancelled").read_text().split()
    assert len(cancelled) == 2, f"closing the sweep cancels both jobs, got {cancelled}"
    for job in cancelled:
        deadline = time.time() + 30
        while Path(f"/proc/{job}").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{job}").exists() or "zombie" in Path(f"/proc/{job}/status").read_text(), f"job {job} still runs"
