"""Data split over four (host) devices gives the one-device fit: float64, within 1e-9, same
n_iter. The device count is fixed when JAX starts, so the fits run in a fresh process
(tests/sharded_fits.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COVARIANCE_TYPES


@pytest.fixture(scope="module")
def report():
    script = Path(__file__).with_name("sharded_fits.py")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_four_devices(report):
    assert report["devices"] == 4


CASES = [f"{t} auto" for t in COVARIANCE_TYPES] + [
    "full explicit",  # a mesh with Explicit axes, as jax.make_mesh makes by default
    "diag explicit map",  # and a start made on it, with a prior
    "full blocks",  # row blocks on every device
    "tied blocks",
    "full map",
    "diag map",
    "restarts",  # fit_restarts: every start data-parallel
    "hmm auto",  # a hidden Markov model's sequences split over the devices
    "hmm blocks",  # and visited a sequence at a time on every device
    "full squarem blocks",  # accelerated EM: every evaluation data-parallel, in row blocks
    "hmm squarem",
    "t auto",  # the multivariate t family
    "t blocks",
    "factors auto",  # factor analysers (common loadings: a shared parameter)
    "factors blocks",
]


@pytest.mark.parametrize("case", CASES)
def test_sharded_fit_equals_one_device(report, case):
    r = report[case]
    assert r["n_iter"][0] == r["n_iter"][1]
    assert r["objective"] < 1e-9
    assert r["params"] < 1e-9


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_sharded_init_equals_one_device(report, covariance_type):
    assert report[f"init {covariance_type}"] < 1e-9


def test_uneven_split_is_refused(report):
    assert "998 rows, not a multiple of the 4 devices" in report["uneven"]


def test_nan_in_split_data_is_refused(report):
    """The finiteness check runs on the devices (no copy of the data to the host)."""
    assert "NaN or inf" in report["nan"]


def test_sharded_batch_equals_one_device(report):
    r = report["batch"]
    assert r["n_iter"][0] == r["n_iter"][1]
    assert r["objective"] < 1e-9
    assert r["params"] < 1e-9
    assert "data" in r["sharding"]
    assert report["batch explicit"] < 1e-9
