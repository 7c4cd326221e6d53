"""The categorical family: $D$ categorical columns, independent given the component (latent
class analysis), $p(x \\mid z = k) = \\prod_d p_{kd x_d}$.

Column $d$ takes the values $0, \\dots, C_d - 1$; parameters are stored ``(K, D, C)`` with
$C = \\max_d C_d$ and probability 0 for the categories a column does not have. Statistics:
$S_{kdc} = \\sum_n wr_{kn} [x_{nd} = c]$ (`CategoricalStats`). M-steps:

$$
p_{kdc} = \\frac{S_{kdc}}{N_k} \\;\\text{(MLE)}, \\qquad
p_{kdc} = \\frac{S_{kdc} + \\beta_{kdc} - 1}{N_k + \\sum_{c'} \\beta_{kdc'} - C_d}
\\;\\text{(MAP, } p_{kd\\cdot} \\sim \\mathrm{Dirichlet}(\\beta_{kd\\cdot})\\text{)},
$$

then every probability of an existing category is raised to at least $\\varepsilon$ (ten machine
epsilons of the dtype) and each row renormalised, so that a category never seen in a component
keeps a finite log-density. A component with no weight takes the pooled frequencies. The
log-likelihoods are one matrix product of the ``(K, D·C)`` log-probabilities with the ``(D·C, N)``
one-hot data, computed once per fit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import charts, priors
from jaxem.families.statistics import (
    check_discrete,
    check_missing_flag,
    check_shape_parameter,
    fallback_counts,
    floor,
    weighted_sums,
)
from jaxem.validation import as_float_array, is_concrete

Array = jax.Array


class CategoricalParams(NamedTuple):
    """Attributes: probs ``(K, D, C)``, $p_{kdc} = P(x_d = c \\mid z = k)$; each ``probs[k, d]``
    sums to one over its column's categories and is 0 beyond them."""

    probs: Array


class DirichletPrior(NamedTuple):
    """$p_{kd\\cdot} \\sim \\mathrm{Dirichlet}(\\beta_{kd\\cdot})$; ``concentration`` ``(C,)``,
    ``(D, C)`` or ``(K, D, C)``, every entry of an existing category >= 1 (entries beyond a
    column's categories are ignored)."""

    concentration: Any


class CategoricalStats(NamedTuple):
    """Attributes: counts ``(K, D, C)``, $S_{kdc} = \\sum_n wr_{kn} [x_{nd} = c]$."""

    counts: Array


