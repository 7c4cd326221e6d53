"""Checking EM against NumPyro: the same mixture or hidden Markov model, written as a NumPyro
model.

jaxem promises that ``fit(..., prior=prior)`` returns a posterior mode of a stated Bayesian
model and that ``FitResult.objective`` is its log joint. This module writes that model with
NumPyro's distributions, independently of the M-step, so that anyone can check the promise:

- `numpyro_model`: the model $p(\\theta)\\prod_n p(x_n \\mid \\theta)^{w_n}$;
- `log_joint`: NumPyro's log density of it at jaxem's parameters;
- `posterior_mode`: the mode found by an optax optimiser (L-BFGS) on that log density;
- `compare`: EM-MAP against `posterior_mode` from the same start, as a report;
- `nuts`: NUTS draws from the posterior, relabelled to the MAP's components.

The model (see ``docs/crosscheck.md``), for ``prior = (alpha, m, kappa, nu, Psi)``:

$$
\\pi \\sim \\mathrm{Dir}(\\alpha), \\quad
\\Sigma_k \\sim \\mathcal{W}^{-1}(\\nu, \\Psi), \\quad
\\mu_k \\mid \\Sigma_k \\sim \\mathcal{N}(m, \\Sigma_k / \\kappa), \\quad
x_n \\mid \\pi, \\mu, \\Sigma \\sim \\textstyle\\sum_k \\pi_k \\mathcal{N}(\\mu_k, \\Sigma_k),
$$

with Inverse-Gamma variances for diag and spherical covariances and one shared
$\\Sigma$ for tied; the other families with their Beta, Dirichlet and Gamma priors. A hidden
Markov model (`jaxem.HiddenMarkovModel`) has Dirichlet priors on $\\pi$ and on every row of
$A$, and its likelihood by the forward algorithm in log space. Without a prior every parameter
has an improper flat prior, so the log joint is the log-likelihood.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import log_density
from scipy.optimize import linear_sum_assignment

from jaxem.base import Array, PRNGKey
from jaxem.capabilities import of_family
from jaxem.compiler import jit
from jaxem.em import check_inputs, fit
from jaxem.hmm import HiddenMarkovModel, HMMParams
from jaxem.mixture import Mixture, MixtureParams

EM_TOL, EM_MAX_ITER = 1e-13, 10_000  # EM run to convergence before comparing


def sites(model: Mixture | HiddenMarkovModel) -> tuple[str, ...]:
    """The NumPyro sample sites of `numpyro_model`: ``"weights"`` (a mixture) or
    ``"initial"`` and ``"transitions"`` (a hidden Markov model), and the family's parameter
    fields (``means``, ``covariances``; ``probs``; ``rates``)."""
    _check_model(model)
    chain = ("initial", "transitions") if _is_hmm(model) else ("weights",)
    return chain + model.family.params_type._fields


def _is_hmm(model: Any) -> bool:
    return isinstance(model, HiddenMarkovModel)


def _site_values(model: Mixture | HiddenMarkovModel, params: Any) -> dict:
    if _is_hmm(model):
        params = HMMParams(*params)
        chain = {"initial": params.initial, "transitions": params.transitions}
        return {**chain, **params.emissions._asdict()}
    mixture = model.as_mixture_params(params)
    return {"weights": mixture.weights, **mixture.components._asdict()}


def _from_sites(model: Mixture | HiddenMarkovModel, values: dict) -> Any:
    kind = model.family.params_type
    components = kind(**{f: values[f] for f in kind._fields})
    if _is_hmm(model):
        return HMMParams(values["initial"], values["transitions"], components)
    return model.from_mixture_params(MixtureParams(values["weights"], components))


def numpyro_model(model: Mixture, prior: Any = None) -> Callable[..., None]:
    """A NumPyro model function ``f(X, weights=None)`` of ``model`` with ``prior``.

    Latent sites ``"weights"`` ``(K,)`` and the family's parameters in jaxem's shapes (see
    `sites`); the observed site ``"X"`` is a ``MixtureSameFamily`` inside a plate over samples.
    Sample ``weights`` ``(N,)`` scale each sample's log-likelihood; samples of weight 0 are masked
    out. With ``prior=None`` the parameters get improper flat priors (log density 0).
    """
    _check_model(model)
    if _is_hmm(model):
        return _hmm_model(model, prior)
    k, family = model.n_components, model.family
    components_prior = None if prior is None else model.as_mixture_prior(prior).components

    def f(X: Array, weights: Array | None = None) -> None:
        d = X.shape[1]
        if prior is None:
            pi = numpyro.sample("weights", dist.ImproperUniform(constraints.simplex, (), (k,)))
        else:
            alpha = jnp.broadcast_to(model.as_mixture_prior(prior).alpha, (k,))
            pi = numpyro.sample("weights", dist.Dirichlet(alpha))
        values = _params_sites(family, components_prior, k, d)
        components = _components(family, values)
        if of_family(family).missing:
            log_lik = _observed_log_likelihoods(components, X)
        else:
            log_lik = components.log_prob(_in_support(components, X)[:, None, :])
        # log sum_k pi_k p_k(x_n), written out (MixtureSameFamily takes only components whose
        # support is parameter-free, which a categorical's is not)
        log_px = jax.nn.logsumexp(jnp.log(pi) + log_lik, axis=-1)
        w = jnp.ones(X.shape[0], X.dtype) if weights is None else weights
        numpyro.factor("X", jnp.sum(jnp.where(w > 0, w * log_px, 0.0)))

    return f


def _params_sites(family: Any, prior: Any, k: int, d: int) -> Any:
    """The family's parameters as NumPyro sites: from its conjugate ``prior``, or flat."""
    return of_family(family).numpyro_params(numpyro.sample, dist, prior, k, d)


