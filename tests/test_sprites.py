"""Property tests of superpos.sprites: the dSprites grid, rendering, and the pair samplers.

The pair samplers are checked against a straightforward per-sample re-implementation of the
reference definition (bethgelab/slow_disentanglement, `TupleLoader.__getitem__` and
`truncated_laplace`): a Python loop with `scipy.stats.laplace.pdf` and `np.random.choice`.
"""
import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import laplace

from superpos.core import ConfigError, DataError
from superpos.sprites import (FACTOR_NAMES, FACTOR_SIZES, DSprites, PairSampler, _render_direct,
                              pair_batch)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds():
    return DSprites(device="cpu")


# ---------------------------------------------------------------- the grid and rendering

def test_constants():
    assert FACTOR_NAMES == ("shape", "scale", "orientation", "x", "y")
    assert FACTOR_SIZES == (3, 6, 40, 32, 32)


def test_index_round_trip_whole_grid(ds):
    index = torch.arange(ds.n_images)
    factors = ds.index_to_factors(index)
    assert factors.shape == (737_280, 5)
    assert torch.equal(ds.factors_to_index(factors), index)
    # row-major order over (shape, scale, orientation, x, y), like the official file
    expected = np.stack(np.meshgrid(*[np.arange(s) for s in FACTOR_SIZES], indexing="ij"), -1).reshape(-1, 5)
    assert np.array_equal(factors.numpy(), expected)


