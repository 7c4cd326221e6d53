"""A family written outside jaxem (exponential components: the worked example of
docs/families.md) with no change to any jaxem file: it fits (against a NumPy EM, and for K = 1
the closed form), batch-fits, and saves and loads once registered; unregistered, save says how
to register it, and SQUAREM what it lacks; it describes itself in NumPyro, and
`jaxem.crosscheck` finds NumPyro's maximum of its likelihood where EM's is; and `jaxem.select`
ranks its mixtures over K."""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxem


class RateParams(NamedTuple):
    rates: jax.Array  # (K, D)


@dataclasses.dataclass(frozen=True)
class Exponential:
    """Positive columns, independent exponentials given the component (maximum likelihood)."""

    params_type: ClassVar[type] = RateParams
    prior_type: ClassVar[type] = None

    def check_data(self, X, name="X"):
        return jnp.asarray(X, float)

    def prepare(self, X, weights):
        return X.T  # (D, N)

    def log_likelihoods(self, params, data):
        return jnp.sum(jnp.log(params.rates), axis=1)[:, None] - params.rates @ data

    def stats(self, data, wr, params=None):
        return data @ wr.T  # (D, K): sums of x per component

    def estimate(self, stats, counts, prior=None):
        # an empty component (a switched-off one in jaxem.select) takes the pooled rate
        pooled = jnp.sum(counts) / jnp.sum(stats, axis=1)
        return RateParams(jnp.where(counts[:, None] > 0, counts[:, None] / stats.T, pooled))

    def check_params_for(self, params, n_components, n_features, dtype, name="params"):
        return RateParams(jnp.asarray(params.rates, dtype))

    def init_points(self, X):
        return X

    def bytes_per_sample_for(self, n_features, n_components, itemsize):
        return itemsize * (n_features + 4 * n_components)

    def n_parameters_for(self, n_components, n_features):
        return n_components * n_features

    def describe(self):  # its name in messages and jaxem.select's table
        return "Exponential"

    # for jaxem.crosscheck: the components reordered (to match NumPyro's), and the family in
    # NumPyro (crosscheck passes numpyro.sample and numpyro.distributions in)
    def permute(self, params, order):
        return RateParams(jnp.take(params.rates, jnp.asarray(order), axis=-2))

    def numpyro_components(self, dist, params):
        return dist.Exponential(params.rates).to_event(1)  # batch (K,), event (D,)

    def numpyro_params(self, sample, dist, prior, n_components, n_features):
        flat = dist.ImproperUniform(dist.constraints.positive, (), (n_components, n_features))
        return RateParams(sample("rates", flat))


def numpy_em(X, weights, rates, n_iter):
    for _ in range(n_iter):
        log_joint = np.log(weights) + stats.expon.logpdf(X[:, None, :], scale=1 / rates).sum(-1)
        r = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1)[:, None])
        weights, rates = r.sum(0) / len(X), r.sum(0)[:, None] / (r.T @ X)
    return weights, rates


def data(seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.exponential(0.5, (60, 2)), rng.exponential(4.0, (40, 2))])


def test_fits_batch_fits_saves_and_loads(tmp_path):
    model = jaxem.Mixture(Exponential(), 2)
    with pytest.raises(TypeError, match=r"jaxem.families.register\(Exponential\)"):
        jaxem.save(tmp_path / "m.npz", model, model.init(jax.random.key(0), data(0)))
    jaxem.families.register(Exponential)

    X = data(0)
    start = model.init(jax.random.key(0), X)
    result = jaxem.fit(model, X, start, tol=0, max_iter=20)
    weights, rates = numpy_em(X, np.asarray(start.weights), np.asarray(start.components.rates), 20)
    np.testing.assert_allclose(result.params.components.rates, rates, rtol=1e-10)
    np.testing.assert_allclose(result.params.weights, weights, rtol=1e-10)

    batch = np.stack([data(1), data(2), data(3)])
    fitted = jaxem.fit_batch(model, jax.random.key(1), batch, tol=0, max_iter=15)
    for b, key in enumerate(jax.random.split(jax.random.key(1), 3)):
        begin = model.init(key, batch[b])
        w, r = numpy_em(batch[b], np.asarray(begin.weights), np.asarray(begin.components.rates), 15)
        np.testing.assert_allclose(fitted.params.components.rates[b], r, rtol=1e-10)

    jaxem.save(tmp_path / "m.npz", model, result.params)
    loaded, params, prior = jaxem.load(tmp_path / "m.npz")
    assert loaded == model and prior is None and isinstance(params.components, RateParams)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(result.params), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit


@dataclasses.dataclass(frozen=True)
class GammaTwo(Exponential):
    """Gamma components of shape 2 (rate per component and column): a density that is zero
    at 0, where its log density is -inf."""

    def log_likelihoods(self, params, data):
        log_x = jnp.sum(jnp.log(data), axis=0)[None]
        return jnp.sum(2 * jnp.log(params.rates), axis=1)[:, None] - params.rates @ data + log_x

    def estimate(self, stats, counts, prior=None):
        pooled = 2 * jnp.sum(counts) / jnp.sum(stats, axis=1)
        return RateParams(jnp.where(counts[:, None] > 0, 2 * counts[:, None] / stats.T, pooled))


