"""`jaxem.threads`: jobs in threads, one per core, each in the caller's precision."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxem import threads


def test_jobs_run_in_the_callers_precision_and_keep_their_order():
    """A float32 scope opened by the caller holds in every worker (a thread starts in the
    process's precision, float64 under this suite), and a float64 scope too; the futures
    come back in the order of the items, with each job's value."""

    def job(i):
        return i, jnp.asarray(1.0).dtype, float(jnp.sum(jnp.arange(i + 1.0)))

    for enabled, dtype in ((False, np.float32), (True, np.float64)):
        with jax.enable_x64(enabled):
            done = [f.result() for f in threads.run(job, range(5))]
        assert [d[0] for d in done] == list(range(5))
        assert all(d[1] == dtype for d in done)
        np.testing.assert_array_equal([d[2] for d in done], [i * (i + 1) / 2 for i in range(5)])


def test_errors_surface_through_their_futures_and_the_count_is_per_core():
    def job(i):
        if i == 2:
            raise ValueError("two")
        return i

    futures = threads.run(job, range(4))
    assert [f.exception() is None for f in futures] == [True, True, False, True]
    with pytest.raises(ValueError, match="two"):
        futures[2].result()
    cores = os.cpu_count() or 1
    assert threads.count(1) == 1 and threads.count(0) == 1
    assert threads.count(1000) == cores
