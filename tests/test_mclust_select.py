"""`jaxem.select` over mclust's fourteen covariance models, against R's mclust (issue 32).

The references come from ``tests/data/mclust/make_select.R`` (mclust 6.0.0): ``mclustBIC(X,
G = 1:9)``, Mclust's default grid, on faithful, iris, diabetes and banknote, and R's printout of
each table. mclust's BIC is jaxem's negated. Target: no cell worse than mclust's by more than 2
BIC units, and the best cell no worse than mclust's best.
"""

import csv
import math
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxem
from jaxem.model_selection import SelectResult

DATA = Path(__file__).parent / "data" / "mclust"
DATA_SETS = ["faithful", "iris", "diabetes", "banknote"]


def reference(name: str, prior: str = "none") -> dict:
    """``{model: {G: jaxem's sign of mclust's BIC, NaN where mclust finds it singular}}``."""
    table: dict = {}
    with open(DATA / "select.csv") as f:
        for r in csv.DictReader(f):
            if r["dataset"] == name and r["prior"] == prior:
                value = math.nan if r["bic"] == "NA" else -float(r["bic"])
                table.setdefault(r["model"], {})[int(r["G"])] = value
    return table


def load(name: str) -> np.ndarray:
    return np.loadtxt(DATA / f"{name}.csv", delimiter=",", skiprows=1)


def test_the_default_grid_is_mclusts():
    """Fourteen models in mclust's order; with a prior, the ten that mclust fits with one."""
    from jaxem.model_selection import default_covariance_types

    assert list(reference("iris")) == list(jaxem.gaussian_mixture.MCLUST_MODELS)
    assert default_covariance_types() == jaxem.gaussian_mixture.MCLUST_MODELS
    assert list(default_covariance_types("default")) == list(reference("iris", "default"))


@pytest.mark.parametrize("name", DATA_SETS)
def test_the_table_prints_as_mclust_prints_it(name):
    """mclust's own numbers in a `SelectResult` print exactly as R printed them: the column
    blocks that fit 80 characters, R's digits, NA for singular cells, the top three."""
    table = reference(name)
    singular = tuple((m, g) for m, column in table.items() for g, v in column.items() if v != v)
    result = SelectResult("bic", table, None, None, None, singular, None)
    expected = (DATA / f"print_{name}.txt").read_text().rstrip("\n")
    assert result.mclust() == expected


# cells where select's default starts (its one k-means start here, for time; 32 by default)
# end more than 2 BIC units worse than mclust's: jaxem's BIC minus mclust's, measured. With
# select's default 32 starts no cell of the four data sets is (docs/mclust_comparison.md).
FEWER_STARTS = {("iris", "none", "VVE", 5): 11.0}


@pytest.mark.parametrize(
    "name,prior,n_init", [("faithful", "none", 0), ("iris", "none", 1), ("faithful", "default", 1)]
)
def test_select_over_mclusts_grid_matches_mclust_cell_by_cell(name, prior, n_init):
    """The default grid, fourteen models (ten with mclust's default prior, as
    ``Mclust(X, prior = priorControl())``) and K = 1..9, from mclust's hierarchical start alone
    (``n_init=0``, as ``Mclust``) or with one k-means start per cell beside it (on iris mclust's
    VVE M-step, which does not maximise, leads its EM from that start elsewhere: VVE with K = 5,
    34 units apart): every cell no worse than mclust's by more than 2 BIC units, NaN
    (singular) only where mclust's is NA, and the best cell at least as good as mclust's. (With
    the prior a start is chosen by its posterior, and on iris jaxem's higher posterior modes
    have lower likelihoods in some cells, VEV and VVV with K = 3 by 10 BIC units: see
    tests/test_mclust_reference.py.)"""
    chosen = None if prior == "none" else "default"
    result = jaxem.select(load(name), key=jax.random.key(0), n_init=n_init, prior=chosen)
    mclust = reference(name, prior)
    assert list(result.table) == list(mclust)
    for model, column in mclust.items():
        for g, theirs in column.items():
            ours = result.table[model][g]
            if math.isnan(theirs):
                continue
            assert not math.isnan(ours), f"{model} G={g}: singular here, {theirs:.2f} in mclust"
            allowed = FEWER_STARTS.get((name, prior, model, g), 0.0) + 2.0
            assert ours <= theirs + allowed, f"{model} G={g}: {ours:.2f} vs mclust {theirs:.2f}"
    best = min(v for column in mclust.values() for v in column.values() if not math.isnan(v))
    ours = result.table[result.column][result.model.n_components]
    assert ours <= best + 1e-6


def test_select_by_icl_chooses_mclusts_model():
    """``criterion="icl"`` over the default grid on Old Faithful, from mclust's start alone, as
    ``mclustICL(X, G = 1:9)`` (``make_icl.R``): the same best model (VVE, 2 components), its
    ICL no worse than mclust's, and with one component (no entropy) mclust's BIC. Cells
    elsewhere differ by a few units: mclust stops EM at a relative change of 1e-5, where the
    classification is not yet that of the maximum."""
    mclust: dict = {}
    with open(DATA / "icl.csv") as f:
        for r in csv.DictReader(f):
            if r["dataset"] == "faithful" and r["icl"] != "NA":
                mclust[(r["model"], int(r["G"]))] = -float(r["icl"])
    X = load("faithful")
    result = jaxem.select(X, key=jax.random.key(0), n_init=0, criterion="icl")
    (best, theirs), *_ = sorted(mclust.items(), key=lambda item: item[1])
    assert (result.column, result.model.n_components) == best
    assert result.table[best[0]][best[1]] <= theirs + 1e-6
    bic = reference("faithful")
    for model, column in result.table.items():
        np.testing.assert_allclose(column[1], bic[model][1], rtol=1e-8, err_msg=model)


def test_degenerate_data_is_flagged_as_mclust_flags_it():
    """Two clusters and four copies of one point (``make_select.R``), K = 1..5. mclust's one
    (hierarchical) start per cell puts the copies in a component of their own, which collapses:
    NA. `select` reports a cell singular (NaN) only when its best start collapsed too, so its
    singular cells are among mclust's NA ones and are never NaN otherwise; where another start
    gives a regular fit (K = 3 here: the copies shared with a cluster; and the equal-volume
    models EVI, EVE, EVV, whose component on the copies keeps the common volume and so a
    bounded likelihood), it reports that fit. Every cell mclust fits is no worse here by more
    than 2 BIC units."""
    X = np.loadtxt(DATA / "degenerate.csv", delimiter=",", skiprows=1)
    result = jaxem.select(X, range(1, 6), key=jax.random.key(0), n_init=1)
    mclust = reference("degenerate")
    singular = set(result.singular)
    for model, column in mclust.items():
        for g, theirs in column.items():
            ours = result.table[model][g]
            if (model, g) in singular:
                assert math.isnan(ours) and math.isnan(theirs), (model, g, theirs)
            else:
                assert not math.isnan(ours), (model, g)
                assert math.isnan(theirs) or ours <= theirs + 2.0, (model, g, ours, theirs)
    flagged = {("VVV", 4), ("VVV", 5), ("VEI", 4), ("VEV", 5), ("VII", 4)}
    assert flagged <= singular
