"""Standard errors and the bootstrap against mclust, in seconds, float64, on Old Faithful's VVV
mixture with 3 components (its fit from mclust's hierarchical start).

    python benchmarks/uncertainty.py [--markdown-section FILE] [--large]

Rows: 999 nonparametric bootstrap replicates (`jaxem.bootstrap`; mclust's ``MclustBootstrap``,
type "bs"), the bootstrap likelihood-ratio test of 1 vs 2, 2 vs 3 and 3 vs 4 components with
999 replicates each (`jaxem.bootstrap_lrt`; ``mclustBootstrapLRT(faithful, "VVV", maxG = 3)``),
and the observed information (`jaxem.standard_errors`, no mclust counterpart). jaxem runs each
in a fresh Python process (cold: tracing and compiling included) and again in that process
(warm); R runs each in a fresh process with mclust's defaults (its refits stop at a relative
change of 1e-5; jaxem's bootstrap refits at its default ``tol=1e-6`` per row, the LRT's at
1e-8, closer to their maxima). ``--large`` adds the observed information of 100,000 x 16 rows
and 16 full components (2,447 free parameters), float32 and float64, warm only.
With ``--markdown-section`` the table replaces the section "Standard errors and the bootstrap"
of FILE (``make bench`` writes it into ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from sections import replace_section

R_TIMES = r"""
suppressMessages(library(mclust))
X <- as.matrix(datasets::faithful)
mod <- Mclust(X, G = 3, modelNames = "VVV", verbose = FALSE)
set.seed(1)
bs <- system.time(MclustBootstrap(mod, nboot = 999, type = "bs", verbose = FALSE))[["elapsed"]]
lrt <- system.time(mclustBootstrapLRT(X, "VVV", maxG = 3, nboot = 999, verbose = FALSE))
lrt <- lrt[["elapsed"]]
cat(sprintf("{\"bootstrap\": %f, \"lrt\": %f}\n", bs, lrt))
"""


def child(task: str) -> None:
    """Run ``task`` twice in this (fresh) process; print the two times as JSON."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import jaxem

    X = np.asarray(jaxem.load_faithful()[0])
    models = [jaxem.GaussianMixture(g, "VVV") for g in (1, 2, 3, 4)]

    def hierarchical_fit(m):
        return jaxem.fit(m, X, m.deterministic_start(X), tol=1e-10, max_iter=5000)

    fit = hierarchical_fit(models[2])
    jax.block_until_ready(fit)
    if task == "bootstrap":

        def run():
            return jaxem.bootstrap(models[2], fit, X, key=jax.random.key(0), n_boot=999)
    elif task == "lrt":
        fits = [hierarchical_fit(m) for m in models]

        def run():
            return jaxem.bootstrap_lrt(models, X, key=jax.random.key(0), fits=fits, n_boot=999)
    else:

        def run():
            return jaxem.standard_errors(models[2], fit, X)

    times = []
    for _ in range(2):
        began = time.perf_counter()
        run()  # its results are NumPy arrays: computed when it returns
        times.append(time.perf_counter() - began)
    print(json.dumps({"cold": times[0], "warm": times[1]}))


def large(dtype: str) -> float:
    """Seconds for the observed information at N = 1e5, D = 16, K = 16, full (warm)."""
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import numpy as np

    import jaxem

    rng = np.random.default_rng(0)
    n, d, k = 100_000, 16, 16
    centres = np.repeat(rng.normal(size=(k, d)) * 3, n // k, axis=0)
    X = (rng.normal(size=(n, d)) + centres).astype(dtype)
    model = jaxem.GaussianMixture(k, "full")
    params = jaxem.fit(model, X, model.init(jax.random.key(0), X), max_iter=20).params
    jaxem.standard_errors(model, params, X[:1000])  # compiles the smaller one; not timed
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 iterations: not a maximum, and it says so
        jaxem.standard_errors(model, params, X)
    return time.perf_counter() - began


def in_fresh_process(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown-section", type=Path)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--large-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.large_child:
        print(json.dumps({"seconds": large(args.large_child)}))
        return
    ours = {task: in_fresh_process("--child", task) for task in ("bootstrap", "lrt", "observed")}
    theirs = {}
    if shutil.which("Rscript"):
        done = subprocess.run(["Rscript", "-e", R_TIMES], capture_output=True, text=True)
        if done.returncode == 0:
            theirs = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [
        ("999 nonparametric bootstrap replicates", "bootstrap"),
        ("bootstrap LRT, 1..4 components, 999 replicates each", "lrt"),
        ("observed information (17 free parameters)", "observed"),
    ]
    table = [
        "| Old Faithful, VVV, 3 components | jaxem cold (s) | jaxem warm (s) | mclust (s) "
        "| mclust / jaxem cold | mclust / jaxem warm |",
        "|---|---|---|---|---|---|",
    ]
    for name, task in rows:
        cold, warm = ours[task]["cold"], ours[task]["warm"]
        r = theirs.get(task)
        if r is None:
            table.append(f"| {name} | {cold:.2f} | {warm:.2f} | | | |")
        else:
            ratios = f"{r / cold:.2f}x | {r / warm:.1f}x"
            table.append(f"| {name} | {cold:.2f} | {warm:.2f} | {r:.2f} | {ratios} |")
    if args.large:
        for dtype in ("float32", "float64"):
            seconds = in_fresh_process("--large-child", dtype)["seconds"]
            table.append(
                f"| observed information, 100,000 x 16, 16 full components (2,447 free "
                f"parameters), {dtype} | | {seconds:.0f} | | | |"
            )
    text = "\n".join(table)
    print(text)
    if args.markdown_section:
        import jax

        machine = f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}"
        section = (
            "## Standard errors and the bootstrap\n\n"
            "Generated by `make bench` (`benchmarks/uncertainty.py`) on this machine "
            f"({machine}), float64: see [Standard errors](uncertainty.md). jaxem in a fresh "
            "Python process (cold: tracing and compiling included) and again in it (warm); "
            "mclust 6.0.0 in a fresh R process with its defaults (its refits stop at a "
            "relative change of 1e-5, where Old Faithful's two overlapping components are "
            "still far from their maximum; jaxem's bootstrap refits run to 1e-6 per row, "
            "its LRT's to 1e-8).\n\n" + text + "\n"
        )
        replace_section(args.markdown_section, section)


if __name__ == "__main__":
    main()
