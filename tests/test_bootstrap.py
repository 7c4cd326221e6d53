"""The bootstrap (`jaxem.bootstrap`, `jaxem.resampling`) and the bootstrap likelihood-ratio test
(`jaxem.bootstrap_lrt`) against mclust's MclustBootstrap and mclustBootstrapLRT on Old Faithful
(tests/data/mclust/make_bootstrap.R and its output): jaxem's refits start from mclust's own fit,
the standard errors agree within Monte Carlo error (10 %; the jackknife, which draws nothing,
to 2 %), the likelihood-ratio statistics to 1e-3 and the p-values within Monte Carlo error.

MclustBootstrap refits with emControl's default tolerance, a relative change of the
log-likelihood of 1e-5 (about 4e-5 per row here), where faithful's two overlapping components
are still far from their maximum (EM's rate there is 0.96): the nonparametric, parametric and
jackknife comparisons stop jaxem's refits at that tolerance too. (Run to convergence, the two
components' weights have bootstrap standard errors 0.15 and 0.15, not mclust's 0.105 and
0.103.) Its weighted likelihood bootstrap runs its refits much further; there jaxem's default
tolerance is compared, within 15 % (the spread is heavy-tailed: the standard error of one
run of 999 replicates is about 5 %)."""

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lowerings

import jaxem

REFERENCE = Path(__file__).parent / "data" / "mclust" / "bootstrap.csv"
G, D = 3, 2


@pytest.fixture(scope="module")
def mclust():
    values = {}
    with open(REFERENCE) as f:
        for row in csv.DictReader(f):
            values.setdefault(row["what"], []).append(float(row["value"]))
    return {what: np.array(v) for what, v in values.items()}


@pytest.fixture(scope="module")
def model():
    return jaxem.GaussianMixture(G, covariance_type="VVV")


@pytest.fixture(scope="module")
def fitted(faithful, mclust, model):
    """jaxem's EM from mclust's fit: it stays there (same log-likelihood)."""
    start = jaxem.GaussianMixtureParams(
        jnp.asarray(mclust["fit_pro"]),
        jnp.asarray(mclust["fit_mean"].reshape(G, D)),
        jnp.asarray(mclust["fit_variance"].reshape(G, D, D)),
    )
    result = jaxem.fit(model, faithful, start, tol=1e-12, max_iter=1000)
    np.testing.assert_allclose(float(result.objective), mclust["fit_loglik"][0], rtol=1e-8)
    return result


def mclust_se(mclust, kind):
    return (
        mclust[f"se_{kind}_pro"],
        mclust[f"se_{kind}_mean"].reshape(G, D),
        mclust[f"se_{kind}_variance"].reshape(G, D, D),
    )


MCLUST_TOL = 1e-5 * 1127.07 / 272  # mclust's relative tolerance, per row


@pytest.mark.parametrize(
    "kind, theirs, tol",
    [
        ("nonparametric", "bs", MCLUST_TOL),
        ("parametric", "pb", MCLUST_TOL),
        ("bayesian", "wlbs", 1e-6),
    ],
)
def test_bootstrap_standard_errors_match_mclust(faithful, mclust, model, fitted, kind, theirs, tol):
    """The median entry within 10 % of mclust's, every entry within 25 % (two overlapping
    components: their covariances' spread hangs on a few replicates and on where each run's
    stopping rule leaves them)."""
    result = jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), kind=kind, tol=tol)
    assert result.n_replicates >= 990
    se = result.standard_errors()
    ours = np.concatenate([np.ravel(a) for a in (se.weights, se.means, se.covariances)])
    reference = np.concatenate([np.ravel(a) for a in mclust_se(mclust, theirs)])
    relative = np.abs(ours / reference - 1)
    assert np.median(relative) < 0.1 and np.max(relative) < 0.25, np.round(relative, 3)
    # the well-separated component's weight and means within 10 %
    np.testing.assert_allclose(se.weights[1], mclust_se(mclust, theirs)[0][1], rtol=0.1)
    np.testing.assert_allclose(se.means[1], mclust_se(mclust, theirs)[1][1], rtol=0.1)


def test_jackknife_matches_mclust(faithful, mclust, model, fitted):
    result = jaxem.bootstrap(
        model, fitted, faithful, key=jax.random.key(0), kind="jackknife", tol=MCLUST_TOL
    )
    assert result.n_replicates == len(faithful)
    se = result.standard_errors()
    # nothing is drawn: what differs is where each stopping rule leaves the refits
    for ours, reference in zip(
        (se.weights, se.means, se.covariances), mclust_se(mclust, "jk"), strict=True
    ):
        np.testing.assert_allclose(ours, reference, rtol=0.05)


