"""Model-based agglomerative hierarchical clustering (Banfield and Raftery 1993; Fraley 1998):
the deterministic start that R's mclust gives EM, as host code in NumPy.

Starting from one cluster per sample, each step merges the two clusters whose merge increases
a classification criterion least. For unconstrained Gaussian clusters the criterion is
$\\sum_k n_k \\log |W_k / n_k|$ ($W_k$ the scatter matrix of cluster $k$ about its mean),
which is $-\\infty$ for every cluster of at most $D$ points. Fraley's regularised version, used
here, gives cluster $k$ the term

$$
T_k = n_k \\log\\Big( |W_k / n_k| \\,[m_k > D]
    + \\beta \\, \\frac{\\operatorname{tr} W_k + \\alpha}{n_k} \\Big),
$$

($m_k$ the number of rows in it), with $\\beta = 1$ and $\\alpha$ the mean variance per
coordinate of the data: small clusters are compared by their trace (Ward-like), large ones by
their volume. A merge of $i$ and $j$ costs $T_{i \\cup j} - T_i - T_j$, with

$$
W_{i \\cup j} = W_i + W_j
    + \\frac{n_i n_j}{n_i + n_j} (\\bar x_i - \\bar x_j)(\\bar x_i - \\bar x_j)^\\top .
$$

The clustering runs on mclust's "scaled SVD" view of the data (`scaled_svd`): columns
standardised, rotated to their principal axes and divided by the square root of the singular
values. Ties between equal merge costs (duplicated rows make many) are broken as mclust's
implementation breaks them: clusters live in numbered slots, the merged cluster takes the lower
slot and the last slot moves into the freed one, and among equal costs the pair with the highest
(upper slot, lower slot) wins. On data without ties this is exactly mclust's ``hc()``; the tests
compare the partitions with mclust's on real data sets.

Cost: $O(m^2)$ memory and $O(m^2 D^3)$ time for $m$ clustered rows; `partitions` clusters at
most ``max_rows`` of them (a random subset, as mclust does beyond 2000) and leaves the others
unassigned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_ROWS = 2000


def scaled_svd(X: Any) -> np.ndarray:
    """mclust's default view for hierarchical clustering (``hcUse = "SVD"``): the standardised
    columns $S$ (sample standard deviations; constant columns dropped) with SVD
    $S = U \\Lambda V^\\top$, mapped to $S V \\Lambda^{-1/2}$. ``X`` ``(N, D)``."""
    X = np.asarray(X, np.float64)
    X = X - X.mean(axis=0)
    scale = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(X.shape[1])
    keep = scale > 0
    S = X[:, keep] / scale[keep]
    if S.shape[1] == 0:
        return np.zeros((X.shape[0], 1))
    _, singular, vt = np.linalg.svd(S, full_matrices=False)
    singular = np.where(singular > 0, singular, 1.0)
    return (S @ vt.T) / np.sqrt(singular)


def _det_psd(A: np.ndarray) -> np.ndarray:
    """Determinants of positive semi-definite matrices ``(D, D, batch)`` (the batch last, so
    that every operation runs along contiguous memory) by elimination without pivoting: NumPy's
    ``det`` pays a LAPACK call per matrix, which dominated the clustering's time."""
    A = A.copy()
    det = np.ones(A.shape[2:])
    # the callers also compute, then discard, the determinants of singular scatters (clusters of
    # at most D rows), whose elimination may overflow: no warning for those
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k in range(A.shape[0]):
            pivot = A[k, k]
            det = det * pivot
            safe = np.where(pivot > 0, pivot, 1.0)
            A[k + 1 :, k + 1 :] -= A[k + 1 :, k][:, None] * (A[k, k + 1 :] / safe)[None]
    return det


