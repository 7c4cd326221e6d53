"""Hidden Markov models over any component family, fitted by EM (Baum-Welch).

A chain of hidden states $z_1, \\dots, z_T \\in \\{1..K\\}$ with initial probabilities $\\pi$
``(K,)`` and transitions $A_{ij} = p(z_{t+1} = j \\mid z_t = i)$ ``(K, K)`` emits
$x_t \\sim p(x \\mid \\theta_{z_t})$ from a component family (`jaxem.families`: the same
parameters and conjugate priors as in a mixture). Data: ``S`` sequences padded to a common
length, ``X`` ``(S, T, D)``, with per-step ``weights`` ``(S, T)``: a sequence's weight on its
real steps, 0 on the padding at its end (`jaxem.pad` makes both from a list of sequences).

E-step (`jaxem.inference.forward_backward`, per sequence, under ``vmap``): the state marginals
$\\gamma_{st} = p(z_t \\mid x_s)$ and pair marginals $\\xi_{st} = p(z_t, z_{t+1} \\mid x_s)$
give the additive statistics (`HMMStats`), with sequence weights $w_s$:

$$
n^{(0)}_k = \\sum_s w_s \\gamma_{s1k}, \\qquad
n_{ij} = \\sum_s w_s \\sum_t \\xi_{stij}, \\qquad
N_k = \\sum_{s,t} w_s \\gamma_{stk},
$$

beside the family's statistics of $wr_{k,(s,t)} = w_s \\gamma_{stk}$. M-step:

$$
\\pi_k \\propto n^{(0)}_k + \\alpha_k - 1, \\qquad
A_{ij} \\propto n_{ij} + \\beta_{ij} - 1
$$

(maximum likelihood: $\\alpha = \\beta = 1$), over the entries where the parameters given to
EM are positive: a structural zero of $\\pi$ or $A$ stays exactly zero, and the Dirichlet priors
live on the remaining entries. A row with nothing to count (a state never visited, with a flat
prior) becomes uniform over its allowed entries. The family's M-step takes the emissions, given
$N_k$ (a state without data gets the family's fallback, finite parameters).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from jaxem import charts
from jaxem.base import Array, Family, PRNGKey
from jaxem.buckets import padded, unpad
from jaxem.capabilities import check_coordinates, of_family
from jaxem.compiler import compiled_method, jit
from jaxem.inference import forward_backward, forward_backward_parallel, sample_states, viterbi
from jaxem.mixture import Mixture
from jaxem.padding import pad, without_padding
from jaxem.validation import (
    as_float_array,
    check_positive_int,
    host_values,
    is_concrete,
    worst,
)

METHODS = {"sequential": forward_backward, "parallel": forward_backward_parallel}


class HMMParams(NamedTuple):
    """Attributes: initial ``(K,)`` on the simplex; transitions ``(K, K)``, rows on the simplex
    (zeros allowed: structural zeros); emissions, the family's parameters (e.g.
    `jaxem.families.GaussianParams`)."""

    initial: Array
    transitions: Array
    emissions: Any


class HMMPrior(NamedTuple):
    """Attributes: initial, the Dirichlet concentration of $\\pi$ (scalar or ``(K,)``);
    transitions, that of every row of $A$ (scalar, ``(K,)`` shared by the rows, or ``(K, K)``);
    every entry >= 1 (1 is flat); emissions, the family's prior (e.g.
    `jaxem.families.GaussianPrior`)."""

    initial: Any
    transitions: Any
    emissions: Any


class HMMStats(NamedTuple):
    """Expected counts, sums over sequences. Attributes: initial ``(K,)`` $n^{(0)}_k$;
    transitions ``(K, K)`` $n_{ij}$; counts ``(K,)`` $N_k$; emissions, the family's statistics;
    initial_support ``(K,)`` and transition_support ``(K, K)``: positive where the parameters
    of the E-step were (sums of indicators, so that they add over blocks and devices)."""

    initial: Array
    transitions: Array
    counts: Array
    emissions: Any
    initial_support: Array
    transition_support: Array


class HMMData(NamedTuple):
    """The data as the E-step reads it: ``family``, what the family's ``prepare`` made of the
    ``(S * T, D)`` steps."""

    family: Any


@dataclasses.dataclass(frozen=True, init=False)
class HiddenMarkovModel:
    """A hidden Markov model with ``n_states`` states emitting from ``family`` (static
    configuration; hashable).

    Args:
        family: a component family, e.g. ``jaxem.families.Gaussian("full")``.
        n_states: K >= 1 (hmmlearn's ``n_components``, accepted as a keyword too, and readable
            as the ``n_components`` attribute).
        method: how the E-step runs forward-backward: ``"sequential"`` (`lax.scan`, $O(K^2)$
            per step; the default, fastest on CPUs) or ``"parallel"`` (associative scans,
            $O(\\log T)$ depth and $O(K^3)$ per step, for long sequences on accelerators); the
            same statistics either way.

    Coming from hmmlearn: the parameters are a value (`HMMParams`) rather than attributes of
    the model, and every method takes them first; ``lengths=`` works everywhere (``init``,
    ``fit``, ``score``, ``decode``, ``predict``, ``predict_proba``, ``filter``, ``impute``),
    as do padded sequences ``(S, T, D)`` with per-step ``weights`` (`jaxem.pad`). Methods with
    hmmlearn's names return what hmmlearn's return: ``score`` the total log-likelihood,
    ``decode`` ``(log_prob, path)``, ``predict`` the Viterbi path, ``sample`` ``(X, states)``
    of one sequence ``(n_steps, D)``. jaxem's own, under their own names:
    ``score_sequences`` (one log-likelihood per sequence), ``filter``, ``impute``,
    ``sample(..., n_sequences=S)`` (a batch ``(S, n_steps, D)``).
    """

    family: Family
    n_states: int
    method: str = "sequential"

    # padding sequences and steps of weight zero change nothing (jaxem.buckets)
    ignores_zero_weights = True

    def __init__(
        self,
        family: Family,
        n_states: int | None = None,
        method: str = "sequential",
        *,
        n_components: int | None = None,
    ):
        if n_states is None and n_components is None:
            raise TypeError("HiddenMarkovModel needs n_states (or hmmlearn's n_components)")
        if n_states is not None and n_components is not None and n_states != n_components:
            raise TypeError(
                f"n_states={n_states!r} and n_components={n_components!r} name the same number; "
                "give one of them"
            )
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "n_states", n_states if n_states is not None else n_components)
        object.__setattr__(self, "method", method)
        self.__post_init__()

    def describe(self) -> str:
        """The model in messages and reports: ``HiddenMarkovModel(<family>, S)``."""
        return f"HiddenMarkovModel({self.family.describe()}, {self.n_states})"

    def __post_init__(self):
        check_positive_int(self.n_states, "n_states")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}; got {self.method!r}")

    @property
    def n_components(self) -> int:
        """hmmlearn's name for the number of states, ``n_states``."""
        return self.n_states

    @property
    def missing(self) -> bool:
        """Whether the emission family takes NaN as a value missing at random (a step with
        every value missing is a step without emission)."""
        return of_family(self.family).missing

    @property
    def data_ndim(self) -> int:
        """The dimensions of one dataset, ``(S, T, D)``: 3."""
        return 3

    @property
    def min_samples(self) -> int:
        """The fewest steps (of positive weight) a fit needs: K."""
        return self.n_states

    def weights_shape(self, data_shape: tuple[int, ...]) -> tuple[int, int]:
        """A weight per step: ``(S, T)`` for data ``(S, T, D)``."""
        return tuple(data_shape[:2])

    # -- the EM contract -------------------------------------------------------------------

    def prepare(self, X: Array, weights: Array) -> HMMData:
        """The family's ``prepare`` of the steps ``(S * T, D)``, once per fit."""
        return HMMData(self.family.prepare(_steps(X), weights.reshape(-1)))

    @compiled_method
    def e_step(self, params: HMMParams, X: Any, weights: Array) -> tuple[HMMStats, Array]:
        """`HMMStats` and $\\sum_s w_s \\log p(x_s)$. ``X`` ``(S, T, D)`` or
        ``self.prepare(X, weights)``; ``weights`` ``(S, T)``."""
        params = HMMParams(*params)
        data = X if isinstance(X, HMMData) else self.prepare(X, weights)
        posterior = self._posterior(params, data, weights)
        sequence = weights[:, 0]
        wr = posterior.marginals * weights[..., None]  # (S, T, K)
        wr_kn = wr.reshape(-1, self.n_states).T
        dtype = wr.dtype
        stats = HMMStats(
            initial=sequence @ posterior.marginals[:, 0],
            transitions=jnp.einsum("s,sij->ij", sequence, posterior.transition_counts),
            counts=jnp.sum(wr_kn, axis=1),
            emissions=self.family.stats(data.family, wr_kn, params.emissions),
            initial_support=(params.initial > 0).astype(dtype),
            transition_support=(params.transitions > 0).astype(dtype),
        )
        loglik = jnp.sum(jnp.where(sequence > 0, sequence * posterior.log_likelihood, 0.0))
        return stats, loglik

    @compiled_method
    def m_step(self, stats: HMMStats, prior: HMMPrior | None = None) -> HMMParams:
        """Maximum-likelihood parameters, or with ``prior`` the posterior mode (see the
        module)."""
        return self._m_step(None, stats, prior)

    @compiled_method
    def m_step_from(
        self, params: HMMParams, stats: HMMStats, prior: HMMPrior | None = None
    ) -> HMMParams:
        """`m_step` taken at the iterate ``params``: the same, except for a family whose M-step
        reads the current components (`jaxem.capabilities.EstimatesFromIterate`: an iterative
        covariance structure warm-starts, factor analysers need their loadings), which starts
        from ``params``'s emissions (the drivers call this)."""
        return self._m_step(params, stats, prior)

    def _m_step(self, params, stats: HMMStats, prior) -> HMMParams:
        if prior is None:
            initial = _normalise_rows(stats.initial, stats.initial_support, None)
            transitions = _normalise_rows(stats.transitions, stats.transition_support, None)
            emissions_prior = None
        else:
            prior = HMMPrior(*prior)
            initial = _normalise_rows(stats.initial, stats.initial_support, prior.initial)
            transitions = _normalise_rows(
                stats.transitions, stats.transition_support, prior.transitions
            )
            emissions_prior = prior.emissions
        estimate_from = of_family(self.family).estimate_from
        if params is not None and estimate_from is not None:
            emissions = estimate_from(
                HMMParams(*params).emissions, stats.emissions, stats.counts, emissions_prior
            )
        else:
            emissions = self.family.estimate(stats.emissions, stats.counts, emissions_prior)
        return HMMParams(initial, transitions, emissions)

    @compiled_method
    def log_prior(self, params: HMMParams, prior: HMMPrior) -> Array:
        """$\\log p(\\theta)$: the Dirichlet densities of $\\pi$ and of every row of $A$ plus
        the family's prior density. A zero entry (structural, or one that EM drove to zero)
        contributes nothing rather than $(\\alpha - 1) \\log 0$: on a fixed set of zeros this is
        the density on the simplex's face up to a constant, which is what MAP-EM maximises
        there; without zeros it is the Dirichlet density itself."""
        params, prior = HMMParams(*params), HMMPrior(*prior)
        k = self.n_states
        initial = jnp.broadcast_to(prior.initial, (k,))
        transitions = jnp.broadcast_to(prior.transitions, (k, k))
        return (
            _log_dirichlet_on_support(params.initial, initial)
            + _log_dirichlet_on_support(params.transitions, transitions)
            + self.family.log_prior(params.emissions, prior.emissions)
        )

    def expected_complete_log_likelihood(
        self, params: HMMParams, posterior_at: HMMParams, data: Any, weights: Array
    ) -> Array:
        """$Q(\\theta \\mid \\theta_0) = \\sum_s w_s \\big[\\sum_k \\gamma_{s1k} \\log \\pi_k +
        \\sum_{t,i,j} \\xi_{stij} \\log A_{ij} + \\sum_{t,k} \\gamma_{stk} \\log p(x_{st}
        \\mid \\theta_k)\\big]$ with the posterior marginals $\\gamma, \\xi$ at ``posterior_at``
        $\\theta_0$; ``data`` as `prepare` makes it (or ``X``), ``weights`` ``(S, T)``. Zero
        entries of $\\pi$ and $A$ carry no posterior mass and add nothing."""
        params, posterior_at = HMMParams(*params), HMMParams(*posterior_at)
        data = data if isinstance(data, HMMData) else self.prepare(data, weights)
        posterior = self._posterior(posterior_at, data, weights)
        sequence = weights[:, 0]

        def log(p):
            return jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)

        initial = jnp.einsum("s,sk,k->", sequence, posterior.marginals[:, 0], log(params.initial))
        moves = jnp.einsum(
            "s,sij,ij->", sequence, posterior.transition_counts, log(params.transitions)
        )
        wr = posterior.marginals * weights[..., None]  # (S, T, K)
        emissions = jnp.sum(wr * self._log_likelihoods(params, data, weights))
        return initial + moves + emissions

    def chart(self, at: HMMParams, coordinates: Array) -> HMMParams:
        """Parameters near ``at`` from ``n_parameters(D)`` coordinates ``(P,)``, ``at`` at 0
        (`jaxem.charts`): K - 1 move $\\pi$, K(K - 1) the rows of $A$ (a structural zero
        stays zero: its coordinates change nothing), the rest the emissions (the family's
        ``chart``)."""
        at = HMMParams(*at)
        k = self.n_states
        sizes = [k - 1, k * (k - 1), coordinates.shape[-1] - k * k + 1]
        initial, transitions, emissions = charts.split(coordinates, sizes)
        return HMMParams(
            charts.simplex(at.initial, initial),
            charts.simplex(at.transitions, transitions.reshape(k, k - 1)),
            self.family.chart(at.emissions, emissions),
        )

    def default_prior(self, X: Any) -> HMMPrior:
        """Flat Dirichlet priors on $\\pi$ and on every row of $A$ (concentration 1: their
        posterior mode is the maximum-likelihood update) and the family's default prior from
        the pooled steps (see ``docs/families.md``). ``X`` ``(S, T, D)`` or ``(T, D)``; steps
        whose every value is NaN (the padding of `jaxem.pad`) are left out."""
        X = as_float_array(X, "X")
        if X.ndim not in (2, 3):
            self._check_data(X)  # reports the shape
        steps = _steps(X)
        if is_concrete(steps):
            steps = steps[~np.all(np.isnan(host_values(steps)), axis=1)]
        X = self._check_data(steps)[0]
        emissions = self.family.default_prior_for(X, self.n_states)
        ones = jnp.ones((self.n_states,), X.dtype)
        return HMMPrior(ones, jnp.ones((self.n_states, self.n_states), X.dtype), emissions)

    def init(self, key: PRNGKey, X: Any, weights: Any = None, lengths: Any = None) -> HMMParams:
        """Starting parameters from the pooled steps: the start of a mixture of the family
        (`jaxem.Mixture.init`: k-means, then an M-step) gives the emissions and a hard state
        for every step; $\\pi$ and $A$ are the frequencies of the first states and of the
        consecutive pairs of states, plus one (so that every entry starts positive). Works
        under ``jit`` and ``vmap``. ``X`` ``(S, T, D)`` or ``(T, D)``, ``weights`` ``(S, T)``
        or None; or hmmlearn's concatenated sequences ``(sum T_s, D)`` with ``lengths``."""
        if lengths is not None:
            X, weights = self.sequences(X, lengths, weights)
        X = self._check_data(without_padding(X, weights))
        weights = self._check_weights(weights, X)
        X, weights = padded(self, X, weights)
        mixture = Mixture(self.family, self.n_states)
        steps, step_weights = _steps(X), weights.reshape(-1)
        start = mixture.init_checked(key, steps, step_weights)  # checked above, as sequences
        states = mixture.predict(start, steps).reshape(weights.shape)
        return _chain_from_states(self.n_states, states, weights, start.components)

    def sequences(self, X: Any, lengths: Any, weights: Any = None) -> tuple[Array, Array]:
        """hmmlearn's concatenated sequences ``X`` ``(sum T_s, D)`` with ``lengths`` ``(S,)``
        as padded sequences and their weights, ``(S, T_max, D)`` and ``(S, T_max)``
        (`jaxem.pad`), the layout every method and `jaxem.fit` read."""
        if weights is not None:
            raise ValueError("give weights or lengths, not both")
        return pad(_split(as_float_array(X, "X"), lengths))

    def fit(
        self,
        key: PRNGKey,
        X: Any,
        lengths: Any = None,
        *,
        weights: Any = None,
        prior: HMMPrior | None = None,
        n_init: int = 1,
        tol: float = 1e-3,
        max_iter: int = 100,
        accelerate: str | None = None,
    ) -> Any:
        """Baum-Welch from ``init`` (hmmlearn's ``fit(X, lengths)``, with a key): the
        `jaxem.FitResult` of `jaxem.fit`, or with ``n_init > 1`` the best of that many
        starts (`jaxem.fit_restarts`). ``X`` as for ``init``; the other arguments as for
        `jaxem.fit`."""
        from jaxem.batch import fit_restarts
        from jaxem.em import fit

        if lengths is not None:
            X, weights = self.sequences(X, lengths, weights)
        options = dict(weights=weights, prior=prior, tol=tol, max_iter=max_iter)
        if check_positive_int(n_init, "n_init") > 1:
            return fit_restarts(self, key, X, n_init=n_init, accelerate=accelerate, **options)
        start = self.init(key, X, weights)
        return fit(self, X, start, accelerate=accelerate, **options)

    def validate(
        self, X: Any, params: Any, weights: Any, prior: Any
    ) -> tuple[Array, HMMParams, Array, HMMPrior | None]:
        """Checks made by `jaxem.fit` before compiling; returns ``X`` ``(S, T, D)`` (a single
        sequence ``(T, D)`` becomes ``(1, T, D)``), params, the per-step weights ``(S, T)``
        and prior in X's dtype."""
        X = self._check_data(X)
        weights = self._check_weights(weights, X)
        params = self.check_params(params, X.shape[-1], X.dtype)
        if prior is not None:
            prior = self.check_prior(prior, X.shape[-1], X.dtype)
        return X, params, weights, prior

    def check_params(self, params: Any, n_features: int, dtype: Any) -> HMMParams:
        """Shapes (and, when concrete, values: rows on the simplex) against the model and
        ``n_features``; returns the params cast to ``dtype``."""
        if not (isinstance(params, tuple) and len(params) == 3):
            raise TypeError(
                "params must be an HMMParams(initial, transitions, emissions); "
                f"got {type(params).__name__}"
            )
        params = HMMParams(*params)
        k = self.n_states
        initial = _check_simplex(params.initial, (k,), "params.initial", dtype)
        transitions = _check_simplex(params.transitions, (k, k), "params.transitions", dtype)
        emissions = self.family.check_params_for(
            params.emissions, k, n_features, dtype, "params.emissions"
        )
        return HMMParams(initial, transitions, emissions)

    def check_prior(self, prior: Any, n_features: int, dtype: Any) -> HMMPrior:
        """The prior's shapes (and concrete values) against the model, cast to ``dtype``, the
        concentrations broadcast to ``(K,)`` and ``(K, K)``."""
        if not isinstance(prior, HMMPrior):
            raise TypeError(
                "prior must be an HMMPrior(initial, transitions, emissions); "
                f"got {type(prior).__name__}"
            )
        k = self.n_states
        initial = as_float_array(prior.initial, "prior.initial").astype(dtype)
        if initial.shape not in ((), (k,)):
            raise ValueError(
                f"prior.initial must be a scalar or of shape ({k},); got {initial.shape}"
            )
        transitions = as_float_array(prior.transitions, "prior.transitions").astype(dtype)
        if transitions.shape not in ((), (k,), (k, k)):
            raise ValueError(
                f"prior.transitions must be a scalar or of shape ({k},) or ({k}, {k}); "
                f"got {transitions.shape}"
            )
        checked = HMMPrior(
            jnp.broadcast_to(initial, (k,)),
            jnp.broadcast_to(transitions, (k, k)),
            self.family.check_prior_for(prior.emissions, k, n_features, dtype, "prior.emissions"),
        )
        if is_concrete(checked.initial) and is_concrete(checked.transitions):
            _check_concentration(checked.initial, "prior.initial")
            _check_concentration(checked.transitions, "prior.transitions")
        return checked

    def check_prior_values(self, prior: HMMPrior, n_features: int) -> None:
        """Hyperparameter ranges of a concrete prior, or of a batch of priors at once."""
        _check_concentration(prior.initial, "prior.initial")
        _check_concentration(prior.transitions, "prior.transitions")
        self.family.check_prior_values(prior.emissions, n_features, "prior.emissions")

    def n_parameters(self, n_features: int) -> int:
        """Free parameters: K - 1 initial, K (K - 1) transition probabilities and the
        family's."""
        k = self.n_states
        return k - 1 + k * (k - 1) + self.family.n_parameters_for(k, n_features)

    def unconstrain(self, params: Any) -> HMMParams:
        """Unconstrained coordinates of the parameters: log probabilities of the initial
        distribution and of each transition row (softmax coordinates; a zero, a structural zero
        say, becomes a finite number so negative that it stays exactly zero through `constrain`
        and any extrapolation whose steps there are zero) and the family's coordinates."""
        check_coordinates(self.family)
        params = HMMParams(*params)
        return HMMParams(
            _log_with_zeros(params.initial),
            _log_with_zeros(params.transitions),
            self.family.unconstrain(params.emissions),
        )

    def constrain(self, coordinates: HMMParams) -> HMMParams:
        """The parameters of unconstrained ``coordinates`` (the inverse of `unconstrain`)."""
        return HMMParams(
            jax.nn.softmax(coordinates.initial, axis=-1),
            jax.nn.softmax(coordinates.transitions, axis=-1),
            self.family.constrain(coordinates.emissions),
        )

    def permute(self, params: HMMParams, order: Any) -> HMMParams:
        """``params`` with the states relabelled: new state ``i`` is old state ``order[i]``."""
        params = HMMParams(*params)
        order = jnp.asarray(order)
        return HMMParams(
            params.initial[order],
            params.transitions[order][:, order],
            self.family.permute(params.emissions, order),
        )

    # -- using fitted parameters -----------------------------------------------------------

    def score(self, params: Any, X: Any, weights: Any = None, lengths: Any = None) -> Array:
        """The log-likelihood of all the data, $\\sum_s w_s \\log p(x_s)$, a scalar (as
        hmmlearn's ``score``; one value per sequence: `score_sequences`). ``X`` ``(T, D)``,
        ``(S, T, D)`` with ``weights`` ``(S, T)``, or ``(sum T_s, D)`` with ``lengths``."""
        return _total(self._use(params, X, weights, lengths, "score"), weights)

    def score_sequences(
        self, params: Any, X: Any, weights: Any = None, lengths: Any = None
    ) -> Array:
        """$\\log p(x_s)$ for every sequence: ``(S,)`` for ``(S, T, D)`` data (or ``X``
        ``(sum T_s, D)`` with ``lengths``), a scalar for one sequence ``(T, D)``."""
        return self._use(params, X, weights, lengths, "score")

    def predict_proba(self, params: Any, X: Any, weights: Any = None, lengths: Any = None) -> Array:
        """Posterior state marginals $p(z_t = k \\mid x_{1:T})$: ``(S, T, K)`` (zero on
        padding), ``(T, K)`` for one sequence, ``(sum T_s, K)`` with ``lengths``."""
        return self._use(params, X, weights, lengths, "predict_proba")

    def filter(self, params: Any, X: Any, weights: Any = None, lengths: Any = None) -> Array:
        """Filtered marginals $p(z_t = k \\mid x_{1:t})$, shaped as `predict_proba`."""
        return self._use(params, X, weights, lengths, "filter")

    def decode(
        self, params: Any, X: Any, weights: Any = None, lengths: Any = None
    ) -> tuple[Array, Array]:
        """``(log_prob, path)``, in hmmlearn's order: $\\sum_s w_s \\max_z \\log p(x_s, z)$
        (a scalar, over all sequences) and the Viterbi path, ``(T,)`` integers for one
        sequence, ``(S, T)`` for padded sequences (0 on padding), ``(sum T_s,)`` with
        ``lengths``."""
        path, per_sequence = self._use(params, X, weights, lengths, "decode")
        return _total(per_sequence, weights), path

    def predict(self, params: Any, X: Any, weights: Any = None, lengths: Any = None) -> Array:
        """The Viterbi path (hmmlearn's ``predict``): the path of `decode`."""
        return self.decode(params, X, weights, lengths)[1]

    def impute(
        self,
        params: Any,
        X: Any,
        weights: Any = None,
        lengths: Any = None,
        *,
        key: PRNGKey | None = None,
        n: int | None = None,
    ) -> Array:
        """Values for the missing entries (NaN) of ``X``, for an emission family built with
        ``missing=True``; observed entries as they are.

        Without ``key``: the conditional mean given every observed value of the sequence,
        $\\sum_k p(z_t = k \\mid x_{obs}) \\, \\mathbb{E}[x_t \\mid x_{t,o}, z_t = k]$
        (the family's ``impute`` with the smoothed state marginals), shaped as ``X``
        (``(sum T_s, D)`` with ``lengths``). With ``key``: ``n`` draws (multiple imputation),
        each a state path drawn from its posterior (`jaxem.inference.sample_states`) and the
        missing values from the states' conditionals, ``(n,) + `` that shape."""
        if not self.missing:
            raise TypeError(
                f"impute needs a family built with missing=True; got {self.family.describe()}"
            )
        if key is None:
            if n is not None:
                raise ValueError("n (the number of draws) needs a key")
            return self._use(params, X, weights, lengths, "impute")
        n = check_positive_int(1 if n is None else n, "n")
        return self._use(params, X, weights, lengths, "impute_draws", (key, n))

    def sample(
        self, key: PRNGKey, params: Any, n_steps: int, n_sequences: int | None = None
    ) -> tuple[Array, Array]:
        """One sequence of ``n_steps`` (as hmmlearn's ``sample``): ``X`` ``(n_steps, D)`` and its
        states ``(n_steps,)``; with ``n_sequences``, that many: ``(n_sequences, n_steps, D)``
        and ``(n_sequences, n_steps)``."""
        n_steps = check_positive_int(n_steps, "n_steps")
        single = n_sequences is None
        n_sequences = check_positive_int(1 if single else n_sequences, "n_sequences")
        X, states = _sample(self, key, HMMParams(*params), n_steps, n_sequences)
        return (X[0], states[0]) if single else (X, states)

    def simulate(self, key: PRNGKey, params: Any, data_shape: tuple[int, ...]) -> Array:
        """Sequences drawn from the model shaped like the data ``(S, T, D)``, every one ``T``
        steps long (where the data's are shorter, their weights keep the extra steps out)."""
        return _sample(self, key, HMMParams(*params), data_shape[1], data_shape[0])[0]

    # -- helpers ---------------------------------------------------------------------------

    def _log_likelihoods(self, params: HMMParams, data: HMMData, weights: Array) -> Array:
        """$\\log p(x_{st} \\mid z_{st} = k)$, ``(S, T, K)``."""
        s, t = weights.shape
        log_likelihoods = self.family.log_likelihoods(params.emissions, data.family)
        return log_likelihoods.reshape(self.n_states, s, t).transpose(1, 2, 0)

    def _posterior(self, params: HMMParams, data: HMMData, weights: Array):
        """`jaxem.inference.Posterior` of every sequence (a sequence of weight zero is run as
        if its first step were real; its results are multiplied by zero)."""
        mask = (weights > 0).at[:, 0].set(True)
        return jax.vmap(METHODS[self.method], (None, None, 0, 0))(
            params.initial, params.transitions, self._log_likelihoods(params, data, weights), mask
        )

    def _check_data(self, X: Any) -> Array:
        X = as_float_array(X, "X")
        if X.ndim == 2:
            X = X[None]
        if X.ndim != 3 or X.shape[1] < 1:
            raise ValueError(
                "X must be one sequence (n_steps, n_features) or padded sequences "
                f"(n_sequences, n_steps, n_features); got shape {X.shape}"
            )
        s, t, d = X.shape
        return self.family.check_data(X.reshape(s * t, d)).reshape(s, t, d)

    def _check_weights(self, weights: Any, X: Array) -> Array:
        """Per-step weights ``(S, T)``: each sequence's weight on a prefix of real steps, zero
        after (padding); None gives ones."""
        shape = X.shape[:2]
        if weights is None:
            return jnp.ones(shape, X.dtype)
        w = as_float_array(weights, "weights").astype(X.dtype)
        if w.shape != shape:
            raise ValueError(f"weights must have shape (n_sequences, n_steps) = {shape}")
        if is_concrete(w):
            v = host_values(w)
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise ValueError("weights must be finite and non-negative")
            real = v > 0
            if np.any(real[:, 1:] & ~real[:, :-1]):
                raise ValueError(
                    "weights: padding (weight 0) must come only at the end of a sequence"
                )
            if np.any(real & (v != v[:, :1])):
                raise ValueError(
                    "weights: every real step of a sequence must carry the sequence's weight"
                )
            if not np.any(real):
                raise ValueError("weights must not all be zero")
        return w

    def _use(
        self, params: Any, X: Any, weights: Any, lengths: Any, what: str, draws: Any = None
    ) -> Any:
        single = lengths is None and np.ndim(X) == 2
        if lengths is not None:
            X, weights = self.sequences(X, lengths, weights)
        X = self._check_data(without_padding(X, weights))
        weights = self._check_weights(weights, X)
        params = self.check_params(params, X.shape[-1], X.dtype)
        n_sequences, n_steps = weights.shape
        X_run, weights_run = padded(self, X, weights)
        if draws is None:
            out = _inference(self, params, X_run, weights_run, what)
        else:
            key, n = draws
            one = partial(_impute_draw, self, params, X_run, weights_run)
            out = jax.vmap(one)(jax.random.split(key, n))
        if X_run.shape != X.shape:  # the padding's results dropped
            out = unpad(out, (n_sequences, n_steps), lead=0 if draws is None else 1)
        if single:
            index = (slice(None), 0) if draws is not None else 0
            return jax.tree.map(lambda a: a[index], out)
        if lengths is not None and what != "score":
            real = np.asarray(weights) > 0
            if what == "decode":
                return out[0][real], out[1]
            return out[:, real] if draws is not None else out[real]
        return out


