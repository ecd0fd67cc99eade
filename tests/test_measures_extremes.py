"""superpos.measures.extremes (notebook 41): inputs checked by the responses contract, ranks, extremes, intervals."""
import numpy as np
import pytest
import torch
import xarray as xr
from measures_data import labelled, random_gram

from superpos.core import ConfigError, DataError
from superpos.measures.extremes import extreme_stimuli, prepare_inputs
from superpos.measures.selection import rank_order, ranked_stimuli
from superpos.measures.bootstrap import percentile_interval, resample_means
from superpos.measures.planted import feature_stimuli, planted_responses
from superpos.responses import check_varying


def test_responses_are_aligned_to_the_similarity_ids():
    gram = random_gram(30, seed=1)
    ids = gram.stimulus.values
    vals = np.random.default_rng(2).normal(size=(30, 3))
    perm = np.random.default_rng(3).permutation(30)
    a = prepare_inputs(labelled(vals, ids), None, gram)
    b = prepare_inputs(labelled(vals[perm], ids[perm]), None, gram)
    torch.testing.assert_close(a.values, b.values)
    assert list(a.ids) == list(ids) and a.dim == "unit" and a.kind == "one_minus"


@pytest.mark.parametrize("dim", ["unit", "neuron", "direction", "latent"])
def test_every_response_dim_is_accepted(dim):
    gram = random_gram(20, seed=4)
    vals = np.random.default_rng(5).normal(size=(20, 2))
    inputs = prepare_inputs(labelled(vals, gram.stimulus.values, dim), None, gram)
    assert inputs.dim == dim and inputs.names.dims == (dim,)


def test_bad_responses_get_the_contract_messages():
    gram = random_gram(20, seed=6)
    ids = gram.stimulus.values
    vals = np.random.default_rng(7).normal(size=(20, 2))
    bad = {"extra dim": xr.DataArray(vals, dims=("image", "unit")),
           "NaN": labelled(np.where(np.arange(40).reshape(20, 2) == 3, np.nan, vals), ids),
           "constant": labelled(np.c_[vals[:, 0], np.ones(20)], ids),
           "other dim name": xr.DataArray(vals, dims=("stimulus", "channel"), coords={"stimulus": ids})}
    for name, resp in bad.items():
        with pytest.raises(DataError) as ours:
            prepare_inputs(resp, None, gram)
        with pytest.raises(DataError) as contract:   # the contract itself rejects it with the same message
            check_varying(resp)
        assert str(ours.value) == str(contract.value), name
    plain = prepare_inputs(vals, None, gram)   # a plain array: rows in the order of the similarity's stimuli
    np.testing.assert_array_equal(plain.ids, ids)
    np.testing.assert_array_equal(plain.values.cpu().numpy(), prepare_inputs(labelled(vals, ids), None, gram).values.cpu().numpy())
    with pytest.raises(DataError, match="have 15 rows but the stimulus set has 20"):
        prepare_inputs(vals[:15], None, gram)
    with pytest.raises(DataError, match="too few"):
        prepare_inputs(labelled(vals, ids), None, gram, min_stimuli=21)
    with pytest.raises(ConfigError, match="stimuli are needed"):
        prepare_inputs(labelled(vals, ids), None, "pixel")
    with pytest.raises(DataError, match="StimulusSet"):
        prepare_inputs(labelled(vals, ids), "not a stimulus set", gram)


def test_similarity_must_cover_the_stimuli():
    stim = feature_stimuli(16, size=8, seed=0)
    gram = random_gram(16, seed=8)
    resp = planted_responses(stim, n_units=2)
    with pytest.raises(DataError, match="not in the similarity matrix"):
        prepare_inputs(resp, stim, gram)
    with pytest.raises(DataError, match="stimulus_other"):
        prepare_inputs(resp, stim, gram.rename(stimulus_other="other"))


def test_ranks_and_extremes_agree_and_break_ties_at_random():
    vals = torch.as_tensor(np.random.default_rng(9).normal(size=(50, 4)))
    order = rank_order(vals)
    top, bottom = extreme_stimuli(vals, 5)
    torch.testing.assert_close(top, order[:5].T)
    torch.testing.assert_close(bottom, order.flip(0)[:5].T)
    torch.testing.assert_close(ranked_stimuli(order, torch.arange(3).expand(4, 3)), order[:3].T)
    ties = torch.zeros(1000, 1)
    firsts = {int(rank_order(ties, seed=s)[0, 0]) for s in range(20)}
    assert len(firsts) > 10                               # not the first stimulus in file order


