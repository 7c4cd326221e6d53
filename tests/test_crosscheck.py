"""EM against NumPyro: the objective is NumPyro's log joint, and EM-MAP is the mode an optax
optimiser finds on NumPyro's log density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, make_blobs, rel_err
from numpyro.infer import Predictive

import jaxem
from jaxem import crosscheck


def _standardised(X):
    return (X - X.mean(0)) / X.std(0)


@pytest.fixture(scope="module", params=["faithful", "blobs"])
def data(request):
    if request.param == "faithful":
        return _standardised(jaxem.load_faithful()[0]), 2
    return make_blobs(0), 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_map_is_numpyros_posterior_mode(data, covariance_type):
    X, k = data
    model = jaxem.GaussianMixture(k, covariance_type)
    prior = jaxem.default_prior(model, X)
    report = crosscheck.compare(model, X, prior, jax.random.key(0))
    print("\n", report, sep="")
    assert bool(report.em.converged)
    assert report.em_objective_diff < 1e-10
    assert report.max_param_diff < 1e-4
    assert report.objective_diff < 1e-8
    assert report.grad_at_em < 1e-6 * X.shape[0]
    # the optimiser reached the mode too (not just a point EM happens to be near)
    assert float(report.mode.grad_norm) < 1e-6 * X.shape[0]


def _discrete(name):
    rng = np.random.default_rng(3)
    z = rng.integers(0, 2, 150)
    if name == "bernoulli":
        p = np.array([[0.1, 0.3, 0.8, 0.6], [0.8, 0.7, 0.1, 0.5]])
        return jaxem.families.Bernoulli(), (rng.uniform(size=(150, 4)) < p[z]).astype(float)
    if name == "categorical":
        p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])[:, None, :].repeat(4, axis=1)
        p[:, 1::2] = p[:, 1::2, ::-1]  # every other column prefers the other end
        X = np.array([[rng.choice(3, p=p[k, d]) for d in range(4)] for k in z], dtype=float)
        return jaxem.families.Categorical(3), X
    rates = np.array([[1.0, 4.0, 0.5], [6.0, 2.0, 3.0]])
    return jaxem.families.Poisson(), rng.poisson(rates[z]).astype(float)


@pytest.mark.parametrize("use_prior", [True, False], ids=["map", "mle"])
@pytest.mark.parametrize("name", ["bernoulli", "categorical", "poisson"])
def test_every_family_em_is_numpyros_mode(name, use_prior):
    """Bernoulli, categorical and Poisson mixtures written with NumPyro's distributions (Beta,
    Dirichlet and Gamma priors): the log joint equals EM's objective, its gradient vanishes at
    EM's estimate (in NumPyro's unconstrained coordinates: simplices by stick-breaking), and
    L-BFGS on it finds EM's estimate."""
    family, X = _discrete(name)
    model = jaxem.Mixture(family, 2)
    prior = jaxem.default_prior(model, X) if use_prior else None
    report = crosscheck.compare(model, X, prior, jax.random.key(0))
    print("\n", report, sep="")
    assert bool(report.em.converged)
    assert report.em_objective_diff < 1e-10
    assert report.grad_at_em < 1e-6 * X.shape[0]
    assert report.objective_diff < 1e-8
    assert report.max_param_diff < 1e-4
    assert f"Mixture({family.describe()}, 2)" in repr(report)


def test_log_joint_with_weights_is_the_objective_and_counts_repeats():
    """Integer weights are repeated rows; zero-weight rows (holding anything) count for
    nothing; without a prior the log joint is the log-likelihood EM maximises."""
    X = make_blobs(1)[:120]
    rng = np.random.default_rng(0)
    w = rng.integers(0, 3, X.shape[0]).astype(float)
    X_junk = np.where((w == 0)[:, None], 1e3, X)
    repeated = np.repeat(X, w.astype(int), axis=0)
    model = jaxem.GaussianMixture(3, "diag")
    params = model.init(jax.random.key(1), repeated)
    for prior in (None, jaxem.default_prior(model, repeated)):
        result = jaxem.fit(model, X_junk, params, prior=prior, weights=w, tol=0, max_iter=3)
        weighted = crosscheck.log_joint(model, result.params, X_junk, prior, weights=w)
        plain = crosscheck.log_joint(model, result.params, repeated, prior)
        np.testing.assert_allclose(weighted, result.objective, rtol=1e-12)
        np.testing.assert_allclose(plain, result.objective, rtol=1e-12)


