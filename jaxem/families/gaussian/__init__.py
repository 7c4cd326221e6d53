"""The Gaussian family (`.family`) and one module per covariance type (`.full`, `.diag`,
`.spherical`, `.tied`)."""

from jaxem.families.gaussian.family import (
    COVARIANCE_TYPES,
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
]