def test_bootstrap_interval_covers_the_mean():
    x = torch.as_tensor(np.random.default_rng(10).normal(size=(200, 100)))
    low, high = percentile_interval(resample_means(x, 500, torch.Generator().manual_seed(0)), 0.9)
    covered = (low < 0) & (0 < high)
    assert 0.8 < covered.mean() < 0.98


def _nan_gram(n=100, seed=20, value=np.nan):
    gram = random_gram(n, seed=seed)
    values = gram.values.copy()
    values[3, 7] = values[7, 3] = value
    return gram.copy(data=values)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_nan_similarity_is_an_error_in_every_measure(value):
    from superpos.measures.index import interpretability_index
    from superpos.measures.mis import mis
    from superpos.measures.twoafc import psychophysics_2afc
    gram = _nan_gram(value=value)
    resp = labelled(np.random.default_rng(21).normal(size=(100, 3)), gram.stimulus.values)
    for fn, kwargs in [(interpretability_index, {}), (mis, {}),
                       (psychophysics_2afc, {"n_tasks": 4, "n_references": 3})]:   # before: MIS 0.0, II/2-AFC NaN
        with pytest.raises(DataError, match="NaN or infinite entries.*'x3' and 'x7'"):
            fn(resp, None, gram, n_boot=0, **kwargs)
    with pytest.raises(DataError, match="square with unique"):
        prepare_inputs(resp, None, gram.isel(stimulus=slice(0, 50)))


def test_interval_and_seed_parameters_are_checked_with_their_fix():
    from superpos.measures.extremes import check_integer
    from superpos.measures.bootstrap import check_bootstrap, seed_streams
    with pytest.raises(ConfigError, match=r"fraction in \(0, 1\), like 0.95; got 95 \(for a 95% interval pass ci=0.95\)"):
        check_bootstrap(100, 95)
    for bad in (-1, 2.5, "10", None, np.nan):
        with pytest.raises(ConfigError, match="n_boot must be a whole number >= 0"):
            check_bootstrap(bad, 0.95)
    assert check_bootstrap(10.0, 0.5) == 10 and check_integer("k", np.int64(3), 1) == 3
    with pytest.raises(ConfigError, match="seed"):
        seed_streams(-1, 2)
    streams = [seed_streams(s, 4) for s in range(50)]
    assert len({x for row in streams for x in row}) == 200        # no two choices or seeds share a stream
    with pytest.raises(DataError, match="cannot take the 11 most extreme of 10"):
        extreme_stimuli(torch.zeros(10, 2), 11)


def test_stratified_bootstrap_matches_the_stratified_standard_error():
    from superpos.measures.bootstrap import stratified_resample_means
    rng = np.random.default_rng(22)
    x = torch.as_tensor(np.stack([rng.normal(1.0, 0.1, (50, 40)), rng.normal(0.0, 1.0, (50, 40))], 1))  # U x Q x T
    boot = stratified_resample_means(x, 4000, torch.Generator().manual_seed(0))
    assert boot.shape == (4000, 50)
    torch.testing.assert_close(boot.mean(0), x.mean((1, 2)), atol=0.01, rtol=0)
    var_q = x.var(-1, unbiased=False)                                  # U x Q
    se = (var_q.sum(1) / 40).sqrt() / 2                                # sd of the equal-weight mean of 2 strata
    ratio = boot.std(0) / se
    assert float((ratio - 1).abs().median()) < 0.05, ratio


