"""jaxem: Expectation-Maximization in JAX.

The public API:

- :func:`fit`: the generic EM driver, for any model that provides ``e_step``/``m_step``;
- :class:`FitResult`: what ``fit`` returns (a pytree);
- :class:`EMModel`: the contract a model provides;
- :class:`GaussianMixture` and :class:`GaussianMixtureParams`: Gaussian mixtures with full,
  diag, spherical or tied covariances;
- :class:`GaussianMixturePrior` and :func:`default_prior`: conjugate priors, for MAP-EM
  (exact posterior modes);
- :func:`load_faithful`: the Old Faithful data bundled with the package.
"""

from jaxem.base import EMModel, FitResult
from jaxem.datasets import load_faithful
from jaxem.em import fit
from jaxem.gaussian_mixture import GaussianMixture, GaussianMixtureParams
from jaxem.priors import GaussianMixturePrior, default_prior

__version__ = "0.1.0"

__all__ = [
    "EMModel",
    "FitResult",
    "GaussianMixture",
    "GaussianMixtureParams",
    "GaussianMixturePrior",
    "default_prior",
    "fit",
    "load_faithful",
]
