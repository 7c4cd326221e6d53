"""A scikit-learn estimator over jaxem: ``jaxem.sklearn.GaussianMixture``.

A drop-in for `sklearn.mixture.GaussianMixture` (same parameters, methods and fitted
attributes) that fits with `jaxem.fit` and adds ``prior`` for MAP estimation::

    from jaxem.sklearn import GaussianMixture

    gm = GaussianMixture(3, covariance_type="full", n_init=4, random_state=0).fit(X)
    gm.predict(X), gm.score(X), gm.bic(X)
    GaussianMixture(3, prior="default").fit(X)  # MAP with mclust's default prior

It computes in the precision of its input, as scikit-learn does: float64 data is fitted in
float64 (inside ``jax.enable_x64(True)``, scoped to the estimator's own calls; the process's JAX
configuration is left as it is), float32 data in float32; its fitted attributes are NumPy arrays
of that precision, and ``predict``, ``score_samples`` and the rest compute in it. Importing this
module imports scikit-learn, which jaxem itself does not need.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from functools import partial
from numbers import Integral, Real
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from jaxem import gaussian_mixture, online
from jaxem.base import FitResult
from jaxem.batch import best_start
from jaxem.buckets import padded
from jaxem.compiler import jit
from jaxem.em import fit as em_fit
from jaxem.gaussian_mixture import GaussianMixturePrior
from jaxem.priors import default_prior
from jaxem.uncertainty import StandardErrors, standard_errors


def _precision(dtype: Any):
    """The context in which JAX computes in ``dtype``: float64 needs x64 enabled, here only for
    the estimator's own calls (``jax.enable_x64`` is scoped to the ``with`` block)."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


# The estimator's own steps, each one compiled program per shape: run op by op, each of their
# dozens of operations compiled on its own for every new shape (scikit-learn's checks fit and
# score many shapes: 1,221 compilations before, most of the check's time). Scoring goes through
# the mixture's own compiled score_samples, predict_proba and predict.


def _n_informative(X: np.ndarray) -> int:
    """The rows with an observed value (every row of complete data)."""
    return int(np.count_nonzero(~np.all(np.isnan(X), axis=1)))


@partial(jit, static_argnames="model")
def _start(model: gaussian_mixture.GaussianMixture, X: jax.Array, resp: jax.Array, weights):
    """The maximum-likelihood M-step from responsibilities ``resp`` ``(N, K)``."""
    return model.m_step(model.stats(X, resp, weights))


