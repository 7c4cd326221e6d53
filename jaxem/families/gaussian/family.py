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
covariance modules. As in scikit-learn, $N_k$ is floored by ten machine epsilons (times the
total weight) before dividing. An *empty* component ($N_k$ under that floor) gets the weighted
mean of all the data and the count-weighted average of the other components' covariances, so it
stays finite, positive definite, and may pick points up again. The MAP M-step (conjugate
Normal-Inverse-Wishart or Normal-Inverse-Gamma prior, `GaussianPrior`) is in ``docs/map.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.families.gaussian import diag, full, missing, spherical, tied
from jaxem.families.statistics import fill_means, weighted_sums
from jaxem.validation import as_float_array, check_data, is_concrete, worst

Array = jax.Array

COVARIANCE_TYPES = {"full": full, "diag": diag, "spherical": spherical, "tied": tied}


class GaussianParams(NamedTuple):
    """Attributes: means ``(K, D)``; covariances ``(K, D, D)`` full, ``(K, D)`` diag, ``(K,)``
    spherical, ``(D, D)`` tied (scikit-learn's shapes)."""

    means: Array
    covariances: Array


class GaussianPrior(NamedTuple):
    """The conjugate prior of the means and covariances (a pytree).

    Attributes:
        mean: ``(D,)``, the prior mean $m$ of every component mean.
        kappa: > 0, the prior's pseudo-count for the means.
        dof: $\\nu$; > D - 1 for full and tied, > 0 for diag and spherical.
        scale: $\\Psi$; ``(D, D)`` symmetric positive definite (full, tied), ``(D,)``
            positive (diag), a positive scalar (spherical).
    """

    mean: Any
    kappa: Any
    dof: Any
    scale: Any


