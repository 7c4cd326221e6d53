"""The theory as properties (hypothesis): monotone ascent, invariance to the order of the data,
equivariance to shifting and scaling it. Shapes are fixed so that examples reuse compiled code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxem

N, D, MAX_ITER = 48, 2, 25
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


def _data(seed: int, k: int) -> np.ndarray:
    """A random mixture: k random centres, random anisotropic spreads, random sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, D))
    labels = rng.integers(0, k, N)
    scales = rng.uniform(0.2, 2.0, (k, D))
    return centres[labels] + rng.normal(size=(N, D)) * scales[labels]


def _start(model, X, seed: int, random_means: bool):
    params = model.init(jax.random.key(seed), X)
    if random_means:  # an arbitrary start: means at random rows
        rows = np.random.default_rng(seed).choice(N, model.n_components, replace=False)
        params = params._replace(means=jnp.asarray(X[rows]))
    return params


def _setup(case):
    seed, covariance_type, k, random_means = case
    X = _data(seed, k)
    model = jaxem.GaussianMixture(k, covariance_type)
    return X, model, _start(model, X, seed, random_means)


def _assert_ascends(model, X, start, prior=None, accelerate=None):
    result = jaxem.fit(
        model, X, start, prior=prior, tol=0, max_iter=MAX_ITER, accelerate=accelerate
    )
    _, initial = model.e_step(start, jnp.asarray(X), jnp.ones(N))
    if prior is not None:
        initial = initial + model.log_prior(start, prior)
    curve = np.concatenate([[float(initial)], np.asarray(result.history)])
    assert np.all(np.isfinite(curve))
    assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:])), np.diff(curve).min()


cases = st.tuples(
    st.integers(0, 2**31 - 1),
    st.sampled_from(COVARIANCE_TYPES),
    st.integers(1, 3),
    st.booleans(),
)


@SETTINGS
@given(cases)
def test_objective_never_decreases(case):
    X, model, start = _setup(case)
    _assert_ascends(model, X, start)


@SETTINGS
@given(cases)
def test_invariant_to_permuting_the_data(case):
    X, model, start = _setup(case)
    perm = np.random.default_rng(case[0] + 1).permutation(N)
    a = jaxem.fit(model, X, start, tol=0, max_iter=MAX_ITER)
    b = jaxem.fit(model, X[perm], start, tol=0, max_iter=MAX_ITER)
    for x, y in zip(a.params, b.params, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-10)


@SETTINGS
@given(cases, st.floats(0.01, 100.0), st.floats(-50.0, 50.0))
def test_equivariant_to_shifting_and_scaling(case, scale, shift):
    """x -> a x + b maps means to a mu + b, covariances to a^2 Sigma (reg_covar scaled with
    them), and lowers the log-likelihood by N D log a."""
    X, model, start = _setup(case)
    scaled_model = jaxem.GaussianMixture(
        model.n_components, model.covariance_type, reg_covar=model.reg_covar * scale**2
    )
    b = shift * np.array([1.0, -0.5])
    moved_start = jaxem.GaussianMixtureParams(
        start.weights, scale * start.means + b, scale**2 * start.covariances
    )
    ref = jaxem.fit(model, X, start, tol=0, max_iter=MAX_ITER)
    moved = jaxem.fit(scaled_model, scale * X + b, moved_start, tol=0, max_iter=MAX_ITER)
    np.testing.assert_allclose(moved.params.weights, ref.params.weights, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        moved.params.means,
        scale * ref.params.means + b,
        rtol=1e-6,
        atol=1e-8 * (scale + abs(shift)),
    )
    np.testing.assert_allclose(
        moved.params.covariances, scale**2 * ref.params.covariances, rtol=1e-6, atol=1e-9 * scale**2
    )
    np.testing.assert_allclose(
        moved.objective, ref.objective - N * D * np.log(scale), rtol=1e-8, atol=1e-8
    )


@SETTINGS
@given(cases)
def test_map_objective_never_decreases(case):
    """MAP-EM with mclust's default prior: the log joint ascends monotonically."""
    X, model, start = _setup(case)
    _assert_ascends(model, X, start, jaxem.default_prior(model, X))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(cases, st.booleans())
