"""Initialisation: weighted k-means++ seeding and Lloyd iterations, pure and ``vmap``-able.

k-means is EM's hard-assignment limit: for a spherical mixture with equal weights and variance
$\\sigma^2 \\to 0$, the responsibilities become one-hot on the nearest mean (the E-step is
the assignment step) and the M-step's means are the cluster averages (the update step).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxem.chunking import block_sum

Array = jax.Array


# Up to this many features distances and cluster sums are written feature by feature, and up to
# this many clusters the argmin over clusters is unrolled: fused elementwise work that beats tiny
# matrix products and XLA's reductions over a short axis (Lloyd under fit_batch, D = 2, K = 3:
# 14 -> 5 ms per block of 256 datasets).
SMALL_D = 4
SMALL_K = 64


def squared_distances(X: Array, centres: Array) -> Array:
    """$\\|x_n - c_k\\|^2$, ``(K, N)``.

    For more than ``SMALL_D`` features, as $\\|x\\|^2 - 2 x \\cdot c + \\|c\\|^2$ (one
    matrix product) about the centres' mean, clipped at zero; the expansion loses accuracy for
    points far from that mean, which can only swap near ties, and the callers that report
    distances recompute the chosen ones from the differences. Otherwise from the differences."""
    if X.shape[1] <= SMALL_D:
        xt = X.T
        return sum((xt[d][None] - centres[:, d, None]) ** 2 for d in range(X.shape[1]))
    middle = jnp.mean(centres, axis=0)
    x, c = X - middle, centres - middle
    squares = jnp.sum(c * c, axis=1)[:, None] + jnp.sum(x * x, axis=1)
    return jnp.maximum(squares - 2.0 * (c @ x.T), 0.0)


def nearest(X: Array, centres: Array, active: Array | None = None) -> Array:
    """The index of each sample's nearest centre (the first on ties), ``(N,)``; with ``active``
    ``(K,)`` booleans (the first entry true), only among the active centres."""
    distances = squared_distances(X, centres)
    if active is not None:
        distances = jnp.where(active[:, None], distances, jnp.inf)
    if distances.shape[0] > SMALL_K:
        return jnp.argmin(distances, axis=0)
    best, labels = distances[0], jnp.zeros(distances.shape[1], jnp.int32)
    for k in range(1, distances.shape[0]):
        closer = distances[k] < best
        best = jnp.where(closer, distances[k], best)
        labels = jnp.where(closer, k, labels)
    return labels


def cluster_sums(X: Array, onehot: Array) -> Array:
    """$\\sum_n h_{kn} x_n$, ``(K, D)``, for weighted one-hot rows ``onehot`` ``(K, N)``."""
    if X.shape[1] <= SMALL_D:
        xt = X.T
        return jnp.stack([jnp.sum(onehot * xt[d], axis=1) for d in range(X.shape[1])], axis=1)
    return onehot @ X


def one_hot(labels: Array, n_clusters: int, weights: Array) -> Array:
    """``weights`` placed in row ``labels[n]`` of column ``n``, ``(K, N)``."""
    return jnp.where(labels == jnp.arange(n_clusters)[:, None], weights, 0.0).astype(weights.dtype)


def _draw(key: Array, p: Array, shape: tuple[int, ...] = ()) -> Array:
    """Indices drawn with probability proportional to ``p >= 0`` by inverting the cumulative sum
    with one uniform per draw, so that rows of zero probability (padding) change nothing: the
    same key picks the same rows whether or not they are there."""
    cdf = jnp.cumsum(p)
    u = jax.random.uniform(key, shape, dtype=p.dtype) * cdf[-1]
    last = p.shape[0] - 1 - jnp.argmax(p[::-1] > 0)  # rounding guard: never past the last row
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), last)


def kmeans_plusplus(
    key: Array, X: Array, weights: Array, n_clusters: int, block: int | None = None
) -> Array:
    """Greedy k-means++ seeding (Arthur and Vassilvitskii 2007), with sample weights.

    The first centre is drawn with probability proportional to $w_n$; each next one among
    ``2 + floor(log K)`` candidates drawn with probability proportional to $w_n D_n^2$
    ($D_n$ the distance to the nearest chosen centre), keeping the candidate that lowers
    the potential $\\sum_n w_n D_n^2$ most. Rows of weight zero are never chosen.

    Args:
        key: a PRNG key.
        X: ``(n_samples, n_features)``.
        weights: ``(n_samples,)``, non-negative, not all zero.
        n_clusters: the number of centres K (static).
        block: the candidates' potentials are summed over row blocks of this many rows
            (static; None: all rows at once), see `jaxem.chunking`.

    Returns:
        ``(n_clusters, n_features)`` centres, rows of ``X``.
    """
    n_trials = 2 + int(math.log(n_clusters))
    key, first_key = jax.random.split(key)
    first = _draw(first_key, weights)
    centres = jnp.zeros((n_clusters, X.shape[1]), X.dtype).at[0].set(X[first])
    closest = jnp.sum((X - X[first]) ** 2, axis=-1)

    def add_centre(k, carry):
        centres, closest, key = carry
        key, sub = jax.random.split(key)
        potential = weights * closest
        # With every weighted row already a centre (duplicates), draw by weight alone.
        p = jnp.where(jnp.sum(potential) > 0, potential, weights)
        trials = X[_draw(sub, p, (n_trials,))]

        def potentials(X_b, w_b, closest_b):
            return jnp.minimum(closest_b, squared_distances(X_b, trials)) @ w_b  # (n_trials,)

        chosen = trials[jnp.argmin(block_sum(potentials, X, weights, block, (closest,)))]
        closest = jnp.minimum(closest, jnp.sum((X - chosen) ** 2, axis=-1))
        return centres.at[k].set(chosen), closest, key

    centres, _, _ = jax.lax.fori_loop(1, n_clusters, add_centre, (centres, closest, key))
    return centres


def lloyd(
    X: Array,
    weights: Array,
    centres: Array,
    n_iter: int,
    block: int | None = None,
    active: Array | None = None,
) -> Array:
    """``n_iter`` weighted Lloyd iterations; a cluster left empty keeps its centre.

    Args:
        X: ``(n_samples, n_features)``; weights: ``(n_samples,)``; centres: ``(K, n_features)``.
        n_iter: the number of iterations (static).
        block: the cluster sums are taken over row blocks of this many rows (static; None: all
            rows at once), see `jaxem.chunking`.
        active: ``(K,)`` booleans, the first true: only these centres take samples (the others
            stay where they are); None: all.

    Returns:
        The centres after ``n_iter`` assignment/update steps, ``(K, n_features)``.
    """
    n_clusters = centres.shape[0]

    def step(_, centres):
        def sums(X_b, w_b):
            wr = one_hot(nearest(X_b, centres, active), n_clusters, w_b)
            return jnp.sum(wr, axis=1), cluster_sums(X_b, wr)

        counts, sums = block_sum(sums, X, weights, block)
        safe = jnp.where(counts > 0, counts, 1.0)
        return jnp.where(counts[:, None] > 0, sums / safe[:, None], centres)

    return jax.lax.fori_loop(0, n_iter, step, centres)


def whiten(X: Array, weights: Array) -> Array:
    """The data in whitened coordinates, ``(N, D)``: centred on the weighted mean, each column
    scaled to unit variance, then rotated and scaled by the eigenvectors and eigenvalues of the
    resulting correlation matrix, so that every direction has unit variance. Distances there do
    not depend on the units of the columns (a waiting time in minutes beside a duration in
    seconds), as mclust's hierarchical start uses the data transformed by its SVD. Scaling the
    columns first keeps the eigenvalues about units-free; directions still without variance
    (eigenvalues below $10^{-6}$ of the largest: collinear columns) and constant columns are
    left unscaled."""
    total = jnp.sum(weights)
    centred = X - weights @ X / total
    var = weights @ (centred * centred) / total
    scaled = centred * jnp.where(var > 0, jax.lax.rsqrt(jnp.where(var > 0, var, 1.0)), 1.0)
    cov = (scaled * weights[:, None]).T @ scaled / total
    values, vectors = jnp.linalg.eigh(cov)
    floor = 1e-6 * jnp.max(values)
    scale = jnp.where(values > floor, jax.lax.rsqrt(jnp.maximum(values, floor)), 1.0)
    return (scaled @ vectors) * scale
