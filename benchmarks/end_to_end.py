"""End to end through zarr stores, in bounded memory: procedural stimuli -> EfficientNet-Lite0's last layer ->
spherical k-means -> II, 2-AFC and MIS of the units and of the directions on the held-out half.

Stimuli are generated `--chunk` at a time (200,000 at 64 px are 2.4 GB as uint8, never held whole): each
chunk's activations are appended to `<out>/activations.zarr` (`ActivationWriter`, the writer behind
`extract(path=...zarr)`) and its perceptual embeddings to `<out>/embeddings.zarr` (the format of
`superpos.analyses.cnn.store_embeddings`, `--embedding-dtype`). The fit, the transform and the scoring then
read the stores back lazily (dask), the measures scoring blockwise from the embeddings (no S x S matrix).
The network sees the stimuli at their own 64 px (`input_size=None`). Prints the time of each stage, the
process's peak RSS (VmHWM) after each, and the machine's load.

    nice -n 10 python benchmarks/end_to_end.py --n 4000                 # smoke run (2,000 fit >= 1,280 directions)
    nice -n 10 python benchmarks/end_to_end.py --n 200000 --out /tmp/e2e
    python benchmarks/end_to_end.py --n 200000 --out /tmp/e2e --reuse    # fit and scoring again on a --keep run's stores
"""
import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import peak_mb, rss_mb  # noqa: E402

MIX = {"dead_leaves": 0.2, "gratings": 0.4, "textures": 0.4}   # procedural only (no bundled photos)


def stimulus_chunks(n: int, size: int, chunk: int):
    """Seeded procedural stimulus sets of at most `chunk` images each, `n` in all, with unique ids."""
    from superpos.stimuli.natural import natural_stimuli
    for index, start in enumerate(range(0, n, chunk)):
        yield natural_stimuli(min(chunk, n - start), size, mix=MIX, seed=index)


def append_embeddings(path: Path, part, dtype: str, first: bool) -> None:
    """Append one chunk's embeddings (stimulus x embedding) to the zarr store at `path`."""
    part = part.astype(dtype).assign_attrs(dtype=dtype)
    data = part.assign_coords(stimulus=part["stimulus"].values.astype(object)).to_dataset()
    if first:
        data.to_zarr(path, mode="w", consolidated=False)
    else:
        data.to_zarr(path, mode="a", append_dim="stimulus", consolidated=False)


def make_stores(args, out: Path, layer: str, stages):
    """Generate, extract and embed `args.n` stimuli a chunk at a time into `out`'s two zarr stores; the activations, lazy."""
    from superpos.measures.blockwise import similarity_embeddings
    from superpos.measures.similarity import get_similarity
    from superpos.networks.extraction import extract
    from superpos.networks.models import load_model
    from superpos.networks.store import ActivationWriter
    vm = load_model("efficientnet_lite0", input_size=None)
    backend = get_similarity("perceptual")
    writer = ActivationWriter(out / "activations.zarr", args.n, signature=f"end_to_end n={args.n}")
    timing = {"generate": 0.0, "extract": 0.0, "embed": 0.0}
    for index, chunk in enumerate(_timed(stimulus_chunks(args.n, args.size, args.chunk), timing, "generate")):
        start = time.perf_counter()
        acts = extract(vm, [layer], chunk, batch_size=args.batch_size, device=args.device, progress=False)
        writer.append(acts)
        timing["extract"] += time.perf_counter() - start
        start = time.perf_counter()
        part = similarity_embeddings(chunk, backend, device=args.device)
        backend._cache.clear()   # each chunk is embedded once
        append_embeddings(out / "embeddings.zarr", part, args.embedding_dtype, first=index == 0)
        timing["embed"] += time.perf_counter() - start
        del acts, part, chunk
    activations = writer.finish()[layer]
    stages.add("generate stimuli", timing["generate"])
    stages.add("extract -> zarr", timing["extract"], img_per_s=f"{args.n / timing['extract']:.0f}")
    stages.add("embed -> zarr", timing["embed"], img_per_s=f"{args.n / timing['embed']:.0f}")
    return activations


