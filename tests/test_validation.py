"""Bad input gets a ValueError/TypeError naming the argument, before any compilation."""

import warnings

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


def _far(offset: float, spread: float, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(3)
    return offset + spread * rng.normal(size=(n, 2))


@pytest.mark.parametrize(
    "offset, spread, warned",
    [
        (1e5, 0.3, True),  # float32 spaces 1e5 0.0078 apart: 2.6 % of the spread
        (4.1e6, 1.0, True),  # metres in projected coordinates: spacing 0.25
        (4e4, 0.3, True),  # 0.0039: 1.3 %
        (3e4, 0.3, False),  # 0.0020: 0.65 %
        (1e5, 1.0, False),  # 0.8 %: under the warning's 1 %
        (1e3, 0.01, False),  # 6e-5 of a spread of 0.01: 0.6 %
        (0.0, 1.0, False),
    ],
)
def test_float32_data_far_from_the_origin_for_their_spread_warn(offset, spread, warned):
    """float32 data whose columns sit far from the origin for their spread (float32's spacing
    at the largest value over 1 % of the standard deviation): `fit` warns before compiling, the
    warning names the column and points at the caller's line; float64 data never warn."""
    X = _far(offset, spread)
    X[:, 1] -= offset  # a second column near the origin
    bad_weights = np.ones(len(X) - 1)  # refused after the data's checks: nothing compiles
    for dtype, expected in ((jnp.float32, warned), (jnp.float64, False)):
        with pytest.raises(ValueError, match="weights must have shape"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                jaxem.fit(MODEL, jnp.asarray(X, dtype), START, weights=bad_weights)
        ours = [w for w in caught if "resolves only to" in str(w.message)]
        assert len(ours) == int(expected), (dtype, [str(w.message) for w in caught])
        if expected:
            assert "X (float32): column 0 has values up to" in str(ours[0].message)
            assert ours[0].filename == __file__


def test_unresolved_column_reads_spread_and_spacing():
    """`unresolved_column` against the numbers: spacing of float32 at the column's largest
    absolute value over its standard deviation (NaN left out, constant columns skipped)."""
    from jaxem.validation import unresolved_column

    X = np.zeros((5, 3))
    X[:, 0] = 7.0  # constant: nothing to resolve
    X[:, 1] = [1e5, 1e5 + 1, np.nan, 1e5 - 1, 1e5]  # std sqrt(0.5); spacing 2**-7 (1.1 %)
    X[:, 2] = [0.0, 1.0, 2.0, 3.0, 4.0]
    reason = unresolved_column(X, ["a", "b", "c"], relative_spacing=1e-2)
    assert reason == (
        "column 'b' has values up to 100001 and a spread of 0.707, which float32 resolves only "
        "to 0.0078"
    )
    assert unresolved_column(X, relative_spacing=0.012) is None  # 2**-7 / sqrt(0.5) = 0.0110
    assert "column 1" in unresolved_column(X)


def test_fit_batch_warns_for_float32_data_far_from_the_origin():
    """`fit_batch` checks its (B, N, D) batch member by member (one warning, naming the
    member: pooled, members far apart would hide each other's spread)."""
    X = jnp.asarray(np.stack([_far(0.0, 1.0), _far(4.1e6, 1.0)]), jnp.float32)
    with pytest.raises(ValueError, match="weights must have shape"):
        with pytest.warns(UserWarning, match=r"X\[1\] \(float32\): column 0 .* only to 0.25"):
            jaxem.fit_batch(MODEL, jax.random.key(0), X, weights=np.ones((2, 39)))
