"""superpos.measures.similarity (notebook 40): similarity backends: exact values, LPIPS identity, caching, labelled Gram matrices, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superpos.core import ConfigError, DataError, MissingExtraError
from superpos.stimuli.sets import StimulusSet
from superpos.measures.similarity import (BACKENDS, ColorHistogramSimilarity, DreamSim, LPIPSAlexNet,
                                          PerceptualSimilarity, PixelSimilarity, get_similarity, similarity_matrix,
                                          similarity_to_distance, stimulus_fingerprint)


def _stimuli(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    return StimulusSet(images, [f"s{i}" for i in range(n)], ["test"] * n)


def _solid(colours, size=16):
    images = torch.tensor(colours, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, size, size).contiguous()
    return StimulusSet(images, [f"c{i}" for i in range(len(colours))], ["solid"] * len(colours))


def test_pixel_is_one_minus_mse():
    stim = _stimuli()
    emb = PixelSimilarity().embed(stim)
    sim = PixelSimilarity().similarity(emb, emb)
    x = stim.tensor()
    mse = ((x[:, None] - x[None]) ** 2).flatten(2).mean(-1)
    torch.testing.assert_close(sim, 1 - mse, atol=1e-5, rtol=0)
    torch.testing.assert_close(PixelSimilarity().distance(emb, emb), mse, atol=1e-5, rtol=0)


def test_color_histogram_bhattacharyya():
    stim = _solid([[250, 10, 10], [250, 10, 10], [10, 10, 250]])
    backend = ColorHistogramSimilarity(bins=4)
    sim = backend.similarity(backend.embed(stim), backend.embed(stim))
    assert sim[0, 1] == pytest.approx(1.0, abs=1e-6)   # same colour distribution
    assert sim[0, 2] == pytest.approx(0.0, abs=1e-6)   # disjoint colours
    dist = backend.distance(backend.embed(stim), backend.embed(stim))
    assert dist[0, 2] == pytest.approx(1.0, abs=1e-6)  # Hellinger distance of disjoint histograms
    with pytest.raises(ConfigError):
        ColorHistogramSimilarity(bins=1)


def test_perceptual_is_uniform_lpips():
    stim = _stimuli(4, size=32)
    backend = PerceptualSimilarity(grid=2)
    emb = backend.embed(stim)
    sim = backend.similarity(emb, emb)
    torch.testing.assert_close(sim.diagonal(), torch.ones(4), atol=1e-4, rtol=0)
    with torch.no_grad():
        feats = backend._features(stim.tensor())
    slow = torch.zeros(4, 4)
    for f in feats:
        f = F.adaptive_avg_pool2d(f, (min(2, f.shape[-2]), min(2, f.shape[-1])))
        f = f / f.norm(dim=1, keepdim=True)
        slow += ((f[:, None] - f[None]) ** 2).sum(2).mean((-1, -2)) / len(feats)
    torch.testing.assert_close(backend.distance(emb, emb), slow, atol=1e-4, rtol=0)


def test_perceptual_groups_patterns_better_than_pixels():
    from superpos.measures.planted import feature_stimuli
    stim = feature_stimuli(64, size=32, seed=0)
    same = stim.factors["class"].to_numpy()[:, None] == stim.factors["class"].to_numpy()[None]
    off = ~np.eye(64, dtype=bool)
    gap = {}
    for name in ("pixel", "perceptual"):
        g = similarity_matrix(stim, name).values
        gap[name] = (g[same & off].mean() - g[~same].mean()) / g[off].std()
    assert gap["perceptual"] > 1.0
    assert gap["perceptual"] > gap["pixel"]


def test_embed_and_gram_are_cached():
    stim = _stimuli()
    backend = PixelSimilarity()
    a = backend.embed(stim)
    assert len(backend._cache) == 1
    b = backend.embed(StimulusSet(stim.images.clone(), stim.ids, stim.sources))  # equal set built twice
    assert len(backend._cache) == 1 and torch.equal(a, b)
    g1 = similarity_matrix(stim, backend)
    g2 = similarity_matrix(stim, "pixel")
    assert np.shares_memory(g1.values, g2.values)
    changed = stim.images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert stimulus_fingerprint(StimulusSet(changed, stim.ids, stim.sources)) != stimulus_fingerprint(stim)


def test_similarity_matrix_labels():
    stim = _stimuli()
    g = similarity_matrix(stim, "color_histogram")
    assert g.dims == ("stimulus", "stimulus_other")
    assert list(g.stimulus.values) == list(stim.ids) == list(g.stimulus_other.values)
    np.testing.assert_allclose(g.values, g.values.T)
    d = similarity_to_distance(g, g.attrs["distance_kind"])
    np.testing.assert_allclose(d.values, np.sqrt(np.clip(1 - g.values, 0, None)), atol=1e-6)


def test_errors():
    with pytest.raises(ConfigError, match="use one of"):
        get_similarity("alexnet")
    with pytest.raises(DataError, match="StimulusSet"):
        similarity_matrix(torch.zeros(2, 3, 8, 8), "pixel")
    with pytest.raises(DataError, match="at least 2"):
        similarity_matrix(_stimuli(1), "pixel")
    with pytest.raises(ConfigError):
        similarity_to_distance(torch.zeros(2), "cosh")
    assert set(BACKENDS) == {"pixel", "color_histogram", "perceptual", "lpips", "dreamsim"}


@pytest.mark.parametrize("cls,module,extra", [(LPIPSAlexNet, "lpips", "lpips"), (DreamSim, "dreamsim", "dreamsim")])
def test_optional_extras_name_the_extra(cls, module, extra):
    try:
        __import__(module)
    except ImportError:
        with pytest.raises(MissingExtraError, match=rf"superpos\[{extra}\]"):
            cls()
    else:
        pytest.skip(f"{module} is installed")


def test_caches_do_not_hand_out_their_own_memory():
    """Editing a returned embedding or similarity matrix in place cannot change a later result."""
    stim = _stimuli(seed=5)
    backend = PixelSimilarity()
    first = backend.embed(stim)
    expected = first.clone()
    first += 1.0
    torch.testing.assert_close(backend.embed(stim), expected)
    gram = similarity_matrix(stim, backend)
    before = gram.values.copy()
    with pytest.raises(ValueError, match="read-only"):
        gram.values[0, 1] = 10.0
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(gram)[:] = 0.0
    writable = gram.copy()  # the way to get a matrix one may edit
    writable.values[:] = 0.0
    np.testing.assert_array_equal(similarity_matrix(stim, backend).values, before)


def test_measures_take_the_read_only_matrix_without_copy_or_warning():
    import warnings
    from superpos.measures.index import interpretability_index
    from superpos.measures.similarity import gram_tensor
    stim = _stimuli(12, seed=6)
    gram = similarity_matrix(stim, "pixel")
    tensor = gram_tensor(gram, "cpu")
    assert tensor.data_ptr() == gram.values.ctypes.data  # shared, not copied
    responses = np.random.default_rng(0).standard_normal((12, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = interpretability_index(responses, stim, gram, n_references=3, n_boot=5)
    assert np.isfinite(result.score.values).all()


def test_gram_cache_is_bounded_by_memory(monkeypatch):
    import superpos.measures.similarity as similarity
    monkeypatch.setattr(similarity, "_GRAMS", type(similarity._GRAMS)())
    nbytes = similarity_matrix(_stimuli(40, seed=0), "pixel").values.nbytes  # 40 x 40 float32
    monkeypatch.setattr(similarity, "CACHE_BYTES", int(2.5 * nbytes))
    grams = [similarity_matrix(_stimuli(40, seed=s), "pixel") for s in range(1, 6)]
    assert sum(v.nbytes for v in similarity._GRAMS.values()) <= 2.5 * nbytes
    assert len(similarity._GRAMS) == 2  # the two most recent
    assert np.shares_memory(similarity_matrix(_stimuli(40, seed=5), "pixel").values, grams[-1].values)
    monkeypatch.setattr(similarity, "CACHE_BYTES", nbytes // 2)  # smaller than one matrix: the newest is kept
    similarity_matrix(_stimuli(40, seed=7), "pixel")
    assert len(similarity._GRAMS) == 1


def test_symmetrize_in_place_with_one_block_of_extra_memory():
    import tracemalloc
    from superpos.measures.similarity import symmetrize_
    m = np.random.default_rng(0).standard_normal((1500, 1500)).astype(np.float32)
    expected = 0.5 * (m + m.T)
    tracemalloc.start()
    out = symmetrize_(m, block=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out is m
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_allclose(m, expected, rtol=1e-6)
    assert peak < 4 * 256 * 256 * 4 < m.nbytes / 8  # a few tiles, not a copy of the matrix


def test_perceptual_records_its_layers_and_pooling():
    from superpos.measures.similarity import PerceptualSimilarity
    backend = PerceptualSimilarity(grid=2)
    gram = similarity_matrix(_stimuli(3, size=32, seed=1), backend)
    description = gram.attrs["backend_description"]
    assert "blocks [3, 6, 10, 14, 19, 20]" in description and "channel stage" in description
    assert "2x2" in description
    assert "channel stage" in PerceptualSimilarity.__doc__ and "resolution stage" not in PerceptualSimilarity.__doc__
