"""Information criteria and a grid search over mixture models.

Convention (scikit-learn's): **lower is better**. With $\\hat\\ell$ the (weighted)
log-likelihood at the fitted parameters, $p$ the number of free parameters and
$n = \\sum_n w_n$,

$$
\\mathrm{BIC} = -2\\hat\\ell + p \\log n, \\qquad
\\mathrm{AIC} = -2\\hat\\ell + 2p, \\qquad
\\mathrm{ICL} = \\mathrm{BIC} - 2 \\sum_n w_n \\log \\max_k r_{nk}.
$$

mclust reports $2\\hat\\ell - p\\log n$, the negative of this BIC (higher is better there).
ICL (Biernacki, Celeux and Govaert 2000) adds the entropy of the hard classification, as mclust's
``icl`` does: it penalises components that overlap.

A maximum-likelihood fit can put a component on a few identical points (rounded data, ties):
its variance is then ``reg_covar`` alone and its likelihood, hence every criterion, is an
artefact of that regulariser. `select` reports such cells as singular (NaN in the table),
as mclust reports NA for fits it finds singular.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.base import PRNGKey
from jaxem.batch import fit_restarts
from jaxem.gaussian_mixture import GaussianMixture, GaussianMixtureParams
from jaxem.mixture import Mixture
from jaxem.priors import default_prior
from jaxem.validation import check_data, check_weights

CRITERIA = ("bic", "aic", "icl")


def _loglik_and_size(model, params, X, weights):
    X = model.family.check_data(X)
    w = check_weights(weights, X.shape[0], X.dtype)
    log_px = model.score_samples(params, X)
    loglik = jnp.sum(jnp.where(w > 0, w * log_px, 0.0))
    return X, w, loglik, jnp.sum(w), model.n_parameters(X.shape[1])


def bic(model: Mixture, params: Any, X: Any, weights: Any = None):
    """$-2\\hat\\ell + p \\log n$ (lower is better). ``X`` ``(N, D)``."""
    _, _, loglik, n, p = _loglik_and_size(model, params, X, weights)
    return -2.0 * loglik + p * jnp.log(n)


def aic(model: Mixture, params: Any, X: Any, weights: Any = None):
    """$-2\\hat\\ell + 2p$ (lower is better). ``X`` ``(N, D)``."""
    _, _, loglik, _, p = _loglik_and_size(model, params, X, weights)
    return -2.0 * loglik + 2.0 * p


def icl(model: Mixture, params: Any, X: Any, weights: Any = None):
    """BIC plus $-2\\sum_n w_n \\log \\max_k r_{nk}$ (lower is better)."""
    X, w, loglik, n, p = _loglik_and_size(model, params, X, weights)
    log_r = jnp.log(model.predict_proba(params, X))
    entropy = -jnp.sum(jnp.where(w > 0, w * jnp.max(log_r, axis=1), 0.0))
    return -2.0 * loglik + p * jnp.log(n) + 2.0 * entropy


class SelectResult(NamedTuple):
    """What `select` returns.

    Attributes:
        criterion: ``"bic"``, ``"aic"`` or ``"icl"`` (lower is better).
        table: ``{covariance_type: {n_components: value}}``; NaN where K exceeds the data.
        model: the best `jaxem.GaussianMixture`.
        params: its fitted parameters (best of ``n_init`` starts).
        objective: its final EM objective.
        singular: the cells ``(covariance_type, K)`` whose best fit has a component held up by
            ``reg_covar`` alone (a variance below twice ``reg_covar``); NaN in ``table``.
    """

    criterion: str
    table: dict
    model: GaussianMixture
    params: GaussianMixtureParams
    objective: Any
    singular: tuple = ()

    def __repr__(self) -> str:
        types = list(self.table)
        ks = sorted({k for column in self.table.values() for k in column})
        head = f"{self.criterion.upper()} (lower is better; mclust's BIC is the negative)"
        rows = [head, f"{'K':>4}" + "".join(f"{t:>14}" for t in types)]
        for k in ks:
            cells = []
            for t in types:
                v = self.table[t].get(k, math.nan)
                best = t == self.model.covariance_type and k == self.model.n_components
                if (t, k) in self.singular:
                    cells.append(f"{'singular':>13} ")
                else:
                    cells.append(f"{v:>13.3f}" + ("*" if best else " "))
            rows.append(f"{k:>4}" + "".join(cells))
        rows.append(
            f"best: GaussianMixture({self.model.n_components}, "
            f"{self.model.covariance_type!r}), {self.criterion} = "
            f"{self.table[self.model.covariance_type][self.model.n_components]:.3f}"
        )
        return "\n".join(rows)


def select(
    X: Any,
    n_components: Any = range(1, 7),
    covariance_types: Any = ("full", "diag", "spherical", "tied"),
    *,
    key: PRNGKey,
    criterion: str = "bic",
    prior: Any = None,
    weights: Any = None,
    n_init: int = 4,
    tol: float = 1e-3,
    max_iter: int = 100,
    on_cell: Callable[[str, int, float], Any] | None = None,
) -> SelectResult:
    """Fit every (covariance type, K) of the grid with `jaxem.fit_restarts` and rank them.

    Args:
        X: ``(N, D)``.
        n_components: the grid's numbers of components.
        covariance_types: the grid's covariance types.
        key: a PRNG key (every cell uses its own fold of it).
        criterion: ``"bic"``, ``"aic"`` or ``"icl"``, lower is better.
        prior: None (MLE), ``"default"`` (`jaxem.default_prior` per cell, as mclust's
            ``priorControl()``), or a function ``prior(model, X)``. With a prior the criteria use
            the log-likelihood at the MAP estimate.
        weights: sample weights ``(N,)``, passed to `jaxem.fit_restarts`.
        n_init: starts per cell, passed to `jaxem.fit_restarts`.
        tol: passed to `jaxem.fit_restarts`.
        max_iter: passed to `jaxem.fit_restarts`.
        on_cell: called after each cell as ``on_cell(covariance_type, K, value)`` (a progress
            bar, a log line).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    X = check_data(X)
    n_rows = X.shape[0] if weights is None else int(np.count_nonzero(np.asarray(weights) > 0))
    score = {"bic": bic, "aic": aic, "icl": icl}[criterion]
    if not (prior is None or prior == "default" or callable(prior)):
        raise TypeError("prior must be None, 'default' or a function prior(model, X)")
    table: dict = {}
    singular = []
    best = None
    for i, cov_type in enumerate(covariance_types):
        table[cov_type] = {}
        for j, k in enumerate(n_components):
            model = GaussianMixture(int(k), cov_type)
            if k > n_rows:
                table[cov_type][int(k)] = math.nan
                if on_cell is not None:
                    on_cell(cov_type, int(k), math.nan)
                continue
            cell_prior = None
            if prior == "default":
                cell_prior = default_prior(model, X)
            elif callable(prior):
                cell_prior = prior(model, X)
            fit = fit_restarts(
                model,
                jax.random.fold_in(key, i * 1000 + j),
                X,
                n_init=n_init,
                weights=weights,
                prior=cell_prior,
                tol=tol,
                max_iter=max_iter,
            )
            value = float(score(model, fit.params, X, weights))
            components = model.as_mixture_params(fit.params).components
            if cell_prior is None and model.family.is_singular(components):
                singular.append((cov_type, int(k)))
                value = math.nan
            table[cov_type][int(k)] = value
            if on_cell is not None:
                on_cell(cov_type, int(k), value)
            if math.isnan(value):
                continue
            if best is None or value < best[0]:
                best = (value, model, fit)
    if best is None:
        raise ValueError("no cell of the grid gave a fit: every K exceeds the data or is singular")
    _, model, fit = best
    return SelectResult(criterion, table, model, fit.params, fit.objective, tuple(singular))
