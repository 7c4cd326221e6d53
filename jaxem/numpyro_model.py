"""EM for a model written in NumPyro: the E- and M-steps derived from the model function.

A user writes the model as NumPyro code: parameters are ``numpyro.param`` sites (maximum
likelihood) or ``numpyro.sample`` sites outside the rows with a prior (their posterior mode),
discrete latent sites are enumerated (``infer={"enumerate": "parallel"}``; unmarked discrete
latent sites are enumerated too), observed sites carry ``obs``, and every latent and observed
site lies in a plate over the rows of the data, which are independent given the parameters::

    def model(X):
        weights = numpyro.param("weights", jnp.ones(3) / 3, constraint=constraints.simplex)
        locs = numpyro.param("locs", jnp.array([[-1.0], [0.0], [1.0]]))
        scales = numpyro.param("scales", jnp.ones((3, 1)), constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("x", dist.Normal(locs[z], scales[z]).to_event(1), obs=X)

    model = jaxem.NumPyroModel(model)
    result = jaxem.fit(model, X, model.init(key, X))

E-step. With every discrete site enumerated, NumPyro's enumeration (funsor) gives
$\\log p(x_n \\mid \\theta) = \\log \\sum_z \\exp \\sum_s f_s(z, x_n; \\theta)$, a
sum over the sites' log-probability tensors $f_s$. Its derivative with respect to $f_s$ is
the exact posterior marginal of the site's configuration, $m_s = p(z_s \\mid x_n, \\theta)$
(forward-backward for a chain, the responsibilities for a mixture), which the E-step
obtains by differentiating the log marginal in an added zero tensor per site. The expected
complete-data log joint is then $Q(\\theta' \\mid \\theta) = \\sum_s \\langle m_s,
f_s(\\theta') \\rangle$, plus the log prior of the sample-site parameters.

M-step, parameter by parameter (conditional maximisation, each step increasing $Q$):

- *closed form* where a parameter enters its sites (one, or several alike: a chain's first
  step and the rest) through one argument, as a selection of its entries (a parameter
  indexed by latent values or data, ``locs[z]``, broadcast, or as it is) of a
  Categorical's ``probs`` (simplex), a Bernoulli's ``probs`` (unit interval), a Poisson's
  ``rate`` (positive), a Normal's ``loc`` (real) or ``scale`` (positive), a
  MultivariateNormal's ``loc`` or ``covariance_matrix`` (positive definite); with a
  conjugate prior (Dirichlet, Beta, Gamma, Normal on a location) its posterior mode. These
  are the weighted maximum-likelihood estimates from expected sufficient statistics (counts,
  sums, scatter matrices), which the E-step sums over rows;
- *gradient* otherwise (or where forced): optax's L-BFGS on $Q$ (plus the log prior) in
  unconstrained coordinates (the parameters' constraints through NumPyro's ``biject_to``),
  started at the current value, the result kept only where it increases the objective
  (generalised EM: the objective never decreases).

`NumPyroModel.describe` says which path each parameter takes. With a gradient-path parameter
the M-step reads the rows' posterior marginals and the data, so such a model is fitted with its
data in one block on one device (its statistics are not sums over rows).

The driver and the built-in models never import NumPyro; this module does (see
``docs/numpyro_models.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.contrib.funsor import config_enumerate, enum
from numpyro.contrib.funsor import log_density as enumerated_log_density
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import seed, substitute, trace
from numpyro.primitives import Messenger

from jaxem import linalg
from jaxem.base import Array, Params, PRNGKey
from jaxem.compiler import OPTIONS, at_top_level, compiled_method, jit
from jaxem.families.gaussian import full
from jaxem.families.statistics import data_centre, normalise
from jaxem.inference import chain_posterior
from jaxem.validation import as_float_array, check_weights, is_concrete

Trace = dict


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class ModelPriors:
    """The ``prior`` of a `NumPyroModel` with sample-site parameters: the priors written in
    the model, for rows of ``row_shape`` and ``dtype`` (no arrays: `NumPyroModel.validate`
    puts it in place of ``None``, so that the drivers add the log prior to the objective)."""

    row_shape: tuple
    dtype: Any


# -- running the model ---------------------------------------------------------------------


class _Shifted(dist.Distribution):
    """``base`` whose log density has ``shift`` added: the E-step differentiates the log
    marginal in ``shift`` (zero) to get the site's posterior marginal."""

    def __init__(self, base: dist.Distribution, shift: Array):
        self.base, self.shift = base, shift
        super().__init__(base.batch_shape, base.event_shape)

    def log_prob(self, value: Array) -> Array:
        return _log_density(self.base, value) + self.shift


def _log_density(fn: Any, value: Array, featured: tuple | None = None) -> Array:
    """``fn.log_prob(value)``, with a multivariate normal's (inside masks, expansions and
    ``to_event``) computed by matrix products: the inverse Cholesky factor times the values,
    as the hand-written Gaussian does, about four times faster on a CPU than NumPyro's
    triangular solves per element (and the E-step's largest cost); or, with ``featured``
    ``(centre, features)`` of the value (`NumPyroData`), one product of the quadratic form's
    coefficients with the features."""
    if isinstance(fn, _Shifted):
        return _log_density(fn.base, value, featured) + fn.shift
    if isinstance(fn, dist.MaskedDistribution):
        inside = _log_density(fn.base_dist, value, featured)
        return inside if fn._mask is True else jnp.where(fn._mask, inside, 0.0)
    if isinstance(fn, dist.ExpandedDistribution):
        inside = _log_density(fn.base_dist, value, featured)
        value_batch = jnp.shape(value)[: max(jnp.ndim(value) - len(fn.event_shape), 0)]
        shape = jnp.broadcast_shapes(inside.shape, fn.batch_shape, value_batch)
        return jnp.broadcast_to(inside, shape)
    if isinstance(fn, dist.Independent):
        inside = _log_density(fn.base_dist, value, featured)
        return _sum_small(inside, tuple(range(-fn.reinterpreted_batch_ndims, 0)))
    if type(fn) is dist.MultivariateNormal:
        batch = jnp.broadcast_shapes(fn.loc.shape[:-1], fn.scale_tril.shape[:-2])
        if featured is not None and batch[-1:] in ((), (1,)):  # no location or scale per row
            return _featured_gaussian_log_density(fn.loc, fn.scale_tril, *featured)
        return _gaussian_log_density(fn.loc, fn.scale_tril, value)
    if type(fn) is dist.CategoricalProbs and isinstance(value, np.ndarray):
        at_support = _at_support(fn.logits, value)
        if at_support is not None:
            return at_support
    return fn.log_prob(value)


def _at_support(by_category: Array, value: np.ndarray) -> Array | None:
    """``by_category[..., value]`` (a categorical's logits or probabilities at its values)
    where ``value`` (known before the data) enumerates the support, 0 to K - 1 in order along
    one dim and size 1 along the others, along which ``by_category`` does not vary (an
    enumerated site's own dim): the categories moved to that dim, no gather (a chain's
    transitions, T = 1e5, K = 4: a gather of T K^2 elements); else None."""
    n_categories = by_category.shape[-1]
    rank = max(by_category.ndim - 1, value.ndim)
    value = value.reshape((1,) * (rank - value.ndim) + value.shape)
    batch = (1,) * (rank - by_category.ndim + 1) + by_category.shape[:-1]
    dims = [d for d in range(rank) if value.shape[d] != 1]
    if len(dims) != 1 or batch[dims[0]] != 1:
        return None
    if not np.array_equal(value.reshape(-1), np.arange(n_categories)):
        return None
    moved = jnp.moveaxis(by_category.reshape(batch + (n_categories,)), -1, dims[0])
    return jnp.squeeze(moved, axis=dims[0] + 1)


def _probabilities_at_support(site: dict, value: Any) -> Array | None:
    """A plain categorical site's probabilities at its values known before the data
    (`_at_support`), or None."""
    fn = site["fn"]
    if type(fn) is not dist.CategoricalProbs or site.get("scale") is not None:
        return None
    return None if value is None else _at_support(fn.probs, value)


SMALL_SUM = 16  # `_sum_small` adds at most this many elements one by one


def _sum_small(array: Array, axes: tuple[int, ...]) -> Array:
    """``jnp.sum(array, axis=axes)``; where the summed elements are few (at most
    `SMALL_SUM`), as adds of slices. CPU tuning: XLA's CPU backend (jaxlib 0.10) hands a
    reduction with its elementwise producers to YNNPACK, which over a few elements per output
    (an event of D = 2, a step's K = 4 states) with many outputs is up to ten times slower
    than XLA's own fused loop over the adds: a Gaussian HMM written in NumPyro, T = 1e5, K = 4,
    D = 2, float32: its emissions' log density 14 -> 1.4 ms, an EM iteration 36 -> 18 ms."""
    axes = tuple(sorted(a % array.ndim for a in axes))
    if not axes or math.prod(array.shape[a] for a in axes) > SMALL_SUM:
        return jnp.sum(array, axis=axes)
    kept = tuple(a for a in range(array.ndim) if a not in axes)
    flat = jnp.transpose(array, kept + axes).reshape(tuple(array.shape[a] for a in kept) + (-1,))
    return functools.reduce(jnp.add, [flat[..., i] for i in range(flat.shape[-1])])


def _gaussian_log_density(loc: Array, scale_tril: Array, value: Array) -> Array:
    """The multivariate normal's log density: the values and the locations whitened apart
    (one product per value, shared by the densities that broadcast it: the rows by the
    enumerated components), both taken about a centre (the locations' mean) so that values
    far from the origin lose no precision to the difference."""
    dim = scale_tril.shape[-1]
    inverse = _inverse_factor(scale_tril)
    centre = jnp.mean(loc.reshape(-1, dim), axis=0)
    whitened = _matvec(inverse, value - centre) - _matvec(inverse, loc - centre)
    normalizer = 0.5 * linalg.log_det(scale_tril) + 0.5 * dim * jnp.log(2 * jnp.pi)
    return -0.5 * jnp.sum(jnp.square(whitened), -1) - normalizer


def _featured_gaussian_log_density(
    loc: Array, scale_tril: Array, centre: Array, features: Array
) -> Array:
    """The multivariate normal's log density at the rows whose quadratic features about
    ``centre`` ``(D,)`` are ``features`` ``(N, D(D+1)/2 + D)`` (`NumPyroData`): the quadratic
    form's coefficients (`jaxem.families.gaussian.full.quadratic_coefficients`, per location
    and scale, about the same centre) times the features, as the hand-written Gaussian's
    E-step computes it. Shape: the distribution's batch shape with the rows'."""
    dim = scale_tril.shape[-1]
    inverse = _inverse_factor(scale_tril)
    precision = jnp.swapaxes(inverse, -1, -2) @ inverse
    batch = jnp.broadcast_shapes(loc.shape[:-1], precision.shape[:-2])
    offsets = jnp.broadcast_to(loc - centre, batch + (dim,)).reshape(-1, dim)
    precision = jnp.broadcast_to(precision, batch + (dim, dim)).reshape(-1, dim, dim)
    squares, firsts, constant = full.quadratic_coefficients(precision, offsets)
    coefficients = jnp.concatenate([squares, firsts], axis=-1).reshape(batch + (-1,))
    quadratic = _matvec(coefficients[..., None, :], features)[..., 0]
    normalizer = 0.5 * linalg.log_det(scale_tril) + 0.5 * dim * jnp.log(2 * jnp.pi)
    return -0.5 * (quadratic + constant.reshape(batch)) - normalizer


