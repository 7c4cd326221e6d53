"""The ``jaxem`` command line: fit, select and predict mixtures on CSV files.

::

    jaxem fit DATA.csv -k 3 [--family gaussian|t|bernoulli|categorical|poisson] [--dof shared]
              [--covariance-type full] [--prior default] [--n-init 4]
              [--seed 0] [--columns a,b] [--out model.npz] [--json summary.json] [--plot fig.png]
    jaxem fit DATA.csv -k 3 --factors 2 [--variant UUU]
    jaxem select DATA.csv [-k 1-9] [--family gaussian] [--covariance-types VVV,EEE]
                 [--factors 1-3 [--variants UUU,CUU]]
                 [--criterion bic] [--table mclust] [--plot bic.png] [--out best.npz]
    jaxem predict model.npz DATA.csv [--columns a,b] [--out labels.csv | --out -]
    jaxem demo [--plot demo.png]

A CSV file has a header row (``--no-header`` when it has none) and numeric columns
(``--columns`` picks some of them); a saved model keeps the names of its columns, which
``predict`` picks by name. Problems
with the input (a missing, empty or malformed file, a cell that is not a number, too few rows
for K, an unknown option value) print one line on stderr and exit with status 2. Restarts and
model selection show a progress bar on a terminal, unless ``--quiet``.

The fits run in the default JAX precision (float32 unless the process enables float64), except
for data that float32 cannot resolve: a column whose float32 spacing at its largest value
exceeds a thousandth of its standard deviation (coordinates in metres, timestamps: values far
from the origin for their spread) is fitted in float64, with a note on stderr, and so is
``predict`` with a model saved in float64.
Compiled programs are kept on disk between runs (`jaxem.compilation_cache`, in
``~/.cache/jaxem/xla`` or ``$JAXEM_CACHE_DIR``), unless ``JAXEM_NO_CACHE`` is set.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from jaxem import uncertainty
from jaxem.capabilities import of_family, of_model
from jaxem.compiler import with_options
from jaxem.families import factor_analyser, registry
from jaxem.families.gaussian import structure as structures
from jaxem.mixture import Mixture
from jaxem.sources import is_number
from jaxem.validation import unresolved_column

if TYPE_CHECKING:
    from jaxem.model_selection import SelectResult


class CommandError(Exception):
    """A problem with the command's input: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise CommandError(message)


# -- reading data ----------------------------------------------------------------------------


MISSING_CELLS = ("", "NA", "NaN", "nan", "N/A")
MISSING_HINT = " (for values missing at random, pass --missing)"


class Table(NamedTuple):
    """A CSV file's numbers: ``X`` ``(N, D)`` float64, the column names and, per row, its line
    in the file (for messages about a cell)."""

    X: np.ndarray
    names: list[str]
    lines: list[int]
    path: Path


