"""Hidden Markov models by EM (Baum-Welch) against hmmlearn (priors switched off, the same
starting parameters, sequences of mixed lengths), brute-force enumeration over all K^T paths,
and the properties the theory promises (monotone ascent, padding that changes nothing,
structural zeros that stay zero, shift equivariance)."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lowerings

import jaxem
from jaxem import families

hmm = pytest.importorskip("hmmlearn.hmm")

K = 3
LENGTHS = [60, 1, 37, 90]  # a sequence of length 1 among them
CHAIN = (
    np.array([0.5, 0.3, 0.2]),
    np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]),
)
COVARIANCES = {
    "full": np.array(
        [[[1.0, 0.3], [0.3, 0.5]], [[0.4, -0.1], [-0.1, 0.3]], [[2.0, 0.0], [0.0, 1.0]]]
    ),
    "diag": np.array([[1.0, 0.5], [0.4, 0.3], [2.0, 1.0]]),
    "spherical": np.array([1.0, 0.4, 2.0]),
    "tied": np.array([[1.0, 0.3], [0.3, 0.5]]),
}
MEANS = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def _gaussian(covariance_type):
    model = jaxem.HiddenMarkovModel(families.Gaussian(covariance_type, reg_covar=0.0), K)
    truth = jaxem.HMMParams(*CHAIN, families.GaussianParams(MEANS, COVARIANCES[covariance_type]))
    reference = partial(
        hmm.GaussianHMM,
        K,
        covariance_type,
        min_covar=0.0,
        means_prior=0,
        means_weight=0,
        covars_prior=0,
        covars_weight=0,
    )

    def set_emissions(h, emissions):
        h.means_ = np.asarray(emissions.means)
        h.covars_ = np.asarray(emissions.covariances)

    def emissions(h):
        if covariance_type == "spherical":  # after a fit hmmlearn stores them tiled, (K, D)
            return h.means_, np.asarray(h._covars_).reshape(K, -1)[:, 0]
        if covariance_type == "diag":
            return h.means_, np.diagonal(h.covars_, 0, 1, 2)
        return h.means_, h.covars_[0] if covariance_type == "tied" else h.covars_

    return model, truth, reference, set_emissions, emissions


def _categorical():
    model = jaxem.HiddenMarkovModel(families.Categorical(4), K)
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.3, 0.6]])
    truth = jaxem.HMMParams(*CHAIN, families.CategoricalParams(probs[:, None, :]))
    reference = partial(hmm.CategoricalHMM, K, emissionprob_prior=1.0, n_features=4)

    def set_emissions(h, emissions):
        h.emissionprob_ = np.asarray(emissions.probs)[:, 0, :]

    return model, truth, reference, set_emissions, lambda h: (h.emissionprob_,)


def _poisson():
    model = jaxem.HiddenMarkovModel(families.Poisson(), K)
    rates = np.array([[1.0, 5.0], [4.0, 0.5], [9.0, 3.0]])
    truth = jaxem.HMMParams(*CHAIN, families.PoissonParams(rates))
    reference = partial(hmm.PoissonHMM, K, lambdas_prior=0.0, lambdas_weight=0.0)

    def set_emissions(h, emissions):
        h.lambdas_ = np.asarray(emissions.rates)

    return model, truth, reference, set_emissions, lambda h: (h.lambdas_,)


CASES = {f"gaussian-{c}": (lambda c=c: _gaussian(c)) for c in COVARIANCES}
CASES.update(categorical=_categorical, poisson=_poisson)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, truth, reference, set_emissions, emissions = CASES[request.param]()
    X, _ = model.sample(jax.random.key(0), truth, max(LENGTHS), len(LENGTHS))
    sequences = [np.asarray(X[i, :n]) for i, n in enumerate(LENGTHS)]
    X, weights = jaxem.pad(sequences)
    if not request.param.startswith("gaussian"):  # hmmlearn wants integer symbols and counts
        sequences = [s.astype(np.int64) for s in sequences]
    start = model.init(jax.random.key(1), X, weights)
    return request.param, model, X, weights, sequences, start, reference, set_emissions, emissions


@pytest.mark.parametrize("n_iter", [1, 10])
def test_equals_hmmlearn(case, n_iter):
    name, model, X, weights, sequences, start, reference, set_emissions, emissions = case
    if n_iter == 1:  # one E-step and M-step (em_step), without compiling a loop of one
        params, _ = jaxem.em_step(model, start, X, weights=weights)
    else:
        result = jaxem.fit(model, X, start, weights=weights, tol=0.0, max_iter=n_iter)
        params = result.params
    # a new object: hmmlearn's convergence monitor keeps the n_iter and tol it was made with
    reference = reference(n_iter=n_iter, tol=-np.inf, init_params="", implementation="log")
    reference.startprob_ = np.asarray(start.initial)
    reference.transmat_ = np.asarray(start.transitions)
    set_emissions(reference, start.emissions)
    reference.fit(np.concatenate(sequences), LENGTHS)

    assert _relative(params.initial, reference.startprob_) < 1e-8
    assert _relative(params.transitions, reference.transmat_) < 1e-8
    ours = jax.tree.leaves(params.emissions)
    for a, b in zip(ours, emissions(reference), strict=True):
        assert _relative(np.reshape(a, np.shape(b)), b) < 1e-8, name
    per_sequence = model.score_sequences(params, X, weights)
    assert np.allclose(per_sequence, [reference.score(s) for s in sequences], rtol=1e-10)
    if n_iter > 1:
        # hmmlearn records the log-likelihood at the parameters every M-step starts from
        expected = list(reference.monitor_.history)
        assert len(expected) == n_iter
        assert np.allclose(result.history[: n_iter - 1], expected[1:], rtol=1e-10)
        total = reference.score(np.concatenate(sequences), LENGTHS)
        assert abs(float(result.objective) - total) < 1e-9 * abs(total)


def test_inference_equals_hmmlearn(case):
    name, model, X, weights, sequences, start, reference, set_emissions, _ = case
    reference = reference()
    reference.startprob_ = np.asarray(start.initial)
    reference.transmat_ = np.asarray(start.transitions)
    set_emissions(reference, start.emissions)
    steps = np.concatenate(sequences)
    proba = model.predict_proba(start, steps, lengths=LENGTHS)
    assert np.max(np.abs(np.asarray(proba) - reference.predict_proba(steps, LENGTHS))) < 1e-10
    # hmmlearn's return values and order: (log_prob of all sequences, concatenated path)
    log_prob, path = model.decode(start, steps, lengths=LENGTHS)
    expected_log_prob, expected_path = reference.decode(steps, LENGTHS, algorithm="viterbi")
    assert np.array_equal(np.asarray(path), expected_path)
    assert np.array_equal(np.asarray(model.predict(start, steps, lengths=LENGTHS)), expected_path)
    assert abs(float(log_prob) - expected_log_prob) < 1e-10 * abs(expected_log_prob)
    total = model.score(start, steps, lengths=LENGTHS)
    assert abs(float(total) - reference.score(steps, LENGTHS)) < 1e-10 * abs(float(total))
    one = model.score(start, sequences[2])
    assert np.ndim(one) == 0 and abs(float(one) - reference.score(sequences[2])) < 1e-9 * abs(one)


def test_padding_changes_nothing(case):
    """Garbage in the padding, or the sequences fitted with more padding, gives the same fit."""
    _, model, X, weights, sequences, start, *_ = case
    result = jaxem.fit(model, X, start, weights=weights, tol=0.0, max_iter=10)
    garbage = jnp.where(weights[..., None] > 0, X, X[::-1])  # real-looking values
    longer = jnp.concatenate([garbage, garbage[:, :7]], axis=1)
    longer_w = jnp.concatenate([weights, jnp.zeros_like(weights[:, :7])], axis=1)
    again = jaxem.fit(model, longer, start, weights=longer_w, tol=0.0, max_iter=10)
    for a, b in zip(jax.tree.leaves(result), jax.tree.leaves(again), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300, equal_nan=True)


def test_monotone_ascent_mle_and_map(case):
    _, model, X, weights, _, start, *_ = case
    for prior in (None, model.default_prior(X)):
        # max_iter=10: the programs test_equals_hmmlearn compiled
        result = jaxem.fit(model, X, start, weights=weights, prior=prior, tol=0.0, max_iter=10)
        history = np.asarray(result.history)
        assert np.all(np.diff(history) >= -1e-10 * np.abs(history[1:]))


# -- brute force: the model's score, marginals and Viterbi path over all K^T paths ----------


def _enumerate(params, log_likelihoods):
    t, k = log_likelihoods.shape
    paths = np.array(list(itertools.product(range(k), repeat=t)))
    with np.errstate(divide="ignore"):
        log_joint = np.log(params.initial[paths[:, 0]]) + log_likelihoods[0, paths[:, 0]]
        for s in range(1, t):
            log_joint += np.log(params.transitions[paths[:, s - 1], paths[:, s]])
            log_joint += log_likelihoods[s, paths[:, s]]
    return log_joint, paths


@pytest.mark.parametrize("t", [1, 4, 6])
def test_model_equals_enumeration_with_structural_zeros(t):
    rng = np.random.default_rng(t)
    model = jaxem.HiddenMarkovModel(families.Poisson(), K)
    transitions = np.array([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5], [0.3, 0.0, 0.7]])
    params = jaxem.HMMParams(
        np.array([0.6, 0.4, 0.0]),
        transitions,
        families.PoissonParams(np.array([[1.0], [4.0], [9.0]])),
    )
    x = rng.poisson(4.0, (t, 1)).astype(float)
    from scipy.stats import poisson

    log_likelihoods = poisson.logpmf(x, params.emissions.rates[:, 0][None, :])  # (T, K)
    log_joint, paths = _enumerate(params, log_likelihoods)
    total = np.logaddexp.reduce(log_joint)
    assert abs(float(model.score(params, x)) - total) < 1e-12 * abs(total)
    posterior = np.exp(log_joint - total)
    marginals = np.stack([np.bincount(paths[:, s], posterior, K) for s in range(t)])
    np.testing.assert_allclose(model.predict_proba(params, x), marginals, atol=1e-12)
    filtered = []
    for s in range(t):  # p(z_s | x_1:s), from the prefixes' paths
        prefix, prefix_paths = _enumerate(params, log_likelihoods[: s + 1])
        p = np.exp(prefix - np.logaddexp.reduce(prefix))
        filtered.append(np.bincount(prefix_paths[:, s], p, K))
    np.testing.assert_allclose(model.filter(params, x), np.stack(filtered), atol=1e-12)
    score, path = model.decode(params, x)
    assert np.array_equal(np.asarray(path), paths[np.argmax(log_joint)])
    assert abs(float(score) - np.max(log_joint)) < 1e-12 * abs(np.max(log_joint))


def test_structural_zeros_stay_zero_and_empty_states_stay_finite():
    """Zeros of the start stay exactly zero under MLE and MAP; a state that no step visits
    (its initial probability and every transition into it zero) keeps finite emissions and a
    transition row that sums to one."""
    model = jaxem.HiddenMarkovModel(families.Gaussian("full"), K)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 40, 2)) + np.repeat([[0.0], [4.0]], 20, axis=0)[None]
    start = model.init(jax.random.key(0), X)
    start = start._replace(
        initial=jnp.array([1.0, 0.0, 0.0]),
        transitions=jnp.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]]),
    )
    for prior in (None, model.default_prior(X)._replace(initial=2.0, transitions=2.0)):
        result = jaxem.fit(model, X, start, prior=prior, tol=0.0, max_iter=20)
        params = result.params
        assert float(params.initial[1]) == 0.0 and float(params.initial[2]) == 0.0
        assert float(params.transitions[0, 2]) == 0.0 and float(params.transitions[1, 2]) == 0.0
        np.testing.assert_allclose(np.sum(params.transitions, axis=1), 1.0, rtol=1e-12)
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result))
        assert np.isfinite(float(result.objective))


def test_shift_changes_covariances_by_less_than_1e_8():
    model, truth, *_ = _gaussian("full")
    X, _ = model.sample(jax.random.key(3), truth, 200, 2)
    start = model.init(jax.random.key(0), X)
    fitted = jaxem.fit(model, X, start, tol=0.0, max_iter=15).params
    shifted_start = start._replace(
        emissions=start.emissions._replace(means=start.emissions.means + 1e4)
    )
    shifted = jaxem.fit(model, X + 1e4, shifted_start, tol=0.0, max_iter=15).params
    assert _relative(shifted.emissions.covariances, fitted.emissions.covariances) < 1e-8
    assert _relative(shifted.transitions, fitted.transitions) < 1e-8


def test_score_equals_hmmlearn_at_t_1e5():
    model, truth, reference, set_emissions, _ = _gaussian("full")
    reference = reference()
    X, _ = model.sample(jax.random.key(4), truth, 100_000, 1)
    reference.startprob_, reference.transmat_ = CHAIN
    set_emissions(reference, truth.emissions)
    expected = reference.score(np.asarray(X[0]))
    assert abs(float(model.score(truth, X[0])) - expected) < 1e-10 * abs(expected)


def test_float32_long_sequence_ascends():
    """float32 at T = 1e5: finite, and the log-likelihood never falls by more than float32
    rounding of the sum's magnitude."""
    model, truth, *_ = _gaussian("diag")
    truth32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), truth)
    X, _ = model.sample(jax.random.key(5), truth32, 100_000, 1)
    start = model.init(jax.random.key(0), X)
    result = jaxem.fit(model, X, start, tol=0.0, max_iter=8)
    history = np.asarray(result.history, np.float64)
    assert result.objective.dtype == jnp.float32 and np.all(np.isfinite(history))
    assert np.all(np.diff(history) >= -1e-5 * np.abs(history[1:]))


