"""A fixed set of fits, float64, recorded before the contract of issue 31 is rebuilt: every
family, every covariance type, MLE and MAP, missing values, hidden Markov models, SQUAREM,
fit_batch, fit_restarts, k-means and select tables. The rebuilt code must give the same numbers
to 1e-12 relative (tests/test_contract_reference.py).

    python tests/contract_fits.py   # writes tests/data/contract_reference.npz

Run it once, at the code before the change, and commit the file it writes; never re-record
with the code under test (that would compare the code with itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

import jaxem
from jaxem import families

REFERENCE = Path(__file__).with_name("data") / "contract_reference.npz"
N_ITER = 15


def _data() -> dict:
    rng = np.random.default_rng(31)
    gaussian = np.concatenate(
        [rng.normal([0, 0, 0], 1.0, (70, 3)), rng.normal([3, 2, -1], [0.5, 1.0, 1.5], (50, 3))]
    )
    incomplete = gaussian.copy()
    incomplete[rng.random(incomplete.shape) < 0.2] = np.nan
    incomplete[7] = np.nan  # a row with nothing observed
    binary = (rng.random((120, 4)) < np.where(np.arange(120)[:, None] < 60, 0.2, 0.7)).astype(float)
    codes = np.stack(
        [rng.integers(0, 3, 120), rng.integers(0, 4, 120), (rng.random(120) < 0.3).astype(int)],
        axis=1,
    ).astype(float)
    counts = rng.poisson(np.where(np.arange(120)[:, None] < 60, 1.5, 6.0), (120, 2)).astype(float)
    return dict(gaussian=gaussian, incomplete=incomplete, binary=binary, codes=codes, counts=counts)


def _models(data: dict) -> dict:
    """name -> (model, X, weights or None); the mixtures' and HMMs' families."""
    out = {}
    for cov in ("full", "diag", "spherical", "tied"):
        out[f"gaussian-{cov}"] = (jaxem.GaussianMixture(2, cov), data["gaussian"])
        out[f"gaussian-{cov}-missing"] = (
            jaxem.GaussianMixture(2, cov, missing=True),
            data["incomplete"],
        )
    out["bernoulli"] = (jaxem.Mixture(families.Bernoulli(), 2), data["binary"])
    out["categorical"] = (jaxem.Mixture(families.Categorical((3, 4, 2)), 2), data["codes"])
    out["poisson"] = (jaxem.Mixture(families.Poisson(), 2), data["counts"])
    binary_missing = data["binary"].copy()
    binary_missing[::7, 1] = np.nan
    out["bernoulli-missing"] = (jaxem.Mixture(families.Bernoulli(missing=True), 2), binary_missing)
    out["hmm-gaussian-diag"] = (
        jaxem.HiddenMarkovModel(families.Gaussian("diag"), 2),
        data["gaussian"].reshape(4, 30, 3),
    )
    out["hmm-poisson"] = (
        jaxem.HiddenMarkovModel(families.Poisson(), 2),
        data["counts"].reshape(3, 40, 2),
    )
    out["hmm-categorical"] = (
        jaxem.HiddenMarkovModel(families.Categorical((3, 4, 2)), 2),
        data["codes"].reshape(2, 60, 3),
    )
    return out


def record() -> dict:
    """``{key: array}`` of every fit's numbers."""
    jax.config.update("jax_enable_x64", True)
    data = _data()
    out = {}

    def put(name, result):
        out[f"{name}/objective"] = np.asarray(result.objective)
        out[f"{name}/n_iter"] = np.asarray(result.n_iter)
        for i, leaf in enumerate(jax.tree.leaves(result.params)):
            out[f"{name}/params/{i}"] = np.asarray(leaf)

    for name, (model, X) in _models(data).items():
        start = model.init(jax.random.key(0), X)
        for i, leaf in enumerate(jax.tree.leaves(start)):
            out[f"{name}/start/{i}"] = np.asarray(leaf)
        put(f"{name}/mle", jaxem.fit(model, X, start, tol=0.0, max_iter=N_ITER))
        prior = jaxem.default_prior(model, X)
        put(f"{name}/map", jaxem.fit(model, X, start, prior=prior, tol=0.0, max_iter=N_ITER))
        if name in ("gaussian-full", "poisson", "hmm-poisson", "gaussian-diag-missing"):
            put(
                f"{name}/squarem",
                jaxem.fit(model, X, start, tol=0.0, max_iter=5, accelerate="squarem"),
            )
    gm = jaxem.GaussianMixture(2, "diag")
    batch = np.stack([data["gaussian"][:60], data["gaussian"][60:], data["gaussian"][::2]])
    put("fit_batch", jaxem.fit_batch(gm, jax.random.key(1), batch, tol=1e-8))
    restarts = jaxem.fit_restarts(
        gm, jax.random.key(2), data["gaussian"], n_init=3, deterministic_start=False
    )
    put("fit_restarts", restarts)
    km = jaxem.KMeans(2)
    put("kmeans", jaxem.fit(km, data["gaussian"], km.init(jax.random.key(3), data["gaussian"])))
    for prior in (None, "default"):
        table = jaxem.select(
            data["gaussian"],
            range(1, 4),
            jaxem.gaussian_mixture.COVARIANCE_TYPES,
            key=jax.random.key(4),
            prior=prior,
            n_init=4,
        )
        name = f"select-{prior or 'none'}"
        out[f"{name}/table"] = np.array(
            [[table.table[t][k] for k in range(1, 4)] for t in table.table]
        )
        put(name, _SelectAsFit(table))
    return out


class _SelectAsFit:
    """A select result seen as a fit: its best model's parameters and objective."""

    def __init__(self, result):
        self.params, self.objective, self.n_iter = result.params, result.objective, 0


if __name__ == "__main__":
    if REFERENCE.exists() and "--overwrite" not in sys.argv:
        sys.exit(f"{REFERENCE} exists: it is the record of the code before the change")
    values = record()
    np.savez(REFERENCE, **values)
    print(f"{len(values)} arrays -> {REFERENCE}")
