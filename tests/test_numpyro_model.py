"""Models written in NumPyro, fitted by EM (`jaxem.NumPyroModel`), against jaxem's hand-written
models of the same distributions: the closed-form path step for step (after 1 and 10
iterations, and the objective's history), the gradient path to the same fixed point."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy
from conftest import lowerings, numpy_forward
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro.contrib.control_flow import scan
from numpyro.contrib.funsor import markov
from numpyro.distributions import constraints

import jaxem
from jaxem.families import Categorical, CategoricalParams, GammaPrior, Poisson, PoissonParams

K = 3


def uniform(k=K):
    return jnp.ones(k) / k


def gaussian_mixture(locs, covariance_type):
    """The Gaussian mixture in NumPyro: diagonal (Normal scales) or full (covariance
    matrices), started at ``locs`` with unit variances."""
    n_features = locs.shape[1]

    def model(X):
        weights = numpyro.param("weights", uniform(), constraint=constraints.simplex)
        means = numpyro.param("means", locs)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            if covariance_type == "diag":
                scales = numpyro.param(
                    "scales", jnp.ones((K, n_features)), constraint=constraints.positive
                )
                numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=X)
            else:
                covariances = numpyro.param(
                    "covariances",
                    jnp.broadcast_to(jnp.eye(n_features), (K, n_features, n_features)),
                    constraint=constraints.positive_definite,
                )
                numpyro.sample("x", dist.MultivariateNormal(means[z], covariances[z]), obs=X)

    return model


def as_gaussian_mixture_params(params, covariance_type):
    covariances = (
        jnp.square(params["scales"]) if covariance_type == "diag" else params["covariances"]
    )
    return jaxem.GaussianMixtureParams(params["weights"], params["means"], covariances)


def assert_close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.maximum(np.abs(expected), 1e-3)
    assert np.max(np.abs(actual - expected) / scale) < rtol


@pytest.fixture(scope="module", params=["diag", "full"])
def gaussian_case(request, blobs):
    covariance_type = request.param
    locs = jnp.asarray(blobs[[0, 200, 350]])
    model = jaxem.NumPyroModel(gaussian_mixture(locs, covariance_type))
    return covariance_type, model, blobs


def test_gaussian_mixture_in_numpyro_is_the_hand_written_one(gaussian_case):
    covariance_type, model, X = gaussian_case
    described = model.describe(X)
    assert "weights: closed form (categorical probs of 'z')" in described
    assert "means: closed form" in described
    assert "gradient" not in described
    params = model.init(jax.random.PRNGKey(0), X)
    reference = jaxem.GaussianMixture(K, covariance_type, reg_covar=0.0)
    start = as_gaussian_mixture_params(params, covariance_type)
    for n_iter in (1, 10):
        ours = jaxem.fit(model, X, params, tol=0.0, max_iter=n_iter)
        theirs = jaxem.fit(reference, X, start, tol=0.0, max_iter=n_iter)
        fitted = as_gaussian_mixture_params(ours.params, covariance_type)
        for a, b in zip(fitted, theirs.params, strict=True):
            assert_close(a, b, 1e-8)
        assert_close(ours.history, theirs.history, 1e-10)


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_float32_data_far_from_the_origin(blobs, covariance_type):
    """Data 1,000 units from the origin in float32 (a measurement in physical units): the
    variances are sums of squares about the current means, not raw second moments minus the
    squared mean (which cancelled to a negative variance and a NaN objective), and the
    densities are taken about the means' centre. The fit equals the hand-written model's
    in float64 on the same values."""
    X32 = (blobs + 1000.0).astype(np.float32)
    locs = jnp.asarray(X32[[0, 200, 350]])
    model = jaxem.NumPyroModel(gaussian_mixture(locs, covariance_type))
    ours = jaxem.fit(model, X32, model.init(jax.random.PRNGKey(0), X32), tol=0.0, max_iter=20)
    X64 = X32.astype(np.float64)
    start = as_gaussian_mixture_params(model.init(jax.random.PRNGKey(0), X64), covariance_type)
    reference = jaxem.GaussianMixture(K, covariance_type, reg_covar=0.0)
    theirs = jaxem.fit(reference, X64, start, tol=0.0, max_iter=20)
    assert ours.history.dtype == np.float32
    np.testing.assert_allclose(ours.history, theirs.history, rtol=1e-5)
    fitted = as_gaussian_mixture_params(ours.params, covariance_type)
    np.testing.assert_allclose(fitted.covariances, theirs.params.covariances, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(fitted.means, theirs.params.means, rtol=1e-6)


def test_forced_gradient_path_reaches_the_same_fixed_point(blobs):
    locs = jnp.asarray(blobs[[0, 200, 350]])
    fn = gaussian_mixture(locs, "diag")
    closed = jaxem.NumPyroModel(fn)
    params = closed.init(jax.random.PRNGKey(0), blobs)
    exact = jaxem.fit(closed, blobs, params, tol=1e-12, max_iter=2000)
    assert exact.converged
    for gradient in (True, ("scales",)):
        model = jaxem.NumPyroModel(fn, gradient=gradient)
        described = model.describe(blobs)
        assert "scales: gradient" in described
        found = jaxem.fit(model, blobs, params, tol=1e-12, max_iter=2000)
        assert found.converged
        history = np.asarray(found.history[: int(found.n_iter)])
        assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
        for name in params:
            assert_close(found.params[name], exact.params[name], 1e-6)


def poisson_mixture(rates, prior=False):
    def model(X):
        if prior:
            weights = numpyro.sample("weights", dist.Dirichlet(2.0 * jnp.ones(K)))
            lam = numpyro.sample("rates", dist.Gamma(2.0, 0.5).expand(rates.shape).to_event(2))
        else:
            weights = numpyro.param("weights", uniform(), constraint=constraints.simplex)
            lam = numpyro.param("rates", rates, constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("x", dist.Poisson(lam[z]).to_event(1), obs=X)

    return model


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(3)
    rates = np.array([[1.0, 8.0], [5.0, 2.0], [12.0, 12.0]])
    labels = rng.integers(0, K, 300)
    return rng.poisson(rates[labels]).astype(float)


def test_poisson_mixture_mle_and_map(counts):
    rates = jnp.asarray(counts[[0, 1, 2]] + 0.5)
    reference = jaxem.Mixture(Poisson(), K)
    for prior in (False, True):
        model = jaxem.NumPyroModel(poisson_mixture(rates, prior))
        assert "gradient" not in model.describe(counts)
        params = {"weights": uniform(), "rates": rates}
        start = jaxem.MixtureParams(uniform(), PoissonParams(rates))
        their_prior = jaxem.MixturePrior(2.0 * jnp.ones(K), GammaPrior(2.0, 0.5)) if prior else None
        for n_iter in (1, 10):
            ours = jaxem.fit(model, counts, params, tol=0.0, max_iter=n_iter)
            theirs = jaxem.fit(
                reference, counts, start, prior=their_prior, tol=0.0, max_iter=n_iter
            )
            assert_close(ours.params["weights"], theirs.params.weights, 1e-8)
            assert_close(ours.params["rates"], theirs.params.components.rates, 1e-8)
            assert_close(ours.history, theirs.history, 1e-10)
    # fit_batch uses the model's own priors too (prior=None is not maximum likelihood here)
    batch = np.stack([counts[:150], counts[150:]])
    starts = jax.tree.map(lambda a: jnp.stack([a] * 2), params)
    batched = jaxem.fit_batch(
        model, jax.random.PRNGKey(0), batch, init_params=starts, tol=0.0, max_iter=10
    )
    for b in range(2):
        alone = jaxem.fit(model, batch[b], params, tol=0.0, max_iter=10)
        assert_close(batched.params["rates"][b], alone.params["rates"], 1e-10)
        assert_close(batched.objective[b], alone.objective, 1e-12)
    # the MAP fixed point on the gradient path, priors included
    forced = jaxem.NumPyroModel(poisson_mixture(rates, True), gradient=True)
    exact = jaxem.NumPyroModel(poisson_mixture(rates, True))
    ends = [jaxem.fit(m, counts, params, tol=1e-12, max_iter=2000) for m in (exact, forced)]
    assert all(bool(end.converged) for end in ends)
    for name in params:
        assert_close(ends[1].params[name], ends[0].params[name], 1e-6)
    # from a source of blocks (the model's own priors too): the closed-form path is exact EM
    # over the blocks; the gradient path's M-step reads the rows, which blocks cannot give
    source = jaxem.sources.array(counts, 64)
    alone = jaxem.fit(exact, counts, params, tol=1e-10)
    streamed = jaxem.fit(exact, source, params, tol=1e-10)
    assert int(streamed.n_iter) == int(alone.n_iter)
    for name in params:
        assert_close(streamed.params[name], alone.params[name], 1e-10)
    with pytest.raises(ValueError, match="not sums over rows"):
        jaxem.fit(forced, source, params)
    with pytest.raises(ValueError, match="not sums over rows"):
        jaxem.online.stepwise(forced).init(params, counts)


def test_latent_class_model(anes_like):
    X, n_categories = anes_like
    n_features = X.shape[1]
    rng = np.random.default_rng(0)
    probs0 = jnp.asarray(rng.dirichlet(np.ones(n_categories), (K, n_features)))

    def model(X):
        weights = numpyro.param("weights", uniform(), constraint=constraints.simplex)
        probs = numpyro.param("probs", probs0, constraint=constraints.simplex)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("x", dist.Categorical(probs[z]).to_event(1), obs=X.astype(jnp.int32))

    ours_model = jaxem.NumPyroModel(model)
    assert "probs: closed form (categorical probs of 'x')" in ours_model.describe(X)
    reference = jaxem.Mixture(Categorical(n_categories), K)
    params = {"weights": uniform(), "probs": probs0}
    start = jaxem.MixtureParams(uniform(), CategoricalParams(probs0))
    for n_iter in (1, 10):
        ours = jaxem.fit(ours_model, X, params, tol=0.0, max_iter=n_iter)
        theirs = jaxem.fit(reference, X, start, tol=0.0, max_iter=n_iter)
        assert_close(ours.params["weights"], theirs.params.weights, 1e-8)
        assert_close(ours.params["probs"], theirs.params.components.probs, 1e-8)
        assert_close(ours.history, theirs.history, 1e-10)


@pytest.fixture(scope="module")
def anes_like():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), (K, 4))
    labels = rng.integers(0, K, 400)
    u = rng.random((400, 4, 1))
    X = (u > np.cumsum(probs[labels], axis=-1)).sum(-1)
    return X.astype(float), 3


def continuous_latent(X):
    loc = numpyro.param("loc", 0.0)
    with numpyro.plate("rows", X.shape[0]):
        u = numpyro.sample("u", dist.Normal(loc, 1.0))
        numpyro.sample("x", dist.Normal(u, 1.0), obs=X[:, 0])


def unobserved_data(X):
    loc = numpyro.param("loc", 0.0)
    numpyro.sample("x", dist.Normal(loc, 1.0).expand([X.shape[0]]).to_event(1))


def no_row_plate(X):
    loc = numpyro.param("loc", 0.0)
    numpyro.sample("x", dist.Normal(loc, 1.0).expand([X.shape[0], 2]).to_event(2), obs=X)


@pytest.mark.parametrize(
    "fn, message",
    [
        (continuous_latent, "site 'u' is a continuous latent variable"),
        (unobserved_data, "if it is data, give it obs="),
        (no_row_plate, "not inside a plate over the rows"),
    ],
)
def test_models_em_cannot_fit_are_refused_before_compiling(fn, message):
    with pytest.raises(ValueError, match=message):
        jaxem.NumPyroModel(fn).describe(np.zeros((5, 2)))


def gaussian_hmm(means0, transitions0):
    """A hidden Markov model with diagonal Gaussian emissions over sequences ``(S, T, D)``
    padded with NaN: NumPyro's scan over time, the padded steps masked."""
    n_states, n_features = means0.shape

    def model(X):
        n_sequences, n_steps, _ = X.shape
        initial = numpyro.param("initial", uniform(n_states), constraint=constraints.simplex)
        transitions = numpyro.param("transitions", transitions0, constraint=constraints.simplex)
        means = numpyro.param("means", means0)
        scales = numpyro.param(
            "scales", jnp.ones((n_states, n_features)), constraint=constraints.positive
        )
        seen = ~jnp.isnan(X[..., 0])
        steps = (jnp.swapaxes(jnp.nan_to_num(X), 0, 1), seen.T, jnp.arange(n_steps))

        def step(previous, inputs):
            x, seen_now, t = inputs
            with numpyro.plate("sequences", n_sequences), numpyro.handlers.mask(mask=seen_now):
                probs = jnp.where(t == 0, initial, transitions[previous])
                z = numpyro.sample("z", dist.Categorical(probs))
                numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=x)
            return z, None

        scan(step, jnp.zeros(n_sequences, int), steps)

    return model


