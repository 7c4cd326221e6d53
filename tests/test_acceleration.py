"""SQUAREM-accelerated EM (``accelerate="squarem"``): Hasselblad's Poisson mixture against R's
SQUAREM package (tests/data/squarem/hasselblad.R), the same fixed point as plain EM for every
family and covariance type (MLE and MAP), monotone histories, per-member state under
fit_batch, vmap, fit_restarts and row blocks, and bad input."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, rel_err
from scipy.special import gammaln
from test_families import _bernoulli_data, _categorical_data, _poisson_data

import jaxem
from jaxem import families

REFERENCE = json.loads((Path(__file__).parent / "data/squarem/hasselblad.json").read_text())
COUNTS = np.arange(10.0)[:, None]
FREQUENCIES = np.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1.0])


def _hasselblad_start():
    weight, rate_1, rate_2 = REFERENCE["start"]
    return jaxem.MixtureParams(
        jnp.array([weight, 1 - weight]), families.PoissonParams(jnp.array([[rate_1], [rate_2]]))
    )


def _negative_loglik(params):
    """Written out: -sum_c f_c log(sum_k w_k Poisson(c; rate_k))."""
    w = np.asarray(params.weights)
    rates = np.asarray(params.components.rates)[:, 0]
    c = COUNTS[:, 0]
    log_pmf = c[:, None] * np.log(rates) - rates - gammaln(c + 1)[:, None]
    return -float(np.sum(FREQUENCIES * np.log(np.exp(log_pmf) @ w)))


@pytest.fixture(scope="module")
def hasselblad():
    model = jaxem.Mixture(families.Poisson(), 2)
    fits = {
        accelerate: jaxem.fit(
            model,
            COUNTS,
            _hasselblad_start(),
            weights=FREQUENCIES,
            tol=1e-13,
            max_iter=20_000,
            accelerate=accelerate,
        )
        for accelerate in (None, "squarem")
    }
    return fits[None], fits["squarem"]


def test_hasselblad_same_optimum_in_a_tenth_of_the_e_steps(hasselblad):
    plain, accelerated = hasselblad
    optimum = REFERENCE["squarem_negative_loglik"]  # R: 1989.94585988296
    assert abs(optimum - 1989.9459) < 5e-5
    for fit in (plain, accelerated):
        assert bool(fit.converged)
        assert abs(-float(fit.objective) - optimum) < 1e-6
        assert abs(_negative_loglik(fit.params) - optimum) < 1e-6
    assert int(plain.n_evals) >= 10 * int(accelerated.n_evals)
    # the same point as R's SQUAREM (its rule: a parameter change below 1e-10; the likelihood is
    # so flat here that points 1e-6 apart agree in it to 1e-11)
    ours = np.array(
        [accelerated.params.weights[0], *np.asarray(accelerated.params.components.rates)[:, 0]]
    )
    np.testing.assert_allclose(ours, REFERENCE["squarem_params"], rtol=1e-5)
    # R's count of EM maps and objective evaluations (each is one E-step here): 78 + 27
    r_evaluations = REFERENCE["squarem_fpevals"] + REFERENCE["squarem_objfevals"]
    assert int(accelerated.n_evals) <= 1.2 * r_evaluations


def test_counts_and_history_keep_their_meaning(hasselblad):
    plain, accelerated = hasselblad
    assert int(plain.n_evals) == int(plain.n_iter) + 1
    assert int(accelerated.n_evals) == 3 * int(accelerated.n_iter) + 1
    for fit in (plain, accelerated):
        n = int(fit.n_iter)
        history = np.asarray(fit.history)
        assert np.all(np.isfinite(history[:n])) and np.all(np.isnan(history[n:]))
        assert float(fit.objective) == history[n - 1]
        assert np.all(np.diff(history[:n]) >= 0)
        # the stopping rule: the last accepted change per unit weight is below tol
        assert abs(history[n - 1] - history[n - 2]) / FREQUENCIES.sum() < 1e-13


# -- the same fixed point as plain EM, every family, MLE and MAP ------------------------------

RNG = np.random.default_rng(7)
XC, CATS = _categorical_data(RNG)
FAMILIES = {
    # reg_covar=0: the exact maximum-likelihood M-step, whose EM never decreases the objective
    **{f"gaussian {t}": (families.Gaussian(t, 0.0), 3, None) for t in COVARIANCE_TYPES},
    "bernoulli": (families.Bernoulli(), 3, _bernoulli_data(RNG)),
    "categorical": (families.Categorical(CATS), 2, XC),
    "poisson": (families.Poisson(), 2, _poisson_data(RNG)),
    # values missing at random: a quarter of Old Faithful's (the first row kept whole)
    "gaussian full, missing": (families.Gaussian("full", 0.0, missing=True), 3, "missing"),
}


@pytest.mark.parametrize("use_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_fixed_point_equals_plain_em(name, use_prior, faithful):
    family, k, X = FAMILIES[name]
    if isinstance(X, str):
        X = np.where(np.random.default_rng(1).random(faithful.shape) < 0.25, np.nan, faithful)
        X[0] = faithful[0]
    X = jnp.asarray(faithful if X is None else X)  # Old Faithful: K=3 on two clusters
    model = jaxem.Mixture(family, k)
    prior = jaxem.default_prior(model, X) if use_prior else None
    start = model.init(jax.random.key(0), X)
    plain = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=5000)
    accelerated = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=300, accelerate="squarem")
    for a, b in zip(
        jax.tree.leaves(accelerated.params), jax.tree.leaves(plain.params), strict=True
    ):
        assert rel_err(a, b) < 1e-8
    np.testing.assert_allclose(accelerated.objective, plain.objective, rtol=1e-12)
    history = np.asarray(accelerated.history)
    # never decreases (beyond rounding, once at the fixed point)
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    # far fewer E-steps to the same objective (to 1e-9 relative) where EM crawls
    reached = plain.history >= plain.objective - 1e-9 * abs(plain.objective)
    plain_evals = int(np.argmax(reached)) + 2
    reached = accelerated.history >= plain.objective - 1e-9 * abs(plain.objective)
    accelerated_evals = 3 * (int(np.argmax(reached)) + 1) + 1
    if plain_evals > 150:
        assert accelerated_evals * 2 < plain_evals


# -- batches, vmap, restarts, row blocks, hidden Markov models --------------------------------


@pytest.fixture(scope="module")
def batch(faithful):
    X = jnp.stack([jnp.asarray(faithful)[i::3][:90] for i in range(5)])
    model = jaxem.GaussianMixture(3, "full")
    prior = jax.vmap(jaxem.default_prior, (None, 0))(model, X)
    return model, X, prior


def test_fit_batch_members_equal_their_own_fits(batch):
    model, X, prior = batch
    key = jax.random.key(0)
    fits = jaxem.fit_batch(
        model, key, X, prior=prior, tol=1e-10, max_iter=200, lanes=2, accelerate="squarem"
    )
    keys = jax.random.split(key, X.shape[0])
    for b in range(X.shape[0]):
        member_prior = jax.tree.map(lambda a, i=b: a[i], prior)
        start = model.init(keys[b], X[b])
        own = jaxem.fit(
            model, X[b], start, prior=member_prior, tol=1e-10, max_iter=200, accelerate="squarem"
        )
        assert int(fits.n_iter[b]) == int(own.n_iter)
        assert int(fits.n_evals[b]) == int(own.n_evals) == 3 * int(own.n_iter) + 1
        assert bool(fits.converged[b]) == bool(own.converged)
        np.testing.assert_allclose(fits.objective[b], own.objective, rtol=1e-12)
        np.testing.assert_allclose(fits.history[b], own.history, rtol=1e-12)
        for a, c in zip(jax.tree.leaves(fits.params), jax.tree.leaves(own.params), strict=True):
            assert rel_err(a[b], c) < 1e-9


def test_vmap_restarts_and_row_blocks(batch):
    model, X, prior = batch
    data, member_prior = X[0], jax.tree.map(lambda a: a[0], prior)
    starts = jax.vmap(model.init, (0, None))(jax.random.split(jax.random.key(4), 3), data)

    def one(start, chunk_size=None):
        return jaxem.fit(
            model,
            data,
            start,
            prior=member_prior,
            tol=1e-10,
            max_iter=200,
            chunk_size=chunk_size,
            accelerate="squarem",
        )

    mapped = jax.vmap(one)(starts)
    own = [one(jax.tree.map(lambda a, i=i: a[i], starts)) for i in range(3)]
    for i, fit in enumerate(own):
        assert int(mapped.n_iter[i]) == int(fit.n_iter)
        np.testing.assert_allclose(mapped.objective[i], fit.objective, rtol=1e-12)
    blocked = one(jax.tree.map(lambda a: a[0], starts), chunk_size=16)
    assert int(blocked.n_iter) == int(own[0].n_iter)
    np.testing.assert_allclose(blocked.objective, own[0].objective, rtol=1e-12)

    restarts = jaxem.fit_restarts(
        model,
        jax.random.key(4),
        data,
        n_init=3,
        prior=member_prior,
        tol=1e-10,
        max_iter=200,
        accelerate="squarem",
        deterministic_start=False,  # the random starts alone, as ``own``
    )
    best = int(np.argmax([float(f.objective) for f in own]))
    assert int(restarts.best) == best
    assert int(restarts.n_evals) == int(own[best].n_evals)
    np.testing.assert_allclose(restarts.objectives, [f.objective for f in own], rtol=1e-12)


@pytest.mark.parametrize("use_prior", [False, True], ids=["mle", "map"])
def test_hidden_markov_model_same_fixed_point_fewer_e_steps(use_prior):
    """A Gaussian HMM whose start has a structural zero (state 0 never jumps to state 2): the
    zero stays exactly zero through every extrapolation, and the fixed point is plain EM's."""
    model = jaxem.HiddenMarkovModel(families.Gaussian("diag"), 3)
    stay = 0.9
    truth = jaxem.HMMParams(
        jnp.full(3, 1 / 3),
        jnp.full((3, 3), (1 - stay) / 2) + (stay - (1 - stay) / 2) * jnp.eye(3),
        families.GaussianParams(jnp.array([[0.0, 0.0], [1.0, 0.5], [-1.0, 1.0]]), jnp.ones((3, 2))),
    )
    X, _ = model.sample(jax.random.key(2), truth, 100, 6)
    start = model.init(jax.random.key(3), X)
    transitions = start.transitions.at[0, 2].set(0.0)
    start = start._replace(transitions=transitions / transitions.sum(1, keepdims=True))
    prior = jaxem.default_prior(model, X) if use_prior else None
    plain = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=4000)
    accelerated = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=300, accelerate="squarem")
    assert float(accelerated.params.transitions[0, 2]) == 0.0
    np.testing.assert_allclose(accelerated.objective, plain.objective, rtol=1e-14)
    # at a maximum the objective fixes the parameters only to about sqrt(eps |f| / f''):
    # 1e-7 for the initial probabilities of six sequences (1.3e-7 apart when the rounding
    # of rows of weight zero changed, the objectives 2e-12 apart)
    for a, b in zip(
        jax.tree.leaves(accelerated.params), jax.tree.leaves(plain.params), strict=True
    ):
        assert rel_err(a, b) < 1e-6
    history = np.asarray(accelerated.history)
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    target = plain.objective - 1e-9 * abs(plain.objective)
    plain_evals = int(np.argmax(plain.history >= target)) + 2
    accelerated_evals = 3 * (int(np.argmax(accelerated.history >= target)) + 1) + 1
    assert accelerated_evals * 2 < plain_evals


# -- bad input --------------------------------------------------------------------------------


def test_bad_accelerate_is_refused_before_compiling(faithful):
    model = jaxem.GaussianMixture(2)
    start = model.init(jax.random.key(0), faithful)
    with pytest.raises(ValueError, match="accelerate must be None or one of"):
        jaxem.fit(model, faithful, start, accelerate="anderson")
    with pytest.raises(ValueError, match="accelerate must be None or one of"):
        jaxem.fit_batch(model, jax.random.key(0), faithful[None], accelerate=True)
    kmeans = jaxem.KMeans(2)
    centres = kmeans.init(jax.random.key(0), faithful)
    with pytest.raises(TypeError, match="KMeans does not provide"):
        jaxem.fit(kmeans, faithful, centres, accelerate="squarem")
