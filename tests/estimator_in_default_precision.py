"""Run by test_sklearn_estimator.py in a fresh process that never enables x64 (the test suite's
conftest enables it): scikit-learn's check_estimator, and float64 / float32 data each fitted and
scored in its own precision. Prints one JSON line."""

import json

import jax
import numpy as np
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.utils.estimator_checks import check_estimator

from jaxem.sklearn import GaussianMixture

assert not jax.config.jax_enable_x64
results = check_estimator(GaussianMixture(), on_fail=None)
X = load_iris().data
ours = GaussianMixture(3, n_init=4, random_state=0).fit(X)
theirs = SkGaussianMixture(3, n_init=4, random_state=0).fit(X)
ours32 = GaussianMixture(3, n_init=4, random_state=0).fit(X.astype(np.float32))
report = {
    "x64_after": bool(jax.config.jax_enable_x64),
    "failed": {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"},
    "passed": sum(r["status"] == "passed" for r in results),
    "dtypes": [str(ours.means_.dtype), str(ours.score_samples(X).dtype)],
    "dtypes32": [str(ours32.means_.dtype), str(ours32.predict_proba(X).dtype)],
    "score_difference": abs(ours.score(X) - theirs.score(X)),
    "means_difference": float(np.max(np.abs(ours.means_ - theirs.means_))),
}
print(json.dumps(report))