HMM_MEANS = jnp.asarray([[0.0, 0.0], [2.0, 2.0]])
HMM_TRANSITIONS = jnp.asarray([[0.8, 0.2], [0.3, 0.7]])


def assert_is_the_hand_written_hmm(model, X, weights=None):
    """``model`` (a two-state diagonal Gaussian HMM in NumPyro, started at `HMM_MEANS`,
    `HMM_TRANSITIONS`, unit variances) equals `jaxem.HiddenMarkovModel` from the same start
    after 1 and 10 iterations, history included."""
    params = model.init(jax.random.PRNGKey(0), X)
    reference = jaxem.HiddenMarkovModel(jaxem.families.Gaussian("diag", reg_covar=0.0), 2)
    emissions = jaxem.families.GaussianParams(HMM_MEANS, jnp.ones((2, 2)))
    start = jaxem.HMMParams(uniform(2), HMM_TRANSITIONS, emissions)
    for n_iter in (1, 10):
        ours = jaxem.fit(model, X, params, tol=0.0, max_iter=n_iter)
        theirs = jaxem.fit(reference, X, start, weights=weights, tol=0.0, max_iter=n_iter)
        assert_close(ours.params["initial"], theirs.params.initial, 1e-8)
        assert_close(ours.params["transitions"], theirs.params.transitions, 1e-8)
        assert_close(ours.params["means"], theirs.params.emissions.means, 1e-8)
        assert_close(jnp.square(ours.params["scales"]), theirs.params.emissions.covariances, 1e-8)
        assert_close(ours.history, theirs.history, 1e-10)