def _inverse_factor(chol: Array) -> Array:
    """$L^{-1}$ of lower triangular ``chol`` ``(..., D, D)`` by `jaxem.linalg` (plain XLA
    operations: batched LAPACK calls can deadlock under ``vmap`` on a CPU, see there)."""
    eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
    return linalg.solve_lower(chol, eye)


def _spd_inverse(matrix: Array) -> Array:
    """$A^{-1} = L^{-\\top} L^{-1}$ of symmetric positive definite ``matrix`` ``(..., D, D)``."""
    inverse = _inverse_factor(linalg.cholesky(matrix))
    return jnp.swapaxes(inverse, -1, -2) @ inverse


def _matvec(matrix: Array, vector: Array) -> Array:
    """``matrix @ vector`` over broadcast batch dims, without forming the broadcast (a batch
    dim of size 1 in one operand is left out of its einsum labels)."""
    rank = max(matrix.ndim - 2, vector.ndim - 1)
    matrix = matrix.reshape((1,) * (rank - matrix.ndim + 2) + matrix.shape)
    vector = vector.reshape((1,) * (rank - vector.ndim + 1) + vector.shape)
    labels = _LETTERS[:rank]
    m_keep = [i for i in range(rank) if matrix.shape[i] != 1]
    v_keep = [i for i in range(rank) if vector.shape[i] != 1]
    out_keep = sorted(set(m_keep) | set(v_keep))
    out = jnp.einsum(
        "".join(labels[i] for i in m_keep)
        + "yz,"
        + "".join(labels[i] for i in v_keep)
        + "z->"
        + "".join(labels[i] for i in out_keep)
        + "y",
        matrix.reshape(tuple(matrix.shape[i] for i in m_keep) + matrix.shape[-2:]),
        vector.reshape(tuple(vector.shape[i] for i in v_keep) + vector.shape[-1:]),
    )
    shape = tuple(
        max(matrix.shape[i], vector.shape[i]) if i in out_keep else 1 for i in range(rank)
    )
    return out.reshape(shape + out.shape[-1:])


class _SummedOutWhereMasked(dist.Distribution):
    """An enumerated site under a mask: where masked, a uniform distribution over its values
    (log density $-\\log C$), so that a masked latent variable (the padded steps of a short
    sequence) is summed out with total weight one instead of adding $\\log C$ per element."""

    def __init__(self, masked: dist.MaskedDistribution):
        self.base, self.where = masked.base_dist, masked._mask
        super().__init__(masked.batch_shape, masked.event_shape)

    def log_prob(self, value: Array) -> Array:
        n_values = self.base.enumerate_support(expand=False).shape[0]
        inside = _log_density(self.base, value)
        return jnp.where(self.where, inside, -jnp.log(jnp.asarray(n_values, inside.dtype)))


class _perturb(Messenger):
    """Adds ``shifts[name]`` to the log density of the named sample sites, sums masked latent
    values out (`_SummedOutWhereMasked`), and drops (log density zero) the sites named in
    ``dropped`` (the priors, when a row's likelihood is wanted)."""

    def __init__(self, fn: Callable, shifts: dict, dropped: frozenset = frozenset()):
        self.shifts, self.dropped = shifts, dropped
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            return
        if msg["name"] in self.dropped:
            msg["fn"] = msg["fn"].mask(False)
            return
        masked = isinstance(msg["fn"], dist.MaskedDistribution) and msg["fn"]._mask is not True
        if masked and not msg["is_observed"]:
            msg["fn"] = _SummedOutWhereMasked(msg["fn"])
        if msg["name"] in self.shifts:
            msg["fn"] = _Shifted(msg["fn"], self.shifts[msg["name"]])


def _enumerated(model_fn: Callable, first_dim: int) -> Callable:
    return enum(config_enumerate(model_fn), first_available_dim=first_dim)


def _site_log_prob(site: dict, featured: tuple | None = None, value: Any = None) -> Array:
    """The site's log density at its value, or at ``value`` (the plan's: `_Plan.latent_values`)."""
    value = _log_density(site["fn"], site["value"] if value is None else value, featured)
    if site.get("scale") is not None:
        value = site["scale"] * value
    return value


# -- distributions unwrapped to their parameters ------------------------------------------


class _Base(NamedTuple):
    """A site's distribution without its wrappers (mask, expand, to_event)."""

    dist: Any
    mask: Any  # None or a boolean array broadcasting to the log density's shape
    event_ndim: int  # dims of the value reinterpreted as one event (elementwise families)


def _unwrap(fn: Any) -> _Base:
    mask, event_ndim = None, 0
    while True:
        if isinstance(fn, dist.MaskedDistribution):
            own = fn._mask
            if own is not True:
                mask = own if mask is None else mask & own
            fn = fn.base_dist
        elif isinstance(fn, dist.ExpandedDistribution):
            fn = fn.base_dist
        elif isinstance(fn, dist.Independent):
            event_ndim += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        else:
            return _Base(fn, mask, event_ndim)


# (distribution class, argument) -> the constraint the parameter must have for the closed form;
# an elementwise argument has one entry per element, a row argument a row (or matrix) each
_ELEMENTWISE_ROLES = {
    (dist.Normal, "loc"): "real",
    (dist.Normal, "scale"): "positive",
    (dist.BernoulliProbs, "probs"): "unit",
    (dist.Poisson, "rate"): "positive",
}
_ROW_ROLES = {
    (dist.CategoricalProbs, "probs"): "simplex",
    (dist.MultivariateNormal, "loc"): "real",
    (dist.MultivariateNormal, "covariance_matrix"): "positive_definite",
}
_ROLES = {**_ELEMENTWISE_ROLES, **_ROW_ROLES}
# the arguments a location's or a scale's statistics read at the current parameters
_OTHER_ARGUMENTS = {
    dist.Normal: ("loc", "scale"),
    dist.MultivariateNormal: ("loc", "precision_matrix"),
}


def _roles(base: Any) -> tuple[str, ...]:
    return tuple(role for (cls, role) in _ROLES if type(base) is cls)


def _constraint_kind(c: Any) -> str | None:
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    if c is constraints.real:
        return "real"
    if isinstance(c, type(constraints.simplex)):
        return "simplex"
    if isinstance(c, type(constraints.unit_interval)):
        return "unit"
    if isinstance(c, type(constraints.positive)) and float(c.lower_bound) == 0.0:
        return "positive"
    if isinstance(c, type(constraints.positive_definite)):
        return "positive_definite"
    return None


# -- the static plan: sites, parameters and the path of each -----------------------------


class _Site(NamedTuple):
    name: str
    row_shape: tuple[int, ...]  # its log density's shape on one row
    plate_dim: int  # the rows' dim in that shape (negative)
    observed: bool = True


class _Closed(NamedTuple):
    """A closed-form update: parameter ``param`` is the selection ``role`` of the distribution
    (of class ``family``) of every one of ``sites`` (their statistics add up); ``prior`` the
    conjugate prior's kind or None; ``partner`` for a Normal/MultivariateNormal scale
    (covariance): the closed-form location parameter of the same sites, updated first, or
    None."""

    param: str
    sites: tuple[str, ...]
    family: str
    role: str
    row_size: int
    prior: str | None
    partner: str | None


class _Plan(NamedTuple):
    params: tuple[str, ...]  # every parameter, in the model's order
    priors: tuple[str, ...]  # the sample-site parameters
    constraints: tuple  # (name, constraint) pairs
    sites: tuple[_Site, ...]
    closed: tuple[_Closed, ...]
    gradient: tuple[str, ...]
    first_dim: int  # the first dim free for enumeration
    data_plate: str
    shapes: tuple  # (name, shape) pairs of the parameters
    # other plates' dims to sum per site when the rows' latent values are few enough to sum
    # out jointly (no chain, no latent site in a plate inside the rows), else None
    joint: tuple | None = None
    # the multivariate normal sites that observe the rows themselves (obs=X, X of shape
    # (N, D)): their quadratic features are computed once per fit (`NumPyroData`)
    featured: tuple[str, ...] = ()
    # the latent site of a first-order chain written with `scan` (one enumerated site per step,
    # its first step named _PREV_<site>), whose rows are summed by forward-backward
    # (`_chain_marginals`), or None
    chain: str | None = None
    # (param, site, index): the closed-form selections that depend on neither the data nor
    # the parameters (`_static_selections`), each index as small as its repeats allow; and
    # (site, value): such latent sites' values
    selections: tuple = ()
    latent_values: tuple = ()


_FAMILY_NAMES = {
    dist.Normal: "normal",
    dist.MultivariateNormal: "mvn",
    dist.CategoricalProbs: "categorical",
    dist.BernoulliProbs: "bernoulli",
    dist.Poisson: "poisson",
}
_CONJUGATE = {
    ("categorical", "probs"): dist.Dirichlet,
    ("bernoulli", "probs"): dist.Beta,
    ("poisson", "rate"): dist.Gamma,
    ("normal", "loc"): dist.Normal,
    ("mvn", "loc"): dist.Normal,
}


class NumPyroData(NamedTuple):
    """The rows as a `NumPyroModel`'s E-step reads them (`NumPyroModel.prepare`).

    Attributes:
        rows: the data ``(N, ...)``, as the model function receives it.
        centre: ``(D,)`` the rows' weighted mean (`jaxem.families.statistics.data_centre`), or
            None when no site is featured.
        features: per featured site (a multivariate normal observing the rows, `_Plan`), the
            rows' quadratic features about ``centre`` stacked on the centred rows,
            ``(N, D(D+1)/2 + D)``: its log density and its scale's statistics are then one
            matrix product each, as in the hand-written Gaussian mixture.
    """

    rows: Array
    centre: Array | None
    features: dict


