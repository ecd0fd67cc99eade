"""Speed of superpos.disentangle.metrics.mcc / mig on 100k samples x 10 latents, against reference recipes.

The references are the straightforward implementations used by the published code:
- MCC (slow_disentanglement `mcc_metric`): `scipy.stats.spearmanr` / `np.corrcoef` on the stacked
  (factors, latents) matrix, then the Hungarian assignment on -|corr| (scipy's, instead of the
  pure-python `munkres` package the reference uses, which would only make the reference slower);
- MIG (disentanglement_lib `_compute_mig`): `np.histogram` + `np.digitize` per latent, then
  `sklearn.metrics.mutual_info_score` for every (latent, factor) pair.
Both are checked to give the same value as superpos (the script fails otherwise). The metrics are
numpy code (no GPU path). Both sides are timed alike (`benchmarks/timing.py`): one warm-up call each,
then `--rounds` alternated rounds, one BLAS thread each (`--threads`); seconds are the median round, the
speed-up (reference / superpos) the median of the per-round ratios with its min-max.

    python benchmarks/metrics.py            # MCC and MIG, 100k x 10 (seconds)
    python benchmarks/metrics.py --full     # also every representation-only metric, slowvae preset

Results are printed and written to benchmarks/results/metrics.txt.
"""
import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr
from sklearn.metrics import mutual_info_score

from superpos.disentangle.metrics import mcc, mig
from superpos.disentangle.sampled_metrics import REPRESENTATION_METRICS, evaluate
from superpos.core import atomic_write
from timing import compare


def reference_mcc(y, z, method):
    k = y.shape[1]
    if method == "spearman":
        corr = spearmanr(y, z).statistic[:k, k:]
    else:
        corr = np.corrcoef(y.T, z.T)[:k, k:]
    rows, cols = linear_sum_assignment(-np.abs(corr))
    return np.abs(corr[rows, cols]).mean()


def reference_mig(y, z, n_bins=20):
    codes = [np.digitize(col, np.histogram(col, n_bins)[1][:-1]) for col in z.T]
    m = np.array([[mutual_info_score(f, c) for f in y.T] for c in codes])
    h = np.array([mutual_info_score(f, f) for f in y.T])
    s = np.sort(m, axis=0)[::-1]
    return np.mean((s[0] - s[1]) / h)


def best_time(fn, repeats):
    """(best wall time over `repeats` runs, last value): only for the superpos-only `--full` lines."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-latents", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides (0: library default)")
    parser.add_argument("--full", action="store_true",
                        help="also time evaluate(preset='slowvae') (DCI with the lasso variant)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics.txt"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, k = args.n_samples, args.n_latents
    # dSprites-like discrete factors (32 values), a mixed and noisy linear code
    n_all = max(n, 105_000) if args.full else n  # the slowvae preset's explicitness uses 105k
    y_all = rng.integers(0, 32, size=(n_all, k)).astype(float)
    mixing = np.eye(k) + 0.3 * rng.normal(size=(k, k))
    z_all = y_all @ mixing + 2.0 * rng.normal(size=(n_all, k))
    y, z = y_all[:n], z_all[:n]

    lines = [f"# superpos.disentangle.metrics benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
             f"(shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
             "device: cpu (numpy; no GPU path)",
             f"# data: {n} samples x {k} factors (32 values) x {k} latents",
             f"{'metric':<22}{'superpos s':>12}{'reference s':>13}{'speed-up [min-max]':>22}"
             f"{'value':>10}{'|diff|':>10}"]
    cases = [("mcc spearman", lambda: mcc(y, z), lambda: reference_mcc(y, z, "spearman")),
             ("mcc pearson", lambda: mcc(y, z, method="pearson"),
              lambda: reference_mcc(y, z, "pearson")),
             ("mig (20 bins)", lambda: mig(y, z), lambda: reference_mig(y, z))]
    timings = None
    for name, ours, ref in cases:
        timings = compare({"superpos": ours, "reference": ref}, rounds=args.rounds, warmup=1,
                          n_threads=args.threads or None)
        v_ours, v_ref = timings.results["superpos"], timings.results["reference"]
        if not abs(v_ours - v_ref) < 1e-9:
            raise SystemExit(f"{name}: superpos {v_ours} != reference {v_ref}")
        lines.append(f"{name:<22}{timings.median('superpos'):>12.3f}{timings.median('reference'):>13.3f}"
                     f"{timings.ratio('reference', 'superpos'):>22}{v_ours:>10.4f}{abs(v_ours - v_ref):>10.1e}")
        print(lines[-1], flush=True)
    lines.append(timings.how_timed())
    if args.full:
        lines.append(f"# evaluate(preset='slowvae', overrides={{'dci': {{'model': 'lasso'}}}}) on {n_all} "
                     "samples, one run each:")
        for metric in REPRESENTATION_METRICS:
            t, v = best_time(lambda: evaluate(y_all, z_all, preset="slowvae", metrics=metric,
                                                overrides={"dci": {"model": "lasso"}}), 1)
            shown = ", ".join(f"{key}={val:.3f}" for key, val in v.items())
            lines.append(f"{metric:<22}{t:>12.3f}   {shown}")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write(args.out, lambda f: f.write(text), mode="w")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