def test_hidden_markov_model_over_sequences_of_different_lengths():
    rng = np.random.default_rng(7)
    lengths = (40, 25, 33)
    sequences = [rng.normal(size=(n, 2)) + (np.arange(n) % 10 > 4)[:, None] * 3 for n in lengths]
    X, weights = jaxem.pad(sequences)
    model = jaxem.NumPyroModel(gaussian_hmm(HMM_MEANS, HMM_TRANSITIONS), data_ndim=3)
    assert "gradient" not in model.describe(X)
    assert model.plan(X.shape[1:], X.dtype).chain == "z"  # forward-backward, masks included
    assert_is_the_hand_written_hmm(model, X, weights)


def gamma_hmm(start):
    """A two-state HMM over positive values ``(S, T)`` with Gamma(2, rate) emissions: a
    density that is zero at 0 (log density -inf), the value jaxem's padding holds."""

    def model(X):
        n_sequences, n_steps = X.shape
        initial = numpyro.param("initial", start["initial"], constraint=constraints.simplex)
        trans = numpyro.param("transitions", start["transitions"], constraint=constraints.simplex)
        rates = numpyro.param("rates", start["rates"], constraint=constraints.positive)

        def step(previous, inputs):
            x, t = inputs
            with numpyro.plate("sequences", n_sequences):
                z = numpyro.sample(
                    "z", dist.Categorical(jnp.where(t == 0, initial, trans[previous]))
                )
                numpyro.sample("x", dist.Gamma(2.0, rates[z]), obs=x)
            return z, None

        scan(step, jnp.zeros(n_sequences, int), (X.T, jnp.arange(n_steps)))

    return model


