"""Models written in NumPyro (`jaxem.NumPyroModel`) against jaxem's hand-written models of the
same distributions, and a mixture of regressions against R's flexmix, in the same run.

    python benchmarks/numpyro_models.py [--markdown-section FILE] [--quick]

Rows: a Gaussian mixture, N = 1e5, D = 16, K = 16, full covariances (float32); a Gaussian
hidden Markov model, K = 4, D = 2, one sequence of T = 1e5 steps (float32); the marginal cost
of an EM iteration (``jaxem.fit`` with ``tol=0``: 25 iterations less 5, over 20, best of three)
and the first call (tracing, the NumPyro model's analysis and compiling included). A mixture
of two linear regressions, N = 1e4 (float64), fitted to convergence (relative change 1e-10)
from the same start by jaxem (its coefficients on the gradient path) and by flexmix
(``flexmix(y ~ x, k = 2)``, its time from R's ``system.time``). With ``--markdown-section``
the table replaces the section "Models written in NumPyro" of FILE (``make bench`` writes it
into ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.distributions import constraints
from sections import replace_section

import jaxem
from jaxem import families

N_ITER = 10


def timed(model, X, start) -> tuple[float, float]:
    """(first call in s, per iteration in ms) of ``fit`` with ``tol=0``: the first call of a
    10-iteration fit, then the marginal cost of an iteration, (25-iteration fit - 5-iteration
    fit) / 20, each fit the best of three (a fit's fixed cost, its input checks and dispatch,
    left out)."""
    begin = time.perf_counter()
    jax.block_until_ready(jaxem.fit(model, X, start, tol=0.0, max_iter=N_ITER))
    first = time.perf_counter() - begin
    seconds = {}
    for n_iter in (5, 25):
        jax.block_until_ready(jaxem.fit(model, X, start, tol=0.0, max_iter=n_iter))
        runs = []
        for _ in range(3):
            begin = time.perf_counter()
            jax.block_until_ready(jaxem.fit(model, X, start, tol=0.0, max_iter=n_iter))
            runs.append(time.perf_counter() - begin)
        seconds[n_iter] = min(runs)
    return first, (seconds[25] - seconds[5]) / 20 * 1e3


def gaussian_mixture_rows(n: int, d: int, k: int) -> tuple[str, tuple, tuple]:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, (k, d))
    X = (centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)
    hand = jaxem.GaussianMixture(k, "full", reg_covar=0.0)
    start = hand.init(jax.random.key(0), X)

    def model(X):
        weights = numpyro.param("weights", start.weights, constraint=constraints.simplex)
        means = numpyro.param("means", start.means)
        covariances = numpyro.param(
            "covariances", start.covariances, constraint=constraints.positive_definite
        )
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("x", dist.MultivariateNormal(means[z], covariances[z]), obs=X)

    ours = jaxem.NumPyroModel(model)
    begin = time.perf_counter()
    params = ours.init(jax.random.key(0), X)  # the analysis, timed with the first call
    analysis = time.perf_counter() - begin
    first, per = timed(ours, X, params)
    name = f"Gaussian mixture, N = {n:.0e}, D = {d}, K = {k}, full"
    return name, (first + analysis, per), timed(hand, X, start)


def hidden_markov_rows(n_steps: int, k: int = 4, d: int = 2) -> tuple[str, tuple, tuple]:
    hand = jaxem.HiddenMarkovModel(families.Gaussian("diag", reg_covar=0.0), k)
    rng = np.random.default_rng(0)
    transitions = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    truth = jaxem.HMMParams(
        np.full(k, 1 / k),
        transitions,
        families.GaussianParams(rng.normal(0, 3, (k, d)), np.ones((k, d))),
    )
    truth = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), truth)
    X, _ = hand.sample(jax.random.key(0), truth, n_steps, 1)
    start = hand.init(jax.random.key(1), X)

    def model(X):
        n_sequences, length, _ = X.shape
        initial = numpyro.param("initial", start.initial, constraint=constraints.simplex)
        trans = numpyro.param("transitions", start.transitions, constraint=constraints.simplex)
        means = numpyro.param("means", start.emissions.means)
        scales = numpyro.param(
            "scales", jnp.sqrt(start.emissions.covariances), constraint=constraints.positive
        )

        def step(previous, inputs):
            x, t = inputs
            with numpyro.plate("sequences", n_sequences):
                probs = jnp.where(t == 0, initial, trans[previous])
                z = numpyro.sample("z", dist.Categorical(probs))
                numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=x)
            return z, None

        scan(step, jnp.zeros(n_sequences, jnp.int32), (jnp.swapaxes(X, 0, 1), jnp.arange(length)))

    ours = jaxem.NumPyroModel(model, data_ndim=3)
    begin = time.perf_counter()
    params = ours.init(jax.random.key(0), X)
    analysis = time.perf_counter() - begin
    first, per = timed(ours, X, params)
    name = f"Gaussian HMM, K = {k}, D = {d}, T = {n_steps:.0e}, diag"
    return name, (first + analysis, per), timed(hand, X, start)


R_FLEXMIX = r"""
suppressMessages(library(flexmix))
d <- read.csv(commandArgs(TRUE)[1])
init <- as.matrix(read.csv(commandArgs(TRUE)[2]))
t <- system.time(fit <- flexmix(y ~ x, data = d, k = 2, cluster = init,
                                control = list(tolerance = 1e-10, iter.max = 10000)))
