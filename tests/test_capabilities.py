"""The contract's capabilities (issue 31): every shipped model and family satisfies the Protocols
it claims, a model without a core method is refused by name before anything compiles, and no
module but `jaxem.capabilities` probes a model or a family."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxem
from jaxem import capabilities, families
from jaxem.base import EMModel, Family

FAMILIES = [
    families.Gaussian("full"),
    families.Gaussian("diag", missing=True),
    families.Gaussian("tied"),
    families.Bernoulli(),
    families.Categorical(3),
    families.Poisson(missing=True),
]
MIXTURE_CAPABILITIES = (
    capabilities.HasPrior,
    capabilities.Validates,
    capabilities.Prepares,
    capabilities.SizesBlocks,
    capabilities.Extrapolates,
    capabilities.ZeroesUninformative,
    capabilities.ChecksPrior,
    capabilities.HasDefaultPrior,
)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.describe())
def test_shipped_families_and_their_models_satisfy_the_protocols(family):
    assert isinstance(family, Family) and isinstance(family, capabilities.Extrapolates)
    for model in (jaxem.Mixture(family, 2), jaxem.HiddenMarkovModel(family, 2)):
        assert isinstance(model, EMModel)
        for protocol in MIXTURE_CAPABILITIES:
            # a hidden Markov model neither sizes row blocks (its E-step is one block) nor
            # zeroes weights (a step with nothing observed still moves the chain)
            hmm_lacks = (capabilities.SizesBlocks, capabilities.ZeroesUninformative)
            expected = not (isinstance(model, jaxem.HiddenMarkovModel) and protocol in hmm_lacks)
            assert isinstance(model, protocol) == expected, (model, protocol)
        can = capabilities.of_model(model)
        assert can.ignores_zero_weights and can.missing == bool(family.missing)
    hmm = capabilities.of_model(jaxem.HiddenMarkovModel(family, 2))
    assert hmm.data_ndim == 3 and hmm.weights_shape((4, 5, 2)) == (4, 5)
    resolved = capabilities.of_family(family)
    gaussian = isinstance(family, families.Gaussian)
    assert resolved.shares_parameters == (gaussian and family.covariance_type == "tied")
    assert (resolved.collapsed is not None) == gaussian
    assert (resolved.start_prior is not None) == (not gaussian)


def test_which_families_take_nan_components_for_no_iterate():
    """Gaussians and multivariate t's, of every structure, take NaN components for no iterate
    in ``estimate_from`` (tests/test_covariance_models.py checks it); factor analysers, whose
    M-step needs the iterate, do not; families without ``estimate_from`` need not say."""
    for name in jaxem.gaussian_mixture.MCLUST_MODELS:
        for family in (families.Gaussian(name), families.StudentT(name)):
            resolved = capabilities.of_family(family)
            assert resolved.estimate_from is not None and resolved.starts_without_iterate
    factor_analysers = capabilities.of_family(families.FactorAnalyser(2))
    assert factor_analysers.estimate_from is not None
    assert not factor_analysers.starts_without_iterate
    poisson = capabilities.of_family(families.Poisson())
    assert poisson.estimate_from is None and not poisson.starts_without_iterate


def test_gaussian_mixture_and_kmeans_satisfy_theirs():
    gm = jaxem.GaussianMixture(2, "diag")
    assert isinstance(gm, EMModel) and all(isinstance(gm, p) for p in MIXTURE_CAPABILITIES)
    km = jaxem.KMeans(2)
    assert isinstance(km, EMModel) and isinstance(km, capabilities.Validates)
    assert not isinstance(km, capabilities.HasPrior)
    assert not capabilities.of_model(km).extrapolates


class NoMStep:
    def e_step(self, params, X, weights):
        return X.sum(), 0.0

    def init(self, key, X, weights=None):
        return 0.0


def test_a_model_without_a_core_method_is_refused_by_name():
    X = np.ones((5, 1))
    for call in (
        lambda: jaxem.fit(NoMStep(), X, 0.0),
        lambda: jaxem.fit_batch(NoMStep(), jax.random.key(0), X[None]),
        lambda: jaxem.fit_restarts(NoMStep(), jax.random.key(0), X),
        lambda: jaxem.em_algorithm(NoMStep(), X, 0.0),
    ):
        with pytest.raises(TypeError, match="NoMStep is not an EM model: it has no m_step"):
            call()
    assert not isinstance(NoMStep(), EMModel)


def test_only_the_capabilities_module_probes_models_and_families():
    root = Path(jaxem.__file__).parent
    # a probe: hasattr, or getattr with a default, on a model or a family
    target = r"\((self\.)?(model|family|mixture\.family),"
    probe = re.compile(rf"\bhasattr{target}|\bgetattr{target}\s*[^,()]+,")
    found = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path.name != "capabilities.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert not found, found
