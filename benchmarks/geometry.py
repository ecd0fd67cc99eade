"""Speed of superpos.geometry's own numpy code against Geomstats (numpy backend), same inputs, timed alike.

    python benchmarks/geometry.py                 # small inputs
    python benchmarks/geometry.py --size large    # 4x larger sets

Both sides get the same treatment (`benchmarks/timing.py`): one warm-up call each, then alternated
rounds (order swapped each round), each round >= 50 ms of back-to-back calls, one BLAS thread each
(`--threads`); seconds are the median round per call, the ratio (Geomstats / superpos) the median of
the per-round ratios with its min-max. Each line also gives the largest difference between the two
results (they must agree to 1e-6; the script fails otherwise). The spherical k-means (torch, CPU or
GPU) against Geomstats's RiemannianKMeans is benchmarked with the direction finders
(`benchmarks/directions.py`). Results: benchmarks/results/geometry.txt.
"""
import argparse
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from superpos.geometry import manifolds as geo
from superpos.geometry.comparison import DirectionSetComparison
from timing import compare


def cases_for(size):
    rng = np.random.default_rng(0)
    scale = {"small": 1, "large": 4}[size]
    d = 128 * scale
    a = geo.as_directions(rng.standard_normal((200 * scale, d)))
    b = geo.as_directions(rng.standard_normal((200 * scale, d)))
    sphere = geo.hypersphere(d)
    blob = geo.as_directions(np.eye(d)[0] + 0.4 * rng.standard_normal((500 * scale, d)))
    sub_a, sub_b = rng.standard_normal((16, 64)), rng.standard_normal((16, 64))
    grass = geo.grassmannian(64, 16)
    near = geo.as_directions(a[:32] + 0.2 * rng.standard_normal((32, d)))
    return {
        f"geodesic distances {len(a)} pairs, d={d}": (
            lambda: sphere.metric.dist(a, b), lambda: geo.geodesic_distance(a, b)),
        f"pairwise distances {len(a)}x{len(b)}, d={d}": (
            lambda: np.stack([sphere.metric.dist(row, b) for row in a]), lambda: geo.pairwise_geodesic_distances(a, b)),
        f"Frechet mean of {len(blob)} points, d={d}": (
            lambda: geo.geomstats_frechet_mean(blob), lambda: geo.frechet_mean(blob)),
        "Grassmannian distance, k=16, d=64": (
            lambda: grass.metric.dist(geo.grassmannian_point(sub_a), geo.grassmannian_point(sub_b)) / np.sqrt(2),
            lambda: geo.subspace_distance(sub_a, sub_b)),
        f"matched angles of 32 directions, d={d}": (
            lambda: DirectionSetComparison(n_permutations=0, backend="geomstats").fit(a[:32], near).matched_angles_,
            lambda: DirectionSetComparison(n_permutations=0).fit(a[:32], near).matched_angles_),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=["small", "large"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides (0: library default)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "geometry.txt"))
    args = parser.parse_args(argv)
    lines = [f"# superpos.geometry vs Geomstats (numpy backend), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{platform.machine()}, size {args.size}",
             f"{'quantity':48s} {'geomstats s':>12s} {'superpos s':>11s} {'ratio [min-max over rounds]':>28s} "
             f"{'max diff':>9s} {'calls/round':>12s}"]
    print("\n".join(lines), flush=True)
    timings = None
    for name, (slow, fast) in cases_for(args.size).items():
        timings = compare({"geomstats": slow, "superpos": fast}, rounds=args.rounds, warmup=1,
                          n_threads=args.threads or None)
        diff = float(np.max(np.abs(np.asarray(timings.results["geomstats"]) - np.asarray(timings.results["superpos"]))))
        if not diff < 1e-6:
            raise SystemExit(f"{name}: the two results differ by {diff:.2e}")
        lines.append(f"{name:48s} {timings.median('geomstats'):12.5f} {timings.median('superpos'):11.5f} "
                     f"{timings.ratio('geomstats', 'superpos'):>28s} {diff:9.1e} "
                     f"{timings.number['geomstats']:>5d} / {timings.number['superpos']:<5d}")
        print(lines[-1], flush=True)
    lines.append(timings.how_timed())
    lines.append("# numpy only: no GPU path (the spherical k-means is benchmarked with the direction finders)")
    text = "\n".join(lines) + "\n"
    print(lines[-2])
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
