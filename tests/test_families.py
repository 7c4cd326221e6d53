"""Bernoulli, categorical and Poisson mixtures: EM against an independent NumPy EM (MLE and MAP,
1, 10 and 50 iterations), fit_batch against per-member fits, a brute-force maximum, degenerate
data, bad input, and a family written by a user."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from scipy import optimize, stats

import jaxem
from jaxem import families


def _bernoulli_data(rng, n=120):
    p = np.array([[0.1, 0.2, 0.8, 0.9, 0.5, 0.3], [0.7, 0.9, 0.2, 0.1, 0.5, 0.6]])
    z = rng.integers(0, 2, n)
    return (rng.uniform(size=(n, 6)) < p[z]).astype(float)


def _categorical_data(rng, n=150):
    cats = (2, 3, 4, 3)
    z = rng.integers(0, 2, n)
    columns = []
    for c in cats:
        probs = rng.dirichlet(np.ones(c), size=2)
        columns.append([rng.choice(c, p=probs[k]) for k in z])
    return np.array(columns, dtype=float).T, cats


def _poisson_data(rng, n=100):
    rates = np.array([[1.0, 4.0, 0.5], [6.0, 2.0, 3.0]])
    return rng.poisson(rates[rng.integers(0, 2, n)]).astype(float)


RNG = np.random.default_rng(7)
XC, CATS = _categorical_data(RNG)
CASES = {
    "bernoulli": (families.Bernoulli(), _bernoulli_data(RNG), 3),
    "categorical": (families.Categorical(CATS), XC, 2),
    "poisson": (families.Poisson(), _poisson_data(RNG), 2),
}


def _random_prior(name, model, X, rng):
    """A prior with uneven hyperparameters (all >= 1), to exercise every term of the MAP step."""
    k, d = model.n_components, X.shape[1]
    alpha = rng.uniform(1.0, 3.0, k)
    if name == "bernoulli":
        comp = families.BetaPrior(rng.uniform(1, 3, (k, d)), rng.uniform(1, 3, (k, d)))
    elif name == "categorical":
        comp = families.DirichletPrior(rng.uniform(1, 3, (k, d, max(CATS))))
    else:
        comp = families.GammaPrior(rng.uniform(1, 3, (k, d)), rng.uniform(0.5, 2, (k, d)))
    return jaxem.MixturePrior(alpha, comp)


# -- an independent EM in NumPy --------------------------------------------------------------


def _ref_log_densities(name, comp, X):
    """log p(x_n | k), (N, K), from scipy.stats / explicit indexing."""
    if name == "bernoulli":
        return stats.bernoulli.logpmf(X[:, None, :], comp[None]).sum(-1)
    if name == "poisson":
        return stats.poisson.logpmf(X[:, None, :], comp[None]).sum(-1)
    codes = X.astype(int)
    cols = np.arange(X.shape[1])
    return np.stack([np.log(comp[k][cols, codes]).sum(1) for k in range(comp.shape[0])], axis=1)


def _ref_em_step(name, weights_, comp, X, w, prior):
    log_joint = np.log(weights_) + _ref_log_densities(name, comp, X)
    log_px = np.logaddexp.reduce(log_joint, axis=1)
    r = np.exp(log_joint - log_px[:, None]) * w[:, None]
    nk = r.sum(0)
    eps = 10 * np.finfo(np.float64).eps
    if prior is None:
        new_w = nk / nk.sum()
    else:
        alpha = np.asarray(prior.alpha)
        new_w = (nk + alpha - 1) / (nk.sum() + alpha.sum() - len(nk))
    if name == "categorical":
        c = max(CATS)
        valid = np.arange(c) < np.array(CATS)[:, None]
        onehot = X.astype(int)[:, :, None] == np.arange(c)
        s = np.einsum("nk,ndc->kdc", r, onehot)
        if prior is None:
            new = s / nk[:, None, None]
        else:
            beta = np.where(valid, np.asarray(prior.components.concentration), 1.0)
            new = (s + beta - 1) / (nk[:, None, None] + (beta - 1).sum(-1, keepdims=True))
        new = np.where(valid, np.maximum(new, eps), 0.0)
        new = new / new.sum(-1, keepdims=True)
    else:
        s = r.T @ X
        if prior is None:
            new = s / nk[:, None]
        elif name == "bernoulli":
            a, b = (np.asarray(v) for v in prior.components)
            new = (s + a - 1) / (nk[:, None] + a + b - 2)
        else:
            shape, rate = (np.asarray(v) for v in prior.components)
            new = (s + shape - 1) / (nk[:, None] + rate)
        new = np.clip(new, eps, 1 - eps) if name == "bernoulli" else np.maximum(new, eps)
    return new_w, new


@pytest.mark.parametrize("use_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("name", list(CASES))
def test_em_equals_numpy_reference(name, use_prior):
    """From the same start, jaxem's parameters after 1, 10 and 50 iterations (one compiled
    em_step; fit with tol=0 for the 50th) equal a NumPy EM to 1e-10 relative, and its
    objectives equal the reference's log-likelihood (plus the log prior from scipy.stats)."""
    family, X, k = CASES[name]
    model = jaxem.Mixture(family, k)
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, len(X))
    prior = _random_prior(name, model, X, rng) if use_prior else None
    start = model.init(jax.random.key(3), X, w)
    params = start
    ref_w, ref_c = (np.asarray(a) for a in (start.weights, start.components[0]))
    for i in range(1, 51):
        params, _ = jaxem.em_step(model, params, X, prior=prior, weights=w)
        ref_w, ref_c = _ref_em_step(name, ref_w, ref_c, X, w, prior)
        if i in (1, 10, 50):
            assert rel_err(params.weights, ref_w) < 1e-10
            assert rel_err(params.components[0], ref_c) < 1e-10
    # the objective returned is at the input parameters: compare the last one
    at_params = float(jaxem.em_step(model, params, X, prior=prior, weights=w)[1])
    assert abs(at_params - _objective_at(name, params, X, w, prior)) < 1e-10 * abs(at_params)
    fitted = jaxem.fit(model, X, start, prior=prior, weights=w, tol=0, max_iter=50)
    assert rel_err(fitted.params.components[0], ref_c) < 1e-10
    assert rel_err(fitted.params.weights, ref_w) < 1e-10
    assert np.all(np.diff(np.asarray(fitted.history)) > -1e-9 * abs(float(fitted.objective)))


