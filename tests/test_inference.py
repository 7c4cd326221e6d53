"""The forward-backward pass and Viterbi against brute-force enumeration of all K^T paths."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy

from jaxem.inference import (
    chain_posterior,
    forward_backward,
    forward_backward_parallel,
    sample_states,
    viterbi,
)


def _chain(rng, k, zeros):
    initial = rng.dirichlet(np.ones(k))
    transitions = rng.dirichlet(np.ones(k), size=k)
    if zeros:  # structural zeros: some transitions impossible, rows renormalised
        transitions[0, -1] = 0.0
        if k > 2:
            transitions[1, 0] = 0.0
        transitions /= transitions.sum(1, keepdims=True)
    return initial, transitions


def _enumerate(initial, transitions, log_likelihoods):
    """log p(x, z) for every path z: (K^T,) and the paths (K^T, T)."""
    t, k = log_likelihoods.shape
    paths = np.array(list(itertools.product(range(k), repeat=t)))
    with np.errstate(divide="ignore"):
        log_joint = np.log(initial[paths[:, 0]]) + log_likelihoods[0, paths[:, 0]]
        for s in range(1, t):
            log_joint += np.log(transitions[paths[:, s - 1], paths[:, s]])
            log_joint += log_likelihoods[s, paths[:, s]]
    return log_joint, paths


# compiled once per shape (run op by op, every case would compile each operation anew)
SEQUENTIAL = jax.jit(forward_backward)
PARALLEL = jax.jit(forward_backward_parallel)
VITERBI = jax.jit(viterbi)

CASES = [
    (k, t, zeros, seed)
    for k in (2, 3)
    for t in (1, 2, 6)
    for zeros in (False, True)
    for seed in (0, 1)
]


@pytest.mark.parametrize("k, t, zeros, seed", CASES)
def test_equals_enumeration(k, t, zeros, seed):
    rng = np.random.default_rng(seed + 10 * k + 100 * t)
    initial, transitions = _chain(rng, k, zeros)
    log_likelihoods = rng.normal(0, 3, (t, k)) - 50.0  # far from 0: the scaling must cope
    log_joint, paths = _enumerate(initial, transitions, log_likelihoods)
    log_px = np.logaddexp.reduce(log_joint)
    posterior = np.exp(log_joint - log_px)
    marginals = np.stack([np.bincount(paths[:, s], posterior, minlength=k) for s in range(t)])
    counts = np.zeros((k, k))
    for s in range(t - 1):
        np.add.at(counts, (paths[:, s], paths[:, s + 1]), posterior)

    # padded to T + 2 with junk log-likelihoods: nothing changes
    padded = np.concatenate([log_likelihoods, rng.normal(0, 5, (2, k))])
    mask = np.r_[np.ones(t), np.zeros(2)]
    runs = [
        (method, ll, m)
        for method in (PARALLEL, SEQUENTIAL)  # the last one's got is kept
        for ll, m in ((log_likelihoods, None), (padded, mask))
    ]
    for method, ll, m in runs:
        got = method(jnp.asarray(initial), jnp.asarray(transitions), jnp.asarray(ll), m)
        np.testing.assert_allclose(got.log_likelihood, log_px, rtol=1e-12)
        np.testing.assert_allclose(got.marginals[:t], marginals, atol=1e-12)
        np.testing.assert_allclose(got.marginals[t:], 0.0)
        np.testing.assert_allclose(got.transition_counts, counts, atol=1e-12)
        if zeros:
            assert float(got.transition_counts[0, -1]) == 0.0
        path, score = VITERBI(jnp.asarray(initial), jnp.asarray(transitions), jnp.asarray(ll), m)
        best = int(np.argmax(log_joint))
        np.testing.assert_allclose(score, log_joint[best], rtol=1e-12)
        np.testing.assert_array_equal(np.asarray(path)[:t], paths[best])
    # filtered marginals: p(z_t | x_1:t) by enumerating the prefixes (both methods)
    parallel = PARALLEL(initial, transitions, log_likelihoods)
    np.testing.assert_allclose(parallel.filtered, got.filtered[:t], atol=1e-12)
    for s in range(t):
        prefix_joint, prefix_paths = _enumerate(initial, transitions, log_likelihoods[: s + 1])
        p = np.exp(prefix_joint - np.logaddexp.reduce(prefix_joint))
        want = np.bincount(prefix_paths[:, s], p, minlength=k)
        np.testing.assert_allclose(got.filtered[s], want, atol=1e-12)


def test_float32_long_sequence_is_finite_and_matches_float64():
    """T = 100,000 steps in float32: no underflow; the log-likelihood agrees with float64 to
    float32 accuracy relative to its magnitude."""
    rng = np.random.default_rng(0)
    k, t = 3, 100_000
    initial, transitions = _chain(rng, k, True)
    ll = rng.normal(0, 2, (t, k)) - 30.0
    got64 = jax.jit(forward_backward)(initial, transitions, jnp.asarray(ll))
    got32 = jax.jit(forward_backward)(
        jnp.asarray(initial, jnp.float32),
        jnp.asarray(transitions, jnp.float32),
        jnp.asarray(ll, jnp.float32),
    )
    assert np.isfinite(float(got32.log_likelihood))
    np.testing.assert_allclose(got32.log_likelihood, got64.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(got32.marginals.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(got32.transition_counts.sum(), t - 1, rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_parallel_equals_sequential_at_t_1e5(dtype):
    """The associative-scan pass gives the sequential statistics: 1e-9 relative in float64, and
    float32 accuracy relative to the magnitudes in float32 (padding included)."""
    rng = np.random.default_rng(1)
    k, t = 4, 100_000
    initial, transitions = _chain(rng, k, True)
    ll = rng.normal(0, 2, (t, k)) - 30.0
    mask = np.r_[np.ones(t - 777), np.zeros(777)]
    args = [jnp.asarray(a, dtype) for a in (initial, transitions, ll, mask)]
    sequential = jax.jit(forward_backward)(*args)
    parallel = jax.jit(forward_backward_parallel)(*args)
    tol = 1e-9 if dtype == jnp.float64 else 1e-4
    for a, b in zip(parallel, sequential, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.all(np.isfinite(a))
        assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b))


@pytest.mark.parametrize("zeros", [False, True])
def test_backward_sampling_draws_paths_with_their_posterior_probabilities(zeros):
    """Forward-filtering backward-sampling on a 3-state chain of 3 real steps and one padded
    step: the frequencies of 40,000 drawn paths against the posterior probabilities of all 27
    paths by enumeration (within 4 standard errors), and the padded step repeats the last."""
    rng = np.random.default_rng(3)
    k, t, n = 3, 3, 40_000
    initial, transitions = _chain(rng, k, zeros)
    log_likelihoods = rng.normal(size=(t, k))
    log_joint, paths = _enumerate(initial, transitions, log_likelihoods)
    posterior = np.exp(log_joint - np.logaddexp.reduce(log_joint))
    padded = np.concatenate([log_likelihoods, np.zeros((1, k))])
    mask = np.array([1.0, 1.0, 1.0, 0.0])
    filtered = SEQUENTIAL(initial, transitions, padded, mask).filtered
    keys = jax.random.split(jax.random.key(0), n)
    draws = np.asarray(
        jax.jit(jax.vmap(sample_states, (0, None, None, None)))(keys, transitions, filtered, mask)
    )
    np.testing.assert_array_equal(draws[:, 3], draws[:, 2])
    codes = draws[:, :3] @ (k ** np.arange(t)[::-1])
    frequencies = np.bincount(codes, minlength=k**t) / n
    standard_error = np.sqrt(posterior * (1 - posterior) / n)
    assert np.all(np.abs(frequencies - posterior) <= 4 * standard_error + 1e-12)


CHAIN_POSTERIOR = jax.jit(chain_posterior)


def _chain_factors(rng, k, t, depth, sharp):
    """Log factors of a chain of ``t`` states: the first step's and the later steps', the
    later ones reaching ``depth`` below zero along the chain; with ``sharp``, state 0 is
    certain first and every step from it is ``sharp`` below the step's largest factor."""
    first = rng.normal(size=k) * 3
    steps = rng.normal(size=(t - 1, k, k)) * 3 - np.linspace(0.0, depth, t - 1)[:, None, None]
    if sharp:
        first[1:] -= 1e4
        steps[:, 0, :] -= sharp
    return first, steps