def test_index_errors(ds):
    with pytest.raises(DataError, match="0..size-1"):
        ds.factors_to_index(torch.tensor([[0, 6, 0, 0, 0]]))
    with pytest.raises(DataError, match="shape \\(n, 5\\)"):
        ds.factors_to_index(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(DataError, match="0..737279"):
        ds.index_to_factors(torch.tensor([737_280]))
    with pytest.raises(DataError):
        ds.render(torch.zeros(2, 5))      # float factors


def test_render_is_deterministic_and_binary(ds):
    factors = ds.sample_factors(256, torch.Generator().manual_seed(3))
    a, b = ds.render(factors), DSprites(device="cpu").render(factors)
    assert a.shape == (256, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert (a.sum((1, 2, 3)) > 0).all()       # every sprite is visible


def test_templates_match_direct_rendering(ds):
    factors = ds.sample_factors(500, torch.Generator().manual_seed(4))
    direct = _render_direct(factors, 16 + factors[:, 3], 16 + factors[:, 4])
    assert torch.equal(ds.render(factors)[:, 0].bool(), direct)


def test_sprites_fit_inside_the_image(ds):
    # the largest sprites at the extreme positions must not touch the border (no clipping)
    rows = torch.tensor([[s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)])
    images = ds.render(rows)[:, 0]
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert border == 0
    # and the drawn area equals the area of a sprite at the centre (translation only)
    centre = ds.render(rows * torch.tensor([1, 1, 1, 0, 0]) + torch.tensor([0, 0, 0, 16, 16]))[:, 0]
    assert torch.equal(images.sum((1, 2)), centre.sum((1, 2)))


def _centroid(images):
    h = torch.arange(64, dtype=torch.float32)
    mass = images.sum((1, 2))
    return (images.sum(1) * h).sum(1) / mass, (images.sum(2) * h).sum(1) / mass


def test_factors_act_as_named(ds):
    base = torch.tensor([1, 3, 0, 10, 20])
    # x moves the sprite right and y moves it down by exactly one pixel per step
    xs = torch.stack([base.clone().index_put_((torch.tensor(3),), torch.tensor(i)) for i in range(32)])
    cx, cy = _centroid(ds.render(xs)[:, 0])
    assert torch.allclose(cx.diff(), torch.ones(31)) and torch.allclose(cy, cy[0].expand(32))
    ys = torch.stack([base.clone().index_put_((torch.tensor(4),), torch.tensor(i)) for i in range(32)])
    cx, cy = _centroid(ds.render(ys)[:, 0])
    assert torch.allclose(cy.diff(), torch.ones(31))
    # scale grows the area; the three shapes differ
    for shape in range(3):
        sc = torch.tensor([[shape, s, 0, 16, 16] for s in range(6)])
        assert (ds.render(sc).sum((1, 2, 3)).diff() > 0).all()
    shapes = ds.render(torch.tensor([[s, 5, 0, 16, 16] for s in range(3)]))
    assert all(not torch.equal(shapes[i], shapes[j]) for i, j in itertools.combinations(range(3), 2))


def test_orientation_symmetries(ds):
    rows = torch.tensor([[s, sc, o, 7, 21] for s in range(3) for sc in range(6) for o in range(40)])
    img = ds.render(rows).view(3, 6, 40, 64, 64)
    assert torch.equal(img[:, :, 0], img[:, :, 39])                       # 0 and 2 pi
    heart_changes = [(img[2, 5, o] != img[2, 5, 0]).any().item() for o in range(1, 39)]
    assert all(heart_changes)                                              # a heart has no symmetry
    # the square rotated by 180 degrees: orientation pi is not on the grid, but a point reflection
    # of the image about the sprite centre must leave every square and ellipse invariant
    centred = ds.render(torch.tensor([[s, 5, o, 16, 16] for s in range(2) for o in range(40)]))[:, 0]
    reflected = centred.flip(1, 2)              # the centre is the pixel edge (32, 32): c -> 63 - c
    assert torch.equal(centred, reflected)


def test_cache_matches_templates():
    ds = DSprites(device="cpu")
    # build the packed cache for a slice of the grid with the same code path as cache=True
    index = torch.arange(0, 737_280, 37)
    packed = ds._pack(ds.render(ds.index_to_factors(index))[:, 0].bool())
    ds._packed = torch.zeros(ds.n_images, 512, dtype=torch.uint8)
    ds._packed[index] = packed
    factors = ds.index_to_factors(index[::5])
    cached = ds.render(factors)
    ds._packed = None
    assert torch.equal(cached, ds.render(factors))
    # the layout is numpy's packbits (most significant bit first)
    img = ds.render(factors[:3])[:, 0].bool().numpy()
    assert np.array_equal(np.packbits(img.reshape(3, -1), axis=1), ds._pack(torch.from_numpy(img)).numpy())


def test_sample_factors_uniform(ds):
    factors = ds.sample_factors(60_000, torch.Generator().manual_seed(0))
    for j, size in enumerate(FACTOR_SIZES):
        counts = np.bincount(factors[:, j].numpy(), minlength=size)
        assert stats.chisquare(counts).pvalue > 1e-4, FACTOR_NAMES[j]


# ---------------------------------------------------------------- the reference, one sample at a time

def reference_laplace(start, sizes, rate, categorical, rng):
    """`TupleLoader.truncated_laplace` of the reference, for one sample."""
    if rate == -1:
        rate = rng.uniform(1, 10, 1)[0]
    end = []
    for mean, upper in zip(start, np.array(sizes)):
        x = np.arange(upper)
        p = laplace.pdf(x, loc=mean, scale=np.log(upper) / rate)
        p /= np.sum(p)
        end.append(rng.choice(x, 1, p=p)[0])
    end = np.array(end).astype(int)
    end[categorical] = start[categorical]
    if np.sum(abs(start - end)) == 0:
        ind = rng.choice(np.arange(len(sizes))[~categorical], 1)[0]
        x = np.arange(sizes[ind])
        p = laplace.pdf(x, loc=start[ind], scale=np.log(sizes[ind]) / rate)
        p[x == start[ind]] = 0
        p /= np.sum(p)
        end[ind] = rng.choice(x, 1, p=p)[0]
    return end


def reference_uniform(start, sizes, k, rng):
    """The `prior == 'uniform'` branch of `TupleLoader.__getitem__`, for one sample."""
    n_factors = len(sizes)
    k = rng.randint(1, n_factors) if k == -1 else k
    end = start.copy()
    for ind in rng.choice(n_factors, k, replace=False):
        x = np.arange(sizes[ind])
        p = np.ones_like(x) / (x.shape[0] - 1)
        p[x == start[ind]] = 0
        end[ind] = rng.choice(x, 1, p=p)[0]
    return end


def _summaries(first, second, sizes):
    """Histograms that pin down a transition rule: per-factor deltas, which factors changed."""
    delta = second - first
    out = {f"delta_{j}": delta[:, j] + sizes[j] - 1 for j in range(len(sizes))}
    out["pattern"] = ((delta != 0) * (2 ** np.arange(len(sizes)))).sum(1)
    return out


def _compare(first_ref, second_ref, first_new, second_new, sizes):
    """Two-sample chi-square (homogeneity) tests of every summary histogram; returns min p."""
    a, b = _summaries(first_ref, second_ref, sizes), _summaries(first_new, second_new, sizes)
    pvalues = {}
    for key in a:
        m = int(max(a[key].max(), b[key].max())) + 1
        table = np.stack([np.bincount(a[key], minlength=m), np.bincount(b[key], minlength=m)])
        table = table[:, table.sum(0) >= 10]                  # drop (pooled) near-empty bins
        if table.shape[1] > 1:
            pvalues[key] = stats.chi2_contingency(table)[1]
    return pvalues


CASES = [
    dict(mode="laplace", rate=1.0),
    dict(mode="laplace", rate=-1.0),
    dict(mode="laplace", rate=4.0),
    dict(mode="uniform", k=-1),
    dict(mode="uniform", k=2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['mode']}-{c.get('rate', c.get('k'))}")
def test_transitions_match_reference(case, ds):
    sizes = np.array(FACTOR_SIZES)
    categorical = np.array([True, False, False, False, False])
    n_ref, n_new = 5000, 50_000
    rng = np.random.RandomState(0)
    first_ref = ds.index_to_factors(torch.from_numpy(rng.randint(0, ds.n_images, n_ref))).numpy()
    if case["mode"] == "laplace":
        second_ref = np.stack([reference_laplace(f, sizes, case["rate"], categorical, rng) for f in first_ref])
    else:
        second_ref = np.stack([reference_uniform(f, sizes, case["k"], rng) for f in first_ref])
    sampler = PairSampler(seed=1, device="cpu", **case)
    first_new = ds.sample_factors(n_new, torch.Generator().manual_seed(2))
    second_new = sampler.sample(first_new)
    pvalues = _compare(first_ref, second_ref, first_new.numpy(), second_new.numpy(), sizes)
    assert len(pvalues) >= 5
    assert min(pvalues.values()) > 1e-3, pvalues


@pytest.mark.parametrize("rate", [1.0, 4.0])
def test_laplace_from_one_state_matches_reference(rate):
    """Starting at a corner of the grid (where the truncation matters most)."""
    sizes = np.array(FACTOR_SIZES)
    categorical = np.array([True, False, False, False, False])
    start = np.array([2, 0, 39, 31, 1])
    n_ref, n_new = 4000, 40_000
    rng = np.random.RandomState(5)
    ref = np.stack([reference_laplace(start, sizes, rate, categorical, rng) for _ in range(n_ref)])
    new = PairSampler(rate=rate, seed=3, device="cpu").sample(torch.tensor(start).repeat(n_new, 1)).numpy()
    # the joint outcome, rare outcomes pooled: two-sample chi-square
    key = lambda s: np.ravel_multi_index(s.T, sizes)
    uniq, inv = np.unique(np.concatenate([key(ref), key(new)]), return_inverse=True)
    table = np.stack([np.bincount(inv[:n_ref], minlength=len(uniq)), np.bincount(inv[n_ref:], minlength=len(uniq))])
    keep = table.sum(0) >= 10
    pooled = table[:, ~keep].sum(1, keepdims=True)
    assert stats.chi2_contingency(np.concatenate([table[:, keep], pooled], 1))[1] > 1e-3
    # every factor's marginal: total variation distance well below what a wrong rule gives
    for j, size in enumerate(sizes):
        p_ref = np.bincount(ref[:, j], minlength=size) / n_ref
        p_new = np.bincount(new[:, j], minlength=size) / n_new
        assert 0.5 * np.abs(p_ref - p_new).sum() < 0.05, FACTOR_NAMES[j]


def test_laplace_marginal_matches_exact_probability():
    """With rate 1, P(scale' = j | scale = 0) follows from the truncated Laplace and the fallback."""
    sizes = FACTOR_SIZES
    start = torch.tensor([0, 0, 20, 16, 16])
    new = PairSampler(seed=7, device="cpu").sample(start.repeat(200_000, 1)).numpy()
    # P(no change in any factor) and the marginal of the scale factor, by exact enumeration
    probs = []
    for j, s in enumerate(sizes):
        x = np.arange(s)
        p = laplace.pdf(x, loc=start[j].item(), scale=np.log(s))
        probs.append(p / p.sum())
    stay = np.prod([probs[j][start[j]] for j in range(1, 5)])
    redraw = probs[1].copy()
    redraw[0] = 0
    redraw /= redraw.sum()
    exact = probs[1] * 1.0
    exact[0] -= stay                       # "nothing changed" mass is moved ...
    exact += stay * (0.25 * redraw)        # ... a quarter of the time to a redrawn scale
    exact[0] += stay * 0.75                # ... otherwise another factor moves and scale stays
    observed = np.bincount(new[:, 1], minlength=6) / len(new)
    assert np.abs(observed - exact).max() < 0.005


# ---------------------------------------------------------------- invariants, determinism, resume

@pytest.mark.parametrize("rate", [1.0, -1.0, 10.0])
def test_laplace_invariants(rate, ds):
    first = ds.sample_factors(20_000, torch.Generator().manual_seed(0))
    second = PairSampler(rate=rate, seed=0, device="cpu").sample(first)
    assert torch.equal(second[:, 0], first[:, 0])                  # categorical fixed
    assert ((second != first).sum(1) >= 1).all()                   # at least one change
    assert ((second >= 0) & (second < torch.tensor(FACTOR_SIZES))).all()


def test_categorical_other_factors():
    sampler = PairSampler(categorical=(0, 2), device="cpu", seed=0)
    first = torch.tensor([[1, 2, 10, 5, 5]]).repeat(5000, 1)
    second = sampler.sample(first)
    assert torch.equal(second[:, [0, 2]], first[:, [0, 2]])
    assert ((second != first).sum(1) >= 1).all()


def test_uniform_changes_exactly_k(ds):
    first = ds.sample_factors(20_000, torch.Generator().manual_seed(0))
    for k in (1, 3, 5):
        second = PairSampler(mode="uniform", k=k, device="cpu").sample(first)
        assert ((second != first).sum(1) == k).all()
    second = PairSampler(mode="uniform", k=-1, device="cpu").sample(first)
    counts = np.bincount((second != first).sum(1).numpy(), minlength=6)
    assert counts[0] == 0 and counts[5] == 0
    assert stats.chisquare(counts[1:5]).pvalue > 1e-3             # k uniform on 1..4
    assert (second[:, 0] != first[:, 0]).any()                    # uniform mode may change the shape


def test_sampler_determinism_and_resume(ds):
    first = ds.sample_factors(64, torch.Generator().manual_seed(0))
    for mode in ("laplace", "uniform"):
        a = PairSampler(mode=mode, rate=-1, seed=5, device="cpu")
        b = PairSampler(mode=mode, rate=-1, seed=5, device="cpu")
        c = PairSampler(mode=mode, rate=-1, seed=6, device="cpu")
        assert torch.equal(a.sample(first), b.sample(first))
        assert not torch.equal(a.sample(first), c.sample(first))
        state = a.state_dict()
        expected = [a.sample(first) for _ in range(3)]
        resumed = PairSampler(mode=mode, rate=-1, seed=0, device="cpu").load_state_dict(state)
        assert all(torch.equal(e, resumed.sample(first)) for e in expected)


def test_pair_batch_resume_and_layout(ds):
    sampler = PairSampler(seed=11, device="cpu")
    pair_batch(ds, sampler, 8)
    state = sampler.state_dict()
    images, factors = pair_batch(ds, sampler, 32)
    assert images.shape == (64, 1, 64, 64) and factors.shape == (64, 5)
    assert torch.equal(images, ds.render(factors))
    assert torch.equal(factors[0::2, 0], factors[1::2, 0])
    assert ((factors[0::2] != factors[1::2]).sum(1) >= 1).all()
    again = PairSampler(seed=11, device="cpu").load_state_dict(state)
    images2, factors2 = pair_batch(ds, again, 32)
    assert torch.equal(factors, factors2) and torch.equal(images, images2)


def test_sampler_config_errors():
    with pytest.raises(ConfigError, match="rate"):
        PairSampler(rate=0)
    with pytest.raises(ConfigError, match="mode"):
        PairSampler(mode="normal")
    with pytest.raises(ConfigError, match="k must be"):
        PairSampler(mode="uniform", k=0)
    with pytest.raises(ConfigError, match="categorical"):
        PairSampler(categorical=(7,))
    with pytest.raises(ConfigError, match="non-categorical"):
        PairSampler(factor_sizes=(3, 1), categorical=(0,))
    with pytest.raises(ConfigError, match="mode"):
        PairSampler(device="cpu").load_state_dict(PairSampler(mode="uniform", device="cpu").state_dict())
    with pytest.raises(ConfigError, match="n_pairs"):
        pair_batch(DSprites(device="cpu"), PairSampler(device="cpu"), 0)
    with pytest.raises(DataError):
        PairSampler(device="cpu").sample(torch.tensor([[0, 0, 0, 0, 32]]))


# ---------------------------------------------------------------- Natural Sprites

import ast
import csv
import pickle
from collections import defaultdict

import pandas as pd

from superpos.core import DownloadError, MissingFileError
import superpos.sprites as sprites_module
from superpos.sprites import (KittiMasks, NaturalSprites, read_natural_sprites_csv, render_natural_sprites,
                              transition_sparsity, write_kitti_fixture, write_natural_sprites_fixture)


def reference_load_csv(csv_file, sequence=2):
    """`scripts/data_analysis_utils.load_csv` of the reference, re-typed (pairs of consecutive frames)."""
    reader = csv.reader(csv_file, delimiter=",")
    next(reader)
    data = defaultdict(list)
    for row in reader:
        for j in range(2, len(row)):
            considered = row[j:j + sequence]
            if all(considered):
                temp = defaultdict(list)
                for column in considered:
                    val_list = ast.literal_eval(column)
                    for i, val in enumerate(val_list):
                        if val:
                            temp["pos"].append(i)
                            temp["y"].append(val[0])
                            temp["x"].append(val[1])
                            temp["area"].append(val[2])
                for i in range(len(val_list)):
                    if temp["pos"].count(i) == sequence:
                        data["id"].append(int(row[0]))
                        data["category_id"].append(int(row[1]))
                        for key in ("area", "x", "y"):
                            data[key].append([temp[key][k] for k in range(len(temp["pos"])) if temp["pos"][k] == i])
    return data


def _write_rows(path, rows, n_t):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "cat_id"] + [f"t_{i}" for i in range(n_t)])
        writer.writerows(rows)
    return path


def test_read_csv_known_pairs(tmp_path):
    row = [5, 3, "[(10.0, 20.0, 100), None, (11.0, 50.0, 90)]", "[(12.0, 21.0, 110), (1.0, 2.0, 3), None]",
           "", "[(13.0, 22.0, 120), None, None]", "[(14.0, 23.0, 130), None, None]"]
    pairs = read_natural_sprites_csv(_write_rows(tmp_path / "a.csv", [row], 5))
    assert pairs["id"].tolist() == [5, 5] and pairs["category_id"].tolist() == [3, 3]
    assert pairs["y"].tolist() == [[10, 12], [13, 14]]
    assert pairs["x"].tolist() == [[20, 21], [22, 23]]
    assert pairs["area"].tolist() == [[100, 110], [120, 130]]


def test_read_csv_matches_reference_on_fixture(tmp_path):
    path = write_natural_sprites_fixture(tmp_path / "f.csv", n_objects=60, seed=4)
    with open(path) as f:
        ref = reference_load_csv(f)
    new = read_natural_sprites_csv(path)
    assert len(new["id"]) == len(ref["id"]) > 100
    for key in ("id", "category_id", "x", "y", "area"):
        assert np.array_equal(new[key], np.asarray(ref[key])), key


def test_read_csv_bad_header(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="id, cat_id"):
        read_natural_sprites_csv(bad)


def test_natural_area_filter_and_discrete_match_reference(tmp_path):
    path = write_natural_sprites_fixture(tmp_path / "f.csv", n_objects=80, seed=5)
    raw = read_natural_sprites_csv(path)
    keep = []
    for i in range(2):      # the reference: pandas quantiles, inclusive `between`
        x = pd.Series(raw["area"][:, i])
        keep.append(x.between(x.quantile(0.05), x.quantile(0.95)).to_numpy())
    keep = np.logical_and(*keep)
    ns = NaturalSprites(path, device="cpu")
    assert ns.n_pairs == keep.sum() < len(raw["id"])
    assert np.array_equal(ns.pairs["area"], raw["area"][keep])
    nd = NaturalSprites(path, device="cpu", discrete=True)
    for key, n_bins in (("x", 32), ("y", 32), ("area", 6)):
        values = raw[key][keep]
        _, edges = np.histogram(values.ravel(), bins=n_bins)
        centres = edges[:-1] + (edges[1:] - edges[:-1]) / 2
        expected = centres[np.abs(values[..., None] - centres).argmin(-1)]
        assert np.allclose(nd.pairs[key], expected), key
        assert len(np.unique(nd.pairs[key])) <= n_bins


def test_natural_pairs_follow_the_rule(tmp_path):
    path = write_natural_sprites_fixture(tmp_path / "f.csv", n_objects=80, seed=6)
    ns = NaturalSprites(path, device="cpu")
    factors = ns.sample_factors(4000, torch.Generator().manual_seed(0)).numpy()
    first, second = factors[0::2], factors[1::2]
    assert np.array_equal(first[:, 3:], second[:, 3:])                       # angle, shape shared
    assert set(np.unique(first[:, 4])) == {0, 1, 2, 3}
    assert set(np.unique(first[:, 3])) <= set(range(0, 360, 9)) and len(np.unique(first[:, 3])) == 40
    table = np.stack([ns.pairs["x"] / 64, ns.pairs["y"] / 64, np.sqrt(ns.pairs["area"]) / 64], -1)  # (m, 2, 3)
    drawn = np.stack([first[:, :3], second[:, :3]], 1)
    match = (np.abs(drawn[:, None] - table[None]) < 1e-12).all((2, 3))
    assert match.any(1).all()                                                # every pair is a CSV pair, in order
    counts = np.bincount(match.argmax(1), minlength=len(table))
    assert stats.chisquare(counts[: len(table)]).pvalue > 1e-4              # drawn uniformly


def _pil_reference(f):
    """spriteworld's PILRenderer (5x canvas, polygon fill, Lanczos downsampling, flipud) for one sprite."""
    from PIL import Image, ImageDraw
    from superpos.sprites import _natural_shape_table
    verts = _natural_shape_table()[int(f[4])].numpy()
    a = np.deg2rad(f[3])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    verts = (verts * f[2]) @ rot.T + f[:2]
    canvas = Image.new("RGB", (320, 320))
    ImageDraw.Draw(canvas).polygon([tuple(v) for v in 320 * verts], fill=(255, 255, 255))
    image = np.flipud(np.array(canvas.resize((64, 64), resample=Image.LANCZOS)))
    return image[..., 0] / 255.0


def test_natural_rendering_matches_pil_reference():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.uniform(0.3, 0.7, 24), rng.uniform(0.3, 0.7, 24), rng.uniform(0.1, 0.35, 24),
                        rng.choice(np.arange(0, 360, 9), 24), np.tile(np.arange(4), 6)], 1)
    ours = render_natural_sprites(torch.from_numpy(factors))
    assert ours.shape == (24, 3, 64, 64) and torch.equal(ours[:, 0], ours[:, 2])
    from superpos.sprites import _natural_shape_table
    for f, img in zip(factors, ours[:, 0].numpy()):
        ref = _pil_reference(f)
        assert np.abs(img - ref).mean() < 0.005
        inter = ((img > 0.5) & (ref > 0.5)).sum()
        union = ((img > 0.5) | (ref > 0.5)).sum()
        assert inter / union > 0.9
        # ours has the polygon's exact area; PIL also paints the boundary pixels of its 5x canvas,
        # i.e. a rim of a few hundredths of an output pixel all round
        v = _natural_shape_table()[int(f[4])].numpy() * f[2] * 64
        perimeter = np.linalg.norm(np.diff(np.vstack([v, v[:1]]), axis=0), axis=1).sum()
        assert abs(img.sum() - f[2] ** 2 * 4096) / img.sum() < 0.02
        assert 0 < (ref.sum() - img.sum()) / perimeter < 0.15