def _ref_log_prior(name, weights, comp, prior):
    """log p(theta) from scipy.stats' densities."""
    lp = stats.dirichlet.logpdf(weights, prior.alpha)
    if name == "bernoulli":
        a, b = prior.components
        return lp + stats.beta.logpdf(comp, a, b).sum()
    if name == "poisson":
        shape, rate = prior.components
        return lp + stats.gamma.logpdf(comp, shape, scale=1 / np.asarray(rate)).sum()
    beta = np.asarray(prior.components.concentration)
    for k in range(comp.shape[0]):
        for d, c in enumerate(CATS):
            lp += stats.dirichlet.logpdf(comp[k, d, :c], beta[k, d, :c])
    return lp


def _objective_at(name, params, X, w, prior):
    weights, comp = np.asarray(params.weights), np.asarray(params.components[0])
    log_joint = np.log(weights) + _ref_log_densities(name, comp, X)
    value = float(w @ np.logaddexp.reduce(log_joint, axis=1))
    if prior is not None:
        value += _ref_log_prior(name, weights, comp, prior)
    return value


# -- batches, brute force ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_fit_batch_of_ragged_datasets_equals_each_fit(name):
    family, X, k = CASES[name]
    model = jaxem.Mixture(family, k)
    data = [X[:70], X[40:]]
    Xb, w = jaxem.pad(data)
    key = jax.random.key(11)
    batch = jaxem.fit_batch(model, key, Xb, weights=w, tol=1e-8, max_iter=60, lanes=2)
    for b, (x, member_key) in enumerate(zip(data, jax.random.split(key, 2), strict=True)):
        single = jaxem.fit(model, x, model.init(member_key, x), tol=1e-8, max_iter=60)
        assert int(batch.n_iter[b]) == int(single.n_iter)
        np.testing.assert_allclose(batch.objective[b], single.objective, rtol=1e-10)
        for got, want in zip(
            jax.tree.leaves(batch.params), jax.tree.leaves(single.params), strict=True
        ):
            np.testing.assert_allclose(got[b], want, rtol=1e-9, atol=1e-12)


