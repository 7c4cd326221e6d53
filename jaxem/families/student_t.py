"""The multivariate t family: $p(x \\mid z = k) = t_{\\nu_k}(x \\mid \\mu_k, \\Sigma_k)$, with
location $\\mu_k$, scale matrix $\\Sigma_k$ in any Gaussian covariance structure (mclust's
fourteen, `jaxem.families.gaussian.structure`) and degrees of freedom $\\nu_k$, per component,
shared, or fixed.

The t is a scale mixture of normals: $x \\mid z = k, u \\sim \\mathcal{N}(\\mu_k, \\Sigma_k / u)$
with $u \\sim \\mathrm{Gamma}(\\nu_k / 2, \\nu_k / 2)$. EM treats the scale weights $u_{nk}$ as
latent beside $z_n$ (Peel and McLachlan 2000). With $\\delta_{nk} = (x_n - \\mu_k)^\\top
\\Sigma_k^{-1} (x_n - \\mu_k)$ and $\\alpha_k = (\\nu_k + D) / 2$, the E-step's posterior of
$u_{nk}$ is $\\mathrm{Gamma}(\\alpha_k, (\\nu_k + \\delta_{nk}) / 2)$:

$$
\\mathbb{E}[u_{nk}] = \\frac{\\nu_k + D}{\\nu_k + \\delta_{nk}}, \\qquad
\\mathbb{E}[\\log u_{nk}] = \\log \\mathbb{E}[u_{nk}] + \\psi(\\alpha_k) - \\log \\alpha_k,
$$

and the statistics (`StudentTStats`) are the Gaussian family's taken with the weights
$wr_{kn} \\mathbb{E}[u_{nk}]$, their total $U_k$, and
$L_k = \\sum_n wr_{kn} (\\mathbb{E}[\\log u_{nk}] - \\mathbb{E}[u_{nk}])$.

The expected complete-data log-likelihood separates into the locations and scales on one side
and $\\nu$ on the other, so the M-step is exact (a joint maximiser, not a conditional one,
wherever the structure's own M-step is):

- $\\mu_k = \\sum_n wr_{kn} u_{nk} x_n / U_k$, and the scale is the structure's Gaussian M-step
  with the $u$-weighted scatter about $\\mu_k$ and the counts $N_k$ (not $U_k$: the
  log-determinant is weighted by $N_k$);
- $\\nu_k$ is the root of $\\log(\\nu / 2) - \\psi(\\nu / 2) + 1 + L_k / N_k = 0$ (shared:
  $1 + \\sum_k L_k / \\sum_k N_k$). The objective in $\\nu$ is concave and this is its
  derivative, decreasing in $\\nu$, so the root is the maximiser, and clipped into
  ``dof_bounds`` it is the maximiser over the interval. It is found by bisection on
  $\\log \\nu$ (`maximise_dofs`), a fixed number of halvings inside the compiled M-step.

``dof_bounds`` (default $[2, 200]$, as EMMIX and teigen) is the prior on $\\nu$: uniform on the
interval, with maximum likelihood and with MAP alike. With a prior, the locations and scales get
the structure's conjugate prior (`jaxem.families.GaussianPrior`): the posterior mode's
locations are $(\\sum_n wr_{kn} u_{nk} x_n + \\kappa m) / (U_k + \\kappa)$ and its scale the
structure's MAP M-step, with the rank-one term of the prior's mean weighted by
$\\kappa U_k / (\\kappa + U_k)$ (the structure weighs it by $\\kappa N_k / (\\kappa + N_k)$: the
deviations are rescaled by the square root of the ratio).

As $\\nu \\to \\infty$, $u_{nk} \\to 1$ and the family becomes `jaxem.families.Gaussian`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, digamma, gammaln

from jaxem import charts
from jaxem.families.gaussian import Gaussian, GaussianParams, GaussianPrior
from jaxem.families.gaussian import structure as structures
from jaxem.families.gaussian.structure import CovarianceStructure
from jaxem.families.statistics import normalise
from jaxem.validation import as_float_array, is_concrete

Array = jax.Array

DOF_CHOICES = ("per_component", "shared")
# where estimated degrees of freedom start from a partition (teigen's default start)
DOF_START = 50.0
# halvings of the bracket [log lo, log hi] of ν: 2^-64 of a width of log(100) is below float64's
# resolution of log ν
N_BISECTIONS = 64


class StudentTParams(NamedTuple):
    """Attributes: means ``(K, D)`` (the locations $\\mu_k$); scales, the scale matrices
    $\\Sigma_k$ in the covariance structure's layout (``(K, D, D)`` full, ``(K, D)`` diag, ...,
    as `jaxem.families.GaussianParams.covariances`; the covariance is
    $\\nu_k / (\\nu_k - 2)\\, \\Sigma_k$ for $\\nu_k > 2$); dofs ``(K,)``, the degrees of freedom
    $\\nu_k$ (all equal when shared or fixed)."""

    means: Array
    scales: Array
    dofs: Array


class StudentTStats(NamedTuple):
    """Expected sufficient statistics, sums over samples, with $u_{nk}$ the scale weights'
    posterior means.

    Attributes:
        scale_sums: ``(K,)`` $U_k = \\sum_n wr_{kn} u_{nk}$.
        sums: ``(K, D)`` $\\sum_n wr_{kn} u_{nk} x_n$.
        shifts: ``(K, D)`` $\\sum_n wr_{kn} u_{nk} (x_n - \\mu_k)$, about the current means.
        scatter: $\\sum_n wr_{kn} u_{nk} (x_n - \\mu_k)(x_n - \\mu_k)^\\top$ in the structure's
            layout (`jaxem.families.GaussianStats.scatter`).
        log_scale_sums: ``(K,)`` $L_k = \\sum_n wr_{kn}
            (\\mathbb{E}[\\log u_{nk}] - \\mathbb{E}[u_{nk}])$, what $\\nu$'s update reads.
    """

    scale_sums: Array
    sums: Array
    shifts: Array
    scatter: Array
    log_scale_sums: Array


def maximise_dofs(
    log_scale_sums: Array, counts: Array, bounds: tuple[float, float], shared: bool
) -> Array:
    """The degrees of freedom maximising $\\sum_k N_k [\\tfrac{\\nu}{2} \\log \\tfrac{\\nu}{2}
    - \\log \\Gamma(\\tfrac{\\nu}{2})] + \\tfrac{\\nu}{2} L_k$ over ``bounds``, per component
    ``(K,)`` or one shared value broadcast to ``(K,)``: the root of
    $g(\\nu) = \\log(\\nu/2) - \\psi(\\nu/2) + c$, $c = 1 + L_k / N_k$, clipped into the
    bounds. $g$ decreases from $+\\infty$ to $c \\le 0$ (Jensen: $\\mathbb{E}\\log u \\le
    \\log \\mathbb{E} u \\le \\mathbb{E} u - 1$), so the bisection on $\\log \\nu$ over the
    bracket converges to the clipped root. A component without weight ($N_k = 0$) gets the upper
    bound."""
    dtype = counts.dtype
    if shared:
        counts, log_scale_sums = jnp.sum(counts)[None], jnp.sum(log_scale_sums)[None]
    tiny = jnp.finfo(dtype).tiny
    c = jnp.where(counts > tiny, 1.0 + log_scale_sums / jnp.maximum(counts, tiny), 0.0)
    lo = jnp.full(c.shape, math.log(bounds[0]), dtype)
    hi = jnp.full(c.shape, math.log(bounds[1]), dtype)

    def g(log_nu):
        half = 0.5 * jnp.exp(log_nu)
        return jnp.log(half) - digamma(half) + c

    def halve(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        above = g(middle) > 0  # the root lies above the middle
        return jnp.where(above, middle, low), jnp.where(above, high, middle)

    low, high = jax.lax.fori_loop(0, N_BISECTIONS, halve, (lo, hi))
    log_nu = jnp.where(g(hi) >= 0, hi, jnp.where(g(lo) <= 0, lo, 0.5 * (low + high)))
    nu = jnp.clip(jnp.exp(log_nu), *bounds)  # exp(log(bound)) may round past it
    return jnp.broadcast_to(nu, counts.shape if not shared else (1,))


def log_gamma_ratio(a: Array, h: float) -> Array:
    """$\\log \\Gamma(a + h) - \\log \\Gamma(a)$, accurate for every $a > 0$: the difference
    of two log-Gammas cancels catastrophically for large $a$ (an error of 0.02 at $a = 5 \\cdot
    10^{12}$ in float64; JAX's ``betaln`` is off by up to $10^{-7}$ for $a$ between 5 and
    $10^7$), so above $a = 50$ Stirling's series of the difference is used,
    $(a - \\tfrac12) \\log(1 + h/a) + h \\log(a + h) - h - \\tfrac{h}{12 a (a + h)} +
    \\tfrac{1}{360} (a^{-3} - (a + h)^{-3})$, whose next term is below $10^{-15}$ there."""
    large = a > 50
    b = jnp.where(large, a, 50.0)  # the series' branch never sees small a (its gradient neither)
    series = (
        (b - 0.5) * jnp.log1p(h / b)
        + h * jnp.log(b + h)
        - h
        - h / (12 * b * (b + h))
        + (b**-3 - (b + h) ** -3) / 360
    )
    c = jnp.where(large, 1.0, a)
    return jnp.where(large, series, gammaln(c + h) - gammaln(c))


def log_density(delta: Array, log_det: Array, dofs: Array, n_features: int) -> Array:
    """$\\log t_\\nu(x \\mid \\mu, \\Sigma)$ from the squared Mahalanobis distances ``delta``
    ``(K, N)``, $\\log|\\Sigma_k|$ and $\\nu_k$ ``(K,)``."""
    d = n_features
    const = log_gamma_ratio(0.5 * dofs, 0.5 * d) - 0.5 * d * jnp.log(dofs * math.pi) - 0.5 * log_det
    return const[:, None] - 0.5 * (dofs + d)[:, None] * jnp.log1p(delta / dofs[:, None])


@dataclasses.dataclass(frozen=True)
class StudentT:
    """Multivariate t components (static configuration; hashable).

    Args:
        covariance_type: the structure of the scale matrices, any name `jaxem.families.Gaussian`
            takes (``"full"``, ``"diag"``, mclust's fourteen ``"EII"`` ... ``"VVV"``) or a
            structure; kept as its name.
        dof: ``"per_component"`` (a $\\nu_k$ per component, estimated), ``"shared"`` (one
            $\\nu$, estimated), or a number > 0 (fixed, not estimated).
        dof_bounds: ``(low, high)`` with 0 < low < high: where estimated degrees of freedom
            may lie (their prior is uniform there). Default ``(2, 200)`` (EMMIX, teigen).
        reg_covar: added to the diagonal of every scale matrix in the maximum-likelihood
            M-step (as `jaxem.families.Gaussian`).
    """

    params_type: ClassVar[type] = StudentTParams
    prior_type: ClassVar[type] = GaussianPrior
    name: ClassVar[str] = "t"
    options: ClassVar[tuple[str, ...]] = ("covariance_type", "dof")

    covariance_type: str | CovarianceStructure = "full"
    dof: str | float = "per_component"
    dof_bounds: tuple[float, float] = (2.0, 200.0)
    reg_covar: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "covariance_type", structures.of(self.covariance_type).name)
        if isinstance(self.dof, str):
            if self.dof not in DOF_CHOICES:
                raise ValueError(
                    f"dof must be one of {DOF_CHOICES} or a number > 0; got {self.dof!r}"
                )
        elif isinstance(self.dof, (int, float, np.integer, np.floating)) and not isinstance(
            self.dof, bool
        ):
            if not (np.isfinite(self.dof) and self.dof > 0):
                raise ValueError(f"a fixed dof must be a finite number > 0; got {self.dof!r}")
            object.__setattr__(self, "dof", float(self.dof))
        else:
            raise TypeError(f"dof must be one of {DOF_CHOICES} or a number > 0; got {self.dof!r}")
        bounds = self.dof_bounds
        if (
            not isinstance(bounds, (tuple, list))
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and np.isfinite(b) for b in bounds)
            or not 0 < bounds[0] < bounds[1]
        ):
            raise ValueError(f"dof_bounds must be (low, high) with 0 < low < high; got {bounds!r}")
        object.__setattr__(self, "dof_bounds", (float(bounds[0]), float(bounds[1])))
        # the checks of reg_covar are the Gaussian family's
        Gaussian(self.covariance_type, self.reg_covar)

    @property
    def gaussian(self) -> Gaussian:
        """The Gaussian family of the same structure: the scales' M-step, checks and prior."""
        return Gaussian(self.covariance_type, self.reg_covar)

    @property
    def structure(self) -> CovarianceStructure:
        """The covariance structure of the scale matrices."""
        return structures.of(self.covariance_type)

    @property
    def estimates_dof(self) -> bool:
        """Whether $\\nu$ is estimated (not fixed)."""
        return isinstance(self.dof, str)

    @classmethod
    def for_data(cls, X: Any, missing: bool = False, **options: Any) -> StudentT:
        """The family for data ``X`` (as the command line makes it)."""
        if missing:
            raise ValueError("the t family does not take missing values (NaN) yet")
        return cls(**{k: v for k, v in options.items() if v is not None})

    def describe(self) -> str:
        return f"t, covariance_type={self.covariance_type!r}, dof={self.dof!r}"

    # -- data ------------------------------------------------------------------------------

    def check_data(self, X: Any, name: str = "X") -> Array:
        """A floating ``(N, D)`` array of finite values."""
        return self.gaussian.check_data(X, name)

    def prepare(self, X: Array, weights: Array) -> Any:
        """The Gaussian family's features (`jaxem.families.GaussianData`), once per fit."""
        return self.gaussian.prepare(X, weights)

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The Gaussian family's, and three more ``(K,)`` arrays (distances, scale weights)."""
        gaussian = self.gaussian.bytes_per_sample_for(n_features, n_components, itemsize)
        return gaussian + 3 * n_components * itemsize

    def init_points(self, X: Array) -> Array:
        """The points k-means seeds the components on: ``X`` itself."""
        return X

    # -- E-step ----------------------------------------------------------------------------

    def distances(self, params: StudentTParams, data: Any) -> tuple[Array, Array]:
        """The squared Mahalanobis distances $\\delta_{nk}$ ``(K, N)`` under the scales, and
        $\\log|\\Sigma_k|$ ``(K,)`` (`jaxem.families.Gaussian.distances`)."""
        return self.gaussian.distances(GaussianParams(params.means, params.scales), data)

    def log_likelihoods(self, params: StudentTParams, data: Any) -> Array:
        """$\\log t_{\\nu_k}(x_n \\mid \\mu_k, \\Sigma_k)$, ``(K, N)``."""
        delta, log_det = self.distances(params, data)
        return log_density(delta, log_det, params.dofs, data.centre.shape[-1])

    def scale_weights(self, params: StudentTParams, data: Any) -> Array:
        """$\\mathbb{E}[u_{nk}] = (\\nu_k + D) / (\\nu_k + \\delta_{nk})$, ``(K, N)``: how much
        each sample counts in component $k$'s location and scale (small for outliers)."""
        delta, _ = self.distances(params, data)
        d = data.centre.shape[-1]
        return (params.dofs[:, None] + d) / (params.dofs[:, None] + delta)

    def tail_probabilities(self, params: StudentTParams, data: Any) -> Array:
        """$P(\\Delta \\ge \\delta_{nk})$ ``(K, N)`` for $\\Delta$ the squared Mahalanobis
        distance of a draw from component $k$: $\\Delta / D \\sim F(D, \\nu_k)$, so
        $P = I_{\\nu / (\\nu + \\delta)}(\\nu/2, D/2)$ (the regularised incomplete beta)."""
        delta, _ = self.distances(params, data)
        d = data.centre.shape[-1]
        nu = params.dofs[:, None]
        return betainc(0.5 * nu, 0.5 * d, nu / (nu + delta))

    def stats(self, data: Any, wr: Array, params: StudentTParams | None = None) -> StudentTStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)`` with the scale weights
        under ``params`` (taken about its means). None: a start from a partition, every scale
        weight one (the Gaussian statistics) and $L_k$ such that the M-step's $\\nu$ is
        `DOF_START` (clipped into the bounds)."""
        if params is None:
            gaussian = self.gaussian.stats(data, wr)
            counts = jnp.sum(wr, axis=1)
            half = 0.5 * DOF_START
            c = digamma(jnp.asarray(half, counts.dtype)) - math.log(half)  # g(DOF_START) = 0
            return StudentTStats(counts, *gaussian, counts * (c - 1.0))
        delta, _ = self.distances(params, data)
        return self._stats(data, wr, delta, params)

    def _stats(self, data: Any, wr: Array, delta: Array, params: StudentTParams) -> StudentTStats:
        d = data.centre.shape[-1]
        nu = params.dofs[:, None]
        u = (nu + d) / (nu + delta)
        half = 0.5 * (params.dofs + d)
        log_terms = jnp.log(u) - u + (digamma(half) - jnp.log(half))[:, None]
        wru = wr * u
        gaussian = self.gaussian.stats(data, wru, GaussianParams(params.means, params.scales))
        scale_sums = jnp.sum(wru, axis=1)
        return StudentTStats(scale_sums, *gaussian, jnp.sum(wr * log_terms, axis=1))

    fuses_e_step: ClassVar[bool] = True

    def mixture_e_step(
        self, params: StudentTParams, data: Any, log_weights: Array, weights: Array
    ) -> tuple[Array, StudentTStats, Array]:
        """A mixture's E-step in one pass over the distances: $N_k$ ``(K,)``, the statistics
        and $\\sum_n w_n \\log p(x_n)$, given the mixture's ``log_weights`` ``(K,)`` and the
        sample ``weights`` ``(N,)``."""
        delta, log_det = self.distances(params, data)
        log_joint = log_density(delta, log_det, params.dofs, data.centre.shape[-1])
        resp, log_px = normalise(log_joint + log_weights[:, None])
        wr = resp * weights
        loglik = jnp.sum(jnp.where(weights > 0, weights * log_px, 0.0))
        return jnp.sum(wr, axis=1), self._stats(data, wr, delta, params), loglik

    # -- M-step ----------------------------------------------------------------------------

    @property
    def e_step_form(self) -> tuple:
        """Equal for t families whose E-steps are the same computation, differing at most in
        their M-step (`jaxem.capabilities.SharesEStep`): the Gaussian's, with the same
        treatment of $\\nu$."""
        return (type(self), self.dof, self.dof_bounds, self.reg_covar, self.gaussian.e_step_form)

    @property
    def shares_parameters(self) -> bool:
        """Whether a parameter serves every component: a shared scale factor or a shared
        $\\nu$."""
        return self.structure.shared or self.dof == "shared"

    # `estimate_from` at NaN covariances is `estimate`: every structure's `maximise_from` takes
    # NaN for no iterate (`jaxem.capabilities.EstimatesFromIterate`)
    starts_without_iterate: ClassVar[bool] = True

    def estimate(
        self,
        stats: StudentTStats,
        counts: Array,
        prior: GaussianPrior | None = None,
        active: Array | None = None,
    ) -> StudentTParams:
        """Locations, scales and degrees of freedom from the statistics and $N_k$ ``(K,)``;
        with a prior the posterior mode (see the module). ``active`` ``(K,)`` booleans: as
        `jaxem.families.Gaussian.estimate`."""
        return self._estimate(None, stats, counts, prior, active)

    def estimate_from(
        self,
        params: StudentTParams,
        stats: StudentTStats,
        counts: Array,
        prior: GaussianPrior | None = None,
        active: Array | None = None,
    ) -> StudentTParams:
        """`estimate` at the current components (an iterative structure starts from their
        scales)."""
        return self._estimate(params.scales, stats, counts, prior, active)

    def _estimate(self, previous, stats, counts, prior, active) -> StudentTParams:
        if prior is not None:
            means, scales = self._map(stats, counts, prior, active)
        else:
            means, scales = self._mle(previous, stats, counts)
        return StudentTParams(means, scales, self._dofs(stats, counts))

    def _dofs(self, stats: StudentTStats, counts: Array) -> Array:
        if not self.estimates_dof:
            return jnp.full(counts.shape, self.dof, counts.dtype)
        dofs = maximise_dofs(stats.log_scale_sums, counts, self.dof_bounds, self.dof == "shared")
        return jnp.broadcast_to(dofs, counts.shape)

    def _mle(self, previous, stats: StudentTStats, counts: Array) -> tuple[Array, Array]:
        structure = self.structure
        total = jnp.sum(counts)
        floor = 10 * jnp.finfo(counts.dtype).eps * total
        empty = counts < floor
        counts = counts + floor
        # not sums / (scale_sums + floor): that moves every mean towards the origin
        means = stats.sums / jnp.maximum(stats.scale_sums, floor)[:, None]
        scale_sums = stats.scale_sums + floor
        within = structure.within(stats.scatter, stats.shifts, 1.0 / scale_sums)
        centre = jnp.sum(stats.sums, axis=0) / jnp.sum(scale_sums)
        spread = (means - centre) ** 2
        if previous is None:
            scales = structure.maximise(within, counts, self.reg_covar, spread)
        else:
            scales = structure.maximise_from(previous, within, counts, self.reg_covar, spread)
        means = jnp.where(empty[:, None], centre, means)
        return means, structure.fill_empty(scales, empty, counts)

    def _map(self, stats: StudentTStats, n: Array, prior: GaussianPrior, active) -> tuple:
        structure = self.structure
        u = stats.scale_sums
        kappa = prior.kappa if structure.shrinks_means else jnp.zeros_like(prior.kappa)
        pseudo = u + kappa
        means = (stats.sums + kappa * prior.mean) / jnp.where(pseudo > 0, pseudo, 1.0)[:, None]
        means = jnp.where((pseudo > 0)[:, None], means, prior.mean)
        safe_u = jnp.where(u > 0, u, 1.0)
        within = structure.within(stats.scatter, stats.shifts, jnp.where(u > 0, 1.0 / safe_u, 0.0))
        deviations = stats.sums / safe_u[:, None] - prior.mean
        # the structure weighs the rank-one term by κN/(κ+N); the t's is κU/(κ+U)
        safe_n = jnp.where(n > 0, n, 1.0)
        ratio = jnp.where(n > 0, u * (safe_n + prior.kappa) / (safe_n * (u + prior.kappa)), 0.0)
        deviations = deviations * jnp.sqrt(ratio)[:, None]
        n_means = deviations.shape[0] if active is None else jnp.sum(active)
        scales = structure.map_estimate(within, deviations, n, prior, n_means)
        return means, scales

    # -- the prior -------------------------------------------------------------------------

    def _n_free_dofs(self, n_components: int) -> int:
        return {"per_component": n_components, "shared": 1}.get(self.dof, 0)

    def log_prior(
        self, params: StudentTParams, prior: GaussianPrior, active: Array | None = None
    ) -> Array:
        """The structure's conjugate log density of the locations and scales, plus the uniform
        density of the estimated degrees of freedom on ``dof_bounds``."""
        gaussian = GaussianParams(params.means, params.scales)
        if active is not None and self.structure.shared:
            density = self.gaussian.log_prior(gaussian, prior, active)
        else:
            density = self.gaussian.log_prior(gaussian, prior)
        low, high = self.dof_bounds
        k = params.dofs.shape[-1]
        return density - self._n_free_dofs(k) * math.log(high - low)

    def default_prior_for(self, X: Array, n_components: int) -> GaussianPrior:
        """mclust's default conjugate prior of the structure
        (`jaxem.families.Gaussian.default_prior_for`)."""
        return self.gaussian.default_prior_for(X, n_components)

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> GaussianPrior:
        """The structure's `jaxem.families.GaussianPrior` checks."""
        return self.gaussian.check_prior_for(prior, n_components, n_features, dtype, name)

    def check_prior_values(self, prior: GaussianPrior, n_features: int, name: str = "prior"):
        self.gaussian.check_prior_values(prior, n_features, name)

    # -- parameters ------------------------------------------------------------------------

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> StudentTParams:
        """Shapes against ``(K, D)`` and the structure; with concrete values finite entries,
        valid scales and degrees of freedom > 0. Returns the params cast to ``dtype``."""
        if not isinstance(params, StudentTParams):
            raise TypeError(
                f"{name} must be a StudentTParams(means, scales, dofs); got {type(params).__name__}"
            )
        k = n_components
        try:
            gaussian = self.gaussian.check_params_for(
                GaussianParams(params.means, params.scales), k, n_features, dtype, name
            )
        except ValueError as error:  # the Gaussian family calls the scales covariances
            raise ValueError(str(error).replace(f"{name}.covariances", f"{name}.scales")) from None
        dofs = as_float_array(params.dofs, f"{name}.dofs").astype(dtype)
        if dofs.shape != (k,):
            raise ValueError(f"{name}.dofs must have shape ({k},); got {dofs.shape}")
        if is_concrete(dofs):
            v = np.asarray(dofs, dtype=np.float64)
            if not np.all(np.isfinite(v) & (v > 0)):
                raise ValueError(f"{name}.dofs must be finite and > 0; got {v}")
        return StudentTParams(gaussian.means, gaussian.covariances, dofs)

    def n_parameters_for(self, n_components: int, n_features: int) -> int:
        """The Gaussian family's count, and the estimated degrees of freedom (K, 1 or 0)."""
        gaussian = self.gaussian.n_parameters_for(n_components, n_features)
        return gaussian + self._n_free_dofs(n_components)

    def sample_given(self, key: Array, params: StudentTParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)`` from its component: ``(N, D)``, as
        $\\mu + \\varepsilon / \\sqrt{u}$, $\\varepsilon \\sim \\mathcal{N}(0, \\Sigma)$,
        $u \\sim \\mathrm{Gamma}(\\nu/2, \\nu/2)$."""
        means = jnp.asarray(params.means)
        dofs = jnp.asarray(params.dofs, means.dtype)[labels]
        normal_key, gamma_key = jax.random.split(key)
        noise = self.structure.noise(normal_key, jnp.asarray(params.scales), labels, means.shape[1])
        u = jax.random.gamma(gamma_key, 0.5 * dofs, dtype=means.dtype) / (0.5 * dofs)
        return means[labels] + noise / jnp.sqrt(u)[:, None]

    def unconstrain(self, params: StudentTParams) -> StudentTParams:
        """The Gaussian family's coordinates of the locations and scales, and $\\log \\nu$."""
        gaussian = self.gaussian.unconstrain(GaussianParams(params.means, params.scales))
        return StudentTParams(gaussian.means, gaussian.covariances, jnp.log(params.dofs))

    def constrain(self, coordinates: StudentTParams) -> StudentTParams:
        """The parameters of unconstrained ``coordinates``; $\\nu$ clipped into
        ``dof_bounds`` (a fixed $\\nu$ stays)."""
        gaussian = self.gaussian.constrain(GaussianParams(coordinates.means, coordinates.scales))
        log_nu = coordinates.dofs
        if self.estimates_dof:
            dofs = jnp.clip(jnp.exp(log_nu), *self.dof_bounds)
            if self.dof == "shared":  # an extrapolation keeps them equal; rounding may not
                dofs = jnp.broadcast_to(jnp.mean(dofs, axis=-1, keepdims=True), dofs.shape)
        else:
            dofs = jnp.full(log_nu.shape, self.dof, log_nu.dtype)
        return StudentTParams(gaussian.means, gaussian.covariances, dofs)

    def chart(self, at: StudentTParams, coordinates: Array) -> StudentTParams:
        """Parameters near ``at`` from ``n_parameters_for(K, D)`` coordinates (`jaxem.charts`):
        the Gaussian family's chart of the locations and scales, then the estimated degrees of
        freedom (K, or one shared), as they are."""
        k, d = at.means.shape
        n_gaussian = self.gaussian.n_parameters_for(k, d)
        gaussian_part, dof_part = charts.split(coordinates, [n_gaussian, self._n_free_dofs(k)])
        gaussian = self.gaussian.chart(GaussianParams(at.means, at.scales), gaussian_part)
        dofs = at.dofs
        if self.dof == "per_component":
            dofs = dofs + dof_part
        elif self.dof == "shared":
            dofs = dofs + dof_part[0]
        return StudentTParams(gaussian.means, gaussian.covariances, dofs)

    def permute(self, params: StudentTParams, order: Any) -> StudentTParams:
        """``params`` with components in ``order`` (a shared scale factor stays)."""
        gaussian = self.gaussian.permute(GaussianParams(params.means, params.scales), order)
        dofs = jnp.take(params.dofs, jnp.asarray(order), axis=-1)
        return StudentTParams(gaussian.means, gaussian.covariances, dofs)

    def collapsed(self, params: StudentTParams, weights: Any = None) -> np.ndarray:
        """The Gaussian family's test on the scale matrices
        (`jaxem.families.Gaussian.collapsed`)."""
        return self.gaussian.collapsed(GaussianParams(params.means, params.scales), weights)

    # -- NumPyro (for `jaxem.crosscheck`; the family never imports NumPyro) ----------------

    def numpyro_components(self, dist: Any, params: StudentTParams) -> Any:
        """The K components: multivariate t's, batch ``(K,)``, event ``(D,)``."""
        k, d = params.means.shape
        scales = jnp.broadcast_to(self.structure.matrices(params.scales, d), (k, d, d))
        return dist.MultivariateStudentT(
            params.dofs, params.means, scale_tril=jnp.linalg.cholesky(scales)
        )

    def numpyro_params(
        self,
        sample: Any,
        dist: Any,
        prior: GaussianPrior | None,
        n_components: int,
        n_features: int,
    ) -> StudentTParams:
        """``means``, ``scales`` (the Gaussian family's sites, its ``covariances`` renamed)
        and ``dofs``, uniform on ``dof_bounds`` (without a prior flat, 0, as the
        likelihood). Only ``dof="per_component"``: a shared or fixed $\\nu$ is not one site per
        component, ``ValueError``."""
        if self.dof != "per_component":
            raise ValueError(
                "the NumPyro cross-check takes one degrees-of-freedom site per component: build "
                "the t family with dof='per_component'"
            )

        def renamed(name, *args, **kwargs):
            return sample("scales" if name == "covariances" else name, *args, **kwargs)

        gaussian = self.gaussian.numpyro_params(renamed, dist, prior, n_components, n_features)
        k, (low, high) = n_components, self.dof_bounds
        if prior is None:
            support = dist.constraints.interval(low, high)
            dofs = sample("dofs", dist.ImproperUniform(support, (), (k,)))
        else:
            dofs = sample("dofs", dist.Uniform(low, high).expand((k,)).to_event(1))
        return StudentTParams(gaussian.means, gaussian.covariances, dofs)
