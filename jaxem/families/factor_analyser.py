"""Factor analysers: $p(x \\mid z = k) = \\mathcal{N}(x \\mid \\mu_k, \\Lambda_k \\Lambda_k^\\top +
\\Psi_k)$ with $q$ factors, loadings $\\Lambda_k$ ``(D, q)`` and diagonal uniquenesses
$\\Psi_k$: a covariance of $D q + D$ parameters instead of $D(D+1)/2$ (Ghahramani and Hinton
1996; McLachlan and Peel 2000), and pgmm's eight parsimonious variants (McNicholas and Murphy
2008), named by three letters, C (constrained: common to the components) or U: the loadings,
the uniquenesses, and whether the uniquenesses are isotropic ($\\psi I$): ``"UUU"`` is the
mixture of factor analysers, ``"UUC"`` the mixture of probabilistic PCAs, ``"CCU"`` common
loadings and uniquenesses.

The model is $x = \\mu_k + \\Lambda_k f + e$, $f \\sim \\mathcal{N}(0, I_q)$,
$e \\sim \\mathcal{N}(0, \\Psi_k)$. Every density goes through the Woodbury identity, with
$M_k = I_q + \\Lambda_k^\\top \\Psi_k^{-1} \\Lambda_k$ ``(q, q)``:

$$
\\Sigma_k^{-1} = \\Psi_k^{-1} - \\Psi_k^{-1} \\Lambda_k M_k^{-1} \\Lambda_k^\\top \\Psi_k^{-1},
\\qquad \\log|\\Sigma_k| = \\log|\\Psi_k| + \\log|M_k|,
$$

so the E-step costs $O(N K D q)$ (two matrix products over the data), never a $D \\times D$
matrix. The factors' posterior mean is $\\hat f_{nk} = \\beta_k (x_n - \\mu_k)$ with
$\\beta_k = \\Lambda_k^\\top \\Sigma_k^{-1} = M_k^{-1} \\Lambda_k^\\top \\Psi_k^{-1}$.

**The iteration** (see ``docs/robust_and_high_dimensional.md``): McLachlan and Peel's AECM in
one pass over the data. Cycle one (complete data $x, z$): the weights and
$\\mu_k = \\bar x_k$. Cycle two (complete data $x, z, f$, the factors' posterior at
$(\\mu_k^{new}, \\Lambda_k, \\Psi_k)$): with $S_k$ the responsibility-weighted covariance about
$\\mu_k^{new}$ and $\\Theta_k = I - \\beta_k \\Lambda_k + \\beta_k S_k \\beta_k^\\top$, the
loadings and uniquenesses of the variant (UUU: $\\Lambda_k = S_k \\beta_k^\\top \\Theta_k^{-1}$,
$\\Psi_k = \\mathrm{diag}(S_k - \\Lambda_k \\beta_k S_k)$). AECM refreshes the responsibilities
between the cycles, with a second pass over the data; here both cycles use the pass's
responsibilities, and everything cycle two reads ($S_k \\beta_k^\\top$, $\\beta_k S_k
\\beta_k^\\top$, $\\mathrm{diag}\\, S_k$) is a function of additive statistics of that pass
(`FactorStats`), exactly, through the shift from the old means to the new. Each cycle
maximises the free energy $F(q, \\theta) \\le \\log p(x \\mid \\theta)$ in its block of
parameters with $q(z)$ held, so the log-likelihood never decreases (tested for every variant).

**MAP.** `FactorPrior`: an inverse gamma on every uniqueness (``shape`` $a$, ``scale``
$b_d$ per feature), which keeps them away from zero (Heywood cases); flat on the means and
loadings. The uniquenesses' update becomes $(N_k T_{kd} + 2 b_d) / (N_k + 2a + 2)$ (pooled and
isotropic variants alike: their counts and sums).

Missing values are not supported (the conditional of the missing coordinates would need
$\\Sigma_k$'s blocks: say ``missing``, and it is refused).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import linalg
from jaxem.families.gaussian.full import floor_at
from jaxem.families.statistics import checked_shapes, data_centre, normalise
from jaxem.validation import as_float_array, check_data, is_concrete, worst

Array = jax.Array

# pgmm's eight models: loadings, uniquenesses (common or per component), isotropic
VARIANTS = ("CCC", "CCU", "CUC", "CUU", "UCC", "UCU", "UUC", "UUU")
# the smallest share of a feature's variance a starting uniqueness gets
START_SHARE = 0.1


class FactorParams(NamedTuple):
    """Attributes: means ``(K, D)``; loadings $\\Lambda_k$ ``(K, D, q)`` (equal for every
    component when common); uniquenesses $\\Psi_k$'s diagonals ``(K, D)`` (equal across
    components when common, across features when isotropic)."""

    means: Array
    loadings: Array
    uniquenesses: Array


class FactorPrior(NamedTuple):
    """An inverse gamma on every uniqueness: ``shape`` $a > 0$ (a scalar), ``scale``
    $b_d > 0$ ``(D,)``: $\\log p(\\psi_d) = a \\log b_d - \\log\\Gamma(a) - (a+1)\\log\\psi_d -
    b_d / \\psi_d$ (one $\\psi$ per free uniqueness; an isotropic one takes the scales'
    mean)."""

    shape: Any
    scale: Any


class FactorData(NamedTuple):
    """The data as the E-step reads it: ``centre`` ``(D,)`` the weighted mean, ``centred``
    ``(N, D)`` the rows minus it."""

    centre: Array
    centred: Array


class FactorStats(NamedTuple):
    """Sums over samples, about the current means $\\mu_k$, with $y = x - \\mu_k$ and
    $\\hat f = \\beta_k y$ the factors' posterior means under the current parameters.

    Attributes:
        sums: ``(K, D)`` $\\sum_n wr_{kn} x_n$.
        shifts: ``(K, D)`` $\\sum_n wr_{kn} y_n$.
        squares: ``(K, D)`` $\\sum_n wr_{kn} y_n \\circ y_n$.
        cross: ``(K, D, q)`` $\\sum_n wr_{kn} y_n \\hat f_n^\\top$.
        factor_sums: ``(K, q)`` $\\sum_n wr_{kn} \\hat f_n$.
        factor_squares: ``(K, q, q)`` $\\sum_n wr_{kn} \\hat f_n \\hat f_n^\\top$.
        scatter: None, or for a start from a partition (no current parameters) the full
            scatter ``(K, D, D)`` $\\sum_n wr_{kn} y_n y_n^\\top$, whose leading eigenvectors
            give the starting loadings.
    """

    sums: Array
    shifts: Array
    squares: Array
    cross: Array
    factor_sums: Array
    factor_squares: Array
    scatter: Any = None


def cholesky_inverse(chol: Array) -> Array:
    """$A^{-1} = L^{-\\top} L^{-1}$ from the Cholesky factor $L$ of $A$, ``(..., q, q)``."""
    eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
    inverse_chol = linalg.solve_lower(chol, eye)
    return jnp.swapaxes(inverse_chol, -1, -2) @ inverse_chol


def spd_inverse(matrix: Array) -> Array:
    """The inverse of symmetric positive definite ``matrix`` ``(..., q, q)`` (symmetrised)."""
    return cholesky_inverse(linalg.cholesky(0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))))


@dataclasses.dataclass(frozen=True)
class FactorAnalyser:
    """Factor-analyser components (static configuration; hashable).

    Args:
        n_factors: q >= 1, fewer than the features.
        variant: one of pgmm's `VARIANTS` (loadings, uniquenesses, isotropy; C common, U per
            component): ``"UUU"`` (default) the mixture of factor analysers, ``"UUC"``
            probabilistic PCA.
        reg_covar: the smallest uniqueness the maximum-likelihood M-step returns (as
            `jaxem.families.Gaussian`'s ``reg_covar``), raised where the data's scale needs.
    """

    params_type: ClassVar[type] = FactorParams
    prior_type: ClassVar[type] = FactorPrior
    name: ClassVar[str] = "factors"
    options: ClassVar[tuple[str, ...]] = ("n_factors", "variant")

    n_factors: int = 1
    variant: str = "UUU"
    reg_covar: float = 1e-6

    def __post_init__(self):
        if isinstance(self.n_factors, bool) or not isinstance(self.n_factors, (int, np.integer)):
            raise TypeError(f"n_factors must be an integer >= 1; got {self.n_factors!r}")
        if self.n_factors < 1:
            raise ValueError(f"n_factors must be an integer >= 1; got {self.n_factors!r}")
        object.__setattr__(self, "n_factors", int(self.n_factors))
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {self.variant!r}")
        if not np.isfinite(self.reg_covar) or self.reg_covar < 0:
            raise ValueError(f"reg_covar must be a finite number >= 0; got {self.reg_covar!r}")

    @property
    def common_loadings(self) -> bool:
        return self.variant[0] == "C"

    @property
    def common_uniquenesses(self) -> bool:
        return self.variant[1] == "C"

    @property
    def isotropic(self) -> bool:
        return self.variant[2] == "C"

    @classmethod
    def for_data(cls, X: Any, missing: bool = False, **options: Any) -> FactorAnalyser:
        """The family for data ``X`` (as the command line makes it)."""
        if missing:
            raise ValueError("the factor-analyser family does not take missing values (NaN)")
        return cls(**{k: v for k, v in options.items() if v is not None})

    def describe(self) -> str:
        return f"factors, n_factors={self.n_factors}, variant={self.variant!r}"

    # -- data ------------------------------------------------------------------------------

    def check_data(self, X: Any, name: str = "X") -> Array:
        """A floating ``(N, D)`` array of finite values, D > q."""
        X = check_data(X, name, missing=False)
        if X.shape[1] <= self.n_factors:
            raise ValueError(
                f"{name} has {X.shape[1]} features: n_factors={self.n_factors} must be fewer"
            )
        return X

    def prepare(self, X: Array, weights: Array) -> FactorData:
        """The weighted mean and the centred rows, once per fit."""
        centre = data_centre(X, weights)
        return FactorData(centre, X - centre)

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int:
        """The row, its squares and per component the factors (three ``(q,)`` arrays) and a
        few ``(K,)`` arrays."""
        q = self.n_factors
        return itemsize * (2 * n_features + n_components * (3 * q + 5))

    def init_points(self, X: Array) -> Array:
        return X

    # -- E-step ----------------------------------------------------------------------------

    def _inner(self, params: FactorParams) -> tuple[Array, Array, Array]:
        """$\\Psi_k^{-1}\\Lambda_k$ ``(K, D, q)``, the Cholesky factors of $M_k$ ``(K, q, q)``
        and $\\log|\\Sigma_k|$ ``(K,)``."""
        precisions = 1.0 / params.uniquenesses
        weighted = precisions[:, :, None] * params.loadings
        q = self.n_factors
        inner = jnp.eye(q, dtype=weighted.dtype) + jnp.einsum(
            "kdq,kdr->kqr", params.loadings, weighted
        )
        chol = linalg.cholesky(inner)
        log_det = jnp.sum(jnp.log(params.uniquenesses), axis=-1) + linalg.log_det(chol)
        return weighted, chol, log_det

    def _posterior(self, params: FactorParams, data: FactorData) -> tuple[Array, Array, Array]:
        """$\\delta_{nk}$ (squared Mahalanobis distances) ``(K, N)``, $\\log|\\Sigma_k|$ and the
        factors' posterior means $\\hat f_{nk}$ ``(N, K, q)``, by Woodbury."""
        weighted, chol, log_det = self._inner(params)
        offsets = params.means - data.centre  # (K, D)
        precisions = 1.0 / params.uniquenesses
        x = data.centred
        quadratic = (
            (x * x) @ precisions.T
            - 2.0 * x @ (offsets * precisions).T
            + jnp.sum(offsets * offsets * precisions, axis=-1)
        )  # (N, K): sum_d (x - o)^2 / psi
        projected = jnp.einsum("nd,kdq->nkq", x, weighted) - jnp.einsum(
            "kd,kdq->kq", offsets, weighted
        )  # Lambda^T Psi^-1 (x - mu), (N, K, q)
        factors = jnp.einsum("nkq,kqr->nkr", projected, cholesky_inverse(chol))
        delta = quadratic - jnp.sum(projected * factors, axis=-1)
        return jnp.maximum(delta, 0.0).T, log_det, factors

    def log_likelihoods(self, params: FactorParams, data: FactorData) -> Array:
        """$\\log \\mathcal{N}(x_n \\mid \\mu_k, \\Lambda_k\\Lambda_k^\\top + \\Psi_k)$,
        ``(K, N)``."""
        delta, log_det, _ = self._posterior(params, data)
        d = data.centre.shape[-1]
        return -0.5 * (d * math.log(2 * math.pi) + log_det[:, None] + delta)

    def factor_scores(self, params: FactorParams, data: FactorData) -> Array:
        """$\\mathbb{E}[f \\mid x_n, z = k] = \\beta_k (x_n - \\mu_k)$, ``(N, K, q)``."""
        return self._posterior(params, data)[2]

    def stats(self, data: FactorData, wr: Array, params: FactorParams | None = None) -> FactorStats:
        """The statistics of weighted responsibilities ``wr`` ``(K, N)`` under ``params``
        (about its means). None: a start from a partition, about the weighted means, with the
        full scatter (its eigenvectors give the starting loadings) and no factors."""
        if params is None:
            counts = jnp.sum(wr, axis=1)
            firsts = wr @ data.centred
            offsets = firsts / jnp.maximum(counts, jnp.finfo(wr.dtype).tiny)[:, None]
            y = data.centred[None] - offsets[:, None, :]  # (K, N, D): once, at the start
            scatter = jnp.einsum("kn,knd,kne->kde", wr, y, y)
            k, d = offsets.shape
            q = self.n_factors
            zeros = jnp.zeros
            return FactorStats(
                firsts + counts[:, None] * data.centre,
                zeros((k, d), wr.dtype),
                jnp.einsum("kdd->kd", scatter),
                zeros((k, d, q), wr.dtype),
                zeros((k, q), wr.dtype),
                zeros((k, q, q), wr.dtype),
                scatter,
            )
        _, _, factors = self._posterior(params, data)
        return self._stats(data, wr, factors, params)

    def _stats(self, data: FactorData, wr: Array, factors: Array, params: FactorParams):
        x = data.centred
        offsets = params.means - data.centre
        counts = jnp.sum(wr, axis=1)
        firsts = wr @ x  # (K, D)
        squares = wr @ (x * x)
        weighted_factors = wr.T[:, :, None] * factors  # (N, K, q)
        factor_sums = jnp.sum(weighted_factors, axis=0)
        cross = jnp.einsum("nd,nkq->kdq", x, weighted_factors)
        return FactorStats(
            sums=firsts + counts[:, None] * data.centre,
            shifts=firsts - counts[:, None] * offsets,
            squares=squares - 2.0 * offsets * firsts + counts[:, None] * offsets**2,
            cross=cross - offsets[:, :, None] * factor_sums[:, None, :],
            factor_sums=factor_sums,
            factor_squares=jnp.einsum("nkq,nkr->kqr", weighted_factors, factors),
        )

    fuses_e_step: ClassVar[bool] = True

    def mixture_e_step(
        self, params: FactorParams, data: FactorData, log_weights: Array, weights: Array
    ) -> tuple[Array, FactorStats, Array]:
        """A mixture's E-step in one pass: $N_k$, the statistics and the log-likelihood."""
        delta, log_det, factors = self._posterior(params, data)
        d = data.centre.shape[-1]
        log_joint = -0.5 * (d * math.log(2 * math.pi) + log_det[:, None] + delta)
        resp, log_px = normalise(log_joint + log_weights[:, None])
        wr = resp * weights
        loglik = jnp.sum(jnp.where(weights > 0, weights * log_px, 0.0))
        return jnp.sum(wr, axis=1), self._stats(data, wr, factors, params), loglik

    # -- M-step ----------------------------------------------------------------------------

    @property
    def shares_parameters(self) -> bool:
        return self.common_loadings or self.common_uniquenesses

    def estimate(
        self,
        stats: FactorStats,
        counts: Array,
        prior: FactorPrior | None = None,
        active: Array | None = None,
    ) -> FactorParams:
        """The start's M-step, from a partition's statistics (with their ``scatter``): the
        leading eigenvectors of the covariances (probabilistic PCA's closed form, Tipping and
        Bishop 1999) under the variant's constraints. The iteration's M-step reads the current
        parameters: `estimate_from`."""
        if stats.scatter is None:
            raise TypeError(
                "the factor analysers' M-step reads the current parameters: call estimate_from "
                "(a mixture's m_step_from), or give statistics of a partition (params=None)"
            )
        return self._start(stats, counts, prior)

    def estimate_from(
        self,
        params: FactorParams,
        stats: FactorStats,
        counts: Array,
        prior: FactorPrior | None = None,
        active: Array | None = None,
    ) -> FactorParams:
        """Both AECM cycles from the pass's statistics (see the module), at the current
        ``params`` (whose loadings and uniquenesses give $\\beta_k$)."""
        if stats.scatter is not None:
            return self._start(stats, counts, prior)
        dtype = counts.dtype
        total = jnp.sum(counts)
        floor = 10 * jnp.finfo(dtype).eps * total
        empty = counts < floor
        n = counts + floor
        means = stats.sums / jnp.maximum(counts, floor)[:, None]  # not / n: see Gaussian
        weighted, chol, _ = self._inner(params)
        eye = jnp.eye(self.n_factors, dtype=dtype)
        beta = jnp.einsum("kqr,kdr->kqd", cholesky_inverse(chol), weighted)  # (K, q, D)
        d_over_n = stats.shifts / n[:, None]
        # about the new means: S beta^T, beta S beta^T, diag S (each divided by N_k)
        s_beta = (
            stats.cross
            - stats.shifts[:, :, None] * stats.factor_sums[:, None, :] / n[:, None, None]
        ) / n[:, None, None]
        b_over_n = stats.factor_sums / n[:, None]
        beta_s_beta = (
            stats.factor_squares / n[:, None, None] - b_over_n[:, :, None] * b_over_n[:, None, :]
        )
        diagonal = stats.squares / n[:, None] - d_over_n**2
        theta = eye - jnp.einsum("kqd,kdr->kqr", beta, params.loadings) + beta_s_beta
        theta = 0.5 * (theta + jnp.swapaxes(theta, -1, -2))
        loadings, residual = self._loadings_and_residuals(
            params, s_beta, theta, diagonal, n, counts
        )
        uniquenesses = self._uniquenesses(residual, n, counts, prior, diagonal)
        means = jnp.where(empty[:, None], params.means, means)
        if not self.common_loadings:  # a common part is the new one for every component
            loadings = jnp.where(empty[:, None, None], params.loadings, loadings)
        if not self.common_uniquenesses:
            uniquenesses = jnp.where(empty[:, None], params.uniquenesses, uniquenesses)
        return FactorParams(means, loadings, uniquenesses)

    def _loadings_and_residuals(self, params, s_beta, theta, diagonal, n, counts):
        """The loadings of the variant, and $T_{kd} = \\mathrm{diag}(S_k - 2\\Lambda\\beta_k S_k
        + \\Lambda\\Theta_k\\Lambda^\\top)$ at them ``(K, D)``."""
        if not self.common_loadings:
            # Lambda_k = S_k beta_k^T Theta_k^-1; at it T = diag(S - Lambda beta S)
            loadings = jnp.einsum("kdq,kqr->kdr", s_beta, spd_inverse(theta))
            residual = diagonal - jnp.sum(loadings * s_beta, axis=-1)
            return loadings, residual
        # common loadings, row by row: lambda_d = (sum_k w_kd r_kd)(sum_k w_kd Theta_k)^-1 with
        # w_kd = N_k / psi_kd (the current uniquenesses), r_kd row d of S_k beta_k^T
        w = counts[:, None] / params.uniquenesses  # (K, D)
        right = jnp.einsum("kd,kdq->dq", w, s_beta)
        left = jnp.einsum("kd,kqr->dqr", w, theta)  # (D, q, q)
        common = jnp.einsum("dq,dqr->dr", right, spd_inverse(left))  # (D, q)
        k = n.shape[0]
        loadings = jnp.broadcast_to(common, (k, *common.shape))
        fitted = jnp.einsum("dq,kqr,dr->kd", common, theta, common)
        residual = diagonal - 2.0 * jnp.sum(common[None] * s_beta, axis=-1) + fitted
        return loadings, residual

    def _uniquenesses(self, residual, n, counts, prior, diagonal):
        """The variant's uniquenesses from the residuals $T_{kd}$ (with a prior, the inverse
        gamma's mode), floored."""
        k, d = residual.shape
        dtype = residual.dtype
        if prior is None:
            shape, scale = jnp.zeros((), dtype), jnp.zeros((d,), dtype)
            pseudo = -2.0  # 2a + 2 = 0: the maximum likelihood
        else:
            shape, scale = prior.shape, prior.scale
            pseudo = 2.0 * shape
        weighted = counts[:, None] * residual  # N_k T_kd
        if self.common_uniquenesses and self.isotropic:
            value = (jnp.sum(weighted) + 2 * jnp.mean(scale)) / (jnp.sum(counts) * d + pseudo + 2)
            values = jnp.full((k, d), value)
        elif self.common_uniquenesses:
            values = (jnp.sum(weighted, axis=0) + 2 * scale) / (jnp.sum(counts) + pseudo + 2)
            values = jnp.broadcast_to(values, (k, d))
        elif self.isotropic:
            per = (jnp.sum(weighted, axis=1) + 2 * jnp.mean(scale)) / (n * d + pseudo + 2)
            values = jnp.broadcast_to(per[:, None], (k, d))
        else:
            values = (weighted + 2 * scale) / (n + pseudo + 2)[:, None]
        scales = jnp.maximum(diagonal, 0.0)
        if self.common_uniquenesses:
            scales = jnp.broadcast_to(jnp.max(scales, axis=0), (k, d))
        if self.isotropic:
            scales = jnp.broadcast_to(jnp.max(scales, axis=1, keepdims=True), (k, d))
        # Woodbury's distance subtracts two terms of size y^2 / psi: below sqrt(eps) of a
        # feature's variance their difference would be rounding (a Heywood case, psi -> 0)
        relative = jnp.sqrt(jnp.finfo(dtype).eps) * scales
        return jnp.maximum(values, jnp.maximum(floor_at(scales, self.reg_covar, d), relative))

    def _start(self, stats: FactorStats, counts: Array, prior: FactorPrior | None):
        """Probabilistic PCA of each component's covariance (of the pooled covariance for
        common loadings), then the variant's uniquenesses."""
        dtype = counts.dtype
        total = jnp.sum(counts)
        floor = 10 * jnp.finfo(dtype).eps * total
        n = counts + floor
        empty = counts < floor
        means = stats.sums / jnp.maximum(counts, floor)[:, None]  # not / n: see Gaussian
        covariances = stats.scatter / n[:, None, None]  # about the means (params=None)
        pooled = jnp.einsum("k,kde->de", counts / total, covariances)
        # an empty component (switched off by jaxem.grid) starts as the data's pooled one
        means = jnp.where(empty[:, None], jnp.sum(stats.sums, axis=0) / total, means)
        covariances = jnp.where(empty[:, None, None], pooled, covariances)
        if self.common_loadings:
            covariances_for_loadings = pooled[None]
        else:
            covariances_for_loadings = covariances
        q = self.n_factors
        d = covariances.shape[-1]
        values, vectors = linalg.leading_eigh(covariances_for_loadings, q)  # the q largest
        trace = jnp.trace(covariances_for_loadings, axis1=-2, axis2=-1)[..., None]
        rest = (trace - jnp.sum(values, axis=-1, keepdims=True)) / (d - q)  # sigma^2 of PPCA
        top = jnp.maximum(values - jnp.maximum(rest, 0.0), 0.0)
        loadings = vectors * jnp.sqrt(top)[..., None, :]
        loadings = jnp.broadcast_to(loadings, (counts.shape[0], d, q))
        fitted = jnp.sum(loadings * loadings, axis=-1)  # diag(Lambda Lambda^T)
        diagonal = jnp.einsum("kdd->kd", covariances)
        # at least a tenth of each variance: common loadings from the pooled covariance may
        # exceed a component's own, and a start on the boundary (psi = 0) is one EM crawls from
        residual = jnp.maximum(diagonal - fitted, START_SHARE * diagonal)
        uniquenesses = self._uniquenesses(residual, n, counts, prior, diagonal)
        return FactorParams(means, loadings, uniquenesses)

    # -- the prior -------------------------------------------------------------------------

    def _n_free_uniquenesses(self, n_components: int, n_features: int) -> int:
        per = 1 if self.isotropic else n_features
        return per * (1 if self.common_uniquenesses else n_components)

    def log_prior(
        self, params: FactorParams, prior: FactorPrior, active: Array | None = None
    ) -> Array:
        """The inverse gamma log density of every free uniqueness (the loadings' and means'
        priors are flat)."""
        psi = params.uniquenesses
        scale = prior.scale
        if self.isotropic:
            psi, scale = psi[..., :1], jnp.mean(scale, keepdims=True)
        if self.common_uniquenesses:
            psi = psi[:1]
        a = prior.shape
        density = a * jnp.log(scale) - jax.scipy.special.gammaln(a) - (a + 1) * jnp.log(psi)
        return jnp.sum(density - scale / psi)

    def default_prior_for(self, X: Array, n_components: int) -> FactorPrior:
        """$a = 1$, $b_d$ = 1 % of column $d$'s variance: the mode $b_d / 2$ keeps a
        uniqueness off zero at the weight of four pseudo-observations."""
        variance = jnp.var(X, axis=0)
        return FactorPrior(jnp.asarray(1.0, X.dtype), 0.01 * jnp.maximum(variance, 1e-12))

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> FactorPrior:
        if not isinstance(prior, FactorPrior):
            raise TypeError(
                f"{name} must be a FactorPrior(shape, scale); got {type(prior).__name__}"
            )
        shape = as_float_array(prior.shape, f"{name}.shape").astype(dtype)
        scale = as_float_array(prior.scale, f"{name}.scale").astype(dtype)
        if shape.shape != ():
            raise ValueError(f"{name}.shape must be a scalar; got shape {shape.shape}")
        if scale.shape != (n_features,):
            raise ValueError(f"{name}.scale must have shape ({n_features},); got {scale.shape}")
        prior = FactorPrior(shape, scale)
        if is_concrete(prior):
            self.check_prior_values(prior, n_features, name)
        return prior

    def check_prior_values(self, prior: FactorPrior, n_features: int, name: str = "prior"):
        for field in ("shape", "scale"):
            v = np.asarray(getattr(prior, field), dtype=np.float64)
            if not np.all(np.isfinite(v) & (v > 0)):
                raise ValueError(f"{name}.{field} must be finite and > 0; got {worst(v)}")

    # -- parameters ------------------------------------------------------------------------

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> FactorParams:
        """Shapes against ``(K, D, q)``; concrete values finite, uniquenesses > 0, and the
        variant's equalities."""
        if not isinstance(params, FactorParams):
            raise TypeError(
                f"{name} must be a FactorParams(means, loadings, uniquenesses); got "
                f"{type(params).__name__}"
            )
        k, d, q = n_components, n_features, self.n_factors
        expected = {"means": (k, d), "loadings": (k, d, q), "uniquenesses": (k, d)}
        context = f"n_components={k}, n_features={d}, n_factors={q}"
        arrays = checked_shapes(params, expected, dtype, name, context)
        if is_concrete(list(arrays.values())):
            values = {f: np.asarray(a, np.float64) for f, a in arrays.items()}
            for field, a in values.items():
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"{name}.{field} contains NaN or inf")
            psi = values["uniquenesses"]
            if np.any(psi <= 0):
                raise ValueError(f"{name}.uniquenesses must be > 0; got {worst(psi)}")
            if self.common_loadings and not np.allclose(values["loadings"], values["loadings"][:1]):
                raise ValueError(
                    f"{name}.loadings must be equal for every component ({self.variant})"
                )
            if self.common_uniquenesses and not np.allclose(psi, psi[:1]):
                raise ValueError(
                    f"{name}.uniquenesses must be equal for every component ({self.variant})"
                )
            if self.isotropic and not np.allclose(psi, psi[:, :1]):
                raise ValueError(
                    f"{name}.uniquenesses must be equal across features ({self.variant})"
                )
        return FactorParams(**arrays)

    def n_parameters_for(self, n_components: int, n_features: int) -> int:
        """pgmm's count: K·D means, the loadings less the $q(q-1)/2$ of a rotation (once when
        common, per component else), and the free uniquenesses."""
        k, d, q = n_components, n_features, self.n_factors
        loadings = d * q - q * (q - 1) // 2
        loadings *= 1 if self.common_loadings else k
        return k * d + loadings + self._n_free_uniquenesses(k, d)

    def sample_given(self, key: Array, params: FactorParams, labels: Array) -> Array:
        """One draw per entry of ``labels`` ``(N,)``: $\\mu + \\Lambda f + e$, ``(N, D)``."""
        means = jnp.asarray(params.means)
        loadings = jnp.asarray(params.loadings, means.dtype)[labels]
        psi = jnp.asarray(params.uniquenesses, means.dtype)[labels]
        factor_key, noise_key = jax.random.split(key)
        n, q = labels.shape[0], self.n_factors
        f = jax.random.normal(factor_key, (n, q), means.dtype)
        e = jax.random.normal(noise_key, psi.shape, means.dtype) * jnp.sqrt(psi)
        return means[labels] + jnp.einsum("ndq,nq->nd", loadings, f) + e

    def unconstrain(self, params: FactorParams) -> FactorParams:
        """The means and loadings as they are, the log uniquenesses."""
        return FactorParams(params.means, params.loadings, jnp.log(params.uniquenesses))

    def constrain(self, coordinates: FactorParams) -> FactorParams:
        return FactorParams(
            coordinates.means, coordinates.loadings, jnp.exp(coordinates.uniquenesses)
        )

    def permute(self, params: FactorParams, order: Any) -> FactorParams:
        """``params`` with components in ``order`` (common parts are equal: unchanged)."""
        order = jnp.asarray(order)
        return FactorParams(
            jnp.take(params.means, order, axis=-2),
            jnp.take(params.loadings, order, axis=-3),
            jnp.take(params.uniquenesses, order, axis=-2),
        )

    def component_covariances(self, params: FactorParams, n_components: int) -> Array:
        """$\\Lambda_k \\Lambda_k^\\top + \\Psi_k$, ``(K, D, D)`` (dense: for drawing and
        checking, never in the E-step)."""
        loadings = jnp.asarray(params.loadings)
        low_rank = jnp.einsum("kdq,keq->kde", loadings, loadings)
        return low_rank + jax.vmap(jnp.diag)(jnp.asarray(params.uniquenesses))

    # -- NumPyro (for `jaxem.crosscheck`; the family never imports NumPyro) ----------------

    def numpyro_components(self, dist: Any, params: FactorParams) -> Any:
        """The K components: NumPyro's low-rank multivariate normals."""
        return dist.LowRankMultivariateNormal(params.means, params.loadings, params.uniquenesses)

    def numpyro_params(
        self,
        sample: Any,
        dist: Any,
        prior: FactorPrior | None,
        n_components: int,
        n_features: int,
    ) -> FactorParams:
        """``means`` and ``loadings`` flat (improper) sites, ``uniquenesses`` flat on the
        positive numbers or, with a prior, inverse gamma. Only ``variant="UUU"``: the other
        variants' parameters are not one site entry per free parameter (``ValueError``)."""
        if self.variant != "UUU":
            raise ValueError(
                "the NumPyro cross-check takes every parameter as its own site: build the "
                "factor analysers with variant='UUU'"
            )
        k, d, q = n_components, n_features, self.n_factors
        constraints = dist.constraints
        means = sample("means", dist.ImproperUniform(constraints.real, (), (k, d)))
        loadings = sample("loadings", dist.ImproperUniform(constraints.real, (), (k, d, q)))
        if prior is None:
            psi = sample("uniquenesses", dist.ImproperUniform(constraints.positive, (), (k, d)))
        else:
            scale = jnp.broadcast_to(prior.scale, (k, d))
            psi = sample("uniquenesses", dist.InverseGamma(prior.shape, scale).to_event(2))
        return FactorParams(means, loadings, psi)
