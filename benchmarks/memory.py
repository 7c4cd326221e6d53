"""Peak memory of a large fit: full covariance, N = 5,000,000, D = 8, K = 8, float32 (160 MB).

Each measurement runs in a fresh Python process: the data is made (in NumPy, a block at a time,
then moved into a JAX array and the NumPy copy freed), the process's resident memory is read,
then ``GaussianMixture.init`` (k-means++ and 10 Lloyd iterations) and ``jaxem.fit`` (5
iterations) run, and ``resource.getrusage`` gives the peak resident memory. The figure is

    (peak during init and fit - resident before them) / size of the data.

Where Linux allows (``/proc/self/clear_refs``) the peak counter is reset before the fit, so
that the data's own making does not hide the fit's peak; elsewhere the data is made without
a second copy and the figure is an upper bound all the same.

    .venv/bin/python benchmarks/memory.py                 # row blocks chosen automatically
    .venv/bin/python benchmarks/memory.py --compare       # and the same fit in one block
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_mib() -> float:
    per_mib = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mib


def _resident_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_mib()


def child(n: int, d: int, k: int, chunk_size: int | None) -> dict:
    import jax
    import numpy as np

    import jaxem

    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 5.0, (k, d))
    data = np.empty((n, d), np.float32)
    step = 100_000
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        data[rows] = centres[rows % k] + rng.standard_normal((rows.size, d))
    X = jax.device_put(data).block_until_ready()
    del data

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident memory counter to the current size
        reset = True
    except OSError:
        reset = False
    before = max(_resident_mib(), _peak_mib() if reset else 0.0)

    model = jaxem.GaussianMixture(k, "full")
    t0 = time.perf_counter()
    params = jax.block_until_ready(model.init(jax.random.key(1), X, chunk_size=chunk_size))
    t1 = time.perf_counter()
    result = jax.block_until_ready(
        jaxem.fit(model, X, params, tol=0.0, max_iter=5, chunk_size=chunk_size)
    )
    t2 = time.perf_counter()
    peak = _peak_mib()
    data_mib = X.nbytes / 2**20
    return {
        "n": n,
        "d": d,
        "k": k,
        "chunk_size": chunk_size,
        "data_mib": round(data_mib, 1),
        "before_mib": round(before, 1),
        "peak_mib": round(peak, 1),
        "growth_mib": round(peak - before, 1),
        "ratio": round((peak - before) / data_mib, 3),
        "init_s": round(t1 - t0, 2),
        "fit_s": round(t2 - t1, 2),
        "loglik_per_sample": float(result.objective) / n,
        "peak_counter_reset": reset,
    }


def measure(n: int, d: int, k: int, chunk_size: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--d", str(d), "--k", str(k)]
    if chunk_size is not None:
        cmd += ["--chunk-size", str(chunk_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--compare", action="store_true", help="also fit in one block")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.d, args.k, args.chunk_size)))
        return

    from speed import machine  # benchmarks/speed.py: the CPU's name and the versions

    about = machine()
    print(f"machine: {about['cpu']}, {os.cpu_count()} cores; jax {about['versions']['jax']}")
    runs = [("row blocks", args.chunk_size)]
    if args.compare:
        runs.append(("one block", args.n))
    for name, chunk in runs:
        r = measure(args.n, args.d, args.k, chunk)
        print(
            f"{name:>10}: N={r['n']:,} D={r['d']} K={r['k']} float32, data {r['data_mib']} MiB; "
            f"resident before {r['before_mib']} MiB, peak {r['peak_mib']} MiB: "
            f"+{r['growth_mib']} MiB = {r['ratio']}x the data "
            f"(init {r['init_s']} s, 5 iterations {r['fit_s']} s, "
            f"loglik/sample {r['loglik_per_sample']:.4f})"
        )
        print(f"ratio {r['ratio']}")


if __name__ == "__main__":
    main()