@dataclasses.dataclass(frozen=True)
class Categorical:
    """Categorical columns, independent given the component (static configuration; hashable).

    Args:
        n_categories: $C_d$, the number of values of every column (an int), or of each column
            (a tuple of ints, one per column); a column's values are ``0, ..., C_d - 1``.
        missing: whether ``X`` may hold NaN for values missing at random: a missing entry's
            one-hot row is all zeros, so it drops out of the likelihood and the statistics
            (exact: the columns are independent given the component), and the M-step's
            normalisation over categories divides by the weight of the observed entries of the
            column. False: NaN is an error.
    """

    # what a model file holds of the parameters and the prior (jaxem.families.registry)
    params_type: ClassVar[type] = CategoricalParams
    prior_type: ClassVar[type] = DirichletPrior
    # its name on the command line and in messages, and the options it takes there
    name: ClassVar[str] = "categorical"
    options: ClassVar[tuple[str, ...]] = ()

    n_categories: int | tuple[int, ...]
    missing: bool = False

    def __post_init__(self):
        check_missing_flag(self.missing)
        values = self.n_categories
        if isinstance(values, (list, np.ndarray)):
            values = tuple(int(v) for v in values)
            object.__setattr__(self, "n_categories", values)
        entries = values if isinstance(values, tuple) else (values,)
        if not entries or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in entries
        ):
            raise ValueError(
                "n_categories must be an integer >= 1 or a tuple of them; "
                f"got {self.n_categories!r}"
            )

    @classmethod
    def for_data(cls, X: Any, missing: bool = False) -> Categorical:
        """The family for data ``X`` (as the command line makes it): each column's number of
        categories is its largest code plus one. Codes that are not integers >= 0 give a
        one-category family, whose data check then names the first bad cell."""
        X = np.asarray(X, dtype=np.float64)
        seen = X.size and not np.all(np.isnan(X))
        codes = np.nan_to_num(np.nanmax(X, axis=0)) if seen else np.ones(1)
        if np.any(codes < 0) or np.any(np.floor(codes) != codes):
            return cls(1)
        return cls(tuple(int(c) + 1 for c in codes), missing)

    def describe(self) -> str:
        """The family's name in messages."""
        extra = ", missing=True" if self.missing else ""
        return f"Categorical(n_categories={self.n_categories!r}{extra})"

    @property
    def max_categories(self) -> int:
        """$C = \\max_d C_d$, the last axis of the parameters."""
        values = self.n_categories
        return int(max(values) if isinstance(values, tuple) else values)

    def categories(self, n_features: int) -> np.ndarray:
        """$C_d$ for each of ``n_features`` columns, ``(D,)``."""
        if isinstance(self.n_categories, tuple):
            if len(self.n_categories) != n_features:
                raise ValueError(
                    f"n_categories gives {len(self.n_categories)} columns; the data has "
                    f"n_features={n_features}"
                )
            return np.asarray(self.n_categories)
        return np.full(n_features, self.n_categories)

    def valid(self, n_features: int) -> np.ndarray:
        """Which entries of ``(D, C)`` are categories of their column (bool)."""
        c = self.categories(n_features)
        return np.arange(c.max()) < c[:, None]

    def check_data(self, X: Any, name: str = "X") -> Array:
        """``(N, D)`` integers, column ``d`` in ``[0, C_d)``, as a floating array."""
        X = check_discrete(X, name, "integers", lambda v: np.floor(v) == v, self.missing)
        c = self.categories(X.shape[1])
        return check_discrete(
            X,
            name,
            f"category codes in [0, n_categories) = [0, {self.n_categories})",
            lambda v: (v >= 0) & (v < c),
            self.missing,
        )

    def prepare(self, X: Array, weights: Array) -> Array:
        """One-hot data ``(D·C, N)``: row ``d·C + c`` is $[x_{nd} = c]$ (all zeros for a
        missing entry: NaN equals no code)."""
        n, d = X.shape
        c = self.max_categories
        onehot = X.T[:, None, :] == jnp.arange(c, dtype=X.dtype)[None, :, None]
        return onehot.reshape(d * c, n).astype(X.dtype)

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The E-step's working memory per sample (for row blocks)."""
        c = self.max_categories
        return itemsize * (n_features * (c + 1) + 4 * n_components)

    def init_points(self, X: Array) -> Array:
        """One-hot rows ``(N, D·C)``: k-means among them counts mismatching columns."""
        return self.prepare(X, jnp.ones(X.shape[0], X.dtype)).T

    def log_likelihoods(self, params: CategoricalParams, data: Array) -> Array:
        """$\\log p(x_n \\mid z = k)$, ``(K, N)``."""
        k, d, c = params.probs.shape
        log_p = jnp.where(self.valid(d), jnp.log(jnp.where(self.valid(d), params.probs, 1.0)), 0.0)
        return log_p.reshape(k, d * c) @ data

    def stats(self, data: Array, wr: Array, params: Any = None) -> CategoricalStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)`` (see the module)."""
        sums = weighted_sums(data, wr)
        return CategoricalStats(sums.reshape(sums.shape[0], -1, self.max_categories))

    def estimate(
        self, stats: CategoricalStats, counts: Array, prior: DirichletPrior | None = None
    ) -> CategoricalParams:
        """The MLE, or with ``prior`` the posterior mode, given $N_k$ = ``counts`` ``(K,)``
        (see the module), kept off the boundary by the floor."""
        sums = stats.counts
        valid = self.valid(sums.shape[1])
        pooled = jnp.sum(sums, axis=0) / jnp.sum(counts)
        if prior is None:
            empty, safe = fallback_counts(counts)
            probs = jnp.where(empty[:, None, None], pooled, sums / safe[:, None, None])
        else:
            beta = jnp.where(valid, prior.concentration, 1.0)
            denominator = counts[:, None, None] + jnp.sum(beta - 1, axis=-1, keepdims=True)
            safe = jnp.where(denominator > 0, denominator, 1.0)
            probs = jnp.where(denominator > 0, (sums + beta - 1) / safe, pooled)
        probs = jnp.where(valid, jnp.maximum(probs, floor(sums.dtype)), 0.0)
        return CategoricalParams(probs / jnp.sum(probs, axis=-1, keepdims=True))

    def log_prior(self, params: CategoricalParams, prior: DirichletPrior) -> Array:
        """The prior's log density at ``params.probs``, every constant included."""
        valid = self.valid(params.probs.shape[1])
        return priors.log_dirichlet_rows(params.probs, prior.concentration, valid)

    # -- NumPyro (for `jaxem.crosscheck`, which passes NumPyro's distributions module and its
    # ``sample``: the family never imports NumPyro) ------------------------------------------

    def numpyro_components(self, dist: Any, params: CategoricalParams) -> Any:
        """The K components: independent categorical columns, batch ``(K,)``, event ``(D,)``.
        ``ValueError`` when the columns have different numbers of categories (NumPyro's
        categorical has one support per batch)."""
        if isinstance(self.n_categories, tuple) and len(set(self.n_categories)) > 1:
            raise ValueError(
                "jaxem.crosscheck covers Categorical families with one number of categories "
                f"for every column; got n_categories={self.n_categories}"
            )
        return dist.Categorical(probs=params.probs).to_event(1)

    def numpyro_params(
        self,
        sample: Any,
        dist: Any,
        prior: DirichletPrior | None,
        n_components: int,
        n_features: int,
    ) -> CategoricalParams:
        """``probs`` as a NumPyro site: Dirichlet rows, or flat on the simplex without a
        prior."""
        if prior is None:
            c = self.max_categories
            flat = dist.ImproperUniform(dist.constraints.simplex, (n_components, n_features), (c,))
            return CategoricalParams(sample("probs", flat))
        return CategoricalParams(sample("probs", dist.Dirichlet(prior.concentration).to_event(2)))

    def default_prior_for(self, X: Array, n_components: int) -> DirichletPrior:
        """Dirichlet(1 + 1/C_d, ..., 1 + 1/C_d) for every component and column: one
        pseudo-observation spread evenly over the column's categories, so the mode
        $(S_{kdc} + 1/C_d) / (N_k + 1)$ is strictly inside the simplex even for an empty
        component or a category never seen (Bernoulli's Beta(3/2, 3/2) is the case C = 2)."""
        d = X.shape[1]
        c = self.categories(d)
        beta = np.where(self.valid(d), 1.0 + 1.0 / c[:, None], 1.0)
        return DirichletPrior(
            jnp.broadcast_to(jnp.asarray(beta, X.dtype), (n_components,) + beta.shape)
        )

    def start_prior(self, X: Array, weights: Array, n_components: int) -> Any:
        """The prior whose mode from a starting partition is `jaxem.Mixture.init`'s start: the
        default prior, so that no starting probability (rate) sits at the floor, which EM could
        not leave (its hyperparameters do not depend on the data's values)."""
        return self.default_prior_for(X, n_components)

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> DirichletPrior:
        """A `DirichletPrior` checked against K and D (shapes always, ranges when concrete), its
        fields broadcast to ``(K, D, C)`` and cast to ``dtype``."""
        if not isinstance(prior, DirichletPrior):
            raise TypeError(
                f"{name} must be a DirichletPrior(concentration); got {type(prior).__name__}"
            )
        c = self.max_categories
        shape = (n_components, n_features, c)
        beta = as_float_array(prior.concentration, f"{name}.concentration").astype(dtype)
        if beta.shape not in ((c,), (n_features, c), shape):
            raise ValueError(
                f"{name}.concentration must be of shape ({c},), ({n_features}, {c}) or {shape}; "
                f"got {beta.shape}"
            )
        prior = DirichletPrior(jnp.broadcast_to(beta, shape))
        if is_concrete(prior):
            self.check_prior_values(prior, n_features, name)
        return prior

    def check_prior_values(self, prior: DirichletPrior, n_features: int, name: str = "prior"):
        """The hyperparameters' ranges on concrete values (any leading batch axes)."""
        beta = np.asarray(prior.concentration, dtype=np.float64)
        valid = np.broadcast_to(self.valid(n_features), beta.shape)
        check_shape_parameter(beta[valid], f"{name}.concentration", "the simplex")

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> CategoricalParams:
        """``params.probs`` checked against ``(K, D, C)`` (values when concrete), cast to
        ``dtype``."""
        if not isinstance(params, CategoricalParams):
            raise TypeError(
                f"{name} must be a CategoricalParams(probs); got {type(params).__name__}"
            )
        probs = as_float_array(params.probs, f"{name}.probs").astype(dtype)
        c = self.max_categories
        shape = (n_components, n_features, c)
        if probs.shape != shape:
            raise ValueError(
                f"{name}.probs must have shape {shape} for {self.describe()}; got {probs.shape}"
            )
        if is_concrete(probs):
            p = np.asarray(probs, dtype=np.float64)
            valid = self.valid(n_features)
            if not np.all(np.where(valid, p > 0, p == 0)):
                raise ValueError(
                    f"{name}.probs must be > 0 for every category and 0 beyond a column's "
                    "categories"
                )
            if np.any(np.abs(p.sum(-1) - 1) > 1e-4):
                raise ValueError(f"{name}.probs must sum to 1 over each column's categories")
        return CategoricalParams(probs)

    def n_parameters_for(self, n_components: int, n_features: int) -> int:
        """The free parameters of K components."""
        return n_components * int(np.sum(self.categories(n_features) - 1))

    def impute(self, params: CategoricalParams, data: Array, resp: Array) -> Array:
        """The most probable category of every entry under its row's predictive distribution
        $\\sum_k r_{nk} p_{kdc}$, ``(N, D)``, from the responsibilities ``resp`` ``(K, N)``
        (observed entries are kept by the caller; the mean of a category code means
        nothing)."""
        predictive = jnp.einsum("kn,kdc->ndc", resp, params.probs)
        return jnp.argmax(predictive, axis=-1).astype(resp.dtype)

    def impute_sample(
        self, key: Array, params: CategoricalParams, data: Array, labels: Array
    ) -> Array:
        """A draw of every entry from its row's component ``labels`` ``(N,)``, ``(N, D)``."""
        return self.sample_given(key, params, labels)

    def sample_given(self, key: Array, params: CategoricalParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)`` from its component: ``(N, D)``."""
        probs = jnp.asarray(params.probs)
        logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
        return jax.random.categorical(key, logits[labels], axis=-1).astype(probs.dtype)

    def unconstrain(self, params: CategoricalParams) -> CategoricalParams:
        """Unconstrained coordinates: the log probabilities, 0 beyond a column's categories
        (softmax coordinates: any real values give probabilities through `constrain`)."""
        valid = self.valid(params.probs.shape[-2])
        return CategoricalParams(jnp.where(valid, jnp.log(jnp.where(valid, params.probs, 1.0)), 0))

    def constrain(self, coordinates: CategoricalParams) -> CategoricalParams:
        """The probabilities of log probabilities up to a constant per column: a softmax over
        each column's categories, 0 beyond them (the inverse of `unconstrain`)."""
        logits = coordinates.probs
        valid = self.valid(logits.shape[-2])
        probs = jax.nn.softmax(jnp.where(valid, logits, -jnp.inf), axis=-1)
        return CategoricalParams(jnp.where(valid, probs, 0.0))

    def chart(self, at: CategoricalParams, coordinates: Array) -> CategoricalParams:
        """Probabilities near ``at`` ``(K, D, C)`` from $K \\sum_d (C_d - 1)$ coordinates
        (`jaxem.charts.simplex` per component and column: all categories of a column but its
        most probable one move)."""
        k, d, c = at.probs.shape
        slots = np.arange(c - 1) < (self.categories(d) - 1)[:, None]  # (D, C - 1)
        rows, cols = np.nonzero(np.broadcast_to(slots, (k, d, c - 1)).reshape(k * d, c - 1))
        steps = jnp.zeros((k * d, c - 1), coordinates.dtype).at[rows, cols].set(coordinates)
        return CategoricalParams(charts.simplex(at.probs, steps.reshape(k, d, c - 1)))

    def permute(self, params: CategoricalParams, order: Any) -> CategoricalParams:
        """``params`` with the components in ``order`` ``(K,)``."""
        return CategoricalParams(jnp.take(params.probs, jnp.asarray(order), axis=-3))