@dataclasses.dataclass(frozen=True)
class NumPyroModel:
    """A model for `jaxem.fit` written as a NumPyro model function ``model_fn(X)``, which
    receives a block of rows ``(n_rows, ...)`` (see the module's introduction for what the
    function may contain).

    Args:
        model_fn: the NumPyro model; called with the data's rows as its one argument.
        gradient: parameter names forced onto the gradient path (or True: all of them).
        data_ndim: the dimensions of one dataset ``X`` (2 for ``(n_rows, n_features)``).
        gradient_steps: L-BFGS iterations per M-step on the gradient path.
        init_fn: ``init_fn(key, X) -> params`` (a dict of every parameter), the start `init`
            returns (and `jaxem.fit_restarts` draws from) instead of the model's own initial
            values.

    Parameters are a dict from site name to value (constrained, as the model sees them).
    """

    model_fn: Callable
    gradient: tuple[str, ...] | bool = ()
    data_ndim: int = 2
    gradient_steps: int = 30
    init_fn: Callable | None = None

    def __post_init__(self):
        if not callable(self.model_fn):
            raise TypeError(f"model_fn must be a NumPyro model function; got {self.model_fn!r}")
        if self.gradient is False:
            object.__setattr__(self, "gradient", ())
        if not isinstance(self.gradient, bool):
            names = (self.gradient,) if isinstance(self.gradient, str) else tuple(self.gradient)
            if not all(isinstance(n, str) for n in names):
                raise TypeError(f"gradient must be True or parameter names; got {self.gradient!r}")
            object.__setattr__(self, "gradient", names)
        if not isinstance(self.data_ndim, int) or self.data_ndim < 1:
            raise ValueError(f"data_ndim must be a positive int; got {self.data_ndim!r}")
        if not isinstance(self.gradient_steps, int) or self.gradient_steps < 1:
            raise ValueError(f"gradient_steps must be a positive int; got {self.gradient_steps!r}")

    # -- analysis ----------------------------------------------------------------------

    def plan(self, row_shape: tuple[int, ...], dtype: Any, example: Any = None) -> _Plan:
        """The static plan for rows of shape ``row_shape``: sites, parameters, the M-step path
        of each. Computed once per shape, from the model run on random rows and, when given,
        on the first rows of ``example`` (concrete data: `validate`, `init` and `describe`
        pass theirs); a parameter takes the closed form only where both show it a
        selection (rows of zeros could show ``b0 + b1 * x`` as one)."""
        return _analyse(self, tuple(row_shape), jnp.dtype(dtype), example)

    def describe(self, X: Any) -> str:
        """Which parameter takes which M-step path, for data like ``X``, as text."""
        X = jnp.asarray(X)
        plan = self.plan(X.shape[1:], _float_dtype(X.dtype), X)
        lines = []
        for c in plan.closed:
            prior = f", {c.prior} prior" if c.prior else ""
            where = ", ".join(_site_label(site) for site in c.sites)
            lines.append(f"{c.param}: closed form ({c.family} {c.role} of {where}{prior})")
        for name in plan.gradient:
            lines.append(f"{name}: gradient (L-BFGS on Q, kept where the objective rises)")
        return "\n".join(lines)

    # -- the contract ------------------------------------------------------------------

    def init(self, key: PRNGKey, X: Array, weights: Array | None = None) -> Params:
        """Starting parameters: ``init_fn(key, X)`` when the model has one; else the param
        sites' initial values (a callable one called with a key derived from ``key``, which is
        how random restarts differ) and a draw from the prior of every sample-site
        parameter."""
        X = jnp.asarray(X)
        dtype = _float_dtype(X.dtype)
        plan = self.plan(X.shape[1:], dtype, X)
        if self.init_fn is not None:
            params = self.init_fn(key, X)
            if not isinstance(params, dict) or set(params) != set(plan.params):
                raise ValueError(
                    f"init_fn must return a dict of the model's parameters {list(plan.params)}; "
                    f"got {params if not isinstance(params, dict) else sorted(params)}"
                )
        else:
            params = _initial_values(self, key, X)
        return {name: jnp.asarray(params[name], dtype) for name in plan.params}

    def validate(self, X: Any, params: Any, weights: Any, prior: Any) -> tuple:
        X = _check_data(X, self.data_ndim)
        dtype = _float_dtype(X.dtype)
        plan = self.plan(X.shape[1:], dtype, X)
        params = _check_params(plan, params, dtype)
        if prior is not None and not isinstance(prior, ModelPriors):
            raise TypeError(
                "prior: a NumPyroModel's priors are its sample sites; fit it with prior=None"
            )
        prior = self.own_prior(X.shape, dtype)
        weights = check_weights(weights, X.shape[:1], dtype)
        _check_unmasked_values(self, plan, params, X, weights)
        return X, params, weights, prior

    def prepare(self, X: Array, weights: Array) -> NumPyroData:
        """The rows as the E-step reads them, computed once per fit (per block in row
        blocks): `NumPyroData`, with the featured sites' quadratic features."""
        plan = self.plan(X.shape[1:], X.dtype)
        if not plan.featured:
            return NumPyroData(X, None, {})
        centre = data_centre(X, weights)
        centred = X - centre
        features = jnp.concatenate([full.squares_of_rows(centred), centred], axis=-1)
        return NumPyroData(X, centre, {site: features for site in plan.featured})

    @compiled_method
    def e_step(self, params: Params, X: Any, weights: Array) -> tuple[Any, Array]:
        """``(stats, loglik)``: the closed-form parameters' expected sufficient statistics
        (sums over rows), and for gradient-path parameters the rows' posterior marginals and
        the data; ``loglik`` $\\sum_n w_n \\log p(x_n \\mid \\theta)$. ``X`` the rows
        ``(N, ...)``, or ``self.prepare(X, weights)`` (as `jaxem.fit` passes it)."""
        data = X if isinstance(X, NumPyroData) else self.prepare(X, weights)
        X = data.rows
        plan = self.plan(X.shape[1:], X.dtype)
        loglik, marginals = _marginals(self, plan, params, data, weights)
        views = _views(self, plan, params, X, marginals) if plan.closed else {}
        stats = {c.param: _closed_stats(c, views, plan, params, data) for c in plan.closed}
        frozen = (marginals, X) if plan.gradient else None
        key = _DataKey((tuple(X.shape[1:]), jnp.dtype(X.dtype)))
        return {"closed": stats, "frozen": frozen, "data": key}, loglik

    @property
    def ignores_zero_weights(self) -> bool:
        """Rows of weight zero change nothing, so data of rows (``data_ndim`` 2) may be padded
        with them to sizes that share a program (`jaxem.buckets`); rows that are whole
        sequences are not padded (a padded row costs a sequence's work)."""
        return self.data_ndim <= 2

    def own_prior(self, data_shape: tuple[int, ...], dtype: Any) -> ModelPriors | None:
        """The priors of the model's sample-site parameters (None without any: MLE), used in
        place of ``prior=None``."""
        dtype = _float_dtype(dtype)
        row_shape = tuple(data_shape[1:])
        return (
            ModelPriors(row_shape, jnp.dtype(dtype)) if self.plan(row_shape, dtype).priors else None
        )

    def statistics_add_up(self, data_shape: tuple[int, ...], dtype: Any) -> bool:
        """True unless a parameter takes the gradient path (whose M-step reads the rows)."""
        return not self.plan(tuple(data_shape[1:]), _float_dtype(dtype)).gradient

    def m_step(self, stats: Any, prior: Any = None) -> Params:
        raise TypeError("NumPyroModel's M-step starts from the iterate: use m_step_from")

    @compiled_method
    def m_step_from(self, params: Params, stats: Any, prior: Any = None) -> Params:
        """The M-step at ``params``: closed-form parameters from ``stats`` (locations before
        the scales that use them), then the gradient-path parameters by L-BFGS on $Q$, kept
        only where $Q$ (plus the log prior) rises."""
        plan = self.plan(*stats["data"].key)
        new = dict(params)
        # the priors' hyperparameters depend on no parameter (the analysis checked): one run
        priors = _prior_trace(self, params, *stats["data"].key) if plan.priors else None
        for c in sorted(plan.closed, key=lambda c: c.partner is not None):
            hyper = _hyperparameters(c, priors, params) if c.prior else None
            scale = _scale_of(plan, c)
            if scale is None:
                new[c.param] = _closed_update(c, stats["closed"][c.param], new, hyper, params)
            else:  # a location pooled with its scale's statistics, at the current scale
                own = _location_statistics(c, scale, stats["closed"][scale.param], params)
                new[c.param] = _location(c, own, params[c.param], hyper)
        if plan.gradient:
            new = _gradient_update(self, plan, new, *stats["frozen"])
        return new

    def log_prior(self, params: Params, prior: ModelPriors) -> Array:
        """$\\log p(\\theta)$: the sample-site parameters' prior log densities."""
        return _log_prior(self, params, prior.row_shape, prior.dtype)

    def unconstrain(self, params: Params) -> dict:
        cons = dict(self._plan_for_params(params).constraints)
        return {k: biject_to(cons[k]).inv(v) for k, v in params.items()}

    def constrain(self, coordinates: dict) -> Params:
        cons = dict(self._plan_for_params(coordinates).constraints)
        return {k: biject_to(cons[k])(v) for k, v in coordinates.items()}

    def n_parameters(self, n_features: int) -> int:
        """The free parameters (the unconstrained coordinates of NumPyro's ``biject_to``: a
        simplex of K entries has K - 1) of the model fitted to rows of ``n_features`` last
        entries (the plan made for such data)."""
        plan = self._plan_for_features(n_features)
        cons = dict(plan.constraints)
        return sum(
            int(np.prod(biject_to(cons[name]).inverse_shape(shape))) for name, shape in plan.shapes
        )

    def bytes_per_sample(self, n_features: int, itemsize: int) -> int | None:
        """The E-step's working memory per row, from which the drivers choose row blocks (so
        that a large data set is visited in cache-sized blocks, as the hand-written models
        are): per site, a few copies of its log-density elements per row (the forward and
        backward passes, the statistics), times the row's values for an observed site's
        density (a multivariate normal's whitened values), or its quadratic features for a
        featured one (`NumPyroData`). None (one block) when a parameter takes the gradient
        path, whose M-step reads all rows."""
        plan = self._plan_for_features(n_features)
        if plan.gradient:
            return None
        features = n_features * (n_features + 1) // 2 + n_features
        total = 0
        for site in plan.sites:
            elements = int(np.prod(site.row_shape))
            if site.name in plan.featured:
                total += 4 * elements + features
            elif site.observed:
                total += 4 * elements * (n_features + 1)
            else:
                total += 4 * elements
        return total * itemsize

    def chart(self, at: Params, coordinates: Array) -> Params:
        """Parameters near ``at`` from ``n_parameters`` coordinates ``(P,)``, ``at`` itself at
        0: the unconstrained coordinates of ``at`` (parameter by parameter, in the model's
        order) moved by ``coordinates`` (`jaxem.charts`; standard errors are computed in
        them, `jaxem.information`)."""
        free = self.unconstrain(at)
        moved, start = {}, 0
        for name in self._plan_for_params(at).params:
            size = free[name].size
            moved[name] = free[name] + coordinates[..., start : start + size].reshape(
                free[name].shape
            )
            start += size
        return self.constrain(moved)

    def _plan_for_features(self, n_features: int) -> _Plan:
        for (model, row_shape, _), (plan, _) in reversed(list(_PLANS.items())):
            if model == self and tuple(row_shape[-1:]) == (n_features,):
                return plan
        raise ValueError(
            f"the model has not seen data with {n_features} features: call model.init(key, X) "
            "or fit first"
        )

    def _plan_for_params(self, params: Params) -> _Plan:
        key = (self, frozenset(params))
        if key not in _PLAN_OF_PARAMS:
            raise ValueError(
                "params do not match the parameters of any data this model has seen: call "
                "model.init(key, X) or validate first"
            )
        return _PLAN_OF_PARAMS[key]


# the plan that named these parameters (their constraints), per model
_PLAN_OF_PARAMS: dict = {}


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _DataKey:
    """The rows' shape and dtype, carried in the statistics (no arrays) so that the M-step
    finds the plan the E-step used."""

    key: tuple


@functools.partial(jit, static_argnames="model")
def _initial_values(model: NumPyroModel, key: PRNGKey, X: Array) -> dict:
    """The param sites' initial values and a draw of every prior, one compiled program (the
    model run sampling every latent site: eagerly it would be an XLA program per operation)."""
    plan = model.plan(X.shape[1:], _float_dtype(X.dtype))
    tr = trace(seed(model.model_fn, key)).get_trace(X)
    return {name: tr[name]["value"] for name in plan.params}


def _site_label(name: str) -> str:
    """A site's name for people: NumPyro's scan names its first step ``_PREV_<name>``."""
    if name.startswith("_PREV_"):
        return f"'{name.removeprefix('_PREV_')}' (first step)"
    return f"'{name}'"