def test_bad_input_is_refused_before_compiling():
    model = jaxem.HiddenMarkovModel(families.Poisson(), 2)
    X = np.ones((2, 5, 1))
    params = jaxem.HMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.9, 0.1], [0.5, 0.4]]),
        families.PoissonParams(np.ones((2, 1))),
    )
    with pytest.raises(ValueError, match="params.transitions: every row must sum to 1"):
        jaxem.fit(model, X, params)
    good = params._replace(transitions=np.array([[0.9, 0.1], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="padding"):
        jaxem.fit(model, X, good, weights=np.array([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1.0]]))
    with pytest.raises(
        ValueError, match=r"weights must have shape \(n_sequences, n_steps\) = \(2, 5\)"
    ):
        jaxem.fit(model, X, good, weights=np.ones(2))
    with pytest.raises(ValueError, match="prior.transitions must be >= 1"):
        prior = jaxem.HMMPrior(1.0, 0.5, families.GammaPrior(1.0, 1.0))
        jaxem.fit(model, X, good, prior=prior)
    with pytest.raises(ValueError, match="lengths must sum"):
        model.score(good, np.ones((5, 1)), lengths=[2, 2])
    with pytest.raises(ValueError, match="X must be one sequence"):
        model.score(good, np.ones(5))


def test_fit_batch_restarts_and_bic():
    """fit_batch of three sequence datasets equals three fits; fit_restarts keeps the best
    start; BIC and AIC equal hmmlearn's (n = the number of steps)."""
    model = jaxem.HiddenMarkovModel(families.Poisson(), 2)
    truth = jaxem.HMMParams(
        jnp.array([0.5, 0.5]),
        jnp.array([[0.9, 0.1], [0.2, 0.8]]),
        families.PoissonParams(jnp.array([[1.0], [6.0]])),
    )
    X, _ = model.sample(jax.random.key(0), truth, 50, 3)
    batch = jnp.stack([X, X[::-1], 2 * X])
    result = jaxem.fit_batch(model, jax.random.key(1), batch, max_iter=50)
    for b, key in enumerate(jax.random.split(jax.random.key(1), 3)):
        one = jaxem.fit(model, batch[b], model.init(key, batch[b]), max_iter=50)
        assert abs(float(result.objective[b]) - float(one.objective)) < 1e-9
    restarts = jaxem.fit_restarts(model, jax.random.key(2), X, n_init=4)
    assert float(restarts.objective) == pytest.approx(float(np.max(restarts.objectives)))

    reference = hmm.PoissonHMM(2)
    reference.n_features = 1
    reference.startprob_ = np.asarray(restarts.params.initial)
    reference.transmat_ = np.asarray(restarts.params.transitions)
    reference.lambdas_ = np.asarray(restarts.params.emissions.rates)
    steps, lengths = np.asarray(X).reshape(-1, 1).astype(np.int64), [50, 50, 50]
    bic = float(jaxem.bic(model, restarts.params, X))
    assert bic == pytest.approx(reference.bic(steps, lengths), rel=1e-12)
    aic = float(jaxem.aic(model, restarts.params, X))
    assert aic == pytest.approx(reference.aic(steps, lengths), rel=1e-12)


def test_parallel_method_fits_as_the_sequential_one():
    """method="parallel" (associative scans) gives the sequential fit: the same statistics,
    hence the same iterates, on padded sequences."""
    model, truth, *_ = _gaussian("diag")
    X, _ = model.sample(jax.random.key(6), truth, 300, 3)
    weights = np.ones((3, 300))
    weights[2, 150:] = 0
    start = model.init(jax.random.key(0), X, weights)
    sequential = jaxem.fit(model, X, start, weights=weights, tol=0.0, max_iter=10)
    parallel_model = jaxem.HiddenMarkovModel(model.family, K, method="parallel")
    parallel = jaxem.fit(parallel_model, X, start, weights=weights, tol=0.0, max_iter=10)
    for a, b in zip(jax.tree.leaves(parallel), jax.tree.leaves(sequential), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="method must be one of"):
        jaxem.HiddenMarkovModel(model.family, K, method="fast")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unconstrained_coordinates_keep_structural_zeros(dtype):
    """``unconstrain``/``constrain`` (where an extrapolation may move): a round trip returns
    the parameters with their zeros exactly zero; random moves of the coordinates give valid
    parameters, still with those zeros."""
    model = jaxem.HiddenMarkovModel(families.Gaussian("full"), K)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1, 40, 2)) + np.repeat([[0.0], [4.0]], 20, axis=0)[None]
    X = X.astype(dtype)
    start = model.init(jax.random.key(0), X)
    start = start._replace(
        initial=jnp.array([1.0, 0.0, 0.0], dtype),
        transitions=jnp.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]], dtype),
    )
    coordinates = model.unconstrain(start)
    back = model.constrain(coordinates)
    tolerance = 1e-12 if dtype == np.float64 else 1e-6
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(start), strict=True):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)
    leaves, tree = jax.tree.flatten(coordinates)
    noise = [rng.normal(size=a.shape).astype(dtype) for a in leaves]
    moved = model.constrain(
        jax.tree.unflatten(tree, [a + e for a, e in zip(leaves, noise, strict=True)])
    )
    model.check_params(moved, 2, dtype)
    assert float(moved.initial[1]) == 0.0 and float(moved.transitions[0, 2]) == 0.0