def _components(family: Any, params: Any) -> dist.Distribution:
    """The K component distributions, batch shape ``(K,)``, event shape ``(D,)``."""
    return of_family(family).numpyro_components(dist, params)


def _in_support(components: dist.Distribution, X: Array) -> Array:
    """``X`` as the components take it: integers for a discrete support (categories)."""
    return X.astype(jnp.int32) if components.support.is_discrete else X


def _hmm_model(model: HiddenMarkovModel, prior: Any) -> Callable[..., None]:
    """The hidden Markov model: $\\pi \\sim \\mathrm{Dir}(\\alpha)$, every row of $A$
    $\\sim \\mathrm{Dir}(\\beta_i)$, the emissions from the family's conjugate prior (flat
    improper priors without ``prior``), and the sequences' log-likelihoods by the forward
    algorithm in log space, written here apart from `jaxem.inference` (which scales instead),
    as a factor ``"X"``: $\\sum_s w_s \\log p(x_s)$ for ``X`` ``(S, T, D)`` and per-step
    ``weights`` ``(S, T)`` (0 on padding)."""
    k, family = model.n_states, model.family

    def f(X: Array, weights: Array | None = None) -> None:
        d = X.shape[-1]
        if prior is None:
            initial = numpyro.sample("initial", dist.ImproperUniform(constraints.simplex, (), (k,)))
            transitions = numpyro.sample(
                "transitions", dist.ImproperUniform(constraints.simplex, (k,), (k,))
            )
            values = _params_sites(family, None, k, d)
        else:
            alpha = jnp.broadcast_to(prior.initial, (k,))
            beta = jnp.broadcast_to(prior.transitions, (k, k))
            initial = numpyro.sample("initial", dist.Dirichlet(alpha))
            transitions = numpyro.sample("transitions", dist.Dirichlet(beta).to_event(1))
            values = _params_sites(family, prior.emissions, k, d)
        components = _components(family, values)
        emissions = components.log_prob(_in_support(components, X)[:, :, None, :])  # (S, T, K)
        w = jnp.ones(X.shape[:2], X.dtype) if weights is None else weights
        log_transitions = jnp.log(transitions)

        def forward(log_alpha, step):
            emission, real = step  # (S, K), (S,)
            new = jax.nn.logsumexp(log_alpha[:, :, None] + log_transitions, axis=1) + emission
            return jnp.where(real[:, None], new, log_alpha), None

        first = jnp.log(initial) + emissions[:, 0]
        steps = (jnp.swapaxes(emissions[:, 1:], 0, 1), (w[:, 1:] > 0).T)
        last, _ = jax.lax.scan(forward, first, steps)
        log_px = jax.nn.logsumexp(last, axis=-1)
        numpyro.factor("X", jnp.sum(jnp.where(w[:, 0] > 0, w[:, 0] * log_px, 0.0)))

    return f


