"""What a model or a family can do, declared as Protocols and resolved in one place.

The core of a model is `jaxem.base.EMModel` (``e_step``, ``m_step``, ``init``); everything else
is an optional capability, each its own runtime-checkable Protocol below with the one signature
its name means. `of_model` and `of_family` look a model or a family up once and return what it
provides (a method, or None; a declared value, or its default); the drivers use those and never
probe a model or a family themselves: this module is the only place that does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from jaxem.base import Array, Params, Prior

# -- a model's optional capabilities ---------------------------------------------------------


@runtime_checkable
class HasPrior(Protocol):
    """MAP estimation: $\\log p(\\theta)$ of the parameters under a prior."""

    def log_prior(self, params: Params, prior: Prior) -> Array: ...


@runtime_checkable
class Validates(Protocol):
    """Checks made before compiling, the weights' included; returns ``(X, params, weights,
    prior)`` as arrays of X's dtype, the weights those the drivers use (``None`` given: ones)
    (shapes always, values of concrete arrays only)."""

    def validate(self, X: Any, params: Any, weights: Any, prior: Any) -> tuple: ...


@runtime_checkable
class Prepares(Protocol):
    """The data as the E-step reads it, computed once per fit (the E-step accepts both)."""

    def prepare(self, X: Array, weights: Array) -> Any: ...


@runtime_checkable
class SizesBlocks(Protocol):
    """The E-step's working memory per sample, from which the drivers choose row blocks."""

    def bytes_per_sample(self, n_features: int, itemsize: int) -> int: ...


@runtime_checkable
class Extrapolates(Protocol):
    """Unconstrained coordinates, in which any real values are valid parameters (SQUAREM)."""

    def unconstrain(self, params: Params) -> Any: ...

    def constrain(self, coordinates: Any) -> Params: ...


@runtime_checkable
class WeighsSteps(Protocol):
    """Weights of another shape than ``(n_samples,)`` (a hidden Markov model's ``(S, T)``)."""

    def weights_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]: ...


@runtime_checkable
class ZeroesUninformative(Protocol):
    """The weights the drivers use, with those of samples that carry no information set to
    zero (rows whose every value is missing)."""

    def effective_weights(self, X: Array, weights: Array) -> Array: ...


@runtime_checkable
class ChecksPrior(Protocol):
    """A prior's checks: shapes (and concrete values), and value ranges of a batch of priors."""

    def check_prior(self, prior: Any, n_features: int, dtype: Any) -> Any: ...

    def check_prior_values(self, prior: Any, n_features: int) -> None: ...


@runtime_checkable
class HasDefaultPrior(Protocol):
    """A weak default prior for data ``X`` (`jaxem.default_prior`)."""

    def default_prior(self, X: Any) -> Any: ...


@runtime_checkable
class ReadsIterate(Protocol):
    """An M-step that also reads the iterate its statistics were taken at,
    ``m_step_from(params, stats, prior) -> params``: for parameters that carry what the M-step
    keeps fixed (the components `jaxem.grid` switches off), or the start of an M-step that
    iterates (a generalized EM step must not decrease the expected complete-data
    log-likelihood from where it starts). The drivers call it in place of ``m_step``."""

    def m_step_from(self, params: Params, stats: Any, prior: Prior | None) -> Params: ...


@runtime_checkable
class StartsDeterministically(Protocol):
    """A start that draws nothing, ``deterministic_start(X, weights=None) -> params``, which
    `jaxem.fit_restarts` fits besides its random ones (a mixture's: mclust's hierarchical
    partition, `jaxem.hierarchical`). Computed on the host from concrete data."""

    def deterministic_start(self, X: Any, weights: Any = None) -> Params: ...


@runtime_checkable
class CountsParameters(Protocol):
    """The model's free parameters for data of ``n_features`` columns (BIC's count; the
    dimension of its chart)."""

    def n_parameters(self, n_features: int) -> int: ...


@runtime_checkable
class HasCompleteData(Protocol):
    """$Q(\\theta \\mid \\theta_0)$, the expected complete-data log-likelihood of ``params``
    under the posterior at ``posterior_at``: ``expected_complete_log_likelihood(params,
    posterior_at, data, weights)`` (Oakes's and SEM's information, `jaxem.information`)."""

    def expected_complete_log_likelihood(
        self, params: Params, posterior_at: Params, data: Any, weights: Array
    ) -> Array: ...


@runtime_checkable
class EnumeratesLatents(Protocol):
    """One discrete latent value per sample: ``complete_log_likelihoods(params, data)``
    ``(K, N)``, $\\log p(x_n, z_n = k \\mid \\theta)$ (Louis's information)."""

    def complete_log_likelihoods(self, params: Params, data: Any) -> Array: ...


