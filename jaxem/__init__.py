"""jaxem: Expectation-Maximization in JAX.

The public API:

- `fit`: the generic EM driver, for any model that provides ``e_step``/``m_step``;
- `FitResult`: what ``fit`` returns (a pytree);
- `EMModel`: the contract a model provides;
- `fit_batch` (many datasets in one compiled call), `pad` (ragged datasets) and
  `fit_restarts` (the best of several starts);
- `GaussianMixture` and `GaussianMixtureParams`: Gaussian mixtures with full,
  diag, spherical or tied covariances;
- `bic`, `aic`, `icl` (lower is better) and `select` (a grid of
  mixtures ranked by one of them);
- `KMeans` and `KMeansParams`: k-means as hard EM (Lloyd's algorithm);
- `GaussianMixturePrior` and `default_prior`: conjugate priors, for MAP-EM
  (exact posterior modes);
- `shard`: data split over devices along its first axis, which `fit`,
  `fit_batch` and ``init`` then fit data-parallel (see `jaxem.sharding`; large
  data is also visited in row blocks, see `jaxem.chunking`);
- `save` and `load`: fitted models as ``.npz`` files, without pickle;
- `load_faithful`: the Old Faithful data bundled with the package;
- `jaxem.crosscheck`: the same models in NumPyro, to check EM's estimates and objective
  (imported on first use: it loads NumPyro);
- `jaxem.sklearn` (``from jaxem.sklearn import GaussianMixture``): a scikit-learn
  estimator (import it explicitly: it needs scikit-learn);
- `jaxem.cli`: the ``jaxem`` command line (fit, select, predict, demo).
"""

from jaxem.base import EMModel, FitResult
from jaxem.batch import RestartsResult, fit_batch, fit_restarts, pad
from jaxem.datasets import load_faithful
from jaxem.em import fit
from jaxem.gaussian_mixture import GaussianMixture, GaussianMixtureParams
from jaxem.io import load, save
from jaxem.kmeans import KMeans, KMeansParams
from jaxem.model_selection import SelectResult, aic, bic, icl, select
from jaxem.priors import GaussianMixturePrior, default_prior
from jaxem.sharding import shard

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "crosscheck":
        import importlib

        return importlib.import_module("jaxem.crosscheck")
    raise AttributeError(f"module 'jaxem' has no attribute {name!r}")


__all__ = [
    "EMModel",
    "FitResult",
    "GaussianMixture",
    "GaussianMixtureParams",
    "GaussianMixturePrior",
    "KMeans",
    "SelectResult",
    "aic",
    "bic",
    "icl",
    "load",
    "select",
    "KMeansParams",
    "default_prior",
    "fit",
    "fit_batch",
    "fit_restarts",
    "pad",
    "save",
    "shard",
    "RestartsResult",
    "load_faithful",
]
