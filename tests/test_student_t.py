"""The multivariate t family against independent references: SciPy's ``multivariate_t``
(density, and its maximum-likelihood fit by SciPy's optimiser), an ECM written here in NumPy
(every iterate), the Gaussian mixture as $\\nu \\to \\infty$; and what users do with it
(outliers, select, save/load, batches, SQUAREM)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numpy_forward
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats

import jaxem
from jaxem.families import StudentT, StudentTParams
from jaxem.families.gaussian import MCLUST_MODELS

N_ITER = 12


def _two_t_clusters(n: int = 240, seed: int = 0) -> np.ndarray:
    half = n // 2
    a = stats.multivariate_t(loc=[0, 0, 0], shape=np.diag([1.0, 0.5, 2.0]), df=3)
    b = stats.multivariate_t(
        loc=[4, 3, -2], shape=[[2, -0.5, 0], [-0.5, 1, 0.3], [0, 0.3, 1]], df=9
    )
    return np.concatenate([a.rvs(half, random_state=seed), b.rvs(n - half, random_state=seed + 1)])


@pytest.fixture(scope="module")
def X():
    return _two_t_clusters()


def _start(X, k: int = 2, dofs=(10.0, 10.0)):
    """A start shared by jaxem and the references: the k-means labels' moments."""
    labels = np.asarray(jaxem.KMeans(k).predict(jaxem.KMeans(k).init(jax.random.key(0), X), X))
    means = np.stack([X[labels == j].mean(0) for j in range(k)])
    scales = np.stack([np.cov(X[labels == j].T) for j in range(k)])
    weights = np.bincount(labels, minlength=k) / len(X)
    return weights, means, scales, np.asarray(dofs, float)


# -- the reference: ECM in NumPy ------------------------------------------------------------


def _dof_root(c: float, bounds) -> float:
    def g(nu):
        return np.log(nu / 2) - special.digamma(nu / 2) + c

    lo, hi = bounds
    if g(hi) >= 0:
        return hi
    if g(lo) <= 0:
        return lo
    return optimize.brentq(g, lo, hi, xtol=1e-14, rtol=1e-15)


def _numpy_ecm_step(X, params, structure, dof, bounds, prior):
    """One EM iteration of the t mixture (Peel and McLachlan 2000), written from the formulas."""
    weights, means, scales, dofs = params
    n, d = X.shape
    k = len(weights)
    log_t = np.stack(
        [stats.multivariate_t(means[j], scales[j], df=dofs[j]).logpdf(X) for j in range(k)]
    )
    log_joint = log_t + np.log(weights)[:, None]
    r = np.exp(log_joint - special.logsumexp(log_joint, axis=0))
    delta = np.stack(
        [
            np.einsum("nd,de,ne->n", X - means[j], np.linalg.inv(scales[j]), X - means[j])
            for j in range(k)
        ]
    )
    u = (dofs[:, None] + d) / (dofs[:, None] + delta)
    alpha = (dofs + d) / 2
    e_log_u = np.log(u) + (special.digamma(alpha) - np.log(alpha))[:, None]
    counts = r.sum(1)
    scale_sums = (r * u).sum(1)
    xbar = (r * u) @ X / scale_sums[:, None]
    new_scales = []
    for j in range(k):
        c = X - xbar[j]
        w = (r[j] * u[j] * c.T) @ c
        if prior is None:
            s = w / counts[j]
        else:
            m, kappa, nu0, psi = prior
            shrunk = kappa * scale_sums[j] / (kappa + scale_sums[j])
            s = (psi + w + shrunk * np.outer(xbar[j] - m, xbar[j] - m)) / (counts[j] + nu0 + d + 2)
        new_scales.append(np.diag(np.diag(s)) if structure == "diag" else s)
    if prior is None:
        new_means = xbar
    else:
        m, kappa = prior[0], prior[1]
        new_means = ((r * u) @ X + kappa * m) / (scale_sums + kappa)[:, None]
    log_terms = (r * (e_log_u - u)).sum(1)
    if dof == "per_component":
        new_dofs = np.array([_dof_root(1 + log_terms[j] / counts[j], bounds) for j in range(k)])
    elif dof == "shared":
        new_dofs = np.full(k, _dof_root(1 + log_terms.sum() / counts.sum(), bounds))
    else:
        new_dofs = np.full(k, dof)
    loglik = special.logsumexp(log_joint, axis=0).sum()
    return (counts / counts.sum(), new_means, np.stack(new_scales), new_dofs), loglik