def read_csv(
    path: str | Path,
    columns: str | None = None,
    missing: bool = False,
    header: bool = True,
    missing_hint: str = MISSING_HINT,
) -> Table:
    """The numeric table of a CSV file with a header row (without one, ``header=False``: the
    columns are named 1, 2, ...). ``columns`` (``"a,b"``) picks columns by name; with
    ``missing``, an empty cell, ``NA``, ``NaN`` or ``N/A`` is a missing value (NaN), and
    without it such a cell's message ends with ``missing_hint``. Raises `CommandError` naming
    the file, and for a bad cell its line and column; a first line of numbers only is taken
    for data, not a header, and refused (``--no-header`` reads it as data)."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    if path.is_dir():
        raise CommandError(f"{path}: is a directory, not a CSV file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark dropped
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"{path}: cannot be read as text ({e})") from None
    # a blank line is skipped; with missing values, a line of empty fields ("," for two
    # columns) is a row with nothing observed, kept so that predict answers every row
    lines = [
        (i + 1, row)
        for i, row in enumerate(csv.reader(text.splitlines(), delimiter=_delimiter(text)))
        if any(row) or (missing and len(row) > 1)
    ]
    if not lines:
        raise CommandError(f"{path}: the file is empty")
    # a delimiter at the end of every line (as some spreadsheets write): no column there
    if all(len(row) > 1 and not row[-1].strip() for _, row in lines):
        lines = [(line, row[:-1]) for line, row in lines]
    if header:
        _, names = lines[0]
        names = [name.strip() for name in names]
        if all(is_number(name) for name in names):
            raise CommandError(
                f"{path}: the first line ({','.join(names)}) holds numbers only: it looks like "
                "data, not a header row; add a header row, or pass --no-header"
            )
        lines = lines[1:]
        if not lines:
            raise CommandError(f"{path}: a header row but no data rows")
    else:
        names = [str(j + 1) for j in range(len(lines[0][1]))]
    if columns is None:
        picked = list(range(len(names)))
    else:
        picked = []
        for name in (c.strip() for c in columns.split(",")):
            if name not in names:
                raise CommandError(
                    f"{path}: no column {name!r} (the header has: {', '.join(names)})"
                )
            picked.append(names.index(name))
    X = np.empty((len(lines), len(picked)))
    for r, (line, row) in enumerate(lines):
        if len(row) != len(names):
            what = "the header has" if header else "the first line has"
            raise CommandError(f"{path}, line {line}: {len(row)} fields where {what} {len(names)}")
        for c, j in enumerate(picked):
            cell = row[j].strip()
            if missing and cell in MISSING_CELLS:
                X[r, c] = math.nan
                continue
            try:
                value = float(cell)
            except ValueError:
                what = "an empty cell" if not cell else f"{cell!r} is not a number"
                hint = "" if columns else " (pick numeric columns with --columns)"
                if cell in MISSING_CELLS:
                    hint = missing_hint
                elif re.fullmatch(r"[-+]?\d+,\d+", cell):
                    hint = " (a decimal comma: write numbers with a decimal point)"
                raise CommandError(
                    f"{path}, line {line}, column {names[j]!r}: {what}{hint}"
                ) from None
            if not math.isfinite(value):
                raise CommandError(
                    f"{path}, line {line}, column {names[j]!r}: {cell!r} is not a finite number"
                    + (missing_hint if math.isnan(value) else "")
                )
            X[r, c] = value
    return Table(X, [names[j] for j in picked], [line for line, _ in lines], path)


def _delimiter(text: str) -> str:
    """The first line's delimiter: a comma, or else a semicolon or a tab (files written where
    the decimal mark is a comma, tab-separated files) when the first line has one."""
    first = text.split("\n", 1)[0]
    if "," in first:
        return ","
    for other in (";", "\t"):
        if other in first:
            return other
    return ","


_CELL = re.compile(r"\bX\[(\d+), (\d+)\] = (\S+)")


@contextlib.contextmanager
def cells_named(table: Table):
    """Turns a model's complaint about ``X[row, column]`` (a value outside the family's
    support, say) into one naming the file, its line and the column's name."""
    try:
        yield
    except ValueError as e:
        found = _CELL.search(str(e))
        if found is None:
            raise
        row, column = int(found.group(1)), int(found.group(2))
        what = _CELL.sub(f"the cell is {found.group(3)}", str(e)).replace("X must", "values must")
        raise CommandError(
            f"{table.path}, line {table.lines[row]}, column {table.names[column]!r}: {what}"
        ) from None


def _parse_ks(text: str) -> list[int]:
    """``"3"``, ``"1-6"`` or ``"2,3,5"``."""
    try:
        if "-" in text:
            lo, hi = (int(t) for t in text.split("-"))
            ks = list(range(lo, hi + 1))
        else:
            ks = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected K, a range like 1-6 or a list like 2,3,5; got {text!r}"
        ) from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"every K must be an integer >= 1; got {text!r}")
    return ks


def _parse_types(text: str) -> list[str]:
    types = [t.strip() for t in text.split(",")]
    for t in types:
        if t not in structures.all_names():
            raise argparse.ArgumentTypeError(
                f"unknown covariance type {t!r} (choose from {', '.join(structures.all_names())})"
            )
    return types


def _parse_variants(text: str) -> list[str]:
    variants = [t.strip() for t in text.split(",")]
    for v in variants:
        if v not in factor_analyser.VARIANTS:
            raise argparse.ArgumentTypeError(
                f"unknown variant {v!r} (choose from {', '.join(factor_analyser.VARIANTS)})"
            )
    return variants


def _bar(total: int, description: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=quiet or not sys.stderr.isatty())


# -- fitting ---------------------------------------------------------------------------------