@jit
def _total(per_sequence: Array, weights: Any) -> Array:
    """$\\sum_s w_s v_s$ over the sequences (a sequence's weight is its first step's;
    ``weights`` ``(S, T)`` as checked by the methods, or None: ones)."""
    if weights is None:
        return jnp.sum(per_sequence)
    return jnp.sum(per_sequence * jnp.asarray(weights)[:, 0])


def _log_with_zeros(probs: Array) -> Array:
    """$\\log p$ where $p > 0$, and an eighth of the dtype's most negative number where
    $p = 0$ (exp of it, after a softmax's shift, is exactly 0)."""
    positive = probs > 0
    return jnp.where(
        positive, jnp.log(jnp.where(positive, probs, 1.0)), jnp.finfo(probs.dtype).min / 8
    )


def _steps(X: Array) -> Array:
    return X.reshape(-1, X.shape[-1])


def _split(X: Array, lengths: Any) -> list[Array]:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths < 1):
        raise ValueError(f"lengths must be a 1-D array of positive integers; got {lengths}")
    if X.ndim != 2 or int(lengths.sum()) != X.shape[0]:
        raise ValueError(
            f"lengths must sum to the rows of X (sum T_s, n_features) = {X.shape}; "
            f"got sum {int(lengths.sum())}"
        )
    return np.split(np.asarray(X), np.cumsum(lengths)[:-1])