cat(sprintf('{"seconds": %f, "iterations": %d}\n', t[["elapsed"]], fit@iter))
"""


def regression_row(n: int) -> tuple[str, tuple, float | None]:
    """Seconds to convergence: jaxem's NumPyro mixture of regressions (cold: a fresh model,
    its analysis and compiling included; warm: fitted again), and flexmix from the posteriors
    of the same start."""
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, n)
    first = rng.random(n) < 0.6
    y = np.where(first, 1 + 2 * x + rng.normal(0, 1, n), 8 - 0.5 * x + rng.normal(0, 1.5, n))
    data = np.stack([x, y], -1)
    start = {
        "weights": jnp.asarray([0.5, 0.5]),
        "coef": jnp.asarray([[0.0, 1.0], [5.0, 0.0]]),
        "sigma": jnp.asarray([2.0, 2.0]),
    }

    def model(X):
        weights = numpyro.param("weights", start["weights"], constraint=constraints.simplex)
        coef = numpyro.param("coef", start["coef"])
        sigma = numpyro.param("sigma", start["sigma"], constraint=constraints.positive)
        with numpyro.plate("rows", X.shape[0]):
            z = numpyro.sample("z", dist.Categorical(weights))
            loc = coef[z, 0] + coef[z, 1] * X[:, 0]
            numpyro.sample("y", dist.Normal(loc, sigma[z]), obs=X[:, 1])

    begin = time.perf_counter()
    ours = jaxem.NumPyroModel(model)
    result = jax.block_until_ready(jaxem.fit(ours, data, start, tol=1e-10, max_iter=10_000))
    cold = time.perf_counter() - begin
    begin = time.perf_counter()
    jax.block_until_ready(jaxem.fit(ours, data, start, tol=1e-10, max_iter=10_000))
    warm = time.perf_counter() - begin
    theirs = None
    if shutil.which("Rscript"):
        # flexmix starts from the posteriors of the same start (an M-step from them)
        loc = start["coef"][:, 0][None] + start["coef"][:, 1][None] * x[:, None]
        log_p = -0.5 * ((y[:, None] - loc) / start["sigma"]) ** 2 - np.log(start["sigma"])
        post = np.exp(log_p - log_p.max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
        with tempfile.TemporaryDirectory() as tmp:
            np.savetxt(f"{tmp}/d.csv", data, delimiter=",", header="x,y", comments="")
            np.savetxt(f"{tmp}/i.csv", post, delimiter=",", header="a,b", comments="")
            done = subprocess.run(
                ["Rscript", "-e", R_FLEXMIX, f"{tmp}/d.csv", f"{tmp}/i.csv"],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                theirs = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    name = f"mixture of 2 regressions, N = {n:.0e}, to convergence ({int(result.n_iter)} it.)"
    return name, (cold, warm), theirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown-section", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, steps = (10_000, 10_000) if args.quick else (100_000, 100_000)
    rows = [gaussian_mixture_rows(n, 16, 16), hidden_markov_rows(steps)]
    table = [
        "| float32 | NumPyro model: first call (s) | per iteration (ms) | hand-written: first "
        "call (s) | per iteration (ms) | NumPyro / hand-written per iteration |",
        "|---|---|---|---|---|---|",
    ]
    for name, (first, per), (hand_first, hand_per) in rows:
        table.append(
            f"| {name} | {first:.2f} | {per:.1f} | {hand_first:.2f} | {hand_per:.1f} "
            f"| {per / hand_per:.1f}x |"
        )
    name, (cold, warm), theirs = regression_row(10_000)
    flexmix = "(R not found)" if theirs is None else f"{theirs:.2f}"
    ratios = " | " if theirs is None else f"{theirs / cold:.2f}x | {theirs / warm:.2f}x"
    regression = [
        "| float64 | jaxem cold (s) | jaxem warm (s) | flexmix (s) | flexmix / jaxem cold "
        "| flexmix / jaxem warm |",
        "|---|---|---|---|---|---|",
        f"| {name} | {cold:.2f} | {warm:.3f} | {flexmix} | {ratios} |",
    ]
    machine = f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}"
    section = "\n".join(
        [
            "## Models written in NumPyro",
            "",
            f"`python benchmarks/numpyro_models.py` on {machine}: EM derived from a NumPyro "
            "model (`jaxem.NumPyroModel`) against jaxem's hand-written model of the same "
            "distributions (the same start; the first call includes the model's analysis; per "
            "iteration: 25 iterations less 5, over 20), and a mixture of regressions against "
            "flexmix.",
            "",
            *table,
            "",
            *regression,
            "",
        ]
    )
    print(section)
    if args.markdown_section:
        replace_section(args.markdown_section, section)


if __name__ == "__main__":
    main()
