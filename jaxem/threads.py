"""Independent jobs in threads, one per core, each in the caller's floating-point precision.

On a CPU a compiled jaxem program mostly runs on one core, and JAX's CPU client runs the
programs dispatched from one thread in turn: jobs that compile and run programs of their own
(`jaxem.select`'s covariance structures, `jaxem.bootstrap_lrt`'s tests) finish sooner in a
thread each, one compiling while another runs. A thread starts in the process's precision: a
float64 scope (``jax.enable_x64``, as the command line and the scikit-learn estimator open) is
the caller thread's alone, and without passing it on the workers truncated float64 data to
float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax


def count(n_jobs: int) -> int:
    """The threads `run` uses for ``n_jobs`` jobs: one per core, at most one per job."""
    return max(1, min(n_jobs, os.cpu_count() or 1))


def run(job: Callable[[Any], Any], items: Sequence[Any]) -> list[Future]:
    """``job(item)`` for every item, in `count` threads, in the caller's precision. Waits for
    all of them; returns their futures in the order of ``items`` (an error surfaces through
    its future's ``result()``)."""
    x64 = bool(jax.config.jax_enable_x64)

    def in_precision(item: Any) -> Any:
        with jax.enable_x64(x64):
            return job(item)

    with ThreadPoolExecutor(count(len(items))) as pool:
        return [pool.submit(in_precision, item) for item in items]


__all__ = ["count", "run"]