class Stages:
    """Wall time of each stage and the peak RSS after it."""

    def __init__(self):
        self.rows, self.started = [], time.perf_counter()

    def add(self, name: str, seconds: float, **extra):
        self.rows.append((name, seconds, peak_mb(), rss_mb(), extra))
        note = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{name:<22} {seconds:9.1f} s   peak RSS {peak_mb():7.0f} MB   RSS now {rss_mb():7.0f} MB  {note}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000, help="stimuli in all (half fit the directions, half are scored)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=5000, help="stimuli generated, extracted and embedded at a time")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--k-multiple", type=float, default=1.0, help="spherical k-means directions per unit")
    parser.add_argument("--fit-subset", type=int, default=None,
                        help="fit the directions on this many random stimuli of the fitting half (None: all)")
    parser.add_argument("--embedding-dtype", default="float16", choices=("float32", "float16"))
    parser.add_argument("--n-boot", type=int, default=0)
    parser.add_argument("--out", default="/tmp/superpos-end-to-end")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", action="store_true", help="keep the stores (default: removed at the end)")
    parser.add_argument("--reuse", action="store_true",
                        help="start from the complete stores a --keep run left in --out (same --n): time fit and scoring only")
    args = parser.parse_args()

    import torch
    from superpos.analyses.cnn import load_embeddings, open_embeddings
    from superpos.directions.spherical import SphericalKMeans
    from superpos.measures.index import interpretability_index
    from superpos.measures.mis import mis
    from superpos.measures.twoafc import psychophysics_2afc
    from superpos.networks.store import load_activations

    out = Path(args.out)
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
    print(f"# end to end: N={args.n:,} procedural stimuli at {args.size} px, chunks of {args.chunk:,}, "
          f"EfficientNet-Lite0 last layer, spherical k-means x{args.k_multiple}, II + 2-AFC + MIS blockwise, "
          f"embeddings {args.embedding_dtype}, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"# load average at start: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min, "
          f"{os.cpu_count()} cores, shared machine)")
    stages = Stages()
    layer = "_conv_head"
    if args.reuse:
        activations = load_activations(out / "activations.zarr", lazy=True)[layer]
        if activations.sizes["stimulus"] != args.n:
            raise SystemExit(f"{out} holds {activations.sizes['stimulus']} stimuli, not --n {args.n}")
        print(f"# reused the stores in {out}: generation, extraction and embedding not timed in this run")
    else:
        activations = make_stores(args, out, layer, stages)
    activations = activations.chunk({"stimulus": 8192})
    embeddings = open_embeddings(out / "embeddings.zarr")
    order = np.random.default_rng(0).permutation(args.n)
    ids = activations.stimulus.values
    fit_ids, held_ids = ids[np.sort(order[: args.n // 2])], ids[np.sort(order[args.n // 2:])]
    fit, held = activations.sel(stimulus=fit_ids), activations.sel(stimulus=held_ids)
    width = activations.sizes["unit"]
    k = int(round(args.k_multiple * width))

    start = time.perf_counter()
    options = {} if args.fit_subset is None else {"fit_subset": args.fit_subset}
    finder = SphericalKMeans(k, random_state=0, device=args.device, **options).fit(fit)
    stages.add("spherical k-means fit", time.perf_counter() - start, k=k, width=width)
    start = time.perf_counter()
    directions = finder.transform(held)
    lazy = getattr(directions, "chunks", None) is not None
    stages.add("transform (held-out)", time.perf_counter() - start, lazy=lazy)

    start = time.perf_counter()
    held_emb = load_embeddings(embeddings, held_ids)
    stages.add("load held embeddings", time.perf_counter() - start, shape=f"{held_emb.shape[0]}x{held_emb.shape[1]}")
    measures = {"ii": lambda r: interpretability_index(r, None, held_emb, n_boot=args.n_boot, device=args.device,
                                                       method="blockwise"),
                "2afc": lambda r: psychophysics_2afc(r, None, held_emb, n_boot=args.n_boot, device=args.device,
                                                     method="blockwise"),
                "mis": lambda r: mis(r, None, held_emb, n_boot=args.n_boot, device=args.device, method="blockwise")}
    means = {}
    for what, responses in (("units", held), ("directions", directions)):
        for name, measure in measures.items():
            start = time.perf_counter()
            result = measure(responses)
            means[(what, name)] = float(result["score"].mean())
            stages.add(f"{name} {what}", time.perf_counter() - start, mean_score=f"{means[(what, name)]:.4f}")
    total = time.perf_counter() - stages.started
    print(f"# total {total:.0f} s; peak RSS of the whole run {peak_mb():.0f} MB; load average at the end: "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("# store sizes: " + ", ".join(f"{p.name} {_size_mb(p):.0f} MB" for p in sorted(out.iterdir())))
    if not (args.keep or args.reuse):
        shutil.rmtree(out, ignore_errors=True)


def _timed(iterable, timing: dict, key: str):
    """Yield from `iterable`, adding the time spent producing each item to `timing[key]`."""
    iterator = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        timing[key] += time.perf_counter() - start
        yield item


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


if __name__ == "__main__":
    main()
