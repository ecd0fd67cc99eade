"""Property tests of superpos.disentangle.pairs: the SlowVAE transition rules on dSprites and the
one pair-dataset protocol, which every dataset of the chapter must satisfy.

The transition rules are checked against a straightforward per-sample re-implementation of the
reference definition (bethgelab/slow_disentanglement, `TupleLoader.__getitem__` and
`truncated_laplace`): a Python loop with `scipy.stats.laplace.pdf` and `np.random.choice`.
"""
import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import laplace

from superpos.core import ConfigError, DataError
from superpos.disentangle.dsprites import FACTOR_NAMES, FACTOR_SIZES, DSprites
from superpos.disentangle.natural import KittiMasks, NaturalSprites, write_kitti_fixture, write_natural_sprites_fixture
from superpos.disentangle.pairs import DSpritesPairs, PairBatch, PairDataset, PairSampler, check_pairs

torch.set_num_threads(1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def ds():
    return DSprites(device="cpu")


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
    sampler = PairSampler(device="cpu", **case)
    first_new = ds.sample_factors(n_new, torch.Generator().manual_seed(2))
    second_new = sampler.sample(first_new, gen(1))
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
    new = PairSampler(rate=rate, device="cpu").sample(torch.tensor(start).repeat(n_new, 1), gen(3)).numpy()
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
    new = PairSampler(device="cpu").sample(start.repeat(200_000, 1), gen(7)).numpy()
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
    second = PairSampler(rate=rate, device="cpu").sample(first, gen(0))
    assert torch.equal(second[:, 0], first[:, 0])                  # categorical fixed
    assert ((second != first).sum(1) >= 1).all()                   # at least one change
    assert ((second >= 0) & (second < torch.tensor(FACTOR_SIZES))).all()


def test_categorical_other_factors():
    sampler = PairSampler(categorical=(0, 2), device="cpu")
    first = torch.tensor([[1, 2, 10, 5, 5]]).repeat(5000, 1)
    second = sampler.sample(first, gen(0))
    assert torch.equal(second[:, [0, 2]], first[:, [0, 2]])
    assert ((second != first).sum(1) >= 1).all()


def test_uniform_changes_exactly_k(ds):
    first = ds.sample_factors(20_000, torch.Generator().manual_seed(0))
    for k in (1, 3, 5):
        second = PairSampler(mode="uniform", k=k, device="cpu").sample(first, gen(k))
        assert ((second != first).sum(1) == k).all()
    second = PairSampler(mode="uniform", k=-1, device="cpu").sample(first, gen(0))
    counts = np.bincount((second != first).sum(1).numpy(), minlength=6)
    assert counts[0] == 0 and counts[5] == 0
    assert stats.chisquare(counts[1:5]).pvalue > 1e-3             # k uniform on 1..4
    assert (second[:, 0] != first[:, 0]).any()                    # uniform mode may change the shape


def test_sampler_determinism_and_resume(ds):
    first = ds.sample_factors(64, gen(0))
    for mode in ("laplace", "uniform"):
        sampler = PairSampler(mode=mode, rate=-1, device="cpu")
        assert torch.equal(sampler.sample(first, gen(5)), sampler.sample(first, gen(5)))
        assert not torch.equal(sampler.sample(first, gen(5)), sampler.sample(first, gen(6)))
        a = gen(5)
        state = a.get_state()
        expected = [sampler.sample(first, a) for _ in range(3)]
        resumed = torch.Generator().set_state(state)
        assert all(torch.equal(e, sampler.sample(first, resumed)) for e in expected)


def test_pair_batch_resume_and_layout(ds):
    pairs, g = DSpritesPairs(ds), gen(11)
    pairs.pairs(8, g)
    state = g.get_state()
    images, factors = pairs.pairs(32, g)
    assert images.shape == (64, 1, 64, 64) and factors.shape == (64, 5) and factors.dtype == torch.float64
    assert torch.equal(images, ds.render(factors.long()))
    assert torch.equal(factors[0::2, 0], factors[1::2, 0])
    assert ((factors[0::2] != factors[1::2]).sum(1) >= 1).all()
    images2, factors2 = pairs.pairs(32, torch.Generator().set_state(state))
    assert torch.equal(factors, factors2) and torch.equal(images, images2)


def test_pairs_repeat_the_stream_of_the_reference_layout(ds):
    """pairs() = first frames drawn uniformly from the generator, then the rule from the same generator."""
    pairs = DSpritesPairs(ds, rate=-1)
    _, factors = pairs.pairs(50, gen(3))
    g = gen(3)
    first = ds.index_to_factors(torch.randint(ds.n_images, (50,), generator=g))
    second = pairs.sampler.sample(first, g)
    assert torch.equal(factors.long(), torch.stack([first, second], 1).reshape(100, 5))


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
    with pytest.raises(ConfigError, match="n_pairs"):
        DSpritesPairs(DSprites(device="cpu")).pairs(0, gen(0))
    with pytest.raises(DataError):
        PairSampler(device="cpu").sample(torch.tensor([[0, 0, 0, 0, 32]]), gen(0))




# ---------------------------------------------------------------- the one protocol

def _datasets(tmp_path):
    natural = NaturalSprites(write_natural_sprites_fixture(tmp_path / "n.csv", n_objects=20, seed=0), device="cpu")
    kitti = KittiMasks(write_kitti_fixture(tmp_path / "k.pickle", n_sequences=4, seed=0), device="cpu")
    return {"dsprites": DSpritesPairs(device="cpu"), "dsprites-uniform": DSpritesPairs(device="cpu", mode="uniform"),
            "natural_sprites": natural, "kitti_masks": kitti}


@pytest.mark.parametrize("name", ["dsprites", "dsprites-uniform", "natural_sprites", "kitti_masks"])
def test_every_dataset_satisfies_the_pair_protocol(tmp_path, name):
    dataset = _datasets(tmp_path)[name]
    assert isinstance(dataset, PairDataset) and len(dataset) > 0
    batch = check_pairs(dataset, 6)
    assert isinstance(batch, PairBatch)
    images, factors = batch
    assert images.shape == (12, dataset.n_channels, 64, 64) and images.dtype == torch.float32
    assert factors.shape == (12, len(dataset.factor_names)) and factors.dtype == torch.float64
    # pairs(n, g) draws its indices uniformly from g, then completes them with pairs_at(index, g)
    g = gen(1)
    index = torch.randint(len(dataset), (6,), generator=g)
    again = dataset.pairs_at(index, g)
    assert all(torch.equal(a, b) for a, b in zip(dataset.pairs(6, gen(1)), again))
    # the same generator state gives the same pairs
    assert all(torch.equal(a, b) for a, b in zip(dataset.pairs(6, gen(2)), dataset.pairs(6, gen(2))))
    # single frames for evaluation follow the same rules
    frames = dataset.frames(5, gen(3))
    assert frames.images.shape == (5, dataset.n_channels, 64, 64) and frames.images.dtype == torch.float32
    assert frames.factors.shape == (5, len(dataset.factor_names)) and frames.factors.dtype == torch.float64
    with pytest.raises(ConfigError, match="n_pairs"):
        dataset.pairs(0, gen(0))


def test_len_counts_pair_indices(tmp_path):
    datasets = _datasets(tmp_path)
    assert len(datasets["dsprites"]) == 737_280                                  # first frames: the grid
    assert len(datasets["natural_sprites"]) == len(datasets["natural_sprites"].xys)   # CSV pairs
    kitti = datasets["kitti_masks"]
    assert len(kitti) == len(kitti.images) - kitti.n_sequences                  # frames with a successor


def test_check_pairs_rejects_a_broken_dataset():
    class Broken(PairDataset):
        factor_names = ("a",)

        def __len__(self):
            return 3

        def pairs_at(self, index, generator):
            return PairBatch(torch.full((2 * len(index), 1, 64, 64), 2.0), torch.zeros(2 * len(index), 1).long())

        def frames(self, n, generator):
            return self.pairs(n, generator)

    with pytest.raises(DataError, match="factors dtype torch.int64.*outside"):
        check_pairs(Broken())
    with pytest.raises(DataError, match="not a PairDataset"):
        check_pairs(object())
