"""Bad input gets a ValueError/TypeError naming the argument, before any compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem

X = np.random.default_rng(0).normal(size=(30, 2))
MODEL = jaxem.GaussianMixture(2, "full")
START = MODEL.init(jax.random.key(0), X)


def _fit(**kw):
    args = {"model": MODEL, "X": X, "params": START} | kw
    return jaxem.fit(args.pop("model"), args.pop("X"), args.pop("params"), **args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"X": X[:, 0]}, ValueError, "X must be a 2-D array"),
        ({"X": X[None]}, ValueError, "X must be a 2-D array"),
        ({"X": np.where(np.arange(60).reshape(30, 2) == 7, np.nan, X)}, ValueError, "NaN or inf"),
        ({"X": np.where(np.arange(60).reshape(30, 2) == 7, np.inf, X)}, ValueError, "NaN or inf"),
        ({"X": "data.csv"}, TypeError, "X must be an array"),
        ({"tol": -1e-3}, ValueError, "tol must be"),
        ({"tol": float("nan")}, ValueError, "tol must be"),
        ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
        ({"max_iter": 2.5}, TypeError, "max_iter must be a Python int"),
        ({"weights": -np.ones(30)}, ValueError, "weights must be non-negative"),
        ({"weights": np.zeros(30)}, ValueError, "weights must not all be zero"),
        ({"weights": np.ones(29)}, ValueError, r"weights must have shape \(n_samples,\)"),
        ({"weights": np.full(30, np.nan)}, ValueError, "weights contains NaN"),
        ({"weights": np.r_[1.0, np.zeros(29)]}, ValueError, "n_components=2 must be <="),
        ({"params": START._replace(means=START.means[:1])}, ValueError, "params.means"),
        ({"params": START._replace(weights=jnp.ones(3) / 3)}, ValueError, "params.weights"),
        ({"params": START._replace(weights=jnp.array([0.9, 0.3]))}, ValueError, "sum to 1"),
        ({"params": START._replace(covariances=START.covariances[0])}, ValueError, "covariances"),
        (
            {"params": START._replace(covariances=-START.covariances)},
            ValueError,
            "positive definite",
        ),
        (
            {"params": START._replace(covariances=START.covariances.at[0, 0, 1].add(1.0))},
            ValueError,
            "symmetric positive definite",
        ),
        ({"params": START._replace(means=START.means.at[0, 0].set(jnp.nan))}, ValueError, "NaN"),
        ({"params": (1, 2)}, TypeError, "GaussianMixtureParams"),
        ({"X": X[:, :1]}, ValueError, "n_features=1"),
    ],
)
def test_bad_fit_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        _fit(**kwargs)


@pytest.mark.parametrize(
    "covariance_type, covariances",
    [
        ("diag", np.array([[1.0, 0.0], [1.0, 1.0]])),
        ("spherical", np.array([1.0, -1.0])),
        ("tied", np.array([[1.0, 2.0], [2.0, 1.0]])),
    ],
)
def test_not_positive_definite(covariance_type, covariances):
    model = jaxem.GaussianMixture(2, covariance_type)
    params = jaxem.GaussianMixtureParams(jnp.array([0.5, 0.5]), jnp.zeros((2, 2)), covariances)
    with pytest.raises(ValueError, match="params.covariances must be"):
        jaxem.fit(model, X, params)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_components": 0}, "n_components must be an integer >= 1"),
        ({"n_components": 2.0}, "n_components must be an integer"),
        ({"n_components": 2, "covariance_type": "ful"}, "covariance_type must be one of"),
        ({"n_components": 2, "reg_covar": -1.0}, "reg_covar must be"),
    ],
)
def test_bad_model(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxem.GaussianMixture(**kwargs)


def test_init_checks():
    with pytest.raises(ValueError, match="n_components=31 must be <= the number of samples"):
        jaxem.GaussianMixture(31).init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="X must be a 2-D array"):
        MODEL.init(jax.random.key(0), X[:, 0])


def test_value_checks_are_skipped_under_tracing_but_shapes_are_not():
    """Inside a caller's jit the values are unknown: no value check, but shapes still checked."""

    @jax.jit
    def run(X, params):
        return jaxem.fit(MODEL, X, params, max_iter=3)

    bad_values = START._replace(weights=jnp.array([0.9, 0.3]))
    assert run(X, bad_values).n_iter == 3  # traced: no value check
    with pytest.raises(ValueError, match="params.means"):
        run(X, START._replace(means=START.means[:1]))
    with pytest.raises(ValueError, match="X must be a 2-D array"):
        run(X[:, 0], START)


def test_checks_run_before_compilation(monkeypatch):
    """A bad input never reaches the compiled driver."""
    from jaxem import em

    def fail(*args, **kwargs):
        raise AssertionError("compiled driver was called")

    monkeypatch.setattr(em, "run", fail)
    with pytest.raises(ValueError, match="NaN"):
        jaxem.fit(MODEL, np.full((30, 2), np.nan), START)


def test_messages_name_what_a_user_got_wrong(faithful):
    model = jaxem.GaussianMixture(2)
    params = model.init(jax.random.key(0), faithful)
    with pytest.raises(ValueError, match="X has 1 features .* the parameters are for 2"):
        model.predict(params, faithful[:, :1])
    with pytest.raises(TypeError, match=r"n_components must be numbers .* got '1-3'"):
        jaxem.select(faithful, "1-3", key=jax.random.key(0))
