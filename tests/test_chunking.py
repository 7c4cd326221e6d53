"""Row blocks (jaxem.chunking): fits and initialisations over blocks equal the one-block ones."""

import jax
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, make_blobs

import jaxem
from jaxem import GaussianMixture, KMeans
from jaxem.chunking import (
    BLOCK_BYTES,
    UNBLOCKED_BYTES,
    block_rows,
    block_sum,
    check_chunk_size,
    fill_unweighted,
)


@pytest.fixture(scope="module")
def data():
    X = make_blobs(3)
    w = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0])
    w[:130] = 0.0  # whole blocks without weight, and zero-weight rows inside others
    w[200::7] = 0.0
    return X, w


def assert_same_fit(a, b, rtol=1e-10):
    assert int(a.n_iter) == int(b.n_iter)
    np.testing.assert_allclose(float(a.objective), float(b.objective), rtol=rtol)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_blocked_fit_equals_one_block(data, covariance_type):
    X, w = data
    model = GaussianMixture(3, covariance_type)
    start = model.init(jax.random.key(0), X, w)
    whole = jaxem.fit(model, X, start, weights=w, tol=1e-8)
    # 61 does not divide 450: the last block overlaps the one before it
    assert_same_fit(jaxem.fit(model, X, start, weights=w, tol=1e-8, chunk_size=61), whole)
    prior = jaxem.default_prior(model, X)
    map_whole = jaxem.fit(model, X, start, weights=w, prior=prior, tol=1e-8)
    map_blocked = jaxem.fit(model, X, start, weights=w, prior=prior, tol=1e-8, chunk_size=100)
    assert_same_fit(map_blocked, map_whole)


@pytest.mark.parametrize("method", ["kmeans", "k-means++"])
def test_blocked_init_equals_one_block(data, method):
    X, w = data
    model = GaussianMixture(3, "full")
    whole = model.init(jax.random.key(4), X, w, method=method)
    blocked = model.init(jax.random.key(4), X, w, method=method, chunk_size=64)
    for x, y in zip(whole, blocked, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-10, atol=1e-12)


def test_wide_data_blocked(wide):
    """D = 6: the distances as one matrix product, per block."""
    model = GaussianMixture(3, "full")
    start = model.init(jax.random.key(1), wide, chunk_size=100)
    assert_same_fit(jaxem.fit(model, wide, start, chunk_size=100), jaxem.fit(model, wide, start))


def test_blocks_for_any_model(blobs):
    """The driver's blocks need nothing of the model but additive statistics."""
    model = KMeans(3)
    start = model.init(jax.random.key(0), blobs)
    assert_same_fit(jaxem.fit(model, blobs, start, chunk_size=50), jaxem.fit(model, blobs, start))


def test_block_sum_closed_form():
    X = np.arange(20.0).reshape(10, 2)
    w = np.array([1, 1, 0, 2, 1, 1, 1, 0, 1, 3.0])
    for block in (None, 1, 3, 4, 9, 10, 50):
        total = block_sum(lambda x, v: (v @ x, v.sum()), X, w, block)
        np.testing.assert_allclose(total[0], w @ X)
        np.testing.assert_allclose(total[1], w.sum())


def test_block_rows_choice():
    assert block_rows(1000, 100) is None  # 100 KB: one block
    assert block_rows(1000, None) is None
    n = 2 * UNBLOCKED_BYTES // 100
    assert block_rows(n, 100) == BLOCK_BYTES // 100
    assert block_rows(n, 100, chunk_size=5000) == 5000
    assert block_rows(5000, 100, chunk_size=5000) is None
    # the full mixture of the memory benchmark: N = 5e6, D = 8, K = 8, float32
    per_sample = GaussianMixture(8, "full").bytes_per_sample(8, 4)
    assert per_sample == 4 * (36 + 16 + 32)
    assert block_rows(5_000_000, per_sample) == BLOCK_BYTES // per_sample


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_bad_chunk_size(blobs, bad):
    with pytest.raises(ValueError, match="chunk_size"):
        check_chunk_size(bad)
    model = GaussianMixture(2)
    start = model.init(jax.random.key(0), blobs)
    with pytest.raises(ValueError, match="chunk_size"):
        jaxem.fit(model, blobs, start, chunk_size=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        model.init(jax.random.key(0), blobs, chunk_size=bad)


def test_blocked_restarts_equal_one_block(blobs):
    model = GaussianMixture(3, "diag")
    whole = jaxem.fit_restarts(model, jax.random.key(2), blobs, n_init=3, tol=1e-8)
    blocked = jaxem.fit_restarts(model, jax.random.key(2), blobs, n_init=3, tol=1e-8, chunk_size=97)
    np.testing.assert_allclose(blocked.objectives, whole.objectives, rtol=1e-10)
    # starts 1 and 2 reach the same maximum with permuted labels, tied to 1e-12: which one
    # wins is rounding, so the winners are compared with their components in one order
    np.testing.assert_allclose(float(blocked.objective), float(whole.objective), rtol=1e-10)
    ours, theirs = (
        model.permute(f.params, np.argsort(np.asarray(f.params.means)[:, 0]))
        for f in (blocked, whole)
    )
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-8, atol=1e-10)


def test_rows_of_weight_zero_are_filled_with_the_first_row_of_weight():
    """Rows of weight zero hold the first row of positive weight (per row, or per step of
    sequences), NaN and inf included; where none has weight, zeros; a given row otherwise."""
    X = np.array([[np.nan, 1.0], [2.0, 3.0], [4.0, np.inf], [5.0, 6.0]])
    filled = fill_unweighted(X, np.array([0.0, 1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(filled, [[2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [5.0, 6.0]])
    np.testing.assert_array_equal(fill_unweighted(X, np.zeros(4)), np.zeros((4, 2)))
    given = fill_unweighted(X, np.array([0.0, 1.0, 1.0, 1.0]), np.array([7.0, 8.0]))
    np.testing.assert_array_equal(given[0], [7.0, 8.0])
    steps = np.arange(12.0).reshape(2, 3, 2)  # two sequences of three steps
    weights = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    expected = np.where(weights[..., None] > 0, steps, steps[1, 1])
    np.testing.assert_array_equal(fill_unweighted(steps, weights), expected)
