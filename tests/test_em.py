"""The generic driver: iteration counts, the stopping rule, sample weights, jit and vmap, and a
user's own model fitted through the same contract."""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lowerings, make_blobs
from jax.scipy.special import gammaln
from scipy import optimize, stats

import jaxem


@pytest.fixture(scope="module")
def model():
    return jaxem.GaussianMixture(3, "full")


@pytest.fixture(scope="module")
def start(model, blobs):
    return model.init(jax.random.key(0), blobs)


def test_tol_zero_runs_exactly_max_iter(model, blobs, start):
    result = jaxem.fit(model, blobs, start, tol=0.0, max_iter=7)
    assert int(result.n_iter) == 7
    assert not bool(result.converged)
    assert np.all(np.isfinite(result.history))
    assert result.history.shape == (7,)
    assert float(result.history[-1]) == float(result.objective)


def test_stopping_rule_and_history(model, blobs, start):
    tol = 1e-4
    result = jaxem.fit(model, blobs, start, tol=tol, max_iter=200)
    n = int(result.n_iter)
    assert bool(result.converged) and 1 < n < 200
    history = np.asarray(result.history)
    assert np.all(np.isfinite(history[:n])) and np.all(np.isnan(history[n:]))
    _, initial = model.e_step(start, jnp.asarray(blobs), jnp.ones(len(blobs)))
    curve = np.concatenate([[float(initial)], history[:n]])
    changes = np.abs(np.diff(curve)) / len(blobs)
    # stops at the first iteration whose change per unit weight is strictly below tol
    assert changes[-1] < tol and np.all(changes[:-1] >= tol)
    assert float(result.objective) == history[n - 1]
    # the objective is the log-likelihood at the returned params
    _, loglik = model.e_step(result.params, jnp.asarray(blobs), jnp.ones(len(blobs)))
    np.testing.assert_allclose(result.objective, loglik, rtol=1e-14)


def test_weight_two_counts_as_a_copy(model, blobs, start):
    w = np.ones(len(blobs))
    w[::3] = 2.0
    weighted = jaxem.fit(model, blobs, start, weights=w, tol=0, max_iter=20)
    copies = np.concatenate([blobs, blobs[::3]])
    copied = jaxem.fit(model, copies, start, tol=0, max_iter=20)
    for a, b in zip(weighted.params, copied.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weighted.objective, copied.objective, rtol=1e-12)


