"""Standard errors (`jaxem.standard_errors`) against references computed in the test: central
finite differences of log-likelihoods written here in NumPy/SciPy, in coordinates chosen here
(natural entries, or for EVE and EEV angles and log shapes), mapped to the parameters' covariance
by the delta method. That covariance does not depend on the chart at a maximum, so jaxem's and
the test's must agree. Then the other estimators (Louis, Oakes, SEM, the sandwich) against the
observed information, the charts of the fourteen covariance structures, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lowerings
from scipy import stats
from scipy.special import logsumexp

import jaxem
from jaxem.families import Bernoulli, Categorical, Gaussian, GaussianParams, Poisson
from jaxem.families.gaussian import structure

FD_RTOL = 1e-5


def fd_hessian(f, theta, steps):
    """Central second differences of ``f`` at ``theta`` ``(P,)``."""
    p = theta.size
    h = np.zeros((p, p))
    for i in range(p):
        for j in range(i, p):
            ei, ej = np.eye(p)[i] * steps[i], np.eye(p)[j] * steps[j]
            value = (
                f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)
            ) / (4 * steps[i] * steps[j])
            h[i, j] = h[j, i] = value
    return h


def fd_jacobian(g, theta, steps):
    cols = [
        (g(theta + s * e) - g(theta - s * e)) / (2 * s)
        for s, e in zip(steps, np.eye(theta.size), strict=True)
    ]
    return np.stack(cols, axis=1)


def reference_covariance(loglik, to_params, theta):
    """``J (-H)^{-1} J^T`` in the test's coordinates ``theta`` (``to_params(theta)`` the flat
    parameters in jaxem's order)."""
    steps = 1e-4 * np.maximum(np.abs(theta), 0.1)
    hessian = fd_hessian(lambda t: loglik(to_params(t)), theta, steps)
    jac = fd_jacobian(to_params, theta, steps)
    return jac @ np.linalg.inv(-hessian) @ jac.T


def assert_covariance_close(actual, expected, rtol=FD_RTOL):
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)
    # and entry by entry where it is not tiny
    np.testing.assert_allclose(np.diag(actual), np.diag(expected), rtol=10 * rtol)


def converged_fit(model, X, key=0, **kwargs):
    start = model.init(
        jax.random.key(key), X, **({"weights": kwargs["weights"]} if "weights" in kwargs else {})
    )
    result = jaxem.fit(model, X, start, tol=1e-13, max_iter=5000, **kwargs)
    assert bool(result.converged)
    return result


def flat(params):
    return np.asarray(jax.flatten_util.ravel_pytree(params)[0])


# -- data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(1)
    a = rng.multivariate_normal([0, 0], [[1.0, 0.5], [0.5, 1.5]], 90)
    b = rng.multivariate_normal([3, 1], [[0.6, -0.2], [-0.2, 0.4]], 60)
    return np.concatenate([a, b])


def gaussian_mixture_loglik(weights, means, covs, X):
    comps = [
        np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
        for w, m, c in zip(weights, means, covs, strict=True)
    ]
    return float(np.sum(logsumexp(np.stack(comps), axis=0)))


def vvv_from(theta, k, d):
    """Weights (first K - 1), means, then each covariance's upper triangle: the natural entries."""
    w = np.append(theta[: k - 1], 1 - np.sum(theta[: k - 1]))
    means = theta[k - 1 : k - 1 + k * d].reshape(k, d)
    tri = theta[k - 1 + k * d :].reshape(k, -1)
    rows, cols = np.triu_indices(d)
    covs = np.zeros((k, d, d))
    covs[:, rows, cols] = tri
    covs[:, cols, rows] = tri
    return w, means, covs


def vvv_theta(params, d):
    """The test's coordinates of a VVV mixture's parameters (see `vvv_from`)."""
    rows, cols = np.triu_indices(d)
    covariances = np.asarray(params.components.covariances)[:, rows, cols]
    return np.concatenate(
        [np.asarray(params.weights[:-1]), np.ravel(params.components.means), covariances.ravel()]
    )


def vvv_flat(theta, k, d):
    """The parameters of the test's coordinates, flat in jaxem's order."""
    w, m, c = vvv_from(theta, k, d)
    return np.concatenate([w, m.ravel(), c.ravel()])


