"""Values missing at random: exact EM for Gaussian mixtures (`jaxem.families.gaussian.missing`).

References written here, independently of the library's Schur-complement E-step: the
observed-data log-likelihood row by row as the marginal density of the observed coordinates
(`jax.scipy.stats.multivariate_normal` on the observed sub-vector and sub-matrix, rows grouped by
their pattern), its gradient at EM's fixed point, and fits of complete data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, make_blobs
from jax.scipy.stats import multivariate_normal

import jaxem
from jaxem.families import Gaussian, GaussianParams

K = 3


def remove_at_random(X: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.array(X, dtype=float)
    out[rng.random(X.shape) < fraction] = np.nan
    return out


@pytest.fixture(scope="module")
def complete() -> np.ndarray:
    return make_blobs(0)


@pytest.fixture(scope="module")
def incomplete(complete) -> np.ndarray:
    X = remove_at_random(complete, 0.25, seed=1)
    X[7] = np.nan  # a row with nothing observed
    return X


def observed_log_likelihood(weights, means, covariances, X, covariance_type):
    """$\\sum_n \\log \\sum_k \\pi_k \\mathcal{N}(x_{n,o} \\mid \\mu_{k,o}, \\Sigma_{k,oo})$,
    the observed coordinates' marginal, one group of rows per pattern of missing values."""
    k = weights.shape[0]
    covs = Gaussian(covariance_type).component_covariances(GaussianParams(means, covariances), k)
    seen = ~np.isnan(X)
    total = 0.0
    for pattern in np.unique(seen, axis=0):
        if not pattern.any():
            continue
        rows = np.all(seen == pattern, axis=1)
        o = np.flatnonzero(pattern)
        x = jnp.asarray(X[rows][:, o])
        per_component = jnp.stack(
            [
                jnp.log(weights[j])
                + multivariate_normal.logpdf(x, means[j][o], covs[j][np.ix_(o, o)])
                for j in range(k)
            ]
        )
        total = total + jnp.sum(jax.nn.logsumexp(per_component, axis=0))
    return total


def model(covariance_type: str, map_: bool) -> jaxem.GaussianMixture:
    # maximum likelihood without reg_covar, so that EM's fixed point is a stationary point
    reg = 1e-6 if map_ else 0.0
    return jaxem.GaussianMixture(K, covariance_type, reg_covar=reg, missing=True)


@functools.cache
def _fit(covariance_type: str, map_: bool, key: int = 0):
    X = _INCOMPLETE
    m = model(covariance_type, map_)
    prior = jaxem.default_prior(m, X) if map_ else None
    start = m.init(jax.random.PRNGKey(key), X)
    return m, prior, jaxem.fit(m, X, start, prior=prior, tol=1e-13, max_iter=3000)


_INCOMPLETE = None


@pytest.fixture(scope="module")
def fitted(incomplete):
    global _INCOMPLETE
    _INCOMPLETE = incomplete
    _fit.cache_clear()
    _reference.cache_clear()
    yield _fit
    _fit.cache_clear()
    _reference.cache_clear()


CASES = [(t, m) for t in COVARIANCE_TYPES for m in (False, True)]


@functools.cache
def _reference(covariance_type: str):
    """The observed-data log-likelihood and its gradient in unconstrained coordinates (log
    weights, means, covariance entries: symmetrised), one compiled program per type."""

    def log_lik(log_weights, means, covariances):
        if covariance_type in ("full", "tied"):
            covariances = 0.5 * (covariances + jnp.swapaxes(covariances, -1, -2))
        weights = jax.nn.softmax(log_weights)
        return observed_log_likelihood(weights, means, covariances, _INCOMPLETE, covariance_type)

    return jax.jit(jax.value_and_grad(log_lik, argnums=(0, 1, 2)))