REFERENCE_CASES = [
    # (structure, dof, MAP)
    ("full", "per_component", False),
    ("full", "shared", False),
    ("full", 5.0, False),
    ("diag", "per_component", False),
    ("full", "per_component", True),
]


@pytest.mark.parametrize("structure,dof,use_prior", REFERENCE_CASES)
def test_every_iterate_matches_a_numpy_ecm(X, structure, dof, use_prior):
    bounds = (2.0, 200.0)
    model = jaxem.Mixture(StudentT(structure, dof=dof, reg_covar=0.0), 2)
    weights, means, scales, dofs = _start(X)
    if dof not in ("per_component", "shared"):
        dofs = np.full(2, dof)
    if structure == "diag":
        scales = np.stack([np.diag(np.diag(s)) for s in scales])
    prior = model.default_prior(X) if use_prior else None
    numpy_prior = None if prior is None else tuple(np.asarray(f) for f in prior.components)
    if structure == "full" and numpy_prior is not None:
        numpy_prior = (numpy_prior[0], float(numpy_prior[1]), float(numpy_prior[2]), numpy_prior[3])
    layout = scales if structure == "full" else np.stack([np.diag(s) for s in scales])
    params = jaxem.MixtureParams(jnp.asarray(weights), StudentTParams(means, layout, dofs))
    reference = (weights, means, scales, dofs)
    for _ in range(N_ITER):
        reference, ref_loglik = _numpy_ecm_step(X, reference, structure, dof, bounds, numpy_prior)
        stats_, loglik = model.e_step(params, jnp.asarray(X), jnp.ones(len(X)))
        params = model.m_step(stats_, prior)
        np.testing.assert_allclose(loglik, ref_loglik, rtol=1e-11)
        got = params.components
        np.testing.assert_allclose(params.weights, reference[0], rtol=1e-8)
        np.testing.assert_allclose(got.means, reference[1], rtol=1e-8, atol=1e-10)
        ref_scales = (
            reference[2] if structure == "full" else np.stack([np.diag(s) for s in reference[2]])
        )
        np.testing.assert_allclose(got.scales, ref_scales, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.dofs, reference[3], rtol=1e-8)


def test_log_density_is_scipys(X):
    rng = np.random.default_rng(3)
    for structure in ("full", "VEV", "diag", "spherical", "tied"):
        model = jaxem.Mixture(StudentT(structure), 3)
        params = model.init(jax.random.key(1), X)
        params = params._replace(
            components=params.components._replace(dofs=jnp.asarray(rng.uniform(1, 30, 3)))
        )
        family = model.family
        got = family.log_likelihoods(
            params.components, family.prepare(jnp.asarray(X), jnp.ones(len(X)))
        )
        matrices = family.gaussian.component_covariances(
            jaxem.families.GaussianParams(params.components.means, params.components.scales), 3
        )
        for k in range(3):
            ref = stats.multivariate_t(
                params.components.means[k], matrices[k], df=float(params.components.dofs[k])
            ).logpdf(X)
            np.testing.assert_allclose(got[k], ref, rtol=1e-11, atol=1e-11)


def test_one_component_is_scipys_maximum_likelihood_t():
    """The EM fit against SciPy's optimiser (BFGS) on ``multivariate_t.logpdf``, in the
    coordinates (location, Cholesky factor with log diagonal, log nu)."""
    X = stats.multivariate_t(loc=[1, -1], shape=[[1.5, 0.6], [0.6, 1]], df=4).rvs(
        400, random_state=5
    )
    model = jaxem.Mixture(StudentT("full", dof_bounds=(0.1, 1e4), reg_covar=0.0), 1)
    start = model.init(jax.random.key(0), X)
    result = jaxem.fit(model, X, start, tol=1e-14, max_iter=3000, accelerate="squarem")
    assert bool(result.converged)
    fitted = result.params.components

    def unpack(theta):
        loc = theta[:2]
        chol = np.array([[np.exp(theta[2]), 0.0], [theta[3], np.exp(theta[4])]])
        return loc, chol @ chol.T, np.exp(theta[5])

    def loss(theta):
        loc, shape, nu = unpack(theta)
        return -stats.multivariate_t(loc, shape, df=nu).logpdf(X).sum()

    chol = np.linalg.cholesky(np.cov(X.T))
    theta0 = np.array(
        [*X.mean(0), np.log(chol[0, 0]), chol[1, 0], np.log(chol[1, 1]), np.log(10.0)]
    )
    opt = optimize.minimize(loss, theta0, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000})
    opt = optimize.minimize(
        loss,
        opt.x,
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 20000},
    )
    loc, shape, nu = unpack(opt.x)
    np.testing.assert_allclose(float(result.objective), -opt.fun, rtol=1e-12)
    np.testing.assert_allclose(fitted.means[0], loc, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fitted.scales[0], shape, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fitted.dofs[0], nu, rtol=1e-6)


