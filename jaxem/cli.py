"""The ``jaxem`` command line (``jaxem demo``; more commands to come)."""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from jaxem.datasets import load_faithful
from jaxem.em import fit
from jaxem.gaussian_mixture import GaussianMixture


def _demo(args: argparse.Namespace) -> int:
    X, names = load_faithful()
    model = GaussianMixture(args.n_components, covariance_type=args.covariance_type)
    params = model.init(jax.random.key(args.seed), X)
    result = fit(model, X, params, tol=1e-6, max_iter=500)
    p = result.params
    print(f"Old Faithful: {X.shape[0]} eruptions, columns {', '.join(names)}")
    print(f"Gaussian mixture, K={model.n_components}, covariance_type={model.covariance_type!r}")
    print(
        f"log-likelihood {float(result.objective):.4f} after {int(result.n_iter)} iterations "
        f"(converged: {bool(result.converged)})"
    )
    np.set_printoptions(precision=4, suppress=True)
    covariances = np.asarray(p.covariances)
    for k in range(model.n_components):
        print(f"component {k}: weight {float(p.weights[k]):.4f}, mean {np.asarray(p.means[k])}")
        if model.covariance_type != "tied":
            print(f"  covariance:\n{covariances[k]}")
    if model.covariance_type == "tied":
        print(f"shared covariance:\n{covariances}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxem", description="EM for latent-variable models")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a Gaussian mixture to the bundled Old Faithful data")
    demo.add_argument("-k", "--n-components", type=int, default=2)
    demo.add_argument(
        "--covariance-type", default="full", choices=["full", "diag", "spherical", "tied"]
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
