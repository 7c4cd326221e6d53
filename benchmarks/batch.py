"""Many small datasets in one call: jaxem.fit_batch against a scikit-learn loop.

B datasets of N points in D = 2 dimensions, each drawn from its own random 3-component
Gaussian mixture, fitted with K = 3 full covariances in float32, tol 1e-3, max_iter 100.
scikit-learn (GaussianMixture, k-means++ init, n_init=1, the same tol and max_iter) runs in a
Python loop over the first ``--sklearn-datasets`` datasets and its time is scaled to B.

jaxem is timed twice in this process: the first call includes compilation ("cold"), the second
does not ("warm"). ``--lanes`` compares lane counts; ``lanes = B`` is a plain vmap of the EM
loop (every member iterates until the slowest has converged).

Run: ``.venv/bin/python benchmarks/batch.py`` (about a minute and a half on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np


def make_datasets(n_datasets: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """``(B, N, 2)`` float32: per dataset, 3 means ~ N(0, 3^2 I), covariances A A^T / 2 + 0.1 I
    with A standard normal, weights ~ Dirichlet(2, 2, 2)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 3.0, (n_datasets, 3, 2))
    a = rng.normal(size=(n_datasets, 3, 2, 2))
    cov = a @ np.swapaxes(a, -1, -2) / 2 + 0.1 * np.eye(2)
    chol = np.linalg.cholesky(cov)
    weights = rng.dirichlet([2.0, 2.0, 2.0], n_datasets)
    u = rng.random((n_datasets, n_samples, 1))
    labels = (u > np.cumsum(weights, axis=1)[:, None, :]).sum(-1)  # (B, N)
    z = rng.normal(size=(n_datasets, n_samples, 2))
    rows = np.arange(n_datasets)[:, None]
    X = means[rows, labels] + np.einsum("bnde,bne->bnd", chol[rows, labels], z)
    return X.astype(np.float32)


def run_sklearn(X: np.ndarray, tol: float, max_iter: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    scores, n_iter = [], []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for b, x in enumerate(X):
            gm = GaussianMixture(
                3,
                covariance_type="full",
                tol=tol,
                max_iter=max_iter,
                init_params="k-means++",
                random_state=b,
            ).fit(x)
            scores.append(gm.score(x))
            n_iter.append(gm.n_iter_)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "per_dataset_ms": 1e3 * seconds / len(X),
        "mean_loglik": float(np.mean(scores)),
        "mean_n_iter": float(np.mean(n_iter)),
    }


def run_jaxem(X: np.ndarray, tol: float, max_iter: int, lanes: int | None) -> dict:
    import jaxem

    model = jaxem.GaussianMixture(3, "full")
    Xj = jnp.asarray(X)

    def call():
        r = jaxem.fit_batch(model, jax.random.key(0), Xj, tol=tol, max_iter=max_iter, lanes=lanes)
        return jax.block_until_ready(r)

    t0 = time.perf_counter()
    call()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = call()
    warm = time.perf_counter() - t0
    loglik = np.asarray(result.objective) / X.shape[1]
    n_iter = np.asarray(result.n_iter)
    return {
        "lanes": lanes,
        "cold_seconds": cold,
        "warm_seconds": warm,
        "mean_loglik": float(np.mean(loglik)),
        "mean_n_iter": float(np.mean(n_iter)),
        "max_n_iter": int(np.max(n_iter)),
        "loglik": loglik,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--sklearn-datasets", type=int, default=300)
    parser.add_argument("--lanes", type=int, nargs="*", default=[0, 10_000])
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    tol, max_iter = 1e-3, 100

    X = make_datasets(args.datasets, args.samples)
    sk = run_sklearn(X[: args.sklearn_datasets], tol, max_iter)
    sk_total = sk["seconds"] * args.datasets / args.sklearn_datasets
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, " + (
        f"JAX {jax.__version__} on {jax.devices()[0].platform}"
    )
    print(f"machine: {machine}")
    print(
        f"B={args.datasets}, N={args.samples}, D=2, K=3, full, float32, tol={tol}, "
        f"max_iter={max_iter}"
    )
    print(
        f"scikit-learn loop: {sk['per_dataset_ms']:.2f} ms/dataset over "
        f"{args.sklearn_datasets} datasets -> {sk_total:.1f} s for {args.datasets}; "
        f"mean loglik/sample {sk['mean_loglik']:.4f}, mean n_iter {sk['mean_n_iter']:.1f}"
    )
    rows = []
    for lanes in args.lanes:
        r = run_jaxem(X, tol, max_iter, lanes or None)
        subset = float(np.mean(r["loglik"][: args.sklearn_datasets]))
        rows.append(
            {
                "lanes": lanes or "default",
                "cold_seconds": r["cold_seconds"],
                "warm_seconds": r["warm_seconds"],
                "speedup_cold": sk_total / r["cold_seconds"],
                "speedup_warm": sk_total / r["warm_seconds"],
                "mean_loglik": r["mean_loglik"],
                "mean_loglik_sklearn_subset": subset,
                "mean_n_iter": r["mean_n_iter"],
                "max_n_iter": r["max_n_iter"],
            }
        )
        print(
            f"jaxem.fit_batch lanes={rows[-1]['lanes']}: cold {r['cold_seconds']:.2f} s "
            f"({rows[-1]['speedup_cold']:.0f}x), warm {r['warm_seconds']:.2f} s "
            f"({rows[-1]['speedup_warm']:.0f}x); mean loglik/sample {r['mean_loglik']:.4f} "
            f"(on scikit-learn's {args.sklearn_datasets}: {subset:.4f}), mean n_iter "
            f"{r['mean_n_iter']:.1f}, max {r['max_n_iter']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "sklearn": sk, "jaxem": rows}, f, indent=2)


if __name__ == "__main__":
    main()