@pytest.mark.parametrize("covariance_type,map_", CASES)
def test_objective_is_the_observed_data_log_likelihood_at_a_stationary_point(
    fitted, incomplete, covariance_type, map_
):
    """``fit(...).objective`` is the observed-data log-likelihood written independently (plus
    the log prior density for MAP), the history never decreases, and the gradient of that
    objective at EM's converged estimate is below 1e-6 x N."""
    m, prior, result = fitted(covariance_type, map_)
    p = result.params
    coordinates = (jnp.log(p.weights), p.means, p.covariances)
    reference, grads = _reference(covariance_type)(*coordinates)
    if map_:

        def log_prior(log_weights, means, covariances):
            if covariance_type in ("full", "tied"):
                covariances = 0.5 * (covariances + jnp.swapaxes(covariances, -1, -2))
            params = jaxem.GaussianMixtureParams(jax.nn.softmax(log_weights), means, covariances)
            return m.log_prior(params, prior)

        value, prior_grads = jax.value_and_grad(log_prior, argnums=(0, 1, 2))(*coordinates)
        reference = reference + value
        grads = [g + h for g, h in zip(grads, prior_grads, strict=True)]
    assert result.converged
    np.testing.assert_allclose(result.objective, reference, rtol=1e-12)
    history = np.asarray(result.history)[: int(result.n_iter)]
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    worst = max(float(jnp.max(jnp.abs(g))) for g in grads)
    assert worst < 1e-6 * incomplete.shape[0], worst


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_complete_data_gives_the_complete_data_fit(complete, covariance_type):
    """With missing=True and no value missing, the fit is the ordinary one (to rounding: the
    default path, missing=False, is unchanged and checked against scikit-learn elsewhere)."""
    plain = jaxem.GaussianMixture(K, covariance_type)
    start = plain.init(jax.random.PRNGKey(0), complete)
    a = jaxem.fit(plain, complete, start, max_iter=20)
    b = jaxem.fit(
        jaxem.GaussianMixture(K, covariance_type, missing=True), complete, start, max_iter=20
    )
    np.testing.assert_allclose(b.objective, a.objective, rtol=1e-12)
    for x, y in zip(b.params, a.params, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def conditional_reference(weights, means, covs, x):
    """The mixture's conditional mean and covariance of the missing values of one row, by the
    textbook formulas ($\\mu_m + \\Sigma_{mo}\\Sigma_{oo}^{-1}(x_o - \\mu_o)$ per component,
    mixed by the responsibilities of the observed values)."""
    from scipy.stats import multivariate_normal as mvn

    o, m = ~np.isnan(x), np.isnan(x)
    log_r, cond_means, cond_covs = [], [], []
    for w, mu, cov in zip(weights, means, covs, strict=True):
        s_oo, s_mo = cov[np.ix_(o, o)], cov[np.ix_(m, o)]
        log_r.append(np.log(w) + (mvn.logpdf(x[o], mu[o], s_oo) if o.any() else 0.0))
        gain = s_mo @ np.linalg.inv(s_oo) if o.any() else np.zeros((m.sum(), 0))
        cond_means.append(mu[m] + gain @ (x[o] - mu[o]))
        cond_covs.append(cov[np.ix_(m, m)] - gain @ s_mo.T)
    r = np.exp(np.array(log_r) - np.logaddexp.reduce(log_r))
    mean = sum(ri * ci for ri, ci in zip(r, cond_means, strict=True))
    cov = sum(
        ri * (ci + np.outer(mi - mean, mi - mean))
        for ri, ci, mi in zip(r, cond_covs, cond_means, strict=True)
    )
    return mean, cov


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_is_the_conditional_mean_and_draws_have_its_spread(
    fitted, incomplete, covariance_type
):
    m, _, result = fitted(covariance_type, False)
    p = result.params
    imputed = np.asarray(m.impute(p, incomplete))
    seen = ~np.isnan(incomplete)
    np.testing.assert_array_equal(imputed[seen], incomplete[seen])
    covs = np.asarray(
        Gaussian(covariance_type).component_covariances(GaussianParams(p.means, p.covariances), K)
    )
    w, mu = np.asarray(p.weights), np.asarray(p.means)
    for row in np.flatnonzero(~seen.all(axis=1))[:40]:
        mean, _ = conditional_reference(w, mu, covs, incomplete[row])
        np.testing.assert_allclose(imputed[row][~seen[row]], mean, rtol=1e-10, atol=1e-10)
    # multiple imputation: draws of one row with two missing values, against its conditional
    row = int(np.flatnonzero((~seen).sum(axis=1) == 2)[0])
    draws = np.asarray(m.impute(p, incomplete[row : row + 1], key=jax.random.PRNGKey(3), n=20000))
    assert draws.shape == (20000, 1, 3)
    np.testing.assert_array_equal(
        draws[:, 0, seen[row]], np.broadcast_to(incomplete[row, seen[row]], (20000, 1))
    )
    mean, cov = conditional_reference(w, mu, covs, incomplete[row])
    missing_draws = draws[:, 0, ~seen[row]]
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(missing_draws.mean(axis=0) - mean) < 4 * sd / np.sqrt(20000))
    np.testing.assert_allclose(np.cov(missing_draws.T), cov, rtol=0.05, atol=0.05 * sd.max() ** 2)


