"""The Gaussian family: $p(x \\mid z = k) = \\mathcal{N}(x \\mid \\mu_k, \\Sigma_k)$, with full,
diag, spherical or tied covariances (one module each beside this one).

Given weighted responsibilities $wr_{kn} = w_n r_{nk}$ and $N_k = \\sum_n wr_{kn}$, the
statistics (`GaussianStats`) are

$$
s_k = \\sum_n wr_{kn} x_n, \\quad
d_k = \\sum_n wr_{kn} (x_n - \\mu_k), \\quad
S_k = \\sum_n wr_{kn} (x_n - \\mu_k)(x_n - \\mu_k)^\\top,
$$

taken about the current means $\\mu_k$. They come from two matrix products over features of
the data centred on its weighted mean, computed once per fit (`Gaussian.prepare`): the
log-densities as quadratic-form coefficients times the features, the statistics as the features
times the responsibilities (see ``docs/gaussian_mixture.md``). The maximum-likelihood M-step is

$$
\\mu'_k = \\frac{s_k}{N_k}, \\quad
\\Sigma'_k = \\frac{S_k}{N_k} - \\delta_k \\delta_k^\\top + \\epsilon I, \\quad
\\delta_k = \\frac{d_k}{N_k} = \\mu'_k - \\mu_k,
$$

with $\\epsilon$ = ``reg_covar`` and the diagonal, spherical and tied analogues in the
covariance modules. $N_k$ is raised by ten machine epsilons (times the total weight) before
dividing, as scikit-learn does, except in the means, which divide by $N_k$ itself (raised to
that floor only if below it): the raised count moved every float32 mean towards the origin by a
relative $10 \\epsilon N / N_k$ (by 0.3 for data at 1e5). An *empty* component ($N_k$ under
that floor) gets the weighted mean of all the data and the count-weighted average of the other
components' covariances, so it stays finite, positive definite, and may pick points up again.
The MAP M-step (conjugate Normal-Inverse-Wishart or Normal-Inverse-Gamma prior,
`GaussianPrior`) is in ``docs/map.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaincc

from jaxem import charts
from jaxem.families.gaussian import diag, full, missing, spherical, tied
from jaxem.families.gaussian import structure as structures
from jaxem.families.gaussian.structure import CovarianceStructure
from jaxem.families.statistics import checked_shapes, data_centre, fill_means, weighted_sums
from jaxem.validation import as_float_array, check_data, is_concrete, worst

Array = jax.Array

# scikit-learn's four covariance types; every registered structure's name works
# (`jaxem.families.gaussian.structure.names()`: mclust's fourteen, and one's own,
# `jaxem.families.gaussian.structure.register`)
COVARIANCE_TYPES = tuple(
    s.name for s in (full.Full(), diag.Diagonal(), spherical.Spherical(), tied.Tied())
)
# mclust's fourteen models in mclust's order, what `jaxem.select` tries by default (as Mclust)
MCLUST_MODELS = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip


class GaussianParams(NamedTuple):
    """Attributes: means ``(K, D)``; covariances in the layout of the covariance structure:
    ``(K, D, D)`` full, ``(K, D)`` diag, ``(K,)`` spherical, ``(D, D)`` tied (scikit-learn's
    shapes)."""

    means: Array
    covariances: Array


class GaussianPrior(NamedTuple):
    """The conjugate prior of the means and covariances (a pytree).

    Attributes:
        mean: ``(D,)``, the prior mean $m$ of every component mean.
        kappa: > 0, the prior's pseudo-count for the means.
        dof: $\\nu$; > D - 1 for full and tied, > 0 for diag and spherical
            (`CovarianceStructure.dof_minimum`).
        scale: $\\Psi$ in the structure's layout (`CovarianceStructure.scale_shape`):
            ``(D, D)`` symmetric positive definite (full, tied), ``(D,)`` positive (diag), a
            positive scalar (spherical).
    """

    mean: Any
    kappa: Any
    dof: Any
    scale: Any


class GaussianData(NamedTuple):
    """The data as the E-step reads it (`Gaussian.prepare`).

    Attributes:
        centre: ``(D,)`` the weighted mean of the data.
        features: ``(Q + D, N)``: the covariance structure's ``Q`` quadratic features of
            $x_n - c$ stacked on $x_n - c$.
    """

    centre: Array
    features: Array


class GaussianStats(NamedTuple):
    """Expected sufficient statistics; every field is a sum over samples.

    Attributes:
        sums: ``(K, D)`` $\\sum_n wr_{kn} x_n$.
        shifts: ``(K, D)`` $\\sum_n wr_{kn} (x_n - \\mu_k)$, $\\mu_k$ the means about which
            the statistics were taken.
        scatter: $\\sum_n wr_{kn} (x_n - \\mu_k)(x_n - \\mu_k)^\\top$ in the covariance
            structure's layout (`CovarianceStructure.scatter`): ``(K, D, D)`` full, ``(K, D)``
            diag, ``(K,)`` spherical, ``(D, D)`` tied (summed over components).
    """

    sums: Array
    shifts: Array
    scatter: Array


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Multivariate normal components (static configuration; hashable).

    Args:
        covariance_type: the covariance structure: ``"full"``, ``"diag"``, ``"spherical"`` or
            ``"tied"`` (or mclust's names for them, ``"VVV"``, ``"VVI"``, ``"VII"``,
            ``"EEE"``), the name of a registered structure, or a
            `jaxem.families.gaussian.structure.CovarianceStructure`; kept as its name.
        reg_covar: added to the diagonal of every covariance in the maximum-likelihood M-step,
            as scikit-learn does, to keep them positive definite.
        missing: whether ``X`` may hold NaN for values missing at random; the E-step then
            takes the conditional expectations of the missing values given the observed ones
            (`jaxem.families.gaussian.missing`) and the log-likelihood is that of the observed
            values. False: NaN is an error.
    """

    # what a model file holds of the parameters and the prior (jaxem.families.registry)
    params_type: ClassVar[type] = GaussianParams
    prior_type: ClassVar[type] = GaussianPrior
    # its name on the command line and in messages, and the options it takes there
    name: ClassVar[str] = "gaussian"
    options: ClassVar[tuple[str, ...]] = ("covariance_type",)

    covariance_type: str | CovarianceStructure = "full"
    reg_covar: float = 1e-6
    missing: bool = False

    def __post_init__(self):
        object.__setattr__(self, "covariance_type", structures.of(self.covariance_type).name)
        if not np.isfinite(self.reg_covar) or self.reg_covar < 0:
            raise ValueError(f"reg_covar must be a finite number >= 0; got {self.reg_covar!r}")
        if not isinstance(self.missing, bool):
            raise TypeError(f"missing must be True or False; got {self.missing!r}")

    @property
    def structure(self) -> CovarianceStructure:
        """The covariance structure `covariance_type` names."""
        return structures.of(self.covariance_type)

    @classmethod
    def for_data(cls, X: Any, missing: bool = False, **options: Any) -> Gaussian:
        """The family for data ``X`` (as the command line makes it): ``missing`` and the
        ``options`` it declares."""
        return cls(missing=missing, **options)

    def describe(self) -> str:
        extra = ", missing=True" if self.missing else ""
        return f"covariance_type={self.covariance_type!r}{extra}"

    # -- data ------------------------------------------------------------------------------

    def check_data(self, X: Any, name: str = "X") -> Array:
        """A floating ``(N, D)`` array, finite (with ``missing``: finite or NaN)."""
        return check_data(X, name, missing=self.missing)

    def prepare(self, X: Array, weights: Array) -> GaussianData | missing.MissingData:
        """The weighted mean ``centre`` ``(D,)`` and ``features`` ``(Q + D, N)``: the quadratic
        features of the centred data stacked on the centred data (see
        `jaxem.families.gaussian.full`); computed once per fit. With ``missing``:
        `jaxem.families.gaussian.missing.MissingData`."""
        if self.missing:
            return missing.prepare(X, weights, self.structure.coupled)
        centre = data_centre(X, weights)  # a block may hold no weight: then 0
        centred = (X - centre).T
        squares = self.structure.squares(centred)
        return GaussianData(centre, jnp.concatenate([squares, centred], axis=0))

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The E-step's working memory per sample: the features, the centred row and about
        four ``(K,)`` arrays (log joint, its exponent, responsibilities, weighted ones)."""
        d, k = n_features, n_components
        q = jax.eval_shape(self.structure.squares, jax.ShapeDtypeStruct((d, 1), "float32")).shape[0]
        if self.missing and self.structure.coupled:
            # the rows sorted into groups (the complete-data features, observed, slots) beside
            # the data; the groups' (rows, K, D) temporaries are bounded by the group size
            return itemsize * (q + 5 * d + 6 * k)
        return itemsize * (q + (4 if self.missing else 2) * d + 4 * k)

    def init_points(self, X: Array) -> Array:
        """The points k-means seeds the components on: ``X`` itself (with ``missing``, each
        missing value replaced by its column's observed mean)."""
        return fill_means(X) if self.missing else X

    # -- E-step ----------------------------------------------------------------------------

    def log_likelihoods(self, params: GaussianParams, data: GaussianData) -> Array:
        """$\\log \\mathcal{N}(x_n \\mid \\mu_k, \\Sigma_k)$, ``(K, N)``: one matrix product of
        the quadratic form's coefficients with the features. With ``missing``: of the observed
        values, $\\log \\mathcal{N}(x_{n,o} \\mid \\mu_{k,o}, \\Sigma_{k,oo})$."""
        if self.missing:
            return self._missing_log_likelihoods(params, data)
        offsets = params.means - data.centre
        d = offsets.shape[-1]
        a, b, c, log_det = self.structure.quadratic_form(params.covariances, offsets)
        coef = -0.5 * jnp.concatenate([a, b], axis=1)  # (K, Q + D)
        bias = -0.5 * (d * math.log(2 * math.pi) + log_det + c)
        return coef @ data.features + bias[:, None]

    def distances(self, params: GaussianParams, data: GaussianData) -> tuple[Array, Array]:
        """The squared Mahalanobis distances $\\delta_{nk} = (x_n - \\mu_k)^\\top
        \\Sigma_k^{-1} (x_n - \\mu_k)$ ``(K, N)`` (one matrix product with the features, as
        `log_likelihoods`) and $\\log|\\Sigma_k|$ ``(K,)``; not with ``missing``."""
        self._check_complete("distances")
        offsets = params.means - data.centre
        a, b, c, log_det = self.structure.quadratic_form(params.covariances, offsets)
        delta = jnp.concatenate([a, b], axis=1) @ data.features + c[:, None]
        return jnp.maximum(delta, 0.0), log_det

    def tail_probabilities(self, params: GaussianParams, data: GaussianData) -> Array:
        """$P(\\Delta \\ge \\delta_{nk})$ ``(K, N)`` for $\\Delta \\sim \\chi^2_D$, the
        squared Mahalanobis distance of a draw from component $k$ (what
        `jaxem.Mixture.outliers` tests); not with ``missing``."""
        delta, _ = self.distances(params, data)
        return gammaincc(0.5 * delta.dtype.type(data.centre.shape[-1]), 0.5 * delta)

    def _check_complete(self, what: str) -> None:
        if self.missing:
            raise ValueError(f"{what} needs complete rows: this family has missing=True")

    def stats(
        self, data: GaussianData, wr: Array, params: GaussianParams | None = None
    ) -> GaussianStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)``, taken about
        ``params.means`` (None: about the responsibility-weighted means). With ``missing``, of
        the missing values' conditional expectations given the observed ones under ``params``
        (None: a start from a partition, missing values at their component's observed mean)."""
        if self.missing:
            return self._missing_stats(data, wr, params)
        moments = weighted_sums(data.features, wr)  # (K, Q + D)
        d = data.centre.shape[-1]
        squares, firsts = moments[:, :-d], moments[:, -d:]
        counts = jnp.sum(wr, axis=1)
        if params is None:
            offsets = firsts / jnp.maximum(counts, jnp.finfo(wr.dtype).tiny)[:, None]
        else:
            offsets = params.means - data.centre
        return GaussianStats(
            sums=firsts + counts[:, None] * data.centre,
            shifts=firsts - counts[:, None] * offsets,
            scatter=self.structure.scatter(squares, firsts, counts, offsets),
        )

    @property
    def fuses_e_step(self) -> bool:
        """Whether a mixture's E-step goes through `mixture_e_step` (with missing values and
        a coupled structure, covariance matrices: one pass instead of two)."""
        return self.missing and self.structure.coupled

    def mixture_e_step(
        self, params: GaussianParams, data: missing.MissingData, log_weights: Array, weights: Array
    ) -> tuple[Array, GaussianStats, Array]:
        """A mixture's E-step in one pass (see `fuses_e_step`): $N_k$ ``(K,)``, the statistics
        and $\\sum_n w_n \\log p(x_{n,o})$, given the mixture's ``log_weights`` ``(K,)`` and the
        sample ``weights`` ``(N,)`` (`missing.coupled_mixture_e_step`)."""
        offsets = params.means - data.centre
        d = offsets.shape[-1]
        counts, sums, shifts, scatters, loglik = missing.coupled_mixture_e_step(
            self.structure.matrices(params.covariances, d), offsets, data, log_weights, weights
        )
        return counts, GaussianStats(sums, shifts, self.structure.reduce(scatters)), loglik

    def _missing_log_likelihoods(self, params: GaussianParams, data: missing.MissingData):
        offsets = params.means - data.centre
        k, d = offsets.shape
        if self.structure.coupled:
            matrices = self.structure.matrices(params.covariances, d)
            return missing.coupled_log_likelihoods(matrices, offsets, data)
        variance = self.structure.variances(params.covariances, k, d)
        return missing.independent_log_likelihoods(variance, offsets, data)

    def _missing_stats(
        self, data: missing.MissingData, wr: Array, params: GaussianParams | None
    ) -> GaussianStats:
        k, d = wr.shape[0], data.centre.shape[-1]
        offsets = None if params is None else params.means - data.centre
        cov = None if params is None else params.covariances
        if self.structure.coupled:
            matrices = None if cov is None else self.structure.matrices(cov, d)
            sums, shifts, scatters = missing.coupled_moments(matrices, offsets, data, wr)
        else:
            variance = None if cov is None else self.structure.variances(cov, k, d)
            sums, shifts, scatters = missing.independent_moments(variance, offsets, data, wr)
        return GaussianStats(sums, shifts, self.structure.reduce(scatters))

    # -- imputation (with ``missing``) -----------------------------------------------------

    def impute(self, params: GaussianParams, data: missing.MissingData, resp: Array) -> Array:
        """The conditional mean of every value given the observed ones,
        $\\sum_k r_{nk} \\mathbb{E}[x_n \\mid x_{n,o}, z = k]$, ``(N, D)``, from the
        responsibilities ``resp`` ``(K, N)``; observed values are returned as they are."""
        means = self._conditional_means(params, data)
        return jnp.einsum("kn,knd->nd", resp, means)

    def _conditional_means(self, params: GaussianParams, data: missing.MissingData) -> Array:
        offsets = params.means - data.centre
        k, d = offsets.shape
        if self.structure.coupled:
            matrices = self.structure.matrices(params.covariances, d)
            return missing.coupled_conditional_means(matrices, offsets, data)
        return missing.independent_conditional_means(offsets, data)

    def impute_sample(
        self, key: Array, params: GaussianParams, data: missing.MissingData, labels: Array
    ) -> Array:
        """One draw of the missing values from $p(x_{n,m} \\mid x_{n,o}, z_n)$ given each
        row's component ``labels`` ``(N,)``; observed values as they are. ``(N, D)``."""
        k, d = params.means.shape
        means = self._conditional_means(params, data)
        chosen = jnp.take_along_axis(means, labels[None, :, None], axis=0)[0]
        if self.structure.coupled:
            matrices = self.structure.matrices(params.covariances, d)
            noise = missing.coupled_conditional_noise(key, matrices, data, labels)
        else:
            variance = self.structure.variances(params.covariances, k, d)
            noise = missing.independent_conditional_noise(key, variance, data, labels)
        return chosen + noise

    # -- M-step ----------------------------------------------------------------------------

    @property
    def e_step_form(self) -> tuple:
        """Equal for Gaussian families whose E-steps are the same computation, differing at
        most in their M-step (`jaxem.capabilities.SharesEStep`)."""
        return (type(self), self.missing, self.reg_covar, self.structure.e_step_form)

    @property
    def shares_parameters(self) -> bool:
        """Whether a parameter serves every component (a ``shared`` structure: ``"tied"``)."""
        return self.structure.shared

    # `estimate_from` at NaN covariances is `estimate`: every structure's `maximise_from` takes
    # NaN for no iterate (`jaxem.capabilities.EstimatesFromIterate`)
    starts_without_iterate: ClassVar[bool] = True

    def estimate(
        self,
        stats: GaussianStats,
        counts: Array,
        prior: GaussianPrior | None = None,
        active: Array | None = None,
    ) -> GaussianParams:
        """Maximum-likelihood means and covariances from the statistics and the components'
        weights $N_k$ ``(K,)``, or with a prior the posterior mode (see ``docs/map.md``).
        ``active`` ``(K,)`` booleans: only these components' means have a prior that involves a
        tied covariance (None: all)."""
        return self._estimate(None, stats, counts, prior, active)

    def estimate_from(
        self,
        params: GaussianParams,
        stats: GaussianStats,
        counts: Array,
        prior: GaussianPrior | None = None,
        active: Array | None = None,
    ) -> GaussianParams:
        """`estimate` at the current components ``params``: an iterative structure's M-step
        starts from their covariances (`CovarianceStructure.maximise_from`)."""
        return self._estimate(params.covariances, stats, counts, prior, active)

    def _estimate(self, previous, stats, counts, prior, active) -> GaussianParams:
        if prior is not None:
            return self._map(stats, counts, prior, active)
        total = jnp.sum(counts)
        floor = 10 * jnp.finfo(counts.dtype).eps * total
        empty = counts < floor
        # the floor only keeps empty components finite: added to every count it would move
        # each mean towards the origin by a relative 10 eps N / N_k (float32 data at 1e5: 0.3)
        means = stats.sums / jnp.maximum(counts, floor)[:, None]
        counts = counts + floor
        within = self.structure.within(stats.scatter, stats.shifts, 1.0 / counts)
        centre = jnp.sum(stats.sums, axis=0) / total  # the data's weighted mean
        spread = (means - centre) ** 2
        if previous is None:
            covariances = self.structure.maximise(within, counts, self.reg_covar, spread)
        else:
            covariances = self.structure.maximise_from(
                previous, within, counts, self.reg_covar, spread
            )
        means = jnp.where(empty[:, None], centre, means)
        return GaussianParams(means, self.structure.fill_empty(covariances, empty, counts))

    def _map(
        self, stats: GaussianStats, n: Array, prior: GaussianPrior, active: Array | None = None
    ) -> GaussianParams:
        """The exact posterior mode; no ``reg_covar`` (the prior regularises). An empty
        component takes the prior's mode: mean ``prior.mean``, covariance from ``prior.scale``."""
        safe = jnp.where(n > 0, n, 1.0)
        kappa = prior.kappa if self.structure.shrinks_means else jnp.zeros_like(prior.kappa)
        pseudo = n + kappa  # a flat means' prior: an empty component's mean is the prior's
        means = (stats.sums + kappa * prior.mean) / jnp.where(pseudo > 0, pseudo, 1.0)[:, None]
        means = jnp.where((pseudo > 0)[:, None], means, prior.mean)
        inv_counts = jnp.where(n > 0, 1.0 / safe, 0.0)
        within = self.structure.within(stats.scatter, stats.shifts, inv_counts)
        deviations = stats.sums / safe[:, None] - prior.mean
        n_means = deviations.shape[0] if active is None else jnp.sum(active)
        cov = self.structure.map_estimate(within, deviations, n, prior, n_means)
        return GaussianParams(means, cov)

    # -- the prior -------------------------------------------------------------------------

    def log_prior(
        self, params: GaussianParams, prior: GaussianPrior, active: Array | None = None
    ) -> Array:
        """The Normal-Inverse-Wishart (or Normal-Inverse-Gamma) log density of the means and
        covariances, every constant included; with ``active`` ``(K,)`` booleans and a shared
        covariance, of the active components only."""
        return self.structure.log_prior(params.means, params.covariances, prior, active)

    # -- NumPyro (for `jaxem.crosscheck`, which passes NumPyro's distributions module and its
    # ``sample``: the family never imports NumPyro) ------------------------------------------

    def numpyro_components(self, dist: Any, params: GaussianParams) -> Any:
        """The K components: multivariate normals, batch ``(K,)``, event ``(D,)``."""
        k = params.means.shape[0]
        cov = self.component_covariances(params, k)
        return dist.MultivariateNormal(params.means, covariance_matrix=cov)

    def numpyro_params(
        self,
        sample: Any,
        dist: Any,
        prior: GaussianPrior | None,
        n_components: int,
        n_features: int,
    ) -> GaussianParams:
        """``means`` and ``covariances`` as NumPyro sites: from the structure's conjugate prior
        (`CovarianceStructure.numpyro_prior`), or flat (on the positive definite matrices or
        the positive variances) without a prior."""
        if prior is not None:
            means, cov = self.structure.numpyro_prior(sample, dist, prior, n_components)
            return GaussianParams(means, cov)
        k, d, constraints = n_components, n_features, dist.constraints
        shape = self.structure.shape(k, d)
        if self.structure.coupled:
            support = (constraints.positive_definite, shape[:-2], shape[-2:])
        else:
            support = (constraints.positive, (), shape)
        cov = sample("covariances", dist.ImproperUniform(*support))
        means = sample("means", dist.ImproperUniform(constraints.real, (), (k, d)))
        return GaussianParams(means, cov)

    def default_prior_for(self, X: Array, n_components: int) -> GaussianPrior:
        """mclust's default conjugate prior (Fraley and Raftery 2007, "Bayesian regularization
        for normal mixture estimation and model-based clustering", J. Classification
        24:155-181): ``mean`` = the column means of X, ``kappa`` = 0.01, ``dof`` = D + 2,
        ``scale`` = the unbiased sample covariance of X divided by $K^{2/D}$ (full, tied), or the
        average of the unbiased column variances divided by $K^{2/D}$ (spherical, and for every
        column of diag: mclust gives its diagonal models one common scale). ``X`` ``(N, D)``,
        N >= 2. With ``missing``, the moments of the observed values: column means and
        pairwise-complete covariances (their diagonal where those are not positive definite)."""
        self._check_has_map()
        n, d = X.shape
        if n < 2:
            raise ValueError(
                f"X needs at least 2 samples for the default prior's covariance; got {n}"
            )
        if self.missing:
            mean, cov = missing.pairwise_moments(X)
        else:
            mean = jnp.mean(X, axis=0)
            centred = X - mean
            cov = centred.T @ centred / (n - 1)
        shrink = n_components ** (2.0 / d)
        return GaussianPrior(
            mean=mean,
            kappa=jnp.asarray(0.01, X.dtype),
            dof=jnp.asarray(d + 2, X.dtype),
            scale=self.structure.default_scale(cov, shrink),
        )

    def _check_has_map(self) -> None:
        if not self.structure.has_map:
            raise ValueError(
                f"covariance_type={self.covariance_type!r} has no conjugate prior in jaxem yet: "
                "fit it by maximum likelihood (prior=None)"
            )

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> GaussianPrior:
        """Shapes (always) and ranges (concrete values) of a `GaussianPrior`, cast to
        ``dtype``."""
        self._check_has_map()
        d, cov_type = n_features, self.covariance_type
        arr = {
            f: as_float_array(getattr(prior, f), f"{name}.{f}").astype(dtype) for f in prior._fields
        }
        if arr["mean"].shape != (d,):
            raise ValueError(f"{name}.mean must have shape ({d},); got {arr['mean'].shape}")
        for f in ("kappa", "dof"):
            if arr[f].shape != ():
                raise ValueError(f"{name}.{f} must be a scalar; got shape {arr[f].shape}")
        scale_shape = self.structure.scale_shape(d)
        if arr["scale"].shape != scale_shape:
            raise ValueError(
                f"{name}.scale must have shape {scale_shape} for covariance_type={cov_type!r}; "
                f"got {arr['scale'].shape}"
            )
        prior = GaussianPrior(**arr)
        if is_concrete(prior):
            self.check_prior_values(prior, d, name)
        return prior

    def check_prior_values(self, prior: GaussianPrior, n_features: int, name: str = "prior"):
        """The hyperparameters' ranges, on concrete arrays with any leading batch axes; raises
        ``ValueError`` naming the first field out of range."""
        v = {f: np.asarray(getattr(prior, f), dtype=np.float64) for f in prior._fields}
        for f, a in v.items():
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name}.{f} contains NaN or inf")
        if np.any(v["kappa"] <= 0):
            raise ValueError(f"{name}.kappa must be > 0; got {worst(v['kappa'])}")
        low = self.structure.dof_minimum(n_features)
        if np.any(v["dof"] <= low):
            raise ValueError(
                f"{name}.dof must be > {low} for covariance_type={self.covariance_type!r}; "
                f"got {worst(v['dof'])}"
            )
        wrong = self.structure.check_scale(v["scale"])
        if wrong is not None:
            raise ValueError(f"{name}.scale must be {wrong}")

    # -- parameters ------------------------------------------------------------------------

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> GaussianParams:
        """Shapes against ``(K, D)``; with concrete values also finite entries and positive
        definite covariances. Returns the params cast to ``dtype``."""
        k, d = n_components, n_features
        expected = {"means": (k, d), "covariances": self.structure.shape(k, d)}
        context = f"n_components={k}, n_features={d}, covariance_type={self.covariance_type!r}"
        arrays = checked_shapes(params, expected, dtype, name, context)
        if is_concrete(list(arrays.values())):
            for field, a in arrays.items():
                if not np.all(np.isfinite(np.asarray(a))):
                    raise ValueError(f"{name}.{field} contains NaN or inf")
            if not self.structure.is_valid(np.asarray(arrays["covariances"])):
                positive = (
                    "symmetric positive definite matrices"
                    if self.structure.coupled
                    else "positive variances"
                )
                raise ValueError(f"{name}.covariances must be {positive}")
        return GaussianParams(**arrays)

    def n_parameters_for(self, n_components: int, n_features: int) -> int:
        """K·D means and the covariances' free entries."""
        return n_components * n_features + self.structure.n_parameters(n_components, n_features)

    def sample_given(self, key: Array, params: GaussianParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)`` from its component: ``(N, D)``."""
        means = jnp.asarray(params.means)
        covariances = jnp.asarray(params.covariances)
        return means[labels] + self.structure.noise(key, covariances, labels, means.shape[1])

    def unconstrain(self, params: GaussianParams) -> GaussianParams:
        """Unconstrained coordinates of the parameters, in their own shapes: the means as they
        are; covariances as log-diagonal Cholesky factors (full, tied) or log variances (diag,
        spherical). Any real values map back to valid parameters through `constrain`: where
        an extrapolation (`jaxem.fit`'s acceleration) can move freely."""
        return GaussianParams(params.means, self.structure.unconstrain(params.covariances))

    def constrain(self, coordinates: GaussianParams) -> GaussianParams:
        """The parameters of unconstrained ``coordinates`` (the inverse of `unconstrain`)."""
        return GaussianParams(coordinates.means, self.structure.constrain(coordinates.covariances))

    def chart(self, at: GaussianParams, coordinates: Array) -> GaussianParams:
        """Parameters near ``at`` from ``n_parameters_for(K, D)`` coordinates, ``at`` at 0
        (`jaxem.charts`): the means as they are, then the covariance structure's chart."""
        k, d = at.means.shape
        means, cov = charts.split(coordinates, [k * d, self.structure.n_parameters(k, d)])
        covariances = self.structure.chart(at.covariances, cov)
        return GaussianParams(at.means + means.reshape(k, d), covariances)

    def permute(self, params: GaussianParams, order: Any) -> GaussianParams:
        """``params`` with components in ``order`` (a shared covariance stays)."""
        order = jnp.asarray(order)
        cov = self.structure.permute(params.covariances, order)
        return GaussianParams(jnp.take(params.means, order, axis=-2), cov)

    def component_covariances(self, params: GaussianParams, n_components: int) -> Array:
        """Every component's covariance matrix, ``(K, D, D)``, whatever the type."""
        d = params.means.shape[-1]
        matrices = self.structure.matrices(jnp.asarray(params.covariances), d)
        return jnp.broadcast_to(matrices, (n_components, d, d))

    def collapsed(self, params: GaussianParams, weights: Any = None) -> np.ndarray:
        """Which components have a non-finite covariance or a smallest variance (eigenvalue)
        below twice the M-step's floor: ``reg_covar``, or in low precision the precision of
        the data's squares about their centre (`full.floors`, `full.floor_at`). The data gave
        such a component (almost) no spread, the floor alone keeps it positive. Full and tied
        covariances are measured feature by feature: the smallest eigenvalue of
        $F^{-1/2} \\Sigma F^{-1/2}$, $F$ the floors, below 2. Concrete ``params`` with any
        leading axes, and the mixture's ``weights`` ``(..., K)``, whose average of the means is
        the data's centre after an M-step (None: the plain average); booleans ``(..., K)`` (a
        tied covariance: the same for every component)."""
        eps = np.finfo(np.asarray(params.covariances).dtype).eps
        cov = np.asarray(params.covariances, dtype=np.float64)
        means = np.asarray(params.means, dtype=np.float64)
        k, d = means.shape[-2:]
        if weights is None:
            weights = np.full(means.shape[:-1], 1.0 / k)
        weights = np.asarray(weights, dtype=np.float64)[..., None]  # (..., K, 1)
        centre = np.sum(weights * means, axis=-2, keepdims=True)
        spread = (means - centre) ** 2  # (..., K, D)

        def floor_at(scale):
            return np.maximum(self.reg_covar, full.RESOLUTION * d * eps * np.maximum(scale, 0.0))

        with np.errstate(invalid="ignore"):
            small = self.structure.collapsed(cov, spread, weights, floor_at)
        return np.broadcast_to(small, small.shape[:-1] + (k,))
