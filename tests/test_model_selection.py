"""BIC, AIC and ICL against scikit-learn, and the grid search."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import jaxem
from jaxem.families import Poisson
from jaxem.model_selection import aic, better, bic, icl, select


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_criteria_equal_sklearn(faithful, covariance_type):
    sk = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(faithful)
    model = jaxem.GaussianMixture(3, covariance_type)
    params = jaxem.GaussianMixtureParams(sk.weights_, sk.means_, sk.covariances_)
    np.testing.assert_allclose(bic(model, params, faithful), sk.bic(faithful), rtol=1e-12)
    np.testing.assert_allclose(aic(model, params, faithful), sk.aic(faithful), rtol=1e-12)
    entropy = -2 * np.sum(np.log(np.max(sk.predict_proba(faithful), axis=1)))
    np.testing.assert_allclose(icl(model, params, faithful), sk.bic(faithful) + entropy, rtol=1e-10)


def test_weights_count_as_repeated_rows(faithful):
    model = jaxem.GaussianMixture(2, "diag")
    params = jaxem.fit(model, faithful, model.init(jax.random.key(0), faithful)).params
    w = np.random.default_rng(0).integers(0, 3, len(faithful)).astype(float)
    repeated = np.repeat(faithful, w.astype(int), axis=0)
    for criterion in (bic, aic, icl):
        np.testing.assert_allclose(
            criterion(model, params, faithful, w), criterion(model, params, repeated), rtol=1e-12
        )


def test_select_ranks_the_grid(faithful):
    result = select(
        faithful, range(1, 3), ("full", "tied"), key=jax.random.key(0), n_init=2, tol=1e-6
    )
    values = {(t, k): v for t, col in result.table.items() for k, v in col.items()}
    assert len(values) == 4
    best = min(values, key=values.get)
    assert (result.model.covariance_type, result.model.n_components) == best
    assert result.model.n_components >= 2  # Old Faithful has two clusters at least
    np.testing.assert_allclose(values[best], bic(result.model, result.params, faithful), rtol=1e-12)
    text = repr(result)
    assert "BIC (lower is better" in text and "*" in text and "tied" in text
    # with mclust's default prior the criteria use the MAP log-likelihood
    with_prior = select(faithful, [2], ("full",), key=jax.random.key(0), prior="default", n_init=2)
    assert np.isfinite(with_prior.table["full"][2])


def test_select_bad_input(faithful):
    with pytest.raises(ValueError, match="criterion"):
        select(faithful, [2], key=jax.random.key(0), criterion="bicc")
    with pytest.raises(TypeError, match="prior"):
        select(faithful, [2], key=jax.random.key(0), prior=3.0)
    with pytest.raises(ValueError, match="n_init must be an integer >= 0"):
        select(faithful, [2], key=jax.random.key(0), n_init=-1)
    with pytest.raises(ValueError, match="n_init must be >= 1 with families"):
        select(faithful, [2], key=jax.random.key(0), n_init=0, families=Poisson())


def test_a_component_on_tied_points_is_reported_singular():
    """20 copies of one point far from 100 others: with K=2 one component sits on the copies,
    its variance is reg_covar alone, and its BIC would be an artefact."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (20, 1))])
    result = select(X, [1, 2], ("spherical",), key=jax.random.key(0), n_init=2)
    assert result.singular == (("spherical", 2),)
    assert np.isnan(result.table["spherical"][2])
    assert result.model.n_components == 1
    assert "singular" in repr(result)


def test_a_long_session_of_selects_keeps_memory_mappings_bounded():
    """Twenty selects on data sets of different shapes in one process (a notebook session): the
    memory mappings after the last stay within twice those after the first. JAX keeps compiled
    programs, and the kernel's limit of about 65,530 mappings per process once ended such a
    session (issue 17): now the grid is one program, shared by nearby data sizes."""
    script = Path(__file__).parent / "select_session.py"
    done = subprocess.run(
        [sys.executable, str(script), "20"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(counts) == 20
    assert counts[-1] <= 2 * counts[0], counts


def test_cells_equal_to_rounding_go_to_the_first_in_the_table():
    """With one component the eight structures with full covariance matrices are one model:
    mclust's table (iris, ``Mclust(iris[, 1:4], G = 1)``) gives them the same BIC, 829.978154,
    and lists EEE first. In float32 their fits differ by rounding alone, which must not choose
    among them: values within the data's precision are tied, and the first in the table's
    order wins."""
    X = np.loadtxt(
        Path(__file__).parent / "data" / "mclust" / "iris.csv", delimiter=",", skiprows=1
    )
    full = ("EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
    result = select(X.astype(np.float32), [1], full, key=jax.random.key(0), n_init=0)
    np.testing.assert_allclose([result.table[m][1] for m in full], 829.978154, rtol=1e-6)
    assert result.column == "EEE"
    # the rule itself: ties within 16 units of the precision, relative
    assert not better(829.97766, 829.97815, np.float32)  # float32's K = 1 spread on iris
    assert better(829.9, 829.97815, np.float32)
    assert better(829.97766, 829.97815, np.float64)