@pytest.mark.parametrize(
    "depth, sharp",
    [
        (200.0, 0.0),  # factors far below one, but within exp's range about each step's largest
        (0.0, 800.0),  # beyond it (float64): the recursions in probabilities underflow
    ],
)
def test_chain_posterior_is_brute_force_enumeration(depth, sharp):
    """`chain_posterior` (the forward-backward pass of chains written with NumPyro's `scan`)
    against the sum over all K^T paths: log normaliser, first state's and consecutive pairs'
    posteriors, for three chains at once whose factors change along the chain and reach far
    below one (log factors down to -200, where unscaled recursions would lose the small
    paths), and for chains whose probable states' factors are 800 below each step's largest,
    where the scaled recursions in probabilities underflow and those in logs take over."""
    rng = np.random.default_rng(7)
    k, t = 3, 6
    chains = [_chain_factors(rng, k, t, depth, sharp) for _ in range(3)]
    first = np.stack([c[0] for c in chains])
    steps = np.stack([c[1] for c in chains])
    result = CHAIN_POSTERIOR(jnp.asarray(first), jnp.asarray(steps))
    _assert_brute_force(first, steps, result)


def _assert_brute_force(first: np.ndarray, steps: np.ndarray, result) -> None:
    """``result`` (`chain_posterior`'s) is the sum over all K^T paths of the chains with log
    factors ``first`` ``(S, K)`` and ``steps`` ``(S, T - 1, K, K)`` (-inf allowed)."""
    log_z, first_states, pairs = result
    n_chains, n_steps, k, _ = steps.shape
    paths = np.array(list(itertools.product(range(k), repeat=n_steps + 1)))
    for s in range(n_chains):
        logp = first[s, paths[:, 0]]
        logp = logp + sum(steps[s, i, paths[:, i], paths[:, i + 1]] for i in range(n_steps))
        expected = scipy.special.logsumexp(logp)
        posterior = np.exp(logp - expected)
        np.testing.assert_allclose(float(log_z[s]), expected, rtol=1e-13)
        np.testing.assert_allclose(
            first_states[s], np.bincount(paths[:, 0], posterior, k), rtol=1e-11, atol=1e-300
        )
        for i in range(n_steps):
            joint = np.zeros((k, k))
            np.add.at(joint, (paths[:, i], paths[:, i + 1]), posterior)
            np.testing.assert_allclose(pairs[s, i], joint, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("sharp", [0.0, 800.0])
def test_chain_posterior_of_transition_probabilities_and_emissions(sharp):
    """Factors given as transition probabilities (some exactly zero) times the exponentiated
    log factors of the current state alone (``weights``, ``steps`` of shape ``(S, T - 1, 1,
    K)``): the sum over all K^T paths; with ``sharp``, state 0 certain first, no step from it
    back to 0, and the emissions favouring 0 by 800 at every step, so that the recursions in
    probabilities underflow and those in logs take over (the zeros' logs -inf there)."""
    rng = np.random.default_rng(8)
    n_chains, k, t = 2, 3, 6
    probs = rng.dirichlet(np.ones(k), (n_chains, t - 1, k))
    probs[:, :, 1, 2] = 0.0  # a structural zero
    if sharp:
        probs[:, :, 0, 0] = 0.0
    probs /= probs.sum(axis=-1, keepdims=True)
    emissions = rng.normal(size=(n_chains, t - 1, 1, k)) * 3
    first = rng.normal(size=(n_chains, k)) * 3
    if sharp:
        first[:, 1:] -= 1e4
        emissions[..., 0] += sharp
    result = CHAIN_POSTERIOR(jnp.asarray(first), jnp.asarray(emissions), jnp.asarray(probs))
    with np.errstate(divide="ignore"):
        _assert_brute_force(first, np.log(probs) + emissions, result)
    assert np.all(np.asarray(result[2])[probs == 0] == 0)


def test_chain_posterior_of_one_step():
    """A chain of one state (no steps): its normaliser and posterior are the first factor's."""
    first = jnp.asarray([[0.5, -1.0, 2.0]])
    log_z, first_states, pairs = CHAIN_POSTERIOR(first, jnp.zeros((1, 0, 3, 3)))
    expected = scipy.special.logsumexp(np.asarray(first[0]))
    np.testing.assert_allclose(log_z, [expected], rtol=1e-14)
    np.testing.assert_allclose(first_states[0], np.exp(np.asarray(first[0]) - expected), rtol=1e-14)
    assert pairs.shape == (1, 0, 3, 3)