def test_likelihood_ratio_test_matches_mclust(faithful, mclust):
    models = [jaxem.GaussianMixture(g, covariance_type="VVV") for g in (1, 2, 3, 4)]
    # mclust's fits: EM from its hierarchical start (random starts find a higher maximum with
    # 3 components, -1119.21 against -1127.07: a statistic of 22.1 instead of 6.4 for 2 vs 3)
    fits = [
        jaxem.fit(m, faithful, m.deterministic_start(faithful), tol=1e-12, max_iter=5000)
        for m in models
    ]
    lrt = jaxem.bootstrap_lrt(models, faithful, key=jax.random.key(0), fits=fits, n_boot=99)
    np.testing.assert_allclose(lrt.log_likelihoods, mclust["lrt_loglik"], rtol=1e-8)
    np.testing.assert_allclose(lrt.statistics, mclust["lrt_obs"], atol=1e-3)
    # p-values within Monte Carlo error of mclust's (999 replicates there, 99 here)
    se = np.sqrt(mclust["lrt_p"] * (1 - mclust["lrt_p"]) / 99 + 1 / 99**2)
    assert np.all(np.abs(lrt.p_values - mclust["lrt_p"]) < 4 * se + 0.01), (
        lrt.p_values,
        mclust["lrt_p"],
    )
    assert "1 vs 2" in lrt.summary()


def test_one_component_closed_forms():
    """Of one Gaussian, the estimated mean is the sample mean: its jackknife standard error is
    exactly s / sqrt(N) (s with N - 1), the bootstrap's about the same."""
    rng = np.random.default_rng(0)
    X = rng.normal([1.0, -2.0], [1.0, 3.0], (80, 2))
    model = jaxem.GaussianMixture(1, covariance_type="VVV")
    fit = jaxem.fit(model, X, model.init(jax.random.key(0), X), tol=1e-12)
    expected = np.std(X, axis=0, ddof=1) / np.sqrt(len(X))
    jackknife = jaxem.bootstrap(model, fit, X, key=jax.random.key(0), kind="jackknife")
    np.testing.assert_allclose(jackknife.standard_errors().means[0], expected, rtol=1e-8)
    for kind in ("nonparametric", "bayesian"):
        drawn = jaxem.bootstrap(model, fit, X, key=jax.random.key(1), kind=kind, n_boot=400)
        np.testing.assert_allclose(drawn.standard_errors().means[0], expected, rtol=0.12)
        lower, upper = drawn.interval(0.9)
        assert np.all(lower.means < fit.params.means) and np.all(fit.params.means < upper.means)


def test_bad_input(faithful, model, fitted):
    with pytest.raises(ValueError, match="kind must be one of"):
        jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), kind="smooth")
    with pytest.raises(ValueError, match="n_boot"):
        jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), n_boot=0)
    with pytest.raises(ValueError, match="at least two"):
        jaxem.bootstrap_lrt([model], faithful, key=jax.random.key(0))


def test_hidden_markov_model_parametric_bootstrap_and_lrt():
    """Sequences drawn from a fitted two-state Gaussian HMM: the parametric bootstrap's standard
    errors of the emission means agree with the observed information's (a well-identified
    model: within 15 % at 200 replicates), and the LRT of one against two states rejects."""
    rng = np.random.default_rng(3)
    # four sequences of 100 steps, regimes switching every 25, two starting in each state (with
    # one sequence the initial probabilities would sit on the simplex's boundary)
    states = np.stack([np.repeat(np.tile([s % 2, 1 - s % 2], 2), 25) for s in range(4)])
    X = (np.where(states == 0, -1.0, 1.5) + rng.normal(size=states.shape))[..., None]
    models = [jaxem.HiddenMarkovModel(jaxem.families.Gaussian("spherical"), k) for k in (1, 2)]
    fits = [
        jaxem.fit(m, X, m.init(jax.random.key(0), X[0]), tol=1e-10, max_iter=2000) for m in models
    ]
    drawn = jaxem.bootstrap(
        models[1], fits[1], X, key=jax.random.key(0), kind="parametric", n_boot=300
    )
    observed = jaxem.standard_errors(models[1], fits[1], X)
    np.testing.assert_allclose(
        drawn.standard_errors().emissions.means, observed.standard_errors.emissions.means, rtol=0.15
    )
    lrt = jaxem.bootstrap_lrt(models, X, key=jax.random.key(1), fits=fits, n_boot=19)
    assert lrt.statistics[0] > 100 and lrt.p_values[0] == 1 / 20


def test_resampling_compiles_programs_not_operations(faithful):
    """The bootstrap and the LRT compile a handful of programs: drawing, reweighing, stacking
    and scoring as programs of their own, not operation by operation (each operation run
    outside a program compiles one: 21 programs for a bootstrap before, over 300 for the LRT
    below, most of their cold time). Counted for a configuration no other test compiles."""
    models = [jaxem.GaussianMixture(k, "spherical") for k in (1, 2)]
    fits = [jaxem.fit(m, faithful, m.deterministic_start(faithful)) for m in models]
    with lowerings() as lowered:
        jaxem.bootstrap(models[1], fits[1], faithful, key=jax.random.key(0), n_boot=7)
    assert len(lowered) <= 6, len(lowered)
    with lowerings() as lowered:
        jaxem.bootstrap_lrt(models, faithful, key=jax.random.key(0), fits=fits, n_boot=5)
    assert len(lowered) <= 12, len(lowered)