def _normalise_rows(counts: Array, support: Array, concentration: Any) -> Array:
    """Rows (last axis) of ``counts + concentration - 1`` over the supported entries, divided
    by their sums; a row with nothing to count is uniform over its support."""
    allowed = support > 0
    if concentration is not None:
        counts = counts + jnp.broadcast_to(concentration, counts.shape) - 1
    counts = jnp.where(allowed, counts, 0.0)
    total = jnp.sum(counts, axis=-1, keepdims=True)
    uniform = allowed.astype(counts.dtype)
    uniform = uniform / jnp.sum(uniform, axis=-1, keepdims=True)
    return jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), uniform)


def _log_dirichlet_on_support(probs: Array, concentration: Array) -> Array:
    """$\\sum$ over rows (last axis) of the Dirichlet log-density, its normaliser over every
    entry and its kernel $(\\alpha - 1) \\log p$ over the positive entries only."""
    norm = gammaln(jnp.sum(concentration, axis=-1)) - jnp.sum(gammaln(concentration), axis=-1)
    kernel = jnp.where(probs > 0, xlogy(concentration - 1, probs), 0.0)
    return jnp.sum(norm) + jnp.sum(kernel)


# compiled, not run operation by operation (each operation would compile a program of its own:
# 20 for a first init, 0.35 s)
@partial(jit, static_argnames="n_states")
def _chain_from_states(n_states: int, states: Array, weights: Array, emissions: Any) -> HMMParams:
    """$\\pi$ and $A$ from hard states ``(S, T)``: frequencies plus one."""
    one_hot = jax.nn.one_hot(states, n_states, dtype=weights.dtype) * weights[..., None]
    first = jnp.sum(one_hot[:, 0], axis=0) + 1
    following = (one_hot[:, 1:] > 0).astype(weights.dtype)
    pairs = jnp.einsum("sti,stj->ij", one_hot[:, :-1], following) + 1
    return HMMParams(
        first / jnp.sum(first), pairs / jnp.sum(pairs, axis=1, keepdims=True), emissions
    )


