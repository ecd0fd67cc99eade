"""Property tests of superpos.disentangle.natural: Natural Sprites and KITTI Masks against the
reference loaders (bethgelab/slow_disentanglement), re-typed here one sample at a time."""
import ast
import csv
import pickle
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import superpos.disentangle.natural as natural_module
from superpos.core import ConfigError, DataError, DownloadError, MissingFileError, sha256sum
from superpos.disentangle.natural import (KITTI_MASKS_FILE, NATURAL_SPRITES_FILE, KittiMasks, NaturalSprites,
                                          checksum_record, dataset_file, natural_shape_table,
                                          read_natural_sprites_csv, record_checksum, render_natural_sprites,
                                          transition_sparsity, write_kitti_fixture, write_natural_sprites_fixture)

torch.set_num_threads(1)


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
    assert len(ns) == keep.sum() < len(raw["id"])
    assert np.array_equal(ns.table["area"], raw["area"][keep])
    nd = NaturalSprites(path, device="cpu", discrete=True)
    for key, n_bins in (("x", 32), ("y", 32), ("area", 6)):
        values = raw[key][keep]
        _, edges = np.histogram(values.ravel(), bins=n_bins)
        centres = edges[:-1] + (edges[1:] - edges[:-1]) / 2
        expected = centres[np.abs(values[..., None] - centres).argmin(-1)]
        assert np.allclose(nd.table[key], expected), key
        assert len(np.unique(nd.table[key])) <= n_bins


def test_natural_pairs_follow_the_rule(tmp_path):
    path = write_natural_sprites_fixture(tmp_path / "f.csv", n_objects=80, seed=6)
    ns = NaturalSprites(path, device="cpu")
    g = torch.Generator().manual_seed(0)
    factors = ns.pair_factors(torch.randint(len(ns), (4000,), generator=g), g).numpy()
    first, second = factors[0::2], factors[1::2]
    assert np.array_equal(first[:, 3:], second[:, 3:])                       # angle, shape shared
    assert set(np.unique(first[:, 4])) == {0, 1, 2, 3}
    assert set(np.unique(first[:, 3])) <= set(range(0, 360, 9)) and len(np.unique(first[:, 3])) == 40
    table = np.stack([ns.table["x"] / 64, ns.table["y"] / 64, np.sqrt(ns.table["area"]) / 64], -1)  # (m, 2, 3)
    drawn = np.stack([first[:, :3], second[:, :3]], 1)
    match = (np.abs(drawn[:, None] - table[None]) < 1e-12).all((2, 3))
    assert match.any(1).all()                                                # every pair is a CSV pair, in order
    counts = np.bincount(match.argmax(1), minlength=len(table))
    assert stats.chisquare(counts[: len(table)]).pvalue > 1e-4              # drawn uniformly


def _pil_reference(f):
    """spriteworld's PILRenderer (5x canvas, polygon fill, Lanczos downsampling, flipud) for one sprite."""
    from PIL import Image, ImageDraw
    verts = natural_shape_table()[int(f[4])].numpy()
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
    for f, img in zip(factors, ours[:, 0].numpy()):
        ref = _pil_reference(f)
        assert np.abs(img - ref).mean() < 0.005
        inter = ((img > 0.5) & (ref > 0.5)).sum()
        union = ((img > 0.5) | (ref > 0.5)).sum()
        assert inter / union > 0.9
        # ours has the polygon's exact area; PIL also paints the boundary pixels of its 5x canvas,
        # i.e. a rim of a few hundredths of an output pixel all round
        v = natural_shape_table()[int(f[4])].numpy() * f[2] * 64
        perimeter = np.linalg.norm(np.diff(np.vstack([v, v[:1]]), axis=0), axis=1).sum()
        assert abs(img.sum() - f[2] ** 2 * 4096) / img.sum() < 0.02
        assert 0 < (ref.sum() - img.sum()) / perimeter < 0.15


def test_natural_download_and_checksum(tmp_path, monkeypatch):
    source = write_natural_sprites_fixture(tmp_path / "published.csv", n_objects=10, seed=1)
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(natural_module, "NATURAL_SPRITES_URL", source.as_uri())
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
    record_checksum(path)                     # a file made here: trusted
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
    images, lat = km.pairs(20_000, torch.Generator().manual_seed(1))
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
    _, lat = km.pairs(30_000, torch.Generator().manual_seed(2))
    t0, t1 = lat[0::2, 1].numpy(), lat[1::2, 1].numpy()
    far = t0 <= 39 - 5
    counts = np.bincount((t1 - t0)[far].astype(int), minlength=6)[1:]
    assert stats.chisquare(counts).pvalue > 1e-3
    assert ((t1 - t0)[t0 == 38] == 1).all()                         # clipped at the last frame


