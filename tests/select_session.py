"""A long session of `jaxem.select` calls on data sets of different shapes, as a notebook user
makes them; run as a subprocess by tests/test_model_selection.py. Prints, as JSON, the number of
memory mappings of the process (``/proc/self/maps``) after each call: JAX keeps compiled
programs, each holds mappings, and the kernel allows about 65,530 of them per process."""

import json
import sys

import jax
import numpy as np

import jaxem


def n_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def main(n_sets: int) -> None:
    rng = np.random.default_rng(0)
    counts = []
    for i in range(n_sets):
        n, d = 30 + 3 * i, 2
        X = rng.normal(size=(n, d)) * rng.uniform(0.5, 20.0, d)
        X[: n // 2] += 5.0 * rng.uniform(0.5, 20.0, d)
        jaxem.select(X, [1, 2], ("spherical",), key=jax.random.key(i), n_init=2)
        counts.append(n_mappings())
    print(json.dumps(counts))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