def test_zero_weight_removes_the_row_whatever_it_holds(model, blobs, start):
    padded = np.concatenate([blobs, np.full((25, 3), 1e6)])
    padded[-3] = -1e6
    w = np.concatenate([np.ones(len(blobs)), np.zeros(25)])
    with_padding = jaxem.fit(model, padded, start, weights=w, tol=1e-6, max_iter=100)
    alone = jaxem.fit(model, blobs, start, tol=1e-6, max_iter=100)
    assert int(with_padding.n_iter) == int(alone.n_iter)
    for a, b in zip(with_padding.params, alone.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(with_padding.objective, alone.objective, rtol=1e-12)


def test_fit_under_jit(model, blobs, start):
    jitted = jax.jit(lambda X, p: jaxem.fit(model, X, p, tol=1e-5, max_iter=50))
    a = jitted(blobs, start)
    b = jaxem.fit(model, blobs, start, tol=1e-5, max_iter=50)
    assert int(a.n_iter) == int(b.n_iter)
    np.testing.assert_allclose(a.params.means, b.params.means, rtol=1e-12)


def test_vmap_members_stop_at_their_own_iteration():
    """Datasets of different difficulty need very different iteration counts; vmapped, each
    member ends exactly where it ends alone."""
    rng = np.random.default_rng(5)
    separated = make_blobs(1)
    overlapping = rng.normal(size=(450, 3)) * np.array([1.0, 1.1, 0.9])
    shifted = make_blobs(2) * 0.5
    Xs = np.stack([separated, overlapping, shifted])
    model = jaxem.GaussianMixture(3, "diag")
    keys = jax.random.split(jax.random.key(1), 3)
    starts = jax.vmap(model.init)(keys, Xs)
    batched = jax.vmap(lambda X, p: jaxem.fit(model, X, p, tol=1e-6, max_iter=300))(Xs, starts)
    n_iters = []
    for b in range(3):
        start = jax.tree.map(lambda a, b=b: a[b], starts)
        alone = jaxem.fit(model, Xs[b], start, tol=1e-6, max_iter=300)
        n_iters.append(int(alone.n_iter))
        assert int(batched.n_iter[b]) == int(alone.n_iter)
        assert bool(batched.converged[b]) == bool(alone.converged)
        for x, y in zip(batched.params, alone.params, strict=True):
            np.testing.assert_allclose(x[b], y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(batched.history[b], alone.history, rtol=1e-12)
    assert max(n_iters) > 3 * min(n_iters), n_iters


# -- a user's own model through the same contract ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoissonMixture:
    """A mixture of two Poissons, written only against the e_step/m_step contract."""

    def e_step(self, params, X, weights):
        mix, rates = params
        log_joint = jnp.log(mix) + X[:, None] * jnp.log(rates) - rates - gammaln(X + 1)[:, None]
        log_px = jax.nn.logsumexp(log_joint, axis=1)
        wr = jnp.exp(log_joint - log_px[:, None]) * weights[:, None]
        return (wr.sum(0), wr.T @ X), jnp.sum(weights * log_px)

    def m_step(self, stats, prior=None):
        counts, sums = stats
        return counts / counts.sum(), sums / counts

    def init(self, key, X, weights=None):
        return jnp.array([0.5, 0.5]), jnp.quantile(X, jnp.array([0.25, 0.75]))


def _poisson_loglik(theta, X):
    mix = 1 / (1 + np.exp(-theta[0]))
    rates = np.exp(theta[1:])
    dens = mix * stats.poisson.pmf(X, rates[0]) + (1 - mix) * stats.poisson.pmf(X, rates[1])
    return np.sum(np.log(dens))


def test_user_model_matches_brute_force_maximum():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.poisson(2.0, 300), rng.poisson(9.0, 200)]).astype(np.float64)
    model = PoissonMixture()
    result = jaxem.fit(model, X, model.init(None, X), tol=1e-12, max_iter=2000)
    assert bool(result.converged)
    best = max(
        (
            optimize.minimize(
                lambda t: -_poisson_loglik(t, X),
                x0,
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
            )
            for x0 in ([0.0, 0.0, 2.0], [1.0, 0.5, 2.5], [-1.0, 1.0, 1.5])
        ),
        key=lambda r: -r.fun,
    )
    mix, rates = (np.asarray(a) for a in result.params)
    order = np.argsort(rates)
    brute_mix = 1 / (1 + np.exp(-best.x[0]))
    brute = np.array([brute_mix, 1 - brute_mix]), np.exp(best.x[1:])
    brute_order = np.argsort(brute[1])
    np.testing.assert_allclose(rates[order], brute[1][brute_order], rtol=1e-5)
    np.testing.assert_allclose(mix[order], brute[0][brute_order], rtol=1e-5)
    np.testing.assert_allclose(result.objective, -best.fun, rtol=1e-10)
    np.testing.assert_allclose(result.objective, _poisson_loglik(best.x, X), rtol=1e-10)


def test_prior_needs_log_prior():
    with pytest.raises(TypeError, match="log_prior"):
        jaxem.fit(PoissonMixture(), np.ones(5), (jnp.ones(2) / 2, jnp.ones(2)), prior=1.0)