def _float_dtype(dtype: Any) -> Any:
    """``dtype`` if floating, else the default float (integer data is computed in floats)."""
    return jnp.dtype(dtype) if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def _check_data(X: Any, data_ndim: int) -> Array:
    X = as_float_array(X, "X")
    if X.ndim != data_ndim:
        raise ValueError(
            f"X must have {data_ndim} dimensions (data_ndim of the NumPyroModel); got shape "
            f"{X.shape}"
        )
    if X.shape[0] < 1:
        raise ValueError("X has no rows")
    return X


def _check_unmasked_values(model, plan: _Plan, params: dict, X: Array, weights: Array) -> None:
    """NaN or inf in rows of positive weight is a value the model must mask (padded steps of a
    sequence); where it does not, the rows' log-likelihood is not finite: a ``ValueError``
    naming the rows, before the fit turns the objective into -inf or NaN."""
    if not is_concrete(X, params, weights):
        return
    values = np.asarray(X).reshape(len(X), -1)
    bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1) & (np.asarray(weights) > 0))
    if not len(bad):
        return
    rows = jnp.asarray(X)[bad]
    loglik, _ = _rows_log_likelihood(model, params, rows)
    if not np.isfinite(float(loglik)):
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise ValueError(
            f"X has NaN or inf in rows {shown} that the model does not mask: their "
            "log-likelihood is not finite (mask such values with numpyro.handlers.mask, give "
            "the rows weight 0, or remove them)"
        )


@functools.partial(jax.jit, static_argnames="model")
def _rows_log_likelihood(model, params, rows):
    plan = model.plan(rows.shape[1:], rows.dtype)
    weights = jnp.ones(len(rows), rows.dtype)
    return _marginals(model, plan, params, NumPyroData(rows, None, {}), weights)


def _check_params(plan: _Plan, params: Any, dtype: Any) -> dict:
    if not isinstance(params, dict):
        raise TypeError(
            f"params must be a dict from parameter name to value, as model.init returns; got "
            f"{type(params).__name__}"
        )
    missing = [n for n in plan.params if n not in params]
    extra = [n for n in params if n not in plan.params]
    if missing or extra:
        raise ValueError(
            f"params must have exactly the model's parameters {list(plan.params)}; "
            f"missing {missing}, unknown {extra}"
        )
    shapes = dict(plan.shapes)
    out = {}
    for name in plan.params:
        value = jnp.asarray(params[name], dtype)
        if value.shape != tuple(shapes[name]):
            raise ValueError(
                f"params['{name}'] must have shape {tuple(shapes[name])}; got {value.shape}"
            )
        out[name] = value
    return out


_PLANS: dict = {}  # (model, row shape, dtype) -> (plan, whether data was seen)
PROBE_ROWS = 16  # rows the analysis runs the model on


def _analyse(model: NumPyroModel, row_shape: tuple, dtype: Any, example: Any) -> _Plan:
    key = (model, row_shape, dtype)
    example = _probe_rows(example, row_shape, dtype)
    cached = _PLANS.get(key)
    if cached is not None and (cached[1] or example is None):
        return cached[0]
    # NumPyro validates a distribution's concrete arguments by default, one small XLA program
    # per check: the analysis (whose runs on concrete initial values would trigger ~150 of
    # them, 5-8 s on a CPU) checks nothing a fit does not check
    with numpyro.validation_enabled(False):
        plan = _analysis(model, row_shape, dtype, example)
    _PLANS[key] = (plan, example is not None)
    _PLAN_OF_PARAMS[(model, frozenset(plan.params))] = plan
    return plan


def _probe_rows(example: Any, row_shape: tuple, dtype: Any) -> Array | None:
    """``PROBE_ROWS`` rows of concrete data (repeated when it has fewer), or None."""
    if example is None or isinstance(example, jax.core.Tracer):
        return None
    example = np.asarray(example, dtype)
    if example.ndim != 1 + len(row_shape) or example.shape[1:] != row_shape or not len(example):
        return None
    return jnp.asarray(example[np.arange(PROBE_ROWS) % len(example)])


# The analysis runs its programs once, on 16 rows: compiling is all their cost, which LLVM's
# optimisation level 0 cuts (about a third on a CPU) at no cost that matters.
_ANALYSIS_OPTIONS = {**OPTIONS, "xla_backend_optimization_level": 0}


def _analysis_jit(fun: Callable) -> Callable:
    """``fun`` compiled with `_ANALYSIS_OPTIONS`, run on concrete values even when called
    inside a trace (a plan asked for by an E-step traced first, or under ``vmap``)."""
    compiled = jax.jit(fun, compiler_options=_ANALYSIS_OPTIONS)
    plain = jax.jit(fun)

    def run(*args):
        if at_top_level():
            # not under compile-time evaluation: there every operation on a constant inside
            # fun's trace would run (and compile) on its own, 100 programs for a mixture
            return compiled(*args)
        with jax.ensure_compile_time_eval():
            return plain(*args)

    return run


def _plain_trace(
    model_fn: Callable, X: Array, params: dict | None = None, key: Any = None
) -> Trace:
    fn = seed(model_fn, jax.random.PRNGKey(0) if key is None else key)
    if params:
        fn = substitute(fn, data=params)
    return trace(fn).get_trace(X)


def _analysis(model: NumPyroModel, row_shape: tuple, dtype: Any, example) -> _Plan:
    name = "model_fn"
    one, two = (jnp.zeros((n,) + row_shape, dtype) for n in (1, 2))
    try:
        key = jax.random.PRNGKey(0)
        tr1 = _abstract(lambda X, k: _plain_trace(model.model_fn, X, key=k), one, key)
        tr2 = _abstract(lambda X, k: _plain_trace(model.model_fn, X, key=k), two, key)
    except Exception as err:  # the user's code: say where it failed
        raise ValueError(f"{name} failed on rows of shape {row_shape}: {err}") from err
    params, priors, sites = [], [], []
    for site in tr2.values():
        if site["type"] == "param":
            params.append(site["name"])
        elif site["type"] == "sample":
            fn = site["fn"]
            if site["is_observed"]:
                sites.append(site["name"])
            elif site["infer"].get("enumerate") == "parallel" or fn.has_enumerate_support:
                if not fn.has_enumerate_support:
                    raise ValueError(
                        f"site '{site['name']}' is marked for enumeration but its distribution "
                        f"({type(fn).__name__}) has no finite support"
                    )
                sites.append(site["name"])
            elif jnp.shape(site["value"]) == jnp.shape(tr1[site["name"]]["value"]):
                params.append(site["name"])
                priors.append(site["name"])
            else:
                raise ValueError(
                    f"site '{site['name']}' is a continuous latent variable (one per row, "
                    f"{type(fn).__name__}) that is neither observed nor a parameter: EM needs "
                    "latent sites discrete (enumerated) and parameters outside the rows; if it "
                    "is data, give it obs=..."
                )
    if not sites:
        raise ValueError(f"{name} has no observed site (numpyro.sample(..., obs=X))")
    if not params:
        raise ValueError(f"{name} has no parameters (numpyro.param or sample sites with priors)")
    if not isinstance(model.gradient, bool):
        unknown = [g for g in model.gradient if g not in params]
        if unknown:
            raise ValueError(f"gradient names {unknown}, not parameters of the model {params}")
    initial = _analysis_jit(
        lambda X: {n: _plain_trace(model.model_fn, X)[n]["value"] for n in params}
    )
    values = {n: jnp.asarray(v, dtype) for n, v in initial(two).items()}
    shapes = tuple((n, tuple(values[n].shape)) for n in params)
    cons = tuple(
        (
            n,
            tr2[n]["fn"].support
            if n in priors
            else tr2[n]["kwargs"].get("constraint", constraints.real),
        )
        for n in params
    )
    nesting = max(len(tr2[s]["cond_indep_stack"]) for s in sites)
    first_dim = -(nesting + 1)
    enumerated = _enumerated(model.model_fn, first_dim)

    def enumerated_trace(X, values):
        return enumerated_log_density(enumerated, (X,), {}, values)[1]

    etr1 = _abstract(enumerated_trace, one, values)
    etr2 = _abstract(enumerated_trace, two, values)
    # the enumerated trace's sites (a scan's first step is a site of its own there)
    sites = [
        n for n, site in etr2.items() if site["type"] == "sample" and n not in priors and n in etr1
    ]
    data_plate = _data_plate(etr1, etr2, sites)
    site_plan = []
    for s in sites:
        lp1 = etr1[s]["lp_shape"]
        dims = [f.dim for f in etr2[s]["cond_indep_stack"] if f.name == data_plate]
        lp1 = (1,) * max(0, -dims[0] - len(lp1)) + lp1
        site_plan.append(_Site(s, lp1, dims[0], bool(etr2[s]["is_observed"])))
    # random 0s and 1s: in the support of counts, categories and binary data alike, and
    # varied enough that b0 + b1 * x is no selection of (b0, b1)
    # (drawn by NumPy: a JAX draw compiles a program for each shape)
    random_rows = np.random.default_rng(3).integers(0, 2, (PROBE_ROWS,) + row_shape)
    random_rows = jnp.asarray(random_rows, dtype)
    probes = [random_rows] if example is None else [random_rows, example]
    closed, (selections, latent_values) = _closed_plan(
        model, values, priors, dict(cons), etr2, sites, enumerated, probes, site_plan
    )
    gradient = tuple(n for n in params if n not in {c.param for c in closed})
    featured = tuple(
        s
        for s in sites
        if etr2[s]["is_observed"]
        and etr2[s]["is_rows"]
        and len(row_shape) == 1
        and type(_unwrap(etr2[s]["fn"]).dist) is dist.MultivariateNormal
    )
    return _Plan(
        tuple(params),
        tuple(priors),
        cons,
        tuple(site_plan),
        closed,
        gradient,
        first_dim,
        data_plate,
        shapes,
        _joint_plan(etr2, sites, data_plate),
        featured,
        _chain_variable(etr2, sites, data_plate),
        selections,
        latent_values,
    )


def _joint_plan(tr: Trace, sites: list[str], data_plate: str) -> tuple | None:
    """Per site, the dims of its plates inside the rows (summed before the latent values are),
    when every latent site sits in the rows' plate alone, has a dim of its own and nothing is a
    chain (``scan`` or ``markov``); else None (funsor's contraction, row by row)."""
    dims, named = [], {}
    for s in sites:
        site = tr[s]
        names = site["infer"]["dim_to_name"].values()
        if any(n.startswith(("_time", "_PREV_")) for n in names) or s.startswith("_PREV_"):
            return None
        for dim, name in site["infer"]["dim_to_name"].items():
            named.setdefault(dim, set()).add(name)
        if any(len(found) > 1 for found in named.values()):
            return None  # a dim used by two variables (``markov`` recycles them): a chain
        inner = tuple(f.dim for f in site["cond_indep_stack"] if f.name != data_plate)
        if inner and not site["is_observed"]:
            return None
        dims.append((s, inner))
    return tuple(dims)