def test_accelerated_objective_never_decreases(case, use_prior):
    """SQUAREM's accepted iterates (``accelerate="squarem"``) ascend too, from k-means and
    arbitrary starts, MLE and MAP."""
    X, model, start = _setup(case)
    prior = jaxem.default_prior(model, X) if use_prior else None
    _assert_ascends(model, X, start, prior, accelerate="squarem")


# -- the discrete families --------------------------------------------------------------------

FAMILIES = {
    "bernoulli": jaxem.families.Bernoulli(),
    "categorical": jaxem.families.Categorical((2, 3, 4)),
    "poisson": jaxem.families.Poisson(),
}
K_DISCRETE = 2


def _discrete_case(name: str, seed: int):
    """Random data of the family (N x 3) from a random two-component mixture, a random start
    and a random prior (every hyperparameter >= 1)."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, K_DISCRETE, N)
    k, d = K_DISCRETE, 3

    def draw_params():
        if name == "bernoulli":
            return jaxem.families.BernoulliParams(jnp.asarray(rng.uniform(0.05, 0.95, (k, d))))
        if name == "poisson":
            return jaxem.families.PoissonParams(jnp.asarray(rng.uniform(0.2, 8.0, (k, d))))
        probs = np.zeros((k, d, 4))
        for j, c in enumerate((2, 3, 4)):
            probs[:, j, :c] = rng.dirichlet(np.ones(c), size=k)
        return jaxem.families.CategoricalParams(jnp.asarray(probs))

    truth = draw_params()
    p = np.asarray(truth[0])
    if name == "bernoulli":
        X = (rng.uniform(size=(N, d)) < p[z]).astype(float)
        prior = jaxem.families.BetaPrior(rng.uniform(1, 3, (k, d)), rng.uniform(1, 3, (k, d)))
    elif name == "poisson":
        X = rng.poisson(p[z]).astype(float)
        prior = jaxem.families.GammaPrior(rng.uniform(1, 3, (k, d)), rng.uniform(0.1, 2, (k, d)))
    else:
        X = np.array([[rng.choice(4, p=p[zi, j]) for j in range(d)] for zi in z], dtype=float)
        prior = jaxem.families.DirichletPrior(rng.uniform(1, 3, (k, d, 4)))
    weights = rng.dirichlet(np.ones(k))
    start = jaxem.MixtureParams(jnp.asarray(weights), draw_params())
    return X, start, jaxem.MixturePrior(rng.uniform(1, 3, k), prior)


discrete_cases = st.tuples(st.sampled_from(sorted(FAMILIES)), st.integers(0, 2**31 - 1))


@SETTINGS
@given(discrete_cases, st.booleans())
def test_discrete_families_ascend(case, use_prior):
    """Bernoulli, categorical and Poisson mixtures from random starts: the log-likelihood (MLE)
    and the log joint (MAP, random Beta / Dirichlet / Gamma priors) never decrease."""
    name, seed = case
    X, start, prior = _discrete_case(name, seed)
    model = jaxem.Mixture(FAMILIES[name], K_DISCRETE)
    _assert_ascends(model, X, start, prior if use_prior else None)
    if seed % 3 == 0:  # SQUAREM's accepted iterates ascend too (a third of the examples)
        _assert_ascends(model, X, start, prior if use_prior else None, "squarem")


@SETTINGS
@given(discrete_cases)
def test_permuting_the_components_of_the_start_permutes_the_fit(case):
    name, seed = case
    X, start, prior = _discrete_case(name, seed)
    model = jaxem.Mixture(FAMILIES[name], K_DISCRETE)
    a = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=MAX_ITER)
    swapped_prior = jax.tree.map(lambda h: h[::-1], prior)  # every leaf has K first
    b = jaxem.fit(
        model, X, model.permute(start, [1, 0]), prior=swapped_prior, tol=0, max_iter=MAX_ITER
    )
    swapped = model.permute(a.params, [1, 0])
    for x, y in zip(jax.tree.leaves(swapped), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-12)


# -- hidden Markov models: S = 3 sequences of T = 16 steps, K = 3 states ---------------------

HMM = jaxem.HiddenMarkovModel(jaxem.families.Gaussian("diag"), 3)


def _hmm_case(seed: int, zeros: bool):
    """Sequences from a random chain (its padding random too), a random start with, when
    ``zeros``, structural zeros in the transitions, and random Dirichlet priors."""
    rng = np.random.default_rng(seed)
    k = HMM.n_states
    transitions = rng.dirichlet(np.ones(k), size=k)
    if zeros:
        transitions[0, 2] = transitions[2, 1] = 0.0
        transitions /= transitions.sum(1, keepdims=True)
    start = jaxem.HMMParams(
        jnp.asarray(rng.dirichlet(np.ones(k))),
        jnp.asarray(transitions),
        jaxem.families.GaussianParams(
            jnp.asarray(rng.normal(0, 2, (k, D))), jnp.asarray(rng.uniform(0.3, 3, (k, D)))
        ),
    )
    X, _ = HMM.sample(jax.random.key(seed), start, 16, 3)
    lengths = rng.integers(1, 17, 3)
    weights = (np.arange(16)[None, :] < lengths[:, None]).astype(float)
    X = np.where(weights[..., None] > 0, X, rng.normal(size=X.shape) * 100)
    prior = jaxem.default_prior(HMM, X)._replace(
        initial=jnp.asarray(rng.uniform(1, 3, k)),
        transitions=jnp.asarray(rng.uniform(1, 3, (k, k))),
    )
    return X, weights, start, prior


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.booleans(), st.booleans())
def test_hmm_ascends(seed, zeros, use_prior):
    """Baum-Welch from random starts (with structural zeros or not) on padded sequences of
    random lengths: the log-likelihood (MLE) and the log joint (MAP, random Dirichlet priors on
    the chain) never decrease, and structural zeros stay zero."""
    X, weights, start, prior = _hmm_case(seed, zeros)
    prior = prior if use_prior else None
    result = jaxem.fit(HMM, X, start, weights=weights, prior=prior, tol=0, max_iter=MAX_ITER)
    history = np.asarray(result.history)
    assert np.all(np.isfinite(history))
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    zero = np.asarray(start.transitions) == 0
    assert np.all(np.asarray(result.params.transitions)[zero] == 0)


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_hmm_relabelling_the_start_relabels_the_fit(seed):
    X, weights, start, prior = _hmm_case(seed, False)
    order = [2, 0, 1]
    a = jaxem.fit(HMM, X, start, weights=weights, tol=0, max_iter=MAX_ITER)
    b = jaxem.fit(HMM, X, HMM.permute(start, order), weights=weights, tol=0, max_iter=MAX_ITER)
    for x, y in zip(
        jax.tree.leaves(HMM.permute(a.params, order)), jax.tree.leaves(b.params), strict=True
    ):
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-12)
    # the relabelled fit sums in another order; after MAX_ITER iterations at tol=0, short of
    # convergence, the objectives differ by rounding: measured up to 1.3e-11 relative, 1.1e-10
    # with the suite's unoptimised build (conftest), the parameters' 1e-8 times the gradient
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9)


# -- missing values -----------------------------------------------------------------------------


@SETTINGS
@given(cases, st.floats(0.0, 0.5), st.booleans())
def test_ascends_with_values_missing_at_random(case, fraction, use_prior):
    """Gaussian mixtures of every covariance type with a random fraction of the values removed
    at random (some rows entirely): the observed-data log-likelihood (MLE) and the log joint
    (MAP, mclust's default prior) never decrease, from k-means or arbitrary starts."""
    seed, covariance_type, k, random_means = case
    X = _data(seed, k)
    X[np.random.default_rng(seed + 1).random(X.shape) < fraction] = np.nan
    if np.all(np.isnan(X)):
        X[0, 0] = 0.0
    model = jaxem.GaussianMixture(k, covariance_type, missing=True)
    start = model.init(jax.random.key(seed), X)
    if random_means:
        rows = np.random.default_rng(seed).choice(N, k, replace=False)
        means = np.where(np.isnan(X[rows]), np.nanmean(X, axis=0), X[rows])
        start = start._replace(means=jnp.asarray(np.nan_to_num(means)))
    _assert_ascends(model, X, start, jaxem.default_prior(model, X) if use_prior else None)


@SETTINGS
@given(discrete_cases, st.floats(0.0, 0.5), st.booleans())
def test_discrete_families_ascend_with_values_missing_at_random(case, fraction, use_prior):
    """Bernoulli, categorical and Poisson mixtures with a random fraction of entries missing,
    from random starts, with and without random priors: no decrease."""
    name, seed = case
    X, start, prior = _discrete_case(name, seed)
    X[np.random.default_rng(seed + 1).random(X.shape) < fraction] = np.nan
    if np.all(np.isnan(X)):
        X[0, 0] = 0.0
    family = {
        "bernoulli": jaxem.families.Bernoulli(missing=True),
        "categorical": jaxem.families.Categorical((2, 3, 4), missing=True),
        "poisson": jaxem.families.Poisson(missing=True),
    }[name]
    model = jaxem.Mixture(family, K_DISCRETE)
    _assert_ascends(model, X, start, prior if use_prior else None)


# -- mclust's fourteen covariance structures --------------------------------------------------

MCLUST_MODELS = jaxem.gaussian_mixture.MCLUST_MODELS
# a rotation of the data maps these model classes to themselves (the diagonal ones are tied to
# the axes); their iterative M-steps' inner loops are equivariant too
ROTATION_INVARIANT = tuple(m for m in MCLUST_MODELS if m not in ("EEI", "VEI", "EVI", "VVI"))
K_STRUCTURES = 3


def _covariances(model, params):
    """``(K, D, D)`` whatever the structure's layout."""
    components = model.as_mixture_params(params).components
    return np.asarray(model.family.component_covariances(components, model.n_components))


@pytest.mark.parametrize("name", MCLUST_MODELS)
@settings(max_examples=2, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 2 * np.pi))
def test_every_structure_ascends_and_is_invariant(name, seed, angle):
    """Each of mclust's fourteen models, random data and a random soft start (the M-step of
    Dirichlet responsibilities), K = 3: the log-likelihood never decreases (nor, for the ten
    with a prior, the log posterior under mclust's default prior); components of the start in a
    random order give the fit's in that order; for the rotation-invariant classes, data and
    start rotated by a random angle about the data's centre give the rotated fit, with the same
    log-likelihood."""
    rng = np.random.default_rng(seed)
    X = _data(seed, K_STRUCTURES)
    model = jaxem.GaussianMixture(K_STRUCTURES, name)
    resp = rng.dirichlet(np.ones(K_STRUCTURES), size=N)
    start = model.m_step(model.stats(X, resp))
    _assert_ascends(model, X, start)
    if model.family.structure.has_map:
        _assert_ascends(model, X, start, jaxem.default_prior(model, X))

    fit = jaxem.fit(model, X, start, tol=0, max_iter=MAX_ITER)
    order = rng.permutation(K_STRUCTURES)
    relabelled = jaxem.fit(model, X, model.permute(start, order), tol=0, max_iter=MAX_ITER)
    np.testing.assert_allclose(relabelled.objective, fit.objective, rtol=1e-10)
    np.testing.assert_allclose(relabelled.params.weights, fit.params.weights[order], atol=1e-8)
    np.testing.assert_allclose(relabelled.params.means, fit.params.means[order], atol=1e-7)
    scale = np.abs(_covariances(model, fit.params)).max()
    np.testing.assert_allclose(
        _covariances(model, relabelled.params),
        _covariances(model, fit.params)[order],
        atol=1e-7 * scale,
    )
    if name not in ROTATION_INVARIANT:
        return
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = X.mean(axis=0)
    Xr = (X - centre) @ R.T + centre
    rotated = jaxem.fit(model, Xr, model.m_step(model.stats(Xr, resp)), tol=0, max_iter=MAX_ITER)
    np.testing.assert_allclose(rotated.objective, fit.objective, rtol=1e-8)
    np.testing.assert_allclose(
        rotated.params.means, (fit.params.means - centre) @ R.T + centre, atol=1e-6
    )
    expected = np.einsum("de,kef,gf->kdg", R, _covariances(model, fit.params), R)
    np.testing.assert_allclose(_covariances(model, rotated.params), expected, atol=1e-6 * scale)