def test_large_dof_is_the_gaussian_mixture(X):
    weights, means, scales, _ = _start(X)
    t_model = jaxem.Mixture(StudentT("full", dof=1e13), 2)
    gaussian = jaxem.GaussianMixture(2, "full")
    t_start = jaxem.MixtureParams(
        jnp.asarray(weights), StudentTParams(means, scales, np.full(2, 1e13))
    )
    g_start = jaxem.GaussianMixtureParams(weights, means, scales)
    t_fit = jaxem.fit(t_model, X, t_start, tol=0, max_iter=20)
    g_fit = jaxem.fit(gaussian, X, g_start, tol=0, max_iter=20)
    np.testing.assert_allclose(t_fit.objective, g_fit.objective, rtol=1e-9)
    np.testing.assert_allclose(t_fit.params.components.means, g_fit.params.means, rtol=1e-8)
    np.testing.assert_allclose(t_fit.params.components.scales, g_fit.params.covariances, rtol=1e-8)


def test_crosscheck_with_numpyro_mle_and_map(X):
    """EM's fixed point is NumPyro's mode of the same model (``MultivariateStudentT``, the
    prior's sites): MLE and MAP."""
    from jaxem import crosscheck

    model = jaxem.Mixture(StudentT("full", reg_covar=0.0), 2)
    for prior in (None, model.default_prior(X)):
        report = crosscheck.compare(model, X, prior, jax.random.key(0), tol=1e-13, max_iter=4000)
        assert report.em_objective_diff < 1e-12  # EM's objective is NumPyro's log joint
        assert report.objective_diff < 1e-9
        assert max(report.param_diffs[f] for f in ("weights", "means", "scales")) < 1e-4
        assert report.param_diffs["dofs"] < 1e-2  # the flattest direction; EM crawls along it


def test_outliers_and_scale_weights_against_scipy(X):
    model = jaxem.Mixture(StudentT("full"), 2)
    params = jaxem.fit(model, X, model.init(jax.random.key(0), X), tol=1e-8).params
    far = np.vstack([X[:5], [[40.0, -30.0, 25.0]]])
    c = params.components
    proba = np.asarray(model.predict_proba(params, far))
    best = proba.argmax(1)
    delta = np.array(
        [
            (x - c.means[k]) @ np.linalg.solve(c.scales[k], x - c.means[k])
            for x, k in zip(far, best, strict=True)
        ]
    )
    d = X.shape[1]
    tail = stats.f.sf(delta / d, d, np.asarray(c.dofs)[best])
    np.testing.assert_array_equal(model.outliers(params, far, level=0.01), tail < 0.01)
    assert bool(model.outliers(params, far)[-1])
    u = np.stack(
        [
            (c.dofs[k] + d)
            / (
                c.dofs[k]
                + np.einsum(
                    "nd,de,ne->n", far - c.means[k], np.linalg.inv(c.scales[k]), far - c.means[k]
                )
            )
            for k in range(2)
        ],
        axis=1,
    )
    np.testing.assert_allclose(model.scale_weights(params, far), (proba * u).sum(1), rtol=1e-10)
    gaussian = jaxem.GaussianMixture(2, "full")
    g_params = jaxem.fit(gaussian, X, gaussian.init(jax.random.key(0), X)).params
    g_best = np.asarray(gaussian.predict(g_params, far))
    g_delta = np.array(
        [
            (x - g_params.means[k])
            @ np.linalg.solve(g_params.covariances[k], x - g_params.means[k])
            for x, k in zip(far, g_best, strict=True)
        ]
    )
    np.testing.assert_array_equal(
        gaussian.outliers(g_params, far), stats.chi2.sf(g_delta, d) < 0.01
    )
    with pytest.raises(TypeError, match="scale weights"):
        gaussian.scale_weights(g_params, far)
    with pytest.raises(ValueError, match="level"):
        model.outliers(params, far, level=1.5)