def _fit_restarts(model, X, prior, args: argparse.Namespace):
    """`jaxem.fit_restarts` (the same starts and choice), one start after another so that
    a progress bar can follow them."""
    from jaxem.batch import best_start
    from jaxem.em import fit

    keys = jax.random.split(jax.random.key(args.seed), args.n_init)
    starts = [lambda key=key: model.init(key, X) for key in keys]
    deterministic = of_model(model).deterministic_start
    if deterministic is not None:  # mclust's hierarchical start, last as in fit_restarts
        starts.append(lambda: deterministic(X))
    results = []
    with _bar(len(starts), "restarts", args.quiet) as bar:
        for make_start in starts:
            start = make_start()
            accelerate = getattr(args, "accelerate", None)
            results.append(
                fit(
                    model,
                    X,
                    start,
                    prior=prior,
                    tol=args.tol,
                    max_iter=args.max_iter,
                    accelerate=accelerate,
                )
            )
            bar.update()
    return results[int(best_start([float(r.objective) for r in results]))]


def _summary(model, result, X, names, prior_name: str) -> dict:
    from jaxem.model_selection import bic

    params = result.params
    mixture = model.as_mixture_params(params)
    loglik = float(np.sum(np.asarray(model.score_samples(params, X))))
    components = {f: np.asarray(v).tolist() for f, v in mixture.components._asdict().items()}
    # the family's own configuration (covariance_type, n_categories, ...), as saved files hold it
    config = {k: v for k, v in dataclasses.asdict(model.family).items() if k != "missing"}
    description = {
        "class": type(model).__name__,
        "name": model.describe(),
        "family": type(model.family).name,
        "n_components": model.n_components,
        **config,
        "missing": of_family(model.family).missing,
        "parameters": list(components),
    }
    return {
        "model": description,
        "estimate": "MAP" if prior_name == "default" else "MLE",
        "prior": prior_name,
        "n_samples": int(X.shape[0]),
        "n_missing": int(np.count_nonzero(np.isnan(X))),
        "columns": names,
        "weights": np.asarray(mixture.weights).tolist(),
        **components,
        "objective": float(result.objective),
        "log_likelihood": loglik,
        "bic": float(bic(model, params, X)),
        "n_iter": int(result.n_iter),
        "n_evals": int(result.n_evals),
        "converged": bool(result.converged),
    }


# the summary shows a family's first parameter per component and column, headed by these
_HEADINGS = {"means": "mean", "probs": "P(1)", "rates": "rate"}


def _print_summary(s: dict, title: str) -> None:
    print(title)
    m = s["model"]
    objective = "log-likelihood" if s["estimate"] == "MLE" else "log-posterior (objective)"
    name = m["name"]
    print(
        f"  {name}, {s['estimate']}" + (" with the default prior" if s["estimate"] == "MAP" else "")
    )
    print(
        f"  {s['n_samples']} samples"
        + (f" ({s['n_missing']} values missing)" if s.get("n_missing") else "")
        + f"; log-likelihood {s['log_likelihood']:.4f} "
        f"({s['log_likelihood'] / s['n_samples']:.4f} per sample)"
    )
    if s["estimate"] == "MAP":
        print(f"  {objective} {s['objective']:.4f}")
    print(f"  BIC {s['bic']:.3f} (lower is better)")
    print(f"  iterations {s['n_iter']}, converged: {s['converged']}")
    field = m["parameters"][0]
    if np.ndim(s[field]) == 3:  # (K, D, C): per column, a probability per category
        _print_categorical(s)
        return
    label = _HEADINGS.get(field, field)
    width = max(10, *(len(n) + 2 for n in s["columns"]))
    print("  component  weight" + "".join(f"{label + ' ' + n:>{width + 5}}" for n in s["columns"]))
    for k, (w, row) in enumerate(zip(s["weights"], s[field], strict=True)):
        print(f"  {k:>9}  {w:6.4f}" + "".join(f"{v:>{width + 5}.4f}" for v in row))


def _print_categorical(s: dict) -> None:
    """The weights, then for each column a table of its categories' probabilities per
    component (only the column's own categories)."""
    print("  component  weight")
    for k, w in enumerate(s["weights"]):
        print(f"  {k:>9}  {w:6.4f}")
    for d, (name, n_values) in enumerate(
        zip(s["columns"], s["model"]["n_categories"], strict=True)
    ):
        print(f"  column {name!r}: P(value) for the values 0..{n_values - 1}")
        print("  component" + "".join(f"{v:>8}" for v in range(n_values)))
        for k, probs in enumerate(s["probs"]):
            print(f"  {k:>9}" + "".join(f"{p:>8.4f}" for p in probs[d][:n_values]))


