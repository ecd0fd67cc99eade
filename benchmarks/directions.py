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
from superpos.directions.kmeans import SphericalKMeans, spherical_objective
from timing import compare


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
    args = p.parse_args(argv)

    lines = []
    def report(text):
        print(text, flush=True)
        lines.append(text)

    report(f"# directions benchmark: n={args.n} d={args.d} k={args.k} latents={args.latents} "
           f"seed={args.seed}")
    report(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
           f"torch threads {torch.get_num_threads()}, device {args.device or 'auto'}"
           + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
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