def test_a_model_without_validate_runs_through_every_driver():
    """PoissonMixture has only e_step, m_step and init: fit_batch (1-D datasets, a batch
    (B, N)) and fit_restarts run it, and each member equals its own fit."""
    rng = np.random.default_rng(4)
    X = np.stack([np.concatenate([rng.poisson(2.0, 60), rng.poisson(8.0, 40)]) for _ in range(3)])
    X = X.astype(np.float64)
    model = PoissonMixture()
    batch = jaxem.fit_batch(model, jax.random.key(0), X, tol=1e-10, max_iter=400, lanes=2)
    for b in range(3):
        alone = jaxem.fit(model, X[b], model.init(None, X[b]), tol=1e-10, max_iter=400)
        assert int(batch.n_iter[b]) == int(alone.n_iter)
        for x, y in zip(batch.params, alone.params, strict=True):
            np.testing.assert_allclose(x[b], y, rtol=1e-10)
    restarts = jaxem.fit_restarts(model, jax.random.key(1), X[0], n_init=2, tol=1e-10, max_iter=400)
    alone = jaxem.fit(model, X[0], model.init(None, X[0]), tol=1e-10, max_iter=400)
    np.testing.assert_allclose(restarts.objective, alone.objective, rtol=1e-12)


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_a_loop_of_ones_own_over_the_public_step_is_fit(faithful, accelerate):
    """`jaxem.em_algorithm`'s step in a Python loop gives `fit`'s history and parameters: bit
    for bit for plain EM, to rounding (1e-12) with SQUAREM, whose loop body XLA arranges
    differently from a step compiled alone; `jax.lax.scan` over it runs a fixed number."""
    model = jaxem.GaussianMixture(3, "full")
    start = model.init(jax.random.key(0), faithful)
    fitted = jaxem.fit(model, faithful, start, tol=1e-8, max_iter=200, accelerate=accelerate)
    algorithm = jaxem.em_algorithm(model, faithful, start, accelerate=accelerate)
    state, history = algorithm.init(start), []
    while state.n_evals == 0 or (state.n_iter < 200 and not algorithm.converged(state, 1e-8)):
        state = algorithm.step(state)
        if int(state.n_iter) > len(history):
            history.append(float(state.objective))
    assert int(state.n_iter) == int(fitted.n_iter) and int(state.n_evals) == int(fitted.n_evals)
    expected = np.asarray(fitted.history)[: int(fitted.n_iter)]
    leaves = zip(jax.tree.leaves(state.params), jax.tree.leaves(fitted.params), strict=True)
    if accelerate is None:
        np.testing.assert_array_equal(history, expected)
        for a, b in leaves:
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(history, expected, rtol=1e-12)
        for a, b in leaves:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # a fixed number of iterations by lax.scan: fit with tol=0
    n = 5
    # (plain EM's first step evaluates the start: one more)
    scanned, objectives = _scan(algorithm, start, n + (accelerate is None))
    fixed = jaxem.fit(model, faithful, start, tol=0, max_iter=n, accelerate=accelerate)
    np.testing.assert_allclose(objectives[-n:], fixed.history, rtol=1e-12)
    assert int(scanned.n_iter) == n


