"""Speed and memory of superpos.measures (II, 2-AFC, MIS) against the public MIS implementation.

Data: all 1,280 channels of EfficientNet-Lite0's last feature layer (`_bn1`, spatial mean) on
`--n-stimuli` natural stimuli (default 5,000, 64 px), and an 840-dimensional perceptual embedding
(EfficientNet-Lite2, `PerceptualSimilarity(grid=1)`: unit-norm, so its inner product is the cosine
similarity the peer's DreamSim metric computes). Activations and embeddings are computed once and
cached in the superpos cache.

Peer: klindtlab/MachInterp `mis.py` (MIT), loaded from `--peer-path` (a folder holding its `mis.py`
and `metric.py`; never vendored into superpos), e.g.

    git --git-dir /work/.mirror/klindtlab+MachInterp/repo archive HEAD mis.py metric.py | tar -x -C /tmp/machinterp
    python benchmarks/interpretability.py --peer-path /tmp/machinterp            # CPU
    python benchmarks/interpretability.py --peer-path /tmp/machinterp --device cuda

The peer runs `query_explanation_generation` + `calc_MIS_set` with a cosine similarity (as its
DreamSim metric) on the same embeddings and activations. It materialises units x N x (K+1) x d
tensors (about 7 MB per unit here), so it is run on `--peer-chunk` units at a time; its total time is
the sum over chunks and, with `--peer-units` < 1,280, extrapolated linearly (it loops over units).
superpos's `mis_from_tasks` is run on the peer's own sampled tasks (its `subset_sampling` +
`sort_subset_id` with the same seed) and must give identical scores (the script fails otherwise).
Timed alike: each measurement runs in a fresh subprocess that first warms the method up (one untimed
call on the first 16 units), then times it; `--rounds` rounds alternate which of the peer and
superpos's MIS runs first, one thread each (`OMP_NUM_THREADS=1`, torch 1 thread, set for the
workers); seconds are the median round, the speed-up the median per-round ratio [min-max]. "peak MB"
is the peak resident memory above what the process held after loading the inputs.
Results are printed and written to benchmarks/results/interpretability.txt.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from timing import peak_mb, reset_peak, rss_mb, run_json_worker

K, N, QUANTILE, SEED = 9, 100, 0.2, 0   # MachInterp's K, N, quantile = superpos's n_references, n_tasks, extreme_quantile


def inputs(n_stimuli: int, size: int, device: str) -> Path:
    """Activations (S x 1280) and perceptual embeddings (S x 840), cached as one .pt file."""
    from superpos.core import cache_dir
    path = cache_dir("benchmarks") / f"interpretability_{n_stimuli}_{size}.pt"
    if path.exists():
        return path
    from superpos.networks.extraction import extract
    from superpos.networks.models import load_model
    from superpos.stimuli.natural import natural_stimuli
    from superpos.measures.similarity import PerceptualSimilarity
    stimuli = natural_stimuli(n_stimuli, size=size, seed=0)
    t = time.perf_counter()
    acts = extract(load_model("efficientnet_lite0", input_size=None), "_bn1", stimuli, device=device, progress=False)
    t_acts = time.perf_counter() - t
    t = time.perf_counter()
    emb = PerceptualSimilarity(grid=1).embed(stimuli, device=device).cpu()
    t_emb = time.perf_counter() - t
    torch.save({"acts": torch.as_tensor(acts.values), "emb": emb, "ids": [str(i) for i in stimuli.ids],
                "t_acts": t_acts, "t_emb": t_emb}, path)
    return path


def _load(path, device):
    data = torch.load(path, weights_only=True)
    return data["acts"].to(device), data["emb"].to(device), data


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def worker(method: str, path: str, device: str, peer_path: str | None, units: int, chunk: int) -> dict:
    """One timed measurement in this (fresh) process; returns a JSON-able dict."""
    import xarray as xr
    acts, emb, data = _load(path, device)
    acts = acts[:, :units]
    ids = np.asarray(data["ids"])
    base = rss_mb()
    reset_peak()
    out = {"method": method, "units": int(acts.shape[1])}
    if method in ("superpos_mis", "superpos_ii", "superpos_2afc"):
        from superpos.measures.index import interpretability_index
        from superpos.measures.mis import mis
        from superpos.measures.twoafc import psychophysics_2afc
        t = time.perf_counter()
        gram = emb @ emb.T
        _sync(device)
        out["gram_s"] = time.perf_counter() - t
        gram_da = xr.DataArray(gram.cpu().numpy(), dims=("stimulus", "stimulus_other"),
                               coords={"stimulus": ids, "stimulus_other": ids}, attrs={"distance_kind": "one_minus"})
        resp = xr.DataArray(acts.cpu().numpy(), dims=("stimulus", "unit"), coords={"stimulus": ids})
        fn = {"superpos_mis": lambda: mis(resp, None, gram_da, n_references=K, n_tasks=N, extreme_quantile=QUANTILE,
                                          n_boot=1000, device=device),
              "superpos_ii": lambda: interpretability_index(resp, None, gram_da, n_boot=1000, device=device),
              "superpos_2afc": lambda: psychophysics_2afc(resp, None, gram_da, n_boot=1000, device=device)}[method]
        warm = {"superpos_mis": lambda: mis(resp[:, :16], None, gram_da, n_references=K, n_tasks=N,
                                            extreme_quantile=QUANTILE, n_boot=1000, device=device),
                "superpos_ii": lambda: interpretability_index(resp[:, :16], None, gram_da, n_boot=1000, device=device),
                "superpos_2afc": lambda: psychophysics_2afc(resp[:, :16], None, gram_da, n_boot=1000, device=device)}
        warm[method]()
        reset_peak()
        t = time.perf_counter()
        res = fn()
        _sync(device)
        out["measure_s"] = time.perf_counter() - t
        out["mean_score"] = float(res.score.mean())
    elif method in ("peer", "superpos_on_peer_tasks"):
        sys.path.insert(0, peer_path)
        import mis as peer
        from superpos.measures.mis import mis_from_tasks
        y = acts.T.contiguous().float()          # units x stimuli, as the peer expects
        gram = emb @ emb.T

        def cos(a, b):  # the peer's DreamSim metric: cosine of embeddings (1-D inputs become rows)
            a = a.unsqueeze(0) if a.ndim == 1 else a
            b = b.unsqueeze(0) if b.ndim == 1 else b
            return torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
        scores, total = [], 0.0
        if method == "peer":  # warm-up: one untimed call on 16 units
            q, e = peer.query_explanation_generation(SEED, emb, y[:16], K=K, N=N, quantile=QUANTILE, device=device)
            peer.calc_MIS_set(q, e, cos, alpha=None)
        else:
            top, bottom = peer.subset_sampling(SEED, y[:16], K=K, N=N, quantile=QUANTILE, device=device)
            top, bottom = peer.sort_subset_id(top, bottom, y[:16])
            mis_from_tasks(gram, top.to(device), bottom.to(device), alpha=None)
        reset_peak()
        for start in range(0, y.shape[0], chunk):
            yc = y[start:start + chunk]
            if method == "peer":
                t = time.perf_counter()
                q, e = peer.query_explanation_generation(SEED, emb, yc, K=K, N=N, quantile=QUANTILE, device=device)
                s = peer.calc_MIS_set(q, e, cos, alpha=None)
                _sync(device)
                total += time.perf_counter() - t
                del q, e
            else:  # the peer's own task draws, then superpos scores them (timed: scoring only)
                top, bottom = peer.subset_sampling(SEED, yc, K=K, N=N, quantile=QUANTILE, device=device)
                top, bottom = peer.sort_subset_id(top, bottom, yc)
                t = time.perf_counter()
                s, _ = mis_from_tasks(gram, top.to(device), bottom.to(device), alpha=None)
                _sync(device)
                total += time.perf_counter() - t
            scores.append(s.cpu())
        out["measure_s"] = total
        out["scores"] = torch.cat(scores).tolist()
    out["peak_mb"] = peak_mb() - base
    return out


def run_worker(args, method, units, chunk) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--inputs", str(args.inputs_path), "--device", args.device,
           "--units", str(units), "--chunk", str(chunk)]
    if args.peer_path:
        cmd += ["--peer-path", args.peer_path]
    return run_json_worker(cmd, args.threads, method)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-stimuli", type=int, default=5000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--peer-path", default=None, help="folder with MachInterp's mis.py and metric.py")
    p.add_argument("--peer-units", type=int, default=1280, help="units the peer is timed on (extrapolated to 1280)")
    p.add_argument("--peer-chunk", type=int, default=128, help="units per peer call (its memory grows with this)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds of the peer and superpos's MIS")
    p.add_argument("--threads", type=int, default=1, help="threads of every worker (OMP_NUM_THREADS)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "interpretability.txt"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--inputs", default=None, help=argparse.SUPPRESS)
    p.add_argument("--units", type=int, default=1280, help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=128, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
        print(json.dumps(worker(args.worker, args.inputs, args.device, args.peer_path, args.units, args.chunk)))
        return
    args.inputs_path = inputs(args.n_stimuli, args.size, args.device)
    data = torch.load(args.inputs_path, weights_only=True)
    n_units = data["acts"].shape[1]
    lines = [f"# superpos.measures (II, 2-AFC, MIS) benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"# machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), "
             f"{args.threads} thread(s) per worker process (OMP_NUM_THREADS, torch); "
             f"device: {args.device}",
             f"# data: EfficientNet-Lite0 _bn1, {n_units} units x {data['acts'].shape[0]} stimuli ({args.size} px); "
             f"embedding: PerceptualSimilarity(grid=1), d={data['emb'].shape[1]}; MIS n_references (K)={K}, "
             f"n_tasks (N)={N}, extreme_quantile={QUANTILE}, alpha=None",
             f"# inputs (once, cached): activations {data.get('t_acts', float('nan')):.1f} s, "
             f"embeddings {data.get('t_emb', float('nan')):.1f} s"]
    ours = {m: run_worker(args, m, n_units, 0) for m in ("superpos_mis", "superpos_ii", "superpos_2afc")}
    lines.append(f"{'method':44s} {'units':>6s} {'seconds':>9s} {'peak MB':>9s}  note")
    gram_s = ours["superpos_mis"]["gram_s"]
    for m, r in ours.items():
        lines.append(f"{m + ' (Gram + measure, 1000 boot)':44s} {r['units']:6d} {gram_s + r['measure_s']:9.3f} "
                     f"{r['peak_mb']:9.1f}  Gram {gram_s:.3f} s; mean score {r['mean_score']:.4f}")
    if args.peer_path:
        units = min(args.peer_units, n_units)
        scale = n_units / units
        peer_s, ours_s, peer = [], [], None
        for r in range(args.rounds):
            for m in (("peer", "superpos_mis") if r % 2 == 0 else ("superpos_mis", "peer")):
                if m == "peer":
                    peer = run_worker(args, "peer", units, args.peer_chunk)
                    peer_s.append(peer["measure_s"] * scale)
                else:
                    ours_s.append(run_worker(args, "superpos_mis", n_units, 0)["measure_s"])
        same = run_worker(args, "superpos_on_peer_tasks", units, args.peer_chunk)
        diff = float(np.max(np.abs(np.asarray(peer["scores"]) - np.asarray(same["scores"]))))
        if diff > 1e-5:
            raise SystemExit(f"superpos's MIS on the peer's tasks differs from the peer by {diff:.2e}")
        peer_full = statistics.median(peer_s)
        note = "" if units == n_units else f" (timed on {units} units, extrapolated x{scale:.1f})"
        lines.append(f"{'peer MachInterp MIS (chunks of %d units)' % args.peer_chunk:44s} {n_units:6d} "
                     f"{peer_full:9.3f} {peer['peak_mb']:9.1f}  {1000 * peer_full / n_units:.1f} ms/unit{note}")
        lines.append(f"{'superpos mis_from_tasks on peer tasks (score)':44s} {units:6d} {same['measure_s']:9.3f} "
                     f"{same['peak_mb']:9.1f}  max |score diff| vs peer = {diff:.2e}")
        ratios = [p_ / o for p_, o in zip(peer_s, ours_s)]
        with_gram = [p_ / (o + gram_s) for p_, o in zip(peer_s, ours_s)]
        lines.append(f"# MIS speed-up at {n_units} units, peer / superpos `mis` (ranking, task sampling, scoring, "
                     f"1000-draw bootstrap), median of {args.rounds} alternated rounds [min-max]: "
                     f"{statistics.median(ratios):.1f}x [{min(ratios):.1f}-{max(ratios):.1f}] without the Gram "
                     f"matrix (computed once per stimulus set, shared by all measures and response sets), "
                     f"{statistics.median(with_gram):.1f}x [{min(with_gram):.1f}-{max(with_gram):.1f}] including it")
        lines.append(f"# rounds (s): peer {', '.join(f'{v:.2f}' for v in peer_s)}; superpos mis "
                     f"{', '.join(f'{v:.3f}' for v in ours_s)}")
        lines.append("# memory: the peer's grows with chunk x N x (K+1) x d (units per call x tasks x images x embedding); "
                     "superpos's with the S x S Gram matrix plus units x N x (K+1) indices")
    lines.append(f"# timed alike: a fresh process per measurement, one untimed warm-up call (16 units) then the timed "
                 f"call; {args.threads} thread(s) each; load average {os.getloadavg()[0]:.1f} / "
                 f"{os.getloadavg()[1]:.1f} (1 / 5 min, {os.cpu_count()} cores, shared machine)")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