def test_natural_download_and_checksum(tmp_path, monkeypatch):
    source = write_natural_sprites_fixture(tmp_path / "published.csv", n_objects=10, seed=1)
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sprites_module, "NATURAL_SPRITES_URL", source.as_uri())
    with pytest.raises(MissingFileError, match="download=True"):
        NaturalSprites(device="cpu")
    ns = NaturalSprites(download=True, device="cpu")
    cached = tmp_path / "cache" / "natural_sprites" / "downscale_keepaspect.csv"
    assert ns.path == cached and cached.exists() and cached.with_name(cached.name + ".sha256").exists()
    cached.write_text(cached.read_text().replace("1", "2"))      # corrupt the cached copy
    with pytest.raises(DownloadError, match="SHA-256"):
        NaturalSprites(download=True, device="cpu")


# ---------------------------------------------------------------- KITTI Masks

def _kitti_file(tmp_path, lengths=(2, 4, 7)):
    """Sequences whose frame (s, t) has 10 * s + t + 1 pixels set, so every frame is identifiable."""
    masks, latents = [], []
    for s, length in enumerate(lengths):
        seq = np.zeros((length, 64, 64), dtype=bool)
        for t in range(length):
            seq[t].ravel()[: 10 * s + t + 1] = True
        masks.append(seq)
        latents.append(np.array([[s, t, seq[t].sum()] for t in range(length)], dtype=np.float32))
    path = tmp_path / "kitti_peds_v2.pickle"
    with open(path, "wb") as f:
        pickle.dump({"pedestrians": masks, "pedestrians_latents": latents}, f)
    return path, masks, latents


