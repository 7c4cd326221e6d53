"""Exact EM over a data source (`jaxem.streaming`, `jaxem.sources`): the same iterates as
`jaxem.fit` on the concatenated data, for every family, missing values and hidden Markov models;
files read in blocks (.npy, CSV, Parquet); the errors a bad source gets."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import families, sources, streaming
from jaxem.progress import Progress

RNG = np.random.default_rng(11)
N = 500
BLOCK = 128  # four blocks, the last one short (padded to 128 rows with weight zero)


def gaussian_rows(n=N, d=3):
    centres = np.array([[0.0] * d, [3.0] * d, [0.0] * (d - 1) + [4.0]])
    labels = RNG.integers(0, 3, n)
    return centres[labels] + RNG.normal(size=(n, d)) * (0.5 + 0.5 * labels[:, None])


def count_rows(n=N):
    return RNG.poisson(np.where(RNG.random((n, 1)) < 0.4, [2.0, 7.0], [9.0, 1.0])).astype(float)


def binary_rows(n=N):
    return (RNG.random((n, 4)) < np.where(RNG.random((n, 1)) < 0.5, 0.8, 0.2)).astype(float)


def categorical_rows(n=N):
    """Two latent classes over a three- and a two-category item."""
    first = RNG.random(n) < 0.5
    u = RNG.random((n, 2))
    three = np.where(first, (u[:, 0] > 0.7) + (u[:, 0] > 0.9), (u[:, 0] > 0.2) + (u[:, 0] > 0.5))
    two = np.where(first, u[:, 1] < 0.8, u[:, 1] < 0.3)
    return np.stack([three, two], axis=1).astype(float)


def with_missing(X):
    X = X.copy()
    X[RNG.random(X.shape) < 0.2] = np.nan
    X[0] = 1.0
    return X


GAUSSIAN = gaussian_rows()
CASES = {
    "gaussian full": (jaxem.GaussianMixture(3, "full"), GAUSSIAN),
    "gaussian EEV": (jaxem.GaussianMixture(3, "EEV"), GAUSSIAN),
    "poisson": (jaxem.Mixture(families.Poisson(), 2), count_rows()),
    "bernoulli": (jaxem.Mixture(families.Bernoulli(), 2), binary_rows()),
    "categorical": (jaxem.Mixture(families.Categorical((3, 2)), 2), categorical_rows()),
    "t": (jaxem.Mixture(families.StudentT("full"), 3), GAUSSIAN),
    "factors": (jaxem.Mixture(families.FactorAnalyser(1, "UUU"), 2), GAUSSIAN),
    "gaussian missing": (jaxem.GaussianMixture(3, "full", missing=True), with_missing(GAUSSIAN)),
    "kmeans": (jaxem.KMeans(3), GAUSSIAN),
}


def rel_gap(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(np.asarray(x)), 1)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def assert_same_fit(memory, stream):
    assert int(stream.n_iter) == int(memory.n_iter)
    assert bool(stream.converged) == bool(memory.converged)
    assert rel_gap(memory.params, stream.params) < 1e-10
    np.testing.assert_allclose(stream.objective, memory.objective, rtol=1e-12)
    n = int(memory.n_iter)
    np.testing.assert_allclose(stream.history[:n], memory.history[:n], rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_streaming_equals_fit_in_memory(name):
    model, X = CASES[name]
    weights = RNG.uniform(0.5, 2.0, N)
    weights[200:260] = 0.0  # a run of zero weights across a block boundary
    start = model.init(jax.random.key(0), X, weights)
    memory = jaxem.fit(model, X, start, weights=weights, tol=1e-12, max_iter=60)
    assert int(memory.n_iter) >= 3
    stream = jaxem.fit(model, sources.array(X, BLOCK, weights), start, tol=1e-12, max_iter=60)
    assert_same_fit(memory, stream)


def test_streaming_map_equals_fit_in_memory():
    model = jaxem.GaussianMixture(3, "VVI")
    prior = jaxem.default_prior(model, GAUSSIAN)
    start = model.init(jax.random.key(1), GAUSSIAN)
    memory = jaxem.fit(model, GAUSSIAN, start, prior=prior, tol=1e-9)
    stream = streaming.fit_source(
        model, sources.array(GAUSSIAN, 100), start, prior=prior, tol=1e-9, quiet=True
    )
    assert_same_fit(memory, stream)
    value = streaming.evaluate(model, sources.array(GAUSSIAN, 77), stream.params, prior=prior)
    np.testing.assert_allclose(value, memory.objective, rtol=1e-12)


def test_hmm_over_a_source_of_sequences():
    """Sequences of different lengths, padded by `jaxem.pad` (NaN, weight zero), in blocks of
    sequences."""
    model = jaxem.HiddenMarkovModel(families.Gaussian("diag"), 2)
    truth = jaxem.HMMParams(
        jnp.array([0.5, 0.5]),
        jnp.array([[0.9, 0.1], [0.2, 0.8]]),
        families.GaussianParams(jnp.array([[0.0, 0.0], [3.0, 1.0]]), jnp.ones((2, 2))),
    )
    lengths = RNG.integers(20, 41, 24)
    sequences = [
        np.asarray(model.sample(jax.random.key(i), truth, int(t))[0]) for i, t in enumerate(lengths)
    ]
    X, weights = jaxem.pad(sequences)
    start = model.init(jax.random.key(5), X, weights)
    memory = jaxem.fit(model, X, start, weights=weights, tol=1e-9)
    assert int(memory.n_iter) > 5
    stream = jaxem.fit(model, sources.array(X, 7, weights), start, tol=1e-9)
    assert_same_fit(memory, stream)


# -- files --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    model = jaxem.GaussianMixture(3, "full")
    start = model.init(jax.random.key(0), GAUSSIAN)
    return model, start, jaxem.fit(model, GAUSSIAN, start, tol=1e-9)


def test_npy_read_in_blocks(tmp_path, reference):
    model, start, memory = reference
    path = tmp_path / "rows.npy"
    np.save(path, GAUSSIAN)
    stream = jaxem.fit(model, sources.npy(path, BLOCK), start, tol=1e-9)
    assert_same_fit(memory, stream)


def test_csv_in_chunks(tmp_path, reference):
    model, start, memory = reference
    path = tmp_path / "rows.csv"
    np.savetxt(path, GAUSSIAN, delimiter=",", fmt="%.17g", header="a,b,c", comments="")
    stream = jaxem.fit(model, sources.csv(path, BLOCK), start, tol=1e-9)
    assert_same_fit(memory, stream)
    # picked columns, and empty cells read as missing values
    lines = path.read_text().splitlines()
    lines[3] = ",".join(["", *lines[3].split(",")[1:]])
    path.write_text("\n".join(lines) + "\n")
    first = next(iter(sources.csv(path, 10, missing=True, columns=[0, 2])))[0]
    assert first.shape == (10, 2) and np.isnan(first[2, 0])
    np.testing.assert_array_equal(first[3:], GAUSSIAN[3:10][:, [0, 2]])
    with pytest.raises(ValueError, match=r"rows.csv, lines 2-11: .*missing=True"):
        list(sources.csv(path, 10))


def test_parquet_in_record_batches(tmp_path, reference):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    model, start, memory = reference
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({name: GAUSSIAN[:, j] for j, name in enumerate("abc")}), path)
    source = sources.parquet(path, BLOCK)
    assert source.n_rows == N
    assert_same_fit(memory, jaxem.fit(model, source, start, tol=1e-9))


# -- what a bad source gets ---------------------------------------------------------------------


def test_blocks_that_change_width_or_dtype_are_named(reference):
    model, start, _ = reference
    X = GAUSSIAN
    with pytest.raises(ValueError, match=r"block 2 of .* rows of shape \(2,\), block 0 had \(3,\)"):
        jaxem.fit(model, sources.blocks([X[:100], X[100:200], X[200:300, :2]]), start)
    with pytest.raises(ValueError, match=r"block 1 of .* dtype float32, block 0 had float64"):
        jaxem.fit(model, sources.blocks([X[:100], X[100:200].astype(np.float32)]), start)
    bad = X[100:200].copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match=r"block 1 of .*X contains NaN or inf"):
        jaxem.fit(model, sources.blocks([X[:100], bad]), start)


def test_sources_refuse_what_cannot_be_read_again(reference, tmp_path):
    model, start, _ = reference
    with pytest.raises(TypeError, match="one-shot iterator"):
        sources.blocks(iter([GAUSSIAN]))
    with pytest.raises(TypeError, match="must be a jaxem.sources.Source"):
        streaming.fit_source(model, [GAUSSIAN], start)
    with pytest.raises(ValueError, match="weights=None"):
        jaxem.fit(model, sources.array(GAUSSIAN, 100), start, weights=np.ones(N))
    with pytest.raises(ValueError, match="block_rows must be a positive integer"):
        sources.array(GAUSSIAN, 0)
    with pytest.raises(ValueError, match="no such file"):
        sources.npy(tmp_path / "absent.npy", 10)
    with pytest.raises(TypeError, match="block 0 of .*numeric array"):
        list(sources.blocks([["a", "b"]]))

    def generator():
        yield GAUSSIAN[:250]
        yield GAUSSIAN[250:]

    # a generator function is read afresh on every pass
    source = sources.blocks(generator)
    assert sum(len(X) for X, _ in source) == sum(len(X) for X, _ in source) == N


def test_a_source_where_an_array_is_expected_says_what_to_do(reference):
    model, _, _ = reference
    source = sources.array(GAUSSIAN, 100)
    for call in (
        lambda: model.init(jax.random.key(0), source),
        lambda: jaxem.fit_restarts(model, jax.random.key(0), source),
        lambda: jaxem.fit_batch(model, jax.random.key(0), source),
    ):
        with pytest.raises(TypeError, match=r"X is a data source .*sources.first_rows"):
            call()


def test_csv_whose_first_line_is_data_is_not_read_as_a_header(tmp_path):
    """header=True on a file without one would drop its first row unseen."""
    path = tmp_path / "rows.csv"
    np.savetxt(path, GAUSSIAN[:10], delimiter=",")
    with pytest.raises(ValueError, match="holds numbers only.*header=False"):
        list(sources.csv(path, 4))
    rows = np.concatenate([X for X, _ in sources.csv(path, 4, header=False)])
    np.testing.assert_allclose(rows, GAUSSIAN[:10], rtol=1e-15)


def test_progress_lines_per_pass(reference):
    model, start, _ = reference
    stream = io.StringIO()
    progress = Progress(N, stream=stream)
    progress.start("iteration 1")
    progress.rows(N)
    progress.done(-1000.0, N)
    text = stream.getvalue()
    assert "iteration 1: 500 rows in" in text and "objective -1000 (-2 per row)" in text
    quiet = io.StringIO()
    progress = Progress(N, quiet=True, stream=quiet)
    progress.start("x")
    progress.done(1.0, 1)
    assert quiet.getvalue() == ""


def test_first_rows():
    source = sources.array(GAUSSIAN, 64)
    np.testing.assert_array_equal(sources.first_rows(source, 100), GAUSSIAN[:100])
    np.testing.assert_array_equal(sources.first_rows(source, 10_000), GAUSSIAN)


def test_npy_files_that_are_not_rows_are_refused(tmp_path):
    path = tmp_path / "columns.npy"
    np.save(path, np.asfortranarray(GAUSSIAN))
    with pytest.raises(ValueError, match="in C order"):
        sources.npy(path, 10)
    (tmp_path / "text.npy").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a .npy file"):
        sources.npy(tmp_path / "text.npy", 10)


def test_the_example_script_fits_a_file_from_disk(tmp_path):
    """docs/examples/fit_from_disk.py as a user runs it, on a small file."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "docs" / "examples" / "fit_from_disk.py"
    done = subprocess.run(
        [sys.executable, str(script), "--rows", "20000", "--path", str(tmp_path / "rows.npy")]
        + ["--block-rows", "6000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iteration 1: 20,000 rows in" in done.stderr  # the progress lines
    exact, once = (
        float(v) for v in done.stdout.split("exact EM ")[-1].split(", online EM in one pass ")
    )
    assert 0 <= exact - once < 0.01


# -- incremental EM -----------------------------------------------------------------------------


def test_incremental_em_reaches_ems_maximum_in_fewer_passes():
    """Neal and Hinton's incremental EM over ten blocks: EM's fixed point, in fewer passes."""
    model = jaxem.GaussianMixture(3, "full")
    start = model.init(jax.random.key(2), GAUSSIAN)
    batch = jaxem.fit(model, GAUSSIAN, start, tol=0, max_iter=3000)
    source = sources.array(GAUSSIAN, 50)
    result = streaming.fit_incremental(model, source, start, tol=1e-14, max_passes=400, quiet=True)
    assert bool(result.converged)
    assert rel_gap(batch.params, result.params) < 1e-6
    np.testing.assert_allclose(result.objective, batch.objective, rtol=1e-12)
    np.testing.assert_allclose(
        result.objective, streaming.evaluate(model, source, result.params), rtol=1e-14
    )
    # passes to within 1e-6 per row of the maximum: incremental against batch EM
    close = float(batch.objective) - 1e-6 * N
    n = int(result.n_iter)
    incremental = int(np.argmax(np.asarray(result.history[:n]) >= close)) + 1
    plain = int(np.argmax(np.asarray(batch.history) >= close)) + 1
    assert incremental <= 0.75 * plain, (incremental, plain)  # measured: 13 passes against 20


FLOAT64_SCOPE = """
import json
import numpy as np, jax
import jaxem
from jaxem import sources
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(3, 1, (200, 2))]) + 1e5
with jax.enable_x64(True):
    model = jaxem.GaussianMixture(2, "full")
    start = model.init(jax.random.key(0), X)
    streamed = jaxem.fit(model, sources.array(X, block_rows=128), start, tol=0, max_iter=5)
    whole = jaxem.fit(model, X, start, tol=0, max_iter=5)
print(json.dumps({"dtype": str(streamed.history.dtype), "streamed": streamed.history.tolist(),
                  "whole": whole.history.tolist()}))
"""


def test_a_float64_scope_reaches_the_reader_thread():
    """In a process computing in float32, a fit from a source inside ``jax.enable_x64(True)``
    (the scope is the opening thread's alone) equals the in-memory float64 fit: the blocks,
    checked and placed by the background reader thread, were silently truncated to float32
    there (data at 1e5: the objective 0.036 off)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    done = subprocess.run(
        [sys.executable, "-c", FLOAT64_SCOPE], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dtype"] == "float64"
    np.testing.assert_allclose(report["streamed"], report["whole"], rtol=1e-12)
