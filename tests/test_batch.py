"""fit_batch, pad and fit_restarts: every member ends where its own fit ends."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import jaxem


def _datasets(n_datasets, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_datasets):
        means = rng.normal(0.0, 3.0, (3, 2))
        labels = rng.integers(0, 3, n_samples)
        out.append(means[labels] + rng.normal(size=(n_samples, 2)) * rng.uniform(0.5, 1.5, 2))
    return np.stack(out)


def _member(tree, b):
    return jax.tree.map(lambda a: a[b], tree)


def _assert_member_equals_fit(batch, b, single):
    assert int(batch.n_iter[b]) == int(single.n_iter)
    assert bool(batch.converged[b]) == bool(single.converged)
    for a, c in zip(_member(batch.params, b), single.params, strict=True):
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-10)
    np.testing.assert_allclose(batch.objective[b], single.objective, rtol=1e-12)
    np.testing.assert_allclose(batch.history[b], single.history, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_each_member_equals_its_own_fit(covariance_type):
    X = _datasets(12, 80)
    model = jaxem.GaussianMixture(3, covariance_type)
    key = jax.random.key(0)
    # 5 lanes for 12 members: lanes are refilled as members converge
    batch = jaxem.fit_batch(model, key, X, tol=1e-5, max_iter=60, lanes=5)
    keys = jax.random.split(key, 12)
    n_iter = np.asarray(batch.n_iter)
    assert len(set(n_iter.tolist())) > 3  # members stop at different iterations
    for b in range(12):
        start = model.init(keys[b], X[b])
        _assert_member_equals_fit(batch, b, jaxem.fit(model, X[b], start, tol=1e-5, max_iter=60))


def test_priors_shared_and_batched():
    X = _datasets(6, 60, seed=1)
    model = jaxem.GaussianMixture(3, "full")
    key = jax.random.key(2)
    keys = jax.random.split(key, 6)
    shared = jaxem.default_prior(model, X.reshape(-1, 2))
    batched = jax.vmap(jaxem.default_prior, (None, 0))(model, X)
    assert batched.scale.shape == (6, 2, 2)
    for prior, member_prior in [
        (shared, lambda b: shared),
        (batched, lambda b: _member(batched, b)),
    ]:
        batch = jaxem.fit_batch(model, key, X, prior=prior, tol=1e-6, max_iter=50, lanes=4)
        for b in range(6):
            single = jaxem.fit(
                model, X[b], model.init(keys[b], X[b]), prior=member_prior(b), tol=1e-6, max_iter=50
            )
            _assert_member_equals_fit(batch, b, single)


def test_pad_then_fit_equals_unpadded_fits_whatever_the_padding_holds():
    rng = np.random.default_rng(3)
    sizes = [40, 75, 23, 60]
    data = [d[:n] for d, n in zip(_datasets(4, 75, seed=3), sizes, strict=True)]
    X, w = jaxem.pad(data)
    assert X.shape == (4, 75, 2) and w.shape == (4, 75)
    np.testing.assert_array_equal(np.asarray(w).sum(1), sizes)
    X = jnp.where(w[..., None] > 0, X, 1e6 * rng.normal(size=X.shape))
    model = jaxem.GaussianMixture(3, "spherical")
    key = jax.random.key(4)
    batch = jaxem.fit_batch(model, key, X, weights=w, tol=1e-6, max_iter=80, lanes=3)
    keys = jax.random.split(key, 4)
    for b, x in enumerate(data):
        single = jaxem.fit(model, x, model.init(keys[b], x), tol=1e-6, max_iter=80)
        _assert_member_equals_fit(batch, b, single)


@dataclasses.dataclass(frozen=True)
class CountingMixture(jaxem.GaussianMixture):
    """Counts how often its E-step is traced (a Python side effect: runs only when tracing)."""

    traces: list = dataclasses.field(default_factory=list, compare=False, hash=False)

    def e_step(self, params, X, weights):
        self.traces.append(1)
        return super().e_step(params, X, weights)


def test_a_second_call_with_the_same_shapes_does_not_compile_again():
    model = CountingMixture(2, "diag")
    first = jaxem.fit_batch(model, jax.random.key(0), _datasets(8, 30, seed=5), lanes=4)
    traced = len(model.traces)
    assert traced > 0
    second = jaxem.fit_batch(model, jax.random.key(1), _datasets(8, 30, seed=6), lanes=4)
    assert len(model.traces) == traced
    assert not np.allclose(first.objective, second.objective)


def test_init_params_skip_init_and_default_lanes():
    X = _datasets(5, 50, seed=7)
    model = jaxem.GaussianMixture(3, "tied")
    starts = jax.vmap(model.init)(jax.random.split(jax.random.key(8), 5), X, jnp.ones((5, 50)))
    batch = jaxem.fit_batch(model, jax.random.key(99), X, init_params=starts, tol=1e-6)
    for b in range(5):
        _assert_member_equals_fit(batch, b, jaxem.fit(model, X[b], _member(starts, b), tol=1e-6))


def test_fit_restarts_returns_the_best_start(faithful):
    model = jaxem.GaussianMixture(4, "full")
    key = jax.random.key(0)
    result = jaxem.fit_restarts(model, key, faithful, n_init=6, tol=1e-6, max_iter=300)
    assert result.objectives.shape == (7,)  # and mclust's hierarchical start, last
    assert float(result.objective) == float(jnp.max(result.objectives))
    best = int(result.best)
    keys = jax.random.split(key, 6)
    starts = [model.init(k, faithful) for k in keys]
    starts.append(model.init(key, faithful, method="hierarchical"))
    objectives = []
    for i in range(7):
        single = jaxem.fit(model, faithful, starts[i], tol=1e-6, max_iter=300)
        objectives.append(float(single.objective))
        if i == best:
            assert int(result.n_iter) == int(single.n_iter)
            for a, c in zip(result.params, single.params, strict=True):
                assert rel_err(a, c) < 1e-10
    np.testing.assert_allclose(result.objectives, objectives, rtol=1e-12)
    assert len(set(np.round(objectives, 6))) > 1  # the starts really differ


def test_bad_batches():
    model = jaxem.GaussianMixture(3)
    key = jax.random.key(0)
    X = _datasets(4, 20)
    with pytest.raises(ValueError, match=r"X must be a batch of datasets"):
        jaxem.fit_batch(model, key, X[0])
    with pytest.raises(ValueError, match=r"weights must have shape \(B, n_samples\)"):
        jaxem.fit_batch(model, key, X, weights=np.ones(20))
    w = np.ones((4, 20))
    w[2, 2:] = 0
    with pytest.raises(ValueError, match="member 2 has 2"):
        jaxem.fit_batch(model, key, X, weights=w)
    bad = X.copy()
    bad[3, 5, 1] = np.nan
    with pytest.raises(ValueError, match="member 3"):
        jaxem.fit_batch(model, key, bad)
    prior = jax.vmap(jaxem.default_prior, (None, 0))(model, X)
    prior = prior._replace(kappa=prior.kappa.at[1].set(-1.0))
    with pytest.raises(ValueError, match="prior.kappa must be > 0"):
        jaxem.fit_batch(model, key, X, prior=prior)
    with pytest.raises(ValueError, match="lanes"):
        jaxem.fit_batch(model, key, X, lanes=0)
    with pytest.raises(ValueError, match="every dataset must have 2 features"):
        jaxem.pad([X[0], np.ones((3, 3))])
    with pytest.raises(ValueError, match="n_init"):
        jaxem.fit_restarts(model, key, X[0], n_init=0)


def test_best_start_skips_nan():
    assert int(jaxem.best_start([np.nan, 1.0, 3.0, np.nan, 2.0])) == 2
    assert int(jaxem.best_start([np.nan, np.nan])) == 0
    assert int(jaxem.best_start([-np.inf, -5.0])) == 1


def test_padded_data_without_its_weights_is_an_error_not_a_fit():
    """`jaxem.pad` fills the padding with NaN: forgetting its weights (the padding fitted as
    data: an HMM's objective was 10335.8 instead of -1592.06) is a ValueError in every entry
    point, and with the weights every fit equals the fit of the unpadded data."""
    rng = np.random.default_rng(3)
    data = [rng.normal(size=(n, 2)) + 3 * (n % 2) for n in (30, 47)]
    X, w = jaxem.pad(data)
    assert np.all(np.isnan(np.asarray(X)[0, 30:])) and np.asarray(w)[0, 30:].sum() == 0
    model = jaxem.GaussianMixture(2, "diag")
    start = model.init(jax.random.key(0), X[0], w[0])
    for call in (
        lambda: jaxem.fit(model, X[0], start),
        lambda: model.init(jax.random.key(0), X[0]),
        lambda: model.score_samples(start, X[0]),
        lambda: jaxem.fit_batch(model, jax.random.key(0), X),
        lambda: jaxem.fit_restarts(model, jax.random.key(0), X[0], n_init=2),
    ):
        with pytest.raises(ValueError, match="padded by jaxem.pad holds NaN"):
            call()
    padded = jaxem.fit(model, X[0], start, weights=w[0], tol=0.0, max_iter=20)
    plain = jaxem.fit(model, data[0], model.init(jax.random.key(0), data[0]), tol=0.0, max_iter=20)
    np.testing.assert_allclose(padded.objective, plain.objective, rtol=1e-12)
    np.testing.assert_allclose(padded.params.means, plain.params.means, rtol=1e-10)

    hmm = jaxem.HiddenMarkovModel(jaxem.families.Gaussian("diag"), 2)
    begin = hmm.init(jax.random.key(1), X, w)
    for call in (
        lambda: jaxem.fit(hmm, X, begin),
        lambda: hmm.score(begin, X),
        lambda: hmm.init(jax.random.key(1), X),
    ):
        with pytest.raises(ValueError, match="padded by jaxem.pad holds NaN"):
            call()
    joined = np.concatenate(data)
    total = hmm.score(begin, joined, lengths=[30, 47])
    np.testing.assert_allclose(hmm.score(begin, X, w), total, rtol=1e-12)
    # the default prior pools the real steps only
    prior = hmm.default_prior(X)
    expected = hmm.default_prior(joined)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), prior, expected)
