"""Behaviour unchanged by the contract's rebuild (issue 31): the fixed set of fits of
tests/contract_fits.py, run now, equals the record made by the code before the change
(tests/data/contract_reference.npz) to 1e-12 relative."""

import numpy as np
import pytest
from contract_fits import REFERENCE, record


@pytest.fixture(scope="module")
def now():
    return record()


def test_every_recorded_fit_is_unchanged(now):
    reference = dict(np.load(REFERENCE))
    assert sorted(now) == sorted(reference)
    worst = {}
    for key, expected in reference.items():
        got = now[key]
        assert got.shape == expected.shape, key
        if key.endswith("/n_iter"):
            assert np.array_equal(got, expected), key
            continue
        scale = np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)
        diff = np.abs(got - expected)
        same_nan = np.isnan(got) == np.isnan(expected)
        assert np.all(same_nan), key
        error = float(np.max(diff[np.isfinite(diff)], initial=0.0) / max(scale, 1e-300))
        worst[key] = error
        assert error <= 1e-12, f"{key}: {error:.2e}"
