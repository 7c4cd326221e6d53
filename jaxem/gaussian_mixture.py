"""Gaussian mixtures, $p(x) = \\sum_k \\pi_k \\mathcal{N}(x \\mid \\mu_k, \\Sigma_k)$: the
`jaxem.Mixture` of the `jaxem.families.Gaussian` family, with its parameters and prior written
flat, as scikit-learn writes them (``weights, means, covariances``).

``GaussianMixture(K, covariance_type, reg_covar)`` fits, scores and samples exactly as
``Mixture(Gaussian(covariance_type, reg_covar), K)``; only the parameter and prior types differ.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from jaxem.base import Array
from jaxem.families.gaussian import (
    COVARIANCE_TYPES,
    MCLUST_MODELS,
    Gaussian,
    GaussianParams,
    GaussianPrior,
)
from jaxem.mixture import Mixture, MixtureParams, MixturePrior


class GaussianMixtureParams(NamedTuple):
    """Parameters of a Gaussian mixture, with scikit-learn's shapes.

    Attributes:
        weights: ``(K,)``, non-negative, summing to one.
        means: ``(K, D)``.
        covariances: ``(K, D, D)`` full, ``(K, D)`` diag, ``(K,)`` spherical, ``(D, D)`` tied.
    """

    weights: Array
    means: Array
    covariances: Array


class GaussianMixturePrior(NamedTuple):
    """Hyperparameters of the conjugate prior (a pytree): $\\pi \\sim \\mathrm{Dirichlet}(\\alpha)$
    and `jaxem.families.GaussianPrior` ``(mean, kappa, dof, scale)`` for every component.

    Attributes:
        alpha: Dirichlet concentration, ``(K,)`` or a scalar; every entry >= 1 (1 is flat).
        mean: ``(D,)``, the prior mean $m$ of every component mean.
        kappa: > 0, the prior's pseudo-count for the means.
        dof: $\\nu$; > D - 1 for full and tied, > 0 for diag and spherical.
        scale: $\\Psi$; ``(D, D)`` symmetric positive definite (full, tied), ``(D,)``
            positive (diag), a positive scalar (spherical).
    """

    alpha: Any
    mean: Any
    kappa: Any
    dof: Any
    scale: Any


@dataclasses.dataclass(frozen=True)
class GaussianMixture(Mixture):
    """A mixture of ``n_components`` Gaussians (static configuration; hashable).

    Args:
        n_components: K >= 1.
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``, mclust's
            names for them (``"VVV"``, ``"VVI"``, ``"VII"``, ``"EEE"``), the name of a
            registered covariance structure, or a structure
            (`jaxem.families.gaussian.structure`); kept as the structure's name.
        reg_covar: added to the diagonal of every covariance in the maximum-likelihood M-step,
            as scikit-learn does, to keep them positive definite.
        missing: whether ``X`` may hold NaN for values missing at random (see
            `jaxem.families.Gaussian` and ``docs/missing.md``); False: NaN is an error.
    """

    family: Gaussian = dataclasses.field(init=False, repr=False, compare=False)
    n_components: int
    covariance_type: Any = "full"
    reg_covar: float = 1e-6
    missing: bool = False

    def __post_init__(self):
        super().__post_init__()
        family = Gaussian(self.covariance_type, self.reg_covar, self.missing)
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "covariance_type", family.covariance_type)

    def describe(self) -> str:
        """The model in messages and reports: ``GaussianMixture(K, 'full')``."""
        extra = ", missing=True" if self.missing else ""
        return f"GaussianMixture({self.n_components}, {self.covariance_type!r}{extra})"

    def as_mixture_params(self, params: Any) -> MixtureParams:
        if isinstance(params, MixtureParams):
            return params
        if not isinstance(params, GaussianMixtureParams):
            if not (isinstance(params, tuple) and len(params) == 3):
                raise TypeError(
                    "params must be a GaussianMixtureParams(weights, means, covariances); "
                    f"got {type(params).__name__}"
                )
            params = GaussianMixtureParams(*params)
        return MixtureParams(params.weights, GaussianParams(params.means, params.covariances))

    def from_mixture_params(self, params: MixtureParams) -> GaussianMixtureParams:
        return GaussianMixtureParams(params.weights, *params.components)

    def as_mixture_prior(self, prior: Any) -> MixturePrior:
        if isinstance(prior, MixturePrior):
            return prior
        if not isinstance(prior, GaussianMixturePrior):
            raise TypeError(
                "prior must be a GaussianMixturePrior(alpha, mean, kappa, dof, scale); "
                f"got {type(prior).__name__}"
            )
        return MixturePrior(prior.alpha, GaussianPrior(*prior[1:]))

    def from_mixture_prior(self, prior: MixturePrior) -> GaussianMixturePrior:
        return GaussianMixturePrior(prior.alpha, *prior.components)

    def _field(self, name: str) -> str:
        return name


def mixture_of(family: Any, n_components: int) -> Mixture:
    """The mixture of ``n_components`` components of ``family``: a `GaussianMixture` for a
    Gaussian family (scikit-learn's parameter shapes), else ``Mixture(family, n_components)``."""
    if isinstance(family, Gaussian):
        return GaussianMixture(
            n_components, family.covariance_type, family.reg_covar, family.missing
        )
    return Mixture(family, n_components)


__all__ = [
    "COVARIANCE_TYPES",
    "MCLUST_MODELS",
    "GaussianMixture",
    "GaussianMixtureParams",
    "GaussianMixturePrior",
    "mixture_of",
]