def _observed_log_likelihoods(components: dist.Distribution, X: Array) -> Array:
    """$\\log p(x_{n,o} \\mid \\theta_k)$ ``(N, K)`` of the observed entries of ``X`` (NaN
    where missing). Independent columns (``Independent`` components): every entry's log
    density, masked. A multivariate normal: the vector with its missing coordinates set to 0
    under a Gaussian whose mean is 0 there and whose covariance is the identity there and
    $\\Sigma_{oo}$ elsewhere, which is
    $\\mathcal{N}(x_o \\mid \\mu_o, \\Sigma_{oo})\\,\\mathcal{N}(0 \\mid 0, 1)^{|m|}$."""
    seen = ~jnp.isnan(X)
    x = jnp.where(seen, X, 0.0)
    if isinstance(components, dist.Independent):
        entries = components.base_dist.log_prob(_in_support(components, x)[:, None, :])
        return jnp.sum(jnp.where(seen[:, None, :], entries, 0.0), axis=-1)
    if not isinstance(components, dist.MultivariateNormal):
        raise TypeError(
            "jaxem.crosscheck takes missing values for components of independent columns "
            f"(Independent) or multivariate normals; got {type(components).__name__}"
        )
    cov, loc = components.covariance_matrix, components.loc  # (K, D, D), (K, D)
    d = loc.shape[-1]
    o = seen.astype(X.dtype)
    pairs = o[:, None, :, None] * o[:, None, None, :]
    padded = cov[None] * pairs + jnp.eye(d, dtype=X.dtype) * (1.0 - o)[:, None, None, :]
    means = o[:, None, :] * loc[None]
    log_prob = dist.MultivariateNormal(means, covariance_matrix=padded).log_prob(x[:, None, :])
    return log_prob + 0.5 * jnp.sum(1.0 - o, axis=1)[:, None] * jnp.log(2 * jnp.pi)


def log_joint(
    model: Mixture,
    params: Any,
    X: Any,
    prior: Any | None = None,
    weights: Any = None,
) -> Array:
    """NumPyro's log density of `numpyro_model` at ``params``: with a prior
    $\\log p(\\theta) + \\sum_n w_n \\log p(x_n \\mid \\theta)$, without one the weighted
    log-likelihood. Equals ``jaxem.fit(...).objective`` at the same parameters.

    ``X`` ``(N, D)``; ``weights`` ``(N,)`` or None.
    """
    return _log_joint_and_grad(model, params, X, prior, weights)[0]


def grad_norm(
    model: Mixture,
    params: Any,
    X: Any,
    prior: Any | None = None,
    weights: Any = None,
) -> Array:
    """The largest entry of the gradient of NumPyro's log joint at ``params``, in the
    unconstrained coordinates of `posterior_mode` (zero at any stationary point)."""
    return _log_joint_and_grad(model, params, X, prior, weights)[1]


def _log_joint_and_grad(model, params, X, prior, weights):
    _check_model(model)
    X, params, weights, prior = check_inputs(model, X, params, weights, prior)
    return _value_and_grad(model, params, X, prior, weights)


@partial(jit, static_argnames="model")
def _value_and_grad(model, params, X, prior, weights):
    u, _, loss = _unconstrained(model, prior, X, weights, params)
    value, grad = jax.value_and_grad(loss)(u)
    return -value, _max_abs(grad)


class ModeResult(NamedTuple):
    """What `posterior_mode` returns.

    Attributes:
        params: the mode found, `jaxem.Any`.
        objective: NumPyro's log joint there (scalar).
        n_steps: optimiser steps taken.
        grad_norm: the largest entry of the log joint's gradient in unconstrained coordinates.
    """

    params: Any
    objective: Array
    n_steps: Array
    grad_norm: Array


