"""Benchmark: superpos SphericalKMeans versus scikit-learn MiniBatchKMeans (the reference method), and
SparseAutoencoder training throughput.

Data: synthetic "CNN-like" activations, non-negative sparse mixtures of `--latents` non-negative
latent directions (Zipf-distributed usage, a shared positive offset, noise). Both k-means run on
unit-normalised rows with k-means++ seeding; the reference runs to its own convergence with its
defaults, as the reference code does. Quality is one objective computed the same way for both: the
mean cosine between each row and its nearest normalised centroid (`spherical_objective`); superpos's
must be equal or better (the check that both solve the same problem).
superpos runs with bfloat16 similarity matmuls (`--precision`) and again in float32, the peer's
precision, one epoch of mini-batches (4096 rows) and no extra full Lloyd update (`--max-iter 0`),
the settings that suit a CPU; on a GPU try `--max-iter 5`. All three fits are timed alike
(`benchmarks/timing.py`): the same warm-up (each fit once on a tenth of the rows), then `--rounds`
alternated rounds, one thread each (`--threads`); the speed-up is the median per-round ratio [min-max].

    python benchmarks/directions.py                        # full size: 200,000 x 1,280, k = 1,280
    python benchmarks/directions.py --n 50000 --k 640      # a smaller run
    python benchmarks/directions.py --device cuda          # the GPU number
    python benchmarks/directions.py --chunked --n 50000    # chunked fit from a zarr store vs in memory

With `--chunked` the data are written to a zarr store (chunks of `--chunk` stimuli) and each fit runs
in its own worker process, alternating in-memory and chunked rounds: in memory the layer is read
whole (timed apart) and fitted; chunked, the dask-backed layer is fitted chunk by chunk from the
store (reading included). Each worker reports the fit's time and its peak RSS above the process's
footprint before the data were touched (imports done, warm-up fit run).
"""

import argparse
import os
import platform
import time

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import MiniBatchKMeans

from superpos.directions.sae import SparseAutoencoder
from superpos.directions.spherical import SphericalKMeans, spherical_objective
from timing import compare, peak_mb, reset_peak, rss_mb, run_json_worker


def synthetic_activations(n, d, n_latents=5000, active=6, seed=0):
    """Rows = sparse non-negative mixtures of non-negative latent directions, plus offset and noise."""
    rng = np.random.default_rng(seed)
    latents = rng.exponential(size=(n_latents, d)) * (rng.random((n_latents, d)) < 0.1)
    latents /= np.linalg.norm(latents, axis=1, keepdims=True) + 1e-12
    usage = 1.0 / np.arange(1, n_latents + 1) ** 0.8       # a few common latents, many rare ones
    per_row = rng.poisson(active, size=n).clip(1, None)
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.choice(n_latents, size=rows.size, p=usage / usage.sum())
    codes = sp.csr_matrix((rng.exponential(size=rows.size), (rows, cols)), shape=(n, n_latents))
    X = np.asarray(codes @ latents, dtype=np.float32)
    X += 0.05 * np.abs(rng.standard_normal((1, d), dtype=np.float32))  # shared offset
    X += 0.02 * rng.random((n, d), dtype=np.float32)                    # noise
    return X


