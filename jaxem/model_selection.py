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
its variance is then ``reg_covar`` alone (in float32, the precision of the data's squares where
that is coarser: `jaxem.families.gaussian.full.floors`) and its likelihood, hence every
criterion, is an artefact of that floor. `select` reports such cells as singular (NaN in the
table), as mclust reports NA for fits it finds singular.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.base import Array, PRNGKey
from jaxem.buckets import pad_rows
from jaxem.compiler import jit
from jaxem.em import check_inputs, objective, plan, prepare_data
from jaxem.families.gaussian import structure as structures
from jaxem.gaussian_mixture import MCLUST_MODELS, GaussianMixture
from jaxem.grid import best_starts, first_components, fit_grid
from jaxem.hierarchical import partitions
from jaxem.mixture import Mixture
from jaxem.priors import default_prior
from jaxem.validation import check_data, check_fit_options, check_positive_int, check_weights

CRITERIA = ("bic", "aic", "icl")
# criterion values closer than this many units of the fit's precision (relative) are a tie
TIE_ULPS = 16


def better(value: float, than: float, dtype: Any) -> bool:
    """Whether the criterion ``value`` is lower than ``than`` by more than `TIE_ULPS` units
    of ``dtype``'s precision, relative: closer values are fits that differ by rounding alone
    (with one component, mclust's eight structures with full matrices are one model), and
    `select` keeps the first of them in its table's order."""
    return value < than - TIE_ULPS * float(np.finfo(dtype).eps) * abs(than)


def _loglik_and_size(model, params, X, weights):
    """The weighted log-likelihood (the model's E-step), the total weight $n$ (samples; for a
    hidden Markov model, steps) and the free parameters $p$."""
    X, params, w, _ = check_inputs(model, X, params, weights, None)
    loglik = _log_likelihood(model, params, X, w)
    return X, w, loglik, jnp.sum(w), model.n_parameters(X.shape[-1])


@partial(jit, static_argnames="model")
def _log_likelihood(model, params, X, weights):
    return model.e_step(params, prepare_data(model, X, weights), weights)[1]


def bic(model: Any, params: Any, X: Any, weights: Any = None):
    """$-2\\hat\\ell + p \\log n$ (lower is better), with $n$ the total sample weight (for a
    `jaxem.HiddenMarkovModel`, of the steps, as hmmlearn counts them). ``X`` ``(N, D)``, or
    for a hidden Markov model ``(S, T, D)`` with ``weights`` ``(S, T)``."""
    _, _, loglik, n, p = _loglik_and_size(model, params, X, weights)
    return -2.0 * loglik + p * jnp.log(n)


def aic(model: Any, params: Any, X: Any, weights: Any = None):
    """$-2\\hat\\ell + 2p$ (lower is better). ``X`` as for `bic`."""
    _, _, loglik, _, p = _loglik_and_size(model, params, X, weights)
    return -2.0 * loglik + 2.0 * p


def icl(model: Mixture, params: Any, X: Any, weights: Any = None):
    """BIC plus $-2\\sum_n w_n \\log \\max_k r_{nk}$ (lower is better)."""
    X, w, loglik, n, p = _loglik_and_size(model, params, X, weights)
    log_r = jnp.log(model.predict_proba(params, X))
    entropy = -jnp.sum(jnp.where(w > 0, w * jnp.max(log_r, axis=1), 0.0))
    return -2.0 * loglik + p * jnp.log(n) + 2.0 * entropy


REPR_COLUMNS = 7  # columns of the printed table side by side (95 characters)