def reference_kitti_getitem(index, data, cumlens, max_delta_t, rng):
    """`KittiMasks.__getitem__` of the reference (indices of the two frames only)."""
    sequence_ind = np.searchsorted(cumlens, index, side="right")
    start_ind = index if sequence_ind == 0 else index - cumlens[sequence_ind - 1]
    seq_len = len(data[sequence_ind])
    t_steps_forward = rng.randint(1, max_delta_t + 1)
    end_ind = min(start_ind + t_steps_forward, seq_len - 1)
    return sequence_ind, start_ind, end_ind


def test_kitti_pairs_match_reference(tmp_path):
    path, masks, latents = _kitti_file(tmp_path)
    km = KittiMasks(path, device="cpu")
    cumlens = np.cumsum([len(s) - 1 for s in masks])
    assert len(km) == cumlens[-1] == 1 + 3 + 6
    rng = np.random.RandomState(0)
    ref = [reference_kitti_getitem(rng.randint(len(km)), masks, cumlens, 5, rng) for _ in range(20_000)]
    ref_keys = [f"{s}-{a}-{b}" for s, a, b in ref]
    images, lat = km.pair_batch(20_000, torch.Generator().manual_seed(1))
    lat = lat.numpy().astype(int)
    new_keys = [f"{a[0]}-{a[1]}-{b[1]}" for a, b in zip(lat[0::2], lat[1::2])]
    keys = sorted(set(ref_keys) | set(new_keys))
    assert set(new_keys) <= set(ref_keys)                           # only pairs the reference can draw
    table = np.array([[ref_keys.count(k) for k in keys], [new_keys.count(k) for k in keys]])
    assert stats.chi2_contingency(table)[1] > 1e-3
    # the images are the frames the latents name, and a pair stays inside one sequence
    assert np.array_equal(images.sum((1, 2, 3)).numpy().astype(int), 10 * lat[:, 0] + lat[:, 1] + 1)
    assert (lat[0::2, 0] == lat[1::2, 0]).all()
    offsets = lat[1::2, 1] - lat[0::2, 1]
    assert offsets.min() >= 1 and offsets.max() <= 5


