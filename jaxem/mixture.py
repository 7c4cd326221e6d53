"""Finite mixtures over any component family: $p(x) = \\sum_k \\pi_k\\, p(x \\mid \\theta_k)$.

The E-step computes the responsibilities $r_{nk} = \\pi_k p(x_n \\mid \\theta_k) / p(x_n)$ in
log space from the family's log-likelihoods ``(K, N)``, and returns the weights' statistics
$N_k = \\sum_n w_n r_{nk}$ beside the family's statistics of $wr_{kn} = w_n r_{nk}$
(`MixtureStats`). The M-step sets the weights, then lets the family set its parameters:

$$
\\pi_k = \\frac{N_k}{\\sum_j N_j} \\;\\text{(MLE)}, \\qquad
\\pi_k = \\frac{N_k + \\alpha_k - 1}{\\sum_j N_j + \\sum_j \\alpha_j - K}
\\;\\text{(MAP, } \\pi \\sim \\mathrm{Dirichlet}(\\alpha)\\text{)}.
$$

As in scikit-learn, maximum likelihood floors every $N_k$ by ten machine epsilons times the
total weight, so no weight is exactly zero. A component family is written once (see
`jaxem.base.Family` and ``docs/families.md``) and serves mixtures and hidden Markov models alike.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import charts, priors
from jaxem.base import Array, Family, PRNGKey
from jaxem.buckets import bucket, pad_rows, padded, shares_programs, unpad
from jaxem.capabilities import check_coordinates, of_family
from jaxem.chunking import block_rows, block_sum, check_chunk_size, model_bytes_per_sample
from jaxem.compiler import compiled_method, jit
from jaxem.families.statistics import normalise
from jaxem.hierarchical import partitions
from jaxem.initialization import kmeans_plusplus, lloyd, nearest, one_hot
from jaxem.padding import without_padding
from jaxem.sharding import as_auto, sample_sharding
from jaxem.validation import (
    as_float_array,
    check_positive_int,
    check_weights,
    host_values,
    is_concrete,
    n_weighted_samples,
    worst,
)

N_LLOYD_ITER = 10
INIT_METHODS = ("kmeans", "k-means++", "random_from_data", "hierarchical")


class MixtureParams(NamedTuple):
    """Attributes: weights ``(K,)`` (on the simplex); components, the family's parameters
    (e.g. `jaxem.families.BernoulliParams`)."""

    weights: Array
    components: Any


class MixturePrior(NamedTuple):
    """Attributes: alpha, the Dirichlet concentration of the weights, ``(K,)`` or a scalar,
    every entry >= 1 (1 is flat); components, the family's prior (e.g.
    `jaxem.families.BetaPrior`)."""

    alpha: Any
    components: Any


class MixtureData(NamedTuple):
    """The data as the E-step reads it: ``family``, what the family's ``prepare`` made;
    ``observed`` ``(N,)``, for a family with missing values, whether a row holds any observed
    value (None otherwise)."""

    family: Any
    observed: Any = None


class MixtureStats(NamedTuple):
    """Attributes: counts ``(K,)`` $N_k = \\sum_n w_n r_{nk}$; components, the family's
    statistics."""

    counts: Array
    components: Any


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A mixture of ``n_components`` members of ``family`` (static configuration; hashable).

    Args:
        family: a component family, e.g. ``jaxem.families.Bernoulli()``.
        n_components: K >= 1.
    """

    family: Family
    n_components: int

    # rows of weight zero change nothing: data may be padded to shared sizes (jaxem.buckets)
    ignores_zero_weights = True

    def __post_init__(self):
        check_positive_int(self.n_components, "n_components")

    # -- the parameters' layout (GaussianMixture writes them flat) -------------------------

    def describe(self) -> str:
        """The model in messages and reports: ``Mixture(<family>, K)``."""
        return f"Mixture({self.family.describe()}, {self.n_components})"

    def as_mixture_params(self, params: Any) -> MixtureParams:
        """``params`` as `MixtureParams`; ``TypeError`` when they are not this model's."""
        if isinstance(params, MixtureParams):
            return params
        if isinstance(params, tuple) and len(params) == 2:
            return MixtureParams(*params)
        raise TypeError(
            f"params must be a MixtureParams(weights, components); got {type(params).__name__}"
        )

    def from_mixture_params(self, params: MixtureParams) -> Any:
        """The model's own parameter type from `MixtureParams`."""
        return params

    def as_mixture_prior(self, prior: Any) -> MixturePrior:
        """``prior`` as `MixturePrior`; ``TypeError`` when it is not this model's."""
        if not isinstance(prior, MixturePrior):
            raise TypeError(
                f"prior must be a MixturePrior(alpha, components); got {type(prior).__name__}"
            )
        return prior

    def from_mixture_prior(self, prior: MixturePrior) -> Any:
        return prior

    @property
    def data_ndim(self) -> int:
        """The dimensions of one dataset, ``(N, D)``: 2."""
        return 2

    @property
    def min_samples(self) -> int:
        """The fewest samples (of positive weight) a fit needs: K."""
        return self.n_components

    # -- the EM contract -------------------------------------------------------------------

    def prepare(self, X: Array, weights: Array) -> MixtureData:
        """The data as the E-step reads it, computed once per fit (the family's ``prepare``)."""
        if self.missing:
            weights = self.effective_weights(X, weights)
            return MixtureData(self.family.prepare(X, weights), jnp.any(~jnp.isnan(X), axis=-1))
        return MixtureData(self.family.prepare(X, weights))

    @property
    def missing(self) -> bool:
        """Whether the family takes NaN as a value missing at random."""
        return of_family(self.family).missing

    def effective_weights(self, X: Array, weights: Array) -> Array:
        """``weights`` ``(N,)`` with those of rows whose every value is missing (NaN, for a
        family built with ``missing=True``) set to zero: such a row has likelihood one whatever
        the parameters, so it changes neither the log-likelihood nor the estimate; dropped, it
        does not slow EM down nor count as a sample (in BIC's $n$, say)."""
        if not self.missing:
            return weights
        return jnp.where(jnp.any(~jnp.isnan(X), axis=-1), weights, 0.0)

    def bytes_per_sample(self, n_features: int, itemsize: int) -> int:
        """The E-step's working memory per sample (the family's estimate)."""
        return self.family.bytes_per_sample_for(n_features, self.n_components, itemsize)

    @compiled_method
    def e_step(self, params: Any, X: Any, weights: Array) -> tuple[MixtureStats, Array]:
        """`MixtureStats` and $\\sum_n w_n \\log p(x_n)$.

        ``X`` ``(N, D)``, or ``self.prepare(X, weights)`` (as `jaxem.fit` passes it);
        ``weights`` ``(N,)``.
        """
        params = self.as_mixture_params(params)
        data = X if isinstance(X, MixtureData) else self.prepare(X, weights)
        if data.observed is not None:
            weights = jnp.where(data.observed, weights, 0.0)
        fused = of_family(self.family).mixture_e_step
        if fused is not None:
            log_weights = jnp.log(params.weights)
            counts, components, loglik = fused(params.components, data.family, log_weights, weights)
            return MixtureStats(counts, components), loglik
        log_joint = self._log_joint_kn(params, data)
        resp, log_px = normalise(log_joint)
        wr = resp * weights
        loglik = jnp.sum(jnp.where(weights > 0, weights * log_px, 0.0))
        return self._stats(data, wr, params.components), loglik

    @compiled_method
    def m_step(self, stats: MixtureStats, prior: Any = None, active: Array | None = None) -> Any:
        """Maximum-likelihood parameters, or with a prior the posterior mode.

        ``active`` ``(K,)`` booleans (the first true) switches the other components off: their
        weights are exactly zero, the active ones' as in a mixture of those alone (see
        `jaxem.grid`)."""
        return self._m_step(None, stats, prior, active)

    @compiled_method
    def m_step_from(
        self, params: Any, stats: MixtureStats, prior: Any = None, active: Array | None = None
    ) -> Any:
        """`m_step` taken at the iterate ``params``: the same, except for a family whose M-step
        iterates (`jaxem.capabilities.EstimatesFromIterate`), which starts from ``params``'s
        components (`jaxem.capabilities.ReadsIterate`: the drivers call this)."""
        return self._m_step(params, stats, prior, active)

    def _m_step(self, params: Any, stats: MixtureStats, prior: Any, active: Any) -> Any:
        counts = stats.counts
        if prior is None:
            floor = 10 * jnp.finfo(counts.dtype).eps * jnp.sum(counts)
            weights = counts + floor
        else:
            prior = self.as_mixture_prior(prior)
            alpha = jnp.broadcast_to(prior.alpha, counts.shape)
            weights = counts + alpha - 1
        component_prior = None if prior is None else prior.components
        estimate_from = of_family(self.family).estimate_from
        if params is not None and estimate_from is not None:
            components = self.as_mixture_params(params).components
            components = estimate_from(
                components, stats.components, counts, component_prior, active
            )
        else:
            components = self._family_m_step(stats.components, counts, component_prior, active)
        if active is not None:
            weights = jnp.where(active, weights, 0.0)
        return self.from_mixture_params(MixtureParams(weights / jnp.sum(weights), components))

    @compiled_method
    def log_prior(self, params: Any, prior: Any, active: Array | None = None) -> Array:
        """$\\log p(\\theta)$: Dirichlet on the weights plus the family's prior density, every
        normalising constant included. With ``active`` (see `m_step`), the density of the
        mixture of the active components, up to a constant that depends on the prior and the
        switched-off components' fixed parameters only."""
        params, prior = self.as_mixture_params(params), self.as_mixture_prior(prior)
        alpha = jnp.broadcast_to(prior.alpha, params.weights.shape)
        if active is not None:
            # switched-off weights are 0: with alpha 1 they add 0 log 0 = 0
            alpha = jnp.where(active, alpha, 1.0)
        if active is not None and of_family(self.family).shares_parameters:
            components = self.family.log_prior(params.components, prior.components, active)
        else:
            components = self.family.log_prior(params.components, prior.components)
        return priors.log_dirichlet(params.weights, alpha) + components

    def _family_m_step(self, stats: Any, counts: Array, prior: Any, active: Array | None) -> Any:
        if active is not None and of_family(self.family).shares_parameters:
            return self.family.estimate(stats, counts, prior, active)
        return self.family.estimate(stats, counts, prior)

    def default_prior(self, X: Any) -> Any:
        """A flat Dirichlet on the weights (alpha = 1, as mclust) and the family's default prior
        (see ``docs/families.md``). ``X`` ``(N, D)``."""
        X = self.family.check_data(X)
        components = self.family.default_prior_for(X, self.n_components)
        alpha = jnp.ones((self.n_components,), X.dtype)
        return self.from_mixture_prior(MixturePrior(alpha, components))

    def stats(self, X: Any, responsibilities: Any, weights: Any = None) -> MixtureStats:
        """The statistics of given responsibilities ``(N, K)`` (rows on the simplex, or hard
        assignments) and sample weights ``(N,)``: an M-step from them starts EM from a
        partition. ``X`` ``(N, D)``."""
        X = self.family.check_data(X)
        weights = check_weights(weights, X.shape[0], X.dtype)
        return self._partition_stats(X, jnp.asarray(responsibilities, X.dtype), weights)

    @compiled_method
    def _partition_stats(self, X: Array, responsibilities: Array, weights: Array) -> MixtureStats:
        weights = self.effective_weights(X, weights)
        return self._stats(self.prepare(X, weights), responsibilities.T * weights)

    def _stats(self, data: MixtureData, wr: Array, about: Any = None) -> MixtureStats:
        """$N_k$ and the family's statistics of ``wr`` ``(K, N)``, taken about the components
        ``about`` (None: the family's choice, see `jaxem.base.Family`)."""
        return MixtureStats(jnp.sum(wr, axis=1), self.family.stats(data.family, wr, about))

    def init(
        self,
        key: PRNGKey,
        X: Any,
        weights: Any = None,
        *,
        method: str = "kmeans",
        chunk_size: int | None = None,
    ) -> Any:
        """Centres, then an M-step from the hard assignments to the nearest centre.

        The centres live among the family's ``init_points`` (the data itself for Gaussians,
        Bernoulli and Poisson; one-hot rows for categorical data). ``method``: ``"kmeans"``
        (default) k-means++ seeding followed by 10 Lloyd iterations; ``"k-means++"`` the seeds
        alone (scikit-learn's ``init_params="k-means++"``); ``"random_from_data"`` K distinct
        samples drawn with probability proportional to their weights. These work under ``jit``
        and ``vmap``. ``"hierarchical"``: mclust's start, no centres but the partition into K
        clusters of its model-based agglomeration (`jaxem.hierarchical.partitions`, on the
        ``init_points`` of at most 2000 rows), computed on the host: ``X`` and ``weights`` must
        be concrete, and ``key`` is not used (`deterministic_start`).
        ``X`` ``(N, D)``, ``weights`` ``(N,)`` or None.

        ``chunk_size``: distances and statistics are summed over row blocks of this many rows,
        as in `jaxem.fit` (None: chosen from N, K, D and the dtype). Data split over
        devices (see `jaxem.sharding`) is left to XLA's partitioner, in one block.
        """
        if method not in INIT_METHODS:
            raise ValueError(f"method must be one of {INIT_METHODS}; got {method!r}")
        chunk_size = check_chunk_size(chunk_size)
        layout = sample_sharding(X)
        X = self.family.check_data(without_padding(X, weights))
        weights = check_weights(weights, X.shape[0], X.dtype)
        if method == "hierarchical" and not (is_concrete(X) and is_concrete(weights)):
            raise ValueError(
                "method='hierarchical' partitions the data on the host: X and weights must be "
                "concrete arrays (call init outside jit, or pass the start it returns)"
            )
        return self._init_checked(key, X, weights, method, chunk_size, layout)

    def deterministic_start(self, X: Any, weights: Any = None) -> Any:
        """`init` with ``method="hierarchical"``: the start `jaxem.fit_restarts` adds to its
        random ones (`jaxem.capabilities.StartsDeterministically`)."""
        return self.init(jax.random.key(0), X, weights, method="hierarchical")

    def init_checked(
        self,
        key: PRNGKey,
        X: Array,
        weights: Array,
        method: str = "kmeans",
        chunk_size: int | None = None,
    ) -> Any:
        """`init` on data whose values and weights the caller has checked already (a hidden
        Markov model's pooled steps: its own checks are of the sequences), without a second
        pass over them; what only a mixture checks still happens here (a column never observed,
        too few samples for K), and rows that carry no information get weight zero here, the
        one place that decides it (`effective_weights`). ``X`` ``(N, D)``, ``weights``
        ``(N,)``."""
        return self._init_checked(key, X, weights, method, chunk_size, sample_sharding(X))

    def _init_checked(self, key, X, weights, method, chunk_size, layout) -> Any:
        self._check_observed_columns(X)
        weights = self.effective_weights(X, weights)
        self._check_enough_samples(weights)
        if layout is None:
            X, weights = padded(self, X, weights)
            block = block_rows(X.shape[0], model_bytes_per_sample(self, X), chunk_size)
        else:
            X, block = as_auto(X), None
        labels = None
        if method == "hierarchical":
            labels = jnp.asarray(self._hierarchical_labels(X, weights))
        return _init(self, key, X, weights, method, block, labels)

    def _hierarchical_labels(self, X: Array, weights: Array) -> np.ndarray:
        """mclust's partition into K clusters ``(N,)``, -1 for rows it leaves out."""
        if self.missing:  # as `_init`: a row of weight zero is one with nothing observed
            X = jnp.where((weights > 0)[:, None], X, jnp.nan)
        points = np.asarray(self.family.init_points(X))
        return partitions(points, [self.n_components], np.asarray(weights))[0]

    def validate(
        self, X: Any, params: Any, weights: Any, prior: Any
    ) -> tuple[Array, Any, Array, Any]:
        """Checks made by `jaxem.fit` before compiling; returns ``(X, params, weights, prior)``
        as arrays of X's floating dtype, the weights those the drivers use (zero for rows with
        nothing observed)."""
        X = self.family.check_data(X)
        self._check_observed_columns(X)
        weights = self.effective_weights(X, check_weights(weights, X.shape[0], X.dtype))
        self._check_enough_samples(weights)
        params = self.check_params(params, X.shape[1], X.dtype)
        if prior is not None:
            prior = self.check_prior(prior, X.shape[1], X.dtype)
        return X, params, weights, prior

    def check_params(self, params: Any, n_features: int, dtype: Any) -> Any:
        """Shapes against the model and ``n_features``; with concrete values also weights on the
        simplex and the family's own checks. Returns the params cast to ``dtype``."""
        mixture = self.as_mixture_params(params)
        k = self.n_components
        weights = as_float_array(mixture.weights, "params.weights").astype(dtype)
        if weights.shape != (k,):
            raise ValueError(
                f"params.weights must have shape ({k},) for n_components={k}; got {weights.shape}"
            )
        if is_concrete(weights):
            w = np.asarray(weights, dtype=np.float64)
            if not np.all(np.isfinite(w)):
                raise ValueError("params.weights contains NaN or inf")
            if np.any(w < 0) or abs(w.sum() - 1) > 1e-4:
                raise ValueError(f"params.weights must be non-negative and sum to 1; got {w}")
        components = self.family.check_params_for(
            mixture.components, k, n_features, dtype, self._field("params")
        )
        return self.from_mixture_params(MixtureParams(weights, components))

    def check_prior(self, prior: Any, n_features: int, dtype: Any) -> Any:
        """The prior's shapes against this model (and its values when concrete), cast to
        ``dtype``, with ``alpha`` broadcast to ``(K,)``."""
        mixture = self.as_mixture_prior(prior)
        k = self.n_components
        alpha = as_float_array(mixture.alpha, "prior.alpha").astype(dtype)
        if alpha.shape not in ((), (k,)):
            raise ValueError(f"prior.alpha must be a scalar or of shape ({k},); got {alpha.shape}")
        alpha = jnp.broadcast_to(alpha, (k,))
        if is_concrete(alpha):
            _check_alpha(np.asarray(alpha, np.float64))
        components = self.family.check_prior_for(
            mixture.components, k, n_features, dtype, self._field("prior")
        )
        return self.from_mixture_prior(MixturePrior(alpha, components))

    def check_prior_values(self, prior: Any, n_features: int) -> None:
        """Hyperparameter ranges of a concrete prior, or of a batch of priors at once."""
        mixture = self.as_mixture_prior(prior)
        _check_alpha(np.asarray(mixture.alpha, np.float64))
        self.family.check_prior_values(mixture.components, n_features, self._field("prior"))

    def _field(self, name: str) -> str:
        """How the family's part of ``params``/``prior`` is named in error messages."""
        return f"{name}.components"

    # -- using fitted parameters -----------------------------------------------------------

    def log_joint(self, params: Any, X: Any) -> Array:
        """$\\log \\pi_k + \\log p(x_n \\mid \\theta_k)$, ``(N, K)``."""
        X, params = self._checked(params, X)
        return self._per_row(partial(_from_log_joint, self, params, what="log_joint"), X)

    def score_samples(self, params: Any, X: Any) -> Array:
        """$\\log p(x_n)$, ``(N,)``."""
        X, params = self._checked(params, X)
        return self._per_row(partial(_from_log_joint, self, params, what="score_samples"), X)

    def predict_proba(self, params: Any, X: Any) -> Array:
        """Responsibilities $r_{nk} = p(z_n = k \\mid x_n)$, ``(N, K)``."""
        X, params = self._checked(params, X)
        return self._per_row(partial(_from_log_joint, self, params, what="predict_proba"), X)

    def predict(self, params: Any, X: Any) -> Array:
        """The most probable component of each sample, ``(N,)`` integers."""
        X, params = self._checked(params, X)
        return self._per_row(partial(_from_log_joint, self, params, what="predict"), X)

    def scale_weights(self, params: Any, X: Any) -> Array:
        """For a scale mixture (the multivariate t), $\\sum_k r_{nk} \\mathbb{E}[u_{nk}]$
        ``(N,)``: the weight each sample has in its components' locations and scales, near 1
        for a typical sample and small for an outlier. ``X`` ``(N, D)``."""
        if of_family(self.family).scale_weights is None:
            raise TypeError(f"{self.family.describe()} has no scale weights (the t family has)")
        X, params = self._checked(params, X)
        return self._per_row(partial(_from_log_joint, self, params, what="scale_weights"), X)

    def factor_scores(self, params: Any, X: Any) -> Array:
        """For factor-analyser components, the factors' posterior means
        $\\mathbb{E}[f_n \\mid x_n, z_n = k]$, ``(N, K, q)`` (each component's own factors;
        weigh them by `predict_proba`, or take the most probable component's). ``X``
        ``(N, D)``."""
        if of_family(self.family).factor_scores is None:
            raise TypeError(f"{self.family.describe()} has no latent factors")
        X, params = self._checked(params, X)
        return self._per_row(partial(_from_log_joint, self, params, what="factor_scores"), X)

    def outliers(self, params: Any, X: Any, level: float = 0.01) -> Array:
        """Whether each sample is an outlier, ``(N,)`` booleans: the probability that a draw
        from its most probable component lies farther from that component's centre, in the
        component's own metric, is below ``level`` (for a Gaussian component the squared
        Mahalanobis distance is $\\chi^2_D$, for a t $D \\cdot F(D, \\nu)$; see
        ``docs/robust_and_high_dimensional.md``). Without correction for testing N samples:
        about ``level`` N typical samples are flagged. ``X`` ``(N, D)``."""
        if of_family(self.family).tail_probabilities is None:
            raise TypeError(f"{self.family.describe()} does not test outliers")
        if not (isinstance(level, (int, float)) and 0 < level < 1):
            raise ValueError(f"level must be a number in (0, 1); got {level!r}")
        X, params = self._checked(params, X)
        tail = self._per_row(partial(_from_log_joint, self, params, what="tail"), X)
        return tail < level

    def impute(
        self, params: Any, X: Any, *, key: PRNGKey | None = None, n: int | None = None
    ) -> Array:
        """Values for the missing entries (NaN) of ``X`` ``(N, D)``, for a family built with
        ``missing=True``; observed entries are returned as they are.

        Without ``key``: the conditional mean given the observed values of the row,
        $\\mathbb{E}[x_n \\mid x_{n,o}] = \\sum_k r_{nk} \\mathbb{E}[x_n \\mid x_{n,o},
        z_n = k]$ (see the family's ``impute``), ``(N, D)``. With ``key``: ``n`` draws (multiple
        imputation) from $p(x_{n,m} \\mid x_{n,o})$, a component drawn from the
        responsibilities and the missing values from that component's conditional,
        ``(n, N, D)``."""
        if not self.missing:
            raise TypeError(
                f"impute needs a family built with missing=True; got {self.family.describe()}"
            )
        X, params = self._checked(params, X)
        if key is None:
            if n is not None:
                raise ValueError("n (the number of draws) needs a key")
            return self._per_row(partial(_impute, self, params), X)
        n = check_positive_int(1 if n is None else n, "n")
        keys = jax.random.split(key, n)
        return self._per_row(
            lambda X, w: jax.vmap(partial(_impute_draw, self, params, X, w))(keys), X, 1
        )

    def sample(self, key: PRNGKey, params: Any, n_samples: int) -> tuple[Array, Array]:
        """``n_samples`` draws: ``X`` ``(n_samples, D)`` and their components ``(n_samples,)``."""
        params = self.as_mixture_params(params)
        k_label, k_draw = jax.random.split(key)
        log_w = jnp.log(jnp.asarray(params.weights))
        labels = jax.random.categorical(k_label, log_w, shape=(n_samples,))
        return self.family.sample_given(k_draw, params.components, labels), labels

    def simulate(self, key: PRNGKey, params: Any, data_shape: tuple[int, ...]) -> Array:
        """A data set of ``data_shape`` ``(N, D)`` drawn from the mixture (`sample`'s rows)."""
        return self.sample(key, params, data_shape[0])[0]

    def n_parameters(self, n_features: int) -> int:
        """Free parameters: K - 1 weights and the family's."""
        k = self.n_components
        return k - 1 + self.family.n_parameters_for(k, n_features)

    def unconstrain(self, params: Any) -> MixtureParams:
        """Unconstrained coordinates of the parameters: the log weights (softmax coordinates)
        and the family's (see e.g. `jaxem.families.Gaussian.unconstrain`); any real values map
        back to valid parameters through `constrain`."""
        check_coordinates(self.family)
        params = self.as_mixture_params(params)
        return MixtureParams(jnp.log(params.weights), self.family.unconstrain(params.components))

    def constrain(self, coordinates: MixtureParams) -> Any:
        """The parameters of unconstrained ``coordinates`` (the inverse of `unconstrain`)."""
        weights = jax.nn.softmax(coordinates.weights)
        components = self.family.constrain(coordinates.components)
        return self.from_mixture_params(MixtureParams(weights, components))

    def complete_log_likelihoods(self, params: Any, data: Any) -> Array:
        """$\\log \\pi_k + \\log p(x_n \\mid \\theta_k)$, the complete-data log-likelihood of
        every sample with $z_n = k$, ``(K, N)``; ``data`` as `prepare` makes it (a pure
        function, unlike `log_joint`: no checks, no padding)."""
        if not isinstance(data, MixtureData):
            data = self.prepare(data, jnp.ones(data.shape[:1], data.dtype))
        return self._log_joint_kn(self.as_mixture_params(params), data)

    def expected_complete_log_likelihood(
        self, params: Any, posterior_at: Any, data: Any, weights: Array
    ) -> Array:
        """$Q(\\theta \\mid \\theta_0) = \\sum_n w_n \\sum_k r_{nk}(\\theta_0) [\\log \\pi_k +
        \\log p(x_n \\mid \\theta_k)]$ for ``params`` $\\theta$ and ``posterior_at`` $\\theta_0$;
        ``data`` as `prepare` makes it, ``weights`` ``(N,)``. With missing values the latent
        variables are the components alone (the missing entries are integrated out exactly)."""
        if not isinstance(data, MixtureData):
            data = self.prepare(data, weights)
        if data.observed is not None:
            weights = jnp.where(data.observed, weights, 0.0)
        resp = jax.nn.softmax(self.complete_log_likelihoods(posterior_at, data), axis=0)
        joint = self.complete_log_likelihoods(params, data)
        return jnp.sum(jnp.where(weights > 0, weights * jnp.sum(resp * joint, axis=0), 0.0))

    def chart(self, at: Any, coordinates: Array) -> Any:
        """Parameters near ``at`` from ``n_parameters(D)`` coordinates ``(P,)``, ``at`` itself
        at 0 (a chart, `jaxem.charts`): K - 1 move the weights (`jaxem.charts.simplex`), the
        rest the components (the family's ``chart``). Standard errors are computed in them
        (`jaxem.information`)."""
        chart = of_family(self.family).chart
        if chart is None:
            raise TypeError(f"{self.family.describe()} has no chart (local coordinates)")
        at = self.as_mixture_params(at)
        k = self.n_components
        weights, components = charts.split(coordinates, [k - 1, coordinates.shape[-1] - k + 1])
        return self.from_mixture_params(
            MixtureParams(charts.simplex(at.weights, weights), chart(at.components, components))
        )

    def permute(self, params: Any, order: Any) -> Any:
        """``params`` with the components reordered by ``order`` ``(K,)``."""
        params = self.as_mixture_params(params)
        weights = jnp.take(params.weights, jnp.asarray(order), axis=-1)
        components = self.family.permute(params.components, order)
        return self.from_mixture_params(MixtureParams(weights, components))

    # -- helpers ---------------------------------------------------------------------------

    def _check_observed_columns(self, X: Array) -> None:
        """With missing values, fitting needs every column observed somewhere (concrete data):
        of a column with no observed value nothing can be estimated."""
        if not self.missing or not is_concrete(X):
            return
        empty = np.flatnonzero(np.all(np.isnan(host_values(X)), axis=0))
        if empty.size:
            raise ValueError(
                f"X[:, {int(empty[0])}] has no observed value: a column missing in every row "
                "cannot be estimated (drop it)"
            )

    def _check_enough_samples(self, weights: Array) -> None:
        n = n_weighted_samples(weights)
        if n is None:
            n = weights.shape[0]
        if self.n_components > n:
            raise ValueError(
                f"n_components={self.n_components} must be <= the number of samples "
                f"(with positive weight), {n}"
            )

    def _per_row(self, compute, X: Array, axis: int = 0) -> Array:
        """``compute(X, weights)``, whose ``axis`` runs over the rows of ``X``, on ``X`` padded
        with rows of zeros to its `jaxem.buckets.bucket` (so that nearby sizes share one compiled
        program), the padding's results dropped. ``weights`` ``(N,)`` are one for the rows and
        zero for the padding: the data's centre, on which the families centre the rows before
        taking their squares, must not count the padding (at weight one, 40 rows of zeros
        pulled the centre of 600 float32 rows at 1e5 to 9.4e4, and predict's labels were
        noise)."""
        n = X.shape[0]
        weights = np.ones(n, X.dtype)
        if not shares_programs(self, X) or bucket(n) == n:
            return compute(X, jnp.asarray(weights))
        X_run, weights_run = pad_rows(X, weights)
        return unpad(compute(X_run, weights_run), (n,), lead=axis)

    def _checked(self, params: Any, X: Any) -> tuple[Array, MixtureParams]:
        X = self.family.check_data(X)
        # every family's first parameter array is (K, D, ...): name a mismatch of D plainly
        first = np.shape(jax.tree.leaves(self.as_mixture_params(params).components)[0])
        if len(first) >= 2 and first[1] != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features (columns) but the parameters are for {first[1]}"
            )
        params = self.check_params(params, X.shape[1], X.dtype)
        return X, self.as_mixture_params(params)

    def _log_joint_kn(self, params: MixtureParams, data: MixtureData) -> Array:
        log_weights = jnp.log(params.weights)
        return self.family.log_likelihoods(params.components, data.family) + log_weights[:, None]