def posterior_mode(
    model: Mixture,
    X: Any,
    prior: Any | None,
    init_params: Any,
    *,
    weights: Any = None,
    steps: int = 2000,
    learning_rate: float | None = None,
    tol: float = 1e-10,
) -> ModeResult:
    """Maximise NumPyro's log density of `numpyro_model` with optax's L-BFGS.

    The search runs over unconstrained coordinates, the inverse of NumPyro's ``biject_to`` of
    each site's support (stick-breaking for the simplex of weights, ``exp`` for variances, the
    Cholesky factor with a log-diagonal for covariance matrices). The density maximised is the
    log joint of the *constrained* parameters, without the change of variables' Jacobian, so
    the maximiser is the mode in jaxem's parametrisation, the one EM-MAP finds. Compiled with
    ``jit``.

    Args:
        model: a `jaxem.GaussianMixture`.
        X: the data ``(N, D)``.
        prior: as for `jaxem.fit`; ``prior=None`` maximises the likelihood.
        init_params: where the search starts.
        weights: optional sample weights ``(N,)``.
        steps: the largest number of L-BFGS steps.
        learning_rate: None for L-BFGS's zoom line search (the default), or a fixed step.
        tol: stop once every gradient entry is below ``tol`` times the total sample weight.
    """
    _check_model(model)
    X, params, weights, prior = check_inputs(model, X, init_params, weights, prior)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    return _posterior_mode(
        model, X, prior, params, weights, jnp.asarray(tol, X.dtype), steps, learning_rate
    )


def _unconstrained(model, prior, X, weights, params):
    """``(u, constrain, loss)``: the unconstrained point of ``params``, the map back, and the
    negative log joint as a function of unconstrained coordinates."""
    f = numpyro_model(model, prior)
    trace = numpyro.handlers.trace(numpyro.handlers.substitute(f, data=_site_values(model, params)))
    names = sites(model)
    traced = trace.get_trace(X, weights)
    bijections = {name: biject_to(traced[name]["fn"].support) for name in names}

    def constrain(u):
        return _from_sites(model, {n: bijections[n](u[n]) for n in names})

    def loss(u):
        return -log_density(f, (X,), {"weights": weights}, _site_values(model, constrain(u)))[0]

    values = _site_values(model, params)
    u = {n: bijections[n].inv(values[n]) for n in names}
    # jit: traced once although L-BFGS's line search calls it at many places
    return u, constrain, jax.jit(loss)


def _max_abs(tree) -> Array:
    leaves = [jnp.ravel(jnp.abs(x)) for x in jax.tree.leaves(tree)]
    return jnp.max(jnp.concatenate([jnp.zeros((1,), leaves[0].dtype)] + leaves))