@partial(jit, static_argnames="model")
def _last_m_step(
    model: gaussian_mixture.GaussianMixture, params: Any, X: jax.Array, prior: Any, weights
):
    """The M-step from the E-step at ``params``."""
    stats, _ = model.e_step(params, X, weights)
    return model.m_step(stats, prior)


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM in JAX, with scikit-learn's interface.

    Parameters:
        n_components: the number of components K.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``, or any of
            mclust's fourteen names (``"VEV"``, ``"EVE"``, ...; see
            ``docs/covariance_models.md``); ``covariances_`` is in the structure's layout
            (``"VEV"``: ``(K, D, D)``, ``"VEI"``: ``(K, D)``, ``"EEI"``: ``(D,)``, ``"EII"``:
            ``()``).
        tol: stop when the mean log-likelihood (or log posterior) per sample improves by less.
        reg_covar: added to the covariances' diagonal (maximum likelihood only).
        max_iter: the most EM iterations per start.
        n_init: random starts; the best final objective is kept.
        init_params: how each start's responsibilities are drawn, exactly as scikit-learn
            draws them (its ``KMeans`` with ``n_init=1``, ``kmeans_plusplus``, its random
            state's ``choice`` or ``uniform``): ``"kmeans"``, ``"k-means++"``,
            ``"random_from_data"`` or ``"random"``. The first M-step and EM then run in JAX.
        weights_init: as in scikit-learn, the starting weights ``(K,)``, in place of those
            of the start drawn by ``init_params``.
        means_init: likewise the starting means ``(K, D)``.
        precisions_init: likewise the starting precisions, in scikit-learn's shape for the
            covariance type; the start's covariances are their inverses.
        warm_start: as in scikit-learn: a second ``fit`` starts from the fitted parameters
            (one start, ``n_init`` ignored).
        verbose: as in scikit-learn: 1 prints each start and whether it converged, 2 also the
            time and the lower bound, and every ``verbose_interval`` iterations a line (with 2,
            the change of the objective per sample), printed from the fit's history once its
            compiled loop has finished (the time per iteration is the loop's average).
        verbose_interval: the iterations between two such lines.
        random_state: None, an int or a ``numpy.random.RandomState``; with the same one as a
            scikit-learn ``GaussianMixture``, the starts are that estimator's starts.
        prior: None (maximum likelihood), ``"default"`` (MAP with
            `jaxem.default_prior` of the training data) or a
            `jaxem.GaussianMixturePrior`.
        missing: whether ``X`` may hold NaN for values missing at random (see
            ``docs/missing.md``): EM then maximises the likelihood of the observed values, the
            starts are drawn on the data with each missing value at its column's observed mean,
            and `impute` fills the gaps. False (default): NaN is an error, as in scikit-learn.
        accelerate: None (plain EM, scikit-learn's iterates) or ``"squarem"``: EM extrapolated
            along its steps, monotone (see ``docs/acceleration.md``); far fewer passes over the
            data where components overlap. ``max_iter`` then counts SQUAREM iterations.
        learning_decay: for `partial_fit`: the step sizes of online EM are
            ``(t + learning_offset) ** -learning_decay`` for the t-th minibatch, in (1/2, 1]
            (as scikit-learn's ``LatentDirichletAllocation`` names them).
        learning_offset: see ``learning_decay``; >= 0.

    Fitted attributes: ``weights_`` ``(K,)``, ``means_`` ``(K, D)``, ``covariances_``,
    ``precisions_``, ``precisions_cholesky_`` (scikit-learn's shapes per covariance type),
    ``converged_``, ``n_iter_``, ``lower_bound_`` (the final objective per sample),
    ``n_features_in_`` and, for data frames, ``feature_names_in_``; after `partial_fit`,
    ``n_batch_iter_`` (the minibatches seen) and ``lower_bound_`` the last minibatch's
    log-likelihood per sample at the parameters before its update.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        # any registered covariance structure's name (checked when the model is made)
        "covariance_type": [str],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "prior": [None, StrOptions({"default"}), GaussianMixturePrior],
        "missing": ["boolean"],
        "accelerate": [None, StrOptions({"squarem"})],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        prior: Any = None,
        missing: bool = False,
        accelerate: str | None = None,
        learning_decay: float = 0.6,
        learning_offset: float = 0.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.prior = prior
        self.missing = missing
        self.accelerate = accelerate
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> GaussianMixture:
        """Fit by EM from ``n_init`` starts and keep the best. ``X`` ``(n_samples,
        n_features)``; ``y`` is ignored."""
        self._validate_params()
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2,
            ensure_all_finite=self._finite(),
        )
        if X.shape[0] < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {X.shape[0]}"
            )
        with _precision(X.dtype):
            return self._fit(X)

    def _fit(self, X: np.ndarray) -> GaussianMixture:
        for name in ("_online_state", "_online_update", "_online_prior"):  # partial_fit anew
            self.__dict__.pop(name, None)
        model = self._model()
        Xj = jax.device_put(X)  # no copy compiled per shape, as jnp.asarray would
        prior = self._prior_for(model, Xj)
        random_state = check_random_state(self.random_state)
        seeded = self._seeded(X)
        # every step on the rows padded to a shared size (jaxem.buckets): cross-validation's
        # folds of 333 and 334 rows run the same compiled programs
        X_run, w_run = padded(model, Xj, np.ones(X.shape[0], X.dtype))
        extra = ((0, X_run.shape[0] - X.shape[0]), (0, 0))
        warm = self.warm_start and hasattr(self, "means_")
        results = []
        for init in range(1 if warm else self.n_init):
            if warm:
                start = self._params()
            else:
                resp = np.pad(self._responsibilities(seeded, random_state), extra)
                start = _start(model, X_run, jax.device_put(resp.astype(X.dtype)), w_run)
                start = self._given_start(start, X.shape[1], X.dtype)
            if self.verbose:
                print(f"Initialization {init}")
            began = time.perf_counter()
            results.append(self._em(model, Xj, start, prior))
            self._report(results[-1], time.perf_counter() - began, _n_informative(X))
        result = results[int(best_start([float(r.objective) for r in results]))]
        # scikit-learn's convention: its stopping rule compares the objectives of the last two
        # E-steps and still applies the M-step that follows, so the parameters it returns are
        # one M-step past those of lower_bound_ (never worse, EM being monotone).
        self._store(_last_m_step(model, result.params, X_run, prior, w_run))
        self.converged_ = bool(result.converged)
        if not self.converged_:
            warnings.warn(
                f"the best of {self.n_init} start(s) did not converge in max_iter="
                f"{self.max_iter} iterations (tol={self.tol}); raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_iter_ = int(result.n_iter) + 1
        self.lower_bound_ = float(result.objective) / _n_informative(X)
        return self

    def _em(self, model, X, start, prior) -> FitResult:
        """EM from ``start`` stopped where scikit-learn stops: its iteration ``n`` evaluates
        the parameters of ``n - 1`` M-steps, then takes the n-th M-step (which ``fit`` above
        applies), so ``max_iter`` M-steps in all."""
        if self.max_iter > 1:
            return em_fit(
                model,
                X,
                start,
                prior=prior,
                tol=self.tol,
                max_iter=self.max_iter - 1,
                accelerate=self.accelerate,
            )
        _, loglik = model.e_step(start, X, jnp.ones(X.shape[0], X.dtype))
        objective = loglik if prior is None else loglik + model.log_prior(start, prior)
        return FitResult(start, objective, 0, False, jnp.full((1,), jnp.nan, X.dtype), 1)

    def _seeded(self, X: np.ndarray) -> np.ndarray:
        """The data the starts are drawn on: with ``missing``, every missing value at its
        column's observed mean."""
        if not self.missing:
            return X
        with warnings.catch_warnings():  # a column with no observed value: mean 0
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nan_to_num(np.nanmean(X, axis=0))
        return np.where(np.isnan(X), means, X)

    def partial_fit(self, X: Any, y: Any = None) -> GaussianMixture:
        """One step of online EM (`jaxem.online.stepwise`, Cappé and Moulines 2009) on the
        minibatch ``X`` ``(n_samples, n_features)``: the running averages of the statistics move
        towards this minibatch's by ``(t + learning_offset) ** -learning_decay`` and the
        parameters are their M-step. The first call starts as `fit` does (``init_params`` on
        this minibatch, ``prior="default"`` made from it), or from the fitted parameters after
        `fit`; ``n_init`` is not used. Minibatches of any size (padded to shared sizes, so that
        few programs compile); data seen once, or arriving without end, need never be held
        whole."""
        first = not hasattr(self, "_online_state")
        if first:
            self._validate_params()
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            reset=first and not hasattr(self, "means_"),
            ensure_min_samples=1,
            ensure_all_finite=self._finite(),
        )
        dtype = self.means_.dtype if hasattr(self, "means_") else X.dtype
        X = np.asarray(X, dtype)
        with _precision(dtype):
            model = self._model()
            Xj = jax.device_put(X)
            X_run, w_run = padded(model, Xj, np.ones(X.shape[0], X.dtype))
            if first:
                if hasattr(self, "means_"):
                    start = self._params()
                else:
                    if X.shape[0] < self.n_components:
                        raise ValueError(
                            f"the first minibatch needs n_samples >= n_components = "
                            f"{self.n_components}; got {X.shape[0]}"
                        )
                    random_state = check_random_state(self.random_state)
                    resp = self._responsibilities(self._seeded(X), random_state)
                    extra = ((0, X_run.shape[0] - X.shape[0]), (0, 0))
                    resp = jax.device_put(np.pad(resp, extra).astype(X.dtype))
                    start = self._given_start(_start(model, X_run, resp, w_run), X.shape[1], dtype)
                self._online_prior = self._prior_for(model, Xj)
                self._online_state = self._online_em(model).init(start, X_run)
            if getattr(self, "_online_update", None) is None:  # compiled once per estimator
                self._online_update = jax.jit(self._online_em(model).update)
            state = self._online_update(self._online_state, X_run, w_run)
        self._online_state = state
        self._store(state.params)
        self.n_batch_iter_ = int(state.n_updates)
        self.lower_bound_ = float(state.loglik)
        self.converged_ = False
        self.n_iter_ = self.n_batch_iter_
        return self

    def _online_em(self, model: gaussian_mixture.GaussianMixture) -> online.OnlineEM:
        return online.stepwise(
            model,
            alpha=float(self.learning_decay),
            t0=float(self.learning_offset),
            prior=self._online_prior,
        )

    def __getstate__(self) -> dict:
        # the compiled update is a closure (not picklable): made again after unpickling
        state = super().__getstate__()
        state.pop("_online_update", None)
        return state

    def _given_start(self, start: Any, n_features: int, dtype: Any) -> Any:
        """``start`` with scikit-learn's ``weights_init``, ``means_init`` and
        ``precisions_init`` in place of its parts, checked against ``(K, D)``."""
        k = self.n_components
        structure = self._model().family.structure
        weights, means, covariances = start
        given = (
            ("weights_init", self.weights_init, (k,)),
            ("means_init", self.means_init, (k, n_features)),
            ("precisions_init", self.precisions_init, structure.shape(k, n_features)),
        )
        values = []
        for name, value, shape in given:
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != shape:
                    raise ValueError(f"{name} must have shape {shape}; got {value.shape}")
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"{name} contains NaN or inf")
            values.append(value)
        if values[0] is not None:
            if np.any(values[0] < 0) or abs(values[0].sum() - 1) > 1e-6:
                raise ValueError("weights_init must be non-negative and sum to 1")
            weights = jnp.asarray(values[0], dtype)
        if values[1] is not None:
            means = jnp.asarray(values[1], dtype)
        if values[2] is not None:
            precisions = values[2]
            if structure.coupled:  # matrices, (K, D, D) or one (D, D)
                if np.any(np.linalg.eigvalsh(precisions) <= 0):
                    raise ValueError("precisions_init must be symmetric positive definite")
                covariances = np.linalg.inv(precisions)
            else:
                if np.any(precisions <= 0):
                    raise ValueError("precisions_init must be positive")
                covariances = 1.0 / precisions
            covariances = jnp.asarray(covariances, dtype)
        return gaussian_mixture.GaussianMixtureParams(weights, means, covariances)

    def _report(self, result: FitResult, seconds: float, n: int) -> None:
        """scikit-learn's verbose lines, from the fit's history."""
        if not self.verbose:
            return
        # scikit-learn's iteration i evaluates the parameters of i - 1 M-steps (see _em)
        n_iter = int(result.n_iter) + 1
        history = np.asarray(result.history, np.float64) / n

        def objective(m_steps: int) -> float:
            return history[m_steps - 1] if m_steps >= 1 else np.nan

        per_iteration = seconds / n_iter
        for i in range(self.verbose_interval, n_iter + 1, self.verbose_interval):
            if self.verbose < 2:
                print(f"  Iteration {i}")
            else:
                change = objective(i - 1) - objective(i - 2)
                print(f"  Iteration {i}\t time lapse {per_iteration:.5f}s\t ll change {change:.5f}")
        state = "converged" if bool(result.converged) else "did not converge"
        if self.verbose < 2:
            print(f"Initialization {state}.")
        else:
            bound = float(result.objective) / n
            print(f"Initialization {state}. time lapse {seconds:.5f}s\t lower bound {bound:.5f}.")

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)`` then the labels of ``X``."""
        return self.fit(X).predict(X)

    def _responsibilities(self, X: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
        """The starting responsibilities ``(n_samples, K)``, drawn as scikit-learn draws them
        (the same calls on the same ``random_state``), so that a start is scikit-learn's."""
        n, k = X.shape[0], self.n_components
        resp = np.zeros((n, k))
        if self.init_params == "kmeans":
            labels = KMeans(k, n_init=1, random_state=random_state).fit(X).labels_
            resp[np.arange(n), labels] = 1
        elif self.init_params == "k-means++":
            _, rows = kmeans_plusplus(X, k, random_state=random_state)
            resp[rows, np.arange(k)] = 1
        elif self.init_params == "random_from_data":
            rows = random_state.choice(n, size=k, replace=False)
            resp[rows, np.arange(k)] = 1
        else:  # "random"
            resp = random_state.uniform(size=(n, k))
            resp /= resp.sum(axis=1, keepdims=True)
        return resp

    # -- using the fit ---------------------------------------------------------------------

    def score_samples(self, X: Any) -> np.ndarray:
        """$\\log p(x_n)$, ``(n_samples,)``."""
        return self._on_fitted(X, lambda model, params, Xj: model.score_samples(params, Xj))

    def score(self, X: Any, y: Any = None) -> float:
        """The mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities, ``(n_samples, n_components)``."""
        return self._on_fitted(X, lambda model, params, Xj: model.predict_proba(params, Xj))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable component of each sample, ``(n_samples,)``."""
        return self._on_fitted(X, lambda model, params, Xj: model.predict(params, Xj))

    def impute(self, X: Any) -> np.ndarray:
        """``X`` with each missing value (NaN) replaced by its conditional mean given the
        row's observed values (`jaxem.Mixture.impute`); needs ``missing=True``."""
        if not self.missing:
            raise ValueError("impute needs an estimator built with missing=True")
        return self._on_fitted(X, lambda model, params, Xj: model.impute(params, Xj))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``n_samples`` draws and their components, as scikit-learn: ``(X, y)``."""
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}")
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        with _precision(self.means_.dtype):
            X, labels = self._model().sample(jax.random.key(seed), self._params(), n_samples)
            return np.asarray(X), np.asarray(labels)

    def standard_errors(self, X: Any, method: str = "observed") -> StandardErrors:
        """Standard errors of the fitted ``weights_``, ``means_`` and ``covariances_`` from the
        data ``X`` ``(n_samples, n_features)`` they were fitted to (with the fit's prior):
        `jaxem.standard_errors` (``method`` one of its methods). Returns its
        `jaxem.StandardErrors`: ``standard_errors.means`` is shaped like ``means_``, and so on;
        ``print`` it for a table. Fit with a small ``tol`` (the default 1e-3 stops short of
        the maximum, and this warns)."""
        return self._with_fitted(
            X,
            lambda model, params, Xj: standard_errors(
                model, params, Xj, prior=self._prior_for(model, Xj), method=method
            ),
        )

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better), as `jaxem.bic`."""
        log_px = self.score_samples(X)
        loglik = float(np.sum(log_px, dtype=np.float64))
        n = _n_informative(np.asarray(X, dtype=float)) if self.missing else len(log_px)
        return -2.0 * loglik + self._n_parameters() * math.log(n)

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better), as `jaxem.aic`."""
        loglik = float(np.sum(self.score_samples(X), dtype=np.float64))
        return -2.0 * loglik + 2.0 * self._n_parameters()

    # -- helpers ---------------------------------------------------------------------------

    def _model(self) -> gaussian_mixture.GaussianMixture:
        return gaussian_mixture.GaussianMixture(
            int(self.n_components), self.covariance_type, float(self.reg_covar), self.missing
        )

    def _finite(self) -> bool | str:
        """scikit-learn's ``ensure_all_finite``: NaN allowed with ``missing``."""
        return "allow-nan" if self.missing else True

    def _n_parameters(self) -> int:
        return self._model().n_parameters(self.means_.shape[1])

    def _params(self) -> gaussian_mixture.GaussianMixtureParams:
        return gaussian_mixture.GaussianMixtureParams(
            jnp.asarray(self.weights_), jnp.asarray(self.means_), jnp.asarray(self.covariances_)
        )

    def _on_fitted(self, X: Any, fn) -> np.ndarray:
        """`_with_fitted` as a NumPy array."""
        return np.asarray(self._with_fitted(X, fn))

    def _with_fitted(self, X: Any, fn) -> Any:
        """``fn(model, params, X)`` on validated ``X``, in the fitted attributes' precision."""
        check_is_fitted(self)
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], reset=False, ensure_all_finite=self._finite()
        )
        with _precision(self.means_.dtype):
            Xj = jax.device_put(np.asarray(X, self.means_.dtype))
            return fn(self._model(), self._params(), Xj)

    def _prior_for(self, model: gaussian_mixture.GaussianMixture, X: Any) -> Any:
        """The fit's prior: ``prior="default"`` made from ``X``, else the one given."""
        return default_prior(model, X) if self.prior == "default" else self.prior

    def _store(self, params: gaussian_mixture.GaussianMixtureParams) -> None:
        self.weights_ = np.asarray(params.weights)
        self.means_ = np.asarray(params.means)
        cov = np.asarray(params.covariances)
        self.covariances_ = cov
        if self._model().family.structure.coupled:  # matrices, (K, D, D) or one (D, D)
            chol = np.linalg.cholesky(cov)
            eye = np.broadcast_to(np.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
            inv = np.linalg.solve(chol, eye)  # L^{-1}
            self.precisions_cholesky_ = np.swapaxes(inv, -1, -2)  # U with precision = U U^T
            self.precisions_ = self.precisions_cholesky_ @ np.swapaxes(
                self.precisions_cholesky_, -1, -2
            )
        else:
            self.precisions_cholesky_ = 1.0 / np.sqrt(cov)
            self.precisions_ = 1.0 / cov

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = bool(self.missing)
        return tags