def _chain_variable(tr: Trace, sites: list[str], data_plate: str) -> str | None:
    """The latent site ``v`` of a first-order chain written with NumPyro's ``scan``: two
    latent sites, ``_PREV_v`` (the first step) and ``v`` (the later steps), every site's
    enumerated dims named ``v``, ``_PREV_v`` (the step before) or ``_time_v`` (the steps), and
    no plate but the rows'; else None."""
    latent = [s for s in sites if not tr[s]["is_observed"]]
    if len(latent) != 2:
        return None
    chain = next((v for v in latent if f"_PREV_{v}" in latent), None)
    if chain is None:
        return None
    allowed = {chain, f"_PREV_{chain}", f"_time_{chain}", data_plate}
    for s in sites:
        if not set(tr[s]["infer"].get("dim_to_name", {}).values()) <= allowed:
            return None
        if any(f.name != data_plate for f in tr[s]["cond_indep_stack"]):
            return None
    return chain


def _abstract(run: Callable, *args: Any) -> Trace:
    """``run(*args)``'s trace, run on abstract values (``jax.eval_shape``; nothing computed or
    compiled): only its static content (sites, distributions' classes, shapes, plates) may be
    read, not its values."""
    found = {}

    def keep(*args):
        tr = run(*args)
        for site in tr.values():
            if site["type"] == "sample":
                site["lp_shape"] = tuple(_site_log_prob(site).shape)
                site["is_rows"] = site["value"] is args[0]  # observes the rows themselves
        found["trace"] = tr
        return 0

    jax.eval_shape(keep, *args)
    return found["trace"]


def _data_plate(tr1: Trace, tr2: Trace, sites: list[str]) -> str:
    candidates = None
    for s in sites:
        sizes1 = {f.name: f.size for f in tr1[s]["cond_indep_stack"]}
        sizes2 = {f.name: f.size for f in tr2[s]["cond_indep_stack"]}
        here = {n for n in sizes2 if sizes1.get(n) == 1 and sizes2[n] == 2}
        if not here:
            raise ValueError(
                f"site '{s}' is not inside a plate over the rows of X: write "
                "`with numpyro.plate('rows', X.shape[0]):` around the latent and observed sites "
                "(the rows must be independent given the parameters)"
            )
        candidates = here if candidates is None else candidates & here
    if not candidates or len(candidates) > 1:
        raise ValueError(
            f"the latent and observed sites must share one plate over the rows; got {candidates}"
        )
    return next(iter(candidates))


def _selection(value, probe, out, probed, found) -> np.ndarray | None:
    """Where an argument ``out`` (with tangents ``probed`` for ``probe`` and ``found`` for the
    entries' indices) is a selection of the parameter ``value``'s entries: the flat index of
    the entry each element equals, or None (NumPy: concrete values, no compiling)."""
    value, probe, out, probed, found = (np.asarray(a) for a in (value, probe, out, probed, found))
    index = np.round(found)
    if not np.all(np.isfinite(found)) or not np.all(np.abs(found - index) < 1e-3):
        return None
    index = index.astype(np.int64)
    if not np.all((index >= 0) & (index < value.size)):
        return None
    tol = 1e-6 if value.dtype == np.float64 else 1e-3
    if not np.allclose(probed, probe.ravel()[index], atol=tol, rtol=tol):
        return None
    if not np.allclose(out, value.ravel()[index], atol=tol, rtol=tol):
        return None
    return index


def _rows_ok(index: np.ndarray, row: tuple[int, ...]) -> bool:
    """Whether a selection's index picks whole rows (``row`` trailing dims) in order."""
    size = int(np.prod(row))
    flat = index.reshape(index.shape[: index.ndim - len(row)] + (size,))
    return bool(np.all(flat == flat[..., :1] + np.arange(size))) and bool(
        np.all(flat[..., 0] % size == 0)
    )


def _closed_plan(model, values, priors, cons, etr, sites, enumerated, data, site_plan) -> tuple:
    """``(closed, static)``: the parameters with a closed-form update, each entering its
    sites' log densities through the same role of their distributions, as a selection of its
    entries, on every array of rows in ``data`` (two JVPs per parameter, of every site's log
    density and role argument at once); and what of them is known before the data
    (`_static_selections`)."""
    if model.gradient is True:
        return (), ((), ())
    forced = set(model.gradient)
    bases = {s: _unwrap(etr[s]["fn"]) for s in sites}
    lp_shapes = {s: etr[s]["lp_shape"] for s in sites}

    def everything(params, X):
        _, tr = enumerated_log_density(enumerated, (X,), {}, params)
        out = {}
        for s in sites:
            base = _unwrap(tr[s]["fn"])
            roles = {r: _aligned(base, r, lp_shapes[s]) for r in _roles(base.dist)}
            out[s] = (_site_log_prob(tr[s]), roles, jnp.asarray(tr[s]["value"]))
        return out

    probes = {
        p: jnp.asarray(np.random.default_rng(2).standard_normal(v.shape), v.dtype)
        for p, v in values.items()
    }

    @_analysis_jit
    def tangents(values, X):
        """Per parameter: does each site's log density move with it, and each role's argument
        with its tangent for a random probe and for the entries' indices; and the sites'
        values."""
        out, primal = {}, None
        for p, value in values.items():
            index = _entry_indices(value)

            def of_p(v, p=p):
                return everything({**values, p: v}, X)

            primal, moved = jax.jvp(of_p, (value,), (probes[p],))
            _, indexed = jax.jvp(of_p, (value,), (index,))
            out[p] = {
                s: (
                    jnp.any(moved[s][0] != 0),
                    {r: (primal[s][1][r], moved[s][1][r], indexed[s][1][r]) for r in primal[s][1]},
                )
                for s in sites
            }
        return out, {s: primal[s][2] for s in sites}

    runs = [jax.device_get(tangents(values, X)) for X in data]
    candidates = {}
    for p, value in values.items():
        if p in forced:
            continue
        # the sites that use p: seen on the data when given
        using = tuple(s for s in sites if runs[-1][0][p][s][0])
        rules = {
            _site_rule(found[p][s][1], bases[s], cons[p], value, probes[p])
            for s in using
            for found, _ in runs
        }
        if not using or len(rules) != 1 or None in rules:
            continue
        family, role, row = rules.pop()
        prior = None
        if p in priors:
            prior = _conjugate_kind(family, role, etr[p]["fn"], values, p, enumerated, data[0])
            if prior is None:
                continue
        candidates[p] = (tuple(using), family, role, int(np.prod(row)) if row else 1, prior)
    closed = []
    for p, (s, family, role, row_size, prior) in candidates.items():
        partner = None
        if role in ("scale", "covariance_matrix"):
            locs = [q for q, c in candidates.items() if c[0] == s and c[2] == "loc"]
            if locs:
                partner = locs[0]
        closed.append(_Closed(p, s, family, role, row_size, prior, partner))
    static = _static_selections(closed, values, everything, runs, data[0], lp_shapes, site_plan)
    return tuple(closed), static


def _static_selections(closed, values, everything, runs, X, lp_shapes, site_plan) -> tuple:
    """``(selections, latent_values)``: ``(param, site, index)`` for the closed-form
    selections that are the same on any data and at any parameters (``locs[z]`` with ``z``
    enumerated: the selection follows from the model's structure alone), and ``(site,
    value)`` for those sites' latent values that are (the enumerated values, stacked over a
    chain's steps), each reduced to size 1 along every dim where it repeats (along the rows'
    dim it must: then it fits any number of rows). The E-step then groups the statistics by
    these small indices and values (summing the repeats first) instead of finding them on
    all rows by a JVP through the model (for a chain, a second pass of its ``scan`` over
    every step, and statistics grouped element by element).

    Independence is read from the program, not from values: the computation (the JVP's
    tangent for the entries' indices; the site's value) traced with the data and the
    parameters as inputs and pruned to what it needs must need neither (a selection by the
    data that happens to repeat on the probe rows is never taken for a static one)."""
    pairs = [(c, s) for c in closed for s in c.sites]
    observed = {site.name: site.observed for site in site_plan}
    latent = sorted({s for _, s in pairs if not observed[s]})
    if not pairs:
        return (), ()

    def outputs(values_, X_):
        tangents = _selection_tangents(values_, closed)
        primal, found = jax.jvp(lambda v: everything(v, X_), (values_,), (tangents,))
        return [found[s][1][c.role] for c, s in pairs] + [primal[s][2] for s in latent]

    reads = _reads_inputs(outputs, len(pairs) + len(latent), values, X)
    plate_dims = {site.name: site.plate_dim for site in site_plan}
    selections = []
    for (c, s), read in zip(pairs, reads[: len(pairs)], strict=True):
        if read:
            continue
        on_probes = [np.round(found[c.param][s][1][c.role][2]) for found, _ in runs]
        # the aligned index's first dims are its log density's
        compact = _compact_if_static(on_probes, len(lp_shapes[s]) + plate_dims[s])
        if compact is not None:
            selections.append((c.param, s, compact.astype(np.int64)))
    latent_values = []
    for s, read in zip(latent, reads[len(pairs) :], strict=True):
        on_probes = [np.asarray(site_values[s]) for _, site_values in runs]
        if read or on_probes[0].ndim > len(lp_shapes[s]):  # an event's dims: not enumerated
            continue
        compact = _compact_if_static(on_probes, on_probes[0].ndim + plate_dims[s])
        if compact is not None:
            latent_values.append((s, compact))
    return tuple(selections), tuple(latent_values)


def _entry_indices(value: Array) -> Array:
    """Each entry's flat index, shaped and typed as ``value``: the tangent whose JVP gives the
    index of the entry each element of a selection equals."""
    return jnp.arange(value.size, dtype=value.dtype).reshape(value.shape)


def _selection_tangents(params: Params, closed: tuple) -> dict:
    """Tangents for one JVP that finds every closed-form selection at once: the entries'
    indices for the closed-form parameters, zero for the others (a role moves with its own
    parameter alone: `_selection` checked that it equals that parameter's selected entries)."""
    tangents = {name: jnp.zeros_like(value) for name, value in params.items()}
    for c in closed:
        tangents[c.param] = _entry_indices(params[c.param])
    return tangents


def _compact_if_static(on_probes: list, rows_at: int) -> np.ndarray | None:
    """The array computed alike on every probe, reduced along its repeats (`_compact`), when
    it repeats along the rows' dim ``rows_at`` (when that is one of its dims); else None."""
    first = on_probes[0]
    if any(a.shape != first.shape or np.any(a != first) for a in on_probes):
        return None
    compact = _compact(first)
    if rows_at >= 0 and compact.shape[rows_at] != 1:
        return None  # changes from row to row: follows the number of rows
    return compact


def _compact(index: np.ndarray) -> np.ndarray:
    """``index`` with every dim along which it repeats reduced to size 1."""
    for axis in range(index.ndim):
        first = np.take(index, [0], axis=axis)
        if np.all(index == first):
            index = first
    return index


def _reads_inputs(fn: Callable, n_outputs: int, *args: Any) -> list[bool]:
    """Per output of ``fn(*args)`` (a list), whether it needs any of the inputs' values: its
    program pruned to that output (JAX's dead-code elimination, which follows each input
    through loops and calls) keeps an input. Where JAX offers no such pruning, True."""
    try:
        from jax._src.interpreters.partial_eval import dce_jaxpr
    except ImportError:  # pragma: no cover - another JAX: no static selections, still exact
        return [True] * n_outputs
    closed = jax.make_jaxpr(fn)(*args)
    reads = []
    for i in range(n_outputs):
        wanted = [j == i for j in range(len(closed.jaxpr.outvars))]
        reads.append(any(dce_jaxpr(closed.jaxpr, wanted)[1]))
    return reads


