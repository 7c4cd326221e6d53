"""Gaussian mixtures: the model (:mod:`.model`) and one module per covariance type
(:mod:`.full`, :mod:`.diag`, :mod:`.spherical`, :mod:`.tied`)."""

from jaxem.gaussian_mixture.model import (
    COVARIANCE_TYPES,
    GaussianMixture,
    GaussianMixtureParams,
    GaussianMixtureStats,
)

__all__ = ["COVARIANCE_TYPES", "GaussianMixture", "GaussianMixtureParams", "GaussianMixtureStats"]