@partial(jit, static_argnames=("model", "steps", "learning_rate"))
def _posterior_mode(model, X, prior, params, weights, tol, steps, learning_rate):
    u, constrain, loss = _unconstrained(model, prior, X, weights, params)
    optimiser = optax.lbfgs(learning_rate)
    value_and_grad = optax.value_and_grad_from_state(loss)
    limit = tol * jnp.sum(weights)

    def cond(carry):
        _, _, i, g = carry
        return (i < steps) & (g >= limit)

    def body(carry):
        u, state, i, _ = carry
        value, grad = value_and_grad(u, state=state)
        updates, state = optimiser.update(grad, state, u, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(u, updates), state, i + 1, _max_abs(grad)

    init = (u, optimiser.init(u), jnp.asarray(0, jnp.int32), jnp.asarray(jnp.inf, X.dtype))
    u, _, n_steps, _ = jax.lax.while_loop(cond, body, init)
    value, grad = jax.value_and_grad(loss)(u)
    return ModeResult(constrain(u), -value, n_steps, _max_abs(grad))


class CrosscheckReport(NamedTuple):
    """EM against the optax mode search on NumPyro's log density (see `compare`).

    Attributes:
        model: the `jaxem.GaussianMixture`.
        n_samples: N.
        em: EM's `jaxem.FitResult`.
        mode: the `ModeResult`, components matched to EM's.
        param_diffs: per parameter, $\\max|a - b| / \\max|b|$ between EM's and the mode's.
        objective_diff: $|\\ell_{EM} - \\ell_{mode}| / |\\ell_{mode}|$, NumPyro's log joint.
        em_objective_diff: EM's own objective against NumPyro's log joint at EM's params,
            relative.
        grad_at_em: `grad_norm` at EM's estimate.
        em_seconds, mode_seconds: wall time of one compiled run of each.
    """

    model: Mixture
    n_samples: int
    em: Any
    mode: ModeResult
    param_diffs: dict
    objective_diff: float
    em_objective_diff: float
    grad_at_em: float
    em_seconds: float
    mode_seconds: float

    @property
    def max_param_diff(self) -> float:
        return max(self.param_diffs.values())

    def __repr__(self) -> str:
        m = self.model
        rows = [
            f"EM vs NumPyro mode: {_name(m)}, "
            + (f"{self.n_samples} sequences" if _is_hmm(m) else f"N={self.n_samples}"),
            f"{'':<34}{'EM':>20}{'optax L-BFGS':>20}",
            f"{'log joint':<34}{float(self.em.objective):>20.10f}"
            f"{float(self.mode.objective):>20.10f}",
            f"{'iterations':<34}{int(self.em.n_iter):>20d}{int(self.mode.n_steps):>20d}",
            f"{'seconds (compiled run)':<34}{self.em_seconds:>20.4f}{self.mode_seconds:>20.4f}",
            "relative differences",
        ]
        for name, value in self.param_diffs.items():
            rows.append(f"  {name:<32}{value:>20.2e}")
        rows += [
            f"  {'log joint':<32}{self.objective_diff:>20.2e}",
            f"  {'EM objective vs NumPyro':<32}{self.em_objective_diff:>20.2e}",
            f"{'max |grad| at EM (unconstrained)':<34}{self.grad_at_em:>20.2e}",
        ]
        return "\n".join(rows)


def compare(
    model: Mixture,
    X: Any,
    prior: Any | None,
    key: PRNGKey,
    *,
    weights: Any = None,
    tol: float = EM_TOL,
    max_iter: int = EM_MAX_ITER,
    steps: int = 2000,
) -> CrosscheckReport:
    """Fit EM (MAP with ``prior``, else MLE) and run `posterior_mode` from the same
    start, ``model.init(key, X, weights)``; match components by their means
    (``scipy.optimize.linear_sum_assignment``) and report the differences.

    For ``prior=None`` build the model with ``reg_covar=0``: EM's M-step otherwise adds
    ``reg_covar`` and stops a little short of the likelihood's maximum.
    """
    _check_model(model)
    start = model.init(key, X, weights)
    if jax.tree.leaves(start)[0].dtype != jnp.float64 and jax.config.jax_enable_x64:
        raise TypeError(
            "compare got float32 data while float64 is enabled: the mode search (optax's "
            "L-BFGS) needs one precision throughout; pass the data as float64"
        )
    if jax.tree.leaves(start)[0].dtype != jnp.float64:
        warnings.warn(
            "compare runs in float32 (jax_enable_x64 is off): L-BFGS stalls at float32 "
            "rounding and usually runs to its step cap, so the differences it reports are "
            "float32's (about 1e-4), not EM's; for a tight check, "
            "jax.config.update('jax_enable_x64', True) before making the data",
            stacklevel=2,
        )
    em, em_seconds = _timed(
        lambda: fit(model, X, start, prior=prior, weights=weights, tol=tol, max_iter=max_iter)
    )
    mode, mode_seconds = _timed(
        lambda: posterior_mode(model, X, prior, start, weights=weights, steps=steps)
    )
    order = match_components(_locations(model, em.params), _locations(model, mode.params))
    mode = mode._replace(params=model.permute(mode.params, order))
    em_sites, mode_sites = _site_values(model, em.params), _site_values(model, mode.params)
    diffs = {
        name: float(
            jnp.max(jnp.abs(em_sites[name] - mode_sites[name])) / jnp.max(jnp.abs(mode_sites[name]))
        )
        for name in sites(model)
    }
    numpyro_at_em, grad_at_em = _log_joint_and_grad(model, em.params, X, prior, weights)
    return CrosscheckReport(
        model=model,
        n_samples=int(jnp.shape(X)[0]),
        em=em,
        mode=mode,
        param_diffs=diffs,
        objective_diff=_relative(numpyro_at_em, mode.objective),
        em_objective_diff=_relative(em.objective, numpyro_at_em),
        grad_at_em=float(grad_at_em),
        em_seconds=em_seconds,
        mode_seconds=mode_seconds,
    )


def _name(model: Mixture | HiddenMarkovModel) -> str:
    return model.describe()


def _relative(a, b) -> float:
    return float(jnp.abs(a - b) / jnp.abs(b))


def _timed(run):
    """Run once to compile, then time a second run."""
    jax.block_until_ready(run())
    t0 = time.perf_counter()
    out = jax.block_until_ready(run())
    return out, time.perf_counter() - t0


def match_components(reference_means: Any, means: Any) -> np.ndarray:
    """The order of ``means``' components that best matches ``reference_means`` (least total
    squared distance); ``means[order]`` lines up with the reference. Both ``(K, D)``."""
    a, b = np.asarray(reference_means), np.asarray(means)
    cost = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    _, order = linear_sum_assignment(cost)
    return order


def _locations(model: Mixture, params: Any) -> np.ndarray:
    """What components are matched on: the family's first parameter (means, probabilities,
    rates), one row per component ``(K, -1)``."""
    if _is_hmm(model):
        first = np.asarray(HMMParams(*params).emissions[0])
        return first.reshape(model.n_states, -1)
    first = np.asarray(model.as_mixture_params(params).components[0])
    return first.reshape(model.n_components, -1)


def permute(model: Mixture, params: Any, order: Any) -> Any:
    """``params`` with its components reordered (``model.permute``)."""
    return model.permute(params, order)


class NutsResult(NamedTuple):
    """What `nuts` returns.

    Attributes:
        samples: `jaxem.Any` with a leading ``(num_samples,)`` axis,
            components relabelled to match ``map_params``.
        map_params: EM's MAP estimate, where the chain started and the relabelling reference.
        num_divergent: divergent transitions after warm-up.
    """

    samples: Any
    map_params: Any
    num_divergent: int


def nuts(
    model: Mixture,
    X: Any,
    prior: Any,
    key: PRNGKey,
    num_samples: int = 1000,
    *,
    num_warmup: int = 500,
    weights: Any = None,
) -> NutsResult:
    """Draw from the posterior of `numpyro_model` with NumPyro's NUTS.

    The chain starts at EM's MAP estimate (from ``model.init(key, X)``) and every draw's
    components are relabelled to the MAP's by the assignment that best matches the means, so
    that label switching does not mix components in summaries.
    """
    _check_model(model)
    if prior is None:
        raise ValueError("nuts needs a prior: with flat priors the posterior is improper")
    k_init, k_mcmc = jax.random.split(key)
    start = model.init(k_init, X, weights)
    given = weights
    X, start, weights, prior = check_inputs(model, X, start, weights, prior)
    em = fit(model, X, start, prior=prior, weights=weights, tol=EM_TOL, max_iter=EM_MAX_ITER)
    if given is None:
        weights = None
    else:
        keep = (weights > 0).reshape(weights.shape + (1,) * (X.ndim - weights.ndim))
        X = jnp.where(keep, X, 0.0)
    kernel = numpyro.infer.NUTS(
        numpyro_model(model, prior),
        init_strategy=numpyro.infer.init_to_value(values=_site_values(model, em.params)),
    )
    mcmc = numpyro.infer.MCMC(
        kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=False
    )
    mcmc.run(k_mcmc, X, weights=weights, extra_fields=("diverging",))
    draws = mcmc.get_samples()
    samples = _from_sites(model, {n: np.asarray(draws[n]) for n in sites(model)})
    reference = _locations(model, em.params)
    orders = np.stack(
        [
            match_components(
                reference, _locations(model, jax.tree.map(lambda a, i=i: a[i], samples))
            )
            for i in range(num_samples)
        ]
    )
    relabelled = jax.vmap(model.permute)(samples, jnp.asarray(orders))
    divergent = int(np.sum(mcmc.get_extra_fields()["diverging"]))
    return NutsResult(relabelled, em.params, divergent)


def _check_model(model: Any) -> None:
    if not isinstance(model, (Mixture, HiddenMarkovModel)):
        raise TypeError(
            "jaxem.crosscheck covers mixtures (GaussianMixture, Mixture) and hidden Markov "
            f"models; got {type(model).__name__}"
        )
    if of_family(model.family).numpyro_components is None:
        raise TypeError(
            f"{type(model.family).__name__} does not describe itself in NumPyro: "
            "jaxem.crosscheck needs its numpyro_components and numpyro_params (see "
            "jaxem.capabilities.DescribedInNumPyro and docs/families.md)"
        )
