"""VVE: covariances of varying volume and shape and a common orientation, $\\Sigma_k =
\\lambda_k D A_k D^\\top$, stored as matrices ``(K, D, D)`` (mclust's VVE), the structure `VVE`.
Its M-step is iterative (`jaxem.families.gaussian.orientation`). Maximum likelihood only
(mclust has no prior for VVE either).
"""

from __future__ import annotations

from jaxem.families.gaussian.eve import EVE
from jaxem.families.gaussian.structure import register


class VVE(EVE):
    """A volume and shape per component, one orientation, ``(K, D, D)``."""

    name = "VVE"
    equal_volume = False

    def n_parameters(self, n_components, n_features):
        d = n_features
        return n_components * d + d * (d - 1) // 2


register(VVE())
