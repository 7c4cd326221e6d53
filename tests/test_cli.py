"""The command line, run as a user would: ``python -m jaxem.cli`` in a subprocess."""

import json
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import jaxem


def jaxem_cli(*args, cwd=None, check=True):
    run = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    if check and run.returncode != 0:
        raise AssertionError(f"exit {run.returncode}: {run.stderr}")
    return run


def test_demo_prints_mle_and_map_and_draws_the_figure(faithful, tmp_path):
    out = jaxem_cli("demo", "--plot", tmp_path / "demo.png").stdout
    mle, map_ = out.split("MAP, default prior")
    loglik = float(re.search(r"log-likelihood (-?[\d.]+)", mle).group(1))
    sk = SkGaussianMixture(2, tol=1e-10, n_init=5, random_state=0).fit(faithful)
    np.testing.assert_allclose(loglik, sk.score(faithful) * len(faithful), atol=2e-2)
    weights = sorted(float(w) for w in re.findall(r"^ +\d +([\d.]+)", mle, re.M))
    np.testing.assert_allclose(weights, sorted(sk.weights_), atol=1e-3)
    assert "converged: True" in mle and "log-posterior" in map_
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_fit_then_predict_round_trip(faithful, tmp_path):
    data = tmp_path / "faithful.csv"
    np.savetxt(data, faithful, delimiter=",", header="eruptions,waiting", comments="")
    model_file, summary_file = tmp_path / "m.npz", tmp_path / "s.json"
    out = jaxem_cli(
        "fit",
        data,
        "-k",
        2,
        "--n-init",
        2,
        "--out",
        model_file,
        "--json",
        summary_file,
        "-q",
        "--se",
    ).stdout
    summary = json.loads(summary_file.read_text())
    assert summary["n_samples"] == 272 and summary["columns"] == ["eruptions", "waiting"]
    assert f"BIC {summary['bic']:.3f}" in out
    model, params, prior = jaxem.load(model_file)
    assert prior is None and model == jaxem.GaussianMixture(2, "full")
    np.testing.assert_allclose(params.weights, summary["weights"], rtol=1e-6)
    bic = float(jaxem.bic(model, params, faithful.astype(np.float32)))
    np.testing.assert_allclose(summary["bic"], bic, rtol=1e-5)
    # --se: the table, and the standard errors of jaxem.standard_errors in the JSON summary
    assert "Standard errors (observed information)" in out and "0 = eruptions" in out
    errors = jaxem.standard_errors(model, params, faithful)
    reported = [summary["standard_errors"][name] for name in errors.names]
    np.testing.assert_allclose(reported, np.sqrt(np.diag(errors.covariance)), rtol=2e-2)

    labels_file = tmp_path / "labels.csv"
    jaxem_cli("predict", model_file, data, "--out", labels_file)
    table = np.loadtxt(labels_file, delimiter=",", skiprows=1)
    assert labels_file.read_text().splitlines()[0] == "label,p0,p1"
    np.testing.assert_array_equal(table[:, 0], np.asarray(model.predict(params, faithful)))
    np.testing.assert_allclose(table[:, 1:], model.predict_proba(params, faithful), atol=1e-5)


def test_select_prints_the_table_and_saves_the_best(faithful, tmp_path):
    data = tmp_path / "faithful.csv"
    np.savetxt(data, faithful, delimiter=",", header="eruptions,waiting", comments="")
    run = jaxem_cli(
        "select", data, "-k", "1-2", "--covariance-types", "full,tied", "--n-init", 0,
        "--out", tmp_path / "best.npz", "--json", tmp_path / "t.json",
    )  # fmt: skip
    table = json.loads((tmp_path / "t.json").read_text())
    best = table["best"]
    assert set(table["table"]) == {"full", "tied"}
    assert set(table["table"]["full"]) == {"1", "2"}
    model, _, _ = jaxem.load(tmp_path / "best.npz")
    assert (model.n_components, model.covariance_type) == (
        best["n_components"],
        best["covariance_type"],
    )
    assert "BIC (lower is better" in run.stdout and "best: GaussianMixture" in run.stdout
    assert run.stderr == ""  # no progress bar when stderr is not a terminal


BAD_INPUTS = [
    # (file content or None for a missing file, extra arguments, expected message)
    (None, [], r"no such file"),
    ("", [], r"the file is empty"),
    ("a,b\n", [], r"a header row but no data rows"),
    ("a,b\n1,2\n3,x\n4,5\n", [], r"line 3, column 'b': 'x' is not a number \(pick numeric"),
    ("a,b\n1,2\n3,\n", [], r"line 3, column 'b': an empty cell"),
    ("a,b\n1,2\n3,inf\n", [], r"line 3, column 'b': 'inf' is not a finite number"),
    ("a,b\n1,2\n3\n", [], r"line 3: 1 fields where the header has 2"),
    ("a,b\n1,2\n3,4\n", [], r"n_components=3 must be <= the number of samples"),
    ("a,b\n1,2\n3,4\n5,6\n", ["--columns", "a,c"], r"no column 'c' \(the header has: a, b\)"),
    ("a,b\n1,2\n3,4\n5,6\n", ["--covariance-type", "round"], r"invalid choice: 'round'"),
    ("a,b\n1,2\n3,4\n5,6\n", ["--n-init", "0"], r"--n-init must be >= 1"),
    ("a,b\n1,2\n3,\n5,6\n", ["--missing", "--se", "sem"], r"--se sem needs data without"),
    ("a,b\n1,2\n3,4\n5,6\n", ["--se", "hessian"], r"invalid choice: 'hessian'"),
]