def _distance(params, reference) -> float:
    """Frobenius distance of means and covariances after matching components (by the first
    coordinate of the means, which separates the three clusters of `make_blobs`)."""
    a, b = np.argsort(np.asarray(params.means)[:, 0]), np.argsort(np.asarray(reference.means)[:, 0])
    means = np.asarray(params.means)[a] - np.asarray(reference.means)[b]
    covs = np.asarray(params.covariances)[a] - np.asarray(reference.covariances)[b]
    return float(np.sqrt(np.sum(means**2) + np.sum(covs**2)))


def test_em_beats_mean_imputation_and_dropping_rows(complete):
    """30 % of the entries removed at random: EM with missing values lands closer to the
    complete-data estimate than mean imputation followed by a fit, and than a fit of the
    complete rows only (all three started from the complete data's k-means start)."""
    X = remove_at_random(complete, 0.3, seed=5)
    plain = jaxem.GaussianMixture(K, "full")
    start = plain.init(jax.random.PRNGKey(0), complete)
    reference = jaxem.fit(plain, complete, start, tol=1e-10, max_iter=2000).params
    em = jaxem.fit(
        jaxem.GaussianMixture(K, "full", missing=True), X, start, tol=1e-10, max_iter=2000
    )
    filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    imputed = jaxem.fit(plain, filled, start, tol=1e-10, max_iter=2000)
    rows = ~np.isnan(X).any(axis=1)
    dropped = jaxem.fit(plain, X[rows], start, tol=1e-10, max_iter=2000)
    distances = [_distance(r.params, reference) for r in (em, imputed, dropped)]
    print("distances to the complete-data fit (EM, mean imputation, complete rows):", distances)
    assert distances[0] < distances[1] and distances[0] < distances[2]


@pytest.mark.parametrize("map_", [False, True])
def test_degenerate_missingness_stays_finite(complete, map_):
    """A column observed in only three rows, and a cluster whose points all miss the same
    column: finite, no NaN, and the objective still the observed-data log-likelihood."""
    X = np.array(complete)
    X[3:, 2] = np.nan  # column 2 seen in three rows only
    X[200:350, 0] = np.nan  # the second cluster never shows column 0
    m = jaxem.GaussianMixture(K, "full", missing=True)
    prior = jaxem.default_prior(m, X) if map_ else None
    result = jaxem.fit(m, X, m.init(jax.random.PRNGKey(0), X), prior=prior, max_iter=300)
    for leaf in result.params:
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert np.isfinite(float(result.objective))
    reference = observed_log_likelihood(*result.params, X, "full")
    if map_:
        reference = reference + m.log_prior(result.params, prior)
    np.testing.assert_allclose(result.objective, reference, rtol=1e-10)
    assert np.all(np.isfinite(np.asarray(m.impute(result.params, X))))