def vvv_covariances(X, missing, log_density):
    """jaxem's covariance of a fitted VVV mixture's entries (two components), and the reference
    from ``log_density(weights, means, covariances)``, the test's log-likelihood of ``X``."""
    k, d = 2, X.shape[1]
    model = jaxem.Mixture(Gaussian("VVV", missing=missing), k)
    result = converged_fit(model, X)
    se = jaxem.standard_errors(model, result, X)

    def loglik(fp):
        w, m = fp[:k], fp[k : k + k * d].reshape(k, d)
        return log_density(w, m, fp[k + k * d :].reshape(k, d, d))

    theta = vvv_theta(result.params, d)
    return se, reference_covariance(loglik, lambda t: vvv_flat(t, k, d), theta)


def test_gaussian_full_matches_finite_differences_of_scipys_density(blobs):
    k, d = 2, 2
    se, reference = vvv_covariances(
        blobs, False, lambda w, m, c: gaussian_mixture_loglik(w, m, c, blobs)
    )
    assert_covariance_close(se.covariance, reference)
    assert se.names[0] == "weights[0]" and se.names[-1] == "components.covariances[1, 1, 1]"
    # standard errors shaped like the parameters; a weight's from the covariance's diagonal
    assert se.standard_errors.components.covariances.shape == (k, d, d)
    np.testing.assert_allclose(se.standard_errors.weights[0], np.sqrt(se.covariance[0, 0]))


def angle_chart_from(theta, k, equal_orientation):
    """EVE (one angle, a log shape per component) or EEV (one log shape, an angle per
    component) at D = 2, with one log volume: weights, means, covariances."""
    w = np.append(theta[: k - 1], 1 - np.sum(theta[: k - 1]))
    means = theta[k - 1 : 3 * k - 1].reshape(k, 2)
    rest = theta[3 * k - 1 :]
    log_volume = rest[0]
    if equal_orientation:
        angles = np.full(k, rest[1])
        shapes = rest[2:]
    else:
        shapes = np.full(k, rest[1])
        angles = rest[2:]
    covs = []
    for a, s in zip(angles, shapes, strict=True):
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        covs.append(np.exp(log_volume) * r @ np.diag([np.exp(s), np.exp(-s)]) @ r.T)
    return w, means, np.array(covs)


@pytest.mark.parametrize("name", ["EVE", "EEV"])
def test_structures_with_an_orientation_match_finite_differences(blobs, name):
    k = 2
    model = jaxem.Mixture(Gaussian(name), k)
    result = converged_fit(model, blobs)
    se = jaxem.standard_errors(model, result, blobs)
    p = result.params
    covs = np.asarray(p.components.covariances)
    values, vectors = np.linalg.eigh(covs)
    log_volume = np.mean(np.log(values))
    angles = np.arctan2(vectors[:, 1, 1], vectors[:, 0, 1])  # of the larger eigenvector
    equal = name == "EVE"
    if equal:  # one orientation: each shape along the first component's axes
        r1 = np.array([np.cos(angles[0]), np.sin(angles[0])])
        r2 = np.array([-r1[1], r1[0]])
        along = np.einsum("d,kde,e->k", r1, covs, r1), np.einsum("d,kde,e->k", r2, covs, r2)
        shapes = 0.5 * (np.log(along[0]) - np.log(along[1]))
        geometry = [log_volume, angles[0], *shapes]
    else:
        shapes = 0.5 * (np.log(values[:, 1]) - np.log(values[:, 0]))
        geometry = [log_volume, shapes[0], *angles]
    theta = np.concatenate([np.asarray(p.weights[:-1]), np.ravel(p.components.means), geometry])
    w, m, c = angle_chart_from(theta, k, equal)
    np.testing.assert_allclose(c, covs, atol=1e-8)  # the test's chart passes through the fit

    def to_params(t):
        w, m, c = angle_chart_from(t, k, equal)
        return np.concatenate([w, m.ravel(), c.ravel()])

    def loglik(fp):
        return gaussian_mixture_loglik(
            fp[:k], fp[k : 3 * k].reshape(k, 2), fp[3 * k :].reshape(k, 2, 2), blobs
        )

    assert_covariance_close(se.covariance, reference_covariance(loglik, to_params, theta))