def test_rows_of_weight_zero_need_not_be_in_the_models_support():
    """Four sequences of a Gamma HMM (padded to sixteen with rows of weight zero; the rates
    on the gradient path) reach the maximum of the likelihood found by SciPy on a NumPy
    forward recursion from the same start; a Gamma mixture with rows of weight zero (as in a
    bootstrap replicate) equals its fit without them. Those rows held zeros, where the
    Gamma's log density is -inf: the HMM stopped after one iteration at its start,
    `converged` true, its statistics NaN."""
    rng = np.random.default_rng(3)
    X = rng.gamma(2.0, 1 / np.where(rng.random((4, 30)) < 0.5, 0.5, 3.0))
    start = {
        "initial": jnp.asarray([0.5, 0.5]),
        "transitions": jnp.asarray([[0.9, 0.1], [0.2, 0.8]]),
        "rates": jnp.asarray([1.0, 2.0]),
    }
    fitted = jaxem.fit(jaxem.NumPyroModel(gamma_hmm(start)), X, start, tol=1e-12, max_iter=5000)
    assert fitted.converged and fitted.n_iter > 5

    def negative_loglik(v):
        initial = scipy.special.softmax([0.0, v[0]])
        transitions = scipy.special.softmax([[0.0, v[1]], [v[2], 0.0]], axis=1)
        rates = np.exp(v[3:])
        log_b = scipy.stats.gamma.logpdf(X[..., None], 2.0, scale=1 / rates)
        return -sum(numpy_forward(b, initial, transitions) for b in log_b)

    begin = np.array([0.0, np.log(0.1 / 0.9), np.log(0.2 / 0.8), 0.0, np.log(2.0)])
    best = scipy.optimize.minimize(negative_loglik, begin, method="BFGS", options={"gtol": 1e-9})
    np.testing.assert_allclose(float(fitted.objective), -best.fun, rtol=1e-9)
    np.testing.assert_allclose(fitted.params["rates"], np.exp(best.x[3:]), rtol=1e-4)

    def gamma_mixture(X):
        weights = numpyro.param("weights", jnp.asarray([0.5, 0.5]), constraint=constraints.simplex)
        rates = numpyro.param("rates", jnp.asarray([1.0, 2.0]), constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("x", dist.Gamma(2.0, rates[z]), obs=X[:, 0])

    rows = X.reshape(-1, 1)[:100]
    weights = (rng.random(100) < 0.7).astype(float)
    model = jaxem.NumPyroModel(gamma_mixture)
    begin = {"weights": jnp.asarray([0.5, 0.5]), "rates": jnp.asarray([1.0, 2.0])}
    with_zeros = jaxem.fit(model, rows, begin, weights=weights, tol=0.0, max_iter=10)
    without = jaxem.fit(model, rows[weights > 0], begin, tol=0.0, max_iter=10)
    assert_close(with_zeros.history, without.history, 1e-10)
    for name in begin:
        assert_close(with_zeros.params[name], without.params[name], 1e-8)


def test_an_ordinary_model_on_the_driver(counts):
    """Row blocks, a batch of data sets, SQUAREM, padding to shared sizes: as for every model."""
    rates = jnp.asarray(counts[[0, 1, 2]] + 0.5)
    model = jaxem.NumPyroModel(poisson_mixture(rates))
    params = {"weights": uniform(), "rates": rates}
    whole = jaxem.fit(model, counts, params, tol=0.0, max_iter=10)
    blocks = jaxem.fit(model, counts, params, tol=0.0, max_iter=10, chunk_size=64)
    for name in params:
        assert_close(blocks.params[name], whole.params[name], 1e-10)
    batch = np.stack([counts[:200], counts[100:], counts[::-1][:200]])
    starts = jax.tree.map(lambda a: jnp.stack([a] * 3), params)
    fitted = jaxem.fit_batch(
        model, jax.random.PRNGKey(0), batch, init_params=starts, tol=0.0, max_iter=10
    )
    for b in range(3):
        alone = jaxem.fit(model, batch[b], params, tol=0.0, max_iter=10)
        for name in params:
            assert_close(fitted.params[name][b], alone.params[name], 1e-10)
    plain = jaxem.fit(model, counts, params, tol=1e-12, max_iter=3000)
    fast = jaxem.fit(model, counts, params, tol=1e-12, max_iter=3000, accelerate="squarem")
    assert plain.converged and fast.converged and fast.n_evals < plain.n_evals
    for name in params:
        assert_close(fast.params[name], plain.params[name], 1e-6)
    gradient = jaxem.NumPyroModel(poisson_mixture(rates), gradient=("rates",))
    with pytest.raises(ValueError, match="not sums over rows"):
        jaxem.fit(gradient, counts, params, chunk_size=64)


REFERENCES = Path(__file__).parent / "data" / "flexmix"


def read_csv(name):
    """A CSV written by R as a dict of columns."""
    table = np.genfromtxt(REFERENCES / name, delimiter=",", names=True, dtype=float)
    return {key: table[key] for key in table.dtype.names}


def columns(table, *names):
    return np.stack([table[n] for n in names], axis=-1)


def regression_mixture(start):
    """Two linear regressions, ``y = b0_k + b1_k x + e``; X's columns are x and y."""

    def model(X):
        weights = numpyro.param("weights", start["weights"], constraint=constraints.simplex)
        coef = numpyro.param("coef", start["coef"])
        sigma = numpyro.param("sigma", start["sigma"], constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            loc = coef[z, 0] + coef[z, 1] * X[:, 0]
            numpyro.sample("y", dist.Normal(loc, sigma[z]), obs=X[:, 1])

    return model


def test_mixture_of_regressions_is_mixtools_regmixem():
    data = columns(read_csv("regression.csv"), "x", "y")
    ref = read_csv("regression_fit.csv")
    start = {
        "weights": jnp.asarray(ref["start_weight"]),
        "coef": jnp.asarray(columns(ref, "start_intercept", "start_slope")),
        "sigma": jnp.asarray(ref["start_sigma"]),
    }
    model = jaxem.NumPyroModel(regression_mixture(start))
    described = model.describe(data)
    assert "coef: gradient" in described and "sigma: closed form" in described
    result = jaxem.fit(model, data, start, tol=1e-13, max_iter=5000)
    assert result.converged
    assert_close(result.params["weights"], ref["weight"], 1e-5)
    assert_close(result.params["coef"], columns(ref, "intercept", "slope"), 1e-5)
    assert_close(result.params["sigma"], ref["sigma"], 1e-5)
    assert result.objective == pytest.approx(ref["loglik"][0], rel=1e-9)


def concomitant_mixture(gate0, rates0):
    """Two Poisson components whose weights depend on a covariate w through a logistic gate
    (flexmix's FLXPmultinom, first component the reference); X's columns are w and y."""

    def model(X):
        gate = numpyro.param("gate", gate0)
        rates = numpyro.param("rates", rates0, constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            logits = jnp.stack([jnp.zeros_like(X[:, 0]), gate[0] + gate[1] * X[:, 0]], -1)
            z = numpyro.sample("z", dist.Categorical(logits=logits))
            numpyro.sample("y", dist.Poisson(rates[z]), obs=X[:, 1])

    return model


def test_weights_that_depend_on_a_covariate_are_flexmixs_concomitant_model():
    data = columns(read_csv("concomitant.csv"), "w", "y")
    ref = read_csv("concomitant_fit.csv")
    model = jaxem.NumPyroModel(concomitant_mixture(jnp.zeros(2), jnp.asarray([1.0, 5.0])))
    described = model.describe(data)
    assert "gate: gradient" in described and "rates: closed form" in described
    params = model.init(jax.random.PRNGKey(0), data)
    result = jaxem.fit(model, data, params, tol=1e-13, max_iter=5000)
    assert result.converged
    assert_close(result.params["rates"], ref["rate"], 1e-5)
    gate = [ref["gate_intercept"][1], ref["gate_slope"][1]]
    assert_close(result.params["gate"], gate, 1e-5)
    assert result.objective == pytest.approx(ref["loglik"][0], rel=1e-9)


def zero_inflated_poisson(X):
    """Counts y that are a structural zero with probability logistic(g0 + g1 x), else
    Poisson(exp(b0 + b1 x)); the indicator is the enumerated latent site."""
    gate = numpyro.param("gate", jnp.zeros(2))
    coef = numpyro.param("coef", jnp.zeros(2))
    x, y = X[:, 0], X[:, 1]
    with numpyro.plate("rows", X.shape[0]):
        zero = numpyro.sample("zero", dist.Bernoulli(logits=gate[0] + gate[1] * x))
        rate = jnp.exp(coef[0] + coef[1] * x)
        numpyro.sample("y", dist.Poisson(jnp.where(zero == 1, 0.0, rate)), obs=y)


def test_zero_inflated_poisson_regression_is_the_direct_maximum():
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, 500)
    structural = rng.random(500) < 1 / (1 + np.exp(-(-0.5 + 1.2 * x)))
    y = np.where(structural, 0, rng.poisson(np.exp(1.0 + 0.8 * x)))
    data = np.stack([x, y.astype(float)], -1)

    def negative_log_likelihood(theta):
        g0, g1, b0, b1 = theta
        pi = scipy.special.expit(g0 + g1 * x)
        rate = np.exp(b0 + b1 * x)
        poisson = scipy.stats.poisson.logpmf(y, rate)
        zero = np.logaddexp(np.log(pi), np.log1p(-pi) + poisson)
        return -np.sum(np.where(y == 0, zero, np.log1p(-pi) + poisson))

    direct = scipy.optimize.minimize(
        negative_log_likelihood, np.zeros(4), method="BFGS", options={"gtol": 1e-10}
    )
    model = jaxem.NumPyroModel(zero_inflated_poisson)
    params = model.init(jax.random.PRNGKey(0), data)
    result = jaxem.fit(model, data, params, tol=1e-13, max_iter=5000)
    assert result.converged
    assert_close(result.params["gate"], direct.x[:2], 1e-5)
    assert_close(result.params["coef"], direct.x[2:], 1e-5)
    assert result.objective == pytest.approx(-direct.fun, rel=1e-10)


def seeded_regression_mixture(X):
    """A mixture of two Poisson regressions, started from values drawn with the seed in X's
    last column (so that hypothesis varies the start with the data)."""
    key = jax.random.PRNGKey(X[0, -1].astype(jnp.int32))
    k1, k2 = jax.random.split(key)
    weights = numpyro.param("weights", jnp.ones(2) / 2, constraint=constraints.simplex)
    coef = numpyro.param("coef", lambda key: jax.random.normal(k1, (2, 2)))
    with numpyro.plate("rows", X.shape[0]):
        z = numpyro.sample("z", dist.Categorical(weights))
        numpyro.sample("y", dist.Poisson(jnp.exp(coef[z, 0] + coef[z, 1] * X[:, 0])), obs=X[:, 1])
    del k2


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), gradient=st.booleans())
def test_the_objective_never_decreases(seed, gradient):
    """Random data and starts, on the closed-form path (a Gaussian mixture) and on the gradient
    path (the same mixture forced onto it, and a mixture of Poisson regressions)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(rng.normal(0, 2, (3, 2))[rng.integers(0, 3, 60)], rng.uniform(0.3, 2))
    locs = jnp.asarray(X[rng.choice(60, 3, replace=False)])
    model = jaxem.NumPyroModel(gaussian_mixture_at_zero, gradient=gradient)
    params = {
        "weights": jnp.asarray(rng.dirichlet(np.ones(3))),
        "means": locs,
        "scales": jnp.asarray(rng.uniform(0.5, 2.0, (3, 2))),
    }
    histories = [jaxem.fit(model, X, params, tol=0.0, max_iter=15).history]
    x = rng.uniform(-1, 1, 80)
    counts = rng.poisson(np.exp(np.where(rng.random(80) < 0.5, 1 + x, 2 - x)))
    data = np.stack([x, counts, np.full(80, seed % 1000)], -1)
    regression = jaxem.NumPyroModel(seeded_regression_mixture)
    start = regression.init(jax.random.PRNGKey(seed), data)
    histories.append(jaxem.fit(regression, data, start, tol=0.0, max_iter=15).history)
    for history in histories:
        history = np.asarray(history)
        assert np.all(np.isfinite(history))
        assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


def gaussian_mixture_at_zero(X):
    weights = numpyro.param("weights", uniform(), constraint=constraints.simplex)
    means = numpyro.param("means", jnp.zeros((K, 2)))
    scales = numpyro.param("scales", jnp.ones((K, 2)), constraint=constraints.positive)
    with numpyro.plate("rows", X.shape[0]):
        z = numpyro.sample("z", dist.Categorical(weights))
        numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=X)


def test_standard_errors_and_bootstrap_are_the_hand_written_models(blobs):
    """The information in NumPyro's unconstrained coordinates (simplex: K - 1 of them), mapped
    to the parameters, equals the hand-written mixture's; the bootstrap's refits too."""
    locs = jnp.asarray(blobs[[0, 200, 350]])
    model = jaxem.NumPyroModel(gaussian_mixture(locs, "diag"))
    params = model.init(jax.random.PRNGKey(0), blobs)
    assert model.n_parameters(3) == 2 + 9 + 9
    ours = jaxem.fit(model, blobs, params, tol=1e-12, max_iter=2000)
    reference = jaxem.GaussianMixture(K, "diag", reg_covar=0.0)
    start = as_gaussian_mixture_params(params, "diag")
    theirs = jaxem.fit(reference, blobs, start, tol=1e-12, max_iter=2000)
    se = jaxem.standard_errors(model, ours, blobs).standard_errors
    se_ref = jaxem.standard_errors(reference, theirs, blobs).standard_errors
    assert_close(se["weights"], se_ref.weights, 1e-6)
    assert_close(se["means"], se_ref.means, 1e-6)
    # the delta method: se(sigma^2) = 2 sigma se(sigma)
    assert_close(2 * ours.params["scales"] * se["scales"], se_ref.covariances, 1e-6)
    key = jax.random.PRNGKey(4)
    boot = jaxem.bootstrap(model, ours, blobs, key=key, n_boot=8, tol=1e-10)
    boot_ref = jaxem.bootstrap(reference, theirs, blobs, key=key, n_boot=8, tol=1e-10)
    assert_close(boot.replicates["means"], boot_ref.replicates.means, 1e-6)
    assert_close(boot.objectives, boot_ref.objectives, 1e-9)


def enumerated_continuous(X):
    loc = numpyro.param("loc", 0.0)
    with numpyro.plate("rows", X.shape[0]):
        u = numpyro.sample("u", dist.Normal(loc, 1.0), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(u, 1.0), obs=X[:, 0])


def test_an_enumerated_site_needs_finite_support():
    with pytest.raises(ValueError, match="site 'u' is marked for enumeration but its"):
        jaxem.NumPyroModel(enumerated_continuous).describe(np.zeros((5, 2)))


def test_restarts_from_a_users_start_function(counts):
    """``init_fn`` gives the starts (here random rates around the data's mean); fit_restarts
    draws from it and keeps the best, which is the best of the same fits made one by one."""
    rates = jnp.asarray(counts[[0, 1, 2]] + 0.5)

    def init_fn(key, X):
        spread = jax.random.uniform(key, (K, X.shape[1]), minval=0.2, maxval=2.0)
        return {"weights": uniform(), "rates": jnp.mean(X, axis=0) * spread}

    model = jaxem.NumPyroModel(poisson_mixture(rates), init_fn=init_fn)
    key = jax.random.PRNGKey(2)
    start = model.init(key, counts)
    assert float(jnp.min(start["rates"])) > 0 and start["rates"].shape == (K, 2)
    best = jaxem.fit_restarts(model, key, counts, n_init=4, tol=1e-8, max_iter=500)
    alone = [
        jaxem.fit(model, counts, model.init(k, counts), tol=1e-8, max_iter=500).objective
        for k in jax.random.split(key, 4)
    ]
    assert float(best.objective) == pytest.approx(max(map(float, alone)), rel=1e-9)


def gaussian_mixture_with_prior(X):
    """Diagonal Gaussian mixture whose means have a Normal prior (a sample site): their closed
    form is the precision-weighted posterior mean given the current scales."""
    weights = numpyro.sample("weights", dist.Dirichlet(2.0 * jnp.ones(K)))
    means = numpyro.sample("means", dist.Normal(0.0, 2.0).expand([K, 3]).to_event(2))
    scales = numpyro.param("scales", jnp.ones((K, 3)), constraint=constraints.positive)
    with numpyro.plate("rows", X.shape[0]):
        z = numpyro.sample("z", dist.Categorical(weights))
        numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=X)


def test_normal_prior_on_means_reaches_the_gradient_paths_posterior_mode(blobs):
    closed = jaxem.NumPyroModel(gaussian_mixture_with_prior)
    described = closed.describe(blobs)
    assert "means: closed form (normal loc of 'x', normal prior)" in described
    assert "weights: closed form (categorical probs of 'z', dirichlet prior)" in described
    params = {
        "weights": uniform(),
        "means": jnp.asarray(blobs[[0, 200, 350]]),
        "scales": jnp.ones((K, 3)),
    }
    forced = jaxem.NumPyroModel(gaussian_mixture_with_prior, gradient=True)
    ends = [jaxem.fit(m, blobs, params, tol=1e-12, max_iter=3000) for m in (closed, forced)]
    assert all(bool(end.converged) for end in ends)
    for name in params:  # 1e-7 absolute: a mean near 0.02 is 1.7e-6 of itself
        assert_close(ends[1].params[name], ends[0].params[name], 1e-5)
    # the objective is the log joint: the log-likelihood plus the priors' log densities
    means, weights = ends[0].params["means"], ends[0].params["weights"]
    log_prior = dist.Normal(0.0, 2.0).log_prob(means).sum() + dist.Dirichlet(
        2.0 * jnp.ones(K)
    ).log_prob(weights)
    mixture = jaxem.GaussianMixture(K, "diag", reg_covar=0.0)
    as_params = jaxem.GaussianMixtureParams(weights, means, jnp.square(ends[0].params["scales"]))
    e_loglik = mixture.e_step(as_params, jnp.asarray(blobs), jnp.ones(len(blobs)))[1]
    assert float(ends[0].objective) == pytest.approx(float(e_loglik + log_prior), rel=1e-10)


def markov_gaussian_hmm(means0, transitions0):
    """The Gaussian HMM written with NumPyro's ``markov`` over a Python loop (which recycles
    the enumeration's dims: variables two steps apart share one)."""
    n_states, n_features = means0.shape

    def model(X):
        n_sequences, n_steps, _ = X.shape
        initial = numpyro.param("initial", uniform(n_states), constraint=constraints.simplex)
        transitions = numpyro.param("transitions", transitions0, constraint=constraints.simplex)
        means = numpyro.param("means", means0)
        scales = numpyro.param(
            "scales", jnp.ones((n_states, n_features)), constraint=constraints.positive
        )
        with numpyro.plate("sequences", n_sequences):
            z = None
            for t in markov(range(n_steps)):
                probs = initial if z is None else transitions[z]
                z = numpyro.sample(f"z_{t}", dist.Categorical(probs))
                loc, scale = means[z], scales[z]
                numpyro.sample(f"x_{t}", dist.Normal(loc, scale).to_event(1), obs=X[:, t])

    return model


def test_hidden_markov_model_written_with_markov():
    """Recycled dims must not be summed out jointly (a silent wrong answer once): the chain
    goes through funsor's contraction, equal to the hand-written HMM."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3, 8, 2)) + (np.arange(8) % 4 > 1)[None, :, None] * 3
    model = jaxem.NumPyroModel(markov_gaussian_hmm(HMM_MEANS, HMM_TRANSITIONS), data_ndim=3)
    described = model.describe(X)
    assert "transitions: closed form (categorical probs of 'z_1', 'z_2'" in described
    assert_is_the_hand_written_hmm(model, X)


def test_values_the_model_does_not_mask_are_refused(blobs):
    """NaN is data only where the model masks it (the HMM's padded steps pass); elsewhere the
    fit would end at -inf without a word."""
    X = blobs.copy()
    X[5, 1] = np.nan
    model = jaxem.NumPyroModel(gaussian_mixture(jnp.asarray(blobs[[0, 200, 350]]), "diag"))
    params = model.init(jax.random.PRNGKey(0), blobs)
    with pytest.raises(ValueError, match="X has NaN or inf in rows 5 that the model"):
        jaxem.fit(model, X, params)
    weights = np.ones(len(X))
    weights[5] = 0.0  # a row of weight 0 says nothing, whatever it holds
    fitted = jaxem.fit(model, X, params, weights=weights, tol=0.0, max_iter=3)
    assert np.isfinite(float(fitted.objective))
    # the parameters where the data go (the arguments swapped): named, not NumPy's "entry
    # not a 2- or 3- tuple"
    with pytest.raises(TypeError, match="X must be an array of numbers; got dict"):
        jaxem.standard_errors(model, blobs, params)


def test_multivariate_normal_densities_against_scipy():
    """A multivariate normal observing the rows (obs=X) is evaluated from the rows' quadratic
    features (`NumPyroModel.prepare`); with a location per row (here a drift in the row's
    index) it keeps the direct form. Both log-likelihoods equal SciPy's densities summed by
    brute force over the components, and the prepared E-step equals the one on the raw rows."""
    rng = np.random.default_rng(5)
    n, d = 40, 3
    X = rng.normal(size=(n, d)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.0]
    weights = np.array([0.3, 0.7])
    means = rng.normal(size=(2, d))
    covariances = np.stack([np.eye(d) + 0.3, np.diag([2.0, 1.0, 0.5])])
    drift = np.array([0.05, -0.02, 0.01])

    def model(X, per_row):
        w = numpyro.param("weights", jnp.asarray(weights), constraint=constraints.simplex)
        mu = numpyro.param("means", jnp.asarray(means))
        cov = numpyro.param(
            "covariances", jnp.asarray(covariances), constraint=constraints.positive_definite
        )
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(w))
            loc = mu[z] + (jnp.arange(X.shape[0])[:, None] * drift if per_row else 0.0)
            numpyro.sample("x", dist.MultivariateNormal(loc, cov[z]), obs=X)

    for per_row in (False, True):
        ours = jaxem.NumPyroModel(lambda X, per_row=per_row: model(X, per_row))
        params = ours.init(jax.random.key(0), X)
        ones = jnp.ones(n)
        _, loglik = ours.e_step(params, jnp.asarray(X), ones)
        prepared = ours.prepare(jnp.asarray(X), ones)
        assert set(prepared.features) == {"x"}
        stats, loglik_prepared = ours.e_step(params, prepared, ones)
        shift = np.arange(n)[:, None] * drift if per_row else np.zeros((n, d))
        per_component = np.stack(
            [
                np.log(weights[k])
                + np.array(
                    [
                        scipy.stats.multivariate_normal.logpdf(X[i], means[k] + shift[i], cov)
                        for i in range(n)
                    ]
                )
                for k, cov in enumerate(covariances)
            ]
        )
        expected = np.sum(scipy.special.logsumexp(per_component, axis=0))
        np.testing.assert_allclose(float(loglik), expected, rtol=1e-12)
        np.testing.assert_allclose(float(loglik_prepared), expected, rtol=1e-12)
        responsibilities = np.exp(per_component - scipy.special.logsumexp(per_component, 0))
        np.testing.assert_allclose(
            stats["closed"]["weights"]["counts"].reshape(-1), responsibilities.sum(1), rtol=1e-10
        )


def test_analysis_and_first_fit_compile_programs_not_operations():
    """A first `init` and `fit` of a NumPyro model compile tens of programs, not one per
    operation: the analysis's programs are traced without compile-time evaluation (under it
    every operation on a constant ran on its own) and the E-step's trace without NumPyro's
    validation of constant arguments (each check a program). Before, this model's `init`
    compiled 65 programs, a full-covariance mixture's `init` and first `fit` 128 (3.4 + 0.8
    s); its fit is one program now. A configuration no other test compiles."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3)) + 4.0 * (rng.random((300, 1)) > 0.5)

    def model(X):
        weights = numpyro.param("weights", jnp.full(2, 0.5), constraint=constraints.simplex)
        means = numpyro.param("means", jnp.asarray([[0.0] * 3, [4.0] * 3]))
        scales = numpyro.param("scales", jnp.ones((2, 3)), constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=X)

    ours = jaxem.NumPyroModel(model)
    with lowerings() as lowered:
        params = ours.init(jax.random.key(0), X)
    assert len(lowered) <= 40, len(lowered)
    with lowerings() as lowered:
        fitted = jaxem.fit(ours, X, params, tol=1e-10, max_iter=300)
    assert len(lowered) <= 3, len(lowered)
    hand = jaxem.GaussianMixture(2, "diag", reg_covar=0.0)
    start = hand.from_mixture_params(
        jaxem.MixtureParams(
            params["weights"],
            jaxem.families.GaussianParams(params["means"], params["scales"] ** 2),
        )
    )
    want = jaxem.fit(hand, X, start, tol=1e-10, max_iter=300)
    np.testing.assert_allclose(fitted.objective, want.objective, rtol=1e-10)