def test_rows_with_nothing_observed_change_nothing(incomplete):
    """A row of NaN has likelihood one: the fit with extra empty rows is the fit without them,
    and BIC counts only rows with an observed value."""
    m = jaxem.GaussianMixture(K, "diag", missing=True)
    rows = ~np.isnan(incomplete).all(axis=1)
    start = m.init(jax.random.PRNGKey(0), incomplete[rows])
    padded = np.concatenate([incomplete[rows], np.full((5, 3), np.nan)])
    a = jaxem.fit(m, incomplete[rows], start, max_iter=50)
    b = jaxem.fit(m, padded, start, max_iter=50)
    np.testing.assert_allclose(b.objective, a.objective, rtol=1e-13)
    for x, y in zip(b.params, a.params, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        jaxem.bic(m, b.params, padded), jaxem.bic(m, a.params, incomplete[rows]), rtol=1e-13
    )


def test_nan_without_missing_and_inf_with_it_are_clear_errors(incomplete):
    plain = jaxem.GaussianMixture(K)
    with pytest.raises(ValueError, match="missing=True"):
        plain.init(jax.random.PRNGKey(0), incomplete)
    m = jaxem.GaussianMixture(K, missing=True)
    bad = np.array(incomplete)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        m.init(jax.random.PRNGKey(0), bad)
    with pytest.raises(ValueError, match="no observed value"):
        m.init(jax.random.PRNGKey(0), np.full((5, 2), np.nan))
    with pytest.raises(TypeError, match="missing"):
        jaxem.GaussianMixture(K, missing="yes")
    no_column = np.array(incomplete)
    no_column[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"X\[:, 1\] has no observed value"):
        m.init(jax.random.PRNGKey(0), no_column)
    start = jaxem.GaussianMixture(K).init(jax.random.PRNGKey(0), make_blobs(0))
    with pytest.raises(TypeError, match="missing=True"):
        plain.impute(start, incomplete)


def _discrete_data():
    rng = np.random.default_rng(0)
    n = 300
    z = rng.integers(0, 2, n)
    binary = (rng.random((n, 5)) < np.where(z[:, None] == 0, 0.2, 0.8)).astype(float)
    counts = rng.poisson(np.where(z[:, None] == 0, 1.0, 5.0), (n, 4)).astype(float)
    codes = np.where(z[:, None] == 0, rng.integers(0, 2, (n, 3)), rng.integers(1, 3, (n, 3)))
    out = {}
    for name, X in (("bernoulli", binary), ("poisson", counts), ("categorical", codes * 1.0)):
        X = np.array(X)
        X[rng.random(X.shape) < 0.3] = np.nan
        out[name] = X
    return out


def discrete_log_likelihood(name, log_weights, natural, X):
    """The observed entries' log-likelihood, written out per family; ``natural``: logits of the
    Bernoulli probabilities, log rates, or log category probabilities (softmax-normalised)."""
    seen = ~np.isnan(X)
    x = np.where(seen, X, 0.0)
    if name == "bernoulli":
        terms = jnp.einsum("nd,kd->kn", seen * x, jax.nn.log_sigmoid(natural)) + jnp.einsum(
            "nd,kd->kn", seen * (1 - x), jax.nn.log_sigmoid(-natural)
        )
    elif name == "poisson":
        terms = (
            jnp.einsum("nd,kd->kn", seen * x, natural)
            - jnp.einsum("nd,kd->kn", seen * 1.0, jnp.exp(natural))
            - np.sum(seen * scipy_gammaln(x + 1), axis=1)
        )
    else:
        one_hot = np.eye(3)[x.astype(int)] * seen[..., None]
        terms = jnp.einsum("ndc,kdc->kn", one_hot, jax.nn.log_softmax(natural, axis=-1))
    return jnp.sum(jax.nn.logsumexp(terms + jax.nn.log_softmax(log_weights)[:, None], axis=0))


def scipy_gammaln(x):
    from scipy.special import gammaln

    return gammaln(x)