def _check_alpha(alpha: np.ndarray) -> None:
    if not np.all(np.isfinite(alpha)):
        raise ValueError("prior.alpha contains NaN or inf")
    if np.any(alpha < 1):
        raise ValueError(f"prior.alpha must be >= 1 (1 is flat); got {worst(alpha)}")


@partial(jit, static_argnames=("model", "what"))
def _from_log_joint(
    model: Mixture, params: MixtureParams, X: Array, weights: Array, what: str
) -> Array:
    """One compiled program per use of the fitted parameters (run op by op, each operation
    would compile on its own for every new shape of ``X``); ``weights`` zero the padding."""
    data = model.prepare(X, weights)
    log_joint = model._log_joint_kn(params, data).T
    if what == "score_samples":
        return jax.nn.logsumexp(log_joint, axis=1)
    if what == "predict_proba":
        return jax.nn.softmax(log_joint, axis=1)
    if what == "predict":
        return jnp.argmax(log_joint, axis=1)
    if what == "factor_scores":
        return model.family.factor_scores(params.components, data.family)
    if what == "scale_weights":
        u = model.family.scale_weights(params.components, data.family).T
        return jnp.sum(jax.nn.softmax(log_joint, axis=1) * u, axis=1)
    if what == "tail":
        tail = model.family.tail_probabilities(params.components, data.family).T
        best = jnp.argmax(log_joint, axis=1)
        return jnp.take_along_axis(tail, best[:, None], axis=1)[:, 0]
    return log_joint