def test_a_selection_by_the_data_is_read_from_the_data():
    """Locations chosen by a latent class and by a column of the data, ``locs[z, g]`` with
    ``g = x_0 > 5``: on the analysis's probe rows (0s and 1s, and the data's first rows, all
    in group 0) the column never exceeds 5, so the selection repeats there; it must still be
    taken from the data (a selection known before the data is only one the program computes
    without it), and the fit must be the closed-form EM written out in NumPy here."""
    rng = np.random.default_rng(11)
    n = 300
    group = np.sort(rng.integers(0, 2, n))  # the first rows (the analysis's) all in group 0
    z = rng.integers(0, 2, n)
    column = np.where(group == 1, 8.0, 2.0) + rng.uniform(-1, 1, n)
    y = rng.normal(np.array([[-2.0, 1.0], [2.0, 4.0]])[z, group], 1.0)
    X = jnp.asarray(np.stack([column, y], axis=1))
    start = np.array([[-1.0, 0.0], [1.0, 3.0]])

    def model(X):
        weights = numpyro.param("weights", jnp.ones(2) / 2, constraint=constraints.simplex)
        locs = numpyro.param("locs", jnp.asarray(start))
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            g = (X[:, 0] > 5).astype(jnp.int32)
            numpyro.sample("y", dist.Normal(locs[z, g], 1.0), obs=X[:, 1])

    ours = jaxem.NumPyroModel(model)
    plan = ours.plan(X.shape[1:], X.dtype, X)
    static = {(param, site) for param, site, _ in plan.selections}
    assert ("weights", "z") in static and ("locs", "y") not in static
    fit = jaxem.fit(ours, X, ours.init(jax.random.key(0), X), tol=0.0, max_iter=10)

    weights, locs = np.full(2, 0.5), start.copy()
    g = (np.asarray(X[:, 0]) > 5).astype(int)
    yv = np.asarray(X[:, 1])
    for _ in range(10):
        log_r = np.log(weights) + scipy.stats.norm.logpdf(yv[:, None], locs[:, g].T, 1.0)
        r = np.exp(log_r - scipy.special.logsumexp(log_r, axis=1, keepdims=True))
        weights = r.mean(axis=0)
        for k in range(2):
            for h in range(2):
                in_group = g == h
                locs[k, h] = np.sum(r[in_group, k] * yv[in_group]) / np.sum(r[in_group, k])
    assert_close(fit.params["weights"], weights, 1e-8)
    assert_close(fit.params["locs"], locs, 1e-8)