def test_hmmlearn_habits_work_as_in_hmmlearn():
    """Code ported from hmmlearn: ``n_components``, ``lengths=`` in ``init`` and ``fit``,
    ``sample`` of one sequence, ``score`` the total, ``decode`` as ``(log_prob, path)`` and
    ``predict`` its path, all equal to hmmlearn's on the same parameters."""
    model = jaxem.HiddenMarkovModel(families.Gaussian("diag", reg_covar=0.0), n_components=K)
    assert model == jaxem.HiddenMarkovModel(families.Gaussian("diag", reg_covar=0.0), K)
    assert model.n_components == model.n_states == K
    truth = jaxem.HMMParams(*CHAIN, families.GaussianParams(MEANS, COVARIANCES["diag"]))
    X, states = model.sample(jax.random.key(7), truth, 120)
    assert X.shape == (120, 2) and states.shape == (120,)
    lengths = [50, 70]
    start = model.init(jax.random.key(1), X, lengths=lengths)
    padded, weights = jaxem.pad([X[:50], X[50:]])
    same = model.init(jax.random.key(1), padded, weights)
    jax.tree.map(np.testing.assert_array_equal, start, same)
    fitted = model.fit(jax.random.key(1), X, lengths, tol=0.0, max_iter=5)
    expected = jaxem.fit(model, padded, same, weights=weights, tol=0.0, max_iter=5)
    jax.tree.map(np.testing.assert_array_equal, fitted.params, expected.params)

    reference = hmm.GaussianHMM(K, "diag", init_params="", params="")
    reference.startprob_, reference.transmat_ = CHAIN
    reference.means_, reference.covars_ = MEANS, COVARIANCES["diag"]
    X = np.asarray(X)
    total = model.score(truth, X, lengths=lengths)
    assert np.ndim(total) == 0
    assert abs(float(total) - reference.score(X, lengths)) < 1e-10 * abs(float(total))
    per_sequence = model.score_sequences(truth, X, lengths=lengths)
    expected_each = [reference.score(X[:50]), reference.score(X[50:])]
    np.testing.assert_allclose(per_sequence, expected_each, rtol=1e-10)
    log_prob, path = model.decode(truth, X, lengths=lengths)
    ref_log_prob, ref_path = reference.decode(X, lengths)
    assert abs(float(log_prob) - ref_log_prob) < 1e-10 * abs(ref_log_prob)
    np.testing.assert_array_equal(path, ref_path)
    np.testing.assert_array_equal(
        model.predict(truth, X, lengths=lengths), reference.predict(X, lengths)
    )
    np.testing.assert_array_equal(model.predict(truth, X), reference.predict(X))
    with pytest.raises(TypeError, match="n_states=2 and n_components=3"):
        jaxem.HiddenMarkovModel(families.Poisson(), 2, n_components=3)


def test_init_compiles_programs_not_operations():
    """`init` of padded sequences compiles a few programs: the chain's frequencies from the
    hard states are one (run operation by operation they compiled 16 more, 0.35 s of a first
    call's 1.9 s). A configuration no other test compiles."""
    rng = np.random.default_rng(5)
    seqs = [rng.normal(size=(n, 3)) for n in (11, 23, 5)]
    X, w = jaxem.pad(seqs)
    model = jaxem.HiddenMarkovModel(jaxem.families.Gaussian("spherical"), 3)
    with lowerings() as lowered:
        params = model.init(jax.random.key(0), X, w)
    assert len(lowered) <= 12, len(lowered)
    np.testing.assert_allclose(np.sum(params.transitions, axis=1), 1.0, rtol=1e-12)