class SelectResult(NamedTuple):
    """What `select` returns.

    Attributes:
        criterion: ``"bic"``, ``"aic"`` or ``"icl"`` (lower is better).
        table: ``{column: {n_components: value}}``, a column per covariance type (or per
            family, named by its ``describe()``); NaN where K exceeds the data.
        model: the best mixture (a `jaxem.GaussianMixture`, or a `jaxem.Mixture` of one of
            ``families``).
        params: its fitted parameters (the best of its cell's starts).
        objective: its final EM objective.
        singular: the cells ``(column, K)`` whose best fit has a component held up by
            the M-step's floor alone (a variance below twice ``reg_covar``, or twice the
            precision of the data's squares in float32: `Gaussian.collapsed`); NaN in ``table``.
        column: the best model's column of ``table``.
    """

    criterion: str
    table: dict
    model: Mixture
    params: Any
    objective: Any
    singular: tuple = ()
    column: Any = None

    def mclust(self, width: int = 80) -> str:
        """The table as R's mclust prints a ``mclustBIC`` object: the criterion with mclust's
        sign (higher is better), a row per K, as many columns as fit in ``width`` characters,
        NA for singular cells and for K beyond the data (NaN in ``table``), then the top three
        cells."""
        title = {
            "bic": "Bayesian Information Criterion (BIC): ",
            "aic": "Akaike Information Criterion (AIC): ",
            "icl": "Integrated Complete-data Likelihood (ICL) criterion: ",
        }[self.criterion]
        ks = sorted({k for column in self.table.values() for k in column})
        values = {(t, k): -self.table[t].get(k, math.nan) for t in self.table for k in ks}
        finite = [v for v in values.values() if not math.isnan(v)]
        decimals = _significant_decimals(finite)
        cells = {key: "NA" if math.isnan(v) else f"{v:.{decimals}f}" for key, v in values.items()}
        label = max(len(str(k)) for k in ks)
        widths = {t: max(len(str(t)), *(len(cells[t, k]) for k in ks)) for t in self.table}
        blocks, block = [], []
        for t in self.table:
            if block and label + sum(widths[u] + 1 for u in [*block, t]) > width:
                blocks.append(block)
                block = []
            block.append(t)
        blocks.append(block)
        lines = [title]
        for block in blocks:
            lines.append(" " * label + "".join(f" {t:>{widths[t]}}" for t in block))
            for k in ks:
                lines.append(
                    f"{k:<{label}}" + "".join(f" {cells[t, k]:>{widths[t]}}" for t in block)
                )
        top = sorted(((v, key) for key, v in values.items() if not math.isnan(v)), reverse=True)
        top = [(f"{t},{k}", f"{v:.{_significant_decimals([v])}f}") for v, (t, k) in top[:3]]
        lines += ["", f"Top 3 models based on the {self.criterion.upper()} criterion: "]
        lines.append("".join(f"{n:>{max(len(n), len(v))}} " for n, v in top))
        lines.append("".join(f"{v:>{max(len(n), len(v))}} " for n, v in top))
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """The criterion (mclust's sign: higher is better) against K, one line per column of
        the table, as mclust's ``plot(mclustBIC)`` draws it; singular cells are left out.
        Needs matplotlib. Returns the axes (a new figure's unless ``ax`` is given)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 5))
        markers = "osD^v<>pP*Xhd8"
        colours = plt.get_cmap("tab20").colors
        for i, t in enumerate(self.table):
            ks = sorted(k for k, v in self.table[t].items() if not math.isnan(v))  # not singular
            ax.plot(
                ks,
                [-self.table[t][k] for k in ks],
                marker=markers[i % len(markers)],
                color=colours[(2 * i) % len(colours) + (i // 10) % 2],
                label=str(t),
                linewidth=1,
                markersize=5,
                markerfacecolor="none",
            )
        ax.set_xlabel("Number of components")
        ax.set_ylabel(self.criterion.upper())
        all_ks = sorted({k for column in self.table.values() for k in column})
        ax.set_xticks(all_ks)
        ax.legend(ncol=2, fontsize="small", loc="lower right")
        return ax

    def __repr__(self) -> str:
        types = list(self.table)
        ks = sorted({k for column in self.table.values() for k in column})
        head = f"{self.criterion.upper()} (lower is better"
        head += "; mclust's BIC is the negative)" if self.criterion == "bic" else ")"
        rows = [head]
        for first in range(0, len(types), REPR_COLUMNS):  # mclust's fourteen: two blocks
            block = types[first : first + REPR_COLUMNS]
            widths = [max(13, len(t) + 2) for t in block]  # a family's name may be long
            names = "".join(f"{t:>{w}}" for t, w in zip(block, widths, strict=True))
            rows.append(f"{'K':>4}" + names)
            for k in ks:
                cells = []
                for t, w in zip(block, widths, strict=True):
                    v = self.table[t].get(k, math.nan)
                    best = t == self.column and k == self.model.n_components
                    if (t, k) in self.singular:
                        cells.append(f"{'singular':>{w - 1}} ")
                    else:
                        cells.append(f"{v:>{w - 1}.3f}" + ("*" if best else " "))
                rows.append(f"{k:>4}" + "".join(cells))
        rows.append(
            f"best: {self.model.describe()}, {self.criterion} = "
            f"{self.table[self.column][self.model.n_components]:.3f}"
        )
        return "\n".join(rows)


def _significant_decimals(values: list) -> int:
    """The decimals R's ``print`` gives a numeric vector: enough for 7 significant digits of
    each value, at most 7, trailing zeros common to all dropped."""
    decimals = 0
    for v in values:
        digits = len(str(int(abs(v)))) if abs(v) >= 1 else 1 - math.floor(math.log10(abs(v) or 1))
        decimals = max(decimals, min(7, max(0, 7 - digits)))
    while decimals > 0 and all(f"{v:.{decimals}f}".endswith("0") for v in values):
        decimals -= 1
    return decimals


def default_covariance_types(prior: Any = None) -> tuple[str, ...]:
    """`select`'s default columns: mclust's fourteen models, or with a ``prior`` (not None)
    those that have one, as ``Mclust`` with ``priorControl()``."""
    return tuple(m for m in MCLUST_MODELS if prior is None or structures.of(m).has_map)


def select(
    X: Any,
    n_components: Any = range(1, 10),
    covariance_types: Any = None,
    *,
    key: PRNGKey,
    criterion: str = "bic",
    prior: Any = None,
    weights: Any = None,
    n_init: int = 32,
    tol: float = 1e-6,
    max_iter: int = 1000,
    on_cell: Callable[[str, int, float], Any] | None = None,
    missing: bool = False,
    families: Any = None,
) -> SelectResult:
    """Fit every (covariance type, K) of the grid, or every (family, K), and rank the fits by
    ``criterion``.

    The grid is a few compiled programs (`jaxem.grid.fit_grid`): every K of a covariance type
    is a mixture of ``max(n_components)`` components with the surplus ones switched off, and
    every cell's starts run side by side. The starts, the same for every covariance type, are
    ``n_init`` k-means partitions of the whitened data and mclust's: the model-based
    hierarchical clustering of `jaxem.hierarchical` (on at most 2000 rows). In each cell the
    start with the largest objective wins, among those without a collapsed component. The
    best cell has the lowest value; values equal to the fit's precision are tied (`better`),
    and the first in the table's order wins.

    Args:
        X: ``(N, D)``.
        n_components: the grid's numbers of components (default 1 to 9, as ``Mclust``).
        covariance_types: the grid's covariance structures, by name or as structures; None
            (default): mclust's fourteen models (`jaxem.gaussian_mixture.MCLUST_MODELS`, as
            ``Mclust``), or with a ``prior`` those of them that have one (as ``Mclust`` with
            ``priorControl()``). scikit-learn's ``("full", "diag", "spherical", "tied")`` are
            mclust's VVV, VVI, VII and EEE. The table names each column as it was given.
        key: a PRNG key.
        criterion: ``"bic"``, ``"aic"`` or ``"icl"``, lower is better.
        prior: None (MLE), ``"default"`` (`jaxem.default_prior` per cell, as mclust's
            ``priorControl()``), or a function ``prior(model, X)``. With a prior the criteria use
            the log-likelihood at the MAP estimate.
        weights: sample weights ``(N,)``.
        n_init: k-means starts per cell, besides the hierarchical one. They run side by side
            in the one program; 0 leaves the hierarchical start alone, as ``Mclust`` (the
            fastest grid, and the one to time against mclust; a family's grid needs at least
            one).
        tol: the stopping rule of `jaxem.fit` (the change of the objective per unit of sample
            weight), much tighter than `jaxem.fit`'s default: a slowly converging cell stopped
            early costs BIC units (Old Faithful, full K = 4: 2.6 units short of mclust's at
            1e-5, level at 1e-6).
        max_iter: the most EM iterations per start.
        on_cell: called for each cell as ``on_cell(covariance_type, K, value)`` once the grid is
            fitted (a progress bar, a log line).
        missing: whether ``X`` may hold NaN for values missing at random: every cell is then
            a `jaxem.GaussianMixture` with ``missing=True`` (see ``docs/missing.md``), its
            starts drawn on the data with each missing value at its column's observed mean,
            and $n$ counts the rows with an observed value.
        families: None (Gaussian mixtures of ``covariance_types``), or a component family or
            several (any family: ``jaxem.families.Poisson()``, one of one's own, Gaussians of
            chosen structures) whose `jaxem.Mixture` over each K the grid fits instead, one
            column per family named by its ``describe()``; ``covariance_types`` and ``missing``
            do not apply (the families carry theirs). Several families must seed their starts
            on the same points (``init_points``). The starts are the k-means ones (mclust's
            hierarchical start is for Gaussians).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    if not (prior is None or prior == "default" or callable(prior)):
        raise TypeError("prior must be None, 'default' or a function prior(model, X)")
    check_fit_options(tol, max_iter)
    n_init = check_positive_int(n_init, "n_init", least=0)
    if not isinstance(missing, bool):
        raise TypeError(f"missing must be True or False; got {missing!r}")
    if families is None:
        X = check_data(X, missing=missing)
        if covariance_types is None:
            covariance_types = default_covariance_types(prior)
        columns, make = _gaussian_columns(covariance_types, missing)
    else:
        if covariance_types is not None or missing:
            raise TypeError(
                "select takes families or covariance_types (and missing), not both: a family "
                "carries its own (jaxem.families.Gaussian('diag', missing=True))"
            )
        if n_init == 0:
            raise ValueError("n_init must be >= 1 with families: their starts are k-means ones")
        families = tuple(families) if isinstance(families, (list, tuple)) else (families,)
        if not families:
            raise ValueError("families must name at least one family")
        for family in families:
            X = family.check_data(X)
        columns, make = _family_columns(families)
    if isinstance(n_components, str):
        raise TypeError(
            "n_components must be numbers of components (range(1, 7), [2, 3]); "
            f"got {n_components!r}"
        )
    ks = [check_positive_int(k, "n_components") for k in n_components]
    if not ks:
        raise ValueError("n_components must name at least one number of components")
    w = make(0, 1).effective_weights(X, check_weights(weights, X.shape[0], X.dtype))
    n_rows = int(np.count_nonzero(np.asarray(w) > 0))
    fitted = [k for k in ks if k <= n_rows]
    table: dict = {t: {} for t in columns}
    singular, failed = [], []
    best = None
    if fitted:
        k_max = max(fitted)
        mixtures = tuple(make(i, k_max) for i in range(len(columns)))
        priors = None
        if prior is not None:
            priors = tuple(
                _cell_priors(partial(make, i), fitted, k_max, X, prior) for i in range(len(columns))
            )
        # rows of weight zero change no fit: data sets of nearby sizes share one program
        X_fit, w_fit = pad_rows(np.asarray(X), np.asarray(w))
        hierarchical = None
        if families is None:
            # mclust's start: one more per cell, deterministic (rows beyond 2000: a subset)
            seeds = np.asarray(mixtures[0].family.init_points(X))  # missing values filled
            hierarchical = partitions(seeds, fitted, np.asarray(w))
            padding = np.full((len(fitted), X_fit.shape[0] - X.shape[0]), -1, np.int32)
            hierarchical = np.concatenate([hierarchical, padding], axis=1)[:, None, :]
        n_starts = n_init + (hierarchical is not None)
        w_fit, block, _ = plan(mixtures[0], X_fit, w_fit, None, copies=len(fitted) * n_starts)
        results = fit_grid(
            mixtures,
            key,
            X_fit,
            jnp.asarray(fitted, jnp.int32),
            w_fit,
            priors,
            n_init=n_init,
            tol=jnp.asarray(tol, X.dtype),
            max_iter=max_iter,
            block=block,
            extra_starts=hierarchical,
            with_entropy=criterion == "icl",
        )
        # the rest is bookkeeping on the host, in NumPy: no small programs compiled per shape
        log_n = math.log(float(np.sum(np.asarray(w, np.float64))))
        for column, mixture, result in zip(range(len(columns)), mixtures, results, strict=True):
            cov_type = columns[column]
            result = jax.device_get(result)
            start, collapsed = best_starts(mixture, result, fitted, regular=prior is None)
            result = _take_starts(result, start)
            loglik, entropy = result.loglik, result.entropy
            precision = np.asarray(loglik).dtype  # the fit's: ties are values equal to it
            for i, k in enumerate(fitted):
                p = make(column, k).n_parameters(X.shape[1])
                value = (
                    -2.0 * loglik[i]
                    + {
                        "bic": p * log_n,
                        "aic": 2.0 * p,
                        "icl": p * log_n + 2.0 * entropy[i],
                    }[criterion]
                )
                if collapsed[i]:
                    singular.append((cov_type, k))
                    value = math.nan
                elif math.isnan(value):
                    failed.append((cov_type, k))
                table[cov_type][k] = float(value)
                if not math.isnan(value) and (best is None or better(value, best[0], precision)):
                    best = (float(value), column, k, mixture, result, i)
    for cov_type in columns:
        table[cov_type] = {k: table[cov_type].get(k, math.nan) for k in ks}
        if on_cell is not None:
            for k in ks:
                on_cell(cov_type, k, table[cov_type][k])
    if failed:
        warnings.warn(
            f"select: the cells {failed} gave no finite fit (NaN); a family's m_step must give "
            "finite parameters to an empty component, as select switches components off (see "
            "docs/families.md)",
            RuntimeWarning,
            stacklevel=2,
        )
    if best is None:
        raise ValueError("no cell of the grid gave a fit: every K exceeds the data or is singular")
    _, column, k, mixture, result, i = best
    model = make(column, k)
    params = first_components(mixture, jax.tree.map(lambda a: a[i], result.params), k)
    value = jnp.asarray(result.loglik[i])
    if prior is not None:
        value = objective(model, params, value, _prior_of(model, X, prior))
    return SelectResult(criterion, table, model, params, value, tuple(singular), columns[column])


