"""Sweep overhead and scaling: `superpos sweep` against `superpos run` of the same notebook.

1. Overhead per run: a sweep of R runs on one worker (wall time / R, cluster start-up included)
   against `superpos run` of the same notebook (wall time per run, process start-up included).
   Target: under 10% for runs of about a minute.
2. Speed-up: the same R single-threaded runs on 2 workers against 1 worker. Target: >= 1.7x.

The notebook burns a fixed amount of pure-Python CPU work, calibrated here to take --seconds on one
core of this machine as it is now (the load average is printed: the machine may be shared).

    python benchmarks/sweep.py [--seconds 30] [--runs 4] [--speed-up-only]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = "import sys; from superpos.cli import main; sys.exit(main())"


def burn(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x += i * i % 7
    return x


def calibrate(seconds: float) -> int:
    """Iterations of `burn` that take about `seconds` here and now."""
    n = 2_000_000
    start = time.perf_counter()
    burn(n)
    return int(n * seconds / (time.perf_counter() - start))


def write_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("iterations = 1000\nseed = 0\noutput_dir = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import pathlib, time\n\n"
                                          "def burn(iterations):   # in a function, as calibrated: module-level loops run ~2x slower\n"
                                          "    x = 0\n    for i in range(iterations):\n        x += i * i % 7\n    return x\n\n"
                                          "start = time.perf_counter()\nx = burn(iterations)\n"
                                          "pathlib.Path(output_dir, 'result.csv').write_text(f'seed,x,seconds\\n{seed},{x},{time.perf_counter() - start}')")]
    path = folder / "burn.ipynb"
    nbformat.write(nb, path)
    return path


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"superpos {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="compute time of one run (default 30)")
    parser.add_argument("--runs", type=int, default=4, help="runs per sweep (default 4)")
    parser.add_argument("--speed-up-only", action="store_true",
                        help="only the 1- and 2-worker sweeps (the speed-up), not the overhead against `superpos run`")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    notebook = write_notebook(folder)
    load_before = os.getloadavg()
    iterations = calibrate(args.seconds)
    print(f"cores: {os.cpu_count()}, load average before: {load_before[0]:.1f} (1 min), {load_before[1]:.1f} (5 min)")
    print(f"one run: {iterations:,} iterations, about {args.seconds:.0f} s of compute on one core now\n")

    single = [] if args.speed_up_only else [
        timed(["run", str(notebook), "-p", "iterations", str(iterations), "-p", "seed", str(s), "--out", str(folder / "single")])
        for s in range(2)]

    def grid(name, seeds):
        path = folder / f"{name}.yaml"
        path.write_text(f"grid:\n  seed: {list(seeds)}\nparameters:\n  iterations: {iterations}\n")
        return str(path)

    seeds = range(100, 100 + args.runs)
    one = timed(["sweep", str(notebook), "--grid", grid("one", seeds), "--workers", "1", "--out", str(folder / "one")])
    two = timed(["sweep", str(notebook), "--grid", grid("two", range(200, 200 + args.runs)), "--workers", "2", "--out", str(folder / "two")])
    load_after = os.getloadavg()

    print(f"{'':34s}{'wall s':>10s}{'per run s':>11s}")
    if single:
        per_run = sum(single) / len(single)
        print(f"{'superpos run (x2, one at a time)':34s}{sum(single):10.1f}{per_run:11.1f}")
    print(f"{f'superpos sweep, 1 worker, {args.runs} runs':34s}{one:10.1f}{one / args.runs:11.1f}")
    print(f"{f'superpos sweep, 2 workers, {args.runs} runs':34s}{two:10.1f}{two / args.runs:11.1f}")
    if single:
        overhead = one / args.runs / per_run
        print(f"\noverhead per run, sweep / run:    {overhead:.3f}  ({100 * (overhead - 1):+.1f}%; target < +10%)")
    print(f"speed-up, 2 workers / 1 worker:   {one / two:.2f}x  (target >= 1.7x)")
    print(f"load average after: {load_after[0]:.1f} (1 min), {load_after[1]:.1f} (5 min)")


if __name__ == "__main__":
    main()
