"""Run by tests/test_sharding.py in a fresh process with four host devices: fits of data split
over devices against the same fits on one device. Prints one JSON object of differences."""

import json
import os

import jax  # noqa: E402

from jaxem.compiler import with_options  # noqa: E402

# before any program: four host devices, and the suite's options (inherited from conftest)
os.environ["XLA_FLAGS"] = with_options(
    f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
)

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

import jaxem  # noqa: E402
from jaxem import GaussianMixture  # noqa: E402


def gap(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def main():
    out = {"devices": jax.device_count()}
    rng = np.random.default_rng(0)
    # 1,024 rows: a size of its own bucket (jaxem.buckets), so that the one-device reference
    # runs the same rows as the split data, with no padding rounding differently
    X = np.concatenate([rng.normal(0, 1, (624, 3)), rng.normal(3, 0.5, (400, 3))])
    w = rng.uniform(0.5, 2.0, X.shape[0])
    w[::9] = 0.0
    auto = jaxem.shard(X)
    explicit = jax.device_put(
        X, NamedSharding(jax.make_mesh((4,), ("rows",)), PartitionSpec("rows"))
    )
    # every covariance type split over the devices; the other layouts for two of them
    layouts = {
        "full": ("auto", "explicit", "blocks", "map"),
        "diag": ("auto", "map"),
        "spherical": ("auto",),
        "tied": ("auto", "blocks"),
    }
    for covariance_type, names in layouts.items():
        model = GaussianMixture(2, covariance_type)
        start = model.init(jax.random.key(0), X, w)
        if covariance_type in ("full", "tied"):
            out[f"init {covariance_type}"] = gap(model.init(jax.random.key(0), auto, w), start)
        one = jaxem.fit(model, X, start, weights=w, tol=1e-8)
        for name in names:
            data, chunk, prior = {
                "auto": (auto, None, None),
                "explicit": (explicit, None, None),
                "blocks": (auto, 70, None),
                "map": (auto, None, jaxem.default_prior(model, X)),
            }[name]
            ref = (
                one
                if prior is None
                else jaxem.fit(model, X, start, weights=w, prior=prior, tol=1e-8)
            )
            many = jaxem.fit(model, data, start, weights=w, prior=prior, tol=1e-8, chunk_size=chunk)
            out[f"{covariance_type} {name}"] = {
                "n_iter": [int(ref.n_iter), int(many.n_iter)],
                "objective": abs(float(ref.objective) - float(many.objective)),
                "params": gap(ref.params, many.params),
            }
    # a start made on data split over a mesh with Explicit axes (jax.make_mesh's default), then
    # a MAP fit: the start's mesh (Auto, from init's partitioner) and the data's must agree
    model = GaussianMixture(2, "diag")
    prior = jaxem.default_prior(model, X)
    one = jaxem.fit(model, X, model.init(jax.random.key(0), X, w), weights=w, prior=prior, tol=1e-8)
    start = model.init(jax.random.key(0), explicit, w)
    many = jaxem.fit(model, explicit, start, weights=w, prior=prior, tol=1e-8)
    out["diag explicit map"] = {
        "n_iter": [int(one.n_iter), int(many.n_iter)],
        "objective": abs(float(one.objective) - float(many.objective)),
        "params": gap(one.params, many.params),
    }
    # SQUAREM's iterations over split data and row blocks
    model = GaussianMixture(2, "full")
    start = model.init(jax.random.key(0), X, w)
    one = jaxem.fit(model, X, start, weights=w, tol=1e-10, accelerate="squarem")
    many = jaxem.fit(model, auto, start, weights=w, tol=1e-10, chunk_size=70, accelerate="squarem")
    out["full squarem blocks"] = {
        "n_iter": [int(one.n_iter), int(many.n_iter)],
        "objective": abs(float(one.objective) - float(many.objective)),
        "params": gap(one.params, many.params),
    }
    # the t and factor-analyser families split over the devices, in row blocks too
    for name, family in (
        ("t", jaxem.families.StudentT("full")),
        ("factors", jaxem.families.FactorAnalyser(1, "CUU")),
    ):
        mixture = jaxem.Mixture(family, 2)
        begin = mixture.init(jax.random.key(0), X, w)
        alone = jaxem.fit(mixture, X, begin, weights=w, tol=1e-8)
        for layout, chunk in (("auto", None), ("blocks", 70)):
            split = jaxem.fit(mixture, auto, begin, weights=w, tol=1e-8, chunk_size=chunk)
            out[f"{name} {layout}"] = {
                "n_iter": [int(alone.n_iter), int(split.n_iter)],
                "objective": abs(float(alone.objective) - float(split.objective)),
                "params": gap(alone.params, split.params),
            }
    try:
        jaxem.fit(GaussianMixture(2), jaxem.shard(X[:998]), start)
    except ValueError as err:
        out["uneven"] = str(err)

    model = GaussianMixture(2, "full")
    one = jaxem.fit_restarts(model, jax.random.key(3), X, n_init=2, weights=w, tol=1e-8)
    many = jaxem.fit_restarts(model, jax.random.key(3), auto, n_init=2, weights=w, tol=1e-8)
    out["restarts"] = {
        "n_iter": [int(one.n_iter), int(many.n_iter)],
        "objective": float(np.max(np.abs(one.objectives - many.objectives))),
        "params": gap(one.params, many.params),
    }

    bad = X.copy()
    bad[997, 1] = np.nan
    out["nan"] = "accepted"
    try:
        jaxem.fit(GaussianMixture(2), jaxem.shard(bad[4:]), start)
    except ValueError as err:
        out["nan"] = str(err)

    batch = np.stack([X[i * 100 : (i + 1) * 100] for i in range(8)])
    model = GaussianMixture(2, "full")
    one = jaxem.fit_batch(model, jax.random.key(1), batch, lanes=2)
    many = jaxem.fit_batch(model, jax.random.key(1), jaxem.shard(batch), lanes=2)
    on_explicit = jaxem.fit_batch(
        model,
        jax.random.key(1),
        jax.device_put(batch, NamedSharding(jax.make_mesh((4,), ("rows",)), PartitionSpec("rows"))),
        lanes=2,
    )
    out["batch explicit"] = gap(one.params, on_explicit.params)
    out["batch"] = {
        "n_iter": [one.n_iter.tolist(), many.n_iter.tolist()],
        "objective": float(np.max(np.abs(one.objective - many.objective))),
        "params": gap(one.params, many.params),
        "sharding": str(many.objective.sharding.spec),
    }
    # a hidden Markov model: 8 padded sequences split over the devices (2 each), with and
    # without row blocks of sequences
    hmm = jaxem.HiddenMarkovModel(jaxem.families.Gaussian("full"), 2)
    sequences = np.stack([X[i * 48 : (i + 1) * 48] for i in range(16)])  # bucket sizes
    steps = np.ones(sequences.shape[:2])
    steps[3, 30:] = 0.0  # padding
    start = hmm.init(jax.random.key(0), sequences, steps)
    one = jaxem.fit(hmm, sequences, start, weights=steps, tol=1e-8)
    accelerated = jaxem.fit(hmm, sequences, start, weights=steps, tol=1e-8, accelerate="squarem")
    for name, chunk, accelerate in (
        ("hmm auto", None, None),
        ("hmm blocks", 1, None),
        ("hmm squarem", None, "squarem"),
    ):
        many = jaxem.fit(
            hmm,
            jaxem.shard(sequences),
            start,
            weights=steps,
            tol=1e-8,
            chunk_size=chunk,
            accelerate=accelerate,
        )
        ref = accelerated if accelerate else one
        out[name] = {
            "n_iter": [int(ref.n_iter), int(many.n_iter)],
            "objective": abs(float(ref.objective) - float(many.objective)),
            "params": gap(ref.params, many.params),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
