"""Gaussian components with values missing at random: the exact E-step of Ghahramani and Jordan
(1994, "Supervised learning from incomplete data via an EM approach"), with fixed shapes.

Row $n$ has observed coordinates $o$ and missing ones $m$ (NaN in ``X``). Under component $k$
with mean $\\mu$, covariance $\\Sigma$ and precision $\\Lambda = \\Sigma^{-1}$, write
$u$ for $x - \\mu$ with any values in the missing places (jaxem puts the column's observed
mean there), $b = \\Lambda u$ and $A = \\Lambda_{mm}$. The block inverse of $\\Lambda$ gives
everything the E-step needs from the small $|m| \\times |m|$ system alone:

$$
\\log p(x_o) = -\\tfrac12 \\big( |o| \\log 2\\pi + \\log|\\Sigma| + \\log|A|
+ u^\\top b - b_m^\\top A^{-1} b_m \\big), \\quad
\\mathbb{E}[x_m \\mid x_o] = \\mu_m + u_m - A^{-1} b_m, \\quad
\\mathrm{Cov}[x_m \\mid x_o] = A^{-1},
$$

since $\\Sigma_{oo}^{-1} = \\Lambda_{oo} - \\Lambda_{om} A^{-1} \\Lambda_{mo}$ and
$|\\Sigma| = |\\Sigma_{oo}| / |A|$ ($u^\\top b - b_m^\\top A^{-1} b_m$ is the minimum of
$u^\\top \\Lambda u$ over the missing places, $(x - \\mu)_o^\\top \\Sigma_{oo}^{-1}
(x - \\mu)_o$, whatever they hold, so $b$ is one matrix product for all rows). Sweeping $A$
out of $\\begin{pmatrix} A & b_m \\\\ b_m^\\top & 0 \\end{pmatrix}$ (`jaxem.linalg.sweep`)
yields $A^{-1}$, $A^{-1} b_m$, $b_m^\\top A^{-1} b_m$ and $\\log|A|$ at once.

With $e$ the conditional mean of $x - \\mu$ and $C$ the conditional covariance (zero outside
$m \\times m$), the statistics are those of `jaxem.families.gaussian.family` with $x_n$ replaced
by its conditional expectation: $\\sum_n wr_{kn} e_{nk}$ and
$\\sum_n wr_{kn} (e_{nk} e_{nk}^\\top + C_{nk})$; the M-step is unchanged. Put $v = x - c$ with
0 in the missing places (the column centre $c$ there) and $o = \\mu - c$, so that $u = v - o$ and
$e = u + \\Delta$ with $\\Delta = -A^{-1} b_m$ on the missing coordinates and 0 elsewhere. Then
$u^\\top \\Lambda u$ and $\\sum_n wr_{kn} (v - o)(v - o)^\\top$ are the complete-data
computations on the features of $v$ (computed once per fit; one matrix product each), and what
the missing values add is $\\sum_n wr_{kn} v_n \\Delta_{nk}^\\top$ (a third product),
$\\sum_n wr_{kn} \\Delta_{nk}$ and the slot-by-slot sums of
$wr_{kn} (\\Delta \\Delta^\\top + C)_{nk}$.

Fixed shapes, yet work in proportion to $|m|^3$ rather than $D^3$: the rows are sorted by their
number of missing values and visited in groups of `GROUP_ROWS` (`group`); a group gathers the
missing coordinates of each row into $S$ slots, $S$ from the short list `slot_sizes` (the first
size at least the group's largest $|m|$; unused slots hold an identity), and ``lax.switch``
runs the program compiled for that $S$. With 20 % of 16 values missing, a row has 3.2 missing
on average: the sweep costs about 90 multiply-adds per row and component, where eliminating the
observed block of $\\Sigma$ with masks cost $D (D + 1)^2 = 4{,}624$. The matrix products stay
outside the branches, which hold only the slots' work (compiled once per size). Under ``vmap``
over data sets (`jaxem.fit_batch`) the switch's index is batched and JAX evaluates every
branch: correct, about twice the work of the largest. Diagonal and spherical covariances need
none of it: the missing coordinates are independent of the observed ones, drop out of the
density and add their variance to the scatter.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxem import linalg
from jaxem.families.gaussian import full
from jaxem.families.statistics import data_centre, weighted_sums

Array = jax.Array


class MissingData(NamedTuple):
    """Data with missing values as the E-step reads it (`prepare`).

    Attributes:
        centre: ``(D,)`` the weighted mean of each column's observed values.
        values: ``(D, N)`` $x - c$ where observed, 0 where missing.
        observed: ``(D, N)`` 1 where observed, 0 where missing (the data's dtype).
        groups: for coupled structures (covariance matrices), the rows sorted and grouped
            (`SlotGroups`).
    """

    centre: Array
    values: Array
    observed: Array
    groups: SlotGroups | None = None


def prepare(X: Array, weights: Array, coupled: bool = False) -> MissingData:
    """`MissingData` of ``X`` ``(N, D)`` (NaN where missing) and ``weights`` ``(N,)``; with
    ``coupled`` (covariance matrices, `CovarianceStructure.coupled`) also the rows in groups
    (`group`)."""
    seen = ~jnp.isnan(X)
    centre = data_centre(X, weights, seen)
    values = jnp.where(seen, X - centre, 0.0).T
    observed = seen.T.astype(X.dtype)
    return MissingData(centre, values, observed, group(values, observed) if coupled else None)


def pairwise_moments(X: Array) -> tuple[Array, Array]:
    """The observed values' column means ``(D,)`` and pairwise-complete covariances
    ``(D, D)`` (each entry over the rows where both columns are observed, unbiased), or their
    diagonal when the matrix is not positive definite (pairwise estimates need not be)."""
    seen = (~jnp.isnan(X)).astype(X.dtype)
    means = jnp.sum(jnp.where(seen > 0, X, 0.0), axis=0) / jnp.maximum(jnp.sum(seen, axis=0), 1)
    centred = jnp.where(seen > 0, X - means, 0.0)
    pairs = seen.T @ seen
    cov = (centred.T @ centred) / jnp.maximum(pairs - 1, 1)
    positive = jnp.all(jnp.isfinite(linalg.cholesky(cov)))
    return means, jnp.where(positive, cov, jnp.diag(jnp.diagonal(cov)))


# -- independent coordinates (diagonal structures) ---------------------------------------------


def independent_log_likelihoods(variance: Array, offsets: Array, data: MissingData) -> Array:
    """$\\sum_{d \\in o_n} \\log \\mathcal{N}(x_{nd} \\mid \\mu_{kd}, \\sigma^2_{kd})$, ``(K, N)``,
    as one matrix product; ``variance`` and ``offsets`` $\\mu - c$ ``(K, D)``."""
    inv = 1.0 / variance
    coef = jnp.concatenate(
        [inv, -2.0 * offsets * inv, offsets * offsets * inv + jnp.log(2 * math.pi * variance)],
        axis=1,
    )
    features = jnp.concatenate([data.values * data.values, data.values, data.observed], axis=0)
    return -0.5 * (coef @ features)


def independent_moments(
    variance: Array | None, offsets: Array | None, data: MissingData, wr: Array
) -> tuple[Array, Array, Array]:
    """``(sums, shifts, scatter)``: $\\sum_n wr_{kn} \\mathbb{E}[x_{nd} \\mid x_o]$,
    $\\sum_n wr_{kn} e_{nkd}$ and
    $\\sum_n wr_{kn} \\mathbb{E}[(x_{nd} - \\mu_{kd})^2 \\mid x_o]$, ``(K, D)``; a missing
    coordinate has $e = 0$ and adds its variance. Without ``variance`` (a start from a
    partition) the offsets are the components' observed means and missing entries add nothing."""
    features = jnp.concatenate([data.values * data.values, data.values, data.observed], axis=0)
    moments = weighted_sums(features, wr)
    d = data.centre.shape[-1]
    squares, firsts, seen = moments[:, :d], moments[:, d : 2 * d], moments[:, 2 * d :]
    counts = jnp.sum(wr, axis=1)
    if offsets is None:
        offsets = firsts / jnp.maximum(seen, jnp.finfo(wr.dtype).tiny)
    scatter = squares - 2.0 * firsts * offsets + seen * offsets * offsets
    if variance is not None:
        scatter = scatter + (counts[:, None] - seen) * variance
    shifts = firsts - seen * offsets
    return counts[:, None] * (offsets + data.centre) + shifts, shifts, scatter


# -- coupled coordinates (covariance matrices) ---------------------------------------------

# The slot counts a group can be given (below D, and D itself): fine steps where rows usually
# are, coarse ones beyond, since each size is one more branch to compile.
SLOT_SIZES = (0, 1, 2, 3, 4, 5, 6, 8, 11, 16)

# Rows per group: the group's (rows, K, D) temporaries stay small (measured on N = 1e5,
# D = K = 16: 256 rows 10 % slower per iteration, 1,024 the same; on N = 1e4, D = K = 4 the
# same within noise up to 2,048, 2.5x slower at 8,192).
GROUP_ROWS = 512


def slot_sizes(n_features: int) -> tuple[int, ...]:
    """The slot counts of `SLOT_SIZES` below ``n_features``, then ``n_features``."""
    return tuple(s for s in SLOT_SIZES if s < n_features) + (n_features,)


class SlotGroups(NamedTuple):
    """The rows sorted by their number of missing values, in groups of ``G`` rows (`group`).

    Attributes:
        features: ``(n_groups, G, Q + D)`` the quadratic features (`full.squares`) of $v$, then
            $v$ itself, where $v = x - c$ with 0 in the missing places: the complete-data
            features of the data with each missing value at its column's centre.
        observed: ``(n_groups, G, D)`` 1 where observed, 0 where missing.
        slots: ``(n_groups, G, D)`` each row's coordinates, the missing ones first.
        live: ``(n_groups, G)`` 1 for a row, 0 for the padding that fills the last group.
        branch: ``(n_groups,)`` the index in `slot_sizes` of the group's slot count.
        order: ``(n_groups * G,)`` the row of ``X`` at each sorted position.
        inverse: ``(N,)`` the sorted position of each row of ``X``.
    """

    features: Array
    observed: Array
    slots: Array
    live: Array
    branch: Array
    order: Array
    inverse: Array


def group(values: Array, observed: Array) -> SlotGroups:
    """`SlotGroups` of ``values`` and ``observed`` ``(D, N)`` (as in `MissingData`)."""
    d, n = values.shape
    counts = jnp.round(d - jnp.sum(observed, axis=0)).astype(jnp.int32)
    order = jnp.argsort(counts, stable=True).astype(jnp.int32)
    rows = min(GROUP_ROWS, n)
    n_groups = -(-n // rows)
    # the padding repeats the last sorted row (so that it raises no group's slot count) with
    # no weight
    order = jnp.concatenate([order, jnp.full((n_groups * rows - n,), order[-1])])
    largest = counts[order].reshape(n_groups, rows)[:, -1]
    branch = jnp.searchsorted(jnp.asarray(slot_sizes(d)), largest).astype(jnp.int32)
    sorted_values = values.T[order]
    features = jnp.concatenate([full.squares(sorted_values.T).T, sorted_values], axis=1)
    seen = observed.T[order]
    return SlotGroups(
        features=features.reshape(n_groups, rows, -1),
        observed=seen.reshape(n_groups, rows, d),
        slots=_missing_first(seen).reshape(n_groups, rows, d),
        live=(jnp.arange(n_groups * rows) < n).astype(values.dtype).reshape(n_groups, rows),
        branch=branch,
        order=order,
        inverse=jnp.zeros(n, jnp.int32).at[order[:n]].set(jnp.arange(n, dtype=jnp.int32)),
    )


def _missing_first(observed: Array) -> Array:
    """Each row's coordinates, its missing ones first, each part in increasing order:
    ``(N, D)`` int, from ``observed`` ``(N, D)`` (a stable argsort of each row, written as
    positions and a comparison: a tenth of the sort's time on CPU, 7 against 89 ms for
    1e5 x 16)."""
    missing = 1 - observed.astype(jnp.int32)
    n_missing = jnp.sum(missing, axis=1, keepdims=True)
    place = jnp.where(
        missing == 1,
        jnp.cumsum(missing, axis=1) - 1,
        n_missing + jnp.cumsum(1 - missing, axis=1) - 1,
    )
    coordinates = jnp.arange(observed.shape[1], dtype=jnp.int32)
    return jnp.sum((place[:, :, None] == coordinates) * coordinates[:, None], axis=1)


class Precisions(NamedTuple):
    """Per component, the precision $\\Lambda_k$ in the layouts the E-step reads:
    ``coef`` ``(Q + D, K)`` and ``constant`` ``(K,)``, the coefficients of
    $(v - o_k)^\\top \\Lambda_k (v - o_k)$ on the features (`full.quadratic_coefficients`);
    ``by_row`` ``(D, K D)`` with entry ``[d, (k, e)]`` $= \\Lambda_{k,de}$; ``shift``
    ``(D, K)`` $\\Lambda_k o_k$; ``flat`` ``(D D, K)``; ``log_det`` $\\log|\\Sigma_k|$
    ``(K,)``; $o_k = \\mu_k - c$."""

    coef: Array
    constant: Array
    by_row: Array
    shift: Array
    flat: Array
    log_det: Array


def precisions(covariances: Array, offsets: Array) -> Precisions:
    """`Precisions` of ``covariances`` ``(K, D, D)`` (or one shared ``(D, D)``) and ``offsets``
    $\\mu_k - c$ ``(K, D)``."""
    k, d = offsets.shape
    prec, log_det = full.precision(covariances)
    a, b, c = full.quadratic_coefficients(prec, offsets)
    prec = jnp.broadcast_to(prec, (k, d, d))
    return Precisions(
        coef=jnp.concatenate([a, b], axis=1).T,
        constant=c,
        by_row=jnp.moveaxis(prec, 0, 1).reshape(d, k * d),
        shift=-0.5 * b.T,
        flat=prec.reshape(k, d * d).T,
        log_det=jnp.broadcast_to(log_det, (k,)),
    )


class SweptSystem(NamedTuple):
    """A group's missing blocks in ``S`` slots, swept (`_swept_system`): ``swept``
    ``(S + 1, S + 1, G, K)`` (the matrix of `jaxem.linalg.sweep`), ``log_det`` $\\log|A|$
    ``(G, K)``, the slots' ``coords`` ``(S, G)`` int, ``used`` ``(S, G)`` (0 for a slot
    beyond the row's missing values) and ``pairs`` ``(S, S, G)``, each slot pair's index in a
    flattened ``(D, D)`` matrix."""

    swept: Array
    log_det: Array
    coords: Array
    used: Array
    pairs: Array

    def correction(self) -> Array:
        """$\\log|A| - b_m^\\top A^{-1} b_m$ ``(G, K)``."""
        size = self.coords.shape[0]
        return self.log_det + self.swept[size, size]

    def slot_shifts(self) -> Array:
        """$e - u = -A^{-1} b_m$ on the slots, ``(S, G, K)`` (0 on unused slots)."""
        size = self.coords.shape[0]
        return -self.swept[:size, size]

    def covariances(self) -> Array:
        """$C = A^{-1}$ on the used slots, 0 on the others: ``(S, S, G, K)``."""
        size = self.coords.shape[0]
        both = self.used[:, None] * self.used[None, :]
        return -self.swept[:size, :size] * both[..., None]


def _residuals(prec: Precisions, values: Array) -> Array:
    """$b = \\Lambda u = \\Lambda (v - o)$ ``(G, K, D)`` of a group's ``values`` $v$
    ``(G, D)``: one matrix product for all its rows and components, outside the branches."""
    g, d = values.shape
    return (values @ prec.by_row).reshape(g, -1, d) - prec.shift.T


def _swept_system(size: int, prec: Precisions, b: Array, observed: Array, slots: Array):
    """The `SweptSystem` of a group (``b`` ``(G, K, D)``, ``observed`` and ``slots``
    ``(G, D)``): each row and component's missing block of $\\Lambda$ in ``size`` slots,
    bordered by $b_m$ and swept. An unused slot (a row with fewer missing values) holds an
    identity row and a zero border."""
    g, k, d = b.shape
    coords = slots[:, :size].T
    used = 1.0 - jnp.take_along_axis(observed, slots[:, :size], axis=1).T
    rows, components = jnp.arange(g)[None, :, None], jnp.arange(k)[None, None, :]
    border = b[rows, components, coords[:, :, None]] * used[..., None]  # (S, G, K)
    pairs = coords[:, None] * d + coords[None, :]
    both = (used[:, None] * used[None, :])[..., None]
    eye = jnp.eye(size, dtype=b.dtype)[:, :, None, None]
    block = both * prec.flat[pairs] + (1.0 - both) * eye  # (S, S, G, K)
    matrix = jnp.concatenate(
        [
            jnp.concatenate([block, border[:, None]], axis=1),
            jnp.concatenate([border[None], jnp.zeros((1, 1, g, k), b.dtype)], axis=1),
        ],
        axis=0,
    )
    swept, log_det = linalg.sweep(matrix, size)
    return SweptSystem(swept, log_det, coords, used, pairs)


def _embed(coords: Array, slot_values: Array, n_features: int) -> Array:
    """Slot values ``(S, G, K)`` placed at their coordinates ``(S, G)``: ``(G, K, D)``."""
    place = jnp.arange(n_features)
    return sum(
        slot_values[s][..., None] * (coords[s][:, None, None] == place)
        for s in range(coords.shape[0])
    )


def _complete_part(prec: Precisions, features: Array, observed: Array) -> Array:
    """$-\\tfrac12 (|o| \\log 2\\pi + \\log|\\Sigma_k| + u^\\top \\Lambda_k u)$ ``(G, K)``
    of a group, from its features: one matrix product as for complete data, outside the
    branches."""
    n_observed = jnp.sum(observed, axis=1)[:, None]
    quadratic = features @ prec.coef + prec.constant
    return -0.5 * (n_observed * math.log(2 * math.pi) + prec.log_det + quadratic)


def _log_densities(complete_part: Array, observed: Array, correction: Array) -> Array:
    """$\\log p_k(x_{n,o})$ ``(G, K)``: `_complete_part` plus the swept systems' share
    (``correction`` $\\log|A| - b_m^\\top A^{-1} b_m$); 0 for a row with nothing observed."""
    log_lik = complete_part - 0.5 * correction
    return jnp.where(jnp.any(observed > 0, axis=1)[:, None], log_lik, 0.0)


def _slot_sums(system: SweptSystem | None, weights: Array, n_features: int):
    """``(shifts, spread)`` of a group for ``weights`` $w_{nk}$ ``(G, K)``: $w_{nk}
    (e_{nk} - u_{nk})$ ``(G, K, D)`` (zero outside the missing coordinates) and
    $\\sum_n w_{nk} [(e - u)(e - u)^\\top + C]_{nk}$ ``(D D, K)``, summed by slot, never as
    ``(D, D)`` per row; zeros for a group without missing values (``system`` None)."""
    (g, k), d = weights.shape, n_features
    if system is None:
        return jnp.zeros((g, k, d), weights.dtype), jnp.zeros((d * d, k), weights.dtype)
    shifts = system.slot_shifts()
    second = (system.covariances() + shifts[:, None] * shifts[None, :]) * weights
    spread = jax.ops.segment_sum(second.reshape(-1, k), system.pairs.reshape(-1), d * d)
    return _embed(system.coords, shifts * weights, d), spread


class GroupSums(NamedTuple):
    """Weighted sums over rows from which `_statistics` assembles the M-step's: ``counts``
    $\\sum_n w_{nk}$ ``(K,)``; ``moments`` $\\sum_n w_{nk} f(v_n)$ ``(K, Q + D)`` (the
    complete-data sums); ``cross`` $\\sum_n w_{nk} v_n (e_{nk} - u_{nk})^\\top$ ``(D, K, D)``;
    ``spread`` $\\sum_n w_{nk} [(e - u)(e - u)^\\top + C]_{nk}$ ``(D D, K)``; ``totals``
    $\\sum_n w_{nk} (e_{nk} - u_{nk})$ ``(K, D)``."""

    counts: Array
    moments: Array
    cross: Array
    spread: Array
    totals: Array


def _group_sums(features: Array, weights: Array, shifts: Array, spread: Array) -> GroupSums:
    """`GroupSums` of a group's rows from its ``features`` ``(G, Q + D)``, ``weights``
    ``(G, K)`` and `_slot_sums`: matrix products, outside the branches."""
    g, k, d = shifts.shape
    # (K, G) @ (G, Q + D) and (D, G) @ (G, K D); the barriers keep XLA from turning the products
    # into their transposed orientation, several times slower on CPU (see `weighted_sums`)
    moments = jax.lax.optimization_barrier(weights.T) @ features
    values = jax.lax.optimization_barrier(features[:, -d:].T)
    cross = (values @ shifts.reshape(g, k * d)).reshape(d, k, d)
    return GroupSums(jnp.sum(weights, axis=0), moments, cross, spread, jnp.sum(shifts, axis=0))


def _statistics(sums: GroupSums, offsets: Array) -> tuple[Array, Array, Array]:
    """$N_k$ ``(K,)``, $\\sum_n w_{nk} e_{nk}$ ``(K, D)`` and
    $\\sum_n w_{nk} (e_{nk} e_{nk}^\\top + C_{nk})$ ``(K, D, D)``
    from the `GroupSums` of all rows: with $e = (v - o) + (e - u)$, the complete-data scatter
    of $v$ about $o$ plus the cross terms and ``spread``."""
    k, d = offsets.shape
    squares, firsts = sums.moments[:, :-d], sums.moments[:, -d:]
    cross = jnp.moveaxis(sums.cross, 1, 0) - offsets[:, :, None] * sums.totals[:, None, :]
    scatter = (
        full.scatter_matrices(squares, firsts, sums.counts, offsets)
        + cross
        + jnp.swapaxes(cross, 1, 2)
        + jnp.moveaxis(sums.spread.reshape(d, d, k), -1, 0)
    )
    shifts = firsts - sums.counts[:, None] * offsets + sums.totals
    return sums.counts, shifts, scatter


def _zero_sums(k: int, d: int, dtype) -> GroupSums:
    q = d * (d + 1) // 2
    return GroupSums(
        jnp.zeros((k,), dtype),
        jnp.zeros((k, q + d), dtype),
        jnp.zeros((d, k, d), dtype),
        jnp.zeros((d * d, k), dtype),
        jnp.zeros((k, d), dtype),
    )


def _switch(groups: SlotGroups, index: Array, branch, *operands):
    """``branch(size, *operands)`` for the group's slot count (one program per size)."""
    d = groups.observed.shape[-1]
    return jax.lax.switch(index, [partial(branch, size) for size in slot_sizes(d)], *operands)


def _unsort(groups: SlotGroups, per_row: Array) -> Array:
    """Per-row results ``(n_groups, G, ...)`` in sorted order back in the order of ``X``."""
    return per_row.reshape((-1,) + per_row.shape[2:])[groups.inverse]


def _sorted_weights(groups: SlotGroups, weights: Array) -> Array:
    """Per-row ``weights`` ``(N, ...)`` in sorted groups ``(n_groups, G, ...)``, 0 on padding."""
    n_groups, rows = groups.live.shape
    live = groups.live.reshape((-1,) + (1,) * (weights.ndim - 1))
    return (weights[groups.order] * live).reshape((n_groups, rows) + weights.shape[1:])


def _correction(size, prec, b, observed, slots):
    """``(system, correction)`` of a group for ``size`` slots: no system and a zero
    correction for a group without missing values."""
    if size == 0:
        return None, jnp.zeros(b.shape[:2], b.dtype)
    system = _swept_system(size, prec, b, observed, slots)
    return system, system.correction()


def coupled_log_likelihoods(covariances: Array, offsets: Array, data: MissingData) -> Array:
    """$\\log p_k(x_{n,o})$ ``(K, N)`` for ``covariances`` ``(K, D, D)`` (or one tied
    ``(D, D)``) and ``offsets`` $\\mu_k - c$ ``(K, D)``; 0 for a row with nothing observed."""
    prec = precisions(covariances, offsets)
    groups = data.groups
    d = offsets.shape[-1]

    def branch(size, b, observed, slots):
        return _correction(size, prec, b, observed, slots)[1]

    def one_group(_, inputs):
        features, observed, slots, index = inputs
        b = _residuals(prec, features[:, -d:])
        correction = _switch(groups, index, branch, b, observed, slots)
        return None, _log_densities(_complete_part(prec, features, observed), observed, correction)

    inputs = (groups.features, groups.observed, groups.slots, groups.branch)
    _, log_lik = jax.lax.scan(one_group, None, inputs)
    return _unsort(groups, log_lik).T


def coupled_moments(
    covariances: Array | None, offsets: Array | None, data: MissingData, wr: Array
) -> tuple[Array, Array, Array]:
    """``(sums, shifts, scatter)``: $\\sum_n wr_{kn} \\mathbb{E}[x_n \\mid x_o]$ and
    $\\sum_n wr_{kn} e_{nk}$ ``(K, D)``, and
    $\\sum_n wr_{kn} (e_{nk} e_{nk}^\\top + C_{nk})$, ``(K, D, D)``; ``covariances``
    ``(K, D, D)`` or one shared ``(D, D)``. Without ``covariances`` (a start from a
    partition) the offsets are the components' observed means and missing entries add nothing."""
    counts = jnp.sum(wr, axis=1)
    if covariances is None:
        moments = weighted_sums(jnp.concatenate([data.values, data.observed], axis=0), wr)
        d = data.centre.shape[-1]
        firsts, seen = moments[:, :d], moments[:, d:]
        offsets = firsts / jnp.maximum(seen, jnp.finfo(wr.dtype).tiny)
        residuals = data.observed[:, None] * (data.values[:, None] - offsets.T[:, :, None])
        shifts = jnp.einsum("kn,dkn->kd", wr, residuals)
        scatter = jnp.einsum("dkn,ekn->kde", wr * residuals, residuals)
    else:
        counts, shifts, scatter = _grouped_statistics(covariances, offsets, data.groups, wr)
    return counts[:, None] * (offsets + data.centre) + shifts, shifts, scatter


def _grouped_statistics(covariances, offsets, groups: SlotGroups, wr):
    """`_statistics` of weighted responsibilities ``wr`` ``(K, N)``, a group at a time."""
    k, d = offsets.shape
    prec = precisions(covariances, offsets)

    def branch(size, b, observed, slots, weights):
        system, _ = _correction(size, prec, b, observed, slots)
        return _slot_sums(system, weights, d)

    def one_group(sums, inputs):
        features, observed, slots, index, weights = inputs
        b = _residuals(prec, features[:, -d:])
        shifts, spread = _switch(groups, index, branch, b, observed, slots, weights)
        group_sums = _group_sums(features, weights, shifts, spread)
        return jax.tree.map(jnp.add, sums, group_sums), None

    weights = _sorted_weights(groups, wr.T)
    inputs = (groups.features, groups.observed, groups.slots, groups.branch, weights)
    sums, _ = jax.lax.scan(one_group, _zero_sums(k, d, wr.dtype), inputs)
    return _statistics(sums, offsets)


def coupled_mixture_e_step(
    covariances: Array,
    offsets: Array,
    data: MissingData,
    log_weights: Array,
    weights: Array,
) -> tuple[Array, Array, Array, Array, Array]:
    """A mixture's whole E-step in one pass over the groups: each group's swept systems give its
    log-densities, the responsibilities follow (mixture weights $\\pi$, ``log_weights``
    ``(K,)``; sample ``weights`` ``(N,)``), and the same systems its statistics, instead of a
    pass for the log-densities and another, after the responsibilities, that sweeps again.
    ``covariances`` ``(K, D, D)`` (or one shared ``(D, D)``), ``offsets`` $\\mu_k - c$
    ``(K, D)``. Returns $N_k$ ``(K,)``, ``sums``, ``shifts``, ``scatter`` (as
    `coupled_moments`) and $\\sum_n w_n \\log p(x_{n,o})$."""
    k, d = offsets.shape
    prec = precisions(covariances, offsets)
    groups = data.groups

    def branch(size, complete_part, b, observed, slots, row_weights):
        system, correction = _correction(size, prec, b, observed, slots)
        log_joint = _log_densities(complete_part, observed, correction) + log_weights
        log_px = jax.nn.logsumexp(log_joint, axis=1)
        wr = jnp.exp(log_joint - log_px[:, None]) * row_weights[:, None]
        return wr, log_px, *_slot_sums(system, wr, d)

    def one_group(totals, inputs):
        features, observed, slots, index, row_weights = inputs
        b = _residuals(prec, features[:, -d:])
        complete_part = _complete_part(prec, features, observed)
        wr, log_px, shifts, spread = _switch(
            groups, index, branch, complete_part, b, observed, slots, row_weights
        )
        loglik = jnp.sum(jnp.where(row_weights > 0, row_weights * log_px, 0.0))
        group = (_group_sums(features, wr, shifts, spread), loglik)
        return jax.tree.map(jnp.add, totals, group), None

    zero = (_zero_sums(k, d, offsets.dtype), jnp.zeros((), offsets.dtype))
    inputs = (
        groups.features,
        groups.observed,
        groups.slots,
        groups.branch,
        _sorted_weights(groups, weights),
    )
    (sums, loglik), _ = jax.lax.scan(one_group, zero, inputs)
    counts, shifts, scatter = _statistics(sums, offsets)
    return counts, counts[:, None] * (offsets + data.centre) + shifts, shifts, scatter, loglik


# -- imputation ---------------------------------------------------------------------------------


def coupled_conditional_means(covariances: Array, offsets: Array, data: MissingData) -> Array:
    """$\\mathbb{E}[x_n \\mid x_{n,o}, z = k]$, ``(K, N, D)``: the observed values where
    observed; ``covariances`` ``(K, D, D)`` or one shared ``(D, D)``."""
    prec = precisions(covariances, offsets)
    groups = data.groups
    d = offsets.shape[-1]

    def branch(size, b, observed, slots):
        system, _ = _correction(size, prec, b, observed, slots)
        if system is None:
            return jnp.zeros_like(b)
        return _embed(system.coords, system.slot_shifts(), d)

    def one_group(_, inputs):
        features, observed, slots, index = inputs
        b = _residuals(prec, features[:, -d:])
        residuals = features[:, None, -d:] - offsets  # u (G, K, D)
        return None, residuals + _switch(groups, index, branch, b, observed, slots)

    inputs = (groups.features, groups.observed, groups.slots, groups.branch)
    _, residuals = jax.lax.scan(one_group, None, inputs)
    return jnp.moveaxis(_unsort(groups, residuals), 0, 1) + offsets[:, None, :] + data.centre


def independent_conditional_means(offsets: Array, data: MissingData) -> Array:
    """$\\mathbb{E}[x_n \\mid x_{n,o}, z = k]$ ``(K, N, D)`` of independent features: the
    component's mean where missing."""
    values = data.values.T[None]  # (1, N, D)
    observed = data.observed.T[None]
    return observed * values + (1.0 - observed) * offsets[:, None, :] + data.centre


def coupled_conditional_noise(
    key: Array, covariances: Array, data: MissingData, labels: Array
) -> Array:
    """A draw of $x_{n,m} - \\mathbb{E}[x_{n,m} \\mid x_{n,o}, z_n]$ given each row's
    component ``labels`` ``(N,)``, zero on the observed coordinates: ``(N, D)``;
    ``covariances`` ``(K, D, D)`` or one shared ``(D, D)``."""
    d = covariances.shape[-1]
    missing = 1.0 - data.observed.T  # (N, D)
    z = jax.random.normal(key, missing.shape, covariances.dtype)
    shared = covariances.ndim == 2
    n_components = 1 if shared else covariances.shape[0]
    prec = precisions(covariances, jnp.zeros((n_components, d), z.dtype))
    groups = data.groups
    chosen = (jnp.zeros_like(labels) if shared else labels)[groups.order]
    chosen = chosen.reshape(groups.live.shape)

    def draw(size, observed, slots, noise, label):
        if size == 0:
            return jnp.zeros_like(noise)
        b = jnp.zeros((noise.shape[0], n_components, d), noise.dtype)
        system = _swept_system(size, prec, b, observed, slots)
        cov = jnp.take_along_axis(system.covariances(), label[None, None, :, None], axis=-1)
        cov = jnp.moveaxis(cov[..., 0], -1, 0)  # (G, S, S)
        # the conditional covariance on the used slots, the identity on the others: its
        # Cholesky factor keeps that block structure
        unused = 1.0 - system.used.T
        block = cov + unused[:, :, None] * jnp.eye(size, dtype=cov.dtype)
        spread = jnp.einsum("gij,gj->gi", linalg.cholesky(block), noise[:, :size])
        return _embed(system.coords, (spread * system.used.T).T[..., None], d)[:, 0]

    def one_group(_, inputs):
        observed, slots, index, noise, label = inputs
        return None, _switch(groups, index, draw, observed, slots, noise, label)

    noise = z[groups.order].reshape(groups.observed.shape)
    inputs = (groups.observed, groups.slots, groups.branch, noise, chosen)
    _, draws = jax.lax.scan(one_group, None, inputs)
    return _unsort(groups, draws)


def independent_conditional_noise(
    key: Array, variances: Array, data: MissingData, labels: Array
) -> Array:
    """As `coupled_conditional_noise` for independent features, ``variances`` ``(K, D)``."""
    missing = 1.0 - data.observed.T  # (N, D)
    z = jax.random.normal(key, missing.shape, variances.dtype)
    return missing * jnp.sqrt(variances[labels]) * z