class GaussianData(NamedTuple):
    """The data as the E-step reads it (`Gaussian.prepare`).

    Attributes:
        centre: ``(D,)`` the weighted mean of the data.
        features: ``(Q + D, N)``: the covariance type's ``Q`` quadratic features of
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
            type's form: ``(K, D, D)`` full, ``(K, D)`` diag, ``(K,)`` spherical, ``(D, D)`` tied
            (summed over components).
    """

    sums: Array
    shifts: Array
    scatter: Array


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Multivariate normal components (static configuration; hashable).

    Args:
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
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

    covariance_type: str = "full"
    reg_covar: float = 1e-6
    missing: bool = False

    def __post_init__(self):
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}; "
                f"got {self.covariance_type!r}"
            )
        if not np.isfinite(self.reg_covar) or self.reg_covar < 0:
            raise ValueError(f"reg_covar must be a finite number >= 0; got {self.reg_covar!r}")
        if not isinstance(self.missing, bool):
            raise TypeError(f"missing must be True or False; got {self.missing!r}")

    @property
    def _cov(self):
        return COVARIANCE_TYPES[self.covariance_type]

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
            return missing.prepare(X, weights, self.covariance_type in ("full", "tied"))
        total = jnp.sum(weights)
        centre = (weights @ X) / jnp.where(total > 0, total, 1)  # a block may hold no weight
        centred = (X - centre).T
        return GaussianData(centre, jnp.concatenate([self._cov.squares(centred), centred], axis=0))

    def bytes_per_sample(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The E-step's working memory per sample: the features, the centred row and about
        four ``(K,)`` arrays (log joint, its exponent, responsibilities, weighted ones)."""
        d, k = n_features, n_components
        q = self._cov.squares(jnp.zeros((d, 1))).shape[0]
        if self.missing and self.covariance_type in ("full", "tied"):
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
        a, b, c, log_det = self._cov.quadratic_form(params.covariances, offsets)
        coef = -0.5 * jnp.concatenate([a, b], axis=1)  # (K, Q + D)
        bias = -0.5 * (d * math.log(2 * math.pi) + log_det + c)
        return coef @ data.features + bias[:, None]

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
            scatter=self._cov.scatter(squares, firsts, counts, offsets),
        )

    @property
    def fuses_e_step(self) -> bool:
        """Whether a mixture's E-step goes through `mixture_e_step` (with missing values and
        full or tied covariances: one pass instead of two)."""
        return self.missing and self.covariance_type in ("full", "tied")

    def mixture_e_step(
        self, params: GaussianParams, data: missing.MissingData, log_weights: Array, weights: Array
    ) -> tuple[Array, GaussianStats, Array]:
        """A mixture's E-step in one pass (see `fuses_e_step`): $N_k$ ``(K,)``, the statistics
        and $\\sum_n w_n \\log p(x_{n,o})$, given the mixture's ``log_weights`` ``(K,)`` and the
        sample ``weights`` ``(N,)`` (`missing.coupled_mixture_e_step`)."""
        offsets = params.means - data.centre
        tied = self.covariance_type == "tied"
        counts, sums, shifts, scatter, loglik = missing.coupled_mixture_e_step(
            params.covariances, offsets, data, log_weights, weights, tied
        )
        return counts, GaussianStats(sums, shifts, scatter), loglik

    def _missing_log_likelihoods(self, params: GaussianParams, data: missing.MissingData):
        offsets = params.means - data.centre
        if self.covariance_type in ("full", "tied"):
            return missing.coupled_log_likelihoods(params.covariances, offsets, data)
        variance = missing.variances(self.covariance_type, params.covariances, offsets.shape[1])
        return missing.independent_log_likelihoods(variance, offsets, data)

    def _missing_stats(
        self, data: missing.MissingData, wr: Array, params: GaussianParams | None
    ) -> GaussianStats:
        d = data.centre.shape[-1]
        offsets = None if params is None else params.means - data.centre
        cov = None if params is None else params.covariances
        if self.covariance_type in ("full", "tied"):
            tied = self.covariance_type == "tied"
            sums, shifts, scatter = missing.coupled_moments(cov, offsets, data, wr, tied)
        else:
            variance = None if cov is None else missing.variances(self.covariance_type, cov, d)
            sums, shifts, scatter = missing.independent_moments(variance, offsets, data, wr)
            if self.covariance_type == "spherical":
                scatter = jnp.sum(scatter, axis=-1)
        return GaussianStats(sums, shifts, scatter)

    # -- imputation (with ``missing``) -----------------------------------------------------

    def impute(self, params: GaussianParams, data: missing.MissingData, resp: Array) -> Array:
        """The conditional mean of every value given the observed ones,
        $\\sum_k r_{nk} \\mathbb{E}[x_n \\mid x_{n,o}, z = k]$, ``(N, D)``, from the
        responsibilities ``resp`` ``(K, N)``; observed values are returned as they are."""
        offsets = params.means - data.centre
        means = missing.conditional_means(self.covariance_type, params.covariances, offsets, data)
        return jnp.einsum("kn,knd->nd", resp, means)

    def impute_sample(
        self, key: Array, params: GaussianParams, data: missing.MissingData, labels: Array
    ) -> Array:
        """One draw of the missing values from $p(x_{n,m} \\mid x_{n,o}, z_n)$ given each
        row's component ``labels`` ``(N,)``; observed values as they are. ``(N, D)``."""
        offsets = params.means - data.centre
        cov = params.covariances
        means = missing.conditional_means(self.covariance_type, cov, offsets, data)
        chosen = jnp.take_along_axis(means, labels[None, :, None], axis=0)[0]
        noise = missing.conditional_noise(key, self.covariance_type, cov, offsets, data, labels)
        return chosen + noise

    # -- M-step ----------------------------------------------------------------------------

    @property
    def shares_parameters(self) -> bool:
        """Whether one covariance serves every component (``"tied"``)."""
        return self.covariance_type == "tied"

    def m_step(
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
        if prior is not None:
            return self._map(stats, counts, prior, active)
        total = jnp.sum(counts)
        floor = 10 * jnp.finfo(counts.dtype).eps * total
        empty = counts < floor
        counts = counts + floor
        means = stats.sums / counts[:, None]
        within = self._cov.within(stats.scatter, stats.shifts, 1.0 / counts)
        centre = jnp.sum(stats.sums, axis=0) / total  # the data's weighted mean
        spread = (means - centre) ** 2
        covariances = self._cov.mle(within, counts, self.reg_covar, means.shape[1], spread)

        means = jnp.where(empty[:, None], centre, means)
        if self.covariance_type != "tied":
            fallback = self._cov.pooled(covariances, counts / jnp.sum(counts))
            mask = empty.reshape((-1,) + (1,) * (covariances.ndim - 1))
            covariances = jnp.where(mask, fallback[None], covariances)
        return GaussianParams(means, covariances)

    def _map(
        self, stats: GaussianStats, n: Array, prior: GaussianPrior, active: Array | None = None
    ) -> GaussianParams:
        """The exact posterior mode; no ``reg_covar`` (the prior regularises). An empty
        component takes the prior's mode: mean ``prior.mean``, covariance from ``prior.scale``."""
        safe = jnp.where(n > 0, n, 1.0)
        means = (stats.sums + prior.kappa * prior.mean) / (n + prior.kappa)[:, None]
        within = self._cov.within(stats.scatter, stats.shifts, jnp.where(n > 0, 1.0 / safe, 0.0))
        dev = stats.sums / safe[:, None] - prior.mean
        if self.covariance_type == "tied":
            n_means = dev.shape[0] if active is None else jnp.sum(active)
            return GaussianParams(means, self._cov.map_estimate(within, dev, n, prior, n_means))
        return GaussianParams(means, self._cov.map_estimate(within, dev, n, prior))

    # -- the prior -------------------------------------------------------------------------

    def log_prior(
        self, params: GaussianParams, prior: GaussianPrior, active: Array | None = None
    ) -> Array:
        """The Normal-Inverse-Wishart (or Normal-Inverse-Gamma) log density of the means and
        covariances, every constant included; with ``active`` ``(K,)`` booleans and a tied
        covariance, of the active components only."""
        if self.covariance_type == "tied":
            return self._cov.log_prior(params.means, params.covariances, prior, active)
        return self._cov.log_prior(params.means, params.covariances, prior)

    def default_prior(self, X: Array, n_components: int) -> GaussianPrior:
        """mclust's default conjugate prior (Fraley and Raftery 2007, "Bayesian regularization
        for normal mixture estimation and model-based clustering", J. Classification
        24:155-181): ``mean`` = the column means of X, ``kappa`` = 0.01, ``dof`` = D + 2,
        ``scale`` = the unbiased sample covariance of X divided by $K^{2/D}$ (full, tied), or the
        average of the unbiased column variances divided by $K^{2/D}$ (spherical, and for every
        column of diag: mclust gives its diagonal models one common scale). ``X`` ``(N, D)``,
        N >= 2. With ``missing``, the moments of the observed values: column means and
        pairwise-complete covariances (their diagonal where those are not positive definite)."""
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
        scale = {
            "full": cov / shrink,
            "tied": cov / shrink,
            "diag": jnp.full((d,), jnp.mean(jnp.diagonal(cov)) / shrink, cov.dtype),
            "spherical": jnp.mean(jnp.diagonal(cov)) / shrink,
        }[self.covariance_type]
        return GaussianPrior(
            mean=mean,
            kappa=jnp.asarray(0.01, X.dtype),
            dof=jnp.asarray(d + 2, X.dtype),
            scale=scale,
        )

    def check_prior(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> GaussianPrior:
        """Shapes (always) and ranges (concrete values) of a `GaussianPrior`, cast to
        ``dtype``."""
        d, cov_type = n_features, self.covariance_type
        arr = {
            f: as_float_array(getattr(prior, f), f"{name}.{f}").astype(dtype) for f in prior._fields
        }
        if arr["mean"].shape != (d,):
            raise ValueError(f"{name}.mean must have shape ({d},); got {arr['mean'].shape}")
        for f in ("kappa", "dof"):
            if arr[f].shape != ():
                raise ValueError(f"{name}.{f} must be a scalar; got shape {arr[f].shape}")
        scale_shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[cov_type]
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
        low = n_features - 1 if self.covariance_type in ("full", "tied") else 0
        if np.any(v["dof"] <= low):
            raise ValueError(
                f"{name}.dof must be > {low} for covariance_type={self.covariance_type!r}; "
                f"got {worst(v['dof'])}"
            )
        s = v["scale"]
        if self.covariance_type in ("full", "tied"):
            symmetric = np.allclose(s, np.swapaxes(s, -1, -2), rtol=1e-5, atol=0)
            if not symmetric or np.any(np.linalg.eigvalsh(s) <= 0):
                raise ValueError(f"{name}.scale must be a symmetric positive definite matrix")
        elif np.any(s <= 0):
            raise ValueError(f"{name}.scale must be positive; got {worst(s)}")

    # -- parameters ------------------------------------------------------------------------

    def check_params(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> GaussianParams:
        """Shapes against ``(K, D)``; with concrete values also finite entries and positive
        definite covariances. Returns the params cast to ``dtype``."""
        k, d = n_components, n_features
        expected = {"means": (k, d), "covariances": self._cov.shape(k, d)}
        arrays = {}
        for field, shape in expected.items():
            a = as_float_array(getattr(params, field), f"{name}.{field}").astype(dtype)
            if a.shape != shape:
                raise ValueError(
                    f"{name}.{field} must have shape {shape} for n_components={k}, "
                    f"n_features={d}, covariance_type={self.covariance_type!r}; got {a.shape}"
                )
            arrays[field] = a
        if is_concrete(list(arrays.values())):
            for field, a in arrays.items():
                if not np.all(np.isfinite(np.asarray(a))):
                    raise ValueError(f"{name}.{field} contains NaN or inf")
            if not self._cov.is_valid(np.asarray(arrays["covariances"])):
                positive = (
                    "symmetric positive definite matrices"
                    if self.covariance_type in ("full", "tied")
                    else "positive variances"
                )
                raise ValueError(f"{name}.covariances must be {positive}")
        return GaussianParams(**arrays)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """K·D means and the covariances' free entries."""
        return n_components * n_features + self._cov.n_parameters(n_components, n_features)

    def sample(self, key: Array, params: GaussianParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)`` from its component: ``(N, D)``."""
        means = jnp.asarray(params.means)
        covariances = jnp.asarray(params.covariances)
        return means[labels] + self._cov.noise(key, covariances, labels, means.shape[1])

    def unconstrain(self, params: GaussianParams) -> GaussianParams:
        """Unconstrained coordinates of the parameters, in their own shapes: the means as they
        are; covariances as log-diagonal Cholesky factors (full, tied) or log variances (diag,
        spherical). Any real values map back to valid parameters through `constrain`: where
        an extrapolation (`jaxem.fit`'s acceleration) can move freely."""
        return GaussianParams(params.means, self._cov.unconstrain(params.covariances))

    def constrain(self, coordinates: GaussianParams) -> GaussianParams:
        """The parameters of unconstrained ``coordinates`` (the inverse of `unconstrain`)."""
        return GaussianParams(coordinates.means, self._cov.constrain(coordinates.covariances))

    def permute(self, params: GaussianParams, order: Any) -> GaussianParams:
        """``params`` with components in ``order`` (a tied covariance is shared and stays)."""
        order = jnp.asarray(order)
        cov = params.covariances
        if self.covariance_type != "tied":
            event_ndim = {"full": 2, "diag": 1, "spherical": 0}[self.covariance_type]
            cov = jnp.take(cov, order, axis=cov.ndim - 1 - event_ndim)
        return GaussianParams(jnp.take(params.means, order, axis=-2), cov)

    def component_covariances(self, params: GaussianParams, n_components: int) -> Array:
        """Every component's covariance matrix, ``(K, D, D)``, whatever the type."""
        cov = jnp.asarray(params.covariances)
        d = params.means.shape[-1]
        if self.covariance_type == "full":
            return cov
        if self.covariance_type == "tied":
            return jnp.broadcast_to(cov, (n_components, d, d))
        if self.covariance_type == "diag":
            return cov[:, :, None] * jnp.eye(d, dtype=cov.dtype)
        return cov[:, None, None] * jnp.eye(d, dtype=cov.dtype)

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
            if self.covariance_type in ("full", "tied"):
                if self.covariance_type == "tied":
                    spread = np.sum(weights * spread, axis=-2)
                root = 1.0 / np.sqrt(floor_at(spread + np.diagonal(cov, axis1=-2, axis2=-1)))
                scaled = cov * root[..., :, None] * root[..., None, :]
                broken = ~np.all(np.isfinite(scaled), axis=(-2, -1))
                scaled = np.where(broken[..., None, None], np.eye(d), scaled)
                small = broken | (np.linalg.eigvalsh(scaled)[..., 0] < 2.0)
                if self.covariance_type == "tied":
                    small = small[..., None]
            elif self.covariance_type == "diag":
                small = ~np.all(cov >= 2 * floor_at(spread + cov), axis=-1)
            else:
                small = ~(cov >= 2 * floor_at(np.mean(spread, axis=-1) + cov))
        return np.broadcast_to(small, small.shape[:-1] + (k,))
