"""The theory as properties (hypothesis): monotone ascent, invariance to the order of the data,
equivariance to shifting and scaling it. Shapes are fixed so that examples reuse compiled code."""

import jax
import jax.numpy as jnp
import numpy as np
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


def _assert_ascends(model, X, start, prior=None):
    result = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=MAX_ITER)
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
