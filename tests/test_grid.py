"""Switched-off components (`jaxem.grid`): a K_max mixture with the last components off is the
K-component mixture, fit for fit, and every cell of a grid is such a fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from conftest import COVARIANCE_TYPES

import jaxem
from jaxem.buckets import pad_rows
from jaxem.gaussian_mixture import MCLUST_MODELS
from jaxem.grid import (
    MaskedMixture,
    MaskedParams,
    best_starts,
    first_components,
    fit_grid,
    shared_programs,
)
from jaxem.initialization import lloyd, nearest, whiten

K, K_MAX = 2, 4


@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_switched_off_components_change_nothing(faithful, covariance_type, with_prior):
    """EM of the K_max mixture with components K.. switched off equals EM of the K-component
    mixture from the same start: parameters, log-likelihood and the number of iterations."""
    X = jnp.asarray(faithful)
    small, large = (
        jaxem.GaussianMixture(K, covariance_type),
        jaxem.GaussianMixture(K_MAX, covariance_type),
    )
    active = jnp.arange(K_MAX) < K
    # a hard start: short and long waiting times
    resp = np.zeros((len(faithful), K_MAX))
    resp[np.arange(len(faithful)), (faithful[:, 1] > 70).astype(int)] = 1.0
    weights = jnp.ones(len(faithful))
    prior_small = jaxem.default_prior(small, X) if with_prior else None
    prior_large = None
    if with_prior:
        prior_large = prior_small._replace(alpha=jnp.ones(K_MAX))
    masked = MaskedMixture(large)
    on = MaskedParams(None, active)
    start_large = masked.m_step_from(on, large.stats(X, resp), prior_large)
    start_small = small.m_step(small.stats(X, resp[:, :K]), prior_small)
    np.testing.assert_allclose(first_components(large, start_large.params, K)[1], start_small[1])

    got = jaxem.em.run(masked, X, start_large, prior_large, weights, jnp.asarray(1e-10), 200)
    got = got._replace(params=got.params.params)
    want = jaxem.fit(small, X, start_small, prior=prior_small, tol=1e-10, max_iter=200)
    assert int(got.n_iter) == int(want.n_iter)
    mine = first_components(large, got.params, K)
    for a, b in zip(mine, want.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(got.params[0][K:]), 0.0)
    loglik = jnp.sum(small.score_samples(want.params, X))
    np.testing.assert_allclose(jnp.sum(large.score_samples(got.params, X)), loglik, rtol=1e-12)
    if not with_prior:
        np.testing.assert_allclose(got.objective, want.objective, rtol=1e-12)
    else:  # the objective differs by a constant: the switched-off components' prior terms
        offset = got.history[: int(got.n_iter)] - want.history[: int(want.n_iter)]
        np.testing.assert_allclose(offset, offset[0], atol=1e-8)


@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
def test_grid_cells_are_fits_of_their_own_k(faithful, with_prior):
    """Each cell's log-likelihood (with a prior: at the posterior mode, the prior's terms left
    out) is SciPy's at its K-component parameters, its entropy (when asked for, else NaN) is
    $-\\sum_n \\log \\max_k r_{nk}$ from SciPy's densities, its weights past K are zero."""
    X = jnp.asarray(faithful)
    mixtures = (jaxem.GaussianMixture(3, "full"),)
    ks = [1, 2, 3]
    priors = None
    if with_prior:
        prior = jaxem.default_prior(mixtures[0], X)
        priors = (jax.tree.map(lambda a: jnp.stack([a] * 3), prior),)
    (result,) = fit_grid(
        mixtures,
        jax.random.key(0),
        X,
        jnp.asarray(ks),
        jnp.ones(len(faithful)),
        priors,
        n_init=4,
        tol=jnp.asarray(1e-8),
        max_iter=500,
        with_entropy=not with_prior,
    )
    start, collapsed = best_starts(mixtures[0], result, ks, regular=not with_prior)
    assert not collapsed.any()
    np.testing.assert_array_equal(start, np.argmax(np.asarray(result.objective), axis=1))
    result = jax.tree.map(lambda a: a[np.arange(3), start], result)
    for i, k in enumerate(ks):
        params = first_components(mixtures[0], jax.tree.map(lambda a, i=i: a[i], result.params), k)
        log_joint = np.stack(
            [
                np.log(params.weights[j])
                + scipy.stats.multivariate_normal.logpdf(
                    faithful, params.means[j], params.covariances[j]
                )
                for j in range(k)
            ],
            axis=1,
        )
        log_px = scipy.special.logsumexp(log_joint, axis=1)
        np.testing.assert_allclose(result.loglik[i], np.sum(log_px), rtol=1e-12)
        if with_prior:
            assert np.isnan(result.entropy[i])
        else:
            entropy = -np.sum(np.max(log_joint, axis=1) - log_px)
            np.testing.assert_allclose(result.entropy[i], entropy, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(np.asarray(result.params[0][i, k:]), 0.0)
    if with_prior:
        return
    # K = 1 has a closed form: the sample mean and the (biased) covariance
    mean, cov = faithful.mean(0), np.cov(faithful.T, bias=True)
    want = np.sum(scipy.stats.multivariate_normal.logpdf(faithful, mean, cov + 1e-6 * np.eye(2)))
    np.testing.assert_allclose(result.loglik[0], want, rtol=1e-10)


def _e_side(mixture, X, weights):
    """The E-step's computation of a masked ``mixture`` as a jaxpr, its constants apart:
    preparing the data, the E-step, a partition's statistics and the log joint, at
    parameters of the shapes its M-step gives."""
    model, k_max = MaskedMixture(mixture), mixture.n_components
    responsibilities = jax.ShapeDtypeStruct((X.shape[0], k_max), X.dtype)

    def parameters(responsibilities):
        stats = mixture.stats(X, responsibilities, weights)
        return model.m_step_from(MaskedParams(None, jnp.ones((k_max,), bool)), stats, None)

    def e_side(params, X, weights, responsibilities):
        return (
            model.e_step(params, model.prepare(X, weights), weights),
            mixture.stats(X, responsibilities, weights),
            mixture.log_joint(params.params, X),
        )

    params = jax.eval_shape(parameters, responsibilities)
    program = jax.make_jaxpr(e_side)(params, X, weights, responsibilities)
    return str(program.jaxpr), [np.asarray(c) for c in program.consts]


FAMILIES_BY_STRUCTURE = {
    "gaussian": lambda name: jaxem.families.Gaussian(name),
    "gaussian-missing": lambda name: jaxem.families.Gaussian(name, missing=True),
    "t": lambda name: jaxem.families.StudentT(name),
}


@pytest.mark.parametrize("family", list(FAMILIES_BY_STRUCTURE))
def test_structures_declaring_one_e_step_trace_to_one_e_step(faithful, family):
    """What lets `fit_grid` fit several structures in one program (the E-step compiled once,
    the M-step chosen by ``lax.switch``) is each family's declared ``e_step_form``: for every
    pair of mclust's structures (Gaussian, with missing values, multivariate t), the forms are
    equal exactly where the E-steps trace to the same program with the same constants;
    select's six groups follow."""
    X = jnp.asarray(faithful[:40])
    weights = jnp.ones(40)
    make = FAMILIES_BY_STRUCTURE[family]
    mixtures = tuple(jaxem.Mixture(make(name), 4) for name in MCLUST_MODELS)
    traced = [_e_side(m, X, weights) for m in mixtures]
    forms = [jaxem.capabilities.of_family(m.family).e_step_form for m in mixtures]
    for i, (text_i, consts_i) in enumerate(traced):
        for j, (text_j, consts_j) in enumerate(traced[:i]):
            same = text_i == text_j and all(
                np.array_equal(a, b) for a, b in zip(consts_i, consts_j, strict=True)
            )
            assert (forms[i] == forms[j]) == same, (MCLUST_MODELS[i], MCLUST_MODELS[j])
    groups = shared_programs(mixtures, (None,) * len(mixtures))
    named = [{MCLUST_MODELS[j] for j in group} for group in groups]
    assert named == [
        {"VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"},
        {"VEI", "EVI", "VVI"},
        {"EII"},
        {"VII"},
        {"EEI"},
        {"EEE"},
    ]
    assert [len(g) for g in groups] == sorted((len(g) for g in groups), reverse=True)


def test_a_grid_compiles_one_program_per_shared_e_step(faithful):
    """Fitting several structures that share an E-step compiles one program for all of
    them (`jaxem.grid._PROGRAMS` holds the last calls' programs), and each structure's cells
    are the fits of that structure: the same as fitted in a grid of its own."""
    X = jnp.asarray(faithful)
    names = ("VVV", "EII", "EVV", "VII")
    mixtures = tuple(jaxem.GaussianMixture(3, name) for name in names)
    arguments = (jax.random.key(2), X, jnp.arange(1, 4), jnp.ones(len(faithful)), None)
    options = dict(n_init=2, tol=jnp.asarray(1e-8), max_iter=300)
    together = fit_grid(mixtures, *arguments, **options)
    programs = next(reversed(jaxem.grid._PROGRAMS.values()))
    assert len(programs) == 1 + 3  # the k-means partitions; VVV with EVV; EII; VII
    for mixture, shared in zip(mixtures, together, strict=True):
        (alone,) = fit_grid((mixture,), *arguments, **options)
        np.testing.assert_array_equal(shared.n_iter, alone.n_iter)
        np.testing.assert_allclose(shared.loglik, alone.loglik, rtol=1e-10)
        for a, b in zip(*map(jax.tree.leaves, (shared.params, alone.params)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("with_prior", [False, True], ids=["mle", "map"])
def test_starts_one_after_another_equal_starts_side_by_side(faithful, monkeypatch, with_prior):
    """On a CPU the grid's starts run one after another (``jax.lax.map``), elsewhere side by
    side in `jaxem.batch.fit_lanes`: every start's fit is the same EM either way (parameters,
    log-likelihood, iterations), for a closed-form and a warm-started iterative M-step."""
    X = jnp.asarray(faithful)
    mixtures = (jaxem.GaussianMixture(3, "VVV"), jaxem.GaussianMixture(3, "EVE"))
    ks = jnp.arange(1, 4)
    priors = None
    if with_prior:
        mixtures = mixtures[:1]  # EVE has no conjugate prior
        prior = jaxem.default_prior(mixtures[0], X)
        priors = (jax.tree.map(lambda a: jnp.stack([a] * 3), prior),)

    def grid(side_by_side):
        monkeypatch.setattr(jaxem.grid, "starts_side_by_side", lambda: side_by_side)
        return fit_grid(
            mixtures, jax.random.key(1), X, ks, jnp.ones(len(faithful)), priors,
            n_init=3, tol=jnp.asarray(1e-8), max_iter=300,
        )  # fmt: skip

    for apart, together in zip(grid(False), grid(True), strict=True):
        np.testing.assert_array_equal(apart.n_iter, together.n_iter)
        np.testing.assert_allclose(apart.loglik, together.loglik, rtol=1e-10)
        np.testing.assert_allclose(apart.objective, together.objective, rtol=1e-10)
        for a, b in zip(*map(jax.tree.leaves, (apart.params, together.params)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_whitened_data_has_identity_covariance(faithful):
    """`whiten`: weighted mean 0 and weighted covariance I, whatever the columns' units."""
    w = np.random.default_rng(0).uniform(0.0, 2.0, len(faithful))
    Z = np.asarray(whiten(jnp.asarray(faithful * [1.0, 100.0]), jnp.asarray(w)))
    mean = w @ Z / w.sum()
    cov = (Z - mean).T @ ((Z - mean) * w[:, None]) / w.sum()
    np.testing.assert_allclose(mean, 0.0, atol=1e-10)
    np.testing.assert_allclose(cov, np.eye(2), atol=1e-10)


def test_lloyd_among_active_centres_only():
    """With centres 2.. switched off, every sample goes to centre 0 or 1, the switched-off
    centres stay where they were, and the active ones end at their clusters' means."""
    X = jnp.asarray([[0.0], [0.2], [5.0], [5.4], [2.6]])
    w = jnp.ones(5)
    centres = jnp.asarray([[0.0], [5.0], [2.6], [9.0]])  # centre 2 sits on a sample
    active = jnp.arange(4) < 2
    moved = np.asarray(lloyd(X, w, centres, 5, None, active))
    np.testing.assert_allclose(moved[:, 0], [0.1, (5.0 + 5.4 + 2.6) / 3, 2.6, 9.0])
    labels = nearest(X, jnp.asarray(moved), active)
    np.testing.assert_array_equal(np.asarray(labels), [0, 0, 1, 1, 1])


def test_pad_rows_sizes_and_zero_weights():
    ns = (1, 16, 17, 25, 272, 1000)
    sizes = {n: pad_rows(np.ones((n, 2)), np.ones(n))[0].shape[0] for n in ns}
    assert sizes == {1: 16, 16: 16, 17: 24, 25: 32, 272: 384, 1000: 1024}
    rows = np.arange(34.0).reshape(17, 2)
    weights = np.full(17, 2.0)
    weights[[0, 5]] = 0.0
    X, w = pad_rows(rows, weights)
    np.testing.assert_array_equal(np.asarray(w), list(weights) + [0.0] * 7)
    # rows of weight zero, padding included, hold the first row of positive weight (data
    # the model supports, where zeros need not be); the others are unchanged
    expected = np.concatenate([rows, np.zeros((7, 2))])
    expected[np.asarray(w) == 0] = rows[1]
    np.testing.assert_array_equal(np.asarray(X), expected)
