"""Covariance structures: what the Gaussian family needs to know of how its covariances are
parametrised, as one interface (`CovarianceStructure`), and the structures by name.

A structure is a small hashable object with no configuration (``Full()``, ``Diagonal()``, ...);
`jaxem.families.Gaussian` maps its ``covariance_type`` (a name, or a structure) to one at
construction and never compares names again. A structure fixes

- the **layout** of the covariances in the parameters (``shape``), their free entries
  (``n_parameters``) and every component's matrix (``matrices``);
- the **E-step**'s arithmetic: the quadratic features of the centred data (``squares``) and
  the coefficients of the Mahalanobis distances in them (``quadratic_form``), so that the
  log-densities of all components are one matrix product; the **statistics**' layout
  (``scatter``, and ``reduce`` from per-component scatters, which the missing-value E-step
  computes);
- the **M-step** from the scatter about the new means (``within``): the maximum-likelihood
  covariances (``maximise``), the posterior mode under the structure's conjugate prior
  (``map_estimate``) and its log density (``log_prior``), and what an empty component gets
  (``fill_empty``);
- the prior's layout and ranges (``scale_shape``, ``dof_minimum``, ``check_scale``) and mclust's
  default scale (``default_scale``);
- draws (``noise``), unconstrained coordinates for extrapolation (``unconstrain``,
  ``constrain``), minimal local coordinates for standard errors (``chart``), checks of
  concrete values (``is_valid``) and the collapse test of model selection (``collapsed``).

**Coupled and independent features.** A *coupled* structure's covariances are matrices; its
missing-value E-step conditions the missing coordinates on the observed ones through
``matrices``. An *independent* one is diagonal (per component and feature a variance,
``variances``), and the missing coordinates simply drop out.

**Shared parameters.** A ``shared`` structure has a parameter common to all components (a tied
covariance): its ``map_estimate`` and ``log_prior`` are told how many components are active
(`jaxem.grid` switches components off), and an empty component keeps the shared value.

**Iterative M-steps.** mclust's structures with a common shape or orientation but varying
volumes have no closed-form maximiser; their ``maximise`` runs an inner
``jax.lax.while_loop`` (alternating the factors, each update increasing the expected
complete-data log-likelihood) inside the compiled M-step, so a whole fit stays one program. The
interface is the same: ``maximise`` sees only the statistics, and must return covariances at
which that objective is at least as large as at its own starting point (a generalized EM step).

A structure written outside jaxem is registered with `register` (then its name works wherever a
covariance type does: `jaxem.GaussianMixture`, `jaxem.select`, the CLI, saved files); see
``docs/families.md``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import numpy as np

Array = jax.Array


class CovarianceStructure(abc.ABC):
    """How a Gaussian mixture's covariances are parametrised (see the module).

    Class attributes:
        name: the name users pass as ``covariance_type`` and files record.
        aliases: other names for it (mclust's three letters for scikit-learn's four words).
        coupled: whether the covariances are matrices (else per-feature variances).
        shared: whether a parameter is common to all components (a tied covariance).
        has_map: whether it has a conjugate prior (``map_estimate``, ``log_prior``); without
            one, fits are maximum likelihood only.
        shrinks_means: whether the prior's normal on the means applies; without it the means'
            prior is flat and the posterior mode's means are the clusters' averages (mclust's
            EEV prior, whose shrinkage its M-step sets to zero).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    coupled: ClassVar[bool]
    shared: ClassVar[bool] = False
    has_map: ClassVar[bool] = True
    shrinks_means: ClassVar[bool] = True

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- layout ----------------------------------------------------------------------------

    @abc.abstractmethod
    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """The shape of the covariances in the parameters."""

    @abc.abstractmethod
    def n_parameters(self, n_components: int, n_features: int) -> int:
        """The covariances' free parameters (mclust's count)."""

    @abc.abstractmethod
    def matrices(self, covariances: Array, n_features: int) -> Array:
        """The covariance matrices, ``(K, D, D)`` (a shared one: ``(D, D)``)."""

    def variances(self, covariances: Array, n_components: int, n_features: int) -> Array:
        """An independent structure's variances per component and feature, ``(K, D)``."""
        raise NotImplementedError(f"{self!r} is coupled: it has matrices, not variances")

    @abc.abstractmethod
    def permute(self, covariances: Array, order: Array) -> Array:
        """The covariances with components in ``order`` (a shared one stays)."""

    @abc.abstractmethod
    def is_valid(self, covariances: np.ndarray) -> bool:
        """Whether concrete covariances are valid (positive definite, positive variances)."""

    # -- E-step ----------------------------------------------------------------------------

    @abc.abstractmethod
    def squares(self, centred: Array) -> Array:
        """The quadratic features $q(x)$ ``(Q, N)`` of the centred data ``(D, N)``."""

    @abc.abstractmethod
    def quadratic_form(self, covariances: Array, offsets: Array) -> tuple[Array, ...]:
        """``(a, b, c, log_det)`` with $(x - o_k)^\\top \\Sigma_k^{-1} (x - o_k) = a_k \\cdot
        q(x) + b_k \\cdot x + c_k$: ``a`` ``(K, Q)``, ``b`` ``(K, D)``, ``c`` and the
        log-determinants ``(K,)``; ``offsets`` ``(K, D)``."""

    @abc.abstractmethod
    def scatter(self, moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
        """The statistics' scatter $\\sum_n wr_{kn} (x_n - o_k)(x_n - o_k)^\\top$ in this
        structure's layout, from the weighted sums of the quadratic features ``moments``
        ``(K, Q)``, of the centred data ``firsts`` ``(K, D)`` and of the weights ``counts``
        ``(K,)``, about ``offsets`` ``(K, D)``."""

    @abc.abstractmethod
    def reduce(self, scatters: Array) -> Array:
        """The statistics' scatter from every component's: ``(K, D, D)`` matrices (coupled)
        or ``(K, D)`` per-feature sums (independent)."""

    # -- M-step ----------------------------------------------------------------------------

    @abc.abstractmethod
    def within(self, scatter: Array, shifts: Array, inv_counts: Array) -> Array:
        """The scatter about the new means, $S_k - d_k d_k^\\top / N_k$, in the layout of
        ``scatter``; ``shifts`` $d_k$ ``(K, D)``, ``inv_counts`` $1 / N_k$ ``(K,)``."""

    @abc.abstractmethod
    def maximise(self, within: Array, counts: Array, reg_covar: float, spread: Array) -> Array:
        """The maximum-likelihood covariances from the scatter about the new means and the
        counts $N_k > 0$ ``(K,)``, ``reg_covar`` added to every variance, floored at the
        precision of the data (``spread`` ``(K, D)``: the new means' squared distances from
        the data's centre; `jaxem.families.gaussian.full.floors`)."""

    def maximise_from(
        self, previous: Array, within: Array, counts: Array, reg_covar: float, spread: Array
    ) -> Array:
        """`maximise` starting from the current covariances ``previous`` (this structure's
        layout): an iterative M-step warm-starts there, and must end no worse than where it
        starts (a generalized EM step). A closed form ignores ``previous``. Covariances that are
        NaN are no iterate: the result is then `maximise`'s (a driver starting EM from a
        partition's statistics passes them, `jaxem.grid`)."""
        return self.maximise(within, counts, reg_covar, spread)

    @abc.abstractmethod
    def fill_empty(self, covariances: Array, empty: Array, counts: Array) -> Array:
        """The covariances with those of the ``empty`` components ``(K,)`` replaced by the
        count-weighted average of all (a shared covariance is left as it is)."""

    @abc.abstractmethod
    def map_estimate(
        self, within: Array, deviations: Array, counts: Array, prior: Any, n_means: Any
    ) -> Array:
        """The posterior mode of the covariances under the conjugate ``prior``; ``deviations``
        $\\bar x_k - m$ ``(K, D)``; ``n_means`` the number of component means whose prior
        involves a shared covariance (the active components; ignored unless ``shared``)."""

    @abc.abstractmethod
    def log_prior(
        self, means: Array, covariances: Array, prior: Any, active: Array | None = None
    ) -> Array:
        """The conjugate prior's log density of the means and covariances; with ``active``
        ``(K,)`` booleans and a ``shared`` structure, of the active components' means only."""

    # -- the prior -------------------------------------------------------------------------

    @abc.abstractmethod
    def scale_shape(self, n_features: int) -> tuple[int, ...]:
        """The shape of the prior's scale."""

    @abc.abstractmethod
    def dof_minimum(self, n_features: int) -> int:
        """The prior's degrees of freedom must exceed this."""

    @abc.abstractmethod
    def default_scale(self, covariance: Array, shrink: Any) -> Array:
        """mclust's default scale from the data's covariance ``(D, D)`` divided by ``shrink``
        ($K^{2/D}$)."""

    @abc.abstractmethod
    def check_scale(self, scale: np.ndarray) -> str | None:
        """What is wrong with concrete prior scales (any leading axes), or None."""

    # -- the rest --------------------------------------------------------------------------

    @abc.abstractmethod
    def noise(self, key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
        """Draws of $x_n - \\mu_{z_n}$ for components ``labels`` ``(N,)``: ``(N, D)``."""

    @abc.abstractmethod
    def unconstrain(self, covariances: Array) -> Array:
        """Coordinates in which any real values are valid covariances (their shape)."""

    @abc.abstractmethod
    def constrain(self, coordinates: Array) -> Array:
        """The covariances of unconstrained ``coordinates`` (the inverse of `unconstrain`)."""

    @abc.abstractmethod
    def collapsed(
        self,
        covariances: np.ndarray,
        spread: np.ndarray,
        weights: np.ndarray,
        floor_at: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """Which components have a variance (eigenvalue) below twice the M-step's floor, in
        NumPy on concrete float64 values with any leading axes: ``spread`` ``(..., K, D)`` the
        means' squared distances from the data's centre, ``weights`` ``(..., K, 1)`` the
        mixture's, ``floor_at(scale)`` the floor of a feature of squared scale ``scale``.
        Returns booleans ``(..., K)``, or ``(..., 1)`` for a shared covariance."""

    @property
    def e_step_form(self) -> tuple:
        """What the Gaussian family's E-step, statistics and log-densities ask of this
        structure, as its class has them (functions, and the ``coupled`` flag): structures
        with equal forms (mclust's seven with full matrices, which inherit them all from one
        class) differ only in their M-step, so fits of one data set can share a compiled
        program (`jaxem.grid.shared_programs`). A structure whose E-step methods call more of
        its own methods should add them."""
        cls = type(self)
        return (
            cls.coupled, cls.shape, cls.matrices, cls.variances, cls.squares,
            cls.quadratic_form, cls.scatter, cls.reduce,
        )  # fmt: skip

    @property
    def letters(self) -> str | None:
        """mclust's name of the structure (volume, shape, orientation: E, V or I), or None."""
        for name in (self.name, *self.aliases):
            if len(name) == 3 and set(name) <= set("EVI"):
                return name
        return None

    def chart(self, at: Array, coordinates: Array) -> Array:
        """Covariances near ``at`` (this layout) from ``n_parameters(K, D)`` ``coordinates``,
        ``at`` itself at 0 (a chart, `jaxem.charts`; the structure's are in
        `jaxem.families.gaussian.covariance_charts`): what standard errors are computed in.
        Optional."""
        raise NotImplementedError(f"{self!r} has no chart (local coordinates)")

    def numpyro_prior(self, sample: Any, dist: Any, prior: Any, n_components: int) -> tuple:
        """``(means, covariances)`` drawn as NumPyro sites ``"covariances"`` and ``"means"``
        from the conjugate ``prior`` (for `jaxem.crosscheck`, which passes ``numpyro.sample``
        and ``numpyro.distributions``); optional."""
        raise NotImplementedError(f"{self!r} does not write its prior in NumPyro")


_REGISTERED: dict[str, CovarianceStructure] = {}


def register(structure: CovarianceStructure) -> CovarianceStructure:
    """Make ``structure`` (an instance) known by its ``name`` and ``aliases``; returns it.
    ``ValueError`` when another structure has one of those names."""
    if not isinstance(structure, CovarianceStructure):
        raise TypeError(f"register takes a CovarianceStructure instance; got {structure!r}")
    for name in (structure.name, *structure.aliases):
        known = _REGISTERED.get(name)
        if known is not None and known != structure:
            raise ValueError(f"another covariance structure is registered as {name!r}: {known!r}")
    for name in (structure.name, *structure.aliases):
        _REGISTERED[name] = structure
    return structure


def of(covariance_type: str | CovarianceStructure) -> CovarianceStructure:
    """The structure of a name (or alias), or a structure itself (registered on the way, so
    that files and messages can name it). ``ValueError`` naming the known names."""
    if isinstance(covariance_type, CovarianceStructure):
        return register(covariance_type)
    if isinstance(covariance_type, str) and covariance_type in _REGISTERED:
        return _REGISTERED[covariance_type]
    raise ValueError(f"covariance_type must be one of {names()}; got {covariance_type!r}")


def names() -> list[str]:
    """The registered structures' names (not their aliases), in registration order."""
    return list(dict.fromkeys(s.name for s in _REGISTERED.values()))


def all_names() -> list[str]:
    """Every name a covariance type may be given by: names and aliases."""
    return list(_REGISTERED)
