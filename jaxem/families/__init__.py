"""Component families: the distribution of one observation given its latent state, shared by
mixtures (`jaxem.Mixture`) and hidden Markov models. The contract is `jaxem.base.Family`; the
formulas are in ``docs/families.md``.

- `Gaussian`: multivariate normal, full, diag, spherical or tied covariances;
- `Bernoulli`: binary columns, independent given the component;
- `Categorical`: categorical columns, independent given the component (latent class analysis);
- `Poisson`: count columns, independent given the component;
- `StudentT`: multivariate t, the scale matrix in any Gaussian covariance structure;
- `FactorAnalyser`: Gaussian, covariance $\\Lambda\\Lambda^\\top + \\Psi$ with q factors (pgmm).

`register` makes a family of one's own known to `jaxem.save`/`jaxem.load`
(`jaxem.families.registry`).
"""

from jaxem.families.bernoulli import Bernoulli, BernoulliParams, BernoulliStats, BetaPrior
from jaxem.families.categorical import (
    Categorical,
    CategoricalParams,
    CategoricalStats,
    DirichletPrior,
)
from jaxem.families.factor_analyser import FactorAnalyser, FactorParams, FactorPrior
from jaxem.families.gaussian import Gaussian, GaussianParams, GaussianPrior, GaussianStats
from jaxem.families.poisson import GammaPrior, Poisson, PoissonParams, PoissonStats
from jaxem.families.registry import register
from jaxem.families.student_t import StudentT, StudentTParams, StudentTStats

for _family in (Gaussian, Bernoulli, Categorical, Poisson, StudentT, FactorAnalyser):
    register(_family)

__all__ = [
    "Bernoulli",
    "BernoulliParams",
    "BernoulliStats",
    "BetaPrior",
    "Categorical",
    "CategoricalParams",
    "CategoricalStats",
    "DirichletPrior",
    "FactorAnalyser",
    "FactorParams",
    "FactorPrior",
    "GammaPrior",
    "Gaussian",
    "GaussianParams",
    "GaussianPrior",
    "GaussianStats",
    "Poisson",
    "PoissonParams",
    "PoissonStats",
    "StudentT",
    "StudentTParams",
    "StudentTStats",
    "register",
]
