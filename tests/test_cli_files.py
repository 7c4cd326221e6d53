"""The command line on a user's own files, through its entry point `jaxem.cli.main` in this
process (one compiled program per shape, shared by the tests): column names kept with the
model, files without a header, cells named in value errors, readable summaries, output options
that say what they do."""

import re
import subprocess
import sys

import numpy as np
import pytest

import jaxem
from jaxem.cli import main


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.setenv("JAXEM_NO_CACHE", "1")  # keep the suite's own compilation cache


def run(capsys, *args):
    """``(status, stdout, stderr)`` of ``jaxem ARGS``."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def error_line(capsys, *args) -> str:
    status, out, err = run(capsys, *args)
    assert status == 2 and out == "", (status, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxem: error: "), err
    return lines[0]


def three_blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.normal(0, 1, (70, 3)), rng.normal(4, 1, (70, 3)), rng.normal([0, 6, -3], 1, (60, 3))]
    )


@pytest.fixture(scope="module")
def blob_files(tmp_path_factory):
    """blobs.csv (a,b,c), swapped.csv (the same data as c,b,a), noheader.csv, and the model
    fitted on blobs.csv."""
    folder = tmp_path_factory.mktemp("blobs")
    X = three_blobs()
    np.savetxt(folder / "blobs.csv", X, delimiter=",", header="a,b,c", comments="")
    np.savetxt(folder / "swapped.csv", X[:, ::-1], delimiter=",", header="c,b,a", comments="")
    np.savetxt(folder / "noheader.csv", X, delimiter=",")
    assert main(["fit", str(folder / "blobs.csv"), "-k", "3", "--out", str(folder / "m.npz")]) == 0
    return folder, X


def predictions(capsys, *args) -> np.ndarray:
    status, out, _ = run(capsys, "predict", *args)
    assert status == 0
    return np.loadtxt(out.splitlines()[1:], delimiter=",")


def test_predict_picks_the_models_columns_by_name(capsys, blob_files):
    folder, X = blob_files
    capsys.readouterr()
    model, params, _ = jaxem.load(folder / "m.npz")
    assert jaxem.io.load_columns(folder / "m.npz") == ["a", "b", "c"]
    expected = np.asarray(model.predict(params, X))
    straight = predictions(capsys, folder / "m.npz", folder / "blobs.csv")
    swapped = predictions(capsys, folder / "m.npz", folder / "swapped.csv")
    np.testing.assert_array_equal(straight[:, 0], expected)
    np.testing.assert_array_equal(swapped[:, 0], expected)  # by name, not by position
    np.testing.assert_allclose(swapped[:, 1:], straight[:, 1:], atol=1e-12)
    message = error_line(capsys, "predict", folder / "m.npz", folder / "swapped.csv",
                         "--columns", "c,b,a")  # fmt: skip
    assert "fitted on the columns a,b,c" in message
    (folder / "other.csv").write_text("a,b,x\n1,2,3\n")
    message = error_line(capsys, "predict", folder / "m.npz", folder / "other.csv")
    assert "no column 'c'" in message and "fitted on the columns a,b,c" in message


def test_a_file_without_header_is_refused_unless_said(capsys, blob_files):
    folder, X = blob_files
    capsys.readouterr()
    message = error_line(capsys, "fit", folder / "noheader.csv", "-k", 3)
    assert "holds numbers only" in message and "--no-header" in message
    status, out, _ = run(capsys, "fit", folder / "noheader.csv", "-k", 3, "--no-header", "-q")
    assert status == 0 and f"{len(X)} samples" in out
    # without names to match, the columns are taken in order
    by_position = predictions(capsys, folder / "m.npz", folder / "noheader.csv", "--no-header")
    by_name = predictions(capsys, folder / "m.npz", folder / "blobs.csv")
    np.testing.assert_array_equal(by_position, by_name)


def test_predict_out_dash_is_standard_output_and_model_files_refuse_it(
    capsys, blob_files, tmp_path
):
    folder, _ = blob_files
    capsys.readouterr()
    status, out, _ = run(capsys, "predict", folder / "m.npz", folder / "blobs.csv", "--out", "-")
    assert status == 0 and out.startswith("label,p0,p1,p2\n")
    for option in ("--out", "--json"):
        message = error_line(capsys, "fit", folder / "blobs.csv", "-k", 2, option, "-")
        assert f"{option} needs a file name" in message
    assert not (tmp_path / "-").exists()


def test_value_errors_name_the_line_and_column(capsys, tmp_path):
    data = tmp_path / "answers.csv"
    data.write_text("q1,q2\n0,1\n1,7\n0,0\n")
    message = error_line(capsys, "fit", data, "-k", 2, "--family", "bernoulli")
    assert re.search(r"answers.csv, line 3, column 'q2': .*the cell is 7", message), message
    counts = tmp_path / "counts.csv"
    counts.write_text("n,m\n1,2\n3,4\n-1,0\n")
    message = error_line(capsys, "fit", counts, "-k", 2, "--family", "poisson")
    assert re.search(r"counts.csv, line 4, column 'n': .*the cell is -1", message), message


def test_options_that_do_not_apply_are_errors(capsys, tmp_path):
    data = tmp_path / "answers.csv"
    data.write_text("q1,q2\n0,1\n1,1\n0,0\n")
    message = error_line(capsys, "fit", data, "-k", 2, "--family", "bernoulli",
                         "--covariance-type", "diag")  # fmt: skip
    assert "--covariance-type does not apply to --family bernoulli" in message
    message = error_line(capsys, "fit", data, "-k", 2, "--dof", "shared")
    assert "--dof does not apply to --family gaussian" in message
    message = error_line(capsys, "fit", data, "-k", 2, "--family", "t", "--dof", "-3")
    assert "--dof: expected per_component, shared or a number > 0" in message
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,4\n5,7\n")
    message = error_line(capsys, "select", small, "-k", "1-6")
    assert "K=4 exceeds the 3 rows" in message


def test_predict_on_missing_values_says_to_refit(capsys, blob_files, tmp_path):
    folder, _ = blob_files
    data = tmp_path / "nan.csv"
    data.write_text("a,b,c\n1,2,NA\n")
    capsys.readouterr()
    message = error_line(capsys, "predict", folder / "m.npz", data)
    assert "refit it with jaxem fit --missing" in message and "pass --missing" not in message


def test_plot_of_more_than_two_columns_says_which(capsys, blob_files):
    pytest.importorskip("matplotlib")
    folder, _ = blob_files
    capsys.readouterr()
    status, out, _ = run(capsys, "fit", folder / "blobs.csv", "-k", 3, "-q",
                         "--plot", folder / "fit.png")  # fmt: skip
    assert status == 0
    assert "columns 'a' and 'b' (the first two of 3" in out


def test_categorical_summary_shows_each_columns_own_categories(capsys, tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "survey.csv"
    two = rng.integers(0, 2, 120)
    seven = np.where(two == 1, rng.integers(0, 3, 120), rng.integers(3, 7, 120))
    np.savetxt(data, np.stack([two, seven], 1), fmt="%d", delimiter=",", header="yes_no,scale",
               comments="")  # fmt: skip
    status, out, _ = run(capsys, "fit", data, "-k", 2, "--family", "categorical", "-q",
                         "--prior", "default", "--json", tmp_path / "s.json")  # fmt: skip
    assert status == 0
    block = out.split("column 'yes_no'")[1].split("column 'scale'")[0].splitlines()
    assert block[1].split() == ["component", "0", "1"]  # two categories, not seven
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    for k in range(2):
        row = block[2 + k].split()
        assert int(row[0]) == k
        np.testing.assert_allclose([float(v) for v in row[1:]], summary["probs"][k][0][:2],
                                   atol=5e-5)  # fmt: skip
    scale = out.split("column 'scale'")[1].splitlines()
    assert scale[1].split() == ["component"] + [str(v) for v in range(7)]


def test_icl_table_does_not_speak_of_bic(capsys, blob_files):
    folder, _ = blob_files
    capsys.readouterr()
    status, out, _ = run(capsys, "select", folder / "blobs.csv", "-k", "1-2",
                         "--covariance-types", "full", "--criterion", "icl", "-q",
                         "--n-init", 2)  # fmt: skip
    assert status == 0 and out.startswith("ICL (lower is better)\n") and "BIC" not in out


def test_select_ranks_any_family(capsys, tmp_path):
    """``select --family poisson``: a grid over K for Poisson mixtures; K = 1 is the closed form
    (rates at the column means), and the JSON names the best cell."""
    from scipy import stats

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.poisson([1, 2], (60, 2)), rng.poisson([8, 6], (40, 2))])
    path = tmp_path / "counts.csv"
    np.savetxt(path, X, delimiter=",", header="u,v", comments="", fmt="%d")
    status, out, _ = run(capsys, "select", path, "-k", "1-3", "--family", "poisson", "-q",
                         "--n-init", 4, "--json", tmp_path / "t.json")  # fmt: skip
    assert status == 0 and "Poisson" in out and "best: Mixture(Poisson, 2)" in out
    import json

    summary = json.loads((tmp_path / "t.json").read_text())
    loglik = stats.poisson.logpmf(X, X.mean(axis=0)).sum()
    bic_1 = -2 * loglik + 2 * np.log(len(X))
    assert np.isclose(summary["table"]["Poisson"]["1"], bic_1, rtol=1e-5)  # float32 CLI
    assert summary["best"] == {"n_components": 2, "column": "Poisson", "family": "poisson"}
    line = error_line(capsys, "select", path, "--family", "poisson", "--covariance-types", "full")
    assert "--covariance-types does not apply to --family poisson" in line


def test_a_closed_pipe_ends_quietly(blob_files):
    folder, _ = blob_files
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait()  # the pipe's reading end is closed before jaxem writes
    run = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", "predict", folder / "m.npz", folder / "blobs.csv"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader.stdin.close()
    assert "Traceback" not in run.stderr and "BrokenPipeError" not in run.stderr
    assert run.returncode == 141


@pytest.mark.parametrize(
    "name, text",
    [
        ("excel.csv", "\ufeffa,b\n"),  # a spreadsheet's byte-order mark
        ("semicolons.csv", "a;b\n"),
        ("tabs.tsv", "a\tb\n"),
        ("trailing.csv", "a,b,\n"),  # a delimiter at the end of every line
    ],
)
def test_spreadsheet_files_read_as_their_plain_csv(capsys, tmp_path, name, text):
    X = three_blobs()[:, :2]
    separator = {"excel.csv": ",", "semicolons.csv": ";", "tabs.tsv": "\t", "trailing.csv": ","}
    end = "," if name == "trailing.csv" else ""
    rows = "".join(f"{float(x)!r}{separator[name]}{float(y)!r}{end}\n" for x, y in X)
    (tmp_path / name).write_text(text + rows, encoding="utf-8")
    plain = tmp_path / "plain.csv"
    np.savetxt(plain, X, delimiter=",", header="a,b", comments="")
    status, _, _ = run(capsys, "fit", tmp_path / name, "-k", 2, "-q", "--out", tmp_path / "m.npz")
    assert status == 0
    assert jaxem.io.load_columns(tmp_path / "m.npz") == ["a", "b"]
    _, params, _ = jaxem.load(tmp_path / "m.npz")
    run(capsys, "fit", plain, "-k", 2, "-q", "--out", tmp_path / "p.npz")
    _, expected, _ = jaxem.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(params.means, expected.means)  # the same numbers were read


def test_a_decimal_comma_is_named(capsys, tmp_path):
    data = tmp_path / "comma.csv"
    data.write_text("a;b\n1,5;2\n2,5;3\n")
    message = error_line(capsys, "fit", data, "-k", 1)
    assert "line 2, column 'a': '1,5' is not a number (a decimal comma" in message


def test_select_prints_mclusts_table_and_plots_it(capsys, blob_files, tmp_path):
    """``--table mclust``: R's layout with mclust's sign (higher is better), the columns as
    given; ``--plot``: the criterion against K as a PNG."""
    folder, _ = blob_files
    capsys.readouterr()
    status, out, _ = run(capsys, "select", folder / "blobs.csv", "-k", "1-2",
                         "--covariance-types", "EEE,VVV", "--table", "mclust", "-q",
                         "--n-init", 2, "--json", tmp_path / "t.json",
                         "--plot", tmp_path / "bic.png")  # fmt: skip
    import json

    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "Bayesian Information Criterion (BIC): "
    assert lines[1].split() == ["EEE", "VVV"]
    table = json.loads((tmp_path / "t.json").read_text())["table"]
    for row, k in zip(lines[2:4], ("1", "2"), strict=True):
        cells = row.split()
        assert cells[0] == k
        for cell, column in zip(cells[1:], ("EEE", "VVV"), strict=True):
            assert np.isclose(float(cell), -table[column][k], atol=1e-3)
    assert (tmp_path / "bic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_t_mixtures_on_the_command_line(capsys, tmp_path):
    """``fit --family t`` saves a t model whose ``predict`` adds each row's scale weight and
    outlier flag (`jaxem.Mixture.scale_weights`, `jaxem.Mixture.outliers`); ``select --family
    t`` has a column per structure. (Here the far point gets a component of its own: at K = 3
    the likelihood prefers it, see docs/robust_and_high_dimensional.md.)"""
    X = np.vstack([three_blobs(), [[40.0, -40.0, 40.0]]])
    path = tmp_path / "blobs.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c", comments="")
    status, out, _ = run(capsys, "fit", path, "-k", 3, "--family", "t", "--dof", "shared",
                         "--covariance-type", "EEV", "-q", "--out", tmp_path / "t.npz")  # fmt: skip
    assert status == 0 and "Mixture(t, covariance_type='EEV', dof='shared', 3)" in out
    model, params, _ = jaxem.load(tmp_path / "t.npz")
    status, out, _ = run(capsys, "predict", tmp_path / "t.npz", path)
    assert out.splitlines()[0] == "label,p0,p1,p2,scale_weight,outlier"
    table = np.loadtxt(out.splitlines()[1:], delimiter=",")
    expected_u = np.asarray(model.scale_weights(params, X.astype(np.float32)))
    np.testing.assert_allclose(table[:, 4], expected_u, rtol=1e-5, atol=1e-6)
    flags = np.asarray(model.outliers(params, X.astype(np.float32)))
    np.testing.assert_array_equal(table[:, 5], flags)
    status, out, _ = run(capsys, "select", path, "-k", "2-3", "--family", "t",
                         "--covariance-types", "VVV,EEE", "-q", "--n-init", 2)  # fmt: skip
    assert status == 0 and "covariance_type='tied'" in out and "best: Mixture(t" in out


def test_factor_analysers_on_the_command_line(capsys, tmp_path):
    """``fit --factors 2`` fits a mixture of factor analysers (the model file's parameters are
    those `jaxem.fit` gives from the same start); ``select --factors 1-2 --variants`` has a
    column per (q, variant)."""
    rng = np.random.default_rng(0)
    loadings = rng.normal(size=(2, 6, 2))
    X = np.vstack(
        [
            j * 4 + rng.normal(size=(80, 2)) @ loadings[j].T + rng.normal(size=(80, 6))
            for j in range(2)
        ]
    )
    path = tmp_path / "f.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c,d,e,f", comments="")
    status, out, _ = run(capsys, "fit", path, "-k", 2, "--factors", 2, "--variant", "CUU", "-q",
                         "--out", tmp_path / "f.npz")  # fmt: skip
    assert status == 0 and "Mixture(factors, n_factors=2, variant='CUU', 2)" in out
    model, params, _ = jaxem.load(tmp_path / "f.npz")
    covariances = np.asarray(model.family.component_covariances(params.components, 2))
    assert np.all(np.linalg.eigvalsh(covariances) > 0)
    status, out, _ = run(capsys, "select", path, "-k", "1-2", "--factors", "1-2", "--variants",
                         "UUU,CCC", "-q", "--n-init", 2)  # fmt: skip
    assert status == 0 and out.count("variant='") >= 5  # four columns and the best
    message = error_line(capsys, "select", path, "--variants", "UUU")
    assert "--variants does not apply to --family gaussian" in message
    message = error_line(capsys, "fit", path, "-k", 2, "--factors", 2, "--family", "poisson")
    assert "--n-factors does not apply to --family poisson" in message


FAR_FROM_THE_ORIGIN = """
import json, sys
from jaxem.cli import main
folder = sys.argv[1]
status = [
    main(["fit", f"{folder}/utm.csv", "-k", "2", "-q", "--out", f"{folder}/m.npz",
          "--json", f"{folder}/fit.json"]),
    main(["select", f"{folder}/utm.csv", "-k", "1-2", "--covariance-types", "VVV", "-q",
          "--json", f"{folder}/select.json"]),
    main(["predict", f"{folder}/m.npz", f"{folder}/utm.csv", "--out", f"{folder}/labels.csv"]),
]
print(json.dumps(status))
"""


def test_coordinates_float32_cannot_resolve_are_fitted_in_float64(tmp_path):
    """Projected coordinates (metres: 2.5e5 and 4.1e6, spread of a few metres) in a process
    that computes in float32, as the command line runs by default: float32 spaces such values
    0.016 and 0.5 apart, and the fit reported a log-likelihood of +21593. The command says so
    on stderr and fits in float64: scikit-learn's float64 maximum; select and predict too (the
    model is saved in float64)."""
    from sklearn.mixture import GaussianMixture as Reference

    rng = np.random.default_rng(1)
    offsets = [250000.0, 4100000.0]
    blobs = [rng.normal([0, 0], [1, 1], (300, 2)), rng.normal([4, 2], [0.5, 1.5], (200, 2))]
    X = np.round(np.concatenate(blobs) + offsets, 3)
    np.savetxt(tmp_path / "utm.csv", X, delimiter=",", header="easting,northing", comments="")
    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_ENABLE_X64"}
    env["JAXEM_NO_CACHE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", FAR_FROM_THE_ORIGIN, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0]"
    notes = [line for line in done.stderr.splitlines() if line.startswith("jaxem:")]
    assert notes[0].startswith("jaxem: computing in float64: column 'easting' has values up to")
    assert "the model was saved in float64" in notes[-1]
    assert "UserWarning" not in done.stderr  # no float64 array truncated anywhere
    reference = Reference(2, covariance_type="full", tol=1e-10, n_init=4, random_state=0).fit(X)
    loglik = reference.score(X) * len(X)
    fitted = __import__("json").loads((tmp_path / "fit.json").read_text())
    np.testing.assert_allclose(fitted["log_likelihood"], loglik, rtol=1e-6)  # tol 1e-6 a row
    table = __import__("json").loads((tmp_path / "select.json").read_text())["table"]
    bic = reference.bic(X)
    np.testing.assert_allclose(table["VVV"]["2"], bic, rtol=1e-6)
    labels = np.loadtxt(tmp_path / "labels.csv", delimiter=",", skiprows=1)[:, 0]
    agree = np.mean(labels == reference.predict(X))
    assert max(agree, 1 - agree) == 1.0