def _write_json(path: str, summary: Any) -> None:
    try:
        with open(path, "w") as f:
            json.dump(summary, f, indent=2)
    except OSError as e:
        raise CommandError(f"{path}: cannot write ({e.strerror})") from None


def _save(path: str, model, params, prior, columns: list[str]) -> None:
    from jaxem.io import save

    try:
        save(path, model, params, prior, columns=columns)
    except OSError as e:
        raise CommandError(f"{path}: cannot write ({e.strerror})") from None


def _prior(model, X, name: str):
    from jaxem.priors import default_prior

    return default_prior(model, X) if name == "default" else None


OUTLIER_LEVEL = 0.01  # predict's outlier column for t mixtures (jaxem.Mixture.outliers)
DOF_HELP = "t only: the degrees of freedom, per_component (default), shared, or a number (fixed)"


def _parse_dof(text: str) -> str | float:
    if text in ("per_component", "shared"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected per_component, shared or a number > 0; got {text!r}"
        )
    return value


def _family_name(args: argparse.Namespace) -> str:
    """``--family``, or ``factors`` where ``--factors`` is given with the default family."""
    if args.factors is not None and args.family == "gaussian":
        return "factors"
    return args.family


def _family_class(name: str, options: dict) -> type:
    """The family ``--family`` names, with ``options`` it declares (``CommandError`` else)."""
    cls = registry.by_family_name(name)
    for option, value in options.items():
        if value is not None and option not in cls.options:
            flag = "--" + option.replace("_", "-")
            raise CommandError(f"{flag} does not apply to --family {name}")
    return cls


def _model(k: int, family: type, X: np.ndarray, missing: bool = False, **options):
    """The mixture of ``k`` components of the family class ``family`` for data ``X`` (its
    ``for_data``: a categorical family takes each column's largest code plus one categories)."""
    from jaxem.gaussian_mixture import mixture_of

    given = {name: value for name, value in options.items() if value is not None}
    return mixture_of(family.for_data(X, missing, **given), k)


# -- plotting --------------------------------------------------------------------------------


def _ellipse_points(mean: np.ndarray, cov: np.ndarray, radius: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    t = np.linspace(0.0, 2 * np.pi, 100)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (mean[:, None] + vectors @ (np.sqrt(np.maximum(values, 0))[:, None] * circle) * radius).T


def _covariance_2d(model, params, k: int) -> np.ndarray:
    """Component ``k``'s covariance in the first two features, ``(2, 2)``."""
    components = model.as_mixture_params(params).components
    c = model.family.component_covariances(components, model.n_components)
    return np.asarray(c, dtype=np.float64)[k, :2, :2]


def _pyplot() -> Any:
    """matplotlib's pyplot on a file backend, or the CommandError that says how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs matplotlib: pip install 'jaxem[plot]'") from None
    return plt


def plot(path: str, X: np.ndarray, names: list[str], panels: list[tuple]) -> None:
    """One panel per ``(title, model, params)``: the data (first two columns) coloured by
    component, each component's mean and its 1- and 2-sigma ellipses."""
    plt = _pyplot()
    if X.shape[1] < 2:
        raise CommandError("--plot needs at least two columns")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, model, params) in zip(axes[0], panels, strict=True):
        labels = np.asarray(model.predict(params, X))
        ax.scatter(X[:, 0], X[:, 1], c=labels, s=10, cmap="tab10", vmin=0, vmax=9, alpha=0.7)
        means = np.asarray(params.means, dtype=np.float64)
        for k in range(model.n_components):
            cov = _covariance_2d(model, params, k)
            for radius, style in ((1.0, "-"), (2.0, "--")):
                e = _ellipse_points(means[k, :2], cov, radius)
                ax.plot(e[:, 0], e[:, 1], style, color="black", linewidth=1)
            ax.plot(*means[k, :2], "k+", markersize=10)
        ax.set_title(title)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise CommandError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        plt.close(fig)


def _plot_table(path: str, result: SelectResult) -> None:
    """The criterion against K per column of ``result``'s table (`SelectResult.plot`)."""
    plt = _pyplot()
    ax = result.plot()
    try:
        ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise CommandError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        plt.close(ax.figure)
    print(f"figure: {path}")


# -- commands --------------------------------------------------------------------------------