def test_kitti_frames_and_errors(tmp_path):
    path, masks, _ = _kitti_file(tmp_path)
    km = KittiMasks(path, device="cpu")
    images, lat = km.frames(10, torch.Generator().manual_seed(0))
    keys = {(int(a), int(b)) for a, b in lat[:, :2]}
    assert len(keys) == 10                                           # without replacement: all first frames
    assert all(t < len(masks[s]) - 1 for s, t in keys)
    with pytest.raises(ConfigError, match="1..10"):
        km.frames(11, torch.Generator())
    with pytest.raises(ConfigError, match="max_delta_t"):
        KittiMasks(path, max_delta_t=0)
    bad = tmp_path / "bad.pickle"
    with open(bad, "wb") as f:
        pickle.dump({"pedestrians": [np.zeros((3, 32, 32), bool)], "pedestrians_latents": [np.zeros((3, 3))]}, f)
    record_checksum(bad)                      # trusted, but the wrong layout
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


# ---------------------------------------------------------------- checksums before unpickling
_SIDE_EFFECT = """
import pathlib
class Payload:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path({marker!r}),))
"""


def _booby_trapped_pickle(path, marker):
    """A pickle whose loading creates `marker` (what a tampered download could do)."""
    namespace = {}
    exec(_SIDE_EFFECT.format(marker=str(marker)), namespace)
    with open(path, "wb") as f:
        pickle.dump({"pedestrians": [namespace["Payload"]()], "pedestrians_latents": []}, f)
    return path


def test_kitti_pickle_is_only_unpickled_after_its_checksum_matches(tmp_path):
    marker = tmp_path / "code_ran"
    good = write_kitti_fixture(tmp_path / KITTI_MASKS_FILE, n_sequences=3, seed=0)
    assert checksum_record(good).read_text().strip() == sha256sum(good)       # the fixture records its hash
    assert len(KittiMasks(good, device="cpu")) > 0
    # replaced after its hash was recorded: refused before unpickling
    _booby_trapped_pickle(good, marker)
    with pytest.raises(DownloadError, match="SHA-256"):
        KittiMasks(good)
    assert not marker.exists()
    # no recorded and no given hash: refused, naming the file's hash
    loose = _booby_trapped_pickle(tmp_path / "loose.pickle", marker)
    with pytest.raises(DataError, match=f"refusing to unpickle .*{sha256sum(loose)}"):
        KittiMasks(loose)
    assert not marker.exists()
    # a given hash that does not match is refused too; a matching one loads
    with pytest.raises(DownloadError, match="expected"):
        KittiMasks(loose, sha256="0" * 64)
    assert not marker.exists()
    other = write_kitti_fixture(tmp_path / "other.pickle", n_sequences=2, seed=1)
    checksum_record(other).unlink()
    assert len(KittiMasks(other, sha256=sha256sum(other), device="cpu")) > 0


def test_natural_sprites_csv_is_checked_against_its_recorded_hash(tmp_path):
    path = write_natural_sprites_fixture(tmp_path / NATURAL_SPRITES_FILE, n_objects=10, seed=0)
    assert len(NaturalSprites(path, device="cpu")) > 0          # no record yet: a CSV is only parsed
    record_checksum(path)
    assert len(NaturalSprites(path, device="cpu")) > 0
    with open(path, "a") as f:
        f.write("9999,1\n")
    with pytest.raises(DownloadError, match="SHA-256"):
        NaturalSprites(path)
    with pytest.raises(DownloadError, match="expected"):
        NaturalSprites(path, sha256="0" * 64)


def test_first_download_records_the_hash_and_later_loads_check_it(tmp_path):
    source = write_kitti_fixture(tmp_path / "published.pickle", n_sequences=2, seed=0)
    checksum_record(source).unlink()
    local = tmp_path / "cache" / KITTI_MASKS_FILE
    got = dataset_file(local, "kitti_masks", KITTI_MASKS_FILE, source.as_uri(), download_ok=True)
    assert checksum_record(got).read_text().strip() == sha256sum(source)
    assert len(KittiMasks(got, device="cpu")) > 0
    local.write_bytes(b"corrupted")
    with pytest.raises(DownloadError):
        KittiMasks(got)
