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

Optional:

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

``validate(X, params, weights, prior) -> (X, params, prior)``
    Checks made before compilation; raises ``ValueError``/``TypeError``; returns the inputs as
    arrays of the data's dtype. Shape checks always
    apply; value checks only for concrete (non-traced) arrays, see `jaxem.validation`.
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


class FitResult(NamedTuple):
    """What `jaxem.fit` returns; a NamedTuple, hence a pytree (batched under ``vmap``).

    Attributes:
        params: the final parameters.
        objective: the objective at ``params``: the weighted log-likelihood
            $\\sum_n w_n \\log p(x_n \\mid \\theta)$, plus $\\log p(\\theta)$
            with a prior.
        n_iter: the number of M-steps taken.
        converged: whether the change of the objective per unit of sample weight fell strictly
            below ``tol`` before ``max_iter`` M-steps.
        history: ``(max_iter,)``: the objective after each M-step; NaN past ``n_iter``.
    """

    params: Params
    objective: Array
    n_iter: Array
    converged: Array
    history: Array