def _gaussian_columns(covariance_types: Any, missing: bool) -> tuple:
    """The columns of a Gaussian grid, named as given (``"VVV"`` or ``"full"``; a structure
    object by its name), and ``make(column, K)``. Two names of one structure are one column."""
    if isinstance(covariance_types, (str, structures.CovarianceStructure)):
        covariance_types = (covariance_types,)
    columns: dict = {}
    for given in covariance_types:
        try:
            structure = structures.of(given)
        except ValueError as error:
            raise ValueError(f"covariance_types: {error}") from None
        name = given if isinstance(given, str) else structure.name
        columns.setdefault(structure.name, name)
    kinds, names = tuple(columns), tuple(columns.values())

    def make(column: int, k: int) -> GaussianMixture:
        return GaussianMixture(k, kinds[column], missing=missing)

    return names, make


def _family_columns(families: tuple) -> tuple:
    """The columns of a grid of families (their ``describe()``) and ``make(column, K)``."""
    names = tuple(family.describe() for family in families)
    if len(set(names)) < len(names):
        raise ValueError(f"families must differ; got {list(names)}")

    def make(column: int, k: int) -> Mixture:
        return Mixture(families[column], k)

    return names, make


def _take_starts(result: Any, start: np.ndarray) -> Any:
    """Each cell's chosen start: leaves ``(n_K, n_starts, ...)`` to ``(n_K, ...)``."""
    cells = np.arange(start.shape[0])
    return jax.tree.map(lambda a: a[cells, start], result)