def _site_rule(found: dict, base: _Base, constraint: Any, value, probe) -> tuple | None:
    """``(family, role, row)`` when the parameter enters this site's distribution through one
    role, as a selection of its entries (whole rows for a row role), with the constraint the
    role needs; else None."""
    roles = [r for r, (_, t, _) in found.items() if np.any(t != 0)]
    family = _FAMILY_NAMES.get(type(base.dist))
    if family is None or len(roles) != 1:
        return None
    role = roles[0]
    key = (type(base.dist), role)
    if _constraint_kind(constraint) != _ROLES[key]:
        return None
    index = _selection(value, probe, *found[role])
    if index is None:
        return None
    row = ()
    if key in _ROW_ROLES:
        row = value.shape[-1:] if role != "covariance_matrix" else value.shape[-2:]
        if not _rows_ok(index, row):
            return None
    return family, role, tuple(row)


def _conjugate_kind(family, role, fn, values, p, enumerated, X) -> str | None:
    """The conjugate prior's name when ``fn`` (the prior of ``p``) is the one its role has, and
    its hyperparameters depend on no parameter; else None."""
    wanted = _CONJUGATE.get((family, role))
    base = _unwrap(fn)
    if wanted is None or type(base.dist) is not wanted or base.mask is not None:
        return None
    others = {q: v for q, v in values.items() if q != p}

    def prior_log_density(others_):
        _, tr = enumerated_log_density(enumerated, (X,), {}, {**values, **others_})
        return tr[p]["fn"].log_prob(values[p])

    probes = {q: jnp.ones_like(v) for q, v in others.items()}
    if others:
        _, moved = _analysis_jit(lambda o, t: jax.jvp(prior_log_density, (o,), (t,)))(
            others, probes
        )
        if np.any(np.asarray(moved) != 0):
            return None
    return wanted.__name__.lower()


# -- the E-step ----------------------------------------------------------------------------


def _full_trace(model: NumPyroModel, plan: _Plan, params: Params, X: Array) -> Trace:
    """The enumerated model's trace on the rows ``X`` at ``params``."""
    fn = _enumerated(model.model_fn, plan.first_dim)
    return _enumerated_log_density(fn, X, params)[1]


def _enumerated_log_density(fn: Callable, X: Array, params: Params) -> tuple[Array, Trace]:
    """NumPyro's ``enumerated_log_density`` of ``fn`` on the rows ``X`` at ``params``, traced
    inside the fit's program without NumPyro's validation: it checks only a distribution's
    arguments that are constants there (the model's own, which the analysis ran), and each
    check runs eagerly, one small program per operation (9 in a mixture's first fit)."""
    with numpyro.validation_enabled(False):
        return enumerated_log_density(fn, (X,), {}, params)


def _marginals(
    model: NumPyroModel, plan: _Plan, params: Params, data: NumPyroData, weights: Array
) -> tuple[Array, dict]:
    """``(loglik, marginals)``: $\\sum_n w_n \\log p(x_n \\mid \\theta)$ (the priors left
    out) and, per site, $w_n$ times the posterior marginal of its configurations, shaped as the
    site's log density on all rows: the derivative of the weighted log-likelihood in a zero
    added to every site's log density. Where the plan allows it (`_Plan.joint`: on all rows at
    once) the rows' latent values are summed out jointly and the marginals are the joint
    posterior summed (`_joint_marginals`); else funsor's contraction runs row by row (``vmap``:
    chains) and the marginals are its derivative."""
    X = data.rows
    enumerated = _enumerated(model.model_fn, plan.first_dim)
    priors = frozenset(plan.priors)
    if plan.joint is not None:
        return _joint_marginals(plan, _perturb(enumerated, {}, priors), params, data, weights)
    if plan.chain is not None:
        return _chain_marginals(plan, _perturb(enumerated, {}, priors), params, X, weights)

    def one_row(row, shifts):
        fn = _perturb(enumerated, shifts, priors)
        return _enumerated_log_density(fn, row[None], params)[0]

    def total(shifts):
        per_row = jax.vmap(one_row)(X, shifts)
        weighted = jnp.where(weights > 0, weights * per_row, jnp.zeros((), X.dtype))
        return jnp.sum(weighted)

    zeros = {s.name: jnp.zeros((X.shape[0],) + s.row_shape, X.dtype) for s in plan.sites}
    loglik, grads = jax.value_and_grad(total)(zeros)
    zero = jnp.zeros((), X.dtype)  # never NaN times zero from a row of weight zero
    marginals = {}
    for s in plan.sites:
        kept = (weights > 0).reshape((-1,) + (1,) * len(s.row_shape))
        marginals[s.name] = _rows_into_plate(jnp.where(kept, grads[s.name], zero), s)
    return loglik, marginals


def _joint_marginals(
    plan: _Plan, fn: Callable, params: Params, data: NumPyroData, weights: Array
) -> tuple[Array, dict]:
    """`_marginals` from one run of the enumerated model ``fn`` on all rows: the joint log
    density of every configuration of the rows' latent values, the sum of the sites' log
    densities (each site's plates inside the rows summed first; featured sites' densities
    from the rows' features), normalised per row over the configurations (as
    `jaxem.families.statistics.normalise` does a mixture's components: the configurations'
    few terms summed elementwise, the rows last); each site's marginal is that posterior
    summed over the configurations its log density does not index, spread over its plates
    inside the rows."""
    X = data.rows
    n_rows = X.shape[0]
    tr = _enumerated_log_density(fn, X, params)[1]
    inner = dict(plan.joint)
    joint, summed = jnp.zeros((), X.dtype), {}
    for site in plan.sites:
        featured = data.features.get(site.name)
        lp = _site_log_prob(tr[site.name], None if featured is None else (data.centre, featured))
        if inner[site.name]:
            lp = jnp.sum(lp, axis=inner[site.name], keepdims=True)
        summed[site.name] = lp.shape
        joint = joint + lp
    rank = max(len(shape) for shape in summed.values())
    rows_at = rank + plan.sites[0].plate_dim
    joint = jnp.broadcast_to(joint, jnp.broadcast_shapes(*summed.values()))
    # the dims after the rows' are plates inside them, summed above: size 1
    posterior, per_row = normalise(joint.reshape(-1, n_rows))
    kept = weights > 0
    loglik = jnp.sum(jnp.where(kept, weights * per_row, jnp.zeros((), X.dtype)))
    weighted = jnp.where(kept, posterior * weights, jnp.zeros((), X.dtype)).reshape(joint.shape)
    marginals = {}
    for site in plan.sites:
        own = (1,) * (rank - len(summed[site.name])) + tuple(summed[site.name])
        others = tuple(i for i in range(rows_at) if own[i] == 1 and joint.shape[i] != 1)
        marginal = jnp.sum(weighted, axis=others, keepdims=True)
        shape = _on_rows(site, n_rows)
        marginals[site.name] = jnp.broadcast_to(
            marginal.reshape(marginal.shape[rank - len(shape) :]), shape
        )
    return loglik, marginals


def _chain_marginals(
    plan: _Plan, fn: Callable, params: Params, X: Array, weights: Array
) -> tuple[Array, dict]:
    """`_marginals` of a chain (`_Plan.chain`; a row is a sequence): each row's sites' log
    densities gathered into the first step's factor $\\phi_0(z_0)$ ``(K,)`` and the later
    steps' $\\phi_t(z_{t-1}, z_t)$ ``(T - 1, K, K)``, summed out by the forward-backward
    recursions of `jaxem.inference.chain_posterior` (all rows at once; a plain categorical
    chain site's transition probabilities as probabilities, its weights); each site's
    marginal is the posterior of the states its log density reads, $O(T K^2)$ work where
    funsor's parallel contraction does $O(T K^3)$ and its derivative as much again."""
    chain = plan.chain
    names = {f"_time_{chain}": "t", f"_PREV_{chain}": "p", chain: "c"}

    def labels(site: dict, lp: Array) -> str:
        """One letter per dim of ``lp``: t (steps), p (previous state), c (current state),
        other dims (the rows' plate: size 1 here) x, y, ..."""
        found = site["infer"].get("name_to_dim", {})
        by_dim = {d: names[n] for n, d in found.items() if n in names}
        spare = iter("xyzuvw")
        return "".join(by_dim.get(d - lp.ndim, "") or next(spare) for d in range(lp.ndim))

    layouts = {}  # per site: its dims' letters, those it reads, and its factor's
    known_values = dict(plan.latent_values)

    def factors(row: Array) -> tuple[Array, Array, Array | None]:
        """The row's log factors, and the steps' probabilities given as such (`chain_posterior`'s
        weights: the chain's own transitions) or None."""
        tr = _enumerated_log_density(fn, row[None], params)[1]
        first, steps = jnp.zeros((), row.dtype), jnp.zeros((), row.dtype)
        transitions = None
        for site in plan.sites:
            value = known_values.get(site.name)
            probabilities = None  # the first step's factor has K terms: as logs
            if site.name == chain:
                probabilities = _probabilities_at_support(tr[site.name], value)
            if probabilities is None:
                lp = _site_log_prob(tr[site.name], value=value)
            else:
                lp = probabilities
            own = labels(tr[site.name], lp)
            if site.name.startswith("_PREV_"):  # the first step: its state is named _PREV_
                own = own.replace("p", "c")
            target = "tpc" if "t" in own else "c"
            present = "".join(a for a in target if a in own)
            shape = tuple(lp.shape[own.index(a)] if a in own else 1 for a in target)
            lp = jnp.einsum(f"{own}->{present}", lp).reshape(shape)
            layouts[site.name] = (own, present, target)
            if probabilities is not None:
                transitions = lp if transitions is None else transitions * lp
            elif "t" in own:
                steps = steps + lp
            else:
                first = first + lp
        n_states = first.shape[-1]
        if transitions is None:
            return first, jnp.broadcast_to(steps, steps.shape[:1] + (n_states, n_states)), None
        transitions = jnp.broadcast_to(transitions, transitions.shape[:1] + (n_states, n_states))
        least = transitions.shape[:1] + (1, n_states)  # the steps' log factors read z_t at least
        steps = jnp.broadcast_to(steps, jnp.broadcast_shapes(steps.shape, least))
        return first, steps, transitions

    first, steps, transitions = jax.vmap(factors)(X)
    per_row, first_states, pairs = chain_posterior(first, steps, transitions)
    kept = weights > 0
    marginals = {}
    for site in plan.sites:
        own, present, target = layouts[site.name]
        posterior = pairs if target == "tpc" else first_states
        axes = tuple(1 + i for i, a in enumerate(target) if a not in present)
        reduced = _sum_small(posterior, axes)
        in_rows = (-1,) + (1,) * len(present)
        reduced = jnp.where(
            kept.reshape(in_rows), reduced * weights.reshape(in_rows), jnp.zeros((), X.dtype)
        )
        ordered = "".join(a for a in own if a in present)
        marginal = jnp.einsum(f"n{present}->n{ordered}", reduced)
        marginal = marginal.reshape((X.shape[0],) + site.row_shape)
        marginals[site.name] = _rows_into_plate(marginal, site)
    loglik = jnp.sum(jnp.where(kept, weights * per_row, jnp.zeros((), X.dtype)))
    return loglik, marginals


def _on_rows(site: _Site, n_rows: int) -> tuple[int, ...]:
    """The site's log-density shape on ``n_rows`` rows."""
    shape = list(site.row_shape)
    shape[len(shape) + site.plate_dim] = n_rows
    return tuple(shape)


