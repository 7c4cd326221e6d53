"""Gaussian mixtures: $p(x) = \\sum_k \\pi_k \\mathcal{N}(x \\mid \\mu_k, \\Sigma_k)$.

E-step, with responsibilities
$r_{nk} = \\pi_k \\mathcal{N}(x_n \\mid \\mu_k, \\Sigma_k) / p(x_n)$ computed in log space,
returns the additive statistics (sums over samples of $w_n r_{nk}$ times a term)

$$
N_k = \\sum_n w_n r_{nk}, \\quad
s_k = \\sum_n w_n r_{nk} x_n, \\quad
d_k = \\sum_n w_n r_{nk} (x_n - \\mu_k), \\quad
S_k = \\sum_n w_n r_{nk} (x_n - \\mu_k)(x_n - \\mu_k)^\\top,
$$

taken about the current means $\\mu_k$. They are computed as two matrix products over
features of the data centred on its weighted mean, computed once per fit (`prepare`): the
log-densities as quadratic-form coefficients times the features, the statistics as the features
times the responsibilities (see ``docs/gaussian_mixture.md``). The M-step (maximum likelihood)
is

$$
\\pi_k = \\frac{N_k}{\\sum_j N_j}, \\quad
\\mu'_k = \\frac{s_k}{N_k}, \\quad
\\Sigma'_k = \\frac{S_k}{N_k} - \\delta_k \\delta_k^\\top + \\epsilon I, \\quad
\\delta_k = \\frac{d_k}{N_k} = \\mu'_k - \\mu_k,
$$

with $\\epsilon$ = ``reg_covar`` and the diagonal, spherical and tied analogues in the
covariance modules. As in scikit-learn, $N_k$ is floored by ten machine epsilons (times the
total weight) before dividing.

An *empty* component ($N_k$ under that floor: it lost every point) gets weight ~0, the
weighted mean of all the data, and the responsibility-weighted average of the other components'
covariances, so it stays finite, positive definite, and may pick points up again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors
from jaxem.base import Array, PRNGKey
from jaxem.chunking import block_rows, block_sum, check_chunk_size, model_bytes_per_sample
from jaxem.gaussian_mixture import diag, full, spherical, tied
from jaxem.initialization import kmeans_plusplus, lloyd, nearest, one_hot
from jaxem.priors import GaussianMixturePrior, check_prior
from jaxem.sharding import as_auto, sample_sharding
from jaxem.validation import (
    as_float_array,
    check_data,
    check_positive_int,
    check_weights,
    is_concrete,
    n_weighted_samples,
)

COVARIANCE_TYPES = {"full": full, "diag": diag, "spherical": spherical, "tied": tied}
N_LLOYD_ITER = 10
INIT_METHODS = ("kmeans", "k-means++", "random_from_data")


class GaussianMixtureParams(NamedTuple):
    """Parameters of a Gaussian mixture, with scikit-learn's shapes.

    Attributes:
        weights: ``(K,)``, non-negative, summing to one.
        means: ``(K, D)``.
        covariances: ``(K, D, D)`` full, ``(K, D)`` diag, ``(K,)`` spherical, ``(D, D)`` tied.
    """

    weights: Array
    means: Array
    covariances: Array


class GaussianMixtureData(NamedTuple):
    """The data as the E-step reads it (`GaussianMixture.prepare`).

    Attributes:
        centre: ``(D,)`` the weighted mean of the data.
        features: ``(Q + D, N)``: the covariance type's ``Q`` quadratic features of
            $x_n - c$ stacked on $x_n - c$.
    """

    centre: Array
    features: Array


class GaussianMixtureStats(NamedTuple):
    """Expected sufficient statistics; every field is a sum over samples.

    Attributes:
        counts: ``(K,)`` $N_k = \\sum_n w_n r_{nk}$.
        sums: ``(K, D)`` $\\sum_n w_n r_{nk} x_n$.
        shifts: ``(K, D)`` $\\sum_n w_n r_{nk} (x_n - \\mu_k)$, $\\mu_k$ the means at
            which the E-step ran.
        scatter: $\\sum_n w_n r_{nk} (x_n - \\mu_k)(x_n - \\mu_k)^\\top$ in the covariance
            type's form: ``(K, D, D)`` full, ``(K, D)`` diag, ``(K,)`` spherical, ``(D, D)`` tied
            (summed over components).
    """

    counts: Array
    sums: Array
    shifts: Array
    scatter: Array


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A mixture of ``n_components`` Gaussians (static configuration; hashable).

    Args:
        n_components: K >= 1.
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
        reg_covar: added to the diagonal of every covariance in the maximum-likelihood M-step,
            as scikit-learn does, to keep them positive definite.
    """

    n_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6

    def __post_init__(self):
        k = self.n_components
        check_positive_int(k, "n_components")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}; "
                f"got {self.covariance_type!r}"
            )
        if not np.isfinite(self.reg_covar) or self.reg_covar < 0:
            raise ValueError(f"reg_covar must be a finite number >= 0; got {self.reg_covar!r}")

    @property
    def _cov(self):
        return COVARIANCE_TYPES[self.covariance_type]

    # -- the EM contract -------------------------------------------------------------------

    def prepare(self, X: Array, weights: Array) -> GaussianMixtureData:
        """The data as the E-step uses it, computed once per fit: the weighted mean ``centre``
        ``(D,)`` and ``features`` ``(Q + D, N)``, the quadratic features of the centred data
        stacked on the centred data (see `jaxem.gaussian_mixture.full`)."""
        total = jnp.sum(weights)
        centre = (weights @ X) / jnp.where(total > 0, total, 1)  # a block may hold no weight
        centred = (X - centre).T
        return GaussianMixtureData(
            centre, jnp.concatenate([self._cov.squares(centred), centred], axis=0)
        )

    def bytes_per_sample(self, n_features: int, itemsize: int) -> int:
        """The E-step's working memory per sample: the features, the centred row and about
        four ``(K,)`` arrays (log joint, its exponent, responsibilities, weighted ones)."""
        q = self._cov.squares(jnp.zeros((n_features, 1))).shape[0]
        return itemsize * (q + 2 * n_features + 4 * self.n_components)

    def e_step(
        self, params: GaussianMixtureParams, X: Array | GaussianMixtureData, weights: Array
    ) -> tuple[GaussianMixtureStats, Array]:
        """Statistics `GaussianMixtureStats` and $\\sum_n w_n \\log p(x_n)$.

        ``X`` ``(N, D)``, or ``self.prepare(X, weights)`` (as `jaxem.fit` passes it);
        ``weights`` ``(N,)``.
        """
        data = X if isinstance(X, GaussianMixtureData) else self.prepare(X, weights)
        offsets = params.means - data.centre
        log_joint = self._log_joint_kn(params, data, offsets)  # (K, N)
        resp, log_px = _normalise(log_joint)
        wr = resp * weights
        loglik = jnp.sum(jnp.where(weights > 0, weights * log_px, 0.0))
        return self._stats(data, wr, offsets), loglik

    def m_step(
        self, stats: GaussianMixtureStats, prior: GaussianMixturePrior | None = None
    ) -> GaussianMixtureParams:
        """Maximum-likelihood parameters, or with a prior the posterior mode (see
        ``docs/map.md``), from the statistics."""
        if prior is not None:
            return self._map(stats, prior)
        total = jnp.sum(stats.counts)
        floor = 10 * jnp.finfo(stats.counts.dtype).eps * total
        empty = stats.counts < floor
        counts = stats.counts + floor
        weights = counts / jnp.sum(counts)
        means = stats.sums / counts[:, None]
        within = self._cov.within(stats.scatter, stats.shifts, 1.0 / counts)
        covariances = self._cov.mle(within, counts, self.reg_covar, means.shape[1])

        means = jnp.where(empty[:, None], jnp.sum(stats.sums, axis=0) / total, means)
        if self.covariance_type != "tied":
            fallback = self._cov.pooled(covariances, weights)
            mask = empty.reshape((-1,) + (1,) * (covariances.ndim - 1))
            covariances = jnp.where(mask, fallback[None], covariances)
        return GaussianMixtureParams(weights, means, covariances)

    def _map(self, stats: GaussianMixtureStats, prior: GaussianMixturePrior):
        """The exact posterior mode; no ``reg_covar`` (the prior regularises). An empty
        component takes the prior's mode: mean ``prior.mean``, covariance from ``prior.scale``."""
        n = stats.counts
        safe = jnp.where(n > 0, n, 1.0)
        alpha = jnp.broadcast_to(prior.alpha, n.shape)
        weights = (n + alpha - 1) / (jnp.sum(n) + jnp.sum(alpha) - n.shape[0])
        means = (stats.sums + prior.kappa * prior.mean) / (n + prior.kappa)[:, None]
        within = self._cov.within(stats.scatter, stats.shifts, jnp.where(n > 0, 1.0 / safe, 0.0))
        dev = stats.sums / safe[:, None] - prior.mean
        covariances = self._cov.map_estimate(within, dev, n, prior)
        return GaussianMixtureParams(weights, means, covariances)

    def log_prior(self, params: GaussianMixtureParams, prior: GaussianMixturePrior) -> Array:
        """$\\log p(\\theta)$: Dirichlet on the weights plus the Normal-Inverse-Wishart
        (or Inverse-Gamma) density of means and covariances, every constant included."""
        return priors.log_dirichlet(
            params.weights, jnp.broadcast_to(prior.alpha, params.weights.shape)
        ) + self._cov.log_prior(params.means, params.covariances, prior)

    def init(
        self,
        key: PRNGKey,
        X: Any,
        weights: Any = None,
        *,
        method: str = "kmeans",
        chunk_size: int | None = None,
    ) -> GaussianMixtureParams:
        """Centres, then an M-step from the hard assignments to the nearest centre.

        ``method``: ``"kmeans"`` (default) k-means++ seeding followed by 10 Lloyd iterations;
        ``"k-means++"`` the seeds alone (scikit-learn's ``init_params="k-means++"``);
        ``"random_from_data"`` K distinct samples drawn with probability proportional to their
        weights. Works under ``jit`` and ``vmap``. ``X`` ``(N, D)``, ``weights`` ``(N,)`` or None.

        ``chunk_size``: distances and statistics are summed over row blocks of this many rows,
        as in `jaxem.fit` (None: chosen from N, K, D and the dtype). Data split over
        devices (see `jaxem.sharding`) is left to XLA's partitioner, in one block.
        """
        if method not in INIT_METHODS:
            raise ValueError(f"method must be one of {INIT_METHODS}; got {method!r}")
        chunk_size = check_chunk_size(chunk_size)
        layout = sample_sharding(X)
        X = check_data(X)
        weights = check_weights(weights, X.shape[0], X.dtype)
        self._check_enough_samples(weights)
        if layout is None:
            block = block_rows(X.shape[0], model_bytes_per_sample(self, X), chunk_size)
        else:
            X, block = as_auto(X), None
        return _init(self, key, X, weights, method, block)

    def validate(
        self, X: Any, params: GaussianMixtureParams, weights: Any, prior: Any
    ) -> tuple[Array, GaussianMixtureParams, GaussianMixturePrior | None]:
        """Checks made by `jaxem.fit` before compiling; returns X, params and prior as
        arrays of X's floating dtype."""
        X = check_data(X)
        weights = check_weights(weights, X.shape[0], X.dtype)
        self._check_enough_samples(weights)
        params = self.check_params(params, X.shape[1], X.dtype)
        if prior is not None:
            prior = check_prior(prior, self, X.shape[1], X.dtype)
        return X, params, prior

    # -- using fitted parameters -----------------------------------------------------------

    def score_samples(self, params: GaussianMixtureParams, X: Any) -> Array:
        """$\\log p(x_n)$, ``(N,)``."""
        X, params = self._prepare(params, X)
        return jax.nn.logsumexp(self._log_joint(params, X), axis=1)

    def predict_proba(self, params: GaussianMixtureParams, X: Any) -> Array:
        """Responsibilities $r_{nk} = p(z_n = k \\mid x_n)$, ``(N, K)``."""
        X, params = self._prepare(params, X)
        return jax.nn.softmax(self._log_joint(params, X), axis=1)

    def predict(self, params: GaussianMixtureParams, X: Any) -> Array:
        """The most probable component of each sample, ``(N,)`` integers."""
        X, params = self._prepare(params, X)
        return jnp.argmax(self._log_joint(params, X), axis=1)

    def sample(
        self, key: PRNGKey, params: GaussianMixtureParams, n_samples: int
    ) -> tuple[Array, Array]:
        """``n_samples`` draws: ``X`` ``(n_samples, D)`` and their components ``(n_samples,)``."""
        k_label, k_noise = jax.random.split(key)
        log_w = jnp.log(jnp.asarray(params.weights))
        labels = jax.random.categorical(k_label, log_w, shape=(n_samples,))
        means = jnp.asarray(params.means)
        noise = self._cov.noise(k_noise, jnp.asarray(params.covariances), labels, means.shape[1])
        return means[labels] + noise, labels

    def n_parameters(self, n_features: int) -> int:
        """Free parameters: K - 1 weights, K·D means and the covariances' free entries."""
        k = self.n_components
        return k - 1 + k * n_features + self._cov.n_parameters(k, n_features)

    # -- helpers ---------------------------------------------------------------------------

    def check_params(
        self, params: GaussianMixtureParams, n_features: int, dtype: Any
    ) -> GaussianMixtureParams:
        """Shapes against the model and ``n_features``; with concrete values also weights on the
        simplex and positive definite covariances. Returns the params cast to ``dtype``."""
        if not isinstance(params, GaussianMixtureParams):
            if isinstance(params, tuple) and len(params) == 3:
                params = GaussianMixtureParams(*params)
            else:
                raise TypeError(
                    "params must be a GaussianMixtureParams(weights, means, covariances); "
                    f"got {type(params).__name__}"
                )
        k, d = self.n_components, n_features
        expected = {
            "weights": (k,),
            "means": (k, d),
            "covariances": self._cov.shape(k, d),
        }
        arrays = {}
        for name, shape in expected.items():
            a = as_float_array(getattr(params, name), f"params.{name}").astype(dtype)
            if a.shape != shape:
                raise ValueError(
                    f"params.{name} must have shape {shape} for n_components={k}, "
                    f"n_features={d}, covariance_type={self.covariance_type!r}; got {a.shape}"
                )
            arrays[name] = a
        if is_concrete(list(arrays.values())):
            for name, a in arrays.items():
                if not np.all(np.isfinite(np.asarray(a))):
                    raise ValueError(f"params.{name} contains NaN or inf")
            w = np.asarray(arrays["weights"], dtype=np.float64)
            if np.any(w < 0) or abs(w.sum() - 1) > 1e-4:
                raise ValueError(f"params.weights must be non-negative and sum to 1; got {w}")
            if not self._cov.is_valid(np.asarray(arrays["covariances"])):
                raise ValueError(f"params.covariances must be {self._positive_description()}")
        return GaussianMixtureParams(**arrays)

    def check_prior(self, prior: Any, n_features: int, dtype: Any) -> GaussianMixturePrior:
        """The prior's shapes against this model (and its values when concrete), cast to
        ``dtype``; see `jaxem.priors.check_prior`."""
        return check_prior(prior, self, n_features, dtype)

    def check_prior_values(self, prior: GaussianMixturePrior, n_features: int) -> None:
        """Hyperparameter ranges of a concrete prior, or of a batch of priors at once."""
        priors.check_prior_values(prior, self.covariance_type, n_features)

    def _positive_description(self) -> str:
        if self.covariance_type in ("full", "tied"):
            return "symmetric positive definite matrices"
        return "positive variances"

    def _check_enough_samples(self, weights: Array) -> None:
        n = n_weighted_samples(weights)
        if n is None:
            n = weights.shape[0]
        if self.n_components > n:
            raise ValueError(
                f"n_components={self.n_components} must be <= the number of samples "
                f"(with positive weight), {n}"
            )

    def _prepare(self, params: GaussianMixtureParams, X: Any):
        X = check_data(X)
        return X, self.check_params(params, X.shape[1], X.dtype)

    def _log_joint(self, params: GaussianMixtureParams, X: Array) -> Array:
        """$\\log \\pi_k + \\log \\mathcal{N}(x_n \\mid \\mu_k, \\Sigma_k)$, ``(N, K)``."""
        data = self.prepare(X, jnp.ones(X.shape[0], X.dtype))
        return self._log_joint_kn(params, data, params.means - data.centre).T

    def _log_joint_kn(
        self, params: GaussianMixtureParams, data: GaussianMixtureData, offsets: Array
    ) -> Array:
        """The same, ``(K, N)``: one matrix product of the quadratic form's coefficients with
        the features; ``offsets`` ``(K, D)`` are the means less ``data.centre``."""
        d = offsets.shape[-1]
        a, b, c, log_det = self._cov.quadratic_form(params.covariances, offsets)
        coef = -0.5 * jnp.concatenate([a, b], axis=1)  # (K, Q + D)
        bias = jnp.log(params.weights) - 0.5 * (d * math.log(2 * math.pi) + log_det + c)
        return coef @ data.features + bias[:, None]

    def _stats(self, data: GaussianMixtureData, wr: Array, offsets: Array) -> GaussianMixtureStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)``, taken about the
        means ``data.centre + offsets``."""
        # (Q + D, K) then transposed; the barrier keeps XLA from folding the transpose into the
        # product, whose other orientation (contracting N with the K rows on the left) its CPU
        # backend runs up to 9x slower (N = 1e6, D = 8, K = 8: 16 vs 167 ms)
        moments = jax.lax.optimization_barrier(data.features @ wr.T).T  # (K, Q + D)
        d = offsets.shape[-1]
        squares, firsts = moments[:, :-d], moments[:, -d:]
        counts = jnp.sum(wr, axis=1)
        return GaussianMixtureStats(
            counts=counts,
            sums=firsts + counts[:, None] * data.centre,
            shifts=firsts - counts[:, None] * offsets,
            scatter=self._cov.scatter(squares, firsts, counts, offsets),
        )


def _normalise(log_joint: Array) -> tuple[Array, Array]:
    """Responsibilities ``(K, N)`` and $\\log p(x_n)$ ``(N,)`` from the log joint
    ``(K, N)``. For up to 64 components the reductions over the short component axis are
    written as K-term elementwise sums, which XLA fuses into one pass over the samples
    (measured: 5x faster than its column reductions for K = 16)."""
    k = log_joint.shape[0]
    if k > 64:
        log_px = jax.nn.logsumexp(log_joint, axis=0)
        return jnp.exp(log_joint - log_px), log_px
    top = functools.reduce(jnp.maximum, list(log_joint))
    e = jnp.exp(log_joint - top)
    total = functools.reduce(jnp.add, list(e))
    return e / total, top + jnp.log(total)


@partial(jax.jit, static_argnames=("model", "method", "block"))
def _init(
    model: GaussianMixture,
    key: PRNGKey,
    X: Array,
    weights: Array,
    method: str,
    block: int | None = None,
) -> GaussianMixtureParams:
    if method == "random_from_data":
        rows = jax.random.choice(
            key, X.shape[0], (model.n_components,), replace=False, p=weights / jnp.sum(weights)
        )
        centres = X[rows]
    else:
        centres = kmeans_plusplus(key, X, weights, model.n_components, block)
    if method == "kmeans":
        centres = lloyd(X, weights, centres, N_LLOYD_ITER, block)

    def stats(X_b, w_b):
        wr = one_hot(nearest(X_b, centres), model.n_components, w_b)
        data = model.prepare(X_b, w_b)
        return model._stats(data, wr, centres - data.centre)

    return model.m_step(block_sum(stats, X, weights, block))