def _output_path(value: str | None, option: str) -> str | None:
    """An output file option: ``-`` (standard output) is refused where a file is written."""
    if value == "-":
        raise CommandError(f"{option} needs a file name ('-', standard output, is not supported)")
    return value


def _cmd_fit(args: argparse.Namespace) -> int:
    for option in ("out", "json", "plot"):
        _output_path(getattr(args, option), f"--{option}")
    options = {
        "covariance_type": args.covariance_type,
        "dof": args.dof,
        "n_factors": args.factors,
        "variant": args.variant,
    }
    family = _family_class(_family_name(args), options)
    table = read_csv(args.data, args.columns, args.missing, not args.no_header)
    X, names = table.X, table.names
    _compute_in_float64(args, unresolved_column(X, names))
    with cells_named(table):
        model = _model(args.n_components, family, X, args.missing, **options)
    if args.plot and of_family(model.family).component_covariances is None:
        raise CommandError("--plot draws Gaussian mixtures only")
    if args.se == "sem" and args.missing:
        raise CommandError("--se sem needs data without missing values; use observed or oakes")
    with cells_named(table):
        prior = _prior(model, X, args.prior)
        result = _fit_restarts(model, X, prior, args)
    summary = _summary(model, result, X, names, args.prior)
    hierarchical = of_model(model).deterministic_start is not None
    extra = " and the hierarchical one" if hierarchical else ""
    _print_summary(summary, f"{args.data}: best of {args.n_init} starts{extra}")
    if args.se:
        with cells_named(table):
            errors = uncertainty.standard_errors(model, result, X, prior=prior, method=args.se)
        print()
        print(_with_columns(errors.summary(), names))
        summary["standard_errors"] = {
            n: float(v)
            for n, v in zip(errors.names, np.sqrt(np.diag(errors.covariance)), strict=True)
        }
    if args.out:
        _save(args.out, model, result.params, prior, names)
    if args.json:
        _write_json(args.json, summary)
    if args.plot:
        title = f"{summary['estimate']}, {model.describe()}"
        plot(args.plot, X, names, [(title, model, result.params)])
        _plotted(args.plot, names)
    return 0


def _with_columns(text: str, names: list[str]) -> str:
    """``text`` with a legend of the columns' indices in the parameters' names."""
    legend = ", ".join(f"{i} = {name}" for i, name in enumerate(names))
    return f"{text}\n(columns: {legend})"


def _plotted(path: str, names: list[str]) -> None:
    shown = f"columns {names[0]!r} and {names[1]!r}"
    if len(names) > 2:
        shown += f" (the first two of {len(names)}; pick others with --columns)"
    print(f"figure: {path}, {shown}")