def _rows_into_plate(per_row: Array, site: _Site) -> Array:
    """``(N, *row_shape)`` with the rows' dim of size 1 -> ``row_shape`` with N there."""
    at = len(site.row_shape) + site.plate_dim
    return jnp.moveaxis(jnp.squeeze(per_row, axis=1 + at), 0, at)


_LETTERS = "abcdefghijklmnop"


def _sum_to(index_shape: tuple, operands: list, out_extra: str = "") -> Array:
    """The product of ``operands`` summed over the dims where ``index_shape`` is 1, broadcast
    to ``index_shape`` (+ the extra dims named by ``out_extra``). Each operand is ``(array,
    extra)``: an array whose leading dims broadcast against ``index_shape`` and whose trailing
    ``len(extra)`` dims are named by ``extra`` (from ``"qrstuvwxyz"``).

    As an einsum where the dims kept and shared by operands (a matrix product's batch) are
    fewer than those summed: the full broadcast shape is never formed. Otherwise (a chain's
    steps, each with a few states: a product of ``(K, K)`` matrices per step) as a broadcast
    product summed, which XLA fuses into one pass; as a batched product it was a library call
    per step (``(T, K, K)`` elements, K = 4, T = 1e5: 61 -> 2 ms on a CPU)."""
    rank = len(index_shape)
    subscripts, arrays, present = [], [], set()
    for array, extra in operands:
        lead = array.ndim - len(extra)
        array = array.reshape((1,) * (rank - lead) + array.shape)
        keep = [i for i in range(rank) if array.shape[i] != 1]
        array = array.reshape(tuple(array.shape[i] for i in keep) + array.shape[rank:])
        subscripts.append("".join(_LETTERS[i] for i in keep) + extra)
        arrays.append(array)
        present.update(keep)
    out_dims = [i for i in range(rank) if index_shape[i] != 1 and i in present]
    out = "".join(_LETTERS[i] for i in out_dims) + out_extra
    sizes = {}
    for sub, array in zip(subscripts, arrays, strict=True):
        sizes.update(zip(sub, array.shape, strict=True))
    shared = [c for c in out if sum(c in sub for sub in subscripts) > 1]
    summed = {c for sub in subscripts for c in sub} - set(out)
    if math.prod(sizes[c] for c in shared) > math.prod(sizes[c] for c in summed):
        everything = "".join(sorted(sizes))
        aligned = [
            _aligned_to(a, sub, everything) for sub, a in zip(subscripts, arrays, strict=True)
        ]
        product = functools.reduce(jnp.multiply, aligned)
        axes = tuple(i for i, c in enumerate(everything) if c not in out)
        product = _sum_small(product, axes)
        left = "".join(c for c in everything if c in out)
        result = jnp.einsum(f"{left}->{out}", product)  # a transpose
        result = jnp.broadcast_to(result, tuple(sizes[c] for c in out))
    else:
        subscripts = ",".join(subscripts) + "->" + out
        # three operands (weights, x, x): the best order halves the time
        result = jnp.einsum(subscripts, *arrays, optimize="optimal")
    shape = tuple(index_shape[i] if i in out_dims else 1 for i in range(rank))
    result = result.reshape(shape + result.shape[len(out_dims) :])
    return jnp.broadcast_to(result, tuple(index_shape) + result.shape[rank:])


def _aligned_to(array: Array, letters: str, everything: str) -> Array:
    """``array`` (dims named by ``letters``) transposed and expanded to the dims named by
    ``everything`` (size 1 where it has none), for broadcasting."""
    order = "".join(c for c in everything if c in letters)
    array = jnp.einsum(f"{letters}->{order}", array) if order != letters else array
    shape = tuple(array.shape[order.index(c)] if c in order else 1 for c in everything)
    return array.reshape(shape)


def _grouped(index: Array, n_groups: int, operands: list, out_extra: str = "") -> Array:
    """$S_g = \\sum_{e:\\ \\mathrm{index}_e = g} \\prod$ ``operands``$_e$, ``(n_groups,
    *extra)``."""
    summed = _sum_to(index.shape, operands, out_extra)
    flat = summed.reshape((-1,) + summed.shape[index.ndim :])
    return jax.ops.segment_sum(flat, index.reshape(-1), n_groups)


class _SiteView(NamedTuple):
    """A closed-form rule's view of one of its sites on all rows: weights ``m`` (marginals,
    masked), the value, the distribution's other arguments (``loc``, ``scale``,
    ``precision_matrix`` where it has them) and the parameter's selection ``index`` (for a
    row role, the row's index), aligned to the site's elements (log density's dims + the
    event's)."""

    m: Array
    value: Array
    args: dict
    index: Array


def _views(model, plan: _Plan, params: Params, X: Array, marginals: dict) -> dict:
    """``{(param, site): _SiteView}`` for every closed-form rule, from one run of the model:
    the JVP with every closed-form parameter's tangent its entries' indices gives each role's
    selection at once (a role moves with its own parameter only: the analysis checked it
    equals the selected entries). Selections and latent values known from the plan
    (`_Plan.selections`, `_Plan.latent_values`) are taken from there, and so are the
    arguments that are such selections of a parameter (the entries of ``params`` they
    select): when all selections are, the model runs without the JVP, for the observed
    values alone."""
    lp_shapes = {name: m.shape for name, m in marginals.items()}
    static = {(param, site): index for param, site, index in plan.selections}
    known_values = dict(plan.latent_values)
    by_role = {(s, c.role): c.param for c in plan.closed for s in c.sites}

    def plan_index(base: _Base, c: _Closed, site: str) -> Array:
        index = jnp.asarray(static[(c.param, site)], jnp.int32)
        return _padded(index, _aligned_rank(base, c.role, lp_shapes[site]))

    def selected_entries(p: Params, base: _Base, site: str, role: str) -> Array:
        """The role's argument: the entries of its parameter the plan's index picks."""
        param = by_role[(site, role)]
        entries = p[param].reshape(-1)[static[(param, site)]]
        return _padded(entries, _aligned_rank(base, role, lp_shapes[site]))

    def roles(p):
        tr = _full_trace(model, plan, p, X)
        found, aux, indices = {}, {}, {}
        for c in plan.closed:
            for s in c.sites:
                base = _unwrap(tr[s]["fn"])
                if (c.param, s) in static:
                    indices[(c.param, s)] = plan_index(base, c, s)
                else:
                    found[(c.param, s)] = _aligned(base, c.role, lp_shapes[s])
                if s not in aux:
                    args = {
                        a: selected_entries(p, base, s, a)
                        if (by_role.get((s, a)), s) in static
                        else _aligned(base, a, lp_shapes[s])
                        for a in _OTHER_ARGUMENTS.get(type(base.dist), ())
                    }
                    mask = jnp.ones((), X.dtype) if base.mask is None else base.mask
                    value = tr[s]["value"]
                    if s in known_values:
                        value = _padded(jnp.asarray(known_values[s]), jnp.ndim(value))
                    aux[s] = (value, mask, args, base.event_ndim)
        return found, (aux, indices)

    if all((c.param, s) in static for c in plan.closed for s in c.sites):
        found, (aux, indices) = roles(params)
    else:
        tangents = _selection_tangents(params, plan.closed)
        _, found, (aux, indices) = jax.jvp(roles, (params,), (tangents,), has_aux=True)
    views = {}
    for c in plan.closed:
        for s in c.sites:
            value, mask, args, event_ndim = aux[s]
            if (c.param, s) in static:
                index = indices[(c.param, s)]
            else:
                index = jnp.round(found[(c.param, s)]).astype(jnp.int32)
            if c.family in ("categorical", "mvn"):
                lead = len(lp_shapes[s]) + event_ndim
                index = index.reshape(index.shape[:lead] + (-1,))[..., 0] // c.row_size
            m = marginals[s] * jnp.asarray(mask, marginals[s].dtype)
            m = m.reshape(m.shape + (1,) * event_ndim)
            views[(c.param, s)] = _SiteView(m, value, args, index)
    return views


def _aligned(base: _Base, role: str, lp_shape: tuple) -> Array:
    """The role's argument with its own (not broadcast) shape, left-padded to the rank of the
    site's elements (log density's dims + the event's) plus the row's dims."""
    return _padded(getattr(base.dist, role), _aligned_rank(base, role, lp_shape))


def _aligned_rank(base: _Base, role: str, lp_shape: tuple) -> int:
    rank = len(lp_shape) + base.event_ndim
    if role in ("covariance_matrix", "precision_matrix"):
        return rank + 2
    if type(base.dist) in (dist.CategoricalProbs, dist.MultivariateNormal):
        return rank + 1
    return rank


def _padded(array: Array, rank: int) -> Array:
    return array.reshape((1,) * (rank - array.ndim) + array.shape)


def _scale_of(plan: _Plan, c: _Closed) -> _Closed | None:
    """The closed-form scale (covariance) rule that has location ``c`` as its partner: its
    statistics, grouped by the location's groups, serve both, so that ``c`` needs none of
    its own (each location group lies in one scale group, where the scale is one value)."""
    return next((r for r in plan.closed if r.partner == c.param), None)


def _location_statistics(c: _Closed, scale: _Closed, stats: dict, params: Params) -> dict:
    """A location's precision-weighted statistics from its scale's pooled ones, at the current
    scale of each location group: ``precision`` $= n_g \\Sigma^{-1}$, ``weighted``
    $= \\Sigma^{-1} s_g$ with $s_g = \\sum w x$ (with no prior the location is $s_g / n_g$
    whatever the scale); the pooled sums are about the current locations $\\mu_g$:
    $s_g = d_g + n_g \\mu_g$."""
    owner = jnp.argmax(stats["member"], axis=1)
    if c.family == "normal":
        variance = jnp.square(params[scale.param].reshape(-1)[owner])
        total = stats["sum"] + stats["n"] * params[c.param].reshape(-1)
        return {"precision": stats["n"] / variance, "weighted": total / variance}
    dim = params[c.param].shape[-1]
    inverse = _spd_inverse(params[scale.param].reshape(-1, dim, dim)[owner])
    total = stats["sum"] + stats["n"][:, None] * params[c.param].reshape(-1, dim)
    return {
        "precision": stats["n"][:, None, None] * inverse,
        "weighted": jnp.einsum("gyz,gz->gy", inverse, total),
    }


def _closed_stats(c: _Closed, views: dict, plan: _Plan, params: Params, data: NumPyroData) -> dict:
    """The rule's statistics, summed over its sites (none for a location whose scale's
    statistics serve it, `_scale_of`)."""
    if c.role == "loc" and _scale_of(plan, c) is not None:
        return {}
    per_site = [_site_stats(c, s, views, plan, params, data) for s in c.sites]
    return jax.tree.map(lambda *a: sum(a[1:], a[0]), *per_site)


