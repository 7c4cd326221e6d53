"""Data beyond memory: exact EM from a file on disk, and online EM in one pass over it.

    python benchmarks/streaming.py [--rows 100000000] [--markdown-section FILE] [--quick]

The benchmark writes a ``.npy`` file of ``--rows`` rows (default 1e8, float32, D = 16: 6.4 GB)
from a mixture of K = 16 Gaussians with random full covariances under ``.cache/bench/`` (kept
for the next run), then, each in a fresh process:

- **Exact EM from disk** (`jaxem.sources.npy`, blocks of 1,000,000 rows, full covariances,
  K = 16): the time of each pass (an E-step over every block, read from disk or the page
  cache, checked, placed and added up), in rows per second, against the in-memory rate of
  `jaxem.fit` on the first 4,000,000 rows held as one array (per iteration after its first
  call, the best of two runs in each of two fresh processes, measured after the passes from
  disk: timings on the 2-core machine vary by up to 2x between runs). The issue's target:
  within 1.5x. And the peak resident memory growth during the passes, for the whole file and
  for its first tenth (target: independent of N).
- **Online EM** (`jaxem.online.stepwise`, alpha = 0.6, Polyak averaging from the 100th
  minibatch, minibatches of 20,000 rows): the time of one pass over the file, and the held-out
  log-likelihood per row (1,000,000 fresh rows of the same mixture) of the averaged iterate;
  against batch EM (`jaxem.em_algorithm`) on a subsample that fits in memory (the first
  4,000,000 rows): the time its iterates take to reach the same held-out score.

All start from the same parameters (`GaussianMixture.init` on the first 100,000 rows). With
``--markdown-section`` the tables replace the section "Data beyond memory" of FILE (``make
bench`` writes it into ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sections import replace_section

D, K = 16, 16
BLOCK_ROWS = 1_000_000
MINIBATCH = 20_000
IN_MEMORY = 4_000_000
HELD_OUT = 1_000_000
CACHE = Path(__file__).parents[1] / ".cache" / "bench"


def mixture(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (K, D))
    factors = rng.normal(0, 1, (K, D, D)) / np.sqrt(D) + np.eye(D) * 0.5
    return centres, factors


def draw(rng, n: int) -> np.ndarray:
    centres, factors = mixture()
    labels = rng.integers(0, K, n)
    X = rng.standard_normal((n, D), dtype=np.float32)
    for k in range(K):
        rows = labels == k
        X[rows] = X[rows] @ factors[k].astype(np.float32) + centres[k].astype(np.float32)
    return X


def make_file(path: Path, n: int, seed: int) -> None:
    """``n`` rows written 1,000,000 at a time (never whole in memory)."""
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, D):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.float32, (n, D))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 1_000_000):
        stop = min(n, start + 1_000_000)
        out[start:stop] = draw(rng, stop - start)
    out.flush()
    del out
    path.with_suffix(".tmp.npy").rename(path)


def _status_mib(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak) of /proc/self/status in MiB (Linux); elsewhere the
    peak of ``getrusage`` for both."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> float:
    """Resets the peak resident memory to the current (Linux: /proc/self/clear_refs); returns
    the current resident memory in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mib("VmRSS")


def start_params(path: Path):
    import jax

    import jaxem

    model = jaxem.GaussianMixture(K, "full")
    first = jaxem.sources.first_rows(jaxem.sources.npy(path, BLOCK_ROWS), 100_000)
    return model, model.init(jax.random.key(0), first)


def child_exact(path: Path, passes: int) -> dict:
    import jax

    from jaxem import sources, streaming

    model, params = start_params(path)
    one_pass = streaming.Pass(model, sources.npy(path, BLOCK_ROWS), None, None)
    jax.block_until_ready(params)
    before = _reset_peak()
    seconds = []
    for _ in range(passes):
        began = time.perf_counter()
        stats, loglik, weight, rows = one_pass(params)
        jax.block_until_ready((stats, loglik))
        seconds.append(time.perf_counter() - began)
    return {"rows": rows, "seconds": seconds, "peak_growth_mib": _status_mib("VmHWM") - before}


def child_in_memory(path: Path) -> dict:
    import jax

    import jaxem

    model, params = start_params(path)
    X = np.load(path, mmap_mode="r")[:IN_MEMORY].copy()
    began = time.perf_counter()
    jax.block_until_ready(jaxem.fit(model, X, params, tol=0.0, max_iter=1))
    first = time.perf_counter() - began
    per_pass = np.inf
    for _ in range(2):
        began = time.perf_counter()
        jax.block_until_ready(jaxem.fit(model, X, params, tol=0.0, max_iter=3))
        per_pass = min(per_pass, (time.perf_counter() - began) / 4)  # the start's E-step and 3
    return {"rows": IN_MEMORY, "first_call": first, "per_pass": per_pass}