@pytest.mark.parametrize("content, extra, message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, content, extra, message):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_text(content)
    run = jaxem_cli("fit", data, "-k", 3, *extra, check=False)
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxem: error: "), run.stderr
    assert re.search(message, lines[0]), lines[0]


def test_version():
    run = jaxem_cli("--version")
    assert re.fullmatch(r"jaxem \d+\.\d+\.\d+\n", run.stdout)


def test_predict_rejects_a_file_that_is_not_a_model(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    for model_file, message in ((data, "not an .npz archive"), (tmp_path / "no.npz", "no such")):
        run = jaxem_cli("predict", model_file, data, check=False)
        assert run.returncode == 2 and message in run.stderr
        assert len(run.stderr.splitlines()) == 1


def _run_on_terminal(args, cwd) -> str:
    """Run the CLI with a pseudo-terminal (100 columns) as stdout and stderr."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.chdir(cwd)
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        os.execv(sys.executable, [sys.executable, "-m", "jaxem.cli", *map(str, args)])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminal test")
def test_progress_bar_on_a_terminal_unless_quiet(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n" + "".join(f"{i % 7},{i % 5}\n" for i in range(40)))
    shown = _run_on_terminal(["fit", "d.csv", "-k", 2, "--n-init", 2], tmp_path)
    assert "restarts: 100%" in shown and "best of 2 starts" in shown
    quiet = _run_on_terminal(["fit", "d.csv", "-k", 2, "--n-init", 2, "--quiet"], tmp_path)
    assert "restarts" not in quiet and "best of 2 starts" in quiet


@pytest.mark.parametrize(
    "family, data",
    [
        ("bernoulli", np.array([[0, 1, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0]] * 8)),
        ("categorical", np.array([[0, 2, 1], [1, 0, 0], [2, 1, 1], [0, 0, 1], [1, 2, 0]] * 8)),
        ("poisson", np.array([[0, 3, 1], [5, 0, 2], [1, 4, 1], [0, 2, 9], [7, 1, 0]] * 8)),
    ],
)
def test_fit_other_families_from_csv(tmp_path, family, data):
    """--family fits the same mixture as jaxem.Mixture (same starts: the key of --seed), saves
    it, and predict reads it back; data outside the family's support is one line, exit 2."""
    path = tmp_path / "data.csv"
    np.savetxt(path, data, delimiter=",", header="a,b,c", comments="", fmt="%d")
    out = tmp_path / "m.npz"
    summary = tmp_path / "s.json"
    # the Poisson mixture with --accelerate: SQUAREM reaches the same optimum
    accelerate = ["--accelerate", "squarem"] if family == "poisson" else []
    run = jaxem_cli(
        "fit",
        path,
        "--family",
        family,
        "-k",
        2,
        "--n-init",
        1,
        "--out",
        out,
        "--json",
        summary,
        *accelerate,
    )
    assert "Mixture(" in run.stdout
    model, params, _ = jaxem.load(out)
    assert type(model.family).__name__.lower() == family
    expected = jaxem.fit(
        model,
        data.astype(np.float32),
        model.init(jax.random.split(jax.random.key(0), 1)[0], data.astype(np.float32)),
        tol=1e-6,
        max_iter=500,
    )
    fitted = json.loads(summary.read_text())
    np.testing.assert_allclose(fitted["objective"], float(expected.objective), rtol=1e-5)
    passes = 3 * fitted["n_iter"] + 1 if accelerate else fitted["n_iter"] + 1
    assert fitted["n_evals"] == passes
    labels = jaxem_cli("predict", out, path).stdout.splitlines()
    assert labels[0] == "label,p0,p1" and len(labels) == len(data) + 1
    bad = data.astype(float)
    bad[3, 1] = -1 if family != "bernoulli" else 2
    np.savetxt(path, bad, delimiter=",", header="a,b,c", comments="")
    run = jaxem_cli("fit", path, "--family", family, "-k", 2, check=False)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "line 5, column 'b'" in run.stderr  # the file's line and column, not X[3, 1]


def test_compilation_cache_is_an_explicit_switch(tmp_path):
    """Importing jaxem sets no cache directory; the switch sets the one given and creates it.
    In a subprocess: once JAX's persistent cache is initialised in a process it stays on, and
    every later compilation of this test worker would go through it."""
    import subprocess
    import sys

    script = (
        "import jax, jaxem, pathlib, sys\n"
        "assert jax.config.jax_compilation_cache_dir is None\n"
        "path = jaxem.enable_compilation_cache(sys.argv[1])\n"
        "assert path == pathlib.Path(sys.argv[1]) and path.is_dir()\n"
        "assert jax.config.jax_compilation_cache_dir == str(path)\n"
    )
    target = tmp_path / "xla"
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_xla_options_keep_the_users_own_flags():
    """The command line adds jaxem's XLA options (`jaxem.compiler`) to XLA_FLAGS, except those
    the user already set."""
    from jaxem.compiler import with_options

    assert with_options("") == "--xla_cpu_use_fusion_emitters=false"
    assert with_options("--a=1") == "--a=1 --xla_cpu_use_fusion_emitters=false"
    mine = "--xla_cpu_use_fusion_emitters=true --a=1"
    assert with_options(mine) == mine


def test_compiled_entry_points_see_whether_they_are_traced():
    """`jaxem.compiler.jit` passes its options only at the top level (JAX refuses them on a
    nested jit), and gives the same numbers either way."""
    import jax
    import jax.numpy as jnp

    from jaxem.compiler import at_top_level, jit

    seen = []

    def f(x):
        seen.append(at_top_level())
        return x * 2.0

    assert at_top_level()
    jax.jit(f)(1.0)
    jax.vmap(f)(jnp.ones(2))
    assert seen == [False, False]
    g = jit(lambda x: jnp.sum(x**2))
    x = jnp.arange(3.0)
    assert float(g(x)) == 5.0 == float(jax.jit(g)(x))