def test_bad_configuration_is_refused_before_compiling():
    with pytest.raises(ValueError, match="dof must be one of"):
        StudentT(dof="free")
    with pytest.raises(ValueError, match="fixed dof"):
        StudentT(dof=-1.0)
    with pytest.raises(ValueError, match="dof_bounds"):
        StudentT(dof_bounds=(5.0, 1.0))
    with pytest.raises(ValueError, match="covariance_type"):
        StudentT("XYZ")
    with pytest.raises(ValueError, match="missing"):
        StudentT.for_data(np.zeros((3, 2)), missing=True)
    model = jaxem.Mixture(StudentT("diag"), 2)
    X = np.random.default_rng(0).normal(size=(20, 2))
    start = model.init(jax.random.key(0), X)
    bad = start._replace(components=start.components._replace(dofs=jnp.array([3.0, -1.0])))
    with pytest.raises(ValueError, match="dofs must be finite and > 0"):
        jaxem.fit(model, X, bad)
    with pytest.raises(ValueError, match="params.components.scales"):
        jaxem.fit(
            model,
            X,
            start._replace(components=start.components._replace(scales=-start.components.scales)),
        )


def test_the_driver_paths_agree(X, tmp_path):
    """SQUAREM reaches EM's fixed point; `fit_batch` of two datasets is two fits; row blocks
    give the one-block fit; save/load gives the same model and parameters back."""
    model = jaxem.Mixture(StudentT("EEV", dof="shared"), 2)
    start = model.init(jax.random.key(0), X)
    plain = jaxem.fit(model, X, start, tol=1e-12, max_iter=3000)
    fast = jaxem.fit(model, X, start, tol=1e-12, max_iter=3000, accelerate="squarem")
    assert int(fast.n_evals) < int(plain.n_evals)
    np.testing.assert_allclose(fast.objective, plain.objective, rtol=1e-9)
    np.testing.assert_allclose(
        fast.params.components.means, plain.params.components.means, atol=1e-4
    )
    blocks = jaxem.fit(model, X, start, tol=0, max_iter=10, chunk_size=64)
    whole = jaxem.fit(model, X, start, tol=0, max_iter=10)
    for a, b in zip(jax.tree.leaves(blocks.params), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    Y = _two_t_clusters(seed=7)
    starts = jax.tree.map(lambda a, b: jnp.stack([a, b]), start, model.init(jax.random.key(0), Y))
    batch = jaxem.fit_batch(
        model, jax.random.key(0), np.stack([X, Y]), init_params=starts, tol=0, max_iter=10
    )
    single = jaxem.fit(model, Y, jax.tree.map(lambda a: a[1], starts), tol=0, max_iter=10)
    np.testing.assert_allclose(batch.objective[0], whole.objective, rtol=1e-12)
    np.testing.assert_allclose(batch.objective[1], single.objective, rtol=1e-12)
    assert np.all(np.asarray(whole.params.components.dofs) == whole.params.components.dofs[0])
    path = tmp_path / "t.npz"
    jaxem.save(path, model, whole.params)
    loaded, params, _ = jaxem.load(path)
    assert loaded == model
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_select_over_structures_and_dof_treatments(X):
    """`select` over t families: one BIC column per (structure, treatment of nu), with mclust's
    parameter count plus the degrees of freedom estimated."""
    families = [StudentT(s, dof=dof) for s in ("VVV", "EEE") for dof in ("per_component", "shared")]
    result = jaxem.select(X, [1, 2, 3], families=families, key=jax.random.key(0), n_init=2)
    d = X.shape[1]
    for family in families:
        model = jaxem.Mixture(family, 2)
        gaussian = jaxem.GaussianMixture(2, family.covariance_type)
        extra = 2 if family.dof == "per_component" else 1
        assert model.n_parameters(d) == gaussian.n_parameters(d) + extra
    assert result.model.n_components == 2
    assert isinstance(result.model.family, StudentT)


N_SMALL, D_SMALL = 48, 2


@pytest.mark.parametrize("name", MCLUST_MODELS)
@settings(max_examples=2, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["per_component", "shared"]))
def test_every_structure_ascends_mle_and_map(name, seed, dof):
    """Monotone ascent (the theory) for every scale structure, both estimated treatments of
    nu, maximum likelihood and (where the structure has a conjugate prior) MAP."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (2, D_SMALL))
    X = centres[rng.integers(0, 2, N_SMALL)] + rng.standard_t(3, (N_SMALL, D_SMALL))
    model = jaxem.Mixture(StudentT(name, dof=dof), 2)
    start = model.init(jax.random.key(seed), X)
    priors = [None]
    if model.family.structure.has_map:
        priors.append(model.default_prior(X))
    for prior in priors:
        result = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=15)
        _, initial = model.e_step(start, jnp.asarray(X), jnp.ones(N_SMALL))
        if prior is not None:
            initial = initial + model.log_prior(start, prior)
        curve = np.concatenate([[float(initial)], np.asarray(result.history)])
        assert np.all(np.isfinite(curve))
        assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:])), np.diff(curve).min()


def test_contaminated_iris_the_t_keeps_the_clean_fit():
    """Iris with 5 % gross outliers (8 rows uniform in a box three times the data's range),
    K = 3, each family started from its own clean-data fit: the Gaussian mixture gives up the
    species to cover the outliers, the t keeps its clean fit (the numbers of
    ``docs/robust_and_high_dimensional.md``)."""
    from sklearn.datasets import load_iris
    from sklearn.metrics import adjusted_rand_score

    iris = load_iris()
    X, species = iris.data, iris.target
    low, high = X.min(0), X.max(0)
    span = high - low
    outliers = np.random.default_rng(1).uniform(low - span, high + span, (8, 4))
    contaminated = np.vstack([X, outliers])
    shifts, scores = {}, {}
    for name, model in [
        ("gaussian", jaxem.GaussianMixture(3, "full")),
        ("t", jaxem.Mixture(StudentT("full"), 3)),
    ]:
        clean = jaxem.fit_restarts(model, jax.random.key(0), X, tol=1e-9, max_iter=3000)
        fit = jaxem.fit(model, contaminated, clean.params, tol=1e-9, max_iter=3000)
        means = [
            np.asarray(getattr(p, "means", None) if name == "gaussian" else p.components.means)
            for p in (clean.params, fit.params)
        ]
        cost = np.linalg.norm(means[0][:, None] - means[1][None], axis=-1)
        rows, cols = optimize.linear_sum_assignment(cost)
        shifts[name] = cost[rows, cols].max()
        labels = np.asarray(model.predict(fit.params, contaminated))[:150]
        scores[name] = adjusted_rand_score(species, labels)
        if name == "t":
            flagged = np.asarray(model.outliers(fit.params, contaminated))
            assert flagged[150:].sum() >= 6 and flagged[:150].sum() <= 3
            assert np.all(np.asarray(model.scale_weights(fit.params, contaminated))[150:] < 0.1)
    assert scores["t"] > 0.9 > 0.6 > scores["gaussian"]
    assert shifts["t"] < 0.05 < 0.5 < shifts["gaussian"]


def test_hidden_markov_model_with_t_emissions():
    """The family serves HMMs too: Baum-Welch ascends, and the log-likelihood is the forward
    recursion's over SciPy's multivariate_t densities."""
    rng = np.random.default_rng(4)
    states = np.zeros(300, int)
    for t in range(1, 300):
        states[t] = states[t - 1] if rng.uniform() < 0.9 else 1 - states[t - 1]
    noise = stats.multivariate_t(loc=[0, 0], shape=np.eye(2), df=3).rvs(300, random_state=4)
    X = np.array([[0.0, 0.0], [4.0, 2.0]])[states] + noise
    model = jaxem.HiddenMarkovModel(StudentT("full"), 2)
    start = model.init(jax.random.key(0), X[None])
    fit = jaxem.fit(model, X[None], start, tol=0, max_iter=15)
    history = np.asarray(fit.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    p = fit.params
    e = p.emissions
    log_b = np.stack(
        [
            stats.multivariate_t(e.means[k], e.scales[k], df=float(e.dofs[k])).logpdf(X)
            for k in range(2)
        ],
        axis=1,
    )
    reference = numpy_forward(log_b, np.asarray(p.initial), np.asarray(p.transitions))
    np.testing.assert_allclose(model.score(p, X[None]), reference, rtol=1e-10)
