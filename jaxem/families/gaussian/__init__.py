"""The Gaussian family (`.family`) and one module per covariance structure (`.structure` their
interface): `.full`, `.diag`, `.spherical`, `.tied` (mclust's VVV, VVI, VII, EEE) and mclust's
`.eii`, `.eei`, `.evi`, `.eev`, `.evv` (closed-form M-steps), `.vei`, `.vee`, `.vev` (iterative,
`.volumes`), `.eve`, `.vve` (iterative, `.orientation`): all fourteen."""

from jaxem.families.gaussian import eei, eev, eii, eve, evi, evv, vee, vei, vev, vve  # noqa: F401
from jaxem.families.gaussian.family import (
    COVARIANCE_TYPES,
    MCLUST_MODELS,
    Gaussian,
    GaussianData,
    GaussianParams,
    GaussianPrior,
    GaussianStats,
)

__all__ = [
    "COVARIANCE_TYPES",
    "Gaussian",
    "GaussianData",
    "GaussianParams",
    "GaussianPrior",
    "GaussianStats",
    "MCLUST_MODELS",
]
