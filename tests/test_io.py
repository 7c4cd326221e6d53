"""save/load: bit-identical round trips, and clear errors for files that are not ours."""

import json

import jax
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES

import jaxem


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_identical(tmp_path, faithful, covariance_type, dtype):
    X = faithful.astype(dtype)
    model = jaxem.GaussianMixture(2, covariance_type, reg_covar=1e-5)
    prior = jaxem.default_prior(model, X)
    params = jaxem.fit(model, X, model.init(jax.random.key(0), X), prior=prior).params
    jaxem.save(tmp_path / "m.npz", model, params, prior)
    loaded_model, loaded, loaded_prior = jaxem.load(tmp_path / "m.npz")
    assert loaded_model == model
    for a, b in zip(list(loaded) + list(loaded_prior), list(params) + list(prior), strict=True):
        assert a.dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_array_equal(model.predict(loaded, X), model.predict(params, X))


def test_kmeans_without_prior(tmp_path, blobs):
    model = jaxem.KMeans(3)
    params = jaxem.fit(model, blobs, model.init(jax.random.key(0), blobs)).params
    jaxem.save(tmp_path / "k.npz", model, params)
    loaded_model, loaded, prior = jaxem.load(tmp_path / "k.npz")
    assert loaded_model == model and prior is None
    np.testing.assert_array_equal(loaded.centres, np.asarray(params.centres))


def _saved(tmp_path, faithful):
    model = jaxem.GaussianMixture(2)
    params = model.init(jax.random.key(0), faithful)
    path = tmp_path / "m.npz"
    jaxem.save(path, model, params)
    return path, model, params


def test_bad_files(tmp_path, faithful):
    path, model, params = _saved(tmp_path, faithful)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable jaxem model file"):
        jaxem.load(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00\x01not a zip at all" * 10)
    with pytest.raises(ValueError, match="not a readable jaxem model file"):
        jaxem.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(3))
    with pytest.raises(ValueError, match="no 'meta' entry"):
        jaxem.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable jaxem model file"):
        jaxem.load(pickled)
    arrays = dict(np.load(path))
    meta = json.loads(str(arrays["meta"]))
    newer = tmp_path / "newer.npz"
    np.savez(newer, **{**arrays, "meta": np.array(json.dumps({**meta, "version": 99}))})
    with pytest.raises(ValueError, match="format version 99"):
        jaxem.load(newer)
    broken = tmp_path / "broken.npz"
    np.savez(broken, **{**arrays, "params/means": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="inconsistent"):
        jaxem.load(broken)
    with pytest.raises(FileNotFoundError):
        jaxem.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="params must be a GaussianMixtureParams"):
        jaxem.save(tmp_path / "x.npz", model, (1, 2, 3))


@pytest.mark.parametrize(
    "family, X",
    [
        (jaxem.families.Bernoulli(), np.array([[0, 1], [1, 1], [1, 0], [0, 0]] * 5)),
        (jaxem.families.Categorical((2, 3)), np.array([[0, 2], [1, 1], [1, 0], [0, 0]] * 5)),
        (jaxem.families.Poisson(), np.array([[0, 4], [1, 7], [5, 0], [3, 2]] * 5)),
    ],
)
def test_mixture_of_any_family_round_trips(tmp_path, family, X):
    model = jaxem.Mixture(family, 2)
    prior = jaxem.default_prior(model, X)
    params = jaxem.fit(model, X, model.init(jax.random.key(0), X), prior=prior).params
    jaxem.save(tmp_path / "m.npz", model, params, prior)
    loaded_model, loaded, loaded_prior = jaxem.load(tmp_path / "m.npz")
    assert loaded_model == model
    for a, b in zip(
        jax.tree.leaves((loaded, loaded_prior)), jax.tree.leaves((params, prior)), strict=True
    ):
        np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_array_equal(model.predict(loaded, X), model.predict(params, X))


@pytest.mark.parametrize("family", [jaxem.families.Gaussian("tied"), jaxem.families.Poisson()])
def test_hidden_markov_model_round_trips(tmp_path, family):
    model = jaxem.HiddenMarkovModel(family, 2)
    X = np.array([[0, 4], [1, 7], [5, 0], [3, 2], [2, 2], [6, 1]] * 4, float).reshape(2, 12, 2)
    prior = jaxem.default_prior(model, X)
    params = jaxem.fit(model, X, model.init(jax.random.key(0), X), prior=prior).params
    jaxem.save(tmp_path / "h.npz", model, params, prior)
    loaded_model, loaded, loaded_prior = jaxem.load(tmp_path / "h.npz")
    assert loaded_model == model and isinstance(loaded, jaxem.HMMParams)
    for a, b in zip(
        jax.tree.leaves((loaded, loaded_prior)), jax.tree.leaves((params, prior)), strict=True
    ):
        np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_array_equal(model.predict(loaded, X), model.predict(params, X))


def test_save_refuses_a_batch_that_load_would_refuse(tmp_path, faithful):
    model = jaxem.GaussianMixture(2)
    batch = jaxem.fit_batch(model, jax.random.key(0), np.stack([faithful, faithful[::-1]]))
    with pytest.raises(ValueError, match=r"a batch of 2 fits.*save one fit at a time"):
        jaxem.save(tmp_path / "b.npz", model, batch.params)
    assert not (tmp_path / "b.npz").exists()
    one = jax.tree.map(lambda a: a[1], batch.params)
    jaxem.save(tmp_path / "one.npz", model, one, columns=["eruptions", "waiting"])
    loaded, params, _ = jaxem.load(tmp_path / "one.npz")
    assert loaded == model and jaxem.io.load_columns(tmp_path / "one.npz") == [
        "eruptions",
        "waiting",
    ]
    np.testing.assert_array_equal(params.means, one.means)
    with pytest.raises(ValueError, match="columns must name the model's 2 features"):
        jaxem.save(tmp_path / "c.npz", model, one, columns=["a"])
