"""Side-by-side timing shared by the benchmarks: both sides get the same warm-up and the same repeats.

`compare(cases)` times each case (name -> function) in alternated rounds: every case is warmed up the
same number of times, then each round calls every case, the order rotating from round to round so
that no side always runs first or last on a machine whose load drifts. A round of a case is `number`
back-to-back calls, enough for it to last `min_time` (so microsecond calls are not timer noise;
1 for anything slower), and its time is per call. The time of a case is its median round; a ratio is the median of the per-round ratios, shown
with its min-max over rounds. `how_timed()` is the line each report prints to say so.

    python benchmarks/<name>.py           # each script imports this module from its own folder
"""
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


@contextmanager
def threads(n: int | None):
    """Limit BLAS/OpenMP (threadpoolctl) and torch to `n` threads inside the block (None: leave as is)."""
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Timings:
    """Per-round seconds of each case (one call each), the last result of each, and how they were taken."""
    rounds: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    warmup: int = 1
    number: dict = field(default_factory=dict)
    threads: int | None = None
    min_time: float = 0.0

    def median(self, name) -> float:
        return statistics.median(self.rounds[name])

    def ratios(self, slow, fast) -> list:
        """Per-round ratio slow / fast (> 1: `fast` is faster)."""
        return [a / b for a, b in zip(self.rounds[slow], self.rounds[fast])]

    def ratio(self, slow, fast) -> str:
        """'median x [min-max]' of the per-round ratios slow / fast."""
        r = self.ratios(slow, fast)
        return f"{statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]"

    def how_timed(self) -> str:
        n = len(next(iter(self.rounds.values())))
        load = os.getloadavg()
        calls = sorted(set(self.number.values()))
        calls = (f"{calls[0]} call(s)" if calls == [1] or (len(calls) == 1 and self.min_time == 0) else
                 f"back-to-back calls lasting >= {self.min_time} s (at least 1)")
        return (f"# timed alike: {self.warmup} warm-up call(s) per side, then {n} alternated rounds (order "
                f"rotated each round), a round = {calls} per side; seconds = median round, per call; "
                f"ratio = median of per-round ratios [min-max]; threads per side: "
                f"{self.threads if self.threads else 'default'}; load average {load[0]:.1f} / {load[1]:.1f} "
                f"(1 / 5 min, {os.cpu_count()} cores, shared machine)")


def compare(cases: dict, *, rounds: int = 5, warmup: int = 1, min_time: float = 0.05, n_threads: int | None = None,
            sync=None, warmup_cases: dict | None = None) -> Timings:
    """Time every case alike (see the module docstring): `warmup` (>= 1) untimed calls each, then `rounds`
    alternated rounds; `n_threads`: BLAS/OpenMP/torch threads for all; `sync()` runs before each clock read;
    `warmup_cases`: a cheaper call per case for the warm-up (e.g. the same fit on a subset; then the rounds
    are one call each)."""
    sync = sync or (lambda: None)
    warmup = max(warmup, 1)
    out = Timings(rounds={name: [] for name in cases}, warmup=warmup, threads=n_threads, min_time=min_time)
    with threads(n_threads):
        first = {}
        for name, fn in cases.items():
            fn = (warmup_cases or {}).get(name, fn)
            for _ in range(warmup):
                start = time.perf_counter()
                out.results[name] = fn()
                sync()
                first[name] = time.perf_counter() - start
        out.number = {name: 1 if warmup_cases else max(1, min(10_000, int(min_time / max(t, 1e-7))))
                      for name, t in first.items()}
        names = list(cases)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                for _ in range(out.number[name]):
                    out.results[name] = cases[name]()
                sync()
                out.rounds[name].append((time.perf_counter() - start) / out.number[name])
    return out


def run_json_worker(cmd: list, threads: int, what: str) -> dict:
    """Run a worker process with `threads` BLAS/OpenMP threads; its last stdout line is its JSON result."""
    import json
    import subprocess
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode:
        raise RuntimeError(f"{what} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak():
    """Reset this process's peak resident memory (VmHWM; Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mb() -> float:
    """This process's peak resident memory since start or the last `reset_peak`, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