def test_kitti_offsets_uniform_far_from_the_end(tmp_path):
    path, _, _ = _kitti_file(tmp_path, lengths=(40,))
    km = KittiMasks(path, device="cpu", max_delta_t=5)
    _, lat = km.pair_batch(30_000, torch.Generator().manual_seed(2))
    t0, t1 = lat[0::2, 1].numpy(), lat[1::2, 1].numpy()
    far = t0 <= 39 - 5
    counts = np.bincount((t1 - t0)[far].astype(int), minlength=6)[1:]
    assert stats.chisquare(counts).pvalue > 1e-3
    assert ((t1 - t0)[t0 == 38] == 1).all()                         # clipped at the last frame


def test_kitti_frames_and_errors(tmp_path):
    path, masks, _ = _kitti_file(tmp_path)
    km = KittiMasks(path, device="cpu")
    images, lat = km.sample_frames(10, torch.Generator().manual_seed(0))
    keys = {(int(a), int(b)) for a, b in lat[:, :2]}
    assert len(keys) == 10                                           # without replacement: all first frames
    assert all(t < len(masks[s]) - 1 for s, t in keys)
    with pytest.raises(ConfigError, match="1..10"):
        km.sample_frames(11, torch.Generator())
    with pytest.raises(ConfigError, match="max_delta_t"):
        KittiMasks(path, max_delta_t=0)
    bad = tmp_path / "bad.pickle"
    with open(bad, "wb") as f:
        pickle.dump({"pedestrians": [np.zeros((3, 32, 32), bool)], "pedestrians_latents": [np.zeros((3, 3))]}, f)
    with pytest.raises(DataError, match="expected"):
        KittiMasks(bad)
    with pytest.raises(MissingFileError):
        KittiMasks(tmp_path / "nothing.pickle")


def test_kitti_fixture_layout(tmp_path):
    path = write_kitti_fixture(tmp_path / "k.pickle", n_sequences=4, seed=0)
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert set(data) == {"pedestrians", "pedestrians_latents"}
    for seq, lat in zip(data["pedestrians"], data["pedestrians_latents"]):
        assert seq.dtype == bool and seq.shape[1:] == (64, 64) and lat.dtype == np.float32
        assert (seq.sum((1, 2)) >= 30).all()
        assert np.allclose(lat[:, 2], seq.sum((1, 2)))


# ---------------------------------------------------------------- sparsity fits

def test_transition_sparsity_recovers_planted_shapes():
    from scipy.stats import gennorm
    rng = np.random.default_rng(1)
    d = np.stack([gennorm.rvs(b, scale=s, size=5000, random_state=rng) for b, s in ((0.5, 2.0), (1.0, 1.0), (2.0, 3.0))], 1)
    fit = transition_sparsity(d, ["a", "b", "c"])
    assert np.allclose(fit["shape"], [0.5, 1.0, 2.0], atol=0.1)
    assert np.allclose(fit["scale"], [2.0, 1.0, 3.0], rtol=0.15)
    with pytest.raises(DataError):
        transition_sparsity(np.zeros((50, 1)))
