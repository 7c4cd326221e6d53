"""Tests run in float64 unless they ask for float32 explicitly (the library never enables x64),
and with jaxem's XLA options (`jaxem.compiler`) for every program, as the command line runs: it
compiles about 30% faster, and compilation is most of the suite's time.

The suite also makes XLA's backend (LLVM) compile cheaply (`TEST_XLA_FLAGS`), which jaxem never
does for its users: the tests' programs run on small data, where compiling is the cost.
Optimisation level 0 compiles them in about two thirds of the time (cold suite on a 2-core
machine: 625 -> 430 s), while running large programs 2-5x slower, which is why the library
keeps the default; each program's kernels compiled as one LLVM module (not split into 32 for
idle cores: with a test worker per core there are none) and without LLVM's expensive passes,
test_covariance_models and test_student_t together (two workers, cold) took 133 -> 112 -> 99
s. Floating-point semantics are the same (no fast math either way); results may differ by
rounding from an optimised build's, as between any two fusions. Set these options in
``XLA_FLAGS`` yourself to test others.

Compiled programs also go to a disk cache shared by the test workers (JAX's persistent cache,
through `jaxem.enable_compilation_cache`): a worker drops its programs after every module (see
`_release_compiled_programs`), and the two workers compile many of the same ones, so a program
compiled once is read back instead of compiled again; so do the command lines the tests start
(``JAXEM_CACHE_DIR``), which never read the user's own cache. ``JAXEM_TEST_CACHE`` names the
directory (default ``.cache/jax-tests``), or ``off``."""

import contextlib
import os
from pathlib import Path

import jax

from jaxem.compilation_cache import enable_compilation_cache
from jaxem.compiler import with_options

TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_parallel_codegen_split_count=1",
    "--xla_llvm_disable_expensive_passes=true",
)


def _test_flags(xla_flags: str) -> str:
    """``xla_flags`` with jaxem's options and `TEST_XLA_FLAGS`, except those it sets itself."""
    for flag in TEST_XLA_FLAGS:
        if flag.split("=")[0] not in xla_flags:
            xla_flags = f"{xla_flags} {flag}".strip()
    return with_options(xla_flags)


# before any program; subprocesses started by the tests inherit it
os.environ["XLA_FLAGS"] = _test_flags(os.environ.get("XLA_FLAGS", ""))
jax.config.update("jax_enable_x64", True)
_CACHE = os.environ.get("JAXEM_TEST_CACHE", str(Path(__file__).parents[1] / ".cache" / "jax-tests"))
if _CACHE != "off":
    enable_compilation_cache(_CACHE)
    # the command lines the tests start share it, never the user's own (~/.cache/jaxem)
    os.environ["JAXEM_CACHE_DIR"] = _CACHE
else:
    os.environ["JAXEM_NO_CACHE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxem import load_faithful  # noqa: E402

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


@pytest.fixture(scope="session")
def faithful() -> np.ndarray:
    return load_faithful()[0]


def make_blobs(seed: int = 0) -> np.ndarray:
    """Three overlapping 3-D Gaussian clusters of different shapes, 450 rows."""
    rng = np.random.default_rng(seed)
    a = rng.normal([0.0, 0.0, 0.0], 1.0, (200, 3))
    b = rng.normal([3.0, 3.0, 0.0], [0.5, 1.0, 2.0], (150, 3))
    c = rng.multivariate_normal(
        [-2.0, 4.0, 1.0], [[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]], 100
    )
    return np.concatenate([a, b, c])


@pytest.fixture(scope="session")
def blobs() -> np.ndarray:
    return make_blobs()


@pytest.fixture(scope="session")
def wide() -> np.ndarray:
    """Six features (above the entry-by-entry kernels' SMALL_D), 450 rows, three clusters."""
    extra = make_blobs(1)[:, ::-1] * 0.5 + 0.3 * make_blobs(0)
    return np.concatenate([make_blobs(0), extra], axis=1)


def precisions(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """scikit-learn's precisions_init from jaxem's covariances."""
    covariances = np.asarray(covariances)
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(covariances)
    return 1.0 / covariances


def rel_err(a, b) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. A worker process runs many modules,
    and every program holds a few memory mappings: a worker that kept them all reached the
    kernel's limit of 65,530 mappings and crashed inside XLA's compiler. Tests share programs
    within a module (module-scoped fixtures), not across modules."""
    yield
    jax.clear_caches()


def numpy_forward(log_b: np.ndarray, initial: np.ndarray, transitions: np.ndarray) -> float:
    """log p(x_1..T) of a hidden Markov model by the forward recursion in log space, in NumPy
    (a reference for tests); ``log_b`` ``(T, K)`` the emissions' log densities."""
    from scipy.special import logsumexp

    with np.errstate(divide="ignore"):  # a state the sequence cannot start in: log 0
        alpha = np.log(initial) + log_b[0]
        for t in range(1, len(log_b)):
            alpha = logsumexp(alpha[:, None] + np.log(transitions), axis=0) + log_b[t]
    return float(logsumexp(alpha))


@contextlib.contextmanager
def lowerings():
    """The programs JAX lowers inside the block, one duration each (a program compiled, or read
    from the disk cache: lowered either way), counted by its monitoring events."""
    lowered: list = []
    event = "/jax/core/compile/jaxpr_to_mlir_module_duration"

    def listen(name, duration, **kwargs):
        if name == event:
            lowered.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield lowered
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