@runtime_checkable
class Simulates(Protocol):
    """A data set drawn from the model shaped like the data: ``simulate(key, params,
    data_shape) -> X`` (the parametric bootstrap, `jaxem.resampling`)."""

    def simulate(self, key: Array, params: Params, data_shape: tuple[int, ...]) -> Array: ...


@runtime_checkable
class HasOwnPrior(Protocol):
    """A prior that is part of the model (a NumPyro model's sample-site priors): the ``prior``
    the drivers use for data shaped ``data_shape`` when they are given None (None: MLE)."""

    def own_prior(self, data_shape: tuple[int, ...], dtype: Any) -> Any: ...


@runtime_checkable
class SumsRows(Protocol):
    """Whether the statistics of data shaped ``data_shape`` (of ``dtype``) are sums over rows,
    which row blocks and devices add up; a model without it: always (`jaxem.base`)."""

    def statistics_add_up(self, data_shape: tuple[int, ...], dtype: Any) -> bool: ...


class ModelCapabilities(NamedTuple):
    """What a model provides (see `of_model`): each optional method, or None (``m_step_from``:
    `ReadsIterate`; ``deterministic_start``: `StartsDeterministically`; ``chart``: `HasChart`;
    ``n_parameters``: `CountsParameters`; ``expected_complete_log_likelihood``:
    `HasCompleteData`; ``complete_log_likelihoods``: `EnumeratesLatents`; ``simulate``:
    `Simulates`; ``statistics_add_up``: `SumsRows`; ``own_prior``: `HasOwnPrior`); declared
    values
    (``data_ndim`` the dimensions of one data set, ``min_samples`` the fewest samples of
    positive weight a fit needs, ``missing`` whether NaN is a missing value,
    ``n_components`` a mixture's K or a hidden Markov model's states (None for others),
    ``ignores_zero_weights`` whether rows of weight zero change nothing, so that data may be
    padded with them: `jaxem.buckets`), or their defaults."""

    log_prior: Callable | None
    m_step_from: Callable | None
    validate: Callable | None
    prepare: Callable | None
    bytes_per_sample: Callable | None
    extrapolates: bool
    weights_shape: Callable | None
    effective_weights: Callable | None
    check_prior: Callable | None
    check_prior_values: Callable | None
    default_prior: Callable | None
    deterministic_start: Callable | None
    chart: Callable | None
    n_parameters: Callable | None
    expected_complete_log_likelihood: Callable | None
    complete_log_likelihoods: Callable | None
    simulate: Callable | None
    statistics_add_up: Callable | None
    own_prior: Callable | None
    data_ndim: int
    min_samples: int
    n_components: int | None
    missing: bool
    ignores_zero_weights: bool


CORE = ("e_step", "m_step", "init")


def check_model(model: Any) -> None:
    """``TypeError`` naming the first core method (`jaxem.base.EMModel`) ``model`` lacks."""
    for name in CORE:
        if not callable(getattr(model, name, None)):
            raise TypeError(
                f"{type(model).__name__} is not an EM model: it has no {name} method (a model "
                f"provides {', '.join(CORE)}; see jaxem.base.EMModel)"
            )


def _method(thing: Any, protocol: type, name: str) -> Callable | None:
    return getattr(thing, name) if isinstance(thing, protocol) else None


@functools.lru_cache(maxsize=256)
def _of_hashable(model: Any) -> ModelCapabilities:
    return _resolve(model)


def of_model(model: Any) -> ModelCapabilities:
    """What ``model`` provides, resolved once (cached for hashable models, as jaxem's are)."""
    try:
        return _of_hashable(model)
    except TypeError:  # an unhashable model of one's own
        return _resolve(model)


def _resolve(model: Any) -> ModelCapabilities:
    checks = isinstance(model, ChecksPrior)
    return ModelCapabilities(
        log_prior=_method(model, HasPrior, "log_prior"),
        m_step_from=_method(model, ReadsIterate, "m_step_from"),
        validate=_method(model, Validates, "validate"),
        prepare=_method(model, Prepares, "prepare"),
        bytes_per_sample=_method(model, SizesBlocks, "bytes_per_sample"),
        extrapolates=isinstance(model, Extrapolates),
        weights_shape=_method(model, WeighsSteps, "weights_shape"),
        effective_weights=_method(model, ZeroesUninformative, "effective_weights"),
        check_prior=model.check_prior if checks else None,
        check_prior_values=model.check_prior_values if checks else None,
        default_prior=_method(model, HasDefaultPrior, "default_prior"),
        deterministic_start=_method(model, StartsDeterministically, "deterministic_start"),
        chart=_method(model, HasChart, "chart"),
        n_parameters=_method(model, CountsParameters, "n_parameters"),
        expected_complete_log_likelihood=_method(
            model, HasCompleteData, "expected_complete_log_likelihood"
        ),
        complete_log_likelihoods=_method(model, EnumeratesLatents, "complete_log_likelihoods"),
        simulate=_method(model, Simulates, "simulate"),
        statistics_add_up=_method(model, SumsRows, "statistics_add_up"),
        own_prior=_method(model, HasOwnPrior, "own_prior"),
        data_ndim=int(getattr(model, "data_ndim", 1)),
        min_samples=int(getattr(model, "min_samples", 1)),
        n_components=getattr(model, "n_components", None),
        missing=bool(getattr(model, "missing", False)),
        ignores_zero_weights=bool(getattr(model, "ignores_zero_weights", False)),
    )


