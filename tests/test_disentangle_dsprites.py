"""Property tests of superpos.disentangle.dsprites: the dSprites grid and rendering."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from superpos.core import DataError
from superpos.disentangle.dsprites import (FACTOR_NAMES, FACTOR_SIZES, DSprites, gif_factors, pack_images,
                                           position_centres, read_dsprites_gif, render_direct, render_sprites,
                                           unpack_images)

GIF = Path(__file__).parent / "data" / "dsprites" / "dsprites.gif"

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


def test_windowed_rendering_matches_direct_rendering(ds):
    factors = ds.sample_factors(500, torch.Generator().manual_seed(4))
    direct = render_direct(factors, position_centres(factors[:, 3]), position_centres(factors[:, 4]))
    assert torch.equal(ds.render(factors)[:, 0].bool(), direct)
    assert torch.equal(render_sprites(factors), direct)


# ---------------------------------------------------------------- fidelity to the real dSprites frames
@pytest.fixture(scope="module")
def real():
    return read_dsprites_gif(GIF), gif_factors()


def test_gif_frame_order_is_consistent(real):
    frames, factors = real
    assert frames.shape == (320, 64, 64) and factors.shape == (320, 5)
    # frames that the order says show the same factors are identical, and all 258 distinct rows differ
    keys = [tuple(r) for r in factors.tolist()]
    first = {}
    for i, key in enumerate(keys):
        if key in first:
            assert torch.equal(frames[i], frames[first[key]]), (i, key)
        first.setdefault(key, i)
    assert len(first) == 258
    # the real position grid: the heart's centroid moves by 32 px between positions 0 and 31
    h = torch.arange(64, dtype=torch.float64) + 0.5
    x0, x31 = frames[first[(2, 5, 0, 0, 31)]].double(), frames[first[(2, 5, 0, 31, 31)]].double()
    assert (x31.sum(0) * h).sum() / x31.sum() - (x0.sum(0) * h).sum() / x0.sum() == pytest.approx(32, abs=1e-9)


def test_renderer_matches_the_real_frames(real):
    frames, factors = real
    ours = render_sprites(factors)
    iou = (ours & frames).sum((1, 2)) / (ours | frames).sum((1, 2))
    square, ellipse, heart = (factors[:, 0] == s for s in range(3))
    assert torch.equal(ours[square], frames[square])                  # every scale and orientation
    assert iou[ellipse].min() >= 0.97 and iou[heart].min() >= 0.97     # ... and the heart's positions
    # the pixel counts of the published notes: rotated squares 368 px, not 400
    counts = ours.sum((1, 2))
    rotated = square & (factors[:, 1] == 5) & (factors[:, 2] % 39 != 0)
    assert (counts[rotated] == frames[rotated].sum((1, 2))).all()
    assert torch.median(counts[rotated]).item() == 368
    at_scale_1 = (factors[:, 1] == 5) & (factors[:, 2] == 0) & (factors[:, 3] == 0) & (factors[:, 4] == 0)
    assert [int(counts[at_scale_1 & (factors[:, 0] == s)][0]) for s in range(3)] == [400, 288, 222]


def test_read_gif_rejects_other_files(tmp_path):
    (tmp_path / "x.gif").write_bytes(b"not a gif")
    with pytest.raises(DataError, match="dsprites.gif"):
        read_dsprites_gif(tmp_path / "x.gif")


def test_sprites_fit_inside_the_image(ds):
    # the largest sprites at the extreme positions must not touch the border (no clipping)
    rows = torch.tensor([[s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)])
    images = ds.render(rows)[:, 0]
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert border == 0
    # positions 0 and 31 are whole pixels apart (centres 16 and 48): the same sprite, shifted by 32 px
    grid = images.view(3, 40, 2, 2, 64, 64)
    assert torch.equal(grid[:, :, 1, 1], grid[:, :, 0, 0].roll((32, 32), (2, 3)))


def _centroid(images):
    h = torch.arange(64, dtype=torch.float32)
    mass = images.sum((1, 2))
    return (images.sum(1) * h).sum(1) / mass, (images.sum(2) * h).sum(1) / mass


def test_factors_act_as_named(ds):
    base = torch.tensor([1, 3, 0, 10, 20])
    # x moves the sprite right and y moves it down: 32 px over the 31 steps (32/31 px a step)
    xs = torch.stack([base.clone().index_put_((torch.tensor(3),), torch.tensor(i)) for i in range(32)])
    cx, cy = _centroid(ds.render(xs)[:, 0])
    assert (cx[-1] - cx[0]).item() == pytest.approx(32, abs=0.15) and (cx.diff() > 0.8).all()
    assert (cy - cy[0]).abs().max() < 0.15
    ys = torch.stack([base.clone().index_put_((torch.tensor(4),), torch.tensor(i)) for i in range(32)])
    cx, cy = _centroid(ds.render(ys)[:, 0])
    assert (cy[-1] - cy[0]).item() == pytest.approx(32, abs=0.15) and (cy.diff() > 0.8).all()
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
    centred = render_direct(torch.tensor([[s, 5, o] for s in range(2) for o in range(40)]), torch.full((80,), 32.0),
                            torch.full((80,), 32.0))
    reflected = centred.flip(1, 2)              # the centre is the pixel edge (32, 32): c -> 63 - c
    assert torch.equal(centred, reflected)


def test_cache_matches_rendering():
    ds = DSprites(device="cpu")
    # build the packed cache for a slice of the grid with the same code path as cache=True
    index = torch.arange(0, 737_280, 37)
    packed = pack_images(ds.render(ds.index_to_factors(index))[:, 0].bool())
    ds.packed = torch.zeros(ds.n_images, 512, dtype=torch.uint8)
    ds.packed[index] = packed
    factors = ds.index_to_factors(index[::5])
    cached = ds.render(factors)
    ds.packed = None
    assert torch.equal(cached, ds.render(factors))
    # the layout is numpy's packbits (most significant bit first)
    img = ds.render(factors[:3])[:, 0].bool().numpy()
    assert np.array_equal(np.packbits(img.reshape(3, -1), axis=1), pack_images(torch.from_numpy(img)).numpy())
    assert np.array_equal(unpack_images(pack_images(torch.from_numpy(img)))[:, 0].bool().numpy(), img)


def test_sample_factors_uniform(ds):
    factors = ds.sample_factors(60_000, torch.Generator().manual_seed(0))
    for j, size in enumerate(FACTOR_SIZES):
        counts = np.bincount(factors[:, j].numpy(), minlength=size)
        assert stats.chisquare(counts).pvalue > 1e-4, FACTOR_NAMES[j]