@pytest.mark.parametrize("map_", [False, True])
@pytest.mark.parametrize("name", ["bernoulli", "poisson", "categorical"])
def test_discrete_families_drop_missing_entries_exactly(name, map_):
    """Bernoulli, Poisson and categorical columns with 30 % missing: the objective is the
    observed entries' log-likelihood written out here, EM's estimate a stationary point of it
    (gradient below 1e-6 x N in logits, log rates, log probabilities), and ``impute`` gives
    the predictive mean (Bernoulli, Poisson) or the most probable category."""
    X = _discrete_data()[name]
    family = {
        "bernoulli": jaxem.families.Bernoulli(missing=True),
        "poisson": jaxem.families.Poisson(missing=True),
        "categorical": jaxem.families.Categorical(3, missing=True),
    }[name]
    m = jaxem.Mixture(family, 2)
    prior = jaxem.default_prior(m, X) if map_ else None
    result = jaxem.fit(
        m, X, m.init(jax.random.PRNGKey(0), X), prior=prior, tol=1e-13, max_iter=5000
    )
    assert result.converged
    weights, component = result.params
    natural = {
        "bernoulli": lambda c: jnp.log(c.probs) - jnp.log1p(-c.probs),
        "poisson": lambda c: jnp.log(c.rates),
        "categorical": lambda c: jnp.log(c.probs),
    }[name](component)
    to_params = {
        "bernoulli": lambda v: jaxem.families.BernoulliParams(jax.nn.sigmoid(v)),
        "poisson": lambda v: jaxem.families.PoissonParams(jnp.exp(v)),
        "categorical": lambda v: jaxem.families.CategoricalParams(jax.nn.softmax(v, axis=-1)),
    }[name]

    def objective(log_weights, natural):
        value = discrete_log_likelihood(name, log_weights, natural, X)
        if map_:
            params = jaxem.MixtureParams(jax.nn.softmax(log_weights), to_params(natural))
            value = value + m.log_prior(params, prior)
        return value

    value, grads = jax.value_and_grad(objective, argnums=(0, 1))(jnp.log(weights), natural)
    np.testing.assert_allclose(result.objective, value, rtol=1e-12)
    worst = max(float(jnp.max(jnp.abs(g))) for g in grads)
    assert worst < 1e-6 * X.shape[0], worst
    imputed = np.asarray(m.impute(result.params, X))
    resp = np.asarray(m.predict_proba(result.params, X))
    gaps = np.isnan(X)
    if name == "categorical":
        predictive = np.einsum("nk,kdc->ndc", resp, np.asarray(component.probs))
        np.testing.assert_array_equal(imputed[gaps], np.argmax(predictive, axis=-1)[gaps])
    else:
        mean = resp @ np.asarray(component[0])
        np.testing.assert_allclose(imputed[gaps], mean[gaps], rtol=1e-12)
    np.testing.assert_array_equal(imputed[~gaps], X[~gaps])