@partial(jit, static_argnames=("model",))
def _impute(model: Mixture, params: MixtureParams, X: Array, weights: Array) -> Array:
    data = model.prepare(X, weights)
    resp, _ = normalise(model._log_joint_kn(params, data))
    return jnp.where(jnp.isnan(X), model.family.impute(params.components, data.family, resp), X)


@partial(jit, static_argnames=("model",))
def _impute_draw(
    model: Mixture, params: MixtureParams, X: Array, weights: Array, key: PRNGKey
) -> Array:
    data = model.prepare(X, weights)
    k_label, k_value = jax.random.split(key)
    labels = jax.random.categorical(k_label, model._log_joint_kn(params, data), axis=0)
    draw = model.family.impute_sample(k_value, params.components, data.family, labels)
    return jnp.where(jnp.isnan(X), draw, X)


@partial(jit, static_argnames=("model", "method", "block"))
def _init(
    model: Mixture,
    key: PRNGKey,
    X: Array,
    weights: Array,
    method: str,
    block: int | None = None,
    labels: Array | None = None,
) -> Any:
    family, k = model.family, model.n_components
    if model.missing:  # a row of weight zero is a row with nothing observed: no fill counts it
        X = jnp.where((weights > 0)[:, None], X, jnp.nan)
    points = family.init_points(X)
    if method == "hierarchical":  # the rows' clusters ``labels`` (N,), -1 in none
        centres, rows = None, labels
    elif method == "random_from_data":
        rows = jax.random.choice(key, X.shape[0], (k,), replace=False, p=weights / jnp.sum(weights))
        centres = points[rows]
    else:
        centres = kmeans_plusplus(key, points, weights, k, block)
    if method == "kmeans":
        centres = lloyd(points, weights, centres, N_LLOYD_ITER, block)

    if centres is not None:
        rows = points

    def assign(rows_b):  # the cluster of each row of a block
        return rows_b if centres is None else nearest(rows_b, centres)

    # each row goes to the nearest centre among the points k-means ran on, computed once for
    # all rows: a block's own points (with missing values, filled with that block's means, its
    # rows of weight zero counted as zeros) would assign rows differently from k-means
    def stats(X_b, w_b, rows_b, about=None):
        wr = one_hot(assign(rows_b), k, w_b)
        return model._stats(model.prepare(X_b, w_b), wr, about)

    # a family may start from a posterior mode: maximum likelihood from a hard partition puts
    # discrete probabilities and rates on the boundary (0), where EM can never leave them
    start_prior = of_family(family).start_prior
    prior = None if start_prior is None else start_prior(X, weights, k)

    def start(stats, at=None):
        # the second pass's M-step is taken at the first's parameters (a family whose M-step
        # reads them, factor analysers, then makes one step from the first pass's start)
        m_step = model.m_step(stats) if at is None else model.m_step_from(at, stats)
        mixture = model.as_mixture_params(m_step)
        if prior is not None:
            components = family.estimate(stats.components, stats.counts, prior)
            mixture = mixture._replace(components=components)
        return model.from_mixture_params(mixture)

    params = start(block_sum(stats, X, weights, block, (rows,)))
    if block is None:
        return params
    # Statistics taken about the responsibility-weighted means (about=None) add up across blocks
    # only in the parts that do not depend on that reference (counts, sums); the M-step's means
    # are right, and a second pass about them gives every statistic
    about = model.as_mixture_params(params).components
    return start(
        block_sum(lambda X_b, w_b, r_b: stats(X_b, w_b, r_b, about), X, weights, block, (rows,)),
        params,
    )
