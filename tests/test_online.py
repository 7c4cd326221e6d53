"""Online (stepwise) EM (`jaxem.online`): one update with a step of one on all the data is one
EM iteration; the step sizes' conditions; the running average's bias correction; Polyak
averaging; one pass over a million rows reaches the batch maximum within 1e-3 per observation."""

import io
from contextlib import redirect_stderr

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import families, online, sources

RNG = np.random.default_rng(3)


def gap(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(np.asarray(y)), 1)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def blobs(n, k=4, d=4, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 3
    scales = rng.uniform(0.5, 1.5, k)
    labels = rng.integers(0, k, n)
    return means[labels] + rng.normal(size=(n, d)) * scales[labels, None]


X_SMALL = blobs(2000)
MODELS = {
    "gaussian full": (jaxem.GaussianMixture(4, "full"), X_SMALL),
    "gaussian VEV": (jaxem.GaussianMixture(3, "VEV"), X_SMALL[:, :3]),
    "poisson": (jaxem.Mixture(families.Poisson(), 2), RNG.poisson(3.0, (500, 2)).astype(float)),
}


@pytest.mark.parametrize("use_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("name", list(MODELS))
def test_step_of_one_on_all_the_data_is_one_em_iteration(name, use_prior):
    model, X = MODELS[name]
    prior = jaxem.default_prior(model, X) if use_prior else None
    start = model.init(jax.random.key(0), X)
    em = online.stepwise(model, step_size=1.0, prior=prior)
    state = em.update(em.init(start, X), X)
    expected, objective = jaxem.em_step(model, start, X, prior=prior)
    assert gap(state.params, expected) < 1e-12
    # the score is the log-likelihood per row at the parameters before the update
    loglik = objective - (0 if prior is None else model.log_prior(start, prior))
    np.testing.assert_allclose(state.loglik * len(X), loglik, rtol=1e-12)


def test_hmm_sequences_in_one_minibatch():
    model = jaxem.HiddenMarkovModel(families.Gaussian("diag"), 2)
    X = np.stack([X_SMALL[i * 50 : (i + 1) * 50, :2] for i in range(8)])
    start = model.init(jax.random.key(0), X)
    em = online.stepwise(model, step_size=1.0)
    expected, _ = jaxem.em_step(model, start, X)
    assert gap(em.update(em.init(start, X), X).params, expected) < 1e-12


def test_first_update_is_an_em_step_on_the_first_minibatch_whatever_the_schedule():
    """The running average starts at zero and is divided by its mass m_t: after one update it
    is the first minibatch's statistics, whatever gamma_1 is."""
    model, X = MODELS["gaussian full"]
    start = model.init(jax.random.key(0), X)
    em = online.stepwise(model, alpha=0.7, t0=10.0)
    state = em.update(em.init(start, X), X[:500])
    np.testing.assert_allclose(state.mass, 11.0**-0.7, rtol=1e-14)
    assert gap(state.params, jaxem.em_step(model, start, X[:500])[0]) < 1e-12
    # then the steps: m_2 = m_1 + gamma_2 (1 - m_1)
    state = em.update(state, X[500:1000])
    np.testing.assert_allclose(state.mass, 11.0**-0.7 + 12.0**-0.7 * (1 - 11.0**-0.7))
    np.testing.assert_allclose(em.step_size(jnp.asarray(3.0)), 13.0**-0.7)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 0.5}, "alpha must be in"),
        ({"alpha": 1.2}, "alpha must be in"),
        ({"alpha": 0.0}, "alpha must be in"),
        ({"alpha": "fast"}, "alpha must be in"),
        ({"t0": -1.0}, "t0 must be a number >= 0"),
        ({"step_size": 0.0}, r"step_size must be a number in \(0, 1\]"),
        ({"step_size": 1.5}, r"step_size must be a number in \(0, 1\]"),
        ({"average_from": 0}, "average_from"),
    ],
)
def test_step_size_conditions_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        online.stepwise(jaxem.GaussianMixture(2), **options)


def test_polyak_average_is_the_mean_of_the_iterates():
    model, X = MODELS["gaussian full"]
    start = model.init(jax.random.key(0), X)
    em = online.stepwise(model, alpha=0.6, average_from=3)
    state = em.init(start, X)
    iterates = []
    for i in range(6):
        state = em.update(state, X[i * 300 : (i + 1) * 300])
        iterates.append(state.params)
        if i < 2:  # before update 3: no averaging
            assert gap(state.averaged, state.params) == 0
    mean = jax.tree.map(lambda *p: sum(p) / len(p), *iterates[2:])
    assert gap(state.averaged, mean) < 1e-13


@pytest.fixture(scope="module")
def million():
    X = blobs(1_000_000)
    model = jaxem.GaussianMixture(4, "full")
    start = model.init(jax.random.key(1), X[:5000])
    # batch EM's maximum, reached by SQUAREM in 6 iterations where plain EM takes 42
    batch = jaxem.fit(model, X, start, tol=1e-10, max_iter=500, accelerate="squarem")
    assert bool(batch.converged)
    return model, X, start, float(batch.objective) / len(X)


@pytest.mark.parametrize("average_from", [None, 100])
def test_one_pass_over_a_million_rows_reaches_the_batch_maximum(million, average_from):
    """K = 4 Gaussians in D = 4, minibatches of 1,000 rows under ``lax.scan``: one pass ends
    within 1e-3 per observation of batch EM's maximum (measured: 1.9e-4 from the last iterate,
    3.4e-6 from the average of the iterates)."""
    model, X, start, best = million
    em = online.stepwise(model, alpha=0.6, average_from=average_from)
    state, _ = jax.lax.scan(
        lambda s, x: (em.update(s, x), None), em.init(start, X[:1000]), X.reshape(-1, 1000, 4)
    )
    assert int(state.n_updates) == 1000 and float(state.n_seen) == len(X)
    final = state.params if average_from is None else state.averaged
    _, reached = jaxem.em_step(model, final, X)
    shortfall = best - float(reached) / len(X)
    assert -1e-9 < shortfall < (1e-3 if average_from is None else 1e-4)


def test_fit_source_updates_once_per_block():
    model, X = MODELS["gaussian full"]
    start = model.init(jax.random.key(0), X)
    em = online.stepwise(model, alpha=0.8)
    err = io.StringIO()
    with redirect_stderr(err):
        state = online.fit_source(em, sources.array(X, 300), start, passes=2)
    assert "pass 2: 2,000 rows" in err.getvalue()
    # by hand: blocks of 300, the last one of 200 rows padded with 100 of weight zero
    by_hand = em.init(start, X)
    for _ in range(2):
        for i in range(0, 2000, 300):
            block, w = X[i : i + 300], np.ones(min(300, 2000 - i))
            block = np.concatenate([block, np.zeros((300 - len(block), 4))])
            w = np.concatenate([w, np.zeros(300 - len(w))])
            by_hand = em.update(by_hand, block, w)
    assert int(state.n_updates) == 14
    assert gap(state.params, by_hand.params) < 1e-12