# -- a family's optional capabilities --------------------------------------------------------


@runtime_checkable
class StartsFromPrior(Protocol):
    """A prior whose posterior mode from the starting partition is a mixture's start."""

    def start_prior(self, X: Array, weights: Array, n_components: int) -> Any: ...


@runtime_checkable
class FusesEStep(Protocol):
    """A mixture's whole E-step in one pass: ``(counts, stats, loglik)``."""

    def mixture_e_step(self, params: Params, data: Any, log_weights: Array, weights: Array): ...


@runtime_checkable
class Collapses(Protocol):
    """Which components have collapsed (a covariance held up by the M-step's floor alone), for
    model selection: booleans ``(..., K)`` from concrete ``params`` with any leading axes and
    the mixture's ``weights`` ``(..., K)`` (None: equal)."""

    def collapsed(self, params: Params, weights: Any = None) -> Any: ...


@runtime_checkable
class DescribedInNumPyro(Protocol):
    """The family written with NumPyro's distributions, for `jaxem.crosscheck` (which passes
    ``numpyro.distributions`` as ``dist`` and ``numpyro.sample`` as ``sample``, so that the
    family itself never imports NumPyro): ``numpyro_components(dist, params)``, the K
    components as one distribution of batch shape ``(K,)`` and event shape ``(D,)``
    (independent columns as ``Independent`` over a ``(K, D)`` batch, which lets missing entries
    drop out); ``numpyro_params(sample, dist, prior, K, D)``, the parameters as sample sites named
    by the parameters' fields, from the conjugate prior, or flat (improper) when ``prior`` is
    None."""

    def numpyro_components(self, dist: Any, params: Params) -> Any: ...

    def numpyro_params(
        self, sample: Callable, dist: Any, prior: Prior | None, n_components: int, n_features: int
    ) -> Params: ...


@runtime_checkable
class SharesEStep(Protocol):
    """``e_step_form``: a hashable value, equal for families whose E-steps are the same
    computation (preparing the data, the log-densities, the statistics, a mixture's fused
    E-step) on parameters and statistics of the same shapes, which differ at most in their
    M-step (``estimate``, ``estimate_from``, ``log_prior``). Mixtures of such families fit to
    one data set share one compiled program (`jaxem.grid.shared_programs`: the E-step compiled
    once, the M-step chosen by ``jax.lax.switch``). A Gaussian's is its covariance structure's
    E-step functions."""

    @property
    def e_step_form(self) -> Any: ...


@runtime_checkable
class EstimatesFromIterate(Protocol):
    """An M-step that starts from the current components ``params``: ``estimate_from(params,
    stats, counts, prior, active=None)``, for a family whose M-step is itself iterative (a
    Gaussian whose covariance structure shares an orientation: its inner loop warm-starts where
    the last M-step ended, as mclust's does). A mixture calls it in place of ``estimate``.
    A family whose ``estimate_from`` at components that are all NaN (no iterate) returns
    ``estimate``'s answer says so with ``starts_without_iterate = True``: `jaxem.grid` then
    starts it, as a family without ``estimate_from``, from a partition's statistics alone, its
    loop's first M-step taken at NaN."""

    def estimate_from(
        self, params: Params, stats: Any, counts: Array, prior: Prior | None, active: Any = None
    ) -> Params: ...


@runtime_checkable
class HasCovariances(Protocol):
    """Every component's covariance matrix, ``(K, D, D)`` (for drawing ellipses)."""

    def component_covariances(self, params: Params, n_components: int) -> Array: ...


@runtime_checkable
class TestsOutliers(Protocol):
    """``tail_probabilities(params, data) -> (K, N)``: the probability that a draw from
    component $k$ lies farther (in its own metric) than $x_n$, what `jaxem.Mixture.outliers`
    tests."""

    def tail_probabilities(self, params: Params, data: Any) -> Array: ...


