"""Saving and loading fitted models as ``.npz`` files, without pickle.

A file holds the parameter arrays (``params/<field>``), the prior's (``prior/<field>``) when
there is one, and ``meta``: a JSON string with the format name and version, the model's class
and configuration, and the names of the data's columns when the caller gave them (the command
line does, so that ``jaxem predict`` picks a file's columns by name). Loading never unpickles
(``allow_pickle=False``), so a file cannot run code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxem.families import registry
from jaxem.gaussian_mixture import GaussianMixture, GaussianMixtureParams, GaussianMixturePrior
from jaxem.hmm import HiddenMarkovModel, HMMParams, HMMPrior
from jaxem.kmeans import KMeans, KMeansParams
from jaxem.mixture import Mixture, MixtureParams, MixturePrior

FORMAT = "jaxem-model"
VERSION = 1
MODELS = {
    "GaussianMixture": (GaussianMixture, GaussianMixtureParams, GaussianMixturePrior),
    "HiddenMarkovModel": (HiddenMarkovModel, HMMParams, HMMPrior),
    "KMeans": (KMeans, KMeansParams, None),
    "Mixture": (Mixture, MixtureParams, MixturePrior),
}
# models over a component family, whose family's parameters sit in a nested field
FAMILY_MODELS = {"Mixture": "components", "HiddenMarkovModel": "emissions"}


def _config(model: Any) -> dict:
    if isinstance(model, GaussianMixture):
        fields = ("n_components", "covariance_type", "reg_covar", "missing")
        return {f: getattr(model, f) for f in fields}
    if isinstance(model, (Mixture, HiddenMarkovModel)):
        family = model.family
        own = ("n_components",) if isinstance(model, Mixture) else ("n_states", "method")
        return {
            **{name: getattr(model, name) for name in own},
            "family": registry.name_of(family),  # the family describes itself
            "family_config": dataclasses.asdict(family),
        }
    return dataclasses.asdict(model)


def _model(name: str, config: dict) -> Any:
    if name not in FAMILY_MODELS:
        return MODELS[name][0](**config)
    family = registry.by_name(config["family"])(**config["family_config"])
    if name == "Mixture":
        return Mixture(family, config["n_components"])
    return HiddenMarkovModel(family, config["n_states"], config.get("method", "sequential"))


def _flat(prefix: str, tree: Any) -> dict:
    """``{"prefix/field": array}``, one level of nested NamedTuples as ``prefix/field/sub``."""
    out = {}
    for field in tree._fields:
        value = getattr(tree, field)
        if hasattr(value, "_fields"):
            out.update(_flat(f"{prefix}/{field}", value))
        else:
            out[f"{prefix}/{field}"] = np.asarray(value)
    return out


def _unflat(prefix: str, kind: Any, contents: dict, inner: Any = None) -> Any:
    values = {}
    for field in kind._fields:
        if field in FAMILY_MODELS.values() and inner is not None:
            values[field] = _unflat(f"{prefix}/{field}", inner, contents)
        else:
            values[field] = contents[f"{prefix}/{field}"]
    return kind(**values)


def save(
    path: str | os.PathLike,
    model: Any,
    params: Any,
    prior: Any = None,
    *,
    columns: Sequence[str] | None = None,
) -> None:
    """Write ``model`` (its class and configuration, for a `jaxem.Mixture` or a
    `jaxem.HiddenMarkovModel` its family's), ``params`` (one fit: a batch from
    `jaxem.fit_batch` is refused, save its members one by one), an optional ``prior`` and the
    optional names of the data's ``columns`` (one per feature, in order; `load_columns` reads
    them back) to ``path`` (an ``.npz`` file). The arrays are stored as they are (dtype and
    bits). Everything `load` checks is checked here first, so a file written is a file read."""
    name = type(model).__name__
    if name not in MODELS or not isinstance(model, MODELS[name][0]):
        raise TypeError(f"save knows the models {sorted(MODELS)}; got {name}")
    _, params_type, prior_type = MODELS[name]
    if not isinstance(params, params_type):
        raise TypeError(f"params must be a {params_type.__name__}; got {type(params).__name__}")
    if prior is not None and (prior_type is None or not isinstance(prior, prior_type)):
        expected = "None" if prior_type is None else f"a {prior_type.__name__} or None"
        raise TypeError(f"prior must be {expected}; got {type(prior).__name__}")
    n_features = _check_one_fit(model, params)
    if columns is not None:
        columns = [str(c) for c in columns]
        if len(columns) != n_features:
            raise ValueError(
                f"columns must name the model's {n_features} features; got {len(columns)} names"
            )
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": name,
        "config": _config(model),
        "prior": prior is not None,
        "columns": columns,
    }
    arrays = _flat("params", params)
    if prior is not None:
        arrays.update(_flat("prior", prior))
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def _check_one_fit(model: Any, params: Any) -> int:
    """The number of features of ``params``, after the checks `load` makes: shapes of one fit
    (``ValueError`` for a batch, with what to do instead)."""
    leaves = [np.asarray(a) for a in jax.tree.leaves(params)]
    expected_weights = 1 if isinstance(model, (Mixture, HiddenMarkovModel)) else 2
    first = leaves[0]
    if first.ndim > expected_weights:
        raise ValueError(
            f"params hold a batch of {first.shape[0]} fits (a leading axis, as from "
            "jaxem.fit_batch); save one fit at a time, e.g. "
            "jax.tree.map(lambda a: a[i], params)"
        )
    if isinstance(model, Mixture):
        components = np.asarray(model.as_mixture_params(params).components[0])
        model.check_params(params, components.shape[1], components.dtype)
        return int(components.shape[1])
    if isinstance(model, HiddenMarkovModel):
        emissions = np.asarray(params.emissions[0])
        model.check_params(params, emissions.shape[1], emissions.dtype)
        return int(emissions.shape[1])
    centres = np.asarray(params.centres)
    if centres.shape[0] != model.n_clusters:
        raise ValueError(f"{centres.shape[0]} centres for {model.n_clusters}")
    return int(centres.shape[-1])


def load_columns(path: str | os.PathLike) -> list[str] | None:
    """The names of the data's columns saved with a model (``save(..., columns=)``), one per
    feature in the model's order, or None when none were saved."""
    return _read(path)[0].get("columns")