def numpy_gamma_em(X, start, n_iter):
    """`GammaTwo`'s mixture EM in NumPy from ``start``: ``(weights, rates)``."""
    weights, rates = np.asarray(start.weights), np.asarray(start.components.rates)
    for _ in range(n_iter):
        log_joint = np.log(weights) + stats.gamma.logpdf(X[:, None], 2.0, scale=1 / rates).sum(-1)
        r = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1)[:, None])
        weights, rates = r.sum(0) / len(X), 2 * r.sum(0)[:, None] / (r.T @ X)
    return weights, rates


def test_rows_of_weight_zero_hold_data_the_family_supports():
    """100 rows (padded to a shared size with rows of weight zero) and rows of weight zero of
    the user's own: a family whose log density is -inf at 0 fits as NumPy's EM on the rows of
    positive weight; so does each member of a ragged batch. The padding and the rows of weight
    zero held zeros, and the fit was NaN."""
    X = data(4)
    weights = np.ones(len(X))
    weights[::7] = 0.0
    model = jaxem.Mixture(GammaTwo(), 2)
    start = model.init(jax.random.key(0), X)
    result = jaxem.fit(model, X, start, weights=weights, tol=0, max_iter=20)
    w, rates = numpy_gamma_em(X[weights > 0], start, 20)
    np.testing.assert_allclose(result.params.components.rates, rates, rtol=1e-10)
    np.testing.assert_allclose(result.params.weights, w, rtol=1e-10)

    # a ragged batch: jaxem.pad's NaN padding (weight zero) held zeros in fit_batch, NaN fits
    members = [data(5)[:70], data(6), data(7)[:40]]
    X, weights = jaxem.pad(members)
    starts = [model.init(jax.random.key(b), m) for b, m in enumerate(members)]
    fitted = jaxem.fit_batch(
        model,
        jax.random.key(0),
        X,
        weights=weights,
        init_params=jax.tree.map(lambda *a: jnp.stack(a), *starts),
        tol=0,
        max_iter=15,
    )
    for b, (member, begin) in enumerate(zip(members, starts, strict=True)):
        _, rates = numpy_gamma_em(member, begin, 15)
        np.testing.assert_allclose(fitted.params.components.rates[b], rates, rtol=1e-10)


def test_one_component_is_the_closed_form_and_squarem_names_what_is_missing():
    """K = 1 gives rate = 1 / mean; without unconstrained coordinates, SQUAREM says what is
    missing (was an AttributeError)."""
    X = data(2)
    one = jaxem.Mixture(Exponential(), 1)
    fitted = jaxem.fit(one, X, one.init(jax.random.key(0), X), max_iter=2)
    np.testing.assert_allclose(fitted.params.components.rates[0], 1 / X.mean(0), rtol=1e-12)
    model = jaxem.Mixture(Exponential(), 2)
    with pytest.raises(TypeError, match="Exponential has no unconstrain or constrain method"):
        jaxem.fit(model, X, model.init(jax.random.key(0), X), accelerate="squarem")


def test_cross_checks_against_numpyro():
    from jaxem import crosscheck

    model = jaxem.Mixture(Exponential(), 2)
    X = data(1)
    report = crosscheck.compare(model, X, None, jax.random.key(0))
    assert report.em_objective_diff < 1e-12  # EM's objective is NumPyro's log density there
    assert report.objective_diff < 1e-8  # and NumPyro's optimiser finds no higher one
    assert report.max_param_diff < 1e-4
    params = report.em.params
    by_scipy = np.sum(
        np.logaddexp.reduce(
            np.log(params.weights)
            + stats.expon.logpdf(X[:, None, :], scale=1 / params.components.rates).sum(-1),
            axis=1,
        )
    )
    np.testing.assert_allclose(crosscheck.log_joint(model, params, X), by_scipy, rtol=1e-12)


def test_select_ranks_its_mixtures_over_k():
    X = data(0)
    result = jaxem.select(
        X, range(1, 4), families=Exponential(), key=jax.random.key(0), tol=1e-12, max_iter=5000
    )
    column = result.table["Exponential"]
    n, d = X.shape
    # K = 1: the closed form, rate 1 / mean per column
    rates = 1 / X.mean(axis=0)
    loglik = np.sum(np.log(rates) - rates * X)
    np.testing.assert_allclose(column[1], -2 * loglik + d * np.log(n), rtol=1e-10)
    # the best cell is a fixed point of EM (NumPy's), its BIC from NumPy's log-likelihood
    assert result.column == "Exponential" and result.model == jaxem.Mixture(Exponential(), 2)
    weights, rates = np.asarray(result.params.weights), np.asarray(result.params.components.rates)
    again = numpy_em(X, weights, rates, 1)
    np.testing.assert_allclose(again[1], rates, rtol=1e-5)
    log_px = np.logaddexp.reduce(
        np.log(weights) + stats.expon.logpdf(X[:, None, :], scale=1 / rates).sum(-1), axis=1
    )
    p = 2 * d + 1
    np.testing.assert_allclose(column[2], -2 * log_px.sum() + p * np.log(n), rtol=1e-10)
    assert column[2] == min(column.values())