def test_a_read_only_similarity_is_used_without_warning_or_copying_back():
    import warnings
    gram = random_gram(30, seed=23)
    frozen = gram.copy(data=gram.values.astype(np.float32))          # as similarity_matrix caches it
    frozen.values.flags.writeable = False
    resp = labelled(np.random.default_rng(24).normal(size=(30, 2)), gram.stimulus.values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inputs = prepare_inputs(resp, None, frozen)
    inputs.gram[0, 0] = 5.0                                   # the measure's copy, not the cache's matrix
    assert frozen.values[0, 0] == gram.values[0, 0]


@pytest.mark.parametrize("levels", [2, 5, 50, None])
def test_stable_topk_is_a_stable_sort_cut_to_depth(levels):
    """The partial selection gives exactly a stable full sort's first `depth` columns, ties at the cut included."""
    from superpos.measures.selection import _stable_topk
    gen = torch.Generator().manual_seed(levels or 0)
    for n, depth in [(1, 1), (7, 7), (40, 1), (40, 13), (301, 60)]:
        x = torch.randn(9, n, generator=gen) if levels is None else torch.randint(0, levels, (9, n), generator=gen).float()
        assert torch.equal(_stable_topk(x, depth), x.argsort(dim=1, descending=True, stable=True)[:, :depth])
        assert torch.equal(_stable_topk(x, depth, largest=False), x.argsort(dim=1, stable=True)[:, :depth])


def _awkward_responses(n: int, u: int, seed: int) -> torch.Tensor:
    """float32 responses with every kind of tie: rectified zeros, -0 next to +0, few levels, denormals, extremes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, u, generator=gen)
    x[:, 0::4] = torch.relu(x[:, 0::4])                                        # many zeros at the bottom
    x[:, 1::4] = torch.randint(-2, 3, (n, len(range(1, u, 4))), generator=gen).float()
    x[::3, 1::4] *= -1                                                          # -0.0 among +0.0 and repeated levels
    x[:, 2::4] *= 1e-42                                                         # denormals
    x[: n // 2, 3::4] = torch.where(torch.rand(n // 2, len(range(3, u, 4)), generator=gen) < 0.5,
                                    torch.tensor(3.4e38), torch.tensor(-3.4e38))
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,depth", [(1, 1), (9, 9), (300, 1), (300, 61), (2000, 400), (2000, 20), (6400, 200)])
def test_extremes_are_the_seeded_rank_order_cut_to_depth(dtype, n, depth):
    """Both selection paths (float32 keys, float64 stable partial sorts) give exactly `rank_order`'s ends."""
    x = _awkward_responses(n, 12, seed=n + depth).to(dtype)
    top, bottom = extreme_stimuli(x, depth, seed=5)
    assert torch.equal(top, rank_order(x, seed=5)[:depth].T)
    assert torch.equal(bottom, rank_order(-x, seed=5)[:depth].T)


def test_order_keys_sort_as_a_stable_descending_sort_on_either_selection():
    """The keys' ascending order is a stable sort by decreasing response; flipped, by increasing response;
    numpy's partition (the CPU default) and topk (the GPU's) select the same keys."""
    from superpos.measures.selection import FLIP_RESPONSE, _smallest_keys, order_keys
    x = _awkward_responses(500, 8, seed=1).T.contiguous()
    positions = torch.arange(500)
    keys = order_keys(x, positions)
    assert torch.equal(keys.sort(dim=1).values & 0xFFFFFFFF, x.argsort(dim=1, descending=True, stable=True))
    assert torch.equal((keys ^ FLIP_RESPONSE).sort(dim=1).values & 0xFFFFFFFF, x.argsort(dim=1, stable=True))
    for depth in (1, 37, 500):
        assert torch.equal(_smallest_keys(keys, depth, numpy=True), _smallest_keys(keys, depth, numpy=False))


def test_stimuli_at_ranks_reads_the_same_stimuli_as_the_full_ends():
    """Only the ranks asked for, a chunk of units at a time (many chunks here), equal `ranked_stimuli` of the ends."""
    from superpos.measures import blockwise, extremes
    x = _awkward_responses(400, 30, seed=2)
    gen = torch.Generator().manual_seed(3)
    top_pos, bottom_pos = torch.randint(0, 80, (30, 6, 4), generator=gen), torch.randint(0, 400, (30, 5), generator=gen)
    top, bottom = extreme_stimuli(x, 400, seed=7)
    want = ranked_stimuli(top.T, top_pos), ranked_stimuli(bottom.T, bottom_pos)
    old = blockwise.CPU_CHUNK_BYTES
    try:
        blockwise.CPU_CHUNK_BYTES = 40 * 400 * 4                       # 4 units per chunk
        got = extremes.stimuli_at_ranks(x, top_pos, bottom_pos, seed=7)
    finally:
        blockwise.CPU_CHUNK_BYTES = old
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(DataError, match="rank positions"):
        extremes.stimuli_at_ranks(x, top_pos + 400, bottom_pos, seed=7)
    with pytest.raises(DataError, match="one row per unit"):
        extremes.stimuli_at_ranks(x, top_pos[:3], bottom_pos, seed=7)