def test_mle_is_the_likelihood_maximum(faithful):
    """Without a prior (and reg_covar=0) EM and L-BFGS on NumPyro's likelihood agree."""
    X = _standardised(faithful)
    model = jaxem.GaussianMixture(2, "full", reg_covar=0.0)
    report = crosscheck.compare(model, X, None, jax.random.key(0))
    assert report.em_objective_diff < 1e-12
    assert report.max_param_diff < 1e-4
    assert report.objective_diff < 1e-8
    assert "GaussianMixture(2, 'full')" in repr(report)
    assert "covariances" in repr(report)


def test_posterior_mode_from_a_poor_start_climbs_to_the_em_estimate(faithful):
    X = _standardised(faithful)
    model = jaxem.GaussianMixture(2, "diag")
    prior = jaxem.default_prior(model, X)
    start = jaxem.GaussianMixtureParams(
        jnp.array([0.5, 0.5]), jnp.array([[-0.5, -0.5], [0.5, 0.5]]), jnp.ones((2, 2))
    )
    em = jaxem.fit(model, X, start, prior=prior, tol=1e-13, max_iter=10_000)
    mode = crosscheck.posterior_mode(model, X, prior, start)
    assert float(mode.objective) > float(crosscheck.log_joint(model, start, X, prior))
    order = crosscheck.match_components(em.params.means, mode.params.means)
    matched = crosscheck.permute(model, mode.params, order)
    for a, b in zip(matched, em.params, strict=True):
        assert rel_err(a, b) < 1e-4
    np.testing.assert_allclose(mode.objective, em.objective, rtol=1e-8)


def test_nuts_draws_sit_around_the_map(faithful):
    X = _standardised(faithful)
    model = jaxem.GaussianMixture(2, "diag")  # "full" works too; its NUTS compiles for 30 s
    prior = jaxem.default_prior(model, X)
    result = crosscheck.nuts(model, X, prior, jax.random.key(0), num_samples=150, num_warmup=150)
    draws, map_params = result.samples, result.map_params
    assert draws.means.shape == (150, 2, 2)
    assert draws.covariances.shape == (150, 2, 2)
    assert result.num_divergent == 0
    # relabelled: every draw's component k is near the MAP's component k (they are far apart)
    spread = np.asarray(draws.means).std(axis=0)
    distance = np.abs(np.asarray(draws.means) - np.asarray(map_params.means))
    assert np.all(distance < 8 * spread)
    # with 272 points the posterior is concentrated: its mean is within 2 sd of the mode
    np.testing.assert_array_less(
        np.abs(np.asarray(draws.means).mean(0) - map_params.means), 2 * spread
    )
    np.testing.assert_allclose(np.asarray(draws.weights).sum(-1), 1.0, rtol=1e-12)


def test_model_and_prior_sites_follow_the_prior(blobs):
    """The NumPyro model's prior predictive: means scatter around prior.mean as
    Sigma / kappa says (checked through the sample covariance of many draws, tied)."""
    model = jaxem.GaussianMixture(4, "tied")
    prior = jaxem.GaussianMixturePrior(2.0, np.zeros(3), 0.5, 6.0, np.eye(3))
    f = crosscheck.numpyro_model(model, prior)
    predictive = Predictive(f, num_samples=4000, return_sites=["weights", "means", "covariances"])
    trace = predictive(jax.random.key(0), jnp.asarray(blobs[:10]))
    assert trace["means"].shape == (4000, 4, 3)
    assert trace["covariances"].shape == (4000, 3, 3)
    # E[Sigma] = Psi / (nu - D - 1) = I / 2, and Cov(mu) = E[Sigma] / kappa = I
    np.testing.assert_allclose(np.mean(trace["covariances"], 0), np.eye(3) / 2, atol=0.05)
    np.testing.assert_allclose(np.cov(trace["means"][:, 0].T), np.eye(3), atol=0.15)
    np.testing.assert_allclose(np.mean(trace["weights"], 0), np.full(4, 0.25), atol=0.01)


