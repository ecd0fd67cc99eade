"""Speed of superpos.geometry's own numpy code against Geomstats (numpy backend), same inputs.

    python benchmarks/geometry.py                 # small inputs
    python benchmarks/geometry.py --size large    # 4x larger sets

Each line: the quantity, Geomstats seconds, superpos seconds, the ratio, and the largest difference
between the two results (they must agree to 1e-6). The spherical k-means (torch, CPU or GPU) against
Geomstats's RiemannianKMeans is benchmarked with the direction finders (`benchmarks/directions.py`).
"""
import argparse
import time

import numpy as np

from superpos.geometry import manifolds as geo
from superpos.geometry.comparison import DirectionSetComparison


def timed(fn, repeat=3):
    """Best wall time of `repeat` calls, and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(size="small"):
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
    cases = {
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
    print(f"{'quantity':58s} {'geomstats s':>12s} {'superpos s':>11s} {'ratio':>8s} {'max diff':>9s}")
    for name, (slow, fast) in cases.items():
        t_slow, r_slow = timed(slow, repeat=1)
        t_fast, r_fast = timed(fast)
        diff = np.max(np.abs(np.asarray(r_slow) - np.asarray(r_fast)))
        print(f"{name:58s} {t_slow:12.4f} {t_fast:11.4f} {t_slow / t_fast:8.1f} {diff:9.1e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=["small", "large"])
    args = parser.parse_args()
    main(args.size)
