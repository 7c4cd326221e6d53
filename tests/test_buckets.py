"""Data of nearby sizes share compiled programs (`jaxem.buckets`): fits, starts and scores of
333, 334, 335 and 380 rows compile once, and each still equals scikit-learn's EM on its own
rows; the estimator in cross-validation likewise. A model of one's own is never padded."""

import logging

import jax
import numpy as np
import pytest
from conftest import precisions, rel_err
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import jaxem
from jaxem.buckets import LARGEST_PADDED, bucket

SIZES = (333, 334, 335, 380)


def compiled(caplog, name: str) -> int:
    """How many programs named ``name`` were traced and compiled (in-memory cache misses)."""
    return sum(f"Compiling jit({name})" in m for m in caplog.messages)


@pytest.fixture
def log_compiles(caplog):
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        yield caplog


def test_bucket_sizes():
    assert [bucket(n) for n in (1, 16, 17, 25, 333, 385, 1000)] == [16, 16, 24, 32, 384, 512, 1024]
    assert bucket(LARGEST_PADDED + 1) == LARGEST_PADDED + 1  # large data keeps its size
    assert [bucket(n, 1) for n in range(1, 10)] == [1, 2, 3, 4, 6, 6, 8, 8, 12]


def test_sequences_are_padded_from_one_sequence_up():
    """Sequences ``(n_sequences, n_steps)``: a padded sequence costs a whole sequence's work,
    so their count is bucketed from one (1, 2, 3, 4, 6, ...), the steps as rows; a single long
    sequence is never padded to sixteen (every iteration was 16 times as long)."""
    from jaxem.buckets import pad_rows

    for shape, padded in [((1, 100), (1, 128)), ((5, 20), (6, 24)), ((1, 10**5), (1, 10**5))]:
        X, w = pad_rows(np.ones(shape + (2,)), np.ones(shape), axes=2)
        assert w.shape == padded and X.shape == padded + (2,)
        assert float(w.sum()) == np.prod(shape)
    X, w = pad_rows(np.ones((17, 2)), np.ones(17), axes=1)
    assert w.shape == (24,)


def test_nearby_sizes_share_one_program_and_equal_sklearn(blobs, log_compiles):
    X = np.concatenate([blobs, blobs[:50] + 0.1])  # 500 rows
    model = jaxem.GaussianMixture(3, "full")
    for n in SIZES:
        start = model.init(jax.random.key(n), X[:n])
        result = jaxem.fit(model, X[:n], start, tol=0, max_iter=8)
        labels = model.predict(result.params, X[:n])
        assert labels.shape == (n,)
        sk = SkGaussianMixture(
            3,
            weights_init=np.asarray(start.weights),
            means_init=np.asarray(start.means),
            precisions_init=precisions(start.covariances, "full"),
            tol=0,
            max_iter=8,
        )
        with pytest.warns(Warning):  # tol=0 never converges
            sk.fit(X[:n])
        assert rel_err(result.params.means, sk.means_) < 1e-8
        assert rel_err(result.params.covariances, sk.covariances_) < 1e-8
        np.testing.assert_allclose(result.objective, sk.score(X[:n]) * n, rtol=1e-10)
        np.testing.assert_array_equal(labels, sk.predict(X[:n]))
    for name in ("run", "_init", "_from_log_joint"):
        assert compiled(log_compiles, name) == 1, name


def test_hidden_markov_model_sequences_of_nearby_lengths_share_one_program(log_compiles):
    model = jaxem.HiddenMarkovModel(jaxem.families.Poisson(), 2)
    rng = np.random.default_rng(0)
    for length in (50, 55, 60):
        X = rng.poisson(np.where(np.arange(length) % 20 < 10, 1.0, 6.0)[:, None], (length, 1))
        start = model.init(jax.random.key(0), X)
        fitted = model.fit(jax.random.key(0), X, tol=0, max_iter=4)
        reference = jaxem.fit(model, X[None], start, tol=0, max_iter=4)
        jax.tree.map(np.testing.assert_array_equal, fitted.params, reference.params)
        # the score of the padded program against the forward algorithm written out
        rates, trans, init = (
            np.asarray(fitted.params.emissions.rates)[:, 0],
            np.asarray(fitted.params.transitions),
            np.asarray(fitted.params.initial),
        )
        from scipy.stats import poisson

        emit = poisson.pmf(X[:, 0][:, None], rates[None])
        alpha, total = init * emit[0], 0.0
        for t in range(1, length):
            total += np.log(alpha.sum())
            alpha = (alpha / alpha.sum()) @ trans * emit[t]
        total += np.log(alpha.sum())
        np.testing.assert_allclose(model.score(fitted.params, X), total, rtol=1e-10)
    assert compiled(log_compiles, "run") == 1
    assert compiled(log_compiles, "_inference") == 1


class ExactCounts:
    """A model of one's own that does not say it ignores zero weights: EM for the mean of
    unit-variance Gaussians, its log-likelihood computed without the weights."""

    def init(self, key, X, weights=None):
        return jax.numpy.zeros(())

    def e_step(self, params, X, weights):
        import jax.numpy as jnp

        loglik = -0.5 * jnp.sum((X - params) ** 2)
        return (jnp.sum(X), X.shape[0] * 1.0), loglik

    def m_step(self, stats, prior=None):
        return stats[0] / stats[1]


def test_a_model_of_ones_own_keeps_its_size():
    X = np.arange(10.0)[:, None]
    result = jaxem.fit(ExactCounts(), X, jax.numpy.zeros(()), tol=0, max_iter=2)
    np.testing.assert_allclose(result.params, 4.5)  # the mean of 10 rows, not of 16


def test_missing_values_nearby_sizes_share_one_program(log_compiles):
    """With values missing at random the padded fit equals the fit of the rows alone (rows
    with nothing observed and zero weight change neither the start nor EM)."""
    import jaxem.buckets

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(4, 1, (200, 2))])
    X[rng.random(X.shape) < 0.2] = np.nan
    model = jaxem.GaussianMixture(2, "full", missing=True)
    fits = {}
    for n in (333, 334, 335):
        start = model.init(jax.random.key(0), X[:n])
        fits[n] = (start, jaxem.fit(model, X[:n], start, tol=0, max_iter=5))
    assert compiled(log_compiles, "run") == 1
    largest = jaxem.buckets.LARGEST_PADDED
    try:
        jaxem.buckets.LARGEST_PADDED = 0  # every size as it is
        for n, (start, padded) in fits.items():
            exact = model.init(jax.random.key(0), X[:n])
            for a, b in zip(jax.tree.leaves(exact), jax.tree.leaves(start), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-12)
            plain = jaxem.fit(model, X[:n], exact, tol=0, max_iter=5)
            np.testing.assert_allclose(padded.objective, plain.objective, rtol=1e-12)
            for a, b in zip(
                jax.tree.leaves(padded.params), jax.tree.leaves(plain.params), strict=True
            ):
                np.testing.assert_allclose(a, b, rtol=1e-9)
    finally:
        jaxem.buckets.LARGEST_PADDED = largest