def load(path: str | os.PathLike) -> tuple[Any, Any, Any]:
    """Read a file written by `save`: the tuple ``(model, params, prior)``, the arrays as
    NumPy arrays bit-identical to those saved (``prior`` None when none was saved; the column
    names, if saved, come from `load_columns`).

    Raises ``ValueError`` for a file that is not a jaxem model file (truncated, corrupted,
    foreign) or was written by a newer format version.
    """
    meta, contents = _read(path)
    name = meta["model"]
    _, params_type, prior_type = MODELS[name]
    try:
        model = _model(name, meta["config"])
        inner_params = inner_prior = None
        if name in FAMILY_MODELS:
            family_class = registry.by_name(meta["config"]["family"])
            inner_params, inner_prior = family_class.params_type, family_class.prior_type
        params = _unflat("params", params_type, contents, inner_params)
        prior = None
        if meta.get("prior"):
            prior = _unflat("prior", prior_type, contents, inner_prior)
        _check_one_fit(model, params)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{os.fspath(path)!r} is incomplete or inconsistent: {err}") from None
    return model, params, prior


def _read(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a jaxem model file, its format checked."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable jaxem model file (not an .npz archive)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise ValueError(f"{os.fspath(path)!r} is not a readable jaxem model file: {err}") from None
    if not isinstance(contents, dict) or "meta" not in contents:
        raise ValueError(f"{os.fspath(path)!r} is not a jaxem model file (no 'meta' entry)")
    try:
        meta = json.loads(str(contents["meta"]))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{os.fspath(path)!r}: its 'meta' entry is not valid JSON ({err})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a jaxem model file (format {meta!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} was written in format version {version!r}; this jaxem reads "
            f"versions up to {VERSION}: upgrade jaxem"
        )
    if meta.get("model") not in MODELS:
        raise ValueError(f"{os.fspath(path)!r} holds an unknown model {meta.get('model')!r}")
    columns = meta.get("columns")
    if columns is not None and not (
        isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    ):
        raise ValueError(f"{os.fspath(path)!r}: its column names are not a list of strings")
    return meta, contents
