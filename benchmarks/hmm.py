"""Baum-Welch: milliseconds per EM iteration of a Gaussian HMM (full covariances), jaxem against
hmmlearn and dynamax (``pip install -e '.[bench]'``) in the same run, float64 and float32.

    python benchmarks/hmm.py [--markdown-section FILE] [--quick]

Rows: K = 4, D = 2 with T = 1e5, T = 1e6 and 100 sequences of 1e3; K = 10, D = 5 with T = 1e5.
jaxem's time is that of ``jaxem.fit`` with ``tol=0`` for 10 iterations after a first call that
compiles (reported separately, "first call"), divided by 10; hmmlearn's that of ``fit`` with
``n_iter=10`` (its C forward-backward, a Python loop over sequences), divided by 10. With
``--markdown-section`` the table replaces the section "Baum-Welch" of FILE (``make bench`` writes
it into ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sections import replace_section

import jaxem
from jaxem import families
from jaxem.em import check_inputs, plan, run

N_ITER = 10


def workload(k: int, d: int, n_sequences: int, n_steps: int, dtype) -> tuple:
    model = jaxem.HiddenMarkovModel(families.Gaussian("full", reg_covar=0.0), k)
    rng = np.random.default_rng(0)
    transitions = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    truth = jaxem.HMMParams(
        np.full(k, 1 / k),
        transitions,
        families.GaussianParams(rng.normal(0, 3, (k, d)), np.stack([np.eye(d)] * k)),
    )
    truth = jax.tree.map(lambda a: jnp.asarray(a, dtype), truth)
    X, _ = model.sample(jax.random.key(0), truth, n_steps, n_sequences)
    start = model.init(jax.random.key(1), X)
    return model, X, start


def time_jaxem(model, X, start) -> tuple[float, float]:
    begin = time.perf_counter()
    jax.block_until_ready(jaxem.fit(model, X, start, tol=0.0, max_iter=N_ITER))
    first = time.perf_counter() - begin
    begin = time.perf_counter()
    jax.block_until_ready(jaxem.fit(model, X, start, tol=0.0, max_iter=N_ITER))
    return first, (time.perf_counter() - begin) / N_ITER * 1e3


def working_memory(model, X, start) -> float:
    """XLA's temporary buffers of the compiled fit (its memory analysis), in MiB."""
    X, params, weights, prior = check_inputs(model, X, start, None, None)
    weights, block, layout = plan(model, X, weights, None)
    loop = jax.jit(run.__wrapped__, static_argnames=("model", "max_iter", "block", "layout"))
    lowered = loop.lower(model, X, params, prior, weights, jnp.asarray(0.0), N_ITER, block, layout)
    return lowered.compile().memory_analysis().temp_size_in_bytes / 2**20


def time_hmmlearn(model, X, start) -> float | None:
    try:
        from hmmlearn import hmm
    except ImportError:
        return None
    reference = hmm.GaussianHMM(
        model.n_states,
        "full",
        min_covar=0.0,
        n_iter=N_ITER,
        tol=-np.inf,
        init_params="",
        means_weight=0,
        covars_weight=0,
        covars_prior=0,
    )
    reference.startprob_ = np.asarray(start.initial, np.float64)
    reference.transmat_ = np.asarray(start.transitions, np.float64)
    reference.means_ = np.asarray(start.emissions.means, np.float64)
    reference.covars_ = np.asarray(start.emissions.covariances, np.float64)
    steps = np.asarray(X, np.float64)
    lengths = [steps.shape[1]] * steps.shape[0]
    begin = time.perf_counter()
    reference.fit(steps.reshape(-1, steps.shape[-1]), lengths)
    return (time.perf_counter() - begin) / N_ITER * 1e3


def time_dynamax(model, X, start) -> float | None:
    """dynamax's ``fit_em`` compiles its loop on every call, so its time per iteration after
    compilation is the difference of 6 N and N iterations (the faster of two calls of each),
    over 5 N."""
    try:
        from dynamax.hidden_markov_model import GaussianHMM
    except ImportError:
        return None
    reference = GaussianHMM(model.n_states, X.shape[-1])
    params, props = reference.initialize(
        jax.random.key(0),
        initial_probs=start.initial,
        transition_matrix=start.transitions,
        emission_means=start.emissions.means,
        emission_covariances=start.emissions.covariances,
    )
    emissions = X[0] if X.shape[0] == 1 else X

    def seconds(n_iter):
        begin = time.perf_counter()
        out = reference.fit_em(params, props, emissions, num_iters=n_iter, verbose=False)
        jax.block_until_ready(out)
        return time.perf_counter() - begin

    short = min(seconds(N_ITER) for _ in range(2))
    long = min(seconds(6 * N_ITER) for _ in range(2))
    return (long - short) / (5 * N_ITER) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown-section", type=Path)
    parser.add_argument("--quick", action="store_true", help="only the T = 1e5 rows")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    cases = [
        ("K=4, D=2, T=1e5", 4, 2, 1, 100_000),
        ("K=4, D=2, T=1e6", 4, 2, 1, 1_000_000),
        ("K=4, D=2, 100 x 1e3", 4, 2, 100, 1_000),
        ("K=10, D=5, T=1e5", 10, 5, 1, 100_000),
    ]
    if args.quick:
        cases = [c for c in cases if c[4] == 100_000]
    rows = []
    for name, k, d, s, t in cases:
        for dtype in (jnp.float64, jnp.float32):
            model, X, start = workload(k, d, s, t, dtype)
            first, ms = time_jaxem(model, X, start)
            float64 = dtype == jnp.float64
            reference = time_hmmlearn(model, X, start) if float64 else None
            dynamax = time_dynamax(model, X, start) if float64 else None
            memory = working_memory(model, X, start) / (X.nbytes / 2**20)
            rows.append((name, jnp.dtype(dtype).name, first, ms, reference, dynamax, memory))
            print(rows[-1], flush=True)
    table = [
        "| workload | dtype | jaxem first call (s) | jaxem ms/iter | hmmlearn ms/iter | ratio "
        "| dynamax ms/iter | ratio | working memory / data |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(reference, ms):
        if reference is None:
            return " | "
        return f"{reference:.1f} | {reference / ms:.1f}x"

    for name, dtype, first, ms, reference, dynamax, memory in rows:
        table.append(
            f"| {name} | {dtype} | {first:.1f} | {ms:.1f} | {cells(reference, ms)} "
            f"| {cells(dynamax, ms)} | {memory:.1f} |"
        )
    text = "\n".join(table)
    print(text)
    if args.markdown_section:
        machine = f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}"
        section = (
            "## Baum-Welch\n\n"
            "Generated by `make bench` (`benchmarks/hmm.py`) on this machine "
            f"({machine}): a Gaussian HMM with full covariances, milliseconds per EM "
            "iteration after compilation (10 iterations from the same start), and jaxem's first "
            "call (compilation included). hmmlearn and dynamax (its `fit_em` compiles on "
            "every call: the time per iteration is that of 60 iterations less that of 10, "
            "over 50) run in float64 only; ratio = theirs / jaxem's. Working memory: XLA's "
            "temporary buffers for the compiled fit (its memory "
            "analysis) over the size of the data; with D = 2 and K = 4 the (T, K) arrays of "
            "forward-backward (log-likelihoods, forward and backward variables, marginals) "
            "dominate, about seven of them.\n\n" + text + "\n"
        )
        replace_section(args.markdown_section, section)


if __name__ == "__main__":
    main()