def simple_to_params(theta, k, shape):
    """Weights (first K - 1) then entries as they are."""
    return np.concatenate([theta[: k - 1], [1 - np.sum(theta[: k - 1])], theta[k - 1 :]])


def count_data():
    rng = np.random.default_rng(2)
    parts = [rng.poisson([2.0, 7.0], (80, 2)), rng.poisson([6.0, 1.5], (70, 2))]
    return np.concatenate(parts).astype(float)


def binary_data():
    rng = np.random.default_rng(3)
    parts = [
        rng.random((120, 4)) < [0.8, 0.7, 0.2, 0.3],
        rng.random((100, 4)) < [0.2, 0.3, 0.7, 0.9],
    ]
    return np.concatenate(parts).astype(float)


def poisson_log_pmf(rates, X):
    return stats.poisson(rates).logpmf(X).sum(1)


def bernoulli_log_pmf(probs, X):
    return (X * np.log(probs) + (1 - X) * np.log1p(-probs)).sum(1)


@pytest.mark.parametrize(
    "family, field, data, log_pmf",
    [
        (Poisson(), "rates", count_data, poisson_log_pmf),
        (Bernoulli(), "probs", binary_data, bernoulli_log_pmf),
    ],
)
def test_entrywise_families_match_finite_differences(family, field, data, log_pmf):
    """Families whose parameters are free entries (rates, probabilities), with SciPy's or the
    textbook's log mass function."""
    X, k = data(), 2
    model = jaxem.Mixture(family, k)
    result = converged_fit(model, X)
    se = jaxem.standard_errors(model, result, X)
    entries = np.asarray(getattr(result.params.components, field))
    theta = np.concatenate([np.asarray(result.params.weights[:-1]), entries.ravel()])

    def loglik(fp):
        values = fp[k:].reshape(k, -1)
        comps = [np.log(fp[j]) + log_pmf(values[j], X) for j in range(k)]
        return float(np.sum(logsumexp(np.stack(comps), axis=0)))

    reference = reference_covariance(loglik, lambda t: simple_to_params(t, k, None), theta)
    assert_covariance_close(se.covariance, reference)


def test_categorical_matches_finite_differences():
    rng = np.random.default_rng(4)
    a = np.stack(
        [rng.choice(3, 150, p=q) for q in ([0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1])], 1
    )
    b = np.stack(
        [rng.choice(3, 120, p=q) for q in ([0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6])], 1
    )
    X = np.concatenate([a, b]).astype(float)
    k, d, c = 2, 3, 3  # two columns would not identify two classes
    model = jaxem.Mixture(Categorical(3), k)
    result = converged_fit(model, X)
    se = jaxem.standard_errors(model, result, X)
    probs = np.asarray(result.params.components.probs)
    theta = np.concatenate([np.asarray(result.params.weights[:-1]), probs[..., :-1].ravel()])

    def to_params(t):
        q = t[k - 1 :].reshape(k, d, c - 1)
        full = np.concatenate([q, 1 - q.sum(-1, keepdims=True)], -1)
        return np.concatenate([t[: k - 1], [1 - np.sum(t[: k - 1])], full.ravel()])

    def loglik(fp):
        pr = fp[k:].reshape(k, d, c)
        cols = np.arange(d)
        comps = [np.log(fp[j]) + np.log(pr[j][cols, X.astype(int)]).sum(1) for j in range(k)]
        return float(np.sum(logsumexp(np.stack(comps), axis=0)))

    assert_covariance_close(se.covariance, reference_covariance(loglik, to_params, theta))


def test_missing_values_match_finite_differences_of_the_observed_marginals(blobs):
    rng = np.random.default_rng(5)
    X = blobs.copy()
    X[rng.random(X.shape) < 0.15] = np.nan
    X = X[~np.all(np.isnan(X), axis=1)]
    patterns = {}
    for row in X:
        patterns.setdefault(tuple(~np.isnan(row)), []).append(row)

    def observed_loglik(w, m, c):  # the density of the observed entries, pattern by pattern
        total = 0.0
        for pattern, rows in patterns.items():
            o = np.array(pattern)
            x = np.array(rows)[:, o]
            comps = [
                np.log(w[j]) + stats.multivariate_normal(m[j][o], c[j][np.ix_(o, o)]).logpdf(x)
                for j in range(len(w))
            ]
            total += np.sum(logsumexp(np.reshape(comps, (len(w), -1)), axis=0))
        return total

    se, reference = vvv_covariances(X, True, observed_loglik)
    assert_covariance_close(se.covariance, reference)


