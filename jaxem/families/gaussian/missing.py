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
$\\sum_n wr_{kn} (e_{nk} e_{nk}^\\top + C_{nk})$; the M-step is unchanged.

Fixed shapes, yet work in proportion to $|m|^3$ rather than $D^3$: the rows are sorted by their
number of missing values and visited in groups of `GROUP_ROWS` (`group`); a group gathers the
missing coordinates of each row into $S$ slots, $S$ from the short list `slot_sizes` (the first
size at least the group's largest $|m|$; unused slots hold an identity), and ``lax.switch``
runs the program compiled for that $S$. With 20 % of 16 values missing, a row has 3.2 missing
on average: the sweep costs about 90 multiply-adds per row and component, where eliminating the
observed block of $\\Sigma$ with masks cost $D (D + 1)^2 = 4{,}624$. The products with the
precision ($b$, the scatter) are dense matrix products, as for complete data. Under ``vmap``
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
from jaxem.families.statistics import weighted_sums

Array = jax.Array


class MissingData(NamedTuple):
    """Data with missing values as the E-step reads it (`prepare`).

    Attributes:
        centre: ``(D,)`` the weighted mean of each column's observed values.
        values: ``(D, N)`` $x - c$ where observed, 0 where missing.
        observed: ``(D, N)`` 1 where observed, 0 where missing (the data's dtype).
        groups: for full and tied covariances, the rows sorted and grouped (`SlotGroups`).
    """

    centre: Array
    values: Array
    observed: Array
    groups: SlotGroups | None = None


def prepare(X: Array, weights: Array, coupled: bool = False) -> MissingData:
    """`MissingData` of ``X`` ``(N, D)`` (NaN where missing) and ``weights`` ``(N,)``; with
    ``coupled`` (full and tied covariances) also the rows in groups (`group`)."""
    seen = ~jnp.isnan(X)
    filled = jnp.where(seen, X, 0.0)
    column_weight = weights @ seen.astype(X.dtype)
    centre = (weights @ filled) / jnp.where(column_weight > 0, column_weight, 1.0)
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


def variances(covariance_type: str, covariances: Array, n_features: int) -> Array:
    """Per component and feature the variance ``(K, D)`` of a diag or spherical covariance."""
    if covariance_type == "spherical":
        return jnp.broadcast_to(covariances[:, None], covariances.shape + (n_features,))
    return covariances


# -- diag and spherical: independent coordinates ------------------------------------------------


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


# -- full and tied: coupled coordinates ---------------------------------------------------------

# The slot counts a group can be given (below D, and D itself): fine steps where rows usually
# are, coarse ones beyond, since each size is one more branch to compile.
SLOT_SIZES = (0, 1, 2, 3, 4, 5, 6, 8, 11, 16)

# Rows per group: the group's (rows, K, D) temporaries stay small (measured on N = 1e5,
# D = K = 16: 1,024 and 2,048 rows 40-50 % slower per iteration; on N = 1e4, D = K = 4 the
# same within noise up to 2,048, 2.5x slower at 8,192).
GROUP_ROWS = 512


def slot_sizes(n_features: int) -> tuple[int, ...]:
    """The slot counts of `SLOT_SIZES` below ``n_features``, then ``n_features``."""
    return tuple(s for s in SLOT_SIZES if s < n_features) + (n_features,)


class SlotGroups(NamedTuple):
    """The rows sorted by their number of missing values, in groups of ``G`` rows (`group`).

    Attributes:
        values: ``(n_groups, G, D)`` $x - c$ where observed, 0 where missing.
        observed: ``(n_groups, G, D)`` 1 where observed, 0 where missing.
        slots: ``(n_groups, G, D)`` each row's coordinates, the missing ones first.
        live: ``(n_groups, G)`` 1 for a row, 0 for the padding that fills the last group.
        branch: ``(n_groups,)`` the index in `slot_sizes` of the group's slot count.
        order: ``(n_groups * G,)`` the row of ``X`` at each sorted position.
        inverse: ``(N,)`` the sorted position of each row of ``X``.
    """

    values: Array
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
    seen = observed.T[order]
    return SlotGroups(
        values=values.T[order].reshape(n_groups, rows, d),
        observed=seen.reshape(n_groups, rows, d),
        slots=jnp.argsort(seen, axis=1, stable=True).astype(jnp.int32).reshape(n_groups, rows, d),
        live=(jnp.arange(n_groups * rows) < n).astype(values.dtype).reshape(n_groups, rows),
        branch=branch,
        order=order,
        inverse=jnp.zeros(n, jnp.int32).at[order[:n]].set(jnp.arange(n, dtype=jnp.int32)),
    )


class Precisions(NamedTuple):
    """Per component, the precision $\\Lambda_k$ in the layouts the E-step reads:
    ``by_row`` ``(D, K D)`` with entry ``[d, (k, e)]`` $= \\Lambda_{k,de}$; ``shift``
    ``(K, D)`` $\\Lambda_k (\\mu_k - c)$; ``flat`` ``(D D, K)``; ``log_det``
    $\\log|\\Sigma_k|$ ``(K,)``."""

    by_row: Array
    shift: Array
    flat: Array
    log_det: Array


def precisions(covariances: Array, offsets: Array) -> Precisions:
    """`Precisions` of ``covariances`` ``(K, D, D)`` (or one tied ``(D, D)``) and ``offsets``
    $\\mu_k - c$ ``(K, D)``."""
    k, d = offsets.shape
    prec, log_det = full.precision(covariances)
    prec = jnp.broadcast_to(prec, (k, d, d))
    return Precisions(
        by_row=jnp.moveaxis(prec, 0, 1).reshape(d, k * d),
        shift=jnp.einsum("kde,ke->kd", prec, offsets),
        flat=prec.reshape(k, d * d).T,
        log_det=jnp.broadcast_to(log_det, (k,)),
    )


def _residuals(prec: Precisions, offsets: Array, values: Array):
    """For a group's ``values`` ``(G, D)`` (0 where missing): $u = x - \\mu$ with every
    missing $x_d$ at the centre $c_d$, and $b = \\Lambda u$, ``(G, K, D)``, one matrix product.
    The E-step's formulas hold for any value in the missing places: $u^\\top \\Lambda u -
    b_m^\\top A^{-1} b_m$ is the minimum over them, $(x - \\mu)_o^\\top \\Sigma_{oo}^{-1}
    (x - \\mu)_o$, and $u_m - A^{-1} b_m$ the conditional mean of $x_m - \\mu_m$."""
    g, d = values.shape
    b = (values @ prec.by_row).reshape(g, -1, d) - prec.shift
    return values[:, None, :] - offsets, b


class SweptSystem(NamedTuple):
    """A group's missing blocks in ``S`` slots, swept (`_swept_system`): ``swept``
    ``(S + 1, S + 1, G, K)`` (the matrix of `jaxem.linalg.sweep`), ``log_det`` $\\log|A|$
    ``(G, K)``, the slots' ``coords`` ``(G, S)`` int, ``used`` ``(G, S)`` (0 for a slot beyond
    the row's missing values) and ``pairs`` ``(G S S,)``, each slot pair's index in a
    flattened ``(D, D)`` matrix."""

    swept: Array
    log_det: Array
    coords: Array
    used: Array
    pairs: Array

    def mean_shift(self, n_features: int) -> Array:
        """$e - u = -A^{-1} b_m$ on the missing coordinates, 0 elsewhere: ``(G, K, D)``."""
        size = self.coords.shape[1]
        return -_embed(self.coords, self.used, self.swept[:size, size], n_features)

    def spread(self, weights: Array, n_features: int) -> Array:
        """$\\sum_n w_{nk} C_{nk}$ with each $C$ at its coordinates, ``(D D, K)``, for
        ``weights`` ``(G, K)``."""
        weighted = (self.covariances() * weights[:, None, None, :]).reshape(-1, weights.shape[1])
        return jax.ops.segment_sum(weighted, self.pairs, n_features**2)

    def covariances(self) -> Array:
        """$C = A^{-1}$ on the used slots, 0 on the others: ``(G, S, S, K)``."""
        size = self.coords.shape[1]
        both = (self.used[:, :, None] * self.used[:, None, :])[..., None]
        return -jnp.moveaxis(self.swept[:size, :size], 2, 0) * both


def _swept_system(size: int, prec: Precisions, b: Array, observed: Array, slots: Array):
    """The `SweptSystem` of a group: each row and component's missing block in ``size`` slots,
    bordered by $b_m$ ``(G, K, D)`` and swept. An unused slot (a row with fewer missing values)
    holds an identity row and a zero border."""
    g, k, d = b.shape
    coords = slots[:, :size]
    used = 1.0 - jnp.take_along_axis(observed, coords, axis=1)
    border = jnp.take_along_axis(b, coords[:, None, :], axis=2) * used[:, None, :]  # (G, K, S)
    pairs = (coords[:, :, None] * d + coords[:, None, :]).reshape(-1)
    block = prec.flat.at[pairs].get(mode="promise_in_bounds").reshape(g, size, size, k)
    both = (used[:, :, None] * used[:, None, :])[..., None]
    block = both * block + (1.0 - both) * jnp.eye(size, dtype=b.dtype)[None, :, :, None]
    block = jnp.moveaxis(block, 0, 2)  # (S, S, G, K)
    border = jnp.moveaxis(border, 2, 0)  # (S, G, K)
    matrix = jnp.concatenate(
        [
            jnp.concatenate([block, border[:, None]], axis=1),
            jnp.concatenate([border[None], jnp.zeros((1, 1, g, k), b.dtype)], axis=1),
        ],
        axis=0,
    )
    swept, log_det = linalg.sweep(matrix, size)
    return SweptSystem(swept, log_det, coords, used, pairs)


def _embed(coords: Array, used: Array, values: Array, n_features: int) -> Array:
    """Slot ``values`` ``(S, G, ...)`` placed at their coordinates: ``(G, ..., D)``."""
    onehot = (coords[:, :, None] == jnp.arange(n_features)) * used[:, :, None]  # (G, S, D)
    values = jnp.moveaxis(values, 0, -1)  # (G, ..., S)
    return jnp.einsum("g...s,gsd->g...d", values, onehot.astype(values.dtype))


def _conditional_residuals(size, prec, deviation, b, observed, slots):
    """$e_{nk}$ ``(G, K, D)``: $u$ plus $-A^{-1} b_m$ on the missing coordinates."""
    if size == 0:
        return deviation
    return deviation + _swept_system(size, prec, b, observed, slots).mean_shift(deviation.shape[-1])


def _switch(groups: SlotGroups, index: Array, branch, *operands):
    """``branch(size, *operands)`` for the group's slot count (one program per size)."""
    d = groups.values.shape[-1]
    return jax.lax.switch(index, [partial(branch, size) for size in slot_sizes(d)], *operands)


def _unsort(groups: SlotGroups, per_row: Array) -> Array:
    """Per-row results ``(n_groups, G, ...)`` in sorted order back in the order of ``X``."""
    return per_row.reshape((-1,) + per_row.shape[2:])[groups.inverse]


def _log_densities(prec: Precisions, deviation, b, observed, correction) -> Array:
    """$\\log p_k(x_{n,o})$ ``(G, K)`` of a group from $u$, $b$ ``(G, K, D)`` and the swept
    systems' ``correction`` $\\log|A| - b_m^\\top A^{-1} b_m$ ``(G, K)``; 0 for a row with
    nothing observed."""
    n_observed = jnp.sum(observed, axis=1)[:, None]
    quadratic = jnp.sum(deviation * b, axis=-1) + correction
    log_lik = -0.5 * (n_observed * math.log(2 * math.pi) + prec.log_det + quadratic)
    return jnp.where(n_observed > 0, log_lik, 0.0)


def _moments(weights: Array, residuals: Array, spread: Array) -> tuple[Array, Array]:
    """A group's $\\sum_n w_{nk} e_{nk}$ ``(K, D)`` and
    $\\sum_n w_{nk} (e_{nk} e_{nk}^\\top + C_{nk})$ ``(K, D, D)`` from ``weights`` ``(G, K)``,
    the conditional ``residuals`` $e$ ``(G, K, D)`` and the ``spread`` ``(D D, K)``."""
    k, d = weights.shape[1], residuals.shape[-1]
    shifts = jnp.einsum("gk,gkd->kd", weights, residuals)
    scatter = jnp.einsum("gkd,gke->kde", weights[..., None] * residuals, residuals)
    return shifts, scatter + jnp.moveaxis(spread.reshape(d, d, k), -1, 0)


def coupled_log_likelihoods(covariances: Array, offsets: Array, data: MissingData) -> Array:
    """$\\log p_k(x_{n,o})$ ``(K, N)`` for ``covariances`` ``(K, D, D)`` (or one tied
    ``(D, D)``) and ``offsets`` $\\mu_k - c$ ``(K, D)``; 0 for a row with nothing observed."""
    prec = precisions(covariances, offsets)
    groups = data.groups

    def correction(size, b, observed, slots):
        if size == 0:
            return jnp.zeros(b.shape[:2], b.dtype)
        system = _swept_system(size, prec, b, observed, slots)
        return system.log_det + system.swept[size, size]  # log|A| - b_m' A^{-1} b_m

    def one_group(_, inputs):
        values, observed, slots, index = inputs
        deviation, b = _residuals(prec, offsets, values)
        extra = _switch(groups, index, correction, b, observed, slots)
        return None, _log_densities(prec, deviation, b, observed, extra)

    inputs = (groups.values, groups.observed, groups.slots, groups.branch)
    _, log_lik = jax.lax.scan(one_group, None, inputs)
    return _unsort(groups, log_lik).T


def _spread(size, prec, b, observed, slots, weights):
    """``(correction, spread)``: $e - u$ ``(G, K, D)`` and
    $\\sum_n wr_{kn} C_{nk}$ of the group as ``(D D, K)``."""
    g, k, d = b.shape
    if size == 0:
        return jnp.zeros((g, k, d), b.dtype), jnp.zeros((d * d, k), b.dtype)
    system = _swept_system(size, prec, b, observed, slots)
    return system.mean_shift(d), system.spread(weights, d)


def coupled_moments(
    covariances: Array | None, offsets: Array | None, data: MissingData, wr: Array, tied: bool
) -> tuple[Array, Array, Array]:
    """``(sums, shifts, scatter)``: $\\sum_n wr_{kn} \\mathbb{E}[x_n \\mid x_o]$ and
    $\\sum_n wr_{kn} e_{nk}$ ``(K, D)``, and
    $\\sum_n wr_{kn} (e_{nk} e_{nk}^\\top + C_{nk})$, ``(K, D, D)`` (summed over components
    when ``tied``: ``(D, D)``). Without ``covariances`` (a start from a partition) the offsets
    are the components' observed means and missing entries add nothing."""
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
        shifts, scatter = _grouped_moments(covariances, offsets, data.groups, wr)
    if tied:
        scatter = jnp.sum(scatter, axis=0)
    return counts[:, None] * (offsets + data.centre) + shifts, shifts, scatter


def _grouped_moments(covariances, offsets, groups: SlotGroups, wr):
    """$\\sum_n wr_{kn} e_{nk}$ ``(K, D)`` and $\\sum_n wr_{kn} (e_{nk} e_{nk}^\\top + C_{nk})$
    ``(K, D, D)``, a group at a time."""
    k, d = offsets.shape
    prec = precisions(covariances, offsets)
    n_groups, rows = groups.live.shape
    weights = (wr.T[groups.order] * groups.live.reshape(-1, 1)).reshape(n_groups, rows, k)

    def one_group(sums, inputs):
        values, observed, slots, index, w = inputs
        deviation, b = _residuals(prec, offsets, values)
        correction, spread = _switch(groups, index, _spread, prec, b, observed, slots, w)
        shifts, scatter = _moments(w, deviation + correction, spread)
        return (sums[0] + shifts, sums[1] + scatter), None

    zero = (jnp.zeros((k, d), wr.dtype), jnp.zeros((k, d, d), wr.dtype))
    inputs = (groups.values, groups.observed, groups.slots, groups.branch, weights)
    (shifts, scatter), _ = jax.lax.scan(one_group, zero, inputs)
    return shifts, scatter


def coupled_mixture_e_step(
    covariances: Array,
    offsets: Array,
    data: MissingData,
    log_weights: Array,
    weights: Array,
    tied: bool,
) -> tuple[Array, Array, Array, Array, Array]:
    """A mixture's whole E-step in one pass over the groups: each group's swept systems give its
    log-densities, the responsibilities follow (mixture weights $\\pi$, ``log_weights``
    ``(K,)``; sample ``weights`` ``(N,)``), and the same systems its statistics, instead of a
    pass for the log-densities and another, after the responsibilities, that sweeps again.
    ``covariances`` ``(K, D, D)`` (or one tied ``(D, D)``), ``offsets`` $\\mu_k - c$
    ``(K, D)``. Returns $N_k$ ``(K,)``, ``sums``, ``shifts``, ``scatter`` (as
    `coupled_moments`) and $\\sum_n w_n \\log p(x_{n,o})$."""
    k, d = offsets.shape
    prec = precisions(covariances, offsets)
    groups = data.groups
    n_groups, rows = groups.live.shape
    row_weights = (weights[groups.order] * groups.live.reshape(-1)).reshape(n_groups, rows)

    def branch(size, deviation, b, observed, slots, w):
        if size == 0:
            extra = jnp.zeros(b.shape[:2], b.dtype)
        else:
            system = _swept_system(size, prec, b, observed, slots)
            extra = system.log_det + system.swept[size, size]
        log_joint = _log_densities(prec, deviation, b, observed, extra) + log_weights
        log_px = jax.nn.logsumexp(log_joint, axis=1)
        wr = jnp.exp(log_joint - log_px[:, None]) * w[:, None]
        if size == 0:
            return wr, log_px, jnp.zeros_like(b), jnp.zeros((d * d, k), b.dtype)
        return wr, log_px, system.mean_shift(d), system.spread(wr, d)

    def one_group(totals, inputs):
        values, observed, slots, index, w = inputs
        deviation, b = _residuals(prec, offsets, values)
        wr, log_px, correction, spread = _switch(
            groups, index, branch, deviation, b, observed, slots, w
        )
        counts = jnp.sum(wr, axis=0)
        shifts, scatter = _moments(wr, deviation + correction, spread)
        loglik = jnp.sum(jnp.where(w > 0, w * log_px, 0.0))
        return jax.tree.map(jnp.add, totals, (counts, shifts, scatter, loglik)), None

    dtype = offsets.dtype
    zero = (
        jnp.zeros((k,), dtype),
        jnp.zeros((k, d), dtype),
        jnp.zeros((k, d, d), dtype),
        jnp.zeros((), dtype),
    )
    inputs = (groups.values, groups.observed, groups.slots, groups.branch, row_weights)
    (counts, shifts, scatter, loglik), _ = jax.lax.scan(one_group, zero, inputs)
    if tied:
        scatter = jnp.sum(scatter, axis=0)
    return counts, counts[:, None] * (offsets + data.centre) + shifts, shifts, scatter, loglik


# -- imputation ---------------------------------------------------------------------------------


def conditional_means(
    covariance_type: str, covariances: Array, offsets: Array, data: MissingData
) -> Array:
    """$\\mathbb{E}[x_n \\mid x_{n,o}, z = k]$, ``(K, N, D)``: the observed values where
    observed."""
    values = data.values.T[None]  # (1, N, D)
    if covariance_type in ("full", "tied"):
        prec = precisions(covariances, offsets)
        groups = data.groups

        def one_group(_, inputs):
            values, observed, slots, index = inputs
            deviation, b = _residuals(prec, offsets, values)
            return None, _switch(
                groups, index, _conditional_residuals, prec, deviation, b, observed, slots
            )

        inputs = (groups.values, groups.observed, groups.slots, groups.branch)
        _, residuals = jax.lax.scan(one_group, None, inputs)
        return jnp.moveaxis(_unsort(groups, residuals), 0, 1) + offsets[:, None, :] + data.centre
    observed = data.observed.T[None]
    return observed * values + (1.0 - observed) * offsets[:, None, :] + data.centre


def conditional_noise(
    key: Array,
    covariance_type: str,
    covariances: Array,
    offsets: Array,
    data: MissingData,
    labels: Array,
) -> Array:
    """A draw of $x_{n,m} - \\mathbb{E}[x_{n,m} \\mid x_{n,o}, z_n]$ given each row's
    component ``labels`` ``(N,)``, zero on the observed coordinates: ``(N, D)``."""
    d = offsets.shape[-1]
    missing = 1.0 - data.observed.T  # (N, D)
    z = jax.random.normal(key, missing.shape, offsets.dtype)
    if covariance_type in ("full", "tied"):
        tied = covariances.ndim == 2
        n_components = 1 if tied else covariances.shape[0]
        prec = precisions(covariances, jnp.zeros((n_components, d), z.dtype))
        groups = data.groups
        chosen = (jnp.zeros_like(labels) if tied else labels)[groups.order]
        chosen = chosen.reshape(groups.live.shape)

        def draw(size, b, observed, slots, noise, label):
            if size == 0:
                return jnp.zeros_like(noise)
            system = _swept_system(size, prec, b, observed, slots)
            cov = jnp.take_along_axis(system.covariances(), label[:, None, None, None], axis=-1)[
                ..., 0
            ]
            # the conditional covariance on the used slots, the identity on the others: its
            # Cholesky factor keeps that block structure
            unused = 1.0 - system.used
            block = cov + unused[:, :, None] * jnp.eye(size, dtype=cov.dtype)
            spread = jnp.einsum("gij,gj->gi", linalg.cholesky(block), noise[:, :size])
            return _embed(system.coords, system.used, spread.T, d)

        def one_group(_, inputs):
            observed, slots, index, noise, label = inputs
            b = jnp.zeros(observed.shape[:1] + (prec.log_det.shape[0], d), z.dtype)
            return None, _switch(groups, index, draw, b, observed, slots, noise, label)

        noise = z[groups.order].reshape(groups.values.shape)
        inputs = (groups.observed, groups.slots, groups.branch, noise, chosen)
        _, draws = jax.lax.scan(one_group, None, inputs)
        return _unsort(groups, draws)
    variance = variances(covariance_type, covariances, d)[labels]
    return missing * jnp.sqrt(variance) * z