def test_a_loop_started_from_statistics_is_the_fit_from_their_m_step(faithful):
    """`jaxem.algorithm.from_statistics`: EM begun with the M-step from a partition's
    statistics (the parameters given only for their layout) is `fit` from that M-step's
    parameters: the same iterations and history (1e-12: the M-step compiled inside the loop
    rounds as XLA arranges it there), the same parameters; the statistics count as an
    evaluation. Statistics laid out otherwise are refused by name."""
    model = jaxem.GaussianMixture(3, "full")
    labels = (faithful[:, 1] > 60).astype(int) + (faithful[:, 1] > 85)
    stats = model.stats(faithful, np.eye(3)[labels])
    fitted = jaxem.fit(model, faithful, model.m_step(stats), tol=1e-8, max_iter=200)
    placeholder = jax.tree.map(jnp.zeros_like, model.m_step(stats))
    weights, tol = jnp.ones(len(faithful)), jnp.asarray(1e-8)
    run = jax.jit(partial(jaxem.em.run, model, max_iter=200))
    got = run(faithful, placeholder, None, weights, tol, stats=stats)
    assert int(got.n_iter) == int(fitted.n_iter) and int(got.n_evals) == int(fitted.n_evals) + 1
    n = int(fitted.n_iter)
    np.testing.assert_allclose(got.history[:n], fitted.history[:n], rtol=1e-12)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(fitted.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    wrong = stats._replace(counts=stats.counts[:2])
    with pytest.raises(TypeError, match="laid out as the E-step's statistics"):
        jaxem.em.run(model, faithful, placeholder, None, weights, tol, 200, stats=wrong)


def _scan(algorithm, start, length):
    def one(state, _):
        state = algorithm.step(state)
        return state, state.objective

    return jax.lax.scan(one, algorithm.init(start), length=length)


def test_a_fit_traces_the_e_step_once(blobs):
    """Compiling a fit traces the model's E-step once: the start's state takes its shapes from
    the same trace as the loop's E-steps (twice before: the E-step's Python ran for the
    shapes, then again for the loop), with plain EM and with SQUAREM (three E-steps a step)."""
    calls = []

    @dataclasses.dataclass(frozen=True)
    class Counted(jaxem.GaussianMixture):
        def e_step(self, params, X, weights):
            calls.append(1)
            return super().e_step(params, X, weights)

    model = Counted(2, "diag")
    start = model.init(jax.random.key(3), blobs)
    for accelerate in (None, "squarem"):
        calls.clear()
        fitted = jaxem.fit(model, blobs, start, max_iter=7, accelerate=accelerate)
        assert len(calls) == 1, (accelerate, len(calls))
        plain = jaxem.GaussianMixture(2, "diag")
        want = jaxem.fit(plain, blobs, start, max_iter=7, accelerate=accelerate)
        np.testing.assert_allclose(fitted.history, want.history, rtol=1e-12)


def test_steps_called_by_hand_are_one_compiled_program_each(faithful):
    """A user's own loop over the E- and M-steps runs compiled programs, not operation after
    operation (each compiled on its own, an iterative M-step's loops on every call), with the
    closed forms' values: an M-step from a partition gives its proportions, means and
    scatter matrices, the E-step the log-likelihood SciPy's densities give, and the prior's
    density SciPy's."""
    model = jaxem.GaussianMixture(3, "VVV", reg_covar=0.0)
    labels = np.arange(len(faithful)) % 3
    resp, ones = np.eye(3)[labels], np.ones(len(faithful))

    def by_hand():
        params = model.m_step(model.stats(faithful, resp))
        return params, model.e_step(params, faithful, ones)[1]

    with lowerings() as first:
        params, loglik = by_hand()
    with lowerings() as again:
        by_hand()
    assert len(first) <= 3 and not again
    members = [faithful[labels == k] for k in range(3)]
    np.testing.assert_allclose(params.weights, [len(m) / len(faithful) for m in members])
    np.testing.assert_allclose(params.means, [m.mean(axis=0) for m in members], rtol=1e-12)
    scatter = [np.cov(m.T, bias=True) for m in members]
    np.testing.assert_allclose(params.covariances, scatter, rtol=1e-10)
    densities = [
        w * stats.multivariate_normal(mu, cov).pdf(faithful)
        for w, mu, cov in zip(params.weights, params.means, params.covariances, strict=True)
    ]
    np.testing.assert_allclose(loglik, np.sum(np.log(np.sum(densities, axis=0))), rtol=1e-12)
    vev = jaxem.GaussianMixture(3, "VEV")  # an iterative M-step: its loops compile once
    m_step = partial(vev.m_step, vev.stats(faithful, resp))
    m_step()
    with lowerings() as iterative:
        m_step()
    assert not iterative
    # the prior's density by hand (a MAP objective): one program (28 operation by operation),
    # SciPy's Dirichlet, inverse Wishart and normal densities
    prior = jaxem.default_prior(model, faithful)
    with lowerings() as density:
        log_prior = model.log_prior(params, prior)
    assert len(density) <= 1
    pr = jax.tree.map(np.asarray, prior)
    want = stats.dirichlet.logpdf(params.weights, np.broadcast_to(pr.alpha, (3,)))
    for mu, cov in zip(params.means, params.covariances, strict=True):
        want += stats.invwishart.logpdf(cov, df=float(pr.dof), scale=pr.scale)
        want += stats.multivariate_normal.logpdf(mu, pr.mean, cov / pr.kappa)
    np.testing.assert_allclose(log_prior, want, rtol=1e-12)
