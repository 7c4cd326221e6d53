"""The Bernoulli family: $D$ binary columns, independent given the component,
$p(x \\mid z = k) = \\prod_d p_{kd}^{x_d} (1 - p_{kd})^{1 - x_d}$.

Statistics: $S_{kd} = \\sum_n wr_{kn} x_{nd}$ (`BernoulliStats`), beside $N_k$. M-steps:

$$
p_{kd} = \\frac{S_{kd}}{N_k} \\;\\text{(MLE)}, \\qquad
p_{kd} = \\frac{S_{kd} + a_{kd} - 1}{N_k + a_{kd} + b_{kd} - 2}
\\;\\text{(MAP, } p_{kd} \\sim \\mathrm{Beta}(a_{kd}, b_{kd})\\text{)},
$$

both kept within $[\\varepsilon, 1 - \\varepsilon]$, $\\varepsilon$ ten machine epsilons of the
dtype, so that no log-density is infinite (a column that is constant within a component would
otherwise give probability 0 or 1). A component with no weight takes the pooled frequencies
$\\sum_k S_{kd} / \\sum_k N_k$. The log-likelihoods of all components are one matrix product:
$\\log p(x_n \\mid k) = \\sum_d x_{nd} \\operatorname{logit} p_{kd} + \\sum_d \\log(1 - p_{kd})$.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import charts, priors
from jaxem.families.statistics import (
    Observed,
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
from jaxem.validation import as_float_array, is_concrete

Array = jax.Array


class BernoulliParams(NamedTuple):
    """Attributes: probs ``(K, D)``, $p_{kd} = P(x_d = 1 \\mid z = k)$, in (0, 1)."""

    probs: Array


class BetaPrior(NamedTuple):
    """$p_{kd} \\sim \\mathrm{Beta}(a_{kd}, b_{kd})$; ``a`` and ``b`` scalars, ``(D,)`` or
    ``(K, D)``, every entry >= 1 (below 1 the mode leaves the open interval)."""

    a: Any
    b: Any


class BernoulliStats(NamedTuple):
    """Attributes: sums ``(K, D)`` $S_{kd} = \\sum_n wr_{kn} x_{nd}$; totals ``(K, D)``, with
    missing values, $N_{kd} = \\sum_n wr_{kn} [x_{nd} \\text{ observed}]$ (the sums too run
    over observed entries only), else None ($N_{kd} = N_k$)."""

    sums: Array
    totals: Array | None = None


@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """Binary columns, independent given the component (static configuration; hashable).

    Args:
        missing: whether ``X`` may hold NaN for values missing at random: a missing entry drops
            out of the likelihood and the statistics (exact: the columns are independent given
            the component), and the M-step divides by $N_{kd}$, the weight of the component's
            observed entries of the column, instead of $N_k$. False: NaN is an error.
    """

    # what a model file holds of the parameters and the prior (jaxem.families.registry)
    params_type: ClassVar[type] = BernoulliParams
    prior_type: ClassVar[type] = BetaPrior
    # its name on the command line and in messages, and the options it takes there
    name: ClassVar[str] = "bernoulli"
    options: ClassVar[tuple[str, ...]] = ()

    missing: bool = False

    def __post_init__(self):
        check_missing_flag(self.missing)

    @classmethod
    def for_data(cls, X: Any, missing: bool = False, **options: Any) -> Bernoulli:
        """The family for data ``X`` (as the command line makes it): ``missing`` and the
        ``options`` it declares."""
        return cls(missing=missing, **options)

    def describe(self) -> str:
        """The family's name in messages."""
        return "Bernoulli(missing=True)" if self.missing else "Bernoulli"

    def check_data(self, X: Any, name: str = "X") -> Array:
        """``(N, D)`` of 0s and 1s (and NaN with ``missing``), as a floating array."""
        return check_discrete(X, name, "0s and 1s", lambda v: (v == 0) | (v == 1), self.missing)

    def prepare(self, X: Array, weights: Array) -> Array | Observed:
        """``X`` transposed, ``(D, N)``: the right operand of both matrix products (with
        ``missing``: `jaxem.families.statistics.Observed`)."""
        return observe(X) if self.missing else X.T

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The E-step's working memory per sample (for row blocks)."""
        return itemsize * (2 * n_features + 4 * n_components)

    def init_points(self, X: Array) -> Array:
        """The points k-means seeds a start among: ``X`` itself (missing values at their
        column's observed mean)."""
        return fill_means(X) if self.missing else X

    def log_likelihoods(self, params: BernoulliParams, data: Array | Observed) -> Array:
        """$\\log p(x_n \\mid z = k)$ (of the observed entries), ``(K, N)``."""
        log_p, log_q = jnp.log(params.probs), jnp.log1p(-params.probs)
        if self.missing:
            return (log_p - log_q) @ data.values + log_q @ data.observed
        return (log_p - log_q) @ data + jnp.sum(log_q, axis=1)[:, None]

    def stats(self, data: Array | Observed, wr: Array, params: Any = None) -> BernoulliStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)`` (see the module)."""
        if self.missing:
            both = weighted_sums(jnp.concatenate([data.values, data.observed]), wr)
            return BernoulliStats(*jnp.split(both, 2, axis=1))
        return BernoulliStats(weighted_sums(data, wr))

    def impute(self, params: BernoulliParams, data: Observed, resp: Array) -> Array:
        """$\\mathbb{E}[x_{nd} \\mid x_{n,o}] = \\sum_k r_{nk} p_{kd}$, ``(N, D)``, from the
        responsibilities ``resp`` ``(K, N)`` (observed entries are kept by the caller)."""
        return resp.T @ params.probs

    def impute_sample(
        self, key: Array, params: BernoulliParams, data: Observed, labels: Array
    ) -> Array:
        """A draw of every entry from its row's component ``labels`` ``(N,)``, ``(N, D)``."""
        return self.sample_given(key, params, labels)

    def estimate(
        self, stats: BernoulliStats, counts: Array, prior: BetaPrior | None = None
    ) -> BernoulliParams:
        """The MLE, or with ``prior`` the posterior mode, given $N_k$ = ``counts`` ``(K,)``
        (see the module), kept off the boundary by the floor."""
        sums = stats.sums
        totals = counts[:, None] if stats.totals is None else stats.totals
        pooled = jnp.sum(sums, axis=0) / jnp.maximum(jnp.sum(totals, axis=0), floor(sums.dtype))
        if prior is None:
            empty, safe = fallback_counts(totals)
            probs = jnp.where(empty, pooled, sums / safe)
        else:
            denominator = totals + prior.a + prior.b - 2
            safe = jnp.where(denominator > 0, denominator, 1.0)
            probs = jnp.where(denominator > 0, (sums + prior.a - 1) / safe, pooled)
        eps = floor(sums.dtype)
        return BernoulliParams(jnp.clip(probs, eps, 1 - eps))

    def log_prior(self, params: BernoulliParams, prior: BetaPrior) -> Array:
        """The prior's log density at ``params.probs``, every constant included."""
        return priors.log_beta(params.probs, prior.a, prior.b)

    # -- NumPyro (for `jaxem.crosscheck`, which passes NumPyro's distributions module and its
    # ``sample``: the family never imports NumPyro) ------------------------------------------

    def numpyro_components(self, dist: Any, params: BernoulliParams) -> Any:
        """The K components: independent Bernoulli columns, batch ``(K,)``, event ``(D,)``."""
        return dist.Bernoulli(probs=params.probs).to_event(1)

    def numpyro_params(
        self, sample: Any, dist: Any, prior: BetaPrior | None, n_components: int, n_features: int
    ) -> BernoulliParams:
        """``probs`` as a NumPyro site: Beta-distributed, or flat on [0, 1] without a prior."""
        if prior is None:
            shape = (n_components, n_features)
            flat = dist.ImproperUniform(dist.constraints.unit_interval, (), shape)
            return BernoulliParams(sample("probs", flat))
        return BernoulliParams(sample("probs", dist.Beta(prior.a, prior.b).to_event(2)))

    def default_prior_for(self, X: Array, n_components: int) -> BetaPrior:
        """Beta(3/2, 3/2) for every probability: one pseudo-observation per component and column,
        split evenly between 0 and 1. Its mode $(S + 1/2) / (N_k + 1)$ is the mean under
        Jeffreys' Beta(1/2, 1/2) prior (the Krichevsky-Trofimov estimator), strictly inside
        (0, 1) even for an empty component or a constant column."""
        shape = (n_components, X.shape[1])
        return BetaPrior(jnp.full(shape, 1.5, X.dtype), jnp.full(shape, 1.5, X.dtype))

    def start_prior(self, X: Array, weights: Array, n_components: int) -> Any:
        """The prior whose mode from a starting partition is `jaxem.Mixture.init`'s start: the
        default prior, so that no starting probability (rate) sits at the floor, which EM could
        not leave (its hyperparameters do not depend on the data's values)."""
        return self.default_prior_for(X, n_components)

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> BetaPrior:
        """A `BetaPrior` checked against K and D (shapes always, ranges when concrete), its
        fields broadcast to ``(K, D)`` and cast to ``dtype``."""
        shape = (n_components, n_features)
        prior = entrywise_prior(prior, BetaPrior, shape, dtype, name)
        if is_concrete(prior):
            self.check_prior_values(prior, n_features, name)
        return prior

    def check_prior_values(self, prior: BetaPrior, n_features: int, name: str = "prior") -> None:
        """The hyperparameters' ranges on concrete values (any leading batch axes)."""
        for field in prior._fields:
            check_shape_parameter(getattr(prior, field), f"{name}.{field}", "[0, 1]")

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> BernoulliParams:
        """``params.probs`` checked against ``(K, D)`` (values when concrete), cast to
        ``dtype``."""
        if not isinstance(params, BernoulliParams):
            raise TypeError(f"{name} must be a BernoulliParams(probs); got {type(params).__name__}")
        probs = as_float_array(params.probs, f"{name}.probs").astype(dtype)
        shape = (n_components, n_features)
        if probs.shape != shape:
            raise ValueError(f"{name}.probs must have shape {shape}; got {probs.shape}")
        if is_concrete(probs):
            p = np.asarray(probs)
            if not np.all((p > 0) & (p < 1)):
                raise ValueError(f"{name}.probs must lie strictly between 0 and 1")
        return BernoulliParams(probs)

    def n_parameters_for(self, n_components: int, n_features: int) -> int:
        """The free parameters of K components."""
        return n_components * n_features

    def sample_given(self, key: Array, params: BernoulliParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)`` from its component: ``(N, D)``."""
        probs = jnp.asarray(params.probs)[labels]
        return jax.random.bernoulli(key, probs).astype(probs.dtype)

    def unconstrain(self, params: BernoulliParams) -> BernoulliParams:
        """Unconstrained coordinates: the logits $\\log p - \\log(1 - p)$."""
        return BernoulliParams(jnp.log(params.probs) - jnp.log1p(-params.probs))

    def constrain(self, coordinates: BernoulliParams) -> BernoulliParams:
        """The probabilities of logits (the inverse of `unconstrain`)."""
        return BernoulliParams(jax.nn.sigmoid(coordinates.probs))

    def chart(self, at: BernoulliParams, coordinates: Array) -> BernoulliParams:
        """Probabilities near ``at`` from K·D coordinates (`jaxem.charts`): as they are, except
        those on the boundary, 0 or 1 (`jaxem.charts.on_boundary`), held fixed."""
        probs = at.probs
        fixed = charts.on_boundary(jnp.minimum(probs, 1 - probs))
        return BernoulliParams(charts.hold(probs, coordinates.reshape(probs.shape), fixed))

    def permute(self, params: BernoulliParams, order: Any) -> BernoulliParams:
        """``params`` with the components in ``order`` ``(K,)``."""
        return BernoulliParams(jnp.take(params.probs, jnp.asarray(order), axis=-2))
