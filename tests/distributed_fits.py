"""One of the processes tests/test_distributed.py starts: ``python distributed_fits.py
PROCESS_ID N_PROCESSES PORT OUT``. The processes join through ``jax.distributed.initialize`` over
the loopback address (JAX's CPU collectives, gloo), two host devices each; every process holds
only its own rows of the data (its own members of a batch), and fits, starts and batches of fits
run on the global arrays assembled from the pieces, as on a cluster. Process 0 writes what they
give to OUT (an .npz file); the test compares it with one process's results on the whole data.
"""

import os
import sys

from jaxem.compiler import with_options

# before JAX starts its backend: two host devices per process
os.environ["XLA_FLAGS"] = with_options(
    f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

import jaxem  # noqa: E402


def data():
    """What every test of this file fits, made alike in every process (and in the test)."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (624, 3)), rng.normal(1.2, 0.7, (400, 3))])  # overlapping
    X = X[rng.permutation(len(X))]
    weights = rng.uniform(0.5, 2.0, len(X))
    batch = np.stack([X[i * 128 : (i + 1) * 128] for i in range(8)])
    return X, weights, batch


MODELS = {"full": ("full", False), "tied": ("tied", False), "diag map": ("diag", True)}


def main():
    process, n_processes, port, out = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
    )
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=n_processes,
        process_id=process,
        initialization_timeout=120,
    )
    X, weights, batch = data()
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))

    def own(a):
        """This process's part of ``a`` along its first axis, assembled into the global
        array."""
        n = len(a) // n_processes
        return jax.make_array_from_process_local_data(rows, a[process * n : (process + 1) * n])

    results = {
        "devices": jax.device_count(),
        "local devices": jax.local_device_count(),
        "processes": jax.process_count(),
    }
    X_global = own(X)
    for name, (covariance_type, use_prior) in MODELS.items():
        model = jaxem.GaussianMixture(2, covariance_type)
        prior = jaxem.default_prior(model, X) if use_prior else None
        start = model.init(jax.random.key(0), X_global, weights)
        fitted = jaxem.fit(model, X_global, start, weights=weights, prior=prior, tol=1e-10)
        for field, value in start._asdict().items():
            results[f"{name} init {field}"] = np.asarray(value)
        for field, value in fitted.params._asdict().items():
            results[f"{name} fit {field}"] = np.asarray(value)
        results[f"{name} fit objective"] = np.asarray(fitted.objective)
        results[f"{name} fit n_iter"] = np.asarray(fitted.n_iter)

    model = jaxem.GaussianMixture(2, "full")
    many = jaxem.fit_batch(model, jax.random.key(1), own(batch), lanes=2, tol=1e-10)
    # the results stay split over the processes as the batch was: gathered to every process
    gathered = jax.experimental.multihost_utils.process_allgather(
        (many.objective, many.n_iter, many.params.means), tiled=True
    )
    results["batch objective"], results["batch n_iter"], results["batch means"] = map(
        np.asarray, gathered
    )
    if process == 0:
        np.savez(out, **results)


if __name__ == "__main__":
    import jax.experimental.multihost_utils  # noqa: F401

    main()
