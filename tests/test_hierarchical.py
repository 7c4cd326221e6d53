"""Model-based hierarchical clustering (`jaxem.hierarchical`) against R's mclust and against a
brute-force agglomeration that recomputes every cluster's term from its members."""

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from jaxem.hierarchical import agglomerate, partitions, scaled_svd

DATA = Path(__file__).parent / "data" / "mclust"
SETS = ["faithful", "iris", "diabetes", "thyroid", "banknote", "usarrests"]


def mclust_partitions(name: str) -> np.ndarray:
    """``(12, N)``: mclust's hc start cut into 1..12 clusters (``make_reference.R``)."""
    with open(DATA / "hc.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == name]
    return np.array([[int(r[f"G{g}"]) for r in rows] for g in range(1, 13)])


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the names of the clusters."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("name", SETS)
def test_partitions_equal_mclust(name):
    """Every cut of the tree, 1 to 12 clusters. Faithful's rounded values give many rows that
    are duplicates, hence many equal merge costs: this checks the tie-breaking too."""
    X = np.loadtxt(DATA / f"{name}.csv", delimiter=",", skiprows=1)
    ours = partitions(X, range(1, 13))
    theirs = mclust_partitions(name)
    for g in range(12):
        assert len(set(ours[g].tolist())) == g + 1
        assert same_partition(ours[g], theirs[g]), f"{name}: {g + 1} clusters"


def brute_force_tree(Z: np.ndarray) -> list:
    """Greedy agglomeration recomputing each candidate's term from its member rows."""
    n, p = Z.shape
    alpha = np.sum((Z - Z.mean(axis=0)) ** 2) / (n * p)

    def term(members):
        rows = Z[list(members)]
        scatter = (rows - rows.mean(axis=0)).T @ (rows - rows.mean(axis=0))
        m = len(members)
        volume = np.linalg.det(scatter / m) if m > p else 0.0
        return m * np.log(volume + (np.trace(scatter) + alpha) / m)

    clusters = [frozenset([i]) for i in range(n)]
    found = {n: list(clusters)}
    while len(clusters) > 1:
        a, b = min(
            itertools.combinations(clusters, 2),
            key=lambda ab: term(ab[0] | ab[1]) - term(ab[0]) - term(ab[1]),
        )
        clusters = [c for c in clusters if c not in (a, b)] + [a | b]
        found[len(clusters)] = list(clusters)
    return found


@pytest.mark.parametrize("p", [1, 2, 3])
def test_agglomerate_equals_brute_force(p):
    """Continuous random data (no ties): the incremental merge costs and slot bookkeeping give
    the tree of the definition, at every level."""
    Z = np.random.default_rng(p).normal(size=(14, p)) * np.array([1.0, 3.0, 0.5])[:p]
    Z[:5] += 4.0
    expected = brute_force_tree(Z)
    ours = agglomerate(Z, range(1, 15))
    for k in range(1, 15):
        labels = np.empty(14, int)
        for name, members in enumerate(expected[k]):
            labels[list(members)] = name
        assert same_partition(ours[k], labels), f"{k} clusters"


def test_scaled_svd_is_mclusts_view():
    """Standardised columns S = U L V', mapped to S V L^{-1/2}: then Z'Z = L (diagonal)."""
    X = np.loadtxt(DATA / "banknote.csv", delimiter=",", skiprows=1)
    Z = scaled_svd(X)
    S = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    singular = np.linalg.svd(S, compute_uv=False)
    np.testing.assert_allclose(Z.T @ Z, np.diag(singular), atol=1e-9 * singular.max())
    # a distance between rows is invariant under the units of a column
    np.testing.assert_allclose(scaled_svd(X * np.arange(1, 7)), Z, atol=1e-9)


def test_weights_and_subsets():
    X = np.loadtxt(DATA / "iris.csv", delimiter=",", skiprows=1)
    weights = np.ones(len(X))
    weights[::10] = 0.0
    labels = partitions(X, [2, 3], weights)
    assert np.all(labels[:, ::10] == -1)
    kept = weights > 0
    np.testing.assert_array_equal(labels[:, kept], partitions(X[kept], [2, 3]))
    # beyond max_rows: a random subset is clustered, the other rows left out
    sub = partitions(X, [1, 3, 200], max_rows=40, seed=1)
    assert np.sum(sub[0] >= 0) == 40 and set(sub[1][sub[1] >= 0].tolist()) == {0, 1, 2}
    assert np.all(sub[2] == -1)  # more clusters than rows
    with pytest.raises(ValueError, match="n_clusters"):
        agglomerate(X[:5], [6])


# -- the hierarchical start of a fit ---------------------------------------------------------


@pytest.mark.parametrize("cov_type", ["VVV", "EVE", "VEI"])
def test_init_hierarchical_is_the_m_step_of_mclusts_partition(cov_type):
    """``init(method="hierarchical")``: the M-step from mclust's own hc partition (iris, three
    clusters), whatever the key, for any covariance structure."""
    import jax

    import jaxem

    X = np.loadtxt(DATA / "iris.csv", delimiter=",", skiprows=1)
    model = jaxem.GaussianMixture(3, cov_type)
    labels = mclust_partitions("iris")[2] - 1
    expected = model.m_step(model.stats(X, np.eye(3)[labels]))
    for key in (0, 1):
        start = model.init(jax.random.key(key), X, method="hierarchical")
        # the same clusters, perhaps in another order: match them by their weights and means
        order = [int(np.argmin(np.abs(start.means[:, 0] - m))) for m in expected.means[:, 0]]
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(start), strict=True):
            b = np.asarray(b)
            b = b[order] if b.shape[:1] == (3,) else b
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-12)


def test_fit_restarts_adds_the_hierarchical_start():
    """scikit-learn's wine data (178 x 13), two full-covariance components, as a new user fits
    it: the k-means starts' best ends below the fit from mclust's hierarchical start, which
    `fit_restarts` now adds (last of its objectives, equal to fitting that start alone)."""
    import jax
    from sklearn.datasets import load_wine

    import jaxem

    X = load_wine().data
    model = jaxem.GaussianMixture(2, "full")
    key = jax.random.key(0)
    kmeans_only = jaxem.fit_restarts(model, key, X, n_init=8, deterministic_start=False)
    both = jaxem.fit_restarts(model, key, X, n_init=8)
    assert both.objectives.shape == (9,) and kmeans_only.objectives.shape == (8,)
    alone = jaxem.fit(model, X, model.init(key, X, method="hierarchical"))
    np.testing.assert_allclose(both.objectives[-1], alone.objective, rtol=1e-9)
    np.testing.assert_allclose(both.objectives[:8], kmeans_only.objectives, rtol=1e-9)
    assert int(both.best) == 8 and float(both.objective) > float(kmeans_only.objective) + 4.0


def test_init_hierarchical_needs_concrete_data():
    import jax

    import jaxem

    model = jaxem.GaussianMixture(2, "full")
    X = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(ValueError, match="method='hierarchical'.*concrete"):
        jax.jit(lambda X: model.init(jax.random.key(0), X, method="hierarchical"))(X)
    # fit_restarts under jit leaves it out: its random starts alone, as before
    traced = jax.jit(lambda X: jaxem.fit_restarts(model, jax.random.key(0), X, n_init=2))(X)
    alone = jaxem.fit_restarts(model, jax.random.key(0), X, n_init=2, deterministic_start=False)
    np.testing.assert_allclose(traced.objectives, alone.objectives, rtol=1e-10)
