"""The few abstractions everything in jaxem uses: the EM model contract and the fit result.

A model is an object holding static configuration (hashable: it is a static argument of
``jax.jit``) that provides pure functions of arrays. With parameters $\\theta$, data
$x_{1:N}$, sample weights $w_{1:N}$ and latent variables $z_n$:

``e_step(params, X, weights) -> (stats, loglik)``
    The expected sufficient statistics under $q(z_n) = p(z_n \\mid x_n, \\theta)$,

    $$s = \\sum_n w_n\\, \\mathbb{E}_{q(z_n)}[t(x_n, z_n)],$$

    a pytree of sums over samples (so that statistics of row blocks or of devices simply add),
    and the weighted log-likelihood $\\sum_n w_n \\log p(x_n \\mid \\theta)$.

``m_step(stats, prior) -> params``
    The maximiser of the expected complete-data log-likelihood
    $\\sum_n w_n \\mathbb{E}_q[\\log p(x_n, z_n \\mid \\theta)]$ (plus
    $\\log p(\\theta)$ when a prior is given), which depends on the data only through
    ``stats``.

``init(key, X, weights=None) -> params``
    Starting parameters; pure, so it works under ``jit`` and ``vmap``.

Optional (each a Protocol of `jaxem.capabilities`, which resolves them once per call; no other
module looks a model up):

``log_prior(params, prior) -> scalar``
    $\\log p(\\theta)$, needed only when ``fit`` is given a prior.

``prepare(X, weights) -> data``
    The data as ``e_step`` reads it (say, features computed once per fit instead of once per
    iteration), a pytree. The drivers call it once, before
    the loop, and pass ``data`` to ``e_step`` in place of ``X``; ``e_step`` should accept either.

``bytes_per_sample(n_features, itemsize) -> int``
    The E-step's working memory per sample, from which the drivers choose row blocks for large
    data (see `jaxem.chunking`); without it the data is one block unless ``chunk_size`` is
    given. Blocking relies on the statistics being sums over samples: ``e_step`` on a block
    returns that block's share.

``validate(X, params, weights, prior) -> (X, params, weights, prior)``
    Checks made before compilation, the weights' included; raises ``ValueError``/``TypeError``;
    returns the inputs as arrays of the data's dtype, the weights those the drivers use. Shape
    checks always apply; value checks only for concrete (non-traced) arrays, see
    `jaxem.validation`. Without it the drivers take ``X`` as it is and check the weights.

``check_prior(prior, n_features, dtype) -> prior`` and ``check_prior_values(prior, n_features)``
    The prior's checks (shapes; ranges of concrete values, also of a batch of priors with a
    leading axis), which `jaxem.fit_batch` uses to tell one shared prior from a batch of them.

``min_samples``
    The fewest samples of positive weight a fit needs (a mixture's K); default 1.

``data_ndim``
    The dimensions of one dataset (2 for ``(N, D)``; default 1), which `jaxem.fit_batch`
    checks its batch against.

``default_prior(X) -> prior``
    A weak default prior for data ``X``, returned by `jaxem.default_prior`.

``weights_shape(data_shape) -> tuple``
    The shape of the weights of one dataset of shape ``data_shape`` (default
    ``(n_samples,)``); `jaxem.HiddenMarkovModel` weighs every step of every sequence,
    ``(S, T)``. Statistics and the log-likelihood are then sums over all weighted entries.

``unconstrain(params)`` and ``constrain(coordinates)``
    Coordinates in which any real values are valid parameters (`jaxem.Mixture` and
    `jaxem.HiddenMarkovModel` have them, from their families'), for extrapolating between EM
    iterates.

``effective_weights(X, weights) -> weights``
    The weights the drivers use, where a model may zero those of samples that carry no
    information (a mixture with missing values: rows with every value missing).

A mixture model is `jaxem.Mixture` over a component family (`Family` below); models need not
be mixtures (`jaxem.KMeans`, a user's own model in the tests).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any
Stats = Any
Prior = Any


@runtime_checkable
class EMModel(Protocol):
    """The contract between a model and the generic driver `jaxem.fit`."""

    def e_step(self, params: Params, X: Array, weights: Array) -> tuple[Stats, Array]: ...

    def m_step(self, stats: Stats, prior: Prior | None = None) -> Params: ...

    def init(self, key: PRNGKey, X: Array, weights: Array | None = None) -> Params: ...


@runtime_checkable
class Family(Protocol):
    """The distribution of one observation given its latent state: what a mixture
    (`jaxem.Mixture`) and a hidden Markov model share. A family knows nothing of mixture
    weights or Markov chains; K is the number of components (states) and ``wr`` ``(K, N)`` the
    weighted responsibilities (state marginals) $w_n r_{nk}$. Static configuration, hashable.

    ``check_data(X, name="X") -> X``: ``(N, D)`` as a floating array, values in the support;
    ``prepare(X, weights) -> data``: what ``log_likelihoods`` and ``stats`` read, once per fit;
    ``log_likelihoods(params, data) -> (K, N)``: $\\log p(x_n \\mid \\theta_k)$;
    ``stats(data, wr, params=None) -> stats``: additive statistics (sums over samples);
    ``estimate(stats, counts, prior=None) -> params``: the components' M-step, MLE or with a
    prior the posterior mode, given $N_k$ = ``counts`` ``(K,)``;
    ``log_prior(params, prior)``, ``default_prior_for(X, K)``, ``check_prior_for(prior, K, D,
    dtype, name)``, ``check_prior_values(prior, D, name)``: the conjugate prior;
    ``check_params_for(params, K, D, dtype, name)``, ``n_parameters_for(K, D)``,
    ``sample_given(key, params, labels) -> (N, D)``, ``permute(params, order)``,
    ``init_points(X) -> (N, F)`` (where k-means seeds a start), ``bytes_per_sample_for(D, K,
    itemsize)`` and ``describe()`` (for messages). A hook a model also has takes the model's
    arguments (``log_prior``, ``permute``, ``check_prior_values``, ``describe``); those that
    need the number of components are named apart (``..._for``), so that a name means one
    signature; optionally ``start_prior(X, weights, K)``, a
    prior whose posterior mode from the starting partition is a mixture's start (the discrete
    families use their default prior: a maximum-likelihood start from a hard partition puts
    probabilities on the boundary, which EM cannot leave); ``missing``, true when the family was
    built to take NaN as a value missing at random, with ``impute(params, data, resp)`` (values
    for the missing entries given the responsibilities ``(K, N)``, ``(N, D)``) and
    ``impute_sample(key, params, data, labels)`` (draws given each row's component);
    ``unconstrain(params)`` and ``constrain(coordinates)``, coordinates in which any real
    values are valid parameters (log rates, logits, log-diagonal Cholesky factors), for
    extrapolating between EM iterates; ``fuses_e_step``, true when the family computes a
    mixture's whole E-step itself, ``mixture_e_step(params, data, log_weights, weights) ->
    (counts, stats, loglik)``, in one pass (Gaussians with missing values); and
    ``shares_parameters``, true when
    some parameter is common to all components (a tied covariance): then ``estimate`` and
    ``log_prior`` accept ``active=`` ``(K,)`` booleans, and count only the active components in
    the shared parameter's prior (`jaxem.grid` switches components off); and
    ``numpyro_components(dist, params)`` with ``numpyro_params(sample, dist, prior, K, D)``, the
    family written in NumPyro for `jaxem.crosscheck`
    (`jaxem.capabilities.DescribedInNumPyro`). See ``docs/families.md``.
    """

    def check_data(self, X: Any, name: str = "X") -> Array: ...

    def prepare(self, X: Array, weights: Array) -> Any: ...

    def log_likelihoods(self, params: Params, data: Any) -> Array: ...

    def stats(self, data: Any, wr: Array, params: Params | None = None) -> Stats: ...

    def estimate(self, stats: Stats, counts: Array, prior: Prior | None = None) -> Params: ...

    def log_prior(self, params: Params, prior: Prior) -> Array: ...

    def default_prior_for(self, X: Array, n_components: int) -> Prior: ...

    def check_params_for(
        self, params: Any, n_components: int, n_features: int, dtype: Any, name: str = "params"
    ) -> Params: ...

    def check_prior_for(
        self, prior: Any, n_components: int, n_features: int, dtype: Any, name: str = "prior"
    ) -> Prior: ...

    def check_prior_values(self, prior: Prior, n_features: int, name: str = "prior") -> None: ...

    def n_parameters_for(self, n_components: int, n_features: int) -> int: ...

    def sample_given(self, key: PRNGKey, params: Params, labels: Array) -> Array: ...

    def permute(self, params: Params, order: Any) -> Params: ...

    def init_points(self, X: Array) -> Array: ...

    def bytes_per_sample_for(self, n_features: int, n_components: int, itemsize: int) -> int: ...

    def describe(self) -> str: ...


class FitResult(NamedTuple):
    """What `jaxem.fit` returns; a NamedTuple, hence a pytree (batched under ``vmap``).

    Attributes:
        params: the final parameters.
        objective: the objective at ``params``: the weighted log-likelihood
            $\\sum_n w_n \\log p(x_n \\mid \\theta)$, plus $\\log p(\\theta)$
            with a prior.
        n_iter: the number of iterations taken: M-steps for plain EM, accepted extrapolations
            with ``accelerate="squarem"``.
        converged: whether the change of the objective per unit of sample weight fell strictly
            below ``tol`` before ``max_iter`` iterations.
        history: ``(max_iter,)``: the objective after each iteration; NaN past ``n_iter``.
        n_evals: the number of E-steps (passes over the data) the fit made, the start's
            included: ``n_iter + 1`` for plain EM, ``3 n_iter + 1`` with SQUAREM.
    """

    params: Params
    objective: Array
    n_iter: Array
    converged: Array
    history: Array
    n_evals: Array