def test_hmm_emissions_with_missing_values(faithful):
    """A Gaussian HMM on Old Faithful in time order with 20 % of the values removed and one
    step with nothing observed (a step without emission): the objective is the forward
    algorithm's log-likelihood of the observed values, written here with SciPy's marginal
    densities, and the fit is a fixed point (one more EM step changes nothing)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal as mvn

    X = np.array(faithful)
    X[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan
    X[10] = np.nan
    m = jaxem.HiddenMarkovModel(Gaussian("full", missing=True), 2)
    result = jaxem.fit(m, X, m.init(jax.random.PRNGKey(0), X), tol=1e-12, max_iter=1000)
    assert result.converged
    p = result.params
    means, covs = np.asarray(p.emissions.means), np.asarray(p.emissions.covariances)
    log_b = np.zeros((X.shape[0], 2))
    for t, x in enumerate(X):
        o = ~np.isnan(x)
        if o.any():
            log_b[t] = [mvn.logpdf(x[o], means[k][o], covs[k][np.ix_(o, o)]) for k in range(2)]
    log_a = np.log(np.asarray(p.transitions))
    alpha = np.log(np.asarray(p.initial)) + log_b[0]
    for t in range(1, X.shape[0]):
        alpha = logsumexp(alpha[:, None] + log_a, axis=0) + log_b[t]
    np.testing.assert_allclose(result.objective, logsumexp(alpha), rtol=1e-12)
    again = jaxem.em_step(m, p, X)[0]
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    # impute: the smoothed state marginals mixing each state's textbook conditional mean
    gamma = np.asarray(m.predict_proba(p, X))
    imputed = np.asarray(m.impute(p, X))
    for t in np.flatnonzero(np.isnan(X).any(axis=1))[:30]:
        o = ~np.isnan(X[t])
        expected = np.zeros((~o).sum())
        for k in range(2):
            gain = covs[k][np.ix_(~o, o)] @ np.linalg.inv(covs[k][np.ix_(o, o)])
            expected += gamma[t, k] * (means[k][~o] + gain @ (X[t, o] - means[k][o]))
        np.testing.assert_allclose(imputed[t, ~o], expected, rtol=1e-10)
        np.testing.assert_array_equal(imputed[t, o], X[t, o])
    # multiple imputation: state paths from their posterior, values from the conditionals;
    # their mean is the conditional mean above
    draws = np.asarray(m.impute(p, X, key=jax.random.PRNGKey(1), n=1000))
    assert draws.shape == (1000,) + X.shape
    gaps = np.isnan(X)
    np.testing.assert_array_equal(draws[:, ~gaps], np.broadcast_to(X[~gaps], (1000, (~gaps).sum())))
    spread = draws[:, gaps].std(axis=0) / np.sqrt(1000)
    assert np.all(np.abs(draws[:, gaps].mean(axis=0) - imputed[gaps]) <= 4.5 * spread + 1e-9)


@pytest.mark.parametrize("case", ["full", "bernoulli"])
def test_numpyro_log_joint_of_the_observed_entries_is_the_objective(fitted, incomplete, case):
    """NumPyro's log density of the model with a masked likelihood (jaxem.crosscheck: masked
    entries for independent columns, the observed block's marginal for Gaussians) equals the
    MAP objective at EM's estimate."""
    from jaxem import crosscheck

    if case == "full":
        m, prior, result = fitted("full", True)
        X = incomplete
    else:
        X = _discrete_data()["bernoulli"]
        m = jaxem.Mixture(jaxem.families.Bernoulli(missing=True), 2)
        prior = jaxem.default_prior(m, X)
        result = jaxem.fit(m, X, m.init(jax.random.PRNGKey(0), X), prior=prior, max_iter=50)
    value = crosscheck.log_joint(m, result.params, X, prior)
    np.testing.assert_allclose(value, result.objective, rtol=1e-12)


