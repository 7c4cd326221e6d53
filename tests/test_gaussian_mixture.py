"""Gaussian mixtures beyond parity: dtypes, degenerate data, initialisation, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES

import jaxem
from jaxem import families


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def _positive_definite(covariances, covariance_type) -> bool:
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        return bool(np.all(c > 0))
    return bool(np.all(np.linalg.eigvalsh(c) > 0))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_in_float32_out_on_raw_faithful(faithful, covariance_type):
    """Old Faithful as it is (waiting ~70 minutes, eruptions ~3.5), not standardised."""
    X = jnp.asarray(faithful, jnp.float32)
    model = jaxem.GaussianMixture(5, covariance_type)  # five components on two clusters
    keys = jax.random.split(jax.random.key(5), 4)
    results = jax.vmap(lambda key: jaxem.fit(model, X, model.init(key, X), max_iter=200))(keys)
    for leaf in jax.tree.leaves(results.params):
        assert leaf.dtype == jnp.float32
    assert results.objective.dtype == jnp.float32
    assert _finite(results.params) and _finite(results.objective)
    for b in range(4):
        assert _positive_definite(results.params.covariances[b], covariance_type)
    model = jaxem.GaussianMixture(2, covariance_type)
    r32 = jaxem.fit(model, X, model.init(jax.random.key(0), X), tol=1e-4)
    r64 = jaxem.fit(model, faithful, model.init(jax.random.key(0), faithful), tol=1e-4)
    np.testing.assert_allclose(r32.objective, r64.objective, rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_collapsing_component_stays_finite(dtype, covariance_type):
    """Many duplicated points: a component collapses onto them and reg_covar holds it."""
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [np.tile([[70.0, 3.5]], (60, 1)), rng.normal([60.0, 2.0], [5.0, 0.5], (40, 2))]
    )
    X = jnp.asarray(X, dtype)
    model = jaxem.GaussianMixture(3, covariance_type)
    for seed in range(3):
        result = jaxem.fit(model, X, model.init(jax.random.key(seed), X), tol=0, max_iter=50)
        assert _finite(result.params) and _finite(result.history)
        assert _positive_definite(result.params.covariances, covariance_type)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_one_point_component_far_from_the_centre_is_floored_and_collapsed(covariance_type):
    """A component on a single point about 500 units from the data's centre (as k-means made on
    R's diabetes data): its scatter is zero in exact arithmetic, rounding noise in float32. The
    M-step raises each feature's pivot (variance) to $10 D \\varepsilon s_d$, $s_d$ the squared
    distance from the centre (closed form below), so the covariance factorises at float32's
    precision, and `collapsed` flags the component; in float64 the floor is reg_covar."""
    rng = np.random.default_rng(0)
    rest = rng.normal([120.0, 540.0, 190.0], [60.0, 300.0, 120.0], (144, 3))
    X64 = np.concatenate([rest, [[75.0, 45.0, 392.0]]])
    resp = np.zeros((145, 2))
    resp[:144, 0] = resp[144, 1] = 1.0
    model = jaxem.GaussianMixture(2, covariance_type)
    for dtype in (np.float32, np.float64):
        X = X64.astype(dtype)
        params = model.m_step(model.stats(X, resp))
        cov = np.asarray(params.covariances[1], np.float64)
        variances = np.diagonal(cov) if covariance_type == "full" else cov
        if dtype == np.float32:
            spread = (X64[-1] - X64.mean(axis=0)) ** 2
            floor = 10 * 3 * np.finfo(np.float32).eps * spread
            np.testing.assert_allclose(variances, floor, rtol=0.05)
            if covariance_type == "full":
                np.linalg.cholesky(np.asarray(params.covariances[1]))  # factorises in float32
        else:
            np.testing.assert_allclose(variances, 1e-6, rtol=1e-4)
        mixed = model.as_mixture_params(params)
        collapsed = model.family.collapsed(mixed.components, mixed.weights)
        np.testing.assert_array_equal(collapsed, [False, True])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_empty_component_is_reset_not_nan(blobs, covariance_type):
    """A component far from every point gets no responsibility: it takes weight ~0, the data's
    mean and the pooled covariance, and the fit goes on finite."""
    model = jaxem.GaussianMixture(3, covariance_type)
    start = model.init(jax.random.key(0), blobs)
    means = start.means.at[2].set(1e4)
    start = start._replace(means=means)
    stats, _ = model.e_step(start, jnp.asarray(blobs), jnp.ones(len(blobs)))
    assert float(stats.counts[2]) == 0.0
    step = model.m_step(stats)
    assert float(step.weights[2]) < 1e-12
    np.testing.assert_allclose(step.means[2], blobs.mean(0), rtol=1e-12)
    if covariance_type != "tied":
        pooled = np.tensordot(np.asarray(step.weights), np.asarray(step.covariances), axes=1)
        np.testing.assert_allclose(step.covariances[2], pooled, rtol=1e-12)
    result = jaxem.fit(model, blobs, start, tol=0, max_iter=30)
    assert _finite(result.params) and _finite(result.history)
    assert np.all(np.diff(np.asarray(result.history)) >= -1e-9 * abs(float(result.objective)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_init_is_valid_and_ignores_zero_weight_rows(blobs, covariance_type):
    padded = np.concatenate([blobs, np.full((50, 3), 1e6)])
    w = np.concatenate([np.ones(len(blobs)), np.zeros(50)])
    model = jaxem.GaussianMixture(5, covariance_type)
    keys = jax.random.split(jax.random.key(0), 16)
    params = jax.vmap(lambda k: model.init(k, padded, w))(keys)
    assert _finite(params)
    assert np.all(np.abs(np.asarray(params.means)) < 100)
    np.testing.assert_allclose(np.sum(params.weights, axis=1), 1.0, rtol=1e-12)
    for b in range(16):
        assert _positive_definite(params.covariances[b], covariance_type)
    # the same as initialising on the unpadded rows
    alone = model.init(keys[3], blobs)
    np.testing.assert_allclose(params.means[3], alone.means, rtol=1e-12)


def test_init_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    X = np.concatenate([rng.normal(c, 0.5, (100, 2)) for c in centres])
    model = jaxem.GaussianMixture(4, "full")
    params = model.init(jax.random.key(0), X)
    found = np.asarray(params.means)[np.argsort(np.asarray(params.means) @ [1.0, 100.0])]
    np.testing.assert_allclose(found, centres, atol=0.2)
    np.testing.assert_allclose(params.weights, 0.25, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_has_the_params_moments(covariance_type):
    model = jaxem.GaussianMixture(2, covariance_type)
    full = np.array([[[1.0, 0.5], [0.5, 2.0]], [[0.3, -0.1], [-0.1, 0.2]]])
    covariances = {
        "full": full,
        "diag": np.array([[1.0, 2.0], [0.3, 0.2]]),
        "spherical": np.array([1.5, 0.25]),
        "tied": full[0],
    }[covariance_type]
    params = jaxem.GaussianMixtureParams(
        jnp.array([0.3, 0.7]), jnp.array([[0.0, 0.0], [5.0, -3.0]]), jnp.asarray(covariances)
    )
    X, labels = model.sample(jax.random.key(0), params, 200_000)
    X, labels = np.asarray(X), np.asarray(labels)
    assert X.shape == (200_000, 2)
    np.testing.assert_allclose(np.mean(labels == 1), 0.7, atol=5e-3)
    dense = {
        "full": full,
        "diag": np.stack([np.diag(c) for c in covariances]) if covariance_type == "diag" else None,
        "spherical": np.stack([c * np.eye(2) for c in covariances])
        if covariance_type == "spherical"
        else None,
        "tied": np.stack([covariances, covariances]) if covariance_type == "tied" else None,
    }[covariance_type]
    for k in range(2):
        np.testing.assert_allclose(X[labels == k].mean(0), params.means[k], atol=0.02)
        np.testing.assert_allclose(np.cov(X[labels == k].T), dense[k], atol=0.03)


def test_n_parameters():
    # K - 1 weights + K D means + covariance entries
    assert jaxem.GaussianMixture(3, "full").n_parameters(4) == 2 + 12 + 30
    assert jaxem.GaussianMixture(3, "diag").n_parameters(4) == 2 + 12 + 12
    assert jaxem.GaussianMixture(3, "spherical").n_parameters(4) == 2 + 12 + 3
    assert jaxem.GaussianMixture(3, "tied").n_parameters(4) == 2 + 12 + 10


def test_integer_data_is_promoted_to_float():
    X = np.random.default_rng(0).integers(0, 50, size=(100, 2))
    model = jaxem.GaussianMixture(2, "diag")
    result = jaxem.fit(model, X, model.init(jax.random.key(0), X))
    assert jnp.issubdtype(result.params.means.dtype, jnp.floating)
    assert _finite(result.params)


def _reference_e_step(covariance_type, params, X, weights):
    """The E-step from explicit differences x - mu_k, in NumPy float64."""
    w, mu, cov = (np.asarray(a, np.float64) for a in params)
    k, d = mu.shape
    if covariance_type == "tied":
        cov = np.broadcast_to(cov, (k, d, d))
    elif covariance_type == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    elif covariance_type == "spherical":
        cov = cov[:, None, None] * np.eye(d)
    diff = X[None] - mu[:, None]  # (K, N, D)
    maha = np.einsum("knd,kde,kne->kn", diff, np.linalg.inv(cov), diff)
    log_det = np.linalg.slogdet(cov)[1]
    log_joint = np.log(w)[:, None] - 0.5 * (d * np.log(2 * np.pi) + log_det[:, None] + maha)
    top = log_joint.max(0)
    log_px = top + np.log(np.exp(log_joint - top).sum(0))
    wr = np.exp(log_joint - log_px) * weights
    outer = np.einsum("kn,knd,kne->kde", wr, diff, diff)
    scatter = {
        "full": outer,
        "tied": outer.sum(0),
        "diag": np.einsum("kdd->kd", outer),
        "spherical": np.einsum("kdd->k", outer),
    }[covariance_type]
    stats = (wr.sum(1), wr @ X, np.einsum("kn,knd->kd", wr, diff), scatter)
    return stats, float(weights @ log_px)


@pytest.mark.parametrize("n_features", [2, 6])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_e_step_equals_explicit_differences(covariance_type, n_features):
    """The E-step's matrix products over quadratic features of the centred data equal the
    textbook computation from x - mu_k, with data sitting far from the origin; the entry-by-entry
    (D = 2) and LAPACK (D = 6) factorisations both."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, n_features)) * rng.uniform(0.5, 3.0, n_features) + 1e3
    weights = rng.uniform(0.0, 2.0, 300)
    model = jaxem.GaussianMixture(4, covariance_type)
    params = model.init(jax.random.key(0), X)
    params = params._replace(means=params.means + rng.normal(0, 0.3, params.means.shape))
    stats, loglik = model.e_step(params, jnp.asarray(X), jnp.asarray(weights))
    ref_stats, ref_loglik = _reference_e_step(covariance_type, params, X, weights)
    for got, want in zip((stats.counts, *stats.components), ref_stats, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    np.testing.assert_allclose(loglik, ref_loglik, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_e_step_far_from_the_origin(covariance_type):
    """Centring on the data's mean keeps float32 accurate for data at 1e4 with unit spread
    (sums of squares about the origin would lose every digit)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 5)) + np.repeat(rng.normal(0, 3, (4, 5)), 500, axis=0) + 1e4
    model = jaxem.GaussianMixture(4, covariance_type)
    params = model.init(jax.random.key(0), X)
    ref_stats, ref_loglik = _reference_e_step(covariance_type, params, X, np.ones(len(X)))
    params32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    stats, loglik = model.e_step(params32, jnp.asarray(X, jnp.float32), jnp.ones(len(X)))
    np.testing.assert_allclose(loglik, ref_loglik, rtol=1e-5)
    np.testing.assert_allclose(stats.counts, ref_stats[0], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(
        stats.components.scatter, ref_stats[3], rtol=2e-3, atol=1e-2 * len(X)
    )


FAR_MODELS = {
    "gaussian full": lambda: jaxem.GaussianMixture(2, "full", reg_covar=0.0),
    "gaussian diag": lambda: jaxem.GaussianMixture(2, "diag", reg_covar=0.0),
    "t full": lambda: jaxem.Mixture(families.StudentT("full", dof=5.0, reg_covar=0.0), 2),
    "factors": lambda: jaxem.Mixture(families.FactorAnalyser(1, reg_covar=0.0), 2),
}


@pytest.mark.parametrize("name", FAR_MODELS)
def test_float32_fit_far_from_the_origin(name):
    """Twenty EM iterations on float32 data 1e5 from the origin (unit spread; the values'
    own spacing there is 0.008) are the float64 iterations on the same values: the M-step's
    means divide by the components' weights themselves (raised by a floor that keeps empty
    components finite, they moved 0.3 towards the origin per iteration; a 2-D fit lost 148
    log-likelihood units), and the data's centre is the same value wherever it is used
    (`jaxem.families.statistics.data_centre`; log-densities of the last rows were 0.016 off)."""
    rng = np.random.default_rng(0)
    blobs = [rng.normal([0, 0, 0], 1.0, (300, 3)), rng.normal([3, 2, 1], [0.5, 1.5, 1], (200, 3))]
    X32 = (np.concatenate(blobs) + 1e5).astype(np.float32)
    model = FAR_MODELS[name]()
    start = model.init(jax.random.key(0), X32)
    ours = jaxem.fit(model, X32, start, tol=0.0, max_iter=20)
    start64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), start)
    theirs = jaxem.fit(model, X32.astype(np.float64), start64, tol=0.0, max_iter=20)
    assert ours.history.dtype == np.float32
    # the float32 means can only move on a grid of 0.008: 1e-4 of the objective is their cost
    np.testing.assert_allclose(ours.history, theirs.history, rtol=1e-4)
    means = [
        p.means if name.startswith("gaussian") else p.components.means
        for p in (ours.params, theirs.params)
    ]
    np.testing.assert_allclose(*means, rtol=0, atol=0.02)


def test_init_methods(blobs):
    """'k-means++' is the M-step from the hard assignments to the k-means++ seeds alone;
    'random_from_data' starts from K distinct rows; 'kmeans' adds Lloyd iterations."""
    from jaxem.initialization import kmeans_plusplus

    model = jaxem.GaussianMixture(3, "diag")
    key, X, w = jax.random.key(5), jnp.asarray(blobs), jnp.ones(len(blobs))
    seeds = np.asarray(kmeans_plusplus(key, X, w, 3))
    labels = np.argmin(((blobs[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1)
    want = np.stack([blobs[labels == k].mean(0) for k in range(3)])
    np.testing.assert_allclose(model.init(key, X, method="k-means++").means, want, rtol=1e-10)
    kmeans = model.init(key, X, method="kmeans").means
    assert not np.allclose(kmeans, want)  # Lloyd moved the centres
    start = model.init(key, X, method="random_from_data")
    assert np.all(np.isfinite(np.asarray(start.covariances)))
    with pytest.raises(ValueError, match="method must be one of"):
        model.init(key, X, method="forgy")


def test_float32_predictions_far_from_the_origin_ignore_the_padding():
    """predict, predict_proba and score_samples pad the rows with zeros to a size that shares
    a compiled program; the padding counted at weight one in the data's centre, which 40 rows
    of zeros pulled from 1e5 to 9.4e4 for 600 float32 rows: the labels were noise (agreement
    with float64's 0.335). They equal float64's from the same parameters."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 2.0]])
    X = (np.repeat(centres, 200, axis=0) + rng.normal(0, 0.3, (600, 2)) + 1e5).astype(np.float32)
    model = jaxem.GaussianMixture(3, "full")
    params = jaxem.GaussianMixtureParams(
        jnp.full(3, 1 / 3, jnp.float32),
        jnp.asarray(centres + 1e5, jnp.float32),
        jnp.broadcast_to(0.09 * jnp.eye(2, dtype=jnp.float32), (3, 2, 2)),
    )
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    X64 = X.astype(np.float64)
    np.testing.assert_array_equal(model.predict(params, X), model.predict(params64, X64))
    np.testing.assert_allclose(
        model.predict_proba(params, X), model.predict_proba(params64, X64), atol=1e-4
    )
    np.testing.assert_allclose(
        model.score_samples(params, X), model.score_samples(params64, X64), atol=1e-4
    )


def test_symmetry_is_judged_against_the_matrix_scale():
    """fit_restarts' float32 k-means starts under vmap (XLA's default optimisation level) came
    out with an off-diagonal entry asymmetric by 3e-5 of itself (-0.00262916 against
    -0.00262908, beside variances of 0.09), and its own check refused them as not symmetric
    positive definite. Rounding of that size passes; an asymmetry of the matrix's own size
    does not."""
    from jaxem.families.gaussian.full import is_positive_definite

    rounded = np.array([[0.08821516, -0.00262916], [-0.00262908, 0.08764204]], np.float32)
    assert is_positive_definite(rounded)
    assert not is_positive_definite(np.array([[1.0, 0.5], [0.2, 1.0]]))
    assert not is_positive_definite(np.array([[1.0, 1e-4], [0.0, 1.0]]))
