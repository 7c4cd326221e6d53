"""jaxem: Expectation-Maximization in JAX.

The public API:

- `fit`: the generic EM driver, for any model that provides ``e_step``/``m_step``;
  `em_algorithm`: the same EM as ``init``/``step``/``converged`` functions over an `EMState`,
  for a loop of one's own (see `jaxem.algorithm`); `em_step`: one EM iteration from params;
- `FitResult`: what ``fit`` returns (a pytree);
- `EMModel`: the contract a model provides; `Family`: the contract of a component family;
- `Mixture`, `MixtureParams`, `MixturePrior`: a mixture over any family of
  `jaxem.families` (`Gaussian`, `Bernoulli`, `Categorical`, `Poisson`);
- `fit_batch` (many datasets in one compiled call), `pad` (ragged datasets) and
  `fit_restarts` (the best of several starts);
- `GaussianMixture` and `GaussianMixtureParams`: Gaussian mixtures with full,
  diag, spherical or tied covariances;
- `bic`, `aic`, `icl` (lower is better) and `select` (a grid of
  mixtures ranked by one of them);
- `HiddenMarkovModel`, `HMMParams`, `HMMPrior`, `HMMStats`: hidden Markov models over any
  family, fitted by Baum-Welch on the same driver (sequences padded with `pad`);
- `KMeans` and `KMeansParams`: k-means as hard EM (Lloyd's algorithm);
- `GaussianMixturePrior` and `default_prior` (every model's weak default): conjugate priors,
  for MAP-EM (exact posterior modes);
- `shard`: data split over devices along its first axis, which `fit`,
  `fit_batch` and ``init`` then fit data-parallel (see `jaxem.sharding`; large
  data is also visited in row blocks, see `jaxem.chunking`);
- `save` and `load`: fitted models as ``.npz`` files, without pickle;
- `load_faithful` and `load_anes96`: the Old Faithful data and a categorical survey (the
  1996 American National Election Study) bundled with the package;
- `jaxem.crosscheck`: the same models in NumPyro, to check EM's estimates and objective
  (imported on first use: it loads NumPyro);
- `jaxem.sklearn` (``from jaxem.sklearn import GaussianMixture``): a scikit-learn
  estimator (import it explicitly: it needs scikit-learn);
- `jaxem.cli`: the ``jaxem`` command line (fit, select, predict, demo);
- `enable_compilation_cache`: keep compiled programs on disk across processes (an explicit
  switch; importing jaxem changes no JAX setting);
- `jaxem.sources` (data in row blocks: a ``.npy``, CSV or Parquet read in
  chunks), which `fit` takes in place of an array (`jaxem.streaming`: exact EM, one pass per
  iteration), and `jaxem.online` (stepwise online EM, one minibatch at a time);
- `jaxem.grid`: every K of a mixture and every restart in one compiled program (what `select`
  runs on).
"""

from jaxem import families, online, sources, streaming
from jaxem.algorithm import EMAlgorithm, EMState
from jaxem.base import EMModel, Family, FitResult
from jaxem.batch import RestartsResult, best_start, fit_batch, fit_restarts
from jaxem.compilation_cache import enable_compilation_cache
from jaxem.datasets import load_anes96, load_faithful
from jaxem.em import em_algorithm, em_step, fit
from jaxem.gaussian_mixture import GaussianMixture, GaussianMixtureParams, GaussianMixturePrior
from jaxem.hmm import HiddenMarkovModel, HMMParams, HMMPrior, HMMStats
from jaxem.io import load, save
from jaxem.kmeans import KMeans, KMeansParams
from jaxem.mixture import Mixture, MixtureParams, MixturePrior, MixtureStats
from jaxem.model_selection import SelectResult, aic, bic, icl, select
from jaxem.padding import pad
from jaxem.priors import default_prior
from jaxem.resampling import BootstrapResult, LikelihoodRatioTest, bootstrap, bootstrap_lrt
from jaxem.sharding import shard
from jaxem.uncertainty import StandardErrors, standard_errors

__version__ = "0.1.0"


def __getattr__(name: str):
    # NumPyro (and funsor) load only when asked for: `import jaxem` stays light
    if name == "crosscheck":
        import importlib

        return importlib.import_module("jaxem.crosscheck")
    if name == "NumPyroModel":
        from jaxem.numpyro_model import NumPyroModel

        return NumPyroModel
    raise AttributeError(f"module 'jaxem' has no attribute {name!r}")


__all__ = [
    "enable_compilation_cache",
    "EMModel",
    "Family",
    "Mixture",
    "MixtureParams",
    "MixturePrior",
    "MixtureStats",
    "NumPyroModel",
    "best_start",
    "em_algorithm",
    "em_step",
    "EMAlgorithm",
    "EMState",
    "families",
    "online",
    "sources",
    "streaming",
    "FitResult",
    "GaussianMixture",
    "GaussianMixtureParams",
    "GaussianMixturePrior",
    "HiddenMarkovModel",
    "HMMParams",
    "HMMPrior",
    "HMMStats",
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
    "load_anes96",
    "load_faithful",
    "StandardErrors",
    "standard_errors",
    "bootstrap",
    "bootstrap_lrt",
    "BootstrapResult",
    "LikelihoodRatioTest",
]