def _site_stats(
    c: _Closed, site: str, views: dict, plan: _Plan, params: Params, data: NumPyroData
) -> dict:
    v = views[(c.param, site)]
    size = params[c.param].size // c.row_size
    index, m = v.index, v.m
    if c.family == "categorical":
        x = jnp.asarray(v.value).astype(jnp.int32)
        onehot = jax.nn.one_hot(x, c.row_size, dtype=m.dtype)
        return {"counts": _grouped(index, size, [(m, ""), (onehot, "y")], "y")}
    x = jnp.asarray(v.value, m.dtype)
    if c.family in ("bernoulli", "poisson"):
        return {
            "n": _grouped(index, size, [(m, "")]),
            "sum": _grouped(index, size, [(m, ""), (x, "")]),
        }
    rows = c.family == "mvn"
    if c.partner is not None:
        return _partnered_stats(c, site, views, plan, params, x, size, rows, data)
    if c.family == "normal":
        if c.role == "loc":
            precision = 1.0 / jnp.square(v.args["scale"])
            return {
                "precision": _grouped(index, size, [(m, ""), (precision, "")]),
                "weighted": _grouped(index, size, [(m, ""), (precision, ""), (x, "")]),
            }
        sq = jnp.square(x - v.args["loc"])
        return {
            "n": _grouped(index, size, [(m, "")]),
            "sq": _grouped(index, size, [(m, ""), (sq, "")]),
        }
    if c.role == "loc":
        precision = v.args["precision_matrix"]
        return {
            "precision": _grouped(index, size, [(m, ""), (precision, "yz")], "yz"),
            "weighted": _grouped(index, size, [(m, ""), (precision, "yz"), (x, "z")], "y"),
        }
    d = x - v.args["loc"]
    return {
        "n": _grouped(index, size, [(m, "")]),
        "sq": _grouped(index, size, [(m, ""), (d, "y"), (d, "z")], "yz"),
    }


def _partnered_stats(c, site, views, plan, params, x, size, rows: bool, data) -> dict:
    """A scale's statistics grouped by its location's groups (so that the scale is taken at
    the new location): per location group $g$ the weight $n_g$, and the sums and sums of
    squares (outer products) about the current location $\\mu_g$, $d_g = \\sum w (x -
    \\mu_g)$ and $S_g = \\sum w (x - \\mu_g)(x - \\mu_g)^\\top$ (additive over blocks;
    the new scale, $S_g / n_g - \\delta \\delta^\\top$ for a step $\\delta$ of the
    location, loses no precision to a far origin); and how many elements each (location
    group, scale group) pair has (additive, unlike an index), from which the M-step finds
    each location group's scale group.

    A vector's sums come from one matrix product of the weights with the values' quadratic
    features about a centre, as the hand-written Gaussian's statistics do: half the products
    of the outer products, the values' features shared by the groups. A featured site's
    features (about the rows' centre) are `NumPyroData`'s; others' are formed here, about the
    locations' mean."""
    loc_rule = next(r for r in plan.closed if r.param == c.partner)
    lidx = views[(c.partner, site)].index
    v = views[(c.param, site)]
    groups = params[c.partner].size // loc_rule.row_size
    m = v.m
    n = _grouped(lidx, groups, [(m, "")])
    if rows:
        locations = params[c.partner].reshape(groups, -1)
        dim = locations.shape[-1]
        if site in data.features:
            centre, features = data.centre, data.features[site]
        else:
            centre = jnp.mean(locations, axis=0)
            centred = x - centre
            features = jnp.concatenate([full.squares_of_rows(centred), centred], axis=-1)
        moments = _grouped(lidx, groups, [(m, ""), (features, "y")], "y")
        n_squares = dim * (dim + 1) // 2
        sums, offsets = moments[:, n_squares:], locations - centre
        about = full.scatter_matrices(moments[:, :n_squares], sums, n, offsets)
        stats = {"n": n, "sum": sums - n[:, None] * offsets, "sq": about}
    else:  # the differences themselves: as cheap as the values' squares
        d = x - v.args["loc"]
        stats = {
            "n": n,
            "sum": _grouped(lidx, groups, [(m, ""), (d, "")]),
            "sq": _grouped(lidx, groups, [(m, ""), (jnp.square(d), "")]),
        }
    shape = jnp.broadcast_shapes(lidx.shape, v.index.shape)
    pairs = jnp.broadcast_to(lidx, shape) * size + jnp.broadcast_to(v.index, shape)
    ones = jnp.ones(pairs.size, m.dtype)
    member = jax.ops.segment_sum(ones, pairs.reshape(-1), groups * size)
    stats["member"] = member.reshape(groups, size)
    return stats


# -- the M-step ----------------------------------------------------------------------------


def _prior_trace(model: NumPyroModel, params: Params, row_shape: tuple, dtype: Any) -> Trace:
    """The model run on one row of zeros at ``params``: the prior sites' distributions (the
    priors may not depend on the data)."""
    return _plain_trace(model.model_fn, jnp.zeros((1,) + tuple(row_shape), dtype), params)


def _log_prior(model: NumPyroModel, params: Params, row_shape: tuple, dtype: Any) -> Array:
    plan = model.plan(row_shape, dtype)
    tr = _prior_trace(model, params, row_shape, dtype)
    total = jnp.zeros((), dtype)
    for name in plan.priors:
        total = total + jnp.sum(tr[name]["fn"].log_prob(params[name]))
    return total


def _hyperparameters(c: _Closed, priors: Trace, params: Params) -> tuple:
    """The conjugate prior's hyperparameters of ``c``'s parameter, broadcast to its shape, from
    a run of the model (`_prior_trace`)."""
    prior = _unwrap(priors[c.param]["fn"]).dist
    shape = params[c.param].shape
    names = {
        "dirichlet": ("concentration",),
        "beta": ("concentration1", "concentration0"),
        "gamma": ("concentration", "rate"),
        "normal": ("loc", "scale"),
    }[c.prior]
    return tuple(jnp.broadcast_to(getattr(prior, n), shape) for n in names)


def _keep_where_empty(new: Array, old: Array, n: Array) -> Array:
    """Entries of groups with no weight keep their value (an empty component, an unvisited
    state: no data says anything about them), never NaN."""
    return jnp.where(n > 0, new, old)


def _safe(n: Array) -> Array:
    return jnp.where(n > 0, n, jnp.ones((), n.dtype))


def _closed_update(
    c: _Closed, stats: dict, params: Params, hyper: tuple | None, iterate: Params
) -> Array:
    """The parameter's conditional maximiser given ``params`` (with this M-step's new
    locations, where a scale has one; ``iterate``: the parameters the statistics were taken
    at)."""
    old = params[c.param]
    shape = old.shape
    if c.family == "categorical":
        counts = stats["counts"].reshape(shape)
        if hyper is not None:
            counts = counts + hyper[0] - 1.0
        total = jnp.sum(counts, axis=-1, keepdims=True)
        return _keep_where_empty(counts / _safe(total), old, total)
    if c.family in ("bernoulli", "poisson"):
        n, total = stats["n"].reshape(shape), stats["sum"].reshape(shape)
        if hyper is not None and c.family == "bernoulli":
            a, b = hyper
            n, total = n + a + b - 2.0, total + a - 1.0
        elif hyper is not None:
            a, b = hyper
            n, total = n + b, total + a - 1.0
        estimate = total / _safe(n)
        if c.family == "bernoulli":
            estimate = jnp.clip(estimate, 0.0, 1.0)
        return _keep_where_empty(estimate, old, n)
    if c.role == "loc":
        return _location(c, stats, old, hyper)
    if c.family == "normal":
        if c.partner is None:
            n, sq = stats["n"].reshape(shape), stats["sq"].reshape(shape)
        else:
            step = params[c.partner].reshape(-1) - iterate[c.partner].reshape(-1)
            per_loc = stats["sq"] - 2 * step * stats["sum"] + jnp.square(step) * stats["n"]
            owner = jnp.argmax(stats["member"], axis=1)
            n = jax.ops.segment_sum(stats["n"], owner, old.size).reshape(shape)
            sq = jax.ops.segment_sum(per_loc, owner, old.size).reshape(shape)
        return _keep_where_empty(jnp.sqrt(sq / _safe(n)), old, n)
    dim = shape[-1]
    groups = old.size // (dim * dim)
    if c.partner is None:
        n, sq = stats["n"], stats["sq"]
    else:
        step = params[c.partner].reshape(-1, dim) - iterate[c.partner].reshape(-1, dim)
        outer = jnp.einsum("gy,gz->gyz", step, stats["sum"])
        centred = stats["n"][:, None, None] * jnp.einsum("gy,gz->gyz", step, step)
        per_loc = stats["sq"] - outer - jnp.swapaxes(outer, -1, -2) + centred
        owner = jnp.argmax(stats["member"], axis=1)
        n = jax.ops.segment_sum(stats["n"], owner, groups)
        sq = jax.ops.segment_sum(per_loc, owner, groups)
    covariance = (sq / _safe(n)[:, None, None]).reshape(shape)
    return _keep_where_empty(covariance, old, n.reshape(shape[:-2] + (1, 1)))


def _location(c: _Closed, stats: dict, old: Array, hyper: tuple | None) -> Array:
    """A location given the current scales: precision-weighted mean (with a Normal prior,
    the posterior mode)."""
    shape = old.shape
    if c.family == "normal":
        precision, weighted = stats["precision"].reshape(shape), stats["weighted"].reshape(shape)
        if hyper is not None:
            loc0, scale0 = hyper
            precision = precision + 1.0 / jnp.square(scale0)
            weighted = weighted + loc0 / jnp.square(scale0)
        return _keep_where_empty(weighted / _safe(precision), old, precision)
    dim = shape[-1]
    eye = jnp.eye(dim, dtype=old.dtype)
    precision = stats["precision"].reshape(shape[:-1] + (dim, dim))
    weighted = stats["weighted"].reshape(shape)
    if hyper is not None:
        loc0, scale0 = hyper
        prior_precision = 1.0 / jnp.square(scale0)
        precision = precision + prior_precision[..., None] * eye
        weighted = weighted + loc0 * prior_precision
    n = jnp.trace(precision, axis1=-2, axis2=-1)[..., None]
    safe = jnp.where(n[..., None] > 0, precision, eye)
    solved = jnp.einsum("...yz,...z->...y", _spd_inverse(safe), weighted)
    return _keep_where_empty(solved, old, n)


def _gradient_update(
    model: NumPyroModel, plan: _Plan, params: Params, marginals: dict, X: Array
) -> Params:
    """The gradient-path parameters: L-BFGS on $-Q$ (minus the log prior) in unconstrained
    coordinates from their current values, kept only where the objective rises."""
    cons = dict(plan.constraints)
    names = plan.gradient
    row_shape, dtype = tuple(X.shape[1:]), X.dtype

    def loss(coordinates):
        theta = {**params, **{k: biject_to(cons[k])(coordinates[k]) for k in names}}
        tr = _full_trace(model, plan, theta, X)
        q = jnp.zeros((), dtype)
        for s in plan.sites:
            m = marginals[s.name]
            lp = _site_log_prob(tr[s.name])
            q = q + jnp.sum(jnp.where(m > 0, m * lp, jnp.zeros((), dtype)))
        if plan.priors:
            q = q + _log_prior(model, theta, row_shape, dtype)
        return -q

    start = {k: biject_to(cons[k]).inv(params[k]) for k in names}
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(_, carry):
        coordinates, state = carry
        value, grad = value_and_grad(coordinates, state=state)
        updates, state = solver.update(
            grad, state, coordinates, value=value, grad=grad, value_fn=loss
        )
        return optax.apply_updates(coordinates, updates), state

    found, _ = jax.lax.fori_loop(0, model.gradient_steps, step, (start, solver.init(start)))
    before, after = loss(start), loss(found)
    better = jnp.isfinite(after) & (after < before)
    kept = jax.tree.map(lambda new, old: jnp.where(better, new, old), found, start)
    return {**params, **{k: biject_to(cons[k])(kept[k]) for k in names}}
