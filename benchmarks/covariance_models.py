"""mclust's fourteen covariance models: `jaxem.select` cold and warm against R's ``Mclust``, and
the time of one EM iteration of each structure against VVV's.

    python benchmarks/covariance_models.py [--select] [--iterations] [--out FILE.md]

``--select``: for Old Faithful, iris and a generated 1,000 x 5 data set, a fresh Python process
times ``jaxem.select(X, key=key, n_init=n)`` (mclust's grid: fourteen models, K = 1..9, float64)
twice, the first call compiling: with select's default 32 k-means starts beside mclust's
hierarchical one, and with ``n_init=0``, mclust's start alone, as ``Mclust``; then ``n_init=0``
in two more fresh processes sharing a new disk cache of compiled programs
(`jaxem.enable_compilation_cache`, which the command line turns on): the second one's first
call is what a user's next session pays. A fresh R process times ``Mclust(X, G = 1:9)``
(mclust 6, all fourteen models) twice; imports and ``library(mclust)`` are outside the
timings.

``--iterations``: N = 100,000, D = 16, K = 16 overlapping clusters in float32; for each structure
the seconds per EM iteration (the difference of fits of 20 and 10 iterations, compiled first),
and the ratio to VVV's.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "mclust"
MODELS = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip

JAXEM_SELECT = """
import sys, time, json
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import jaxem
X = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
if sys.argv[3] != "-":
    jaxem.enable_compilation_cache(sys.argv[3])
times = []
for _ in range(2):
    start = time.perf_counter()
    result = jaxem.select(X, key=jax.random.key(0), n_init=int(sys.argv[2]))
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "best": [result.column, result.model.n_components]}))
"""

R_MCLUST = """
suppressMessages(library(mclust))
X <- as.matrix(read.csv(commandArgs(TRUE)[1]))
t <- c(system.time(m <- Mclust(X, G = 1:9, verbose = FALSE))[["elapsed"]],
       system.time(m <- Mclust(X, G = 1:9, verbose = FALSE))[["elapsed"]])
cat(sprintf('{"times": [%f, %f], "best": ["%s", %d]}\\n', t[1], t[2], m$modelName, m$G))
"""


def generated(path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 5))
    labels = rng.integers(0, 4, 1000)
    X = centres[labels] + rng.normal(size=(1000, 5)) * rng.uniform(0.5, 1.5, (4, 5))[labels]
    np.savetxt(path, X, delimiter=",", header=",".join(f"x{i}" for i in range(5)), comments="")
    return path


def run_select(out: list[str]) -> None:
    sets = {
        "faithful (272 x 2)": DATA / "faithful.csv",
        "iris (150 x 4)": DATA / "iris.csv",
        "generated (1,000 x 5)": generated(Path("/tmp/jaxem_bench_1000x5.csv")),
    }
    out += [
        "| data | starts per cell | jaxem cold (s) | jaxem warm (s) | Mclust cold (s) | "
        "Mclust warm (s) | cold ratio | warm ratio | best (jaxem / mclust) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ours(path, n_init, cache="-"):
        done = subprocess.run(
            [sys.executable, "-c", JAXEM_SELECT, str(path), str(n_init), cache],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    for name, path in sets.items():
        theirs = json.loads(
            subprocess.run(
                ["Rscript", "-e", R_MCLUST, str(path)], capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        tc, tw = theirs["times"]
        with tempfile.TemporaryDirectory() as cache:
            ours(path, 0, cache)  # fills the disk cache
            runs = {
                "33": ours(path, 32),
                "1": ours(path, 0),
                "1, disk cache": ours(path, 0, cache),
            }
        for starts, mine in runs.items():
            oc, ow = mine["times"]
            row = (
                f"| {name} | {starts} | {oc:.1f} | {ow:.2f} | {tc:.2f} | {tw:.2f} | "
                f"{oc / tc:.0f}x | {ow / tw:.1f}x | {mine['best'][0]} {mine['best'][1]} / "
                f"{theirs['best'][0]} {theirs['best'][1]} |"
            )
            out.append(row)
            print(row, flush=True)


def run_iterations(out: list[str]) -> None:
    import jax
    import numpy as np

    import jaxem

    rng = np.random.default_rng(0)
    n, d, k = 100_000, 16, 16
    centres = rng.normal(0, 2, (k, d))
    labels = rng.integers(0, k, n)
    X = (centres[labels] + rng.normal(size=(n, d))).astype(np.float32)
    seconds = {}
    for name in MODELS:
        model = jaxem.GaussianMixture(k, name)
        start = model.init(jax.random.key(0), X)

        def timed(iterations, model=model, start=start):
            began = time.perf_counter()
            result = jaxem.fit(model, X, start, tol=0.0, max_iter=iterations)
            jax.block_until_ready(result.objective)
            return time.perf_counter() - began

        timed(10)  # compiles (max_iter is not static: one program for both)
        seconds[name] = (min(timed(20) for _ in range(2)) - min(timed(10) for _ in range(2))) / 10
        print(f"{name}: {seconds[name] * 1e3:.1f} ms per iteration", flush=True)
    out += [
        "",
        f"Per EM iteration, N = {n:,}, D = {d}, K = {k}, float32:",
        "",
        "| model | ms per iteration | ratio to VVV |",
        "|---|---|---|",
    ]
    for name in MODELS:
        out.append(f"| {name} | {seconds[name] * 1e3:.1f} | {seconds[name] / seconds['VVV']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--select", action="store_true")
    parser.add_argument("--iterations", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = [f"Machine: {platform.processor() or platform.machine()}, {platform.system()}", ""]
    if args.select or not args.iterations:
        run_select(out)
    if args.iterations or not args.select:
        run_iterations(out)
    text = "\n".join(out) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
