"""Fit a Gaussian mixture to a data set on disk that need not fit in memory, with a progress
line per pass.

    python docs/examples/fit_from_disk.py --rows 400_000_000   # 12.8 GB at D = 8, float32
    python docs/examples/fit_from_disk.py --rows 200_000 --path /tmp/small.npy   # a quick look

The data (a mixture of 8 Gaussians in D = 8, float32) is written to ``--path`` a million rows at
a time unless the file is there already; choose ``--rows`` so that rows x 32 bytes exceeds your
machine's memory to see that nothing but a few blocks is ever held. Then:

1. a start from the first 100,000 rows (k-means++ and Lloyd, `GaussianMixture.init`);
2. exact EM from the file (`jaxem.sources.npy`): every iteration one pass over the blocks,
   the same iterates as `jaxem.fit` on the whole array;
3. online EM (`jaxem.online`) in one pass, for comparison: its objective per row against the
   exact fit's (`jaxem.streaming.evaluate`, one more pass).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

import jaxem
from jaxem import online, sources, streaming

D, K = 8, 8


def write_rows(path: Path, n_rows: int) -> None:
    """``n_rows`` rows of a mixture of K Gaussians, written a million at a time."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 4.0, (K, D)).astype(np.float32)
    out = np.lib.format.open_memmap(path, "w+", np.float32, (n_rows, D))
    for start in range(0, n_rows, 1_000_000):
        stop = min(n_rows, start + 1_000_000)
        labels = rng.integers(0, K, stop - start)
        out[start:stop] = centres[labels] + rng.standard_normal((stop - start, D), np.float32)
    out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=100_000_000)
    parser.add_argument("--path", type=Path, default=Path("rows.npy"))
    parser.add_argument("--block-rows", type=int, default=1_000_000)
    parser.add_argument("--max-iter", type=int, default=20)
    args = parser.parse_args()

    if not args.path.exists() or np.load(args.path, mmap_mode="r").shape != (args.rows, D):
        print(f"writing {args.rows:,} rows to {args.path} ({args.rows * D * 4 / 1e9:.1f} GB)")
        write_rows(args.path, args.rows)
    source = sources.npy(args.path, args.block_rows)

    model = jaxem.GaussianMixture(K, "full")
    start = model.init(jax.random.key(0), sources.first_rows(source, 100_000))

    print("exact EM, one pass over the file per iteration:")
    result = jaxem.fit(model, source, start, tol=1e-6, max_iter=args.max_iter)
    print(f"{int(result.n_iter)} iterations, converged: {bool(result.converged)}")
    print("weights:", np.round(np.asarray(result.params.weights), 4))

    print("online EM, one pass:")
    em = online.stepwise(model, alpha=0.6, average_from=100)
    minibatches = sources.npy(args.path, max(1, min(20_000, args.rows // 20)))
    state = online.fit_source(em, minibatches, start)
    exact = float(result.objective) / args.rows
    once = float(streaming.evaluate(model, source, state.averaged)) / args.rows
    print(f"log-likelihood per row: exact EM {exact:.6f}, online EM in one pass {once:.6f}")


if __name__ == "__main__":
    main()
