"""Where the time and memory of `superpos.analyses.cnn.cnn_analysis` go, at 1x, 2x and 4x the stimuli.

The run is the book page `52_cnn_analysis` at its defaults (EfficientNet-Lite0, pretrained and
untrained, the four default layers, units + kmeans, spherical_kmeans, sae, pca, ica, rotation with k
multiples 0.5, 1, 2, the perceptual similarity, II + 2-AFC + MIS, 5 references, 5 tasks, 200 bootstrap
draws, 96 px stimuli resized to the model's 224 px) except the number of stimuli: `--base` (default 400,
a third of the page's 1,200; the page's 2-AFC with 5 tasks needs at least 200 held-out stimuli) times
1, 2 and 4. On a loaded machine, `--input-size 96 --n-tasks 2 --base 160` is ~10x cheaper. Each size runs in a fresh process; the stages are timed
by wrapping the functions `cnn_analysis` calls:

- extraction: `load_model` + `extract` (both weights conditions),
- fitting: the direction finders' fit + transform (`_fit_directions`),
- matrix: `similarity_matrix` of the held-out stimuli (perceptual embedding + Gram matrix),
- scoring: `score_responses` (II, 2-AFC, MIS with their bootstraps),
- confounds: `top_source_fraction`, `source_balanced_index`, `participation_ratio`.

"peak MB" of a stage is the largest rise of the resident memory above its level when a call of that
stage started (VmHWM reset per call); "run peak" is the process's peak. The growth exponent of a
stage between 1x and 4x (t4 / t1 = 4^e) is compared with its inherent cost: extraction, fitting,
scoring and confounds linear in the stimuli (the scored directions are fixed by the layers' widths),
the matrix between linear (embedding) and quadratic (Gram matrix). A stage whose exponent exceeds its
inherent one by more than 0.3 is flagged.

`--bf16` (default on) also times `extract(..., precision="bfloat16")` against fp32 at the 1x size
on `--bf16-n` stimuli (the pretrained model, alternated rounds, `benchmarks/timing.py`) and reports the per-unit
correlation of the two activations.

    python benchmarks/cnn_analysis.py                 # 400, 800, 1600 stimuli at the page's settings
    python benchmarks/cnn_analysis.py --base 300      # 300, 600, 1200 (4x = the page's default)
    python benchmarks/cnn_analysis.py --base 160 --input-size 96 --n-tasks 2    # a few minutes on 2 cores

Results: benchmarks/results/cnn_analysis.txt.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

STAGES = ("extraction", "fitting", "matrix", "scoring", "confounds")
INHERENT = {"extraction": 1.0, "fitting": 1.0, "matrix": 2.0, "scoring": 1.0, "confounds": 1.0}
PAGE = dict(model="efficientnet_lite0", weights=("pretrained", "untrained"), methods=(
    "units", "kmeans", "spherical_kmeans", "sae", "pca", "ica", "rotation"), k_multiples=(0.5, 1.0, 2.0),
    similarity="perceptual", measures=("ii", "2afc", "mis"), n_references=5, n_tasks=5, seeds=(0,), n_boot=200,
    input_size="native")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _config(args) -> dict:
    """The page's cnn_analysis parameters with this run's overrides."""
    config = {**PAGE, "input_size": _input_size(args.input_size), "n_tasks": args.n_tasks}
    for name in ("weights", "methods"):
        if getattr(args, name):
            config[name] = tuple(getattr(args, name).split(","))
    if args.k_multiples:
        config["k_multiples"] = tuple(float(k) for k in args.k_multiples.split(","))
    return config


def worker(n: int, size: int, config: dict) -> dict:
    """One cnn_analysis run on n stimuli in this process, its time and peak memory per stage."""
    import superpos.analyses.cnn as cnn
    from superpos.stimuli.natural import natural_stimuli
    seconds = {stage: 0.0 for stage in STAGES}
    peaks = {stage: 0.0 for stage in STAGES}
    calls = {stage: 0 for stage in STAGES}

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            base = _rss_mb()
            _reset_hwm()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
                peaks[stage] = max(peaks[stage], _hwm_mb() - base)
                calls[stage] += 1
        return wrapper

    for name, stage in (("load_model", "extraction"), ("extract", "extraction"), ("_fit_directions", "fitting"),
                        ("similarity_matrix", "matrix"), ("score_responses", "scoring"),
                        ("top_source_fraction", "confounds"), ("source_balanced_index", "confounds"),
                        ("participation_ratio", "confounds")):
        setattr(cnn, name, timed(stage, getattr(cnn, name)))
    stimuli = natural_stimuli(n, size, seed=0)
    start = time.perf_counter()
    scores, details = cnn.cnn_analysis(stimuli=stimuli, **config)
    total = time.perf_counter() - start
    return {"n": n, "total": total, "seconds": seconds, "peaks": peaks, "calls": calls, "run_peak": _hwm_mb(),
            "rows": len(scores), "skipped": len(details["skipped"]),
            "directions": int(scores[scores.measure == "ii"].shape[0])}


def bf16_worker(n: int, size: int, rounds: int, input_size) -> dict:
    """fp32 vs bfloat16-autocast extraction of the pretrained model: time (alternated rounds) and agreement."""
    import numpy as np
    sys.path.insert(0, str(Path(__file__).parent))
    from timing import compare
    from superpos.networks.extraction import extract
    from superpos.networks.models import default_layers, load_model
    from superpos.stimuli.natural import natural_stimuli
    vm = load_model(PAGE["model"], input_size=input_size)
    layers = default_layers(vm)
    stimuli = natural_stimuli(n, size, seed=0)
    timings = compare({precision: (lambda p=precision: extract(vm, layers, stimuli, precision=p, progress=False))
                       for precision in ("float32", "bfloat16")}, rounds=rounds, warmup=1, min_time=0)
    fp32, bf16 = timings.results["float32"], timings.results["bfloat16"]
    corr = {}
    for layer in layers:
        a, b = fp32[layer].values.astype(np.float64), bf16[layer].values.astype(np.float64)
        a, b = a - a.mean(0), b - b.mean(0)
        denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
        live = denom > 0
        r = (a * b).sum(0)[live] / denom[live]
        corr[layer] = {"median": float(np.median(r)), "min": float(r.min()), "units": int(live.sum())}
    return {"n": n, "fp32": timings.median("float32"), "bf16": timings.median("bfloat16"),
            "ratio": timings.ratio("float32", "bfloat16"), "how": timings.how_timed(), "corr": corr,
            "attrs": str(bf16[layers[0]].attrs.get("precision", bf16[layers[0]].attrs))}


def _input_size(value: str):
    return value if value == "native" else int(value)


def _run(args, *extra) -> dict:
    cmd = [sys.executable, __file__, "--size", str(args.size), "--input-size", args.input_size, "--n-tasks", str(args.n_tasks),
           "--weights", args.weights, "--methods", args.methods, "--k-multiples", args.k_multiples, *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ})
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def report(runs, bf16, args) -> str:
    import torch
    lines = [f"# cnn_analysis time split, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
             f"{os.cpu_count()} cores (shared), torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
             f"load average {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} (1 / 5 min) at the end",
             "# book page 52 defaults (EfficientNet-Lite0 pretrained + untrained, 4 layers, 7 methods x k 0.5/1/2, "
             "perceptual, II + 2-AFC + MIS, n_boot 200) except the stimuli"
             + "".join(f", {name} {getattr(args, name)}" for name in ("weights", "methods", "k_multiples") if getattr(args, name))
             + ("" if args.input_size == "native" else f", the model's input size ({args.input_size} px instead of "
                "224: extraction ~5x cheaper per image)") + ("" if args.n_tasks == 5 else f", n_tasks {args.n_tasks} "
                "instead of 5 (the 2-AFC needs 2 x (n/8 + 10 n_tasks) stimuli)") + "; one fresh process per size, one run each",
             f"{'stimuli':>8} {'total s':>8} " + " ".join(f"{s + ' s':>12}" for s in STAGES)
             + f" {'run peak MB':>12} {'scored':>7} {'skipped':>7}"]
    for r in runs:
        lines.append(f"{r['n']:>8d} {r['total']:>8.1f} " + " ".join(
            f"{r['seconds'][s]:>7.1f} ({100 * r['seconds'][s] / r['total']:>2.0f}%)" for s in STAGES)
            + f" {r['run_peak']:>12.0f} {r['directions']:>7d} {r['skipped']:>7d}")
    lines.append(f"{'peak MB':>8} {'(stage)':>8} " + " ".join(f"{'':>12}" for _ in STAGES))
    for r in runs:
        lines.append(f"{r['n']:>8d} {'':>8} " + " ".join(f"{r['peaks'][s]:>12.0f}" for s in STAGES))
    first, last = runs[0], runs[-1]
    if last["n"] > first["n"]:
        growth, flagged, parts = last["n"] / first["n"], [], []
        for s in STAGES:
            e = math.log(max(last["seconds"][s], 1e-9) / max(first["seconds"][s], 1e-9)) / math.log(growth)
            parts.append(f"{s} {e:.2f} (inherent <= {INHERENT[s]:.0f})")
            if e > INHERENT[s] + 0.3:
                flagged.append(s)
        lines.append(f"# growth exponent of time, {first['n']} -> {last['n']} stimuli (t ~ n^e): " + "; ".join(parts))
        lines.append("# no stage grows faster than its inherent cost" if not flagged else
                     f"# FASTER than inherent: {', '.join(flagged)}")
    if bf16:
        lines.append(f"# extraction precision ({bf16['n']} stimuli, input {args.input_size}, pretrained, 4 layers): fp32 {bf16['fp32']:.2f} s, "
                     f"bfloat16 autocast {bf16['bf16']:.2f} s: bf16 speed-up {bf16['ratio']}; attrs: {bf16['attrs']}")
        lines.append("# per-unit correlation bf16 vs fp32 (median, min over units): " + "; ".join(
            f"{layer} {c['median']:.4f}, {c['min']:.4f}" for layer, c in bf16["corr"].items()))
        lines.append(bf16["how"])
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=int, default=400, help="stimuli at 1x (the page uses 1,200; its 2-AFC needs >= 400)")
    p.add_argument("--scales", default="1,2,4")
    p.add_argument("--size", type=int, default=96, help="stimulus side in pixels (the page's 96)")
    p.add_argument("--weights", default="", help="override the page's weights, e.g. pretrained")
    p.add_argument("--methods", default="", help="override the page's methods, e.g. units,kmeans,pca")
    p.add_argument("--k-multiples", default="", help="override the page's k multiples, e.g. 1")
    p.add_argument("--n-tasks", type=int, default=5, help="2-AFC tasks per unit (the page's 5 needs >= 400 stimuli)")
    p.add_argument("--input-size", default="native",
                   help="the model's input side: 'native' (the page's: resize to 224 px) or pixels, e.g. 96")
    p.add_argument("--bf16", type=int, default=1, help="also time bf16 vs fp32 extraction (1) or not (0)")
    p.add_argument("--bf16-rounds", type=int, default=3)
    p.add_argument("--bf16-n", type=int, default=120, help="stimuli for the bf16 vs fp32 extraction")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cnn_analysis.txt"))
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--bf16-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, _config(args))))
        return
    if args.bf16_worker:
        print(json.dumps(bf16_worker(args.bf16_worker, args.size, args.bf16_rounds, _input_size(args.input_size))))
        return
    runs = []
    for scale in (int(s) for s in args.scales.split(",")):
        runs.append(_run(args, "--worker", str(scale * args.base)))
        print(json.dumps(runs[-1]), flush=True)
    bf16 = _run(args, "--bf16-worker", str(args.bf16_n), "--bf16-rounds", str(args.bf16_rounds)) if args.bf16 else None
    text = report(runs, bf16, args)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