def _check_simplex(value: Any, shape: tuple[int, ...], name: str, dtype: Any) -> Array:
    array = as_float_array(value, name).astype(dtype)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {array.shape}")
    if is_concrete(array):
        v = np.asarray(host_values(array), np.float64)
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"{name} must be finite and non-negative")
        if np.any(np.abs(v.sum(axis=-1) - 1) > 1e-4):
            raise ValueError(f"{name}: every row must sum to 1; got sums {v.sum(axis=-1)}")
    return array


def _check_concentration(value: Any, name: str) -> None:
    v = np.asarray(value, np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(v < 1):
        raise ValueError(f"{name} must be >= 1 (1 is flat); got {worst(v)}")


@partial(jit, static_argnames=("model", "what"))
def _inference(
    model: HiddenMarkovModel, params: HMMParams, X: Array, weights: Array, what: str
) -> Any:
    """One compiled program per use of fitted parameters and shape of the data."""
    data = model.prepare(X, weights)
    if what == "decode":
        log_likelihoods = model._log_likelihoods(params, data, weights)
        return jax.vmap(viterbi, (None, None, 0, 0))(
            params.initial, params.transitions, log_likelihoods, weights > 0
        )
    posterior = model._posterior(params, data, weights)
    if what == "impute":
        marginals = posterior.marginals.reshape(-1, posterior.marginals.shape[-1]).T  # (K, S*T)
        filled = model.family.impute(params.emissions, data.family, marginals)
        return jnp.where(jnp.isnan(X), filled.reshape(X.shape), X)
    if what == "score":
        return posterior.log_likelihood
    if what == "filter":
        return jnp.where(weights[..., None] > 0, posterior.filtered, 0.0)
    return posterior.marginals


@partial(jit, static_argnames=("model",))
def _impute_draw(
    model: HiddenMarkovModel, params: HMMParams, X: Array, weights: Array, key: PRNGKey
) -> Array:
    """One completed data set: state paths drawn from their posterior, then the missing values
    from each step's conditional given its state."""
    data = model.prepare(X, weights)
    posterior = model._posterior(params, data, weights)
    k_states, k_values = jax.random.split(key)
    keys = jax.random.split(k_states, X.shape[0])
    states = jax.vmap(sample_states, (0, None, 0, 0))(
        keys, params.transitions, posterior.filtered, weights > 0
    )
    draw = model.family.impute_sample(
        k_values, params.emissions, data.family, states.reshape(-1)
    ).reshape(X.shape)
    return jnp.where(jnp.isnan(X), draw, X)


@partial(jit, static_argnames=("model", "n_steps", "n_sequences"))
def _sample(
    model: HiddenMarkovModel, key: PRNGKey, params: HMMParams, n_steps: int, n_sequences: int
) -> tuple[Array, Array]:
    k_first, k_chain, k_emit = jax.random.split(key, 3)
    log_transitions = jnp.log(params.transitions)
    first = jax.random.categorical(k_first, jnp.log(params.initial), shape=(n_sequences,))

    def step(states, key):
        following = jax.random.categorical(key, log_transitions[states])
        return following, following

    _, rest = jax.lax.scan(step, first, jax.random.split(k_chain, n_steps - 1))
    states = jnp.concatenate([first[None], rest]).T  # (S, T)
    X = model.family.sample_given(k_emit, params.emissions, states.reshape(-1))
    return X.reshape(n_sequences, n_steps, -1), states
