"""Gaussian mixtures: the model (`.model`) and one module per covariance type
(`.full`, `.diag`, `.spherical`, `.tied`)."""

from jaxem.gaussian_mixture.model import (
    COVARIANCE_TYPES,
    GaussianMixture,
    GaussianMixtureParams,
    GaussianMixtureStats,
)

__all__ = ["COVARIANCE_TYPES", "GaussianMixture", "GaussianMixtureParams", "GaussianMixtureStats"]
