"""The Poisson family: $D$ count columns, independent given the component,
$p(x \\mid z = k) = \\prod_d \\lambda_{kd}^{x_d} e^{-\\lambda_{kd}} / x_d!$.

Statistics: $S_{kd} = \\sum_n wr_{kn} x_{nd}$ (`PoissonStats`), beside $N_k$. M-steps:

$$
\\lambda_{kd} = \\frac{S_{kd}}{N_k} \\;\\text{(MLE)}, \\qquad
\\lambda_{kd} = \\frac{S_{kd} + a_{kd} - 1}{N_k + b_{kd}}
\\;\\text{(MAP, } \\lambda_{kd} \\sim \\mathrm{Gamma}(a_{kd}, b_{kd})\\text{, shape and rate)},
$$

both raised to at least $\\varepsilon$ (ten machine epsilons of the dtype), so that a component
whose points are all zero in a column keeps a finite log-density for a positive count. A
component with no weight takes the pooled means. The log-likelihoods are one matrix product,
$\\sum_d x_{nd} \\log \\lambda_{kd} - \\sum_d \\lambda_{kd} - \\sum_d \\log x_{nd}!$, the last term
computed once per fit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxem import charts, priors
from jaxem.families.statistics import (
    check_discrete,
    check_missing_flag,
    check_shape_parameter,
    entrywise_prior,
    fallback_counts,
    fill_means,
    floor,
    observe,
    weighted_sums,
)
from jaxem.validation import as_float_array, is_concrete, worst

Array = jax.Array


class PoissonParams(NamedTuple):
    """Attributes: rates ``(K, D)``, $\\lambda_{kd} > 0$."""

    rates: Array


class GammaPrior(NamedTuple):
    """$\\lambda_{kd} \\sim \\mathrm{Gamma}(a_{kd}, b_{kd})$ with shape ``shape`` >= 1 and rate
    ``rate`` > 0; scalars, ``(D,)`` or ``(K, D)``."""

    shape: Any
    rate: Any


class PoissonStats(NamedTuple):
    """Attributes: sums ``(K, D)`` $S_{kd} = \\sum_n wr_{kn} x_{nd}$; totals ``(K, D)``, with
    missing values, $N_{kd} = \\sum_n wr_{kn} [x_{nd} \\text{ observed}]$ (the sums too run
    over observed entries only), else None ($N_{kd} = N_k$)."""

    sums: Array
    totals: Array | None = None


class PoissonData(NamedTuple):
    """Attributes: counts ``(D, N)`` the data transposed (0 where missing); log_factorials
    ``(N,)`` $\\sum_d \\log x_{nd}!$ over the observed entries; observed ``(D, N)``, with
    missing values, 1 where observed and 0 where missing, else None."""

    counts: Array
    log_factorials: Array
    observed: Array | None = None


@dataclasses.dataclass(frozen=True)
class Poisson:
    """Count columns, independent given the component (static configuration; hashable).

    Args:
        missing: whether ``X`` may hold NaN for values missing at random: a missing entry drops
            out of the likelihood and the statistics (exact: the columns are independent given
            the component), and the M-step divides by $N_{kd}$, the weight of the component's
            observed entries of the column, instead of $N_k$. False: NaN is an error.
    """

    # what a model file holds of the parameters and the prior (jaxem.families.registry)
    params_type: ClassVar[type] = PoissonParams
    prior_type: ClassVar[type] = GammaPrior
    # its name on the command line and in messages, and the options it takes there
    name: ClassVar[str] = "poisson"
    options: ClassVar[tuple[str, ...]] = ()

    missing: bool = False

    def __post_init__(self):
        check_missing_flag(self.missing)

    @classmethod
    def for_data(cls, X: Any, missing: bool = False, **options: Any) -> Poisson:
        """The family for data ``X`` (as the command line makes it): ``missing`` and the
        ``options`` it declares."""
        return cls(missing=missing, **options)

    def describe(self) -> str:
        """The family's name in messages."""
        return "Poisson(missing=True)" if self.missing else "Poisson"

    def check_data(self, X: Any, name: str = "X") -> Array:
        """``(N, D)`` non-negative integers (and NaN with ``missing``), as a floating array."""
        return check_discrete(
            X,
            name,
            "non-negative integers (counts)",
            lambda v: (v >= 0) & (np.floor(v) == v),
            self.missing,
        )

    def prepare(self, X: Array, weights: Array) -> PoissonData:
        if self.missing:
            observed = observe(X)
            log_factorials = jnp.sum(gammaln(observed.values + 1), axis=0)  # 0! = 1 where missing
            return PoissonData(observed.values, log_factorials, observed.observed)
        return PoissonData(X.T, jnp.sum(gammaln(X + 1), axis=1))

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The E-step's working memory per sample (for row blocks)."""
        return itemsize * (2 * n_features + 1 + 4 * n_components)

    def init_points(self, X: Array) -> Array:
        """The points k-means seeds a start among: ``X`` itself (missing values at their
        column's observed mean)."""
        return fill_means(X) if self.missing else X

    def log_likelihoods(self, params: PoissonParams, data: PoissonData) -> Array:
        """$\\log p(x_n \\mid z = k)$ (of the observed entries), ``(K, N)``."""
        rates = params.rates
        exposure = (
            jnp.sum(rates, axis=1)[:, None] if data.observed is None else rates @ data.observed
        )
        return jnp.log(rates) @ data.counts - exposure - data.log_factorials[None, :]

    def stats(self, data: PoissonData, wr: Array, params: Any = None) -> PoissonStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)`` (see the module)."""
        if data.observed is not None:
            both = weighted_sums(jnp.concatenate([data.counts, data.observed]), wr)
            return PoissonStats(*jnp.split(both, 2, axis=1))
        return PoissonStats(weighted_sums(data.counts, wr))

    def impute(self, params: PoissonParams, data: PoissonData, resp: Array) -> Array:
        """$\\mathbb{E}[x_{nd} \\mid x_{n,o}] = \\sum_k r_{nk} \\lambda_{kd}$, ``(N, D)``,
        from the responsibilities ``resp`` ``(K, N)`` (observed entries are kept by the
        caller)."""
        return resp.T @ params.rates

    def impute_sample(
        self, key: Array, params: PoissonParams, data: PoissonData, labels: Array
    ) -> Array:
        """A draw of every entry from its row's component ``labels`` ``(N,)``, ``(N, D)``."""
        return self.sample_given(key, params, labels)

    def estimate(
        self, stats: PoissonStats, counts: Array, prior: GammaPrior | None = None
    ) -> PoissonParams:
        """The MLE, or with ``prior`` the posterior mode, given $N_k$ = ``counts`` ``(K,)``
        (see the module), kept off the boundary by the floor."""
        sums = stats.sums
        totals = counts[:, None] if stats.totals is None else stats.totals
        if prior is None:
            empty, safe = fallback_counts(totals)
            column_totals = jnp.maximum(jnp.sum(totals, axis=0), floor(sums.dtype))
            rates = jnp.where(empty, jnp.sum(sums, axis=0) / column_totals, sums / safe)
        else:
            rates = (sums + prior.shape - 1) / (totals + prior.rate)
        return PoissonParams(jnp.maximum(rates, floor(sums.dtype)))

    def log_prior(self, params: PoissonParams, prior: GammaPrior) -> Array:
        """The prior's log density at ``params.rates``, every constant included."""
        return priors.log_gamma(params.rates, prior.shape, prior.rate)

    # -- NumPyro (for `jaxem.crosscheck`, which passes NumPyro's distributions module and its
    # ``sample``: the family never imports NumPyro) ------------------------------------------

    def numpyro_components(self, dist: Any, params: PoissonParams) -> Any:
        """The K components: independent Poisson columns, batch ``(K,)``, event ``(D,)``."""
        return dist.Poisson(params.rates).to_event(1)

    def numpyro_params(
        self, sample: Any, dist: Any, prior: GammaPrior | None, n_components: int, n_features: int
    ) -> PoissonParams:
        """``rates`` as a NumPyro site: Gamma-distributed, or flat on (0, inf) without a prior."""
        if prior is None:
            shape = (n_components, n_features)
            return PoissonParams(
                sample("rates", dist.ImproperUniform(dist.constraints.positive, (), shape))
            )
        return PoissonParams(sample("rates", dist.Gamma(prior.shape, prior.rate).to_event(2)))

    def default_prior_for(self, X: Array, n_components: int) -> GammaPrior:
        """Gamma(shape $1 + \\bar x_d$, rate 1) for every rate: one pseudo-observation at the
        column's mean $\\bar x_d$ (at least $1/N$, so that a column of zeros still gets a
        positive rate). The mode $(S_{kd} + \\bar x_d) / (N_k + 1)$ is strictly positive even for
        an empty component."""
        mean = jnp.nanmean(X, axis=0) if self.missing else jnp.mean(X, axis=0)
        return _one_observation_at_the_mean(mean, X.shape[0], n_components)

    def start_prior(self, X: Array, weights: Array, n_components: int) -> Any:
        """The prior whose mode from a starting partition is `jaxem.Mixture.init`'s start: the
        default prior, so that no starting probability (rate) sits at the floor, which EM could
        not leave; the column means are weighted by ``weights`` ``(N,)``."""
        total = jnp.sum(weights)
        if not self.missing:
            return _one_observation_at_the_mean((weights @ X) / total, total, n_components)
        seen = ~jnp.isnan(X)
        column_weights = jnp.maximum(weights @ seen.astype(X.dtype), floor(X.dtype))
        mean = (weights @ jnp.where(seen, X, 0.0)) / column_weights
        return _one_observation_at_the_mean(mean, total, n_components)

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> GammaPrior:
        """A `GammaPrior` checked against K and D (shapes always, ranges when concrete), its
        fields broadcast to ``(K, D)`` and cast to ``dtype``."""
        shape = (n_components, n_features)
        prior = entrywise_prior(prior, GammaPrior, shape, dtype, name)
        if is_concrete(prior):
            self.check_prior_values(prior, n_features, name)
        return prior

    def check_prior_values(self, prior: GammaPrior, n_features: int, name: str = "prior") -> None:
        """The hyperparameters' ranges on concrete values (any leading batch axes)."""
        check_shape_parameter(prior.shape, f"{name}.shape", "(0, inf)")
        rate = np.asarray(prior.rate, dtype=np.float64)
        if not np.all(np.isfinite(rate)):
            raise ValueError(f"{name}.rate contains NaN or inf")
        if np.any(rate <= 0):
            raise ValueError(f"{name}.rate must be > 0; got {worst(rate)}")

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> PoissonParams:
        """``params.rates`` checked against ``(K, D)`` (values when concrete), cast to
        ``dtype``."""
        if not isinstance(params, PoissonParams):
            raise TypeError(f"{name} must be a PoissonParams(rates); got {type(params).__name__}")
        rates = as_float_array(params.rates, f"{name}.rates").astype(dtype)
        shape = (n_components, n_features)
        if rates.shape != shape:
            raise ValueError(f"{name}.rates must have shape {shape}; got {rates.shape}")
        if is_concrete(rates):
            r = np.asarray(rates)
            if not np.all(np.isfinite(r) & (r > 0)):
                raise ValueError(f"{name}.rates must be finite and > 0")
        return PoissonParams(rates)

    def n_parameters_for(self, n_components: int, n_features: int) -> int:
        """The free parameters of K components."""
        return n_components * n_features

    def sample_given(self, key: Array, params: PoissonParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)`` from its component: ``(N, D)``."""
        rates = jnp.asarray(params.rates)[labels]
        return jax.random.poisson(key, rates).astype(rates.dtype)

    def unconstrain(self, params: PoissonParams) -> PoissonParams:
        """Unconstrained coordinates: the log rates."""
        return PoissonParams(jnp.log(params.rates))

    def constrain(self, coordinates: PoissonParams) -> PoissonParams:
        """The rates of log rates (the inverse of `unconstrain`)."""
        return PoissonParams(jnp.exp(coordinates.rates))

    def chart(self, at: PoissonParams, coordinates: Array) -> PoissonParams:
        """Rates near ``at`` from K·D coordinates (`jaxem.charts`): the rates as they are,
        except those on the boundary, 0 (`jaxem.charts.on_boundary`, relative to the column's
        largest rate), held fixed."""
        rates = at.rates
        fixed = charts.on_boundary(rates, jnp.max(rates, axis=0, keepdims=True))
        return PoissonParams(charts.hold(rates, coordinates.reshape(rates.shape), fixed))

    def permute(self, params: PoissonParams, order: Any) -> PoissonParams:
        """``params`` with the components in ``order`` ``(K,)``."""
        return PoissonParams(jnp.take(params.rates, jnp.asarray(order), axis=-2))


def _one_observation_at_the_mean(mean: Array, n: Any, n_components: int) -> GammaPrior:
    """Gamma(1 + max(mean, 1/n), 1) for every component, ``mean`` ``(D,)``."""
    shape = (n_components, mean.shape[0])
    mean = jnp.maximum(mean, 1.0 / n)
    return GammaPrior(jnp.broadcast_to(1.0 + mean, shape), jnp.ones(shape, mean.dtype))
