"""Mixtures of factor analysers against independent references: scikit-learn's FactorAnalysis
(one component), the iteration written here in NumPy from the formulas (every iterate, every
variant), McLachlan and Peel's two-pass AECM in NumPy (the same maximum), dense covariances
(the Woodbury E-step); and the driver's paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numpy_forward
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import jaxem
from jaxem.families import FactorAnalyser
from jaxem.families.factor_analyser import VARIANTS

D, Q = 6, 2


def _factor_data(n_per: int = 150, seed: int = 0, k: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = []
    for j in range(k):
        loadings = rng.normal(size=(D, Q))
        psi = rng.uniform(0.2, 1.0, D)
        factors = rng.normal(size=(n_per, Q))
        parts.append(3.0 * j + factors @ loadings.T + rng.normal(size=(n_per, D)) * np.sqrt(psi))
    return np.vstack(parts)


@pytest.fixture(scope="module")
def X():
    return _factor_data()


# -- the reference: the iteration in NumPy, from the formulas ---------------------------------


def _dense(params):
    weights, means, loadings, psi = params
    return np.einsum("kdq,keq->kde", loadings, loadings) + np.stack([np.diag(p) for p in psi])


def _responsibilities(X, params):
    weights, means, loadings, psi = params
    cov = _dense(params)
    log_joint = np.stack(
        [
            np.log(weights[k]) + stats.multivariate_normal(means[k], cov[k]).logpdf(X)
            for k in range(len(weights))
        ]
    )
    return np.exp(log_joint - special.logsumexp(log_joint, axis=0)), special.logsumexp(
        log_joint, axis=0
    ).sum()


def _cycle_two(S, counts, params, variant, prior):
    """The loadings and uniquenesses from the covariances S_k about the new means, with beta at
    the current loadings and uniquenesses (McNicholas and Murphy 2008, their Table 2)."""
    weights, means, loadings, psi = params
    k, d = psi.shape
    cov = _dense(params)
    beta = np.stack([loadings[j].T @ np.linalg.inv(cov[j]) for j in range(k)])
    theta = np.stack(
        [np.eye(Q) - beta[j] @ loadings[j] + beta[j] @ S[j] @ beta[j].T for j in range(k)]
    )
    sb = np.stack([S[j] @ beta[j].T for j in range(k)])
    if variant[0] == "U":
        new_loadings = np.stack([sb[j] @ np.linalg.inv(theta[j]) for j in range(k)])
    else:
        common = np.zeros((d, Q))
        for i in range(d):
            w = counts / psi[:, i]
            common[i] = np.sum(w[:, None] * sb[:, i], 0) @ np.linalg.inv(
                np.sum(w[:, None, None] * theta, 0)
            )
        new_loadings = np.stack([common] * k)
    residual = np.stack(
        [
            np.diag(
                S[j]
                - 2 * new_loadings[j] @ beta[j] @ S[j]
                + new_loadings[j] @ theta[j] @ new_loadings[j].T
            )
            for j in range(k)
        ]
    )
    a, b = (0.0, np.zeros(d)) if prior is None else prior
    extra = 2 * a + 2 if prior is not None else 0.0
    nt = counts[:, None] * residual
    if variant[1:] == "UU":
        new_psi = (nt + 2 * b) / (counts[:, None] + extra)
    elif variant[1:] == "UC":
        new_psi = np.repeat(((nt.sum(1) + 2 * b.mean()) / (counts * d + extra))[:, None], d, 1)
    elif variant[1:] == "CU":
        new_psi = np.repeat(((nt.sum(0) + 2 * b) / (counts.sum() + extra))[None], k, 0)
    else:
        new_psi = np.full((k, d), (nt.sum() + 2 * b.mean()) / (counts.sum() * d + extra))
    return new_loadings, new_psi


def _numpy_step(X, params, variant, prior=None, two_pass=False):
    r, loglik = _responsibilities(X, params)
    counts = r.sum(1)
    means = r @ X / counts[:, None]
    weights = counts / counts.sum()
    if two_pass:  # McLachlan and Peel's AECM: a second E-step after the first cycle
        r, _ = _responsibilities(X, (weights, means, params[2], params[3]))
        counts = r.sum(1)
        weights = counts / counts.sum()
    S = np.stack(
        [(r[j] * (X - means[j]).T) @ (X - means[j]) / counts[j] for j in range(len(counts))]
    )
    new_loadings, new_psi = _cycle_two(
        S, counts, (weights, means, params[2], params[3]), variant, prior
    )
    return (weights, means, new_loadings, new_psi), loglik


def _as_numpy(params):
    c = params.components
    return tuple(np.asarray(a) for a in (params.weights, c.means, c.loadings, c.uniquenesses))


@pytest.mark.parametrize(
    "variant,use_prior", [(v, False) for v in VARIANTS] + [("UUU", True), ("CUC", True)]
)
def test_every_iterate_matches_the_numpy_iteration(X, variant, use_prior):
    model = jaxem.Mixture(FactorAnalyser(Q, variant, reg_covar=0.0), 2)
    params = model.init(jax.random.key(0), X)
    prior = model.default_prior(X) if use_prior else None
    numpy_prior = (
        None
        if prior is None
        else (float(prior.components.shape), np.asarray(prior.components.scale))
    )
    reference = _as_numpy(params)

    @jax.jit
    def step(params):
        stats_, loglik = model.e_step(params, jnp.asarray(X), jnp.ones(len(X)))
        return model.m_step_from(params, stats_, prior), loglik

    for _ in range(8):
        reference, ref_loglik = _numpy_step(X, reference, variant, numpy_prior)
        params, loglik = step(params)
        np.testing.assert_allclose(loglik, ref_loglik, rtol=1e-11)
        for got, want in zip(_as_numpy(params), reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_same_maximum_as_two_pass_aecm(X):
    """McLachlan and Peel's AECM (a second E-step between the cycles) and jaxem's one-pass
    iteration climb to the same maximum."""
    model = jaxem.Mixture(FactorAnalyser(Q, "UUU", reg_covar=0.0), 2)
    start = model.init(jax.random.key(0), X)
    fit = jaxem.fit(model, X, start, tol=1e-13, max_iter=5000, accelerate="squarem")
    reference = _as_numpy(start)
    previous = -np.inf
    for _ in range(3000):
        reference, loglik = _numpy_step(X, reference, "UUU", two_pass=True)
        assert loglik >= previous - 1e-9 * abs(loglik)
        if loglik - previous < 1e-12 * abs(loglik):
            break
        previous = loglik
    np.testing.assert_allclose(fit.objective, loglik, rtol=1e-9)
    np.testing.assert_allclose(fit.params.components.means, reference[1], atol=1e-4)
    dense = model.family.component_covariances(fit.params.components, 2)
    np.testing.assert_allclose(dense, _dense(reference), atol=1e-4)  # a flat maximum


def test_one_component_is_scikit_learns_factor_analysis():
    from sklearn.decomposition import FactorAnalysis

    X = _factor_data(n_per=500, seed=3, k=1)
    model = jaxem.Mixture(FactorAnalyser(Q, reg_covar=0.0), 1)
    fit = jaxem.fit(
        model, X, model.init(jax.random.key(0), X), tol=1e-14, max_iter=20000, accelerate="squarem"
    )
    reference = FactorAnalysis(Q, tol=1e-12, max_iter=100000, svd_method="lapack").fit(X)
    np.testing.assert_allclose(float(fit.objective), reference.score(X) * len(X), rtol=1e-9)
    covariance = model.family.component_covariances(fit.params.components, 1)[0]
    np.testing.assert_allclose(covariance, reference.get_covariance(), rtol=1e-6, atol=1e-6)


def test_woodbury_e_step_is_the_dense_one(X):
    model = jaxem.Mixture(FactorAnalyser(3, "UUU"), 3)
    params = model.init(jax.random.key(1), X).components
    family = model.family
    data = family.prepare(jnp.asarray(X), jnp.ones(len(X)))
    cov = np.asarray(family.component_covariances(params, 3))
    dense = np.stack(
        [stats.multivariate_normal(params.means[k], cov[k]).logpdf(X) for k in range(3)]
    )
    np.testing.assert_allclose(family.log_likelihoods(params, data), dense, rtol=1e-11)
    scores = np.asarray(family.factor_scores(params, data))
    for k in range(3):
        beta = np.asarray(params.loadings[k]).T @ np.linalg.inv(cov[k])
        np.testing.assert_allclose(
            scores[:, k], (X - params.means[k]) @ beta.T, rtol=1e-9, atol=1e-11
        )


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=2, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_every_variant_ascends(variant, seed, use_prior):
    X = _factor_data(n_per=30, seed=seed % 1000)
    model = jaxem.Mixture(FactorAnalyser(Q, variant), 2)
    start = model.init(jax.random.key(seed), X)
    prior = model.default_prior(X) if use_prior else None
    result = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=15)
    _, initial = model.e_step(start, jnp.asarray(X), jnp.ones(len(X)))
    if prior is not None:
        initial = initial + model.log_prior(start, prior)
    curve = np.concatenate([[float(initial)], np.asarray(result.history)])
    assert np.all(np.isfinite(curve))
    assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:])), np.diff(curve).min()


def test_the_driver_paths_agree(X, tmp_path):
    """SQUAREM, row blocks, fit_batch, save/load, select over q and the variants."""
    model = jaxem.Mixture(FactorAnalyser(Q, "UCU"), 2)
    start = model.init(jax.random.key(0), X)
    whole = jaxem.fit(model, X, start, tol=0, max_iter=10)
    blocks = jaxem.fit(model, X, start, tol=0, max_iter=10, chunk_size=64)
    for a, b in zip(jax.tree.leaves(blocks.params), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    plain = jaxem.fit(model, X, start, tol=1e-10, max_iter=3000)
    fast = jaxem.fit(model, X, start, tol=1e-10, max_iter=3000, accelerate="squarem")
    assert int(fast.n_evals) < int(plain.n_evals)
    np.testing.assert_allclose(fast.objective, plain.objective, rtol=1e-7)
    Y = _factor_data(seed=5)
    starts = jax.tree.map(lambda a, b: jnp.stack([a, b]), start, model.init(jax.random.key(0), Y))
    batch = jaxem.fit_batch(
        model, jax.random.key(0), np.stack([X, Y]), init_params=starts, tol=0, max_iter=10
    )
    np.testing.assert_allclose(batch.objective[0], whole.objective, rtol=1e-12)
    path = tmp_path / "mfa.npz"
    jaxem.save(path, model, whole.params)
    loaded, params, _ = jaxem.load(path)
    assert loaded == model
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_array_equal(a, b)
    families = [FactorAnalyser(q, v) for q in (1, 2) for v in ("UUU", "CCU")]
    result = jaxem.select(X, [1, 2], families=families, key=jax.random.key(0), n_init=2)
    assert result.model.n_components == 2 and result.model.family.n_factors == 2


def test_parameter_counts_are_pgmms():
    """pgmm's counts for K = 3, D = 10, q = 2 (McNicholas and Murphy 2008, Table 1), plus the
    means (pgmm counts them apart): loadings 3(20 - 1) or 19; uniquenesses 30, 3, 10 or 1."""
    k, d = 3, 10
    loadings = {"U": 3 * 19, "C": 19}
    uniq = {"UU": 30, "UC": 3, "CU": 10, "CC": 1}
    for variant in VARIANTS:
        family = FactorAnalyser(2, variant)
        assert family.n_parameters_for(k, d) == k * d + loadings[variant[0]] + uniq[variant[1:]]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        FactorAnalyser(2, "UUX")
    with pytest.raises(ValueError, match="n_factors"):
        FactorAnalyser(0)
    model = jaxem.Mixture(FactorAnalyser(3), 2)
    with pytest.raises(ValueError, match="n_factors=3 must be fewer"):
        jaxem.fit(model, np.zeros((10, 3)), None)
    with pytest.raises(ValueError, match="missing"):
        FactorAnalyser.for_data(np.zeros((3, 4)), missing=True)


def test_factor_scores_of_the_mixture(X):
    """`jaxem.Mixture.factor_scores`: each component's posterior mean factors, beta_k (x - mu_k)
    from the dense covariance."""
    model = jaxem.Mixture(FactorAnalyser(Q), 2)
    params = model.init(jax.random.key(0), X)
    scores = np.asarray(model.factor_scores(params, X[:7]))
    c = params.components
    cov = np.asarray(model.family.component_covariances(c, 2))
    for k in range(2):
        beta = np.asarray(c.loadings[k]).T @ np.linalg.inv(cov[k])
        np.testing.assert_allclose(
            scores[:, k], (X[:7] - c.means[k]) @ beta.T, rtol=1e-9, atol=1e-11
        )
    with pytest.raises(TypeError, match="no latent factors"):
        jaxem.GaussianMixture(2).factor_scores(None, X)


@pytest.mark.parametrize("variant", ["UUU", "CCU"])
def test_a_switched_off_component_stays_finite(X, variant):
    """`jaxem.select` switches components off (weight zero): their parameters must stay finite,
    and a common part must not be poisoned by them."""
    model = jaxem.Mixture(FactorAnalyser(Q, variant), 3)
    active = np.array([True, True, False])
    labels = np.arange(len(X)) % 2
    start = model.m_step(model.stats(X, np.eye(3)[labels]), None, active)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(start))
    stats_, _ = model.e_step(start, jnp.asarray(X), jnp.ones(len(X)))
    after = model.m_step_from(start, stats_, None, active)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(after))
    # the common parts stay common (an empty component once kept its old loadings)
    model.check_params(after, X.shape[1], X.dtype)


def test_hidden_markov_model_with_factor_analyser_emissions():
    """Factor-analyser emissions in an HMM: the M-step reads the current loadings
    (`HiddenMarkovModel.m_step_from`); Baum-Welch ascends, and the log-likelihood is the forward
    recursion's over dense normal densities."""
    rng = np.random.default_rng(4)
    states = np.zeros(300, int)
    for t in range(1, 300):
        states[t] = states[t - 1] if rng.uniform() < 0.9 else 1 - states[t - 1]
    loadings = rng.normal(size=(2, D, 1))
    X = 3.0 * states[:, None] + np.einsum("tdq,tq->td", loadings[states], rng.normal(size=(300, 1)))
    X = X + 0.5 * rng.normal(size=(300, D))
    model = jaxem.HiddenMarkovModel(FactorAnalyser(1), 2)
    start = model.init(jax.random.key(0), X[None])
    fit = jaxem.fit(model, X[None], start, tol=0, max_iter=15)
    history = np.asarray(fit.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    p = fit.params
    cov = np.asarray(model.family.component_covariances(p.emissions, 2))
    log_b = np.stack(
        [stats.multivariate_normal(p.emissions.means[k], cov[k]).logpdf(X) for k in range(2)],
        axis=1,
    )
    reference = numpy_forward(log_b, np.asarray(p.initial), np.asarray(p.transitions))
    np.testing.assert_allclose(model.score(p, X[None]), reference, rtol=1e-10)


def test_a_start_in_row_blocks(X):
    """`init` in row blocks (large data): the start takes a second pass, whose M-step reads the
    first pass's parameters; it is finite and close to the one-block start."""
    model = jaxem.Mixture(FactorAnalyser(Q), 2)
    whole = model.init(jax.random.key(0), X)
    blocks = model.init(jax.random.key(0), X, chunk_size=64)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(blocks))
    np.testing.assert_allclose(blocks.components.means, whole.components.means, atol=0.1)


def test_crosscheck_with_numpyro(X):
    """EM's fixed point is the mode of the same model written with NumPyro's
    LowRankMultivariateNormal (MLE, and MAP with the inverse gamma on the uniquenesses): the log
    joints agree; the covariances agree (the loadings only up to a rotation)."""
    from jaxem import crosscheck

    model = jaxem.Mixture(FactorAnalyser(Q, "UUU", reg_covar=0.0), 2)
    for prior in (None, model.default_prior(X)):
        report = crosscheck.compare(model, X, prior, jax.random.key(0), tol=1e-13, max_iter=5000)
        assert report.em_objective_diff < 1e-12
        assert report.objective_diff < 1e-9
        em, mode = report.em.params.components, report.mode.params.components
        dense = [model.family.component_covariances(p, 2) for p in (em, mode)]
        np.testing.assert_allclose(dense[0], dense[1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="variant='UUU'"):
        crosscheck.compare(jaxem.Mixture(FactorAnalyser(Q, "CUU"), 2), X, None, jax.random.key(0))