def test_fit_batch_and_restarts_take_missing_values():
    """Three data sets with 20 % missing in one compiled call: each member equals its own
    fit; fit_restarts keeps the best start."""
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 60, 2))
    batch[:, :30] += 3
    batch[rng.random(batch.shape) < 0.2] = np.nan
    batch[1, 5] = np.nan  # a row with nothing observed
    m = jaxem.GaussianMixture(2, "full", missing=True)
    together = jaxem.fit_batch(m, jax.random.PRNGKey(0), batch)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    for i in range(3):
        alone = jaxem.fit(m, batch[i], m.init(keys[i], batch[i]))
        np.testing.assert_allclose(together.objective[i], alone.objective, rtol=1e-10)
    best = jaxem.fit_restarts(m, jax.random.PRNGKey(1), batch[0], n_init=3)
    assert np.isfinite(float(best.objective))
    bad = np.array(batch)
    bad[2, 0, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        jaxem.fit_batch(m, jax.random.PRNGKey(0), bad)


def test_estimator_takes_missing_values(incomplete):
    """``jaxem.sklearn.GaussianMixture(missing=True)``: fits data with NaN, its scores are the
    observed values' log-densities (written here), BIC counts the rows with an observed value,
    ``impute`` fills the gaps; without ``missing`` NaN is scikit-learn's error."""
    from jaxem.sklearn import GaussianMixture

    gm = GaussianMixture(K, missing=True, random_state=0).fit(incomplete)
    params = (jnp.asarray(gm.weights_), jnp.asarray(gm.means_), jnp.asarray(gm.covariances_))
    reference = observed_log_likelihood(*params, incomplete, "full")
    np.testing.assert_allclose(np.sum(gm.score_samples(incomplete)), reference, rtol=1e-12)
    n = int(np.sum(~np.isnan(incomplete).all(axis=1)))
    p = jaxem.GaussianMixture(K).n_parameters(3)
    np.testing.assert_allclose(gm.bic(incomplete), -2 * reference + p * np.log(n), rtol=1e-12)
    model = jaxem.GaussianMixture(K, missing=True)
    expected = model.impute(jaxem.GaussianMixtureParams(*params), incomplete)
    np.testing.assert_allclose(gm.impute(incomplete), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(K).fit(incomplete)


def test_select_with_missing_values(faithful):
    """``select(..., missing=True)`` on Old Faithful with 10 % of the values removed: the best
    cell's criterion is BIC of the observed-data log-likelihood written here (n: the rows that
    hold an observed value); without ``missing`` the NaN is an error naming the option."""
    X = np.array(faithful)
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    X[3] = np.nan
    result = jaxem.select(X, (1, 2), ("full", "diag"), key=jax.random.PRNGKey(0), missing=True)
    model, p = result.model, result.params
    assert model.missing
    reference = observed_log_likelihood(*p, X, model.covariance_type)
    n = int(np.sum(~np.isnan(X).all(axis=1)))
    expected = -2 * reference + model.n_parameters(2) * np.log(n)
    best = result.table[model.covariance_type][model.n_components]
    np.testing.assert_allclose(best, expected, rtol=1e-9)
    with pytest.raises(ValueError, match="missing=True"):
        jaxem.select(X, (1, 2), key=jax.random.PRNGKey(0))


def test_command_line_fits_and_predicts_with_missing_values(faithful, tmp_path):
    """``jaxem fit --missing`` reads empty cells and NA as missing values: its log-likelihood
    is the observed values' (written here, at the saved parameters), ``predict`` takes the
    same file, and without ``--missing`` an empty cell is one error line, exit status 2."""
    import json
    import subprocess
    import sys

    X = np.array(faithful)
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    rows = [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in X]
    rows[5] = "NA,NA"
    X[5] = np.nan
    (tmp_path / "gaps.csv").write_text("eruptions,waiting\n" + "\n".join(rows) + "\n")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "jaxem.cli", *args], capture_output=True, text=True, cwd=tmp_path
        )

    run = cli("fit", "gaps.csv", "-k", "2", "-q", "--missing", "--out", "m.npz", "--json", "s.json")
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    model, params, _ = jaxem.load(tmp_path / "m.npz")
    assert model.missing and summary["n_missing"] == int(np.isnan(X).sum())
    reference = observed_log_likelihood(*params, X, "full")
    np.testing.assert_allclose(summary["log_likelihood"], reference, rtol=1e-6)  # float32
    predicted = cli("predict", "m.npz", "gaps.csv")
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == X.shape[0] + 1
    refused = cli("fit", "gaps.csv", "-k", "2", "-q")
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--missing" in refused.stderr


def test_rows_of_weight_zero_change_no_start_with_missing_values():
    """A start with missing values fills them with the column means of the rows that count:
    rows of weight zero (the padding of jaxem.pad or of the shared sizes in jaxem.buckets)
    leave it as it is (before, their zeros entered the fill means and moved the start)."""
    X = np.array(jaxem.load_faithful()[0])
    X[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan
    model = jaxem.GaussianMixture(2, "full", missing=True)
    padded, weights = jaxem.pad([X, X[:300]])
    alone = model.init(jax.random.PRNGKey(0), X)
    with_padding = model.init(jax.random.PRNGKey(0), padded[0], weights[0])
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(with_padding), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