def test_gaussian_hmm_matches_finite_differences_of_the_forward_algorithm():
    rng = np.random.default_rng(6)
    states = [0]
    for _ in range(299):
        states.append(states[-1] if rng.random() < 0.9 else 1 - states[-1])
    states = np.array(states)
    X = (np.where(states == 0, -1.0, 1.5) + rng.normal(size=300) * np.where(states == 0, 0.7, 1.0))[
        :, None
    ]
    model = jaxem.HiddenMarkovModel(Gaussian("spherical"), 2)
    start = model.init(jax.random.key(0), X)
    result = jaxem.fit(model, X[None], start, tol=1e-13, max_iter=5000)
    se = jaxem.standard_errors(model, result, X[None])
    p = result.params
    initial = np.asarray(p.initial)  # one sequence: its first state is certain, held fixed
    theta = np.concatenate(
        [
            np.asarray(p.transitions[:, 0]),
            np.ravel(p.emissions.means),
            np.asarray(p.emissions.covariances),
        ]
    )

    def to_params(t):
        trans = np.stack([[t[0], 1 - t[0]], [t[1], 1 - t[1]]])
        return np.concatenate([initial, trans.ravel(), t[2:4], t[4:6]])

    def loglik(fp):
        initial, trans = fp[:2], fp[2:6].reshape(2, 2)
        means, var = fp[6:8], fp[8:10]
        log_b = stats.norm(means, np.sqrt(var)).logpdf(X)  # (T, 2)
        alpha = np.log(initial) + log_b[0]
        for t in range(1, len(X)):
            alpha = logsumexp(alpha[:, None] + np.log(trans), axis=0) + log_b[t]
        return float(logsumexp(alpha))

    assert_covariance_close(se.covariance, reference_covariance(loglik, to_params, theta))


# -- the other estimators against the observed information ---------------------------------


@pytest.fixture(scope="module")
def faithful_vvv(faithful):
    model = jaxem.Mixture(Gaussian("VVV"), 2)
    return model, converged_fit(model, faithful)


def test_louis_and_oakes_equal_the_observed_information(faithful, faithful_vvv):
    model, result = faithful_vvv
    observed = jaxem.standard_errors(model, result, faithful)
    for method in ("louis", "oakes"):
        other = jaxem.standard_errors(model, result, faithful, method=method)
        np.testing.assert_allclose(
            other.information,
            observed.information,
            rtol=1e-8,
            atol=1e-8 * np.abs(observed.information).max(),
        )


def test_sem_equals_the_observed_information_and_reports_em_s_rate(faithful, faithful_vvv):
    model, result = faithful_vvv
    observed = jaxem.standard_errors(model, result, faithful)
    sem = jaxem.standard_errors(model, result, faithful, method="sem")
    np.testing.assert_allclose(flat(sem.standard_errors), flat(observed.standard_errors), rtol=1e-4)
    # the rate is the largest eigenvalue of I_c^{-1} I_m, the fraction of missing information
    complete = np.asarray(
        jaxem.information.complete(
            model,
            result.params,
            model.prepare(jnp.asarray(faithful), jnp.ones(len(faithful))),
            jnp.ones(len(faithful)),
            None,
            observed.information.shape[0],
        )
    )
    fraction = np.linalg.eigvals(np.linalg.solve(complete, complete - observed.information))
    np.testing.assert_allclose(sem.em_rate, np.max(np.abs(fraction)), rtol=1e-4)


