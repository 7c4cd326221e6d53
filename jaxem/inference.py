"""Inference in a hidden Markov chain: the forward-backward pass and the Viterbi path.

For a chain with initial probabilities $\\pi$ ``(K,)``, transitions $A_{ij} = p(z_{t+1} = j
\\mid z_t = i)$ ``(K, K)`` and per-step log-likelihoods $\\ell_{tk} = \\log p(x_t \\mid z_t = k)$
``(T, K)`` (from any component family), these functions give what Baum-Welch's E-step needs.
They know nothing of the family: the emissions enter only through ``log_likelihoods``.

The forward pass is *scaled* (Rabiner 1989): with $b_{tk} = \\exp(\\ell_{tk} - m_t)$,
$m_t = \\max_k \\ell_{tk}$, the normalised forward variables are

$$
\\hat\\alpha_1 \\propto \\pi \\odot b_1, \\qquad
\\hat\\alpha_t \\propto (A^\\top \\hat\\alpha_{t-1}) \\odot b_t, \\qquad
c_t = \\textstyle\\sum_k (\\cdot)_k, \\qquad
\\log p(x_{1:T}) = \\sum_t (\\log c_t + m_t),
$$

and the backward pass $\\hat\\beta_T = 1$, $\\hat\\beta_t = A (b_{t+1} \\odot \\hat\\beta_{t+1})
/ c_{t+1}$, so that the state marginals are $\\gamma_t = \\hat\\alpha_t \\odot \\hat\\beta_t$ and
the expected transition counts $\\sum_t \\hat\\alpha_t \\hat\\beta_{t+1}^\\top \\odot A \\odot
b_{t+1} / c_{t+1}$. Every quantity stays in $[0, 1]$ (no overflow for any T, float32 included),
transitions that are exactly zero stay exactly zero, and each step is a ``(K, K)`` matrix-vector
product instead of a log-sum-exp over ``(K, K)``.

A sequence padded at its end carries a ``mask`` ``(T,)``: 1 for real steps, 0 for padding. A
padded step neither moves the chain nor emits, so every result equals that of the unpadded
sequence (marginals and counts are zero on padding).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Posterior(NamedTuple):
    """What `forward_backward` returns.

    Attributes:
        log_likelihood: $\\log p(x_{1:T})$, a scalar.
        marginals: ``(T, K)``, $p(z_t = k \\mid x_{1:T})$ (zero on padded steps).
        transition_counts: ``(K, K)``, $\\sum_t p(z_t = i, z_{t+1} = j \\mid x_{1:T})$.
        filtered: ``(T, K)``, $p(z_t = k \\mid x_{1:t})$ (on padded steps, the last real step's).
    """

    log_likelihood: Array
    marginals: Array
    transition_counts: Array
    filtered: Array


def _mask(log_likelihoods: Array, mask: Array | None) -> Array:
    if mask is None:
        return jnp.ones(log_likelihoods.shape[0], bool)
    return jnp.asarray(mask) > 0


def forward_backward(
    initial: Array, transitions: Array, log_likelihoods: Array, mask: Array | None = None
) -> Posterior:
    """The scaled forward-backward pass over one sequence.

    Args:
        initial: ``(K,)`` initial state probabilities.
        transitions: ``(K, K)``, rows sum to one (zeros allowed).
        log_likelihoods: ``(T, K)``, $\\log p(x_t \\mid z_t = k)$.
        mask: ``(T,)``, positive for real steps, 0 for padding at the end; None: all real.
            The first step must be real.

    Returns:
        A `Posterior`.
    """
    real = _mask(log_likelihoods, mask)
    # the shift cancels exactly (log p adds back what b_t takes out), so it carries no
    # derivative: differentiating max gave a NaN Hessian under jit (XLA's CPU backend at O0,
    # one HMM's parameters in their last ulp) where the eager Hessian was finite
    top = jax.lax.stop_gradient(jnp.max(log_likelihoods, axis=1, keepdims=True))
    emissions = jnp.exp(log_likelihoods - top)  # (T, K), max 1 per step

    first = initial * emissions[0]
    first_scale = jnp.sum(first)

    def forward(alpha, step):
        emission, is_real = step
        # (K, K) products as broadcast-and-sum: XLA fuses them into the loop body, where a
        # dot would be a library call per step (measured on CPU, K = 10, T = 1e5: 246 -> 76 ms
        # per EM iteration in float64)
        new = jnp.sum(alpha[:, None] * transitions, axis=0) * emission
        scale = jnp.sum(new)
        alpha = jnp.where(is_real, new / scale, alpha)
        return alpha, (alpha, jnp.where(is_real, scale, 1.0))

    _, (alphas, scales) = jax.lax.scan(forward, first / first_scale, (emissions[1:], real[1:]))
    alphas = jnp.concatenate([(first / first_scale)[None], alphas])
    scales = jnp.concatenate([first_scale[None], scales])
    log_likelihood = jnp.sum(jnp.log(scales) + jnp.where(real, top[:, 0], 0.0))

    def backward(beta, step):
        emission, scale, is_real = step  # of the step after
        new = jnp.sum(transitions * (emission * beta), axis=1) / scale
        beta = jnp.where(is_real, new, beta)
        return beta, beta

    last = jnp.ones_like(initial)
    _, betas = jax.lax.scan(backward, last, (emissions[1:], scales[1:], real[1:]), reverse=True)
    betas = jnp.concatenate([betas, last[None]])
    marginals = jnp.where(real[:, None], alphas * betas, 0.0)

    # sum_t alpha_t (x) (b_{t+1} beta_{t+1} / c_{t+1}), times A entrywise
    ahead = jnp.where(real[1:, None], emissions[1:] * betas[1:] / scales[1:, None], 0.0)
    transition_counts = transitions * (alphas[:-1].T @ ahead)
    return Posterior(log_likelihood, marginals, transition_counts, alphas)


def sample_states(key: Array, transitions: Array, filtered: Array, mask: Array | None = None):
    """A draw of the whole state path from its posterior $p(z_{1:T} \\mid x_{1:T})$, by
    backward sampling over the filtered marginals (forward-filtering backward-sampling):
    $z_T \\sim p(z_T \\mid x_{1:T})$, then $p(z_t = i \\mid z_{t+1} = j, x_{1:T}) \\propto
    \\hat\\alpha_{ti} A_{ij}$. ``filtered`` ``(T, K)`` as `forward_backward` returns it (on
    padded steps, the last real step's), ``mask`` as there; returns ``(T,)`` states (on padded
    steps, the last real step's state)."""
    t, k = filtered.shape
    real = jnp.ones((t,), bool) if mask is None else mask > 0
    keys = jax.random.split(key, t)
    last = jax.random.categorical(keys[-1], jnp.log(filtered[-1]))

    def back(following, step):
        alpha, key, next_is_real = step
        weights = alpha * transitions[:, following]
        drawn = jax.random.categorical(key, jnp.log(weights / jnp.sum(weights)))
        state = jnp.where(next_is_real, drawn, following)  # the chain does not move on padding
        return state, state

    _, states = jax.lax.scan(back, last, (filtered[:-1], keys[:-1], real[1:]), reverse=True)
    return jnp.concatenate([states, last[None]])


def viterbi(
    initial: Array, transitions: Array, log_likelihoods: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """The most probable state path and its log-probability $\\max_z \\log p(x, z)$, in log
    space. Arguments as for `forward_backward`; returns ``(path (T,), score)``, the path on
    padded steps repeating the last real state."""
    real = _mask(log_likelihoods, mask)
    log_transitions = jnp.log(transitions)
    first = jnp.log(initial) + log_likelihoods[0]

    def forward(delta, step):
        ll, is_real = step
        candidates = delta[:, None] + log_transitions  # (from, to)
        best = jnp.argmax(candidates, axis=0)
        new = jnp.max(candidates, axis=0) + ll
        keep = jnp.arange(delta.shape[0])
        return jnp.where(is_real, new, delta), jnp.where(is_real, best, keep)

    delta, pointers = jax.lax.scan(forward, first, (log_likelihoods[1:], real[1:]))
    end = jnp.argmax(delta)

    def backtrack(state, pointer):
        previous = pointer[state]
        return previous, state

    start, path = jax.lax.scan(backtrack, end, pointers, reverse=True)
    return jnp.concatenate([start[None], path]), jnp.max(delta)


def forward_backward_parallel(
    initial: Array, transitions: Array, log_likelihoods: Array, mask: Array | None = None
) -> Posterior:
    """`forward_backward` by associative scans (Särkkä and García-Fernández 2021): the same
    `Posterior`, in $O(\\log T)$ sequential depth instead of $O(T)$, for long sequences on
    accelerators (on a CPU the sequential pass does less work: $K^3$ instead of $K^2$ per step).

    Step $t$ is the matrix $M_t = A \\operatorname{diag}(b_t)$ ($M_1$'s rows all
    $\\pi \\odot b_1$), and the forward variables are the prefix products
    $M_1 \\cdots M_t$, the backward ones the suffix products $M_{t+1} \\cdots M_T \\mathbf{1}$.
    Every element is held as a matrix of sum one and its log-scale, so that products neither
    overflow nor underflow; a padded step is the identity. Arguments as for `forward_backward`.
    """
    real = _mask(log_likelihoods, mask)
    k = initial.shape[0]
    top = jax.lax.stop_gradient(jnp.max(log_likelihoods, axis=1))  # cancels: see above
    emissions = jnp.exp(log_likelihoods - top[:, None])  # (T, K)
    steps = transitions[None] * emissions[:, None, :]  # (T, K, K): A diag(b_t)
    steps = steps.at[0].set(jnp.broadcast_to(initial * emissions[0], (k, k)))
    identity = jnp.broadcast_to(jnp.eye(k, dtype=steps.dtype), steps.shape)
    steps = jnp.where(real[:, None, None], steps, identity)
    log_scales = jnp.where(real, top, 0.0)
    sums = jnp.sum(steps, axis=(1, 2))
    elements = (steps / sums[:, None, None], log_scales + jnp.log(sums))

    def combine(left, right):
        product = left[0] @ right[0]
        total = jnp.sum(product, axis=(-2, -1))
        return product / total[..., None, None], left[1] + right[1] + jnp.log(total)

    prefix, prefix_logs = jax.lax.associative_scan(combine, elements)
    row = prefix[:, 0, :]  # every row of a prefix product is the same
    log_likelihood = prefix_logs[-1] + jnp.log(jnp.sum(row[-1]))
    alphas = row / jnp.sum(row, axis=1, keepdims=True)

    # suffix products M_{t+1} ... M_T, by a scan over the reversed steps with the arguments
    # of the (non-commutative) product swapped
    later = jax.tree.map(lambda a: a[1:][::-1], elements)
    suffix, _ = jax.lax.associative_scan(lambda a, b: combine(b, a), later)
    betas = jnp.sum(suffix[::-1], axis=2)  # (T - 1, K): M_{t+1} ... M_T 1
    betas = jnp.concatenate([betas / jnp.sum(betas, axis=1, keepdims=True), jnp.ones((1, k))])
    betas = betas.astype(alphas.dtype)
    marginals = alphas * betas
    marginals = jnp.where(real[:, None], marginals / jnp.sum(marginals, axis=1, keepdims=True), 0.0)

    # p(z_t = i, z_{t+1} = j | x) ∝ alpha_t(i) A_ij b_{t+1}(j) beta_{t+1}(j), normalised per t
    ahead = emissions[1:] * betas[1:]  # (T - 1, K)
    totals = jnp.sum((alphas[:-1] @ transitions) * ahead, axis=1)
    weights = jnp.where(real[1:], 1.0 / totals, 0.0)
    transition_counts = transitions * ((alphas[:-1] * weights[:, None]).T @ ahead)
    return Posterior(log_likelihood, marginals, transition_counts, alphas)


def chain_posterior(
    first: Array, steps: Array, weights: Array | None = None
) -> tuple[Array, Array, Array]:
    """Chains' log normalisers and posteriors from their log factors: ``first`` ``(S, K)``
    $\\log \\phi_0(z_0)$ and ``steps`` ``(S, T - 1, K, K)`` $\\log \\phi_t(z_{t-1}, z_t)$
    (transition and emissions together, free to change along the chain) of S chains of the
    same length; or with ``weights`` ``(S, T - 1, K, K)``, nonnegative, the factors
    $\\phi_t = w_t \\exp(\\mathrm{steps}_t)$, ``steps`` then ``(S, T - 1, 1, K)`` where
    they read the current state alone (a chain's transition probabilities as they are, times
    its emissions' densities: the recursions exponentiate K terms per step, not K^2 logs of
    probabilities). Returns $\\log Z$ ``(S,)``, $p(z_0)$ ``(S, K)`` and $p(z_{t-1}, z_t)$
    ``(S, T - 1, K, K)``. `jaxem.NumPyroModel` sums the chains written with NumPyro's ``scan``
    with it.

    `forward_backward`'s scaled recursions for factors that change along the chain: each
    step's factors are shifted by their largest, $E_t = \\exp(\\log \\phi_t - s_t)$ in
    $[0, 1]$, the forward variables normalised by their sum $c_t$ ($\\log Z = \\sum_t
    \\log c_t + s_t$) and the backward ones divided by the same $c_t$: a ``(K, K)``
    product per step. The shift cannot keep a step's sum from underflowing where the
    chain's probable states have factors far below the step's largest (beyond ``exp``'s
    range: 87 in float32, 708 in float64; structural zeros, sharp emissions, factors that
    are not probabilities); then every chain is summed again by the recursions in log space
    (a log-sum-exp per state and step, eight times slower on a CPU), whose results are
    exact for any factors."""
    in_probabilities = _chain_in_probabilities(first, steps, weights)
    failed = in_probabilities[-1]

    def in_logs():
        if weights is None:
            return _chain_in_logs(first, steps)
        positive = weights > 0  # log 0 = -inf, with a finite derivative
        log_weights = jnp.where(positive, jnp.log(jnp.where(positive, weights, 1.0)), -jnp.inf)
        return _chain_in_logs(first, steps + log_weights)

    return jax.lax.cond(failed, in_logs, lambda: in_probabilities[:-1])


def _chain_in_probabilities(
    first: Array, steps: Array, weights: Array | None
) -> tuple[Array, Array, Array, Array]:
    """`chain_posterior` with the steps' factors exponentiated about their largest (times
    the weights, in [0, 1]), and whether any chain's recursions underflowed or overflowed."""
    first_shift = jax.lax.stop_gradient(jnp.max(first, axis=-1, keepdims=True))
    shift = jax.lax.stop_gradient(jnp.max(steps, axis=(-2, -1), keepdims=True))  # cancels
    factors = jnp.exp(steps - shift)
    if weights is not None:
        factors = weights * factors
    factors = jnp.moveaxis(factors, 1, 0)  # (T - 1, S, K, K)
    start = jnp.exp(first - first_shift)
    first_scale = jnp.sum(start, axis=-1, keepdims=True)

    def forward(alpha, factor):
        moved = jnp.sum(alpha[:, :, None] * factor, axis=1)
        scale = jnp.sum(moved, axis=-1, keepdims=True)
        alpha = moved / scale
        return alpha, (alpha, scale)

    alpha_first = start / first_scale
    _, (alphas, scales) = jax.lax.scan(forward, alpha_first, factors)

    def backward(beta, inputs):
        factor, scale = inputs
        beta_before = jnp.sum(factor * beta[:, None, :], axis=2) / scale
        return beta_before, beta

    last = jnp.ones_like(first)
    beta_first, betas = jax.lax.scan(backward, last, (factors, scales), reverse=True)
    before = jnp.concatenate([alpha_first[None], alphas])[:-1]  # alpha_{t-1}
    pairs = before[:, :, :, None] * factors * (betas / scales)[:, :, None, :]
    log_scales = jnp.sum(jnp.log(scales[..., 0]) + shift[..., 0, 0].T, axis=0)
    log_normaliser = first_shift[..., 0] + jnp.log(first_scale[..., 0]) + log_scales
    first_states = alpha_first * beta_first
    failed = ~(
        jnp.all(scales > 0) & jnp.all(jnp.isfinite(log_normaliser)) & jnp.all(jnp.isfinite(betas))
    )
    return log_normaliser, first_states, jnp.moveaxis(pairs, 0, 1), failed


def _chain_in_logs(first: Array, steps: Array) -> tuple[Array, Array, Array]:
    """`chain_posterior` in log space: each forward variable normalised by its log-sum-exp
    $\\log c_t$ and each backward variable by the same $c_t$, so that both stay near zero
    whatever T and whatever the factors."""
    first_scale = jax.nn.logsumexp(first, axis=-1, keepdims=True)

    def forward(alpha, step):
        moved = jax.nn.logsumexp(alpha[:, :, None] + step, axis=1)
        scale = jax.nn.logsumexp(moved, axis=-1, keepdims=True)
        return moved - scale, (moved - scale, scale)

    time_major = jnp.moveaxis(steps, 1, 0)
    _, (alphas, scales) = jax.lax.scan(forward, first - first_scale, time_major)

    def backward(beta, inputs):
        step, scale = inputs
        beta_before = jax.nn.logsumexp(step + beta[:, None, :], axis=2) - scale
        return beta_before, beta

    last = jnp.zeros_like(first)
    beta_first, betas = jax.lax.scan(backward, last, (time_major, scales), reverse=True)
    before = jnp.concatenate([(first - first_scale)[None], alphas])[:-1]  # alpha_{t-1}
    pairs = jnp.exp(before[:, :, :, None] + time_major + (betas - scales)[:, :, None, :])
    log_normaliser = first_scale[..., 0] + jnp.sum(scales[..., 0], axis=0)
    first_states = jnp.exp(first - first_scale + beta_first)
    return log_normaliser, first_states, jnp.moveaxis(pairs, 0, 1)
