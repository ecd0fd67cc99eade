"""Scoring at scale: II, 2-AFC and MIS blockwise (from embeddings, only the pairs used) vs the full S x S matrix.

Precomputed random unit-norm embeddings (d = 840) and 1,280 units whose responses read out embedding
directions plus noise; for each N in --sizes: the time of each measure on each path (alternated rounds,
`timing.compare`, ratios as median [min-max] of per-round ratios), and the peak RSS of each measure in a
fresh subprocess (VmHWM of that process; the inputs' own memory is reported apart). The full-matrix path
runs only up to --matrix-max stimuli (its S x S float32 matrix is 1.6 GB at 20,000). With --peer-path
(MachInterp's mis.py), MachInterp's per-task MIS is timed side by side (its own task draws, chunks of units).

    python benchmarks/scale.py                                      # smoke run: N = 5,000
    python benchmarks/scale.py --sizes 5000,20000,50000,200000 --peer-path /tmp/machinterp   # full size, idle machine
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import compare, peak_mb, reset_peak, rss_mb, run_json_worker  # noqa: E402

D, K, N_TASKS, QUANTILE, SEED = 840, 9, 100, 0.2, 0
MEASURES = ("ii", "2afc", "mis")


def make_inputs(n: int, units: int, device: str):
    """Seeded unit-norm embeddings (n x 840) and responses (n x units), as the measures take them."""
    import xarray as xr
    gen = torch.Generator().manual_seed(n)
    emb = torch.randn(n, D, generator=gen)
    emb /= emb.norm(dim=1, keepdim=True)
    acts = emb @ torch.randn(D, units, generator=gen) + 2 * torch.randn(n, units, generator=gen)
    ids = np.array([f"s{i}" for i in range(n)])
    emb_da = xr.DataArray(emb.numpy(), dims=("stimulus", "embedding"), coords={"stimulus": ids},
                          attrs={"distance_kind": "one_minus"})
    resp = xr.DataArray(acts.numpy(), dims=("stimulus", "unit"), coords={"stimulus": ids})
    return emb, acts, emb_da, resp


def measure_fn(name: str, method: str, resp, emb_da, device: str, n_boot: int):
    from superpos.measures.index import interpretability_index
    from superpos.measures.mis import mis
    from superpos.measures.twoafc import psychophysics_2afc
    if name == "ii":
        return lambda r=resp: interpretability_index(r, None, emb_da, n_boot=n_boot, device=device, method=method)
    if name == "2afc":
        return lambda r=resp: psychophysics_2afc(r, None, emb_da, n_boot=n_boot, device=device, method=method)
    return lambda r=resp: mis(r, None, emb_da, n_references=K, n_tasks=N_TASKS, extreme_quantile=QUANTILE,
                              n_boot=n_boot, device=device, method=method)


def peer_fn(peer_path: str, emb: torch.Tensor, acts: torch.Tensor, device: str, chunk: int):
    """MachInterp's per-task MIS over all units, `chunk` units per call (its memory grows with chunk x N x (K+1) x d)."""
    sys.path.insert(0, peer_path)
    import mis as peer
    y = acts.T.contiguous().float()

    def cos(a, b):
        a = a.unsqueeze(0) if a.ndim == 1 else a
        b = b.unsqueeze(0) if b.ndim == 1 else b
        return torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)

    def run(y=y):
        out = []
        for s in range(0, y.shape[0], chunk):
            q, e = peer.query_explanation_generation(SEED, emb, y[s:s + chunk], K=K, N=N_TASKS, quantile=QUANTILE,
                                                     device=device)
            out.append(peer.calc_MIS_set(q, e, cos, alpha=None).cpu())
        return torch.cat(out)
    return run, (lambda: run(y[:16]))