def _prior_of(model: Mixture, X: Array, prior: Any) -> Any:
    """The prior of one cell, checked: `jaxem.default_prior` or the user's ``prior(model, X)``."""
    cell = default_prior(model, X) if prior == "default" else prior(model, X)
    return model.check_prior(cell, X.shape[1], X.dtype)


def _cell_priors(make: Callable[[int], Mixture], ks: list, k_max: int, X: Array, prior: Any) -> Any:
    """The priors of the cells of one column (``make(K)`` its mixture of K), stacked, in the
    K_max layout: the Dirichlet's alpha padded with ones for the switched-off components, and
    any other per-component leaf (leading axis K where the K_max prior's is K_max, such as a
    Poisson family's Gamma priors) padded with copies of its last component's (whose density
    at the switched-off components' fixed parameters only adds a constant)."""
    layout = jax.tree.leaves(_prior_of(make(k_max), X, prior))
    cells = []
    for k in ks:
        cell = _prior_of(make(k), X, prior)
        leaves, tree = jax.tree.flatten(cell)
        padded = [
            leaf
            if np.shape(leaf) == np.shape(full)
            else jnp.concatenate([leaf, jnp.repeat(leaf[-1:], k_max - k, axis=0)])
            for leaf, full in zip(leaves, layout, strict=True)
        ]
        cell = jax.tree.unflatten(tree, padded)
        alpha = jnp.ones((k_max,), X.dtype).at[:k].set(cell.alpha[:k])
        cells.append(cell._replace(alpha=alpha))
    return jax.tree.map(lambda *a: jnp.stack(a), *cells)