def test_em_fixed_point_is_the_brute_force_maximum():
    """A two-component Poisson mixture of two columns on 40 counts: EM from several starts
    reaches the largest log-likelihood that Nelder-Mead finds over unconstrained coordinates."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.poisson([1.0, 5.0], (25, 2)), rng.poisson([6.0, 1.0], (15, 2))])
    X = X.astype(float)
    model = jaxem.Mixture(families.Poisson(), 2)
    em = jaxem.fit_restarts(model, jax.random.key(0), X, n_init=4, tol=1e-14, max_iter=3000)

    def negative_loglik(theta):
        w = 1 / (1 + np.exp(-theta[0]))
        rates = np.exp(theta[1:]).reshape(2, 2)
        dens = stats.poisson.logpmf(X[:, None, :], rates[None]).sum(-1)
        return -np.logaddexp(np.log(w) + dens[:, 0], np.log1p(-w) + dens[:, 1]).sum()

    best = min(
        (
            optimize.minimize(
                negative_loglik,
                x0,
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000, "maxfev": 40000},
            )
            for x0 in (
                [0.0, 0.0, 1.5, 1.5, 0.0],
                [0.5, 0.2, 1.0, 1.8, 0.3],
                [-0.5, 1.7, 0.1, 0.0, 1.6],
            )
        ),
        key=lambda r: r.fun,
    )
    np.testing.assert_allclose(float(em.objective), -best.fun, rtol=1e-9)
    rates = np.exp(best.x[1:]).reshape(2, 2)
    order = np.argsort(np.asarray(em.params.components.rates)[:, 0])
    np.testing.assert_allclose(
        np.asarray(em.params.components.rates)[order], rates[np.argsort(rates[:, 0])], rtol=1e-4
    )


# -- degenerate data -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_degenerate_data_stays_finite_and_inside(name, dtype):
    """A constant column, a component that loses every point (a start far from the data), a
    category never seen: no NaN; under default_prior no probability is 0 or 1 and no rate 0;
    under MLE they stay within the floors."""
    family, X, _ = CASES[name]
    X = X[:40].copy()
    X[:, 0] = 0.0  # constant column (category 0 only: the others never seen)
    model = jaxem.Mixture(family, 3)
    X = X.astype(dtype)
    start = model.init(jax.random.key(0), X)
    # component 2 gets a vanishing weight: it loses every point in the first E-step
    start = start._replace(weights=jnp.asarray([0.5, 0.5, 1e-30], dtype))
    eps = 10 * np.finfo(dtype).eps
    for prior in (None, jaxem.default_prior(model, X)):
        result = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=20)
        leaves = [np.asarray(a) for a in jax.tree.leaves(result.params)]
        assert all(np.all(np.isfinite(a)) for a in leaves)
        assert np.isfinite(float(result.objective))
        comp = np.asarray(result.params.components[0])
        if name == "poisson":
            assert np.all(comp >= eps * (1 - 1e-6))
        elif name == "bernoulli":
            assert np.all((comp >= eps * (1 - 1e-6)) & (comp <= 1 - eps * (1 - 1e-6)))
        else:
            valid = np.arange(comp.shape[-1]) < np.array(CATS)[:, None]
            assert np.all(comp[:, valid] > 0) and np.all(comp[:, valid] < 1)
        if prior is not None:
            # the default prior keeps the constant column's estimate well inside
            inside = comp[:, 0] if name != "categorical" else comp[:, 0, 1]
            assert np.all(inside > 1e-5)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, X, match",
    [
        ("bernoulli", [[0.0, 2.0], [1.0, 0.0]], r"0s and 1s; X\[0, 1\] = 2$"),
        ("bernoulli", [[0.0, 0.5], [1.0, 0.0]], "0s and 1s"),
        ("categorical", [[0.0, 1.5], [1.0, 0.0]], "integers"),
        ("categorical", [[0.0, 3.0], [1.0, 0.0]], r"category codes in \[0, n_categories\)"),
        ("categorical", [[-1.0, 0.0], [1.0, 0.0]], "category codes"),
        ("poisson", [[0.0, -1.0], [1.0, 0.0]], "non-negative integers"),
        ("poisson", [[0.0, 1.5], [1.0, 0.0]], "non-negative integers"),
    ],
)
def test_bad_data(name, X, match):
    family = {"bernoulli": families.Bernoulli(), "categorical": families.Categorical(3)}.get(
        name, families.Poisson()
    )
    model = jaxem.Mixture(family, 2)
    with pytest.raises(ValueError, match=match):
        model.init(jax.random.key(0), np.asarray(X))


@pytest.mark.parametrize(
    "family, prior, match",
    [
        (families.Bernoulli(), families.BetaPrior(0.0, 2.0), r"prior.components.a must be > 0"),
        (families.Bernoulli(), families.BetaPrior(2.0, 0.5), r"prior.components.b must be >= 1"),
        (families.Categorical(2), families.DirichletPrior(np.array([2.0, -1.0])), "> 0"),
        (families.Categorical(2), families.DirichletPrior(np.array([2.0, 0.5])), ">= 1"),
        (families.Poisson(), families.GammaPrior(0.5, 1.0), r"prior.components.shape must be >= 1"),
        (families.Poisson(), families.GammaPrior(2.0, 0.0), r"prior.components.rate must be > 0"),
        (families.Poisson(), families.GammaPrior(np.ones(3), 1.0), "must be a scalar or of shape"),
        (families.Poisson(), families.BetaPrior(2.0, 2.0), "must be a GammaPrior"),
    ],
)
def test_bad_prior(family, prior, match):
    X = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    model = jaxem.Mixture(family, 2)
    start = model.init(jax.random.key(0), X)
    with pytest.raises((ValueError, TypeError), match=match):
        jaxem.fit(model, X, start, prior=jaxem.MixturePrior(1.0, prior))


def test_bad_family_configuration_and_params():
    with pytest.raises(ValueError, match="n_categories"):
        families.Categorical(0)
    with pytest.raises(ValueError, match="n_categories gives 3 columns"):
        jaxem.Mixture(families.Categorical((2, 2, 2)), 2).init(jax.random.key(0), np.zeros((4, 2)))
    model = jaxem.Mixture(families.Bernoulli(), 2)
    X = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    params = jaxem.MixtureParams(jnp.array([0.5, 0.5]), families.BernoulliParams(jnp.ones((2, 2))))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        jaxem.fit(model, X, params)
    with pytest.raises(TypeError, match="BernoulliParams"):
        jaxem.fit(model, X, jaxem.MixtureParams(jnp.array([0.5, 0.5]), jnp.ones((2, 2))))


@pytest.mark.parametrize("name", list(CASES))
def test_samples_follow_the_mixture(name):
    """40,000 draws: each column's category frequencies (mean for counts) equal the mixture's
    marginal sum_k pi_k p_k within five standard errors."""
    family, X, k = CASES[name]
    model = jaxem.Mixture(family, k)
    params = jaxem.fit(model, X, model.init(jax.random.key(0), X), max_iter=20).params
    draws, labels = model.sample(jax.random.key(1), params, 40_000)
    draws, labels = np.asarray(draws), np.asarray(labels)
    w, comp = np.asarray(params.weights), np.asarray(params.components[0])
    np.testing.assert_allclose(np.bincount(labels, minlength=k) / len(labels), w, atol=0.01)
    if name == "categorical":
        for d, c in enumerate(CATS):
            frequencies = np.bincount(draws[:, d].astype(int), minlength=c) / len(draws)
            expected = w @ comp[:, d, :c]
            se = np.sqrt(expected * (1 - expected) / len(draws))
            assert np.all(np.abs(frequencies - expected) < 5 * se + 1e-12)
    else:
        expected = w @ comp
        if name == "poisson":  # the mixture's variance: E[var] + var[E]
            variance = w @ comp + w @ comp**2 - expected**2
        else:
            variance = expected * (1 - expected)
        se = np.sqrt(variance / len(draws))
        assert np.all(np.abs(draws.mean(0) - expected) < 5 * se)
    assert model.sample(jax.random.key(1), params, 3)[0].shape == (3, X.shape[1])
    # BIC and AIC count K - 1 weights and the family's free parameters
    free = {"bernoulli": k * 6, "poisson": k * 3, "categorical": k * sum(c - 1 for c in CATS)}
    p = k - 1 + free[name]
    loglik = _objective_at(name, params, X, np.ones(len(X)), None)
    np.testing.assert_allclose(jaxem.bic(model, params, X), -2 * loglik + p * np.log(len(X)))
    np.testing.assert_allclose(jaxem.aic(model, params, X), -2 * loglik + 2 * p)


UNCONSTRAINED = {
    "gaussian-full": jaxem.families.Gaussian("full"),
    "gaussian-tied": jaxem.families.Gaussian("tied"),
    "gaussian-diag": jaxem.families.Gaussian("diag"),
    "gaussian-spherical": jaxem.families.Gaussian("spherical"),
    "bernoulli": jaxem.families.Bernoulli(),
    "poisson": jaxem.families.Poisson(),
    "categorical": jaxem.families.Categorical((2, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(UNCONSTRAINED))
def test_unconstrained_coordinates_round_trip_and_stay_valid(name):
    """Each family's unconstrained coordinates (where an extrapolation may move freely): valid
    parameters -> coordinates -> the same parameters (1e-12), and random coordinates give
    parameters that pass the family's own checks (PD covariances, probabilities on their
    simplex, positive rates), inside a mixture with its softmax weights."""
    model = jaxem.Mixture(UNCONSTRAINED[name], 3)
    rng = np.random.default_rng(0)
    X = {
        "bernoulli": (rng.random((40, 3)) < 0.5) * 1.0,
        "poisson": rng.poisson(3.0, (40, 3)) * 1.0,
        "categorical": np.stack([rng.integers(0, c, 40) for c in (2, 3, 4)], 1) * 1.0,
    }.get(name, rng.normal(size=(40, 3)))
    params = model.init(jax.random.key(0), X)
    back = model.constrain(model.unconstrain(params))
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    coordinates = model.unconstrain(params)
    moved = jax.tree.map(lambda a: a + rng.normal(size=a.shape) * 3.0, coordinates)
    model.check_params(model.constrain(moved), 3, X.dtype)  # raises if invalid