def child_online(path: Path, held_out_path: Path) -> dict:
    import jax

    import jaxem
    from jaxem import online, sources

    model, params = start_params(path)
    held_out = np.load(held_out_path)

    def score(p) -> float:
        return float(jaxem.em_step(model, p, held_out)[1]) / len(held_out)

    em = online.stepwise(model, alpha=0.6, average_from=100)
    began = time.perf_counter()
    state = online.fit_source(em, sources.npy(path, MINIBATCH), params, quiet=True)
    jax.block_until_ready(state)
    online_seconds = time.perf_counter() - began
    online_score = score(state.averaged)

    X = np.load(path, mmap_mode="r")[:IN_MEMORY].copy()
    algorithm = jaxem.em_algorithm(model, X, params)
    jax.block_until_ready(algorithm.step(algorithm.init(params)))  # compiled before the clock
    state_b = algorithm.init(params)
    batch_seconds, curve, reached = 0.0, [], None
    for _ in range(60):
        began = time.perf_counter()
        state_b = jax.block_until_ready(algorithm.step(state_b))
        batch_seconds += time.perf_counter() - began
        if int(state_b.n_iter) == 0:
            continue
        value = score(state_b.params)
        curve.append((int(state_b.n_iter), batch_seconds, value))
        if value >= online_score and reached is None:
            reached = (int(state_b.n_iter), batch_seconds)
            break
    return {
        "online_seconds": online_seconds,
        "online_score": online_score,
        "online_last_score": score(state.params),
        "batch_reached": reached,
        "batch_curve": curve,
    }


def run_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--markdown-section", type=Path)
    parser.add_argument("--quick", action="store_true", help="1e7 rows")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "exact":
            print(json.dumps(child_exact(Path(rest[0]), int(rest[1]))))
        elif kind == "memory":
            print(json.dumps(child_in_memory(Path(rest[0]))))
        else:
            print(json.dumps(child_online(Path(rest[0]), Path(rest[1]))))
        return

    n = 10_000_000 if args.quick else args.rows
    path, tenth = CACHE / f"rows_{n}.npy", CACHE / f"rows_{n // 10}.npy"
    held_out = CACHE / "held_out.npy"
    began = time.perf_counter()
    make_file(path, n, seed=1)
    make_file(tenth, n // 10, seed=1)  # the same first rows
    make_file(held_out, HELD_OUT, seed=2)
    os.sync()  # written pages flushed now, not while the timings run
    print(f"data ready in {time.perf_counter() - began:.0f} s", file=sys.stderr)

    exact = run_child("exact", str(path), "3")
    exact_tenth = run_child("exact", str(tenth), "3")
    # the in-memory rate, best of two fresh processes (this 2-core machine's timings vary by
    # up to 2x from run to run)
    memory = min((run_child("memory", str(path)) for _ in range(2)), key=lambda m: m["per_pass"])
    online_run = run_child("online", str(path), str(held_out))

    memory_rate = memory["rows"] / memory["per_pass"]
    rates = [exact["rows"] / s for s in exact["seconds"]]
    steady = max(rates[1:])
    gigabytes = n * D * 4 / 1e9
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    reached = online_run["batch_reached"]
    batch_text = (
        f"{reached[1]:.1f} s ({reached[0]} iterations)"
        if reached
        else f"not reached in {len(online_run['batch_curve'])} iterations "
        f"({online_run['batch_curve'][-1][2]:.5f} per row)"
    )
    section = "\n".join(
        [
            "## Data beyond memory",
            "",
            f"`python benchmarks/streaming.py` on {machine}: a `.npy` file of {n:,} rows "
            f"(D = 16, float32, {gigabytes:.1f} GB) from a mixture of 16 Gaussians; full "
            "covariances, K = 16, float32, the same start everywhere. Exact EM from the file "
            f"(`jaxem.sources.npy`, blocks of {BLOCK_ROWS:,} rows, each pass read from disk or "
            "the page cache) against `jaxem.fit` on 4,000,000 rows held in memory, per pass "
            "over the data; peak resident memory growth during the passes, over the whole file "
            "and over its first tenth.",
            "",
            "| | rows | rows/s | time per row against in memory | peak memory growth |",
            "|---|---|---|---|---|",
            f"| `jaxem.fit` in memory | {memory['rows']:,} | {memory_rate:,.0f} | 1 | |",
            f"| exact EM from disk, first pass (compiles) | {exact['rows']:,} | {rates[0]:,.0f} "
            f"| {memory_rate / rates[0]:.2f}x | |",
            f"| exact EM from disk, best later pass | {exact['rows']:,} | {steady:,.0f} | "
            f"{memory_rate / steady:.2f}x | {exact['peak_growth_mib']:,.0f} MiB |",
            f"| the same, first tenth of the file | {exact_tenth['rows']:,} | "
            f"{exact_tenth['rows'] / min(exact_tenth['seconds'][1:]):,.0f} | | "
            f"{exact_tenth['peak_growth_mib']:,.0f} MiB |",
            "",
            f"Online EM (`jaxem.online.stepwise`, alpha = 0.6, minibatches of {MINIBATCH:,} "
            "rows, Polyak averaging from the 100th) in one pass over the file, against batch EM "
            f"on its first {IN_MEMORY:,} rows in memory (`jaxem.em_algorithm`): the held-out "
            f"log-likelihood per row ({HELD_OUT:,} fresh rows) and the time batch EM takes to "
            "reach the same score (its iterations only, compilation excluded).",
            "",
            "| | time | held-out log-likelihood per row |",
            "|---|---|---|",
            f"| online EM, one pass over {n:,} rows | {online_run['online_seconds']:.1f} s | "
            f"{online_run['online_score']:.5f} "
            f"(last iterate {online_run['online_last_score']:.5f}) |",
            f"| batch EM on {IN_MEMORY:,} rows, to the same score | {batch_text} | |",
            "",
        ]
    )
    print(section)
    print(
        json.dumps({"memory": memory, "exact": exact, "tenth": exact_tenth, "online": online_run}),
        file=sys.stderr,
    )
    if args.markdown_section:
        replace_section(args.markdown_section, section)


if __name__ == "__main__":
    main()