def timed(fn):
    """`fn()`, its wall time and the CPU time of this process (all threads) it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _finder(args, method):
    """The finder a chunked-benchmark worker fits (the same settings in memory and over chunks)."""
    if method == "sae":
        return SparseAutoencoder(args.k, k=32, n_epochs=1, batch_size=1024, init="random",
                                 fit_subset=min(args.sae_rows, args.n), device=args.device, random_state=args.seed)
    return SphericalKMeans(args.k, max_iter=args.max_iter, batch_size=args.batch_size, n_batches=args.n_batches,
                           precision=args.precision, device=args.device, random_state=args.seed)


def chunked_worker(args):
    """One timed fit (`--worker memory|chunked`, `--method`) on the store; prints a JSON line."""
    import json
    import xarray as xr
    torch.set_num_threads(args.threads or torch.get_num_threads())
    warm = np.random.default_rng(0).random((2 * args.k, args.d), dtype=np.float32)
    _finder(argparse.Namespace(**{**vars(args), "n": len(warm), "sae_rows": len(warm)}), args.method).fit(warm)
    del warm
    base = rss_mb()
    reset_peak()
    layer = xr.open_zarr(args.store, consolidated=False)["activations"]
    t_read = 0.0
    if args.worker == "memory":
        layer, t_read, _ = timed(lambda: layer.load())
    finder, t_fit, _ = timed(lambda: _finder(args, args.method).fit(layer))
    print(json.dumps({"fit_s": t_fit, "read_s": t_read, "peak_mb": peak_mb() - base,
                      "components": finder.components_.tolist() if args.method != "sae" else None,
                      "loss": getattr(finder, "loss_curve_", [None])[-1],
                      "objective": getattr(finder, "objective_", None)}))


def chunked_benchmark(args, report):
    """In-memory vs chunked fits from a zarr store, alternated worker rounds; time ratio and peak RSS."""
    import statistics
    import sys
    import tempfile
    import xarray as xr
    X, t_data, _ = timed(lambda: synthetic_activations(args.n, args.d, args.latents, seed=args.seed))
    folder = tempfile.mkdtemp(prefix="directions_chunks_")
    store = os.path.join(folder, "acts.zarr")
    xr.DataArray(X, dims=("stimulus", "unit"), name="activations").chunk({"stimulus": args.chunk}).to_dataset().to_zarr(
        store, mode="w", consolidated=False)
    report(f"data: {X.shape} float32, {X.nbytes / 1e6:.0f} MB, generated in {t_data:.1f} s; zarr store of "
           f"{-(-args.n // args.chunk)} chunks of {args.chunk} stimuli ({args.chunk * args.d * 4 / 1e6:.1f} MB each)")
    base_cmd = [sys.executable, __file__, "--store", store, "--n", str(args.n), "--d", str(args.d), "--k", str(args.k),
                "--seed", str(args.seed), "--precision", args.precision, "--batch-size", str(args.batch_size),
                "--max-iter", str(args.max_iter), "--threads", str(args.threads), "--sae-rows", str(args.sae_rows)]
    base_cmd += [] if args.n_batches is None else ["--n-batches", str(args.n_batches)]
    base_cmd += [] if args.device is None else ["--device", args.device]
    for method in args.methods.split(","):
        runs = {"memory": [], "chunked": []}
        for r in range(args.rounds):
            for side in (["memory", "chunked"] if r % 2 == 0 else ["chunked", "memory"]):
                runs[side].append(run_json_worker(base_cmd + ["--worker", side, "--method", method],
                                                  args.threads or 1, f"{method} {side} worker"))
        med = {side: {key: statistics.median(run[key] for run in runs[side]) for key in ("fit_s", "read_s", "peak_mb")}
               for side in runs}
        ratios = [c["fit_s"] / m["fit_s"] for m, c in zip(runs["memory"], runs["chunked"])]
        total = [c["fit_s"] / (m["fit_s"] + m["read_s"]) for m, c in zip(runs["memory"], runs["chunked"])]
        name = ("SparseAutoencoder (TopK k=32, 1 epoch, fit_subset=" + str(min(args.sae_rows, args.n)) + ")"
                if method == "sae" else f"SphericalKMeans({args.precision}, batch {args.batch_size}, max_iter {args.max_iter})")
        report(f"{name}:")
        report(f"  in memory  fit {med['memory']['fit_s']:7.2f} s (+ read {med['memory']['read_s']:.2f} s)  "
               f"peak RSS +{med['memory']['peak_mb']:7.0f} MB   rounds " + ", ".join(f"{m['fit_s']:.1f}" for m in runs["memory"]))
        report(f"  chunked    fit {med['chunked']['fit_s']:7.2f} s (reading included)  "
               f"peak RSS +{med['chunked']['peak_mb']:7.0f} MB   rounds " + ", ".join(f"{c['fit_s']:.1f}" for c in runs["chunked"]))
        report(f"  time chunked / in memory: {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
               f"(fit only), {statistics.median(total):.2f}x (in memory incl. its read); peak RSS ratio "
               f"{med['chunked']['peak_mb'] / med['memory']['peak_mb']:.2f}")
        if method != "sae":
            quality = {side: spherical_objective(X, np.asarray(runs[side][-1]["components"])) for side in runs}
            report(f"  objective (mean cosine to the nearest direction): in memory {quality['memory']:.4f}, "
                   f"chunked {quality['chunked']:.4f}")
        else:
            report(f"  final training loss: in memory {runs['memory'][-1]['loss']:.4f}, chunked {runs['chunked'][-1]['loss']:.4f}")
    import shutil
    shutil.rmtree(folder, ignore_errors=True)
    report(f"# {args.rounds} alternated rounds, one worker process per fit, {args.threads or 1} thread(s); "
           f"peak RSS above the worker's footprint after imports and a warm-up fit; load average "
           + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " at the end")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="rows (stimuli)")
    p.add_argument("--d", type=int, default=1280, help="units")
    p.add_argument("--k", type=int, default=1280, help="directions (clusters)")
    p.add_argument("--latents", type=int, default=5000, help="latent directions of the synthetic data")
    p.add_argument("--device", default=None, help="torch device of superpos (default: cuda > mps > cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="bfloat16", help="SphericalKMeans matmul precision")
    p.add_argument("--batch-size", type=int, default=4096, help="SphericalKMeans mini-batch size")
    p.add_argument("--n-batches", type=int, default=None, help="mini-batch steps (default one epoch)")
    p.add_argument("--max-iter", type=int, default=0, help="full Lloyd updates after the mini-batches")
    p.add_argument("--skip-reference", action="store_true", help="do not run MiniBatchKMeans")
    p.add_argument("--rounds", type=int, default=3, help="alternated timing rounds")
    p.add_argument("--threads", type=int, default=1, help="threads for both sides (0: library defaults)")
    p.add_argument("--sae-rows", type=int, default=16_384, help="rows for the SAE throughput run")
    p.add_argument("--output", default=None, help="also append the report to this file")
    p.add_argument("--chunked", action="store_true", help="chunked fit from a zarr store vs the in-memory fit")
    p.add_argument("--chunk", type=int, default=4096, help="stimuli per zarr chunk (--chunked)")
    p.add_argument("--methods", default="spherical_kmeans,sae", help="finders of --chunked (comma-separated)")
    p.add_argument("--worker", choices=["memory", "chunked"], help=argparse.SUPPRESS)
    p.add_argument("--method", default="spherical_kmeans", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return chunked_worker(args)

    lines = []
    def report(text):
        print(text, flush=True)
        lines.append(text)

    report(f"# directions benchmark: n={args.n} d={args.d} k={args.k} latents={args.latents} "
           f"seed={args.seed}")
    report(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
           f"torch threads {torch.get_num_threads()}, device {args.device or 'auto'}"
           + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
    if args.chunked:
        chunked_benchmark(args, report)
        if args.output:
            with open(args.output, "a") as f:
                f.write("\n".join(lines) + "\n\n")
        return
    X, t_data, _ = timed(lambda: synthetic_activations(args.n, args.d, args.latents, seed=args.seed))
    report(f"data: {X.shape} float32, {X.nbytes / 1e9:.2f} GB, generated in {t_data:.1f} s")

    def ours(precision, rows):
        return lambda: SphericalKMeans(args.k, max_iter=args.max_iter, batch_size=args.batch_size,
                                       n_batches=args.n_batches, precision=precision, device=args.device,
                                       random_state=args.seed).fit(X[:rows])

    def reference(rows):
        def fit():
            Xn = X[:rows] / np.linalg.norm(X[:rows], axis=1, keepdims=True)
            return MiniBatchKMeans(n_clusters=args.k, init="k-means++", random_state=args.seed).fit(Xn)
        return fit
    precisions = list(dict.fromkeys([args.precision, "float32"]))  # the peer computes in float32
    warm_rows = max(args.k, args.n // 10)
    cases = {f"superpos {p}": ours(p, args.n) for p in precisions}
    warm = {f"superpos {p}": ours(p, warm_rows) for p in precisions}
    if not args.skip_reference:
        cases["sklearn"], warm["sklearn"] = reference(args.n), reference(warm_rows)
    timings = compare(cases, rounds=args.rounds, warmup_cases=warm, n_threads=args.threads or None)
    objective = {name: spherical_objective(X, getattr(fit, "components_", getattr(fit, "cluster_centers_", None)))
                 for name, fit in timings.results.items()}
    for name in cases:
        note = (f"Lloyd updates {timings.results[name].n_iter_}" if name != "sklearn" else
                f"steps {timings.results[name].n_steps_}, epochs {timings.results[name].n_iter_}")
        report(f"{name:<20} {timings.median(name):8.2f} s (rounds " + ", ".join(f"{t:.1f}" for t in timings.rounds[name])
               + f")  objective {objective[name]:.4f}  ({note})")
    if not args.skip_reference:
        for p in precisions:
            diff = objective[f"superpos {p}"] - objective["sklearn"]
            report(f"speed-up superpos {p} vs sklearn (float32): {timings.ratio('sklearn', f'superpos {p}')}; "
                   f"objective difference (ours - reference) {diff:+.4f}" + ("" if diff > -0.002 else "  WORSE"))
    report(f"# superpos: SphericalKMeans(batch {args.batch_size}, max_iter {args.max_iter}, one epoch of mini-batches); "
           "sklearn: MiniBatchKMeans defaults (k-means++) on unit-normalised rows (the normalisation is timed)")
    report(timings.how_timed() + f"; warm-up = the same fit on the first {warm_rows} rows")

    n_sae = min(args.sae_rows, args.n)
    if n_sae > 0:
        sae = SparseAutoencoder(args.k, k=32, n_epochs=1, batch_size=1024, init="random",
                                device=args.device, random_state=args.seed)
        _, t_sae, _ = timed(lambda: sae.fit(X[:n_sae]))
        report(f"SparseAutoencoder (TopK k=32, {args.k} latents, batch 1024, 1 epoch on {n_sae} rows): "
               f"{n_sae / t_sae:,.0f} samples/s ({t_sae:.1f} s incl. validation and initialisation)")
    if args.output:
        with open(args.output, "a") as f:
            f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
