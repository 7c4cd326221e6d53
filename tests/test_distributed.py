"""Many processes, as on a cluster: two processes on this machine join through
``jax.distributed.initialize`` over the loopback address (CPU collectives), two host devices
each, every process holding only its own rows (tests/distributed_fits.py). Their ``init``,
``fit`` and ``fit_batch`` equal one process's on the whole data: float64, to 1e-10, the same
number of iterations."""

import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxem

sys.path.insert(0, str(Path(__file__).parent))
from distributed_fits import MODELS, data  # noqa: E402

N_PROCESSES = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed") / "results.npz"
    script = Path(__file__).with_name("distributed_fits.py")
    port = str(free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), str(N_PROCESSES), port, str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(N_PROCESSES)
    ]
    failures = []
    for i, process in enumerate(processes):
        try:
            _, err = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"process {i} did not finish in 600 s")
        if process.returncode:
            failures.append(f"process {i} exited with {process.returncode}:\n{err[-3000:]}")
    assert not failures, "\n".join(failures)
    return dict(np.load(out))


def test_two_processes_four_devices(report):
    assert int(report["processes"]) == 2
    assert int(report["devices"]) == 4 and int(report["local devices"]) == 2


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


@pytest.mark.parametrize("name", list(MODELS))
def test_init_and_fit_equal_one_process(report, name):
    X, weights, _ = data()
    covariance_type, use_prior = MODELS[name]
    model = jaxem.GaussianMixture(2, covariance_type)
    prior = jaxem.default_prior(model, X) if use_prior else None
    start = model.init(jax.random.key(0), X, weights)
    fitted = jaxem.fit(model, X, start, weights=weights, prior=prior, tol=1e-10)
    for field, value in start._asdict().items():
        assert rel(report[f"{name} init {field}"], value) < 1e-10, field
    for field, value in fitted.params._asdict().items():
        assert rel(report[f"{name} fit {field}"], value) < 1e-10, field
    assert int(report[f"{name} fit n_iter"]) == int(fitted.n_iter) > 10
    np.testing.assert_allclose(report[f"{name} fit objective"], fitted.objective, rtol=1e-12)


def test_fit_batch_equals_one_process(report):
    _, _, batch = data()
    one = jaxem.fit_batch(
        jaxem.GaussianMixture(2, "full"), jax.random.key(1), batch, lanes=2, tol=1e-10
    )
    np.testing.assert_array_equal(report["batch n_iter"], one.n_iter)
    assert np.all(one.n_iter > 10)
    np.testing.assert_allclose(report["batch objective"], one.objective, rtol=1e-12)
    assert rel(report["batch means"], one.params.means) < 1e-10
