"""SQUAREM against plain EM: E-steps and wall time to ``tol=1e-8``, float64, from the same start.

    python benchmarks/acceleration.py [--markdown-section FILE] [--quick]

Rows: K = 3 full-covariance components on Old Faithful (two clusters, so three components
overlap), MLE and with the default prior; N = 1e5, D = 16, K = 16 full covariances with centres
close enough to overlap; Hasselblad's two-component Poisson mixture (the SQUAREM paper's
example, 1,096 days as 10 weighted rows); a three-state Gaussian hidden Markov model with
overlapping emissions. Each time is ``jaxem.fit`` after a first call that compiled it (the
compile times are reported separately). "Objective gap" is SQUAREM's final objective minus plain
EM's, per unit weight: plain EM stops where its steps get small, which is often before it has
arrived, so a positive gap is SQUAREM's better answer at the same ``tol``. With
``--markdown-section`` the table replaces the section "Accelerated EM" of FILE (``make bench``
writes it into ``docs/benchmarks.md``).
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
from jaxem.acceleration import EVALUATIONS_PER_ITERATION

jax.config.update("jax_enable_x64", True)  # tol=1e-8 per unit weight is below float32's reach

TOL = 1e-8


def old_faithful(use_prior: bool):
    X = jnp.asarray(jaxem.datasets.load_faithful()[0])
    model = jaxem.GaussianMixture(3, "full")
    prior = jaxem.default_prior(model, X) if use_prior else None
    return model, X, model.init(jax.random.key(0), X), dict(prior=prior)


def overlapping_blobs():
    rng = np.random.default_rng(0)
    n, d, k = 100_000, 16, 16
    centres = rng.normal(0, 0.5, (k, d))
    X = jnp.asarray(centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)))
    model = jaxem.GaussianMixture(k, "full")
    return model, X, model.init(jax.random.key(0), X), {}


def hasselblad():
    counts = jnp.arange(10.0)[:, None]
    frequencies = jnp.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1.0])
    model = jaxem.Mixture(families.Poisson(), 2)
    start = jaxem.MixtureParams(
        jnp.array([0.3, 0.7]), families.PoissonParams(jnp.array([[1.0], [2.5]]))
    )
    return model, counts, start, dict(weights=frequencies)


def hidden_markov():
    model = jaxem.HiddenMarkovModel(families.Gaussian("diag"), 3)
    truth = jaxem.HMMParams(
        jnp.full(3, 1 / 3),
        jnp.full((3, 3), 0.05) + 0.85 * jnp.eye(3),
        families.GaussianParams(jnp.array([[0.0, 0.0], [1.0, 0.5], [-1.0, 1.0]]), jnp.ones((3, 2))),
    )
    X, _ = model.sample(jax.random.key(2), truth, 500, 8)
    return model, X, model.init(jax.random.key(3), X), {}


CASES = {
    "Old Faithful, K=3 full, MLE": lambda: old_faithful(False),
    "Old Faithful, K=3 full, default prior": lambda: old_faithful(True),
    "Hasselblad, Poisson K=2": hasselblad,
    "HMM, 3 states, 8 x 500 steps": hidden_markov,
    "N=1e5, D=16, K=16 full, MLE": overlapping_blobs,
}


def long_run(model, X, start, options, accelerate, max_iter, repeats):
    """(compile s, s per iteration, result) of ``jaxem.fit`` with ``tol=0`` for ``max_iter``
    iterations, the fastest of ``repeats`` runs. The first call, with a tol so large that it
    stops after one iteration, compiles the same program (tol is not static)."""

    def run(tol):
        return jax.block_until_ready(
            jaxem.fit(model, X, start, tol=tol, max_iter=max_iter, accelerate=accelerate, **options)
        )

    begin = time.perf_counter()
    run(1e30)
    compile_s = time.perf_counter() - begin
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        result = run(0.0)
        seconds.append(time.perf_counter() - begin)
    return compile_s, min(seconds) / max_iter, result


def arrival(history: np.ndarray, target: float) -> int | None:
    """The number of iterations after which the objective first reached ``target``."""
    reached = np.flatnonzero(history >= target)
    return int(reached[0]) + 1 if reached.size else None


def stopping_rule(model, X, start, options, accelerate) -> tuple[int, float]:
    """(E-steps, final objective) of ``jaxem.fit`` with ``tol=TOL``, as a user runs it."""
    result = jaxem.fit(model, X, start, tol=TOL, max_iter=20_000, accelerate=accelerate, **options)
    return int(result.n_evals), float(result.objective)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown-section", type=Path)
    parser.add_argument("--quick", action="store_true", help="skip the N=1e5 row")
    args = parser.parse_args()
    names = [n for n in CASES if not (args.quick and n.startswith("N=1e5"))]
    rows = []
    for name in names:
        model, X, start, options = CASES[name]()
        weights = options.get("weights")
        total = float(np.sum(weights)) if weights is not None else float(np.prod(X.shape[:-1]))
        big = name.startswith("N=1e5")
        repeats = 1 if big else 3
        plain = long_run(model, X, start, options, None, 3000 if big else 20_000, repeats)
        fast = long_run(model, X, start, options, "squarem", 300 if big else 500, repeats)
        histories = [np.asarray(plain[2].history), np.asarray(fast[2].history)]
        target = max(np.nanmax(h) for h in histories) - TOL * total
        cells = []
        for (_, per_iteration, result), history in zip((plain, fast), histories, strict=True):
            n = arrival(history, target)
            per_eval = EVALUATIONS_PER_ITERATION["squarem" if result is fast[2] else None]
            if n is None:
                cells.append(
                    (f"> {per_eval * len(history) + 1}", None, per_iteration * len(history))
                )
            else:
                cells.append((str(per_eval * n + 1), per_eval * n + 1, per_iteration * n))
        (plain_evals, plain_count, plain_s), (fast_evals, fast_count, fast_s) = cells
        prefix = "> " if plain_count is None else ""
        plain_bound = plain_count or EVALUATIONS_PER_ITERATION[None] * len(histories[0]) + 1
        fewer = f"{plain_bound / fast_count:.1f}x" if fast_count else "-"
        rule = [stopping_rule(model, X, start, options, a) for a in (None, "squarem")]
        row = (
            f"| {name} | {plain_evals} | {fast_evals} | {prefix}{fewer} | "
            f"{prefix}{plain_s * 1e3:.1f} | {fast_s * 1e3:.1f} | {prefix}{plain_s / fast_s:.1f}x | "
            f"{rule[0][0]} / {rule[1][0]} | {(rule[1][1] - rule[0][1]) / total:+.1e} | "
            f"{plain[0]:.1f} / {fast[0]:.1f} |"
        )
        print(row, flush=True)
        rows.append(row)
    machine = f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}"
    section = "\n".join(
        [
            "## Accelerated EM",
            "",
            f"`python benchmarks/acceleration.py` on this machine ({machine}, "
            f"{jax.device_count()} device(s), jax {jax.__version__}), float64, plain EM against "
            '`accelerate="squarem"` from the same start. E-steps and milliseconds until the '
            f"objective is within {TOL:g} per unit weight of the best objective either reached "
            "(the same final objective for both), from runs with `tol=0` (times: the run's time "
            "per iteration, compilation excluded, fastest of three runs except on the N=1e5 "
            "row, times the iterations needed; `>`: plain EM "
            "had not arrived when its run of 3,000 iterations ended). Then what a user sees "
            f"with the stopping rule at `tol={TOL:g}`: the E-steps (plain / SQUAREM) and SQUAREM's "
            "final objective minus plain EM's per unit weight (plain EM stops where its steps "
            "get small, before it has arrived). Last column: compile seconds, plain / SQUAREM.",
            "",
            "| case | plain E-steps | SQUAREM E-steps | fewer | plain ms | SQUAREM ms | faster "
            f"| E-steps at tol={TOL:g} | objective gap there | compile s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(section)
    if args.markdown_section:
        replace_section(args.markdown_section, section)


if __name__ == "__main__":
    main()