def worker(args) -> dict:
    """One process: --worker peak (one measure, one path: peak RSS and time) or --worker time (alternated rounds)."""
    torch.set_num_threads(args.threads)
    emb, acts, emb_da, resp = make_inputs(args.n, args.units, args.device)
    base = rss_mb()
    if args.worker == "peak":
        if args.measure == "peer":
            fn, warm = peer_fn(args.peer_path, emb, acts, args.device, args.peer_chunk)
        else:
            fn = measure_fn(args.measure, args.method, resp, emb_da, args.device, args.n_boot)
            warm = lambda: fn(resp[:, :16])  # noqa: E731
        warm()
        reset_peak()
        t = time.perf_counter()
        fn()
        return {"seconds": time.perf_counter() - t, "peak_mb": peak_mb() - base, "inputs_mb": base}
    cases, warm = {}, {}
    for m in args.measures.split(","):
        for method in ["blockwise"] + (["matrix"] if args.n <= args.matrix_max else []):
            fn = measure_fn(m, method, resp, emb_da, args.device, args.n_boot)
            cases[f"{m} {method}"] = fn
            warm[f"{m} {method}"] = (lambda fn=fn: fn(resp[:, :16]))
    if args.peer_path:
        cases["mis machinterp"], warm["mis machinterp"] = peer_fn(args.peer_path, emb, acts, args.device, args.peer_chunk)
    t = compare(cases, rounds=args.rounds, warmup_cases=warm)
    out = {"seconds": {c: t.median(c) for c in cases}, "how": t.how_timed(), "ratios": {}}
    for m in args.measures.split(","):
        if f"{m} matrix" in cases:
            out["ratios"][f"{m}: matrix / blockwise"] = t.ratio(f"{m} matrix", f"{m} blockwise")
    if args.peer_path:
        out["ratios"]["mis: machinterp / blockwise"] = t.ratio("mis machinterp", "mis blockwise")
    return out


def run_worker(args, n, **extra) -> dict:
    cmd = [sys.executable, __file__, "--n", str(n), "--units", str(args.units), "--device", args.device,
           "--n-boot", str(args.n_boot), "--rounds", str(args.rounds), "--threads", str(args.threads),
           "--matrix-max", str(args.matrix_max), "--peer-chunk", str(args.peer_chunk), "--measures", args.measures]
    if args.peer_path:
        cmd += ["--peer-path", args.peer_path]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    return run_json_worker(cmd, args.threads, f"{extra} at N={n}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="5000", help="comma-separated stimulus counts, e.g. 5000,20000,50000,200000")
    p.add_argument("--measures", default=",".join(MEASURES), help="comma-separated measures to time, of ii,2afc,mis")
    p.add_argument("--units", type=int, default=1280)
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="threads per worker process (OMP_NUM_THREADS, torch)")
    p.add_argument("--matrix-max", type=int, default=20000, help="largest N the full-matrix path is run at")
    p.add_argument("--peer-path", default=None, help="folder with MachInterp's mis.py and metric.py")
    p.add_argument("--peer-chunk", type=int, default=128)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.txt"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    p.add_argument("--method", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    measures = args.measures.split(",")
    if not set(measures) <= set(MEASURES):
        raise SystemExit(f"--measures takes some of {','.join(MEASURES)}, got {args.measures!r}")
    load = os.getloadavg()
    lines = [f"# superpos.measures at scale (blockwise vs full matrix), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"# machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} "
             f"/ {load[2]:.1f} at start (1 / 5 / 15 min); {args.threads} thread(s) per worker; device: {args.device}",
             f"# data: random unit-norm embeddings d={D}, {args.units} units (embedding read-outs + noise); "
             f"{args.n_boot} bootstrap draws; MIS K={K}, N={N_TASKS}, quantile={QUANTILE}; "
             f"full matrix up to N={args.matrix_max}; MachInterp: {'yes' if args.peer_path else 'not run (no --peer-path)'}",
             f"{'N':>8} {'measure':<16} {'seconds':>9} {'peak MB':>9}  (peak: one call in a fresh process, above its inputs)"]
    print("\n".join(lines), flush=True)
    for n in sizes:
        timed = run_worker(args, n, worker="time")
        jobs = [(m, meth) for m in measures for meth in ["blockwise"] + (["matrix"] if n <= args.matrix_max else [])]
        jobs += [("peer", "machinterp")] if args.peer_path else []
        for m, meth in jobs:
            peak = run_worker(args, n, worker="peak", measure=m, method=meth or "")
            name = f"{'mis' if m == 'peer' else m} {meth}"
            line = f"{n:>8} {name:<16} {timed['seconds'][name]:>9.3f} {peak['peak_mb']:>9.1f}"
            lines.append(line)
            print(line, flush=True)
        total = sum(timed["seconds"][f"{m} blockwise"] for m in measures)
        extra = [f"#   N={n}: {'+'.join(measures)} blockwise {total:.2f} s; inputs {peak['inputs_mb']:.0f} MB RSS; "
                 + "; ".join(f"{k} {v}" for k, v in timed["ratios"].items()), "#   " + timed["how"]]
        lines += extra
        print("\n".join(extra), flush=True)
    load = os.getloadavg()
    lines.append(f"# load average at end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
