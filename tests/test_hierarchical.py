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
