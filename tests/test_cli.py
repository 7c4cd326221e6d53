"""The command line: `jaxem demo` prints the fit of the bundled Old Faithful data."""

import re
import subprocess
import sys

import numpy as np
from sklearn.mixture import GaussianMixture as SkGaussianMixture


def test_demo_prints_the_old_faithful_fit(faithful):
    out = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", "demo"], capture_output=True, text=True, check=True
    ).stdout
    loglik = float(re.search(r"log-likelihood (-?[\d.]+)", out).group(1))
    sk = SkGaussianMixture(2, tol=1e-10, n_init=5, random_state=0).fit(faithful)
    np.testing.assert_allclose(loglik, sk.score(faithful) * len(faithful), atol=1e-3)
    weights = sorted(float(w) for w in re.findall(r"weight ([\d.]+)", out))
    np.testing.assert_allclose(weights, sorted(sk.weights_), atol=1e-3)
    assert "converged: True" in out