def _saved_in_float64(path: str) -> bool:
    """Whether the model file holds float64 arrays (False for a file `load` will refuse)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return any(data[key].dtype == np.float64 for key in data.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def _compute_in_float64(args: argparse.Namespace, reason: str | None) -> None:
    """Enter float64 for the rest of the command (``args.precision``, a `contextlib.ExitStack`
    that `main` closes) when ``reason`` says so and the process computes in float32 (once)."""
    if reason is None or jax.config.jax_enable_x64:
        return
    print(f"jaxem: computing in float64: {reason}", file=sys.stderr)
    args.precision.enter_context(jax.enable_x64(True))


def _cmd_select(args: argparse.Namespace) -> int:
    from jaxem.model_selection import default_covariance_types, select

    for option in ("out", "json", "plot"):
        _output_path(getattr(args, option), f"--{option}")
    family_name = _family_name(args)
    cls = _family_class(family_name, {"dof": args.dof})
    if args.variants is not None and family_name != "factors":
        raise CommandError(f"--variants does not apply to --family {family_name}")
    select_prior = None if args.prior == "none" else "default"
    structured = "covariance_type" in cls.options  # a grid over K and covariance structures
    if args.covariance_types is not None and not structured:
        raise CommandError(f"--covariance-types does not apply to --family {args.family}")
    table = read_csv(args.data, args.columns, args.missing, not args.no_header)
    X, names = table.X, table.names
    _compute_in_float64(args, unresolved_column(X, names))
    dof = {} if args.dof is None else {"dof": args.dof}
    with cells_named(table):
        family = cls.for_data(X, args.missing, **dof)
    if family_name == "factors":  # a column per number of factors and variant
        with cells_named(table):
            families = tuple(
                cls.for_data(X, args.missing, n_factors=q, variant=v)
                for q in (args.factors or [1])
                for v in (args.variants or factor_analyser.VARIANTS)
            )
        grid = {"families": families}
        n_columns = len(families)
    elif structured and cls.name != "gaussian":  # a column per structure of this family
        types = args.covariance_types or default_covariance_types(select_prior)
        with cells_named(table):
            families = tuple(cls.for_data(X, args.missing, covariance_type=t, **dof) for t in types)
        grid = {"families": families}
        n_columns = len(families)
    elif structured:
        # None: select's default, mclust's fourteen (those with a prior under --prior default)
        grid = {"covariance_types": args.covariance_types, "missing": args.missing}
        n_columns = len(args.covariance_types or default_covariance_types(select_prior))
    else:
        grid = {"families": family}
        n_columns = 1
    # the rows the model counts: those the model's effective weights keep (an observed value)
    from jaxem.gaussian_mixture import mixture_of

    weights = np.ones(X.shape[0], X.dtype)
    informative = of_model(mixture_of(family, 1)).effective_weights
    if informative is not None:
        weights = np.asarray(informative(X, weights))
    n_rows = int(np.count_nonzero(weights > 0))
    too_many = [k for k in args.n_components if k > n_rows]
    if too_many:
        raise CommandError(
            f"-k: K={too_many[0]} exceeds the {n_rows} rows of {args.data} (with an observed "
            "value); every K must be <= the number of rows"
        )
    with _bar(len(args.n_components) * n_columns, "select", args.quiet) as bar, cells_named(table):
        result = select(
            X,
            args.n_components,
            key=jax.random.key(args.seed),
            criterion=args.criterion,
            prior=select_prior,
            n_init=args.n_init,
            tol=args.tol,
            max_iter=args.max_iter,
            on_cell=lambda *_: bar.update(),
            **grid,
        )
    print(result.mclust() if args.table == "mclust" else repr(result))
    if args.plot:
        _plot_table(args.plot, result)
    if args.out:
        prior = _prior(result.model, X, args.prior)
        _save(args.out, result.model, result.params, prior, names)
    if args.json:
        table = {t: {str(k): v for k, v in col.items()} for t, col in result.table.items()}
        _write_json(
            args.json,
            {
                "criterion": result.criterion,
                "table": table,
                "singular": [list(c) for c in result.singular],
                "best": {
                    "n_components": result.model.n_components,
                    "column": result.column,
                    "family": type(result.model.family).name,
                    **{
                        k: v
                        for k, v in dataclasses.asdict(result.model.family).items()
                        if k != "missing"
                    },
                },
            },
        )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from jaxem.io import load, load_columns

    if not Path(args.model).exists():
        raise CommandError(f"{args.model}: no such file")
    if _saved_in_float64(args.model):  # before load checks its arrays with JAX
        _compute_in_float64(args, "the model was saved in float64")
    model, params, _ = load(args.model)
    # a file without a header has no names to match: its columns are taken in order
    fitted_on = None if args.no_header else load_columns(args.model)
    columns = args.columns
    if fitted_on is not None:
        wanted = ",".join(fitted_on)
        if columns is not None and [c.strip() for c in columns.split(",")] != fitted_on:
            raise CommandError(
                f"--columns {columns}: the model was fitted on the columns {wanted} and predict "
                "picks them by name (give them in that order, or leave --columns out)"
            )
        columns = wanted
    missing = of_model(model).missing
    hint = " (the model was fitted without missing values: refit it with jaxem fit --missing)"
    try:
        table = read_csv(args.data, columns, missing, not args.no_header, hint)
    except CommandError as e:
        if fitted_on is not None and "no column" in str(e):
            raise CommandError(f"{e}; the model was fitted on the columns {wanted}") from None
        raise
    X, names = table.X, table.names
    _compute_in_float64(args, unresolved_column(X, names))
    if isinstance(model, Mixture):
        d = np.shape(model.as_mixture_params(params).components[0])[1]
    else:
        d = np.shape(params.centres)[1]
    if X.shape[1] != d:
        raise CommandError(
            f"{args.data}: {X.shape[1]} columns ({', '.join(names)}) but the model has {d} "
            "features; pick them with --columns"
        )
    with cells_named(table):
        labels = np.asarray(model.predict(params, X))
        header = ["label"]
        out = labels[:, None].astype(np.float64)
        if isinstance(model, Mixture):
            proba = np.asarray(model.predict_proba(params, X), dtype=np.float64)
            header += [f"p{k}" for k in range(proba.shape[1])]
            out = np.concatenate([out, proba], axis=1)
            if of_family(model.family).scale_weights is not None:  # the t: robust weights
                u = np.asarray(model.scale_weights(params, X), dtype=np.float64)
                flags = np.asarray(model.outliers(params, X, OUTLIER_LEVEL), dtype=np.float64)
                header += ["scale_weight", "outlier"]
                out = np.concatenate([out, u[:, None], flags[:, None]], axis=1)
    lines = [",".join(header)] + [
        ",".join([str(int(row[0]))] + [f"{v:.6g}" for v in row[1:]]) for row in out
    ]
    text = "\n".join(lines) + "\n"
    if args.out and args.out != "-":
        try:
            Path(args.out).write_text(text)
        except OSError as e:
            raise CommandError(f"{args.out}: cannot write ({e.strerror})") from None
    else:
        sys.stdout.write(text)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from jaxem.datasets import load_faithful
    from jaxem.gaussian_mixture import GaussianMixture

    X, names = load_faithful()
    model = GaussianMixture(args.n_components, args.covariance_type)
    print(f"Old Faithful: {X.shape[0]} eruptions, columns {', '.join(names)}\n")
    panels = []
    for prior_name, title in (("none", "maximum likelihood"), ("default", "MAP, default prior")):
        prior = _prior(model, X, prior_name)
        result = _fit_restarts(model, X, prior, args)
        _print_summary(_summary(model, result, X, names, prior_name), title)
        print()
        panels.append((title, model, result.params))
    if args.plot:
        plot(args.plot, X, names, panels)
        _plotted(args.plot, names)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxem")
    except PackageNotFoundError:
        return "unknown"


NO_HEADER_HELP = "the file has no header row: every line is data, the columns are named 1, 2, ..."


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxem", description="EM for mixture models on CSV files")
    parser.add_argument("--version", action="version", version=f"jaxem {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, data=True, n_init=4, tol=1e-6, max_iter=500):
        if data:
            p.add_argument("data", help="CSV file with a header row")
            p.add_argument("--columns", help="comma-separated column names (default: all)")
            p.add_argument("--no-header", action="store_true", help=NO_HEADER_HELP)
            p.add_argument(
                "--prior",
                choices=["none", "default"],
                default="none",
                help="none: maximum likelihood; default: MAP with mclust's default prior",
            )
            p.add_argument(
                "--missing",
                action="store_true",
                help="empty cells, NA, NaN and N/A are values missing at random (EM then fits "
                "the observed values; default: they are errors)",
            )
        p.add_argument(
            "--n-init",
            type=int,
            default=n_init,
            help=f"random starts (default {n_init}); a mixture also starts from mclust's "
            "hierarchical partition (select: 0 leaves it alone, as Mclust)",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument(
            "--tol", type=float, default=tol, help=f"EM tolerance per sample (default {tol})"
        )
        p.add_argument("--max-iter", type=int, default=max_iter)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    fit = sub.add_parser(
        "fit", help="fit one mixture (Gaussian, t, Bernoulli, categorical, Poisson)"
    )
    common(fit)
    fit.add_argument("-k", "--n-components", type=int, required=True)
    fit.add_argument(
        "--family",
        choices=registry.names(),
        default="gaussian",
        help="the components: Gaussian (default), or independent binary, categorical (codes "
        "0, 1, ...) or count columns",
    )
    fit.add_argument(
        "--covariance-type",
        choices=structures.all_names(),
        help="Gaussian and t (default full; mclust's names too)",
    )
    fit.add_argument("--dof", type=_parse_dof, help=DOF_HELP)
    fit.add_argument(
        "--factors",
        type=int,
        metavar="Q",
        help="a mixture of factor analysers with Q factors (--family factors)",
    )
    fit.add_argument(
        "--variant",
        choices=factor_analyser.VARIANTS,
        help="factor analysers: pgmm's model (loadings, uniquenesses, isotropic; C common, U per "
        "component; default UUU)",
    )
    fit.add_argument(
        "--accelerate",
        choices=["squarem"],
        help="extrapolate along EM's steps (SQUAREM, monotone): far fewer passes over the data "
        "where EM crawls; --max-iter then counts its iterations, three passes each",
    )
    fit.add_argument(
        "--se",
        nargs="?",
        const="observed",
        choices=list(uncertainty.METHODS),
        help="print standard errors and 95%% Wald intervals (default method: the observed "
        "information; see jaxem.standard_errors); fit to a small --tol for them",
    )
    fit.add_argument("--out", help="save the model (.npz, see jaxem.load)")
    fit.add_argument("--json", help="write the summary as JSON")
    fit.add_argument("--plot", help="draw the data and the components (PNG)")
    fit.set_defaults(func=_cmd_fit)

    sel = sub.add_parser("select", help="choose K and the covariance type by BIC, AIC or ICL")
    common(sel, n_init=32, tol=1e-6, max_iter=1000)  # jaxem.select's defaults
    sel.add_argument(
        "-k",
        "--n-components",
        type=_parse_ks,
        default=list(range(1, 10)),
        help="numbers of components (default 1-9, as mclust)",
    )
    sel.add_argument(
        "--family",
        choices=registry.names(),
        default="gaussian",
        help="the components (default gaussian: the grid spans K and covariance types)",
    )
    sel.add_argument(
        "--covariance-types",
        type=_parse_types,
        default=None,
        metavar="T,T",
        help="Gaussian and t (default mclust's fourteen models; full,diag,spherical,tied "
        "are VVV,VVI,VII,EEE)",
    )
    sel.add_argument("--dof", type=_parse_dof, help=DOF_HELP)
    sel.add_argument(
        "--factors",
        type=_parse_ks,
        metavar="Q",
        help="mixtures of factor analysers with these numbers of factors (1-3, or 1,2,4)",
    )
    sel.add_argument(
        "--variants",
        type=_parse_variants,
        metavar="V,V",
        help="factor analysers: pgmm's models to try (default all eight, CCC to UUU)",
    )
    sel.add_argument("--criterion", choices=["bic", "aic", "icl"], default="bic")
    sel.add_argument(
        "--table",
        choices=["jaxem", "mclust"],
        default="jaxem",
        help="print the table as jaxem (lower is better) or as R's mclust prints it (its sign)",
    )
    sel.add_argument("--plot", help="draw the criterion against K per column (PNG)")
    sel.add_argument("--out", help="save the best model (.npz)")
    sel.add_argument("--json", help="write the table as JSON")
    sel.set_defaults(func=_cmd_select, least_n_init=0)  # 0: mclust's hierarchical start alone

    pred = sub.add_parser("predict", help="labels and responsibilities from a saved model")
    pred.add_argument("model", help="a model file written by --out or jaxem.save")
    pred.add_argument("data", help="CSV file with a header row")
    pred.add_argument(
        "--columns",
        help="comma-separated column names (default: those the model was fitted on, by name; "
        "all columns for a model saved without names)",
    )
    pred.add_argument("--no-header", action="store_true", help=NO_HEADER_HELP)
    pred.add_argument("--out", help="write the CSV here instead of standard output ('-')")
    pred.set_defaults(func=_cmd_predict)

    demo = sub.add_parser("demo", help="MLE and MAP fits of the bundled Old Faithful data")
    common(demo, data=False)
    demo.add_argument("-k", "--n-components", type=int, default=2)
    demo.add_argument("--covariance-type", choices=structures.all_names(), default="full")
    demo.add_argument("--plot", help="draw both fits side by side (PNG)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad input)."""
    # before JAX starts its backend (in this process, not when a test calls main)
    os.environ["XLA_FLAGS"] = with_options(os.environ.get("XLA_FLAGS", ""))
    try:
        args = _parser().parse_args(argv)
        if not os.environ.get("JAXEM_NO_CACHE"):
            from jaxem.compilation_cache import enable_compilation_cache

            enable_compilation_cache()
        for option, least in (("n_init", getattr(args, "least_n_init", 1)), ("max_iter", 1)):
            if getattr(args, option, least) < least:
                flag = "--" + option.replace("_", "-")
                raise CommandError(f"{flag} must be >= {least}; got {getattr(args, option)}")
        if getattr(args, "tol", 0.0) < 0 or not math.isfinite(getattr(args, "tol", 0.0)):
            raise CommandError(f"--tol must be a finite number >= 0; got {args.tol}")
        with contextlib.ExitStack() as precision:  # float64 where a command needs it
            args.precision = precision
            status = args.func(args)
            sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return status
    except CommandError as e:
        print(f"jaxem: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except ValueError as e:  # jaxem's own checks name the argument and the problem
        message = " ".join(str(e).split())
        print(f"jaxem: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