def test_bad_input():
    X = make_blobs(0)
    model = jaxem.GaussianMixture(2)
    with pytest.raises(TypeError, match="GaussianMixture"):
        crosscheck.numpyro_model(object())
    with pytest.raises(ValueError, match="nuts needs a prior"):
        crosscheck.nuts(model, X, None, jax.random.key(0))
    params = model.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="steps"):
        crosscheck.posterior_mode(model, X, None, params, steps=0)
    with pytest.raises(ValueError, match="prior.dof"):
        crosscheck.log_joint(
            model, params, X, jaxem.GaussianMixturePrior(1, np.zeros(3), 1, 1, np.eye(3))
        )


def _sequences(name):
    """Three sequences (one padded to half its length) from a two-state chain."""
    family = jaxem.families.Gaussian("full") if name == "gaussian" else jaxem.families.Poisson()
    model = jaxem.HiddenMarkovModel(family, 2)
    emissions = (
        jaxem.families.GaussianParams(np.array([[0.0, 0.0], [3.0, 1.0]]), np.stack([np.eye(2)] * 2))
        if name == "gaussian"
        else jaxem.families.PoissonParams(np.array([[1.0, 6.0], [7.0, 2.0]]))
    )
    truth = jaxem.HMMParams(np.array([0.6, 0.4]), np.array([[0.85, 0.15], [0.2, 0.8]]), emissions)
    X, _ = model.sample(jax.random.key(0), truth, 40, 3)
    weights = np.ones((3, 40))
    weights[1, 20:] = 0
    return model, np.asarray(X), weights


@pytest.mark.parametrize("name", ["gaussian", "poisson"])
def test_hmm_em_map_is_numpyros_posterior_mode(name):
    """The hidden Markov model written in NumPyro (Dirichlet priors on the chain, the family's
    conjugate prior, the forward algorithm in log space): its log joint equals EM's objective,
    its gradient vanishes at EM's MAP, and L-BFGS on it finds EM's estimate."""
    model, X, weights = _sequences(name)
    prior = jaxem.default_prior(model, X)._replace(initial=np.array([2.0, 3.0]), transitions=2.0)
    report = crosscheck.compare(model, X, prior, jax.random.key(0), weights=weights)
    print("\n", report, sep="")
    n_steps = weights.sum()
    assert bool(report.em.converged)
    assert report.em_objective_diff < 1e-10
    assert report.grad_at_em < 1e-6 * n_steps
    assert report.objective_diff < 1e-8
    assert report.max_param_diff < 1e-4
    assert "HiddenMarkovModel(" in repr(report)


def test_float32_comparison_says_that_float64_is_off(faithful):
    """In float32 L-BFGS stalls at float32 rounding: compare says so (and why the differences
    it reports are then about 1e-4) instead of running to its cap silently; float32 data in a
    process with float64 on is a clear error (it was optax's dtype error from inside the line
    search)."""
    X = _standardised(np.asarray(faithful)).astype(np.float32)
    model = jaxem.GaussianMixture(2, "diag")
    with jax.enable_x64(False):
        prior = jaxem.default_prior(model, X)
        with pytest.warns(UserWarning, match="float32.*jax_enable_x64"):
            report = crosscheck.compare(model, X, prior, jax.random.key(0), steps=20)
        assert report.em.params.means.dtype == np.float32
        # the report's numbers are float32's: EM's objective against NumPyro's log joint
        assert report.em_objective_diff < 1e-5
    with pytest.raises(TypeError, match="float32 data while float64 is enabled"):
        crosscheck.compare(model, X, None, jax.random.key(0), steps=20)