def test_map_information_is_the_log_posteriors(faithful):
    model = jaxem.Mixture(Gaussian("VVV"), 2)
    prior = jaxem.default_prior(model, faithful)
    result = converged_fit(model, faithful, prior=prior)
    observed = jaxem.standard_errors(model, result, faithful, prior=prior)
    with pytest.warns(UserWarning, match="not a maximum"):  # of the likelihood alone
        likelihood_only = jaxem.standard_errors(model, result.params, faithful)
    oakes = jaxem.standard_errors(model, result, faithful, prior=prior, method="oakes")
    np.testing.assert_allclose(
        oakes.information,
        observed.information,
        rtol=1e-8,
        atol=1e-8 * np.abs(observed.information).max(),
    )
    assert not np.allclose(observed.information, likelihood_only.information)


# -- charts ----------------------------------------------------------------------------------


MCLUST_NAMES = ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE"]
MCLUST_NAMES += ["VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"]


@pytest.mark.parametrize("name", MCLUST_NAMES)
def test_every_structure_s_chart_is_minimal_and_stays_in_the_model(name):
    k, d = 3, 3
    rng = np.random.default_rng(7)
    s = structure.of(name)
    model = jaxem.Mixture(Gaussian(name), k)
    counts = jnp.asarray([40.0, 40.0, 40.0])

    @jax.jit
    def from_scatters(per_component, start):  # the M-step, (K, D, D) or (K, D) scatters
        return s.maximise_from(start, s.reduce(per_component), counts, 0.0, jnp.zeros((k, d)))

    @jax.jit
    def maximise(covariances, start):  # the M-step given these covariances as the scatters
        if s.coupled:
            per = jnp.broadcast_to(s.matrices(covariances, d), (k, d, d)) * counts[:, None, None]
        else:
            per = s.variances(covariances, k, d) * counts[:, None]
        return from_scatters(per, start)

    # a member of the model: the M-step from random scatters
    a = rng.normal(size=(k, d, d))
    scatters = (
        jnp.asarray(np.einsum("kij,klj->kil", a, a) + 0.5 * np.eye(d)) * counts[:, None, None]
    )
    if not s.coupled:
        scatters = jnp.diagonal(scatters, axis1=1, axis2=2)
    means = jnp.asarray(rng.normal(size=(k, d)))
    at = jaxem.MixtureParams(
        jnp.asarray([0.2, 0.3, 0.5]), GaussianParams(means, from_scatters(scatters, None))
    )
    p = model.n_parameters(d)
    zero = jnp.zeros((p,))
    chart = jax.jit(model.chart)
    np.testing.assert_allclose(flat(chart(at, zero)), flat(at), atol=1e-12)
    jac = jax.jit(jax.jacfwd(lambda c: jax.flatten_util.ravel_pytree(model.chart(at, c))[0]))(zero)
    jac = np.asarray(jac)
    assert np.linalg.matrix_rank(jac, tol=1e-8 * np.abs(jac).max()) == p
    # a point of the chart is a member of the model: the structure's maximum-likelihood
    # M-step, given that point's covariances as the scatters, gives them back (an iterative
    # one started there)
    moved = chart(at, jnp.asarray(1e-3 * rng.normal(size=p))).components.covariances
    back = maximise(moved, moved)
    # (exact to third order in the step: off the model by 1e-12, where a second-order slip
    # would be 1e-6)
    np.testing.assert_allclose(np.asarray(back), np.asarray(moved), rtol=1e-8, atol=1e-10)


# -- what the estimates cannot say, and bad input -------------------------------------------


def test_a_structural_zero_is_held_fixed_and_the_rest_is_finite():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(-2, 1, 100), rng.normal(2, 1, 100), rng.normal(6, 1, 100)])[
        :, None
    ]
    model = jaxem.HiddenMarkovModel(Gaussian("spherical"), 3)
    start = jaxem.HMMParams(
        jnp.array([1.0, 0.0, 0.0]),
        jnp.array([[0.99, 0.01, 0.0], [0.0, 0.99, 0.01], [0.0, 0.0, 1.0]]),
        model.init(jax.random.key(0), X).emissions._replace(
            means=jnp.array([[-2.0], [2.0], [6.0]])
        ),
    )
    result = jaxem.fit(model, X[None], start, tol=1e-12, max_iter=2000)
    se = jaxem.standard_errors(model, result, X[None])
    transitions = se.standard_errors.transitions
    assert np.all(transitions[np.asarray(result.params.transitions) == 0] == 0)
    assert np.all(np.isfinite(flat(se.standard_errors)))
    assert np.all(flat(se.standard_errors.emissions) > 0)