@runtime_checkable
class HasScaleWeights(Protocol):
    """``scale_weights(params, data) -> (K, N)``: a scale mixture's posterior mean weights
    $\\mathbb{E}[u_{nk}]$ (the multivariate t's)."""

    def scale_weights(self, params: Params, data: Any) -> Array: ...


@runtime_checkable
class HasFactorScores(Protocol):
    """``factor_scores(params, data) -> (N, K, q)``: the latent factors' posterior means per
    component (factor analysers)."""

    def factor_scores(self, params: Params, data: Any) -> Array: ...


@runtime_checkable
class HasChart(Protocol):
    """Minimal local coordinates (`jaxem.charts`): ``chart(at, coordinates) -> params``,
    ``at`` at 0, ``coordinates`` ``(n_parameters,)``: what standard errors are computed in (a
    model's, of its ``n_parameters(D)`` coordinates; a family's, of ``n_parameters_for(K,
    D)``)."""

    def chart(self, at: Params, coordinates: Array) -> Params: ...


class FamilyCapabilities(NamedTuple):
    """What a family provides (see `of_family`): ``missing`` (NaN is a missing value),
    ``mixture_e_step`` when it computes a mixture's E-step itself (``fuses_e_step``),
    ``shares_parameters`` (a parameter common to all components: its ``estimate`` and
    ``log_prior`` accept ``active=``), ``start_prior``, ``collapsed``, ``estimate_from``
    (`EstimatesFromIterate`) and whether it takes NaN components for no iterate
    (``starts_without_iterate``, see there), its ``e_step_form`` (`SharesEStep`, or None),
    whether it has
    unconstrained coordinates (``extrapolates``) and its NumPyro description
    (``numpyro_components`` and ``numpyro_params``, or None), ``component_covariances``
    (Gaussians), ``chart`` (`HasChart`), ``tail_probabilities`` (`TestsOutliers`),
    ``scale_weights`` (`HasScaleWeights`) and ``factor_scores`` (`HasFactorScores`)."""

    missing: bool
    mixture_e_step: Callable | None
    shares_parameters: bool
    start_prior: Callable | None
    collapsed: Callable | None
    estimate_from: Callable | None
    starts_without_iterate: bool
    e_step_form: Any
    extrapolates: bool
    numpyro_components: Callable | None
    numpyro_params: Callable | None
    component_covariances: Callable | None
    chart: Callable | None
    tail_probabilities: Callable | None
    scale_weights: Callable | None
    factor_scores: Callable | None


def of_family(family: Any) -> FamilyCapabilities:
    """What ``family`` provides, resolved once (cached for hashable families, as jaxem's are)."""
    try:
        return _family_of_hashable(family)
    except TypeError:  # an unhashable family of one's own
        return _resolve_family(family)


@functools.lru_cache(maxsize=256)
def _family_of_hashable(family: Any) -> FamilyCapabilities:
    return _resolve_family(family)


def _resolve_family(family: Any) -> FamilyCapabilities:
    fuses = bool(getattr(family, "fuses_e_step", False)) and isinstance(family, FusesEStep)
    return FamilyCapabilities(
        missing=bool(getattr(family, "missing", False)),
        mixture_e_step=family.mixture_e_step if fuses else None,
        shares_parameters=bool(getattr(family, "shares_parameters", False)),
        start_prior=_method(family, StartsFromPrior, "start_prior"),
        collapsed=_method(family, Collapses, "collapsed"),
        estimate_from=_method(family, EstimatesFromIterate, "estimate_from"),
        starts_without_iterate=bool(getattr(family, "starts_without_iterate", False)),
        e_step_form=family.e_step_form if isinstance(family, SharesEStep) else None,
        extrapolates=isinstance(family, Extrapolates),
        numpyro_components=_method(family, DescribedInNumPyro, "numpyro_components"),
        numpyro_params=_method(family, DescribedInNumPyro, "numpyro_params"),
        component_covariances=_method(family, HasCovariances, "component_covariances"),
        chart=_method(family, HasChart, "chart"),
        tail_probabilities=_method(family, TestsOutliers, "tail_probabilities"),
        scale_weights=_method(family, HasScaleWeights, "scale_weights"),
        factor_scores=_method(family, HasFactorScores, "factor_scores"),
    )


def check_coordinates(family: Any) -> None:
    """``TypeError`` unless ``family`` has ``unconstrain`` and ``constrain``, the coordinates
    that extrapolation (``accelerate="squarem"``) moves in; see ``docs/families.md``."""
    if not of_family(family).extrapolates:
        raise TypeError(
            "accelerate='squarem' needs the family's unconstrained coordinates: "
            f"{type(family).__name__} has no unconstrain or constrain method (see "
            "docs/families.md, 'Unconstrained coordinates'); fit without accelerate, or add them"
        )
