"""Standard errors, covariances and Wald intervals of fitted parameters: `standard_errors`.

The information (`jaxem.information`) is taken in the model's chart, $P$ free coordinates
(`jaxem.charts`), and inverted there; the covariance of the parameters as the model stores them
(every entry of every array: weights, means, covariance matrices, ...) follows by the delta
method, $\\mathrm{Cov}(\\hat\\theta) = J I^{-1} J^\\top$ with $J$ the chart's Jacobian at the
estimate, so entries bound by a constraint (weights summing to one, a covariance's two
triangles, a shape of determinant one) get consistent variances. The sandwich (robust)
covariance is $I^{-1} B I^{-1}$ with $B = \\sum_u w_u s_u s_u^\\top$ the weighted outer products of
the per-unit scores (a unit: a sample, or a sequence), weights read as frequencies.

Where the information is singular only the entries it concerns are NaN: a coordinate that
changes nothing (a structural zero of a transition matrix, a probability that EM set to 0) is
held fixed (standard error 0); coordinates with non-finite information (a probability at 1), or
in a direction of zero or negative curvature (an empty component, a saddle point), are NaN, and
so is every parameter that depends on them. A fit that has not converged warns, as does an
estimate at which a Newton step would move a coordinate by more than 5 % of its standard error.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import partial
from typing import Any

import jax
import numpy as np
from scipy import stats as scipy_stats

from jaxem import information
from jaxem.base import EMModel, FitResult, Params, Prior
from jaxem.capabilities import check_model, of_model
from jaxem.chunking import fill_unweighted
from jaxem.compiler import jit
from jaxem.em import check_inputs, prepare_data
from jaxem.validation import check_positive_int

METHODS = (*information.ESTIMATORS, "sandwich")
# a Newton step longer than this many standard errors means the estimate is not a maximum
STATIONARY = 0.05


@dataclasses.dataclass(frozen=True)
class StandardErrors:
    """What `standard_errors` returns.

    Attributes:
        params: the estimate, as the model stores it.
        standard_errors: a pytree like ``params``: every entry's standard error (0 for an
            entry held fixed, NaN where the information says nothing; see the module).
        covariance: ``(M, M)`` the covariance of all M entries of ``params`` (flattened in
            the order of ``names``).
        names: the M entries' names, ``"weights[0]"``, ``"components.means[1, 0]"``, ...
        information: ``(P, P)`` the information in the chart's P coordinates.
        chart_covariance: ``(P, P)`` its inverse (the sandwich's, for ``"sandwich"``).
        jacobian: ``(M, P)`` the chart's Jacobian at the estimate.
        method: the estimator (`METHODS`).
        em_rate: for ``"sem"``, EM's rate of convergence at the estimate (the spectral radius
            of the EM map's Jacobian), else None.
    """

    params: Any
    standard_errors: Any
    covariance: np.ndarray
    names: list[str]
    information: np.ndarray
    chart_covariance: np.ndarray
    jacobian: np.ndarray
    method: str
    em_rate: float | None = None

    def interval(self, level: float = 0.95) -> tuple[Any, Any]:
        """Wald intervals $\\hat\\theta \\pm z_{(1 + \\mathrm{level})/2}\\, \\mathrm{se}$:
        ``(lower, upper)``, pytrees like ``params``."""
        return wald_interval(self.params, self.standard_errors, level)

    def table(self, level: float = 0.95) -> list[tuple[str, float, float, float, float]]:
        """Rows ``(name, estimate, standard error, lower, upper)``, one per distinct entry (of
        a symmetric matrix, the upper triangle)."""
        estimate = _flat(self.params)
        se = _deviations(self.covariance)
        z = _z(level)
        rows, seen = [], {}
        scale = np.max(np.abs(self.jacobian), initial=0.0)
        for i, name in enumerate(self.names):
            twins = seen.setdefault(estimate[i].tobytes(), [])
            if any(np.allclose(self.jacobian[i], j, rtol=1e-4, atol=1e-6 * scale) for j in twins):
                continue  # the other triangle of a symmetric matrix
            twins.append(self.jacobian[i])
            low, high = estimate[i] - z * se[i], estimate[i] + z * se[i]
            rows.append((name, estimate[i], se[i], low, high))
        return rows

    def summary(self, level: float = 0.95) -> str:
        """A printed table: estimate, standard error and the Wald interval of every distinct
        entry ("(fixed)" for one held fixed: a structural zero, a parameter on its
        boundary)."""
        rows = self.table(level)
        width = max(len("parameter"), *(len(r[0]) for r in rows))
        pct = f"{100 * level:g} %"
        head = (
            f"{'parameter':<{width}}  {'estimate':>12}  {'std. err.':>11}  "
            f"{'[' + pct:>12}  {'interval]':>12}"
        )
        lines = [f"Standard errors ({_DESCRIPTIONS[self.method]})", head, "-" * len(head)]
        for name, est, se, lo, hi in rows:
            if se == 0:  # held fixed: a structural zero, a parameter on its boundary
                lines.append(f"{name:<{width}}  {est:>12.6g}  {'(fixed)':>11}")
                continue
            lines.append(f"{name:<{width}}  {est:>12.6g}  {se:>11.4g}  {lo:>12.6g}  {hi:>12.6g}")
        if self.em_rate is not None:
            lines.append(f"EM's rate of convergence at the estimate: {self.em_rate:.4g}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


_DESCRIPTIONS = {
    "observed": "observed information",
    "louis": "observed information by Louis's identity",
    "oakes": "observed information by Oakes's formula",
    "sem": "observed information by SEM",
    "sandwich": "sandwich (robust) covariance",
}


def wald_interval(estimate: Any, standard_errors: Any, level: float = 0.95) -> tuple[Any, Any]:
    """$\\hat\\theta \\pm z_{(1 + \\mathrm{level})/2}\\, \\mathrm{se}$: ``(lower, upper)``, pytrees
    like ``estimate`` (``standard_errors`` shaped alike). ``ValueError`` unless ``level`` is in
    (0, 1)."""
    z = _z(level)
    lower = jax.tree.map(lambda e, s: np.asarray(e) - z * s, estimate, standard_errors)
    upper = jax.tree.map(lambda e, s: np.asarray(e) + z * s, estimate, standard_errors)
    return lower, upper


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    return float(scipy_stats.norm.ppf(0.5 + level / 2))


def standard_errors(
    model: EMModel,
    fit: FitResult | Params,
    X: Any,
    *,
    weights: Any = None,
    prior: Prior | None = None,
    method: str = "observed",
    batch_size: int = 64,
) -> StandardErrors:
    """Standard errors and the covariance of fitted parameters.

    Args:
        model: the model fitted (a mixture of any family and covariance structure, a hidden
            Markov model; any model with a ``chart``, see `jaxem.charts`).
        fit: the `jaxem.FitResult` (a fit that has not converged warns) or the parameters.
        X: the data fitted, ``(N, D)`` (``(S, T, D)`` for a hidden Markov model).
        weights: the sample weights of the fit.
        prior: the prior of a MAP fit: the information is then the log posterior's.
        method: ``"observed"`` (the Hessian by autodiff), ``"louis"`` (mixtures), ``"oakes"``,
            ``"sem"`` (without missing values) or ``"sandwich"`` (see `jaxem.information`).
        batch_size: Hessian-vector products computed at once (each holds the E-step's
            working memory a few times over: lower it for a large model on much data). The
            observed information of 100,000 x 16 rows, 16 full components (2,447 free
            parameters) takes 112 s in float32, 202 s in float64 on a 2-core CPU.

    Returns:
        `StandardErrors`: ``standard_errors`` shaped like the parameters, ``covariance`` with
        ``names``, ``interval(level)`` and a printed ``summary()``.
    """
    check_model(model)
    batch_size = check_positive_int(batch_size, "batch_size")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    can = of_model(model)
    if can.chart is None or can.n_parameters is None:
        raise TypeError(
            f"{type(model).__name__} has no chart (local coordinates, see jaxem.charts) and "
            "n_parameters: standard errors need both"
        )
    if method in ("louis", "oakes", "sem") and can.expected_complete_log_likelihood is None:
        raise TypeError(f"method={method!r} needs the model's expected_complete_log_likelihood")
    if method == "louis" and can.complete_log_likelihoods is None:
        raise TypeError(
            "method='louis' needs one discrete latent value per sample (a mixture's "
            "complete_log_likelihoods); use 'oakes', which agrees with it"
        )
    if method == "sem" and can.missing:
        raise ValueError(
            "method='sem' needs the complete-data information of the EM that was run, which "
            "with missing values this model does not give; use 'observed' or 'oakes'"
        )
    warned = False
    if isinstance(fit, FitResult):
        warned = not bool(np.all(np.asarray(fit.converged)))
        if warned:
            warnings.warn(
                "the fit has not converged: standard errors assume the estimate is a maximum",
                stacklevel=2,
            )
        fit = fit.params
    X, params, weights, prior = check_inputs(model, X, fit, weights, prior)
    data = _prepared(model, X, weights)
    p = information.n_coordinates(model, X.shape[-1])

    rate = None
    if method in ("observed", "sandwich"):
        info = information.observed(model, params, data, weights, prior, p, batch_size)
    elif method == "louis":
        info = information.louis(model, params, data, weights, prior, p)
    elif method == "oakes":
        info = information.oakes(model, params, data, weights, prior, p)
    else:
        info, dm = information.sem(model, params, data, weights, prior, p)
        rate = float(information.em_rate(dm))
    info = np.asarray(info, np.float64)
    inverse, unknown = invert(info)
    if not warned:
        _warn_unless_stationary(model, params, data, weights, prior, p, inverse)
    chart_cov = inverse
    if method == "sandwich":
        scores = np.asarray(information.scores(model, params, data, weights, p), np.float64)
        unit_weights = np.asarray(weights, np.float64).reshape(scores.shape[0], -1)[:, 0]
        middle = np.einsum("u,up,uq->pq", unit_weights, scores, scores)
        known = np.nan_to_num(inverse)
        chart_cov = known @ middle @ known
        chart_cov[unknown] = np.nan
        chart_cov[:, unknown] = np.nan

    jacobian = np.asarray(information.chart_jacobian(model, params, p), np.float64)
    known = np.where(unknown[None, :], 0.0, jacobian)
    covariance = known @ np.nan_to_num(chart_cov) @ known.T
    touched = np.any((jacobian != 0) & unknown[None, :], axis=1)
    covariance[touched] = np.nan
    covariance[:, touched] = np.nan
    se = _deviations(covariance)
    return StandardErrors(
        params=params,
        standard_errors=_unflat(params, se),
        covariance=covariance,
        names=_names(params),
        information=info,
        chart_covariance=chart_cov,
        jacobian=jacobian,
        method=method,
        em_rate=rate,
    )


def invert(info: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of an information matrix ``(P, P)`` where it is regular: ``(covariance,
    unknown)``. Coordinates whose row is zero (they change nothing) are held fixed (variance
    0); those with a non-finite row, or in a direction of curvature at most ``P`` machine
    epsilons of the largest (or negative), are ``unknown`` (booleans ``(P,)``) and their rows
    and columns NaN."""
    p = info.shape[0]
    fixed = np.all(info == 0, axis=1)
    unknown = ~np.all(np.isfinite(info), axis=1) & ~fixed
    covariance = np.zeros_like(info)
    for _ in range(p):
        keep = ~fixed & ~unknown
        if not keep.any():
            break
        sub = info[np.ix_(keep, keep)]
        values, vectors = np.linalg.eigh(sub)
        tol = max(values[-1], 0.0) * p * 1e3 * np.finfo(np.float64).eps
        weak = values <= tol
        if not weak.any():
            covariance[np.ix_(keep, keep)] = (vectors / values) @ vectors.T
            break
        # the coordinates that the flat or downward directions move
        involved = np.max(np.abs(vectors[:, weak]), axis=1) > 1e-3
        index = np.flatnonzero(keep)
        unknown[index[involved]] = True
    covariance[unknown] = np.nan
    covariance[:, unknown] = np.nan
    return covariance, unknown


def _deviations(covariance: np.ndarray) -> np.ndarray:
    """Standard deviations from a covariance's diagonal (NaN stays NaN)."""
    return np.sqrt(np.maximum(np.diag(covariance), 0.0))


def _warn_unless_stationary(model, params, data, weights, prior, p, inverse) -> None:
    """Warn when a Newton step, ``inverse`` times the gradient, moves a coordinate by more than
    `STATIONARY` of its standard error (coordinates held fixed or unknown left out)."""
    gradient = np.asarray(information.gradient(model, params, data, weights, prior, p), np.float64)
    se = _deviations(inverse)
    keep = se > 0  # false for NaN (unknown) and 0 (held fixed)
    if not keep.any():
        return
    step = inverse[np.ix_(keep, keep)] @ gradient[keep]
    worst = float(np.max(np.abs(step) / se[keep]))
    if worst > STATIONARY:
        warnings.warn(
            f"the estimate is not a maximum of the objective: a Newton step would move it by "
            f"{worst:.2g} standard errors (fit to a smaller tol?)",
            stacklevel=3,
        )


# compiled, not run operation by operation (each operation would compile a program of its own:
# about 40 of them, 0.6 s, for a Gaussian mixture's first standard errors)
@partial(jit, static_argnames="model")
def _prepared(model: EMModel, X: Any, weights: Any) -> Any:
    return prepare_data(model, fill_unweighted(X, weights), weights)


def _flat(params: Params) -> np.ndarray:
    """Every entry of ``params`` in one float64 vector, in the order of `_names` (as
    ``jax.flatten_util.ravel_pytree``, on the host)."""
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(params)])


def _unflat(params: Params, values: np.ndarray) -> Any:
    """``values`` (as `_flat` orders them) shaped like ``params``'s leaves, NumPy arrays of
    their dtypes."""
    leaves, tree = jax.tree.flatten(params)
    ends = np.cumsum([np.size(a) for a in leaves])[:-1]
    parts = np.split(np.asarray(values), ends)
    shaped = [
        p.reshape(np.shape(a)).astype(np.asarray(a).dtype)
        for p, a in zip(parts, leaves, strict=True)
    ]
    return jax.tree.unflatten(tree, shaped)


def _names(params: Params) -> list[str]:
    """Names of every entry of ``params`` in the order of ``ravel_pytree``:
    ``"components.means[1, 0]"``."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        base = jax.tree_util.keystr(path, simple=True, separator=".")
        shape = np.shape(leaf)
        if not shape:
            names.append(base)
            continue
        for index in np.ndindex(*shape):
            names.append(f"{base}[{', '.join(str(i) for i in index)}]")
    return names


__all__ = ["METHODS", "StandardErrors", "invert", "standard_errors", "wald_interval"]