def agglomerate(Z: Any, n_clusters: Any, weights: Any = None) -> dict[int, np.ndarray]:
    """Merge the rows of ``Z`` ``(m, D)`` down to each number in ``n_clusters``.

    Args:
        Z: the data to cluster, e.g. `scaled_svd` of a data set.
        n_clusters: the numbers of clusters wanted (each between 1 and m).
        weights: optional positive row weights ``(m,)`` (counts: a weight of 2 is a row seen
            twice); None for ones.

    Returns:
        ``{K: labels}`` with ``labels`` ``(m,)`` in ``0..K-1``.
    """
    Z = np.asarray(Z, np.float64)
    m, p = Z.shape
    count = np.ones(m) if weights is None else np.asarray(weights, np.float64).copy()
    wanted = sorted({int(k) for k in n_clusters})
    if not wanted or wanted[0] < 1 or wanted[-1] > m:
        raise ValueError(f"n_clusters must lie between 1 and {m}; got {wanted}")
    centre = np.sum(count[:, None] * Z, axis=0) / np.sum(count)
    alpha = np.sum(count[:, None] * (Z - centre) ** 2) / (np.sum(count) * p)
    alpha = max(alpha, np.finfo(np.float64).eps)

    rows = np.ones(m)
    mean = Z.copy()
    scatter = np.zeros((p, p, m))  # the cluster index last: see _det_psd
    trace = np.zeros(m)
    own = count * np.log(alpha / count)
    owner = np.arange(m)  # the slot of each row

    # merge costs of two single rows, in closed form: a rank-one scatter
    sq = np.zeros((m, m))
    for d in range(p):
        sq += (Z[:, d, None] - Z[None, :, d]) ** 2
    n = count[:, None] + count[None, :]
    tr = count[:, None] * count[None, :] / n * sq
    volume = tr / n if p == 1 else 0.0
    cost = n * np.log(volume + (tr + alpha) / n) - own[:, None] - own[None, :]
    np.fill_diagonal(cost, np.inf)

    def column_best(c):
        """The cheapest merge in column ``c`` (rows above it), the last on ties."""
        if c == 0:
            return np.inf, -1
        column = cost[:c, c]
        best = column.min()
        return best, c - 1 - int(np.argmin(column[::-1]))

    col_min = np.empty(m)
    col_arg = np.empty(m, np.int64)
    for c in range(m):
        col_min[c], col_arg[c] = column_best(c)

    out = {}
    size = m
    if size in wanted:
        out[size] = owner.copy()
    while size > wanted[0]:
        best = col_min[:size].min()
        j = size - 1 - int(np.argmin(col_min[:size][::-1] != best))  # last column at the min
        i = int(col_arg[j])
        ni, nj = count[i], count[j]
        diff = mean[i] - mean[j]
        merged_scatter = (
            scatter[:, :, i] + scatter[:, :, j] + ni * nj / (ni + nj) * np.outer(diff, diff)
        )
        mean[i] = (ni * mean[i] + nj * mean[j]) / (ni + nj)
        count[i], rows[i] = ni + nj, rows[i] + rows[j]
        scatter[:, :, i], trace[i] = merged_scatter, np.trace(merged_scatter)
        own[i] = own[i] + own[j] + cost[i, j]
        owner[owner == j] = i
        last = size - 1
        if j != last:  # the last slot moves into the freed one
            count[j], rows[j], mean[j] = count[last], rows[last], mean[last]
            scatter[:, :, j], trace[j], own[j] = scatter[:, :, last], trace[last], own[last]
            cost[j, :], cost[:, j] = cost[last, :], cost[:, last]
            cost[j, j] = np.inf
            owner[owner == last] = j
        cost[last, :], cost[:, last] = np.inf, np.inf
        size -= 1

        others = np.arange(size) != i
        diff = (mean[:size] - mean[i]).T
        n = count[:size] + count[i]
        factor = count[:size] * count[i] / n
        new_trace = trace[:size] + trace[i] + factor * np.sum(diff * diff, axis=0)
        # the volume only of merges whose scatter can be regular (more rows than dimensions),
        # 0 below that: with D = 42 (anes96's answers) most merges never need the D x D scatter
        volume = np.zeros(size)
        regular = np.flatnonzero(rows[:size] + rows[i] > p)
        if regular.size:
            new_scatter = scatter[:, :, regular] + scatter[:, :, i, None]
            new_scatter += factor[regular] * (diff[:, None, regular] * diff[None, :, regular])
            volume[regular] = _det_psd(new_scatter / n[regular])
        merged = n * np.log(np.maximum(volume, 0.0) + (new_trace + alpha) / n)
        row = np.where(others, merged - own[:size] - own[i], np.inf)
        cost[i, :size], cost[:size, i] = row, row

        stale = {i, j} if j < size else {i}
        for slot in sorted(stale):
            later = np.arange(slot + 1, size)
            values = cost[slot, later]
            redo = col_arg[later] == slot
            better = (values < col_min[later]) | (
                (values == col_min[later]) & (slot > col_arg[later])
            )
            update = later[better & ~redo]
            col_min[update], col_arg[update] = values[better & ~redo], slot
            for c in later[redo]:
                col_min[c], col_arg[c] = column_best(c)
        for slot in stale:
            col_min[slot], col_arg[slot] = column_best(slot)
        col_min[size:] = np.inf
        if size in wanted:
            out[size] = owner.copy()
    return {k: np.unique(labels, return_inverse=True)[1].reshape(-1) for k, labels in out.items()}


def partitions(
    X: Any,
    n_clusters: Any,
    weights: Any = None,
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
) -> np.ndarray:
    """The hierarchical partitions of ``X`` ``(N, D)`` into each of ``n_clusters`` clusters,
    on `scaled_svd` of the rows of positive weight, as ``(len(n_clusters), N)`` int32 labels;
    -1 marks a row left out (zero weight, or beyond ``max_rows`` rows of a random subset drawn
    with ``seed``). A number of clusters above the rows available gets all -1."""
    X = np.asarray(X, np.float64)
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, np.float64)
    used = np.flatnonzero(w > 0)
    if used.size > max_rows:
        used = np.sort(np.random.default_rng(seed).choice(used, max_rows, replace=False))
    ks = [int(k) for k in n_clusters]
    labels = np.full((len(ks), X.shape[0]), -1, np.int32)
    feasible = [k for k in ks if 1 <= k <= used.size]
    if feasible:
        # mclust's view of the data is unweighted; the weights count in the merge costs
        found = agglomerate(scaled_svd(X[used]), feasible, w[used])
        for row, k in enumerate(ks):
            if k in found:
                labels[row, used] = found[k]
    return labels


__all__ = ["MAX_ROWS", "agglomerate", "partitions", "scaled_svd"]