def test_an_empty_component_is_nan_and_the_rest_is_finite():
    """Two clusters fitted with three components, one started far away: its weight falls to
    EM's floor (held fixed: standard error 0), its mean and covariance are NaN (the data say
    nothing of them), the other components' standard errors are finite and positive."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    model = jaxem.GaussianMixture(3, "VVV")
    start = jaxem.GaussianMixtureParams(
        jnp.array([0.45, 0.45, 0.1]),
        jnp.array([[-3.0, -3.0], [3.0, 3.0], [50.0, 50.0]]),
        jnp.stack([jnp.eye(2)] * 3),
    )
    result = jaxem.fit(model, X, start, tol=1e-12, max_iter=500)
    assert float(result.params.weights[2]) < 1e-12
    se = jaxem.standard_errors(model, result, X).standard_errors
    assert (
        se.weights[2] == 0 and np.all(np.isnan(se.means[2])) and np.all(np.isnan(se.covariances[2]))
    )
    for part in (se.weights[:2], se.means[:2], se.covariances[:2]):
        assert np.all(np.isfinite(part)) and np.all(part > 0)


def test_a_fit_that_has_not_converged_warns(faithful):
    model = jaxem.Mixture(Gaussian("VVV"), 2)
    result = jaxem.fit(model, faithful, model.init(jax.random.key(0), faithful), max_iter=2)
    with pytest.warns(UserWarning, match="not converged"):
        jaxem.standard_errors(model, result, faithful)
    with pytest.warns(UserWarning, match="not a maximum"):
        jaxem.standard_errors(model, result.params, faithful)


def test_bad_input_names_the_argument(faithful, faithful_vvv):
    model, result = faithful_vvv
    with pytest.raises(ValueError, match="method must be one of"):
        jaxem.standard_errors(model, result, faithful, method="hessian")
    with pytest.raises(ValueError, match="level"):
        jaxem.standard_errors(model, result, faithful).interval(1.5)
    with pytest.raises(TypeError, match="chart"):
        jaxem.standard_errors(jaxem.KMeans(2), result.params, faithful)


def test_summary_lists_each_distinct_entry_once(faithful, faithful_vvv):
    model, result = faithful_vvv
    se = jaxem.standard_errors(model, result, faithful)
    text = se.summary()
    assert (
        "components.covariances[0, 0, 1]" in text and "components.covariances[0, 1, 0]" not in text
    )
    lower, upper = se.interval(0.95)
    np.testing.assert_allclose(
        upper.components.means - lower.components.means,
        2 * stats.norm.ppf(0.975) * se.standard_errors.components.means,
    )


def test_standard_errors_compile_programs_not_operations(faithful):
    """Standard errors compile a few programs (the data's preparation is one of them, the
    results are reshaped on the host), not one per operation (about 40 before: 0.6 s of a
    first call's 1.9 s). For a configuration no other test compiles; the errors shaped like
    the parameters, as `summary` reads them."""
    model = jaxem.GaussianMixture(2, "diag")
    params = jaxem.fit(model, faithful, model.deterministic_start(faithful), tol=1e-10).params
    with lowerings() as lowered:
        result = jaxem.standard_errors(model, params, faithful)
    assert len(lowered) <= 5, len(lowered)
    leaves = zip(jax.tree.leaves(result.standard_errors), jax.tree.leaves(params), strict=True)
    for se, value in leaves:
        assert se.shape == value.shape and se.dtype == value.dtype
    assert "means[1, 0]" in result.summary()


def test_oakes_and_sem_of_a_hidden_markov_model_equal_the_observed_information():
    rng = np.random.default_rng(9)
    states = np.repeat([0, 1, 0, 1, 1, 0], 40)
    X = (np.where(states == 0, -1.0, 1.5) + rng.normal(size=states.size))[None, :, None]
    model = jaxem.HiddenMarkovModel(Gaussian("spherical"), 2)
    start = model.init(jax.random.key(0), X[0])
    result = jaxem.fit(model, X, start, tol=1e-13, max_iter=5000)
    observed = jaxem.standard_errors(model, result, X)
    oakes = jaxem.standard_errors(model, result, X, method="oakes")
    scale = np.abs(observed.information).max()
    np.testing.assert_allclose(oakes.information, observed.information, atol=1e-8 * scale)
    sem = jaxem.standard_errors(model, result, X, method="sem")
    np.testing.assert_allclose(flat(sem.standard_errors), flat(observed.standard_errors), rtol=1e-4)


# -- coverage by simulation -----------------------------------------------------------------


def _coverage(model, truth, X):
    """Fits of the B data sets ``X`` from the truth (labels stay put), in one fit_batch call;
    their observed-information and sandwich standard errors (the information functions under
    vmap). Returns the Wald intervals' coverage of the truth per entry, the mean standard
    errors of both, and the estimates' standard deviation."""
    from jaxem import information

    b, n = X.shape[:2]
    p = model.n_parameters(X.shape[-1])
    starts = jax.tree.map(lambda a: jnp.broadcast_to(a, (b,) + a.shape), truth)
    fits = jaxem.fit_batch(
        model, jax.random.key(0), X, init_params=starts, tol=1e-10, max_iter=2000, lanes=1
    )
    assert np.all(np.asarray(fits.converged))

    def per_data_set(params, x, w):
        data = model.prepare(x, w)
        return (
            information.observed(model, params, data, w, None, p),
            information.chart_jacobian(model, params, p),
            information.scores(model, params, data, w, p),
        )

    weights = jnp.ones((b, n))
    info, jac, scores = map(
        np.asarray, jax.vmap(per_data_set)(fits.params, jnp.asarray(X), weights)
    )
    inverse = np.linalg.inv(info)
    observed = np.einsum("bmp,bpq,bmq->bm", jac, inverse, jac)
    middle = np.einsum("bup,buq->bpq", scores, scores)
    sandwich = np.einsum("bmp,bpq,bqr,brs,bms->bm", jac, inverse, middle, inverse, jac)
    estimates = np.asarray(jax.vmap(lambda q: jax.flatten_util.ravel_pytree(q)[0])(fits.params))
    covered = np.abs(estimates - flat(truth)) <= stats.norm.ppf(0.975) * np.sqrt(observed)
    return covered.mean(0), np.sqrt(observed).mean(0), np.sqrt(sandwich).mean(0), estimates.std(0)


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_wald_intervals_cover_the_truth(family):
    """1,000 data sets of 400 draws from a known two-component mixture: the 95 % intervals of
    the weights and the means (rates) cover the truth 93-97 % of the time (measured: Gaussian
    95.2 % for the weights, 95.6 and 94.6 % for the means; Poisson 94.6 %, 93.6 and 94.9 %);
    on this well-specified data the sandwich's standard errors equal the observed
    information's within Monte Carlo error, and both the estimates' spread."""
    rng = np.random.default_rng(0)
    b, n = 1000, 400
    if family == "gaussian":
        z = rng.random((b, n)) < 0.3
        X = np.where(z, rng.normal(-1.0, 1.0, (b, n)), rng.normal(2.0, np.sqrt(0.5), (b, n)))
        model = jaxem.Mixture(Gaussian("VVV"), 2)
        components = GaussianParams(jnp.array([[-1.0], [2.0]]), jnp.array([[[1.0]], [[0.5]]]))
        truth = jaxem.MixtureParams(jnp.array([0.3, 0.7]), components)
        located = slice(0, 4)  # the weights and the means
    else:
        z = rng.random((b, n)) < 0.4
        X = np.where(z, rng.poisson(2.0, (b, n)), rng.poisson(8.0, (b, n))).astype(float)
        model = jaxem.Mixture(Poisson(), 2)
        truth = jaxem.MixtureParams(
            jnp.array([0.4, 0.6]), jaxem.families.PoissonParams(jnp.array([[2.0], [8.0]]))
        )
        located = slice(0, 4)  # the weights and the rates
    coverage, observed, sandwich, spread = _coverage(model, truth, X[..., None])
    assert np.all((coverage[located] >= 0.93) & (coverage[located] <= 0.97)), coverage
    np.testing.assert_allclose(sandwich, observed, rtol=0.03)
    np.testing.assert_allclose(observed, spread, rtol=0.06)
