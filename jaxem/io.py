"""Saving and loading fitted models as ``.npz`` files, without pickle.

A file holds the parameter arrays (``params/<field>``), the prior's (``prior/<field>``) when
there is one, and ``meta``: a JSON string with the format name and version, the model's class
and configuration. Loading never unpickles (``allow_pickle=False``), so a file cannot run code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any

import numpy as np

from jaxem import families
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
# a family's name -> (class, params type, prior type)
FAMILIES = {
    "Gaussian": (families.Gaussian, families.GaussianParams, families.GaussianPrior),
    "Bernoulli": (families.Bernoulli, families.BernoulliParams, families.BetaPrior),
    "Categorical": (families.Categorical, families.CategoricalParams, families.DirichletPrior),
    "Poisson": (families.Poisson, families.PoissonParams, families.GammaPrior),
}


def _config(model: Any) -> dict:
    if isinstance(model, GaussianMixture):
        fields = ("n_components", "covariance_type", "reg_covar", "missing")
        return {f: getattr(model, f) for f in fields}
    if isinstance(model, (Mixture, HiddenMarkovModel)):
        family = model.family
        if type(family).__name__ not in FAMILIES:
            raise TypeError(f"save knows the families {sorted(FAMILIES)}; got {family!r}")
        own = ("n_components",) if isinstance(model, Mixture) else ("n_states", "method")
        return {
            **{name: getattr(model, name) for name in own},
            "family": type(family).__name__,
            "family_config": dataclasses.asdict(family),
        }
    return dataclasses.asdict(model)


def _model(name: str, config: dict) -> Any:
    if name not in FAMILY_MODELS:
        return MODELS[name][0](**config)
    family = FAMILIES[config["family"]][0](**config["family_config"])
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


def save(path: str | os.PathLike, model: Any, params: Any, prior: Any = None) -> None:
    """Write ``model`` (its class and configuration, for a `jaxem.Mixture` or a
    `jaxem.HiddenMarkovModel` its family's),
    ``params`` and an optional ``prior`` to ``path`` (an ``.npz`` file). The arrays are stored as
    they are (dtype and bits)."""
    name = type(model).__name__
    if name not in MODELS or not isinstance(model, MODELS[name][0]):
        raise TypeError(f"save knows the models {sorted(MODELS)}; got {name}")
    _, params_type, prior_type = MODELS[name]
    if not isinstance(params, params_type):
        raise TypeError(f"params must be a {params_type.__name__}; got {type(params).__name__}")
    if prior is not None and (prior_type is None or not isinstance(prior, prior_type)):
        expected = "None" if prior_type is None else f"a {prior_type.__name__} or None"
        raise TypeError(f"prior must be {expected}; got {type(prior).__name__}")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": name,
        "config": _config(model),
        "prior": prior is not None,
    }
    arrays = _flat("params", params)
    if prior is not None:
        arrays.update(_flat("prior", prior))
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def load(path: str | os.PathLike) -> tuple[Any, Any, Any]:
    """Read a file written by `save`: ``(model, params, prior)``, the arrays as NumPy
    arrays bit-identical to those saved (``prior`` None when none was saved).

    Raises ``ValueError`` for a file that is not a jaxem model file (truncated, corrupted,
    foreign) or was written by a newer format version.
    """
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
    name = meta.get("model")
    if name not in MODELS:
        raise ValueError(f"{os.fspath(path)!r} holds an unknown model {name!r}")
    _, params_type, prior_type = MODELS[name]
    try:
        model = _model(name, meta["config"])
        inner_params = inner_prior = None
        if name in FAMILY_MODELS:
            _, inner_params, inner_prior = FAMILIES[meta["config"]["family"]]
        params = _unflat("params", params_type, contents, inner_params)
        prior = None
        if meta.get("prior"):
            prior = _unflat("prior", prior_type, contents, inner_prior)
        if isinstance(model, Mixture):
            first = np.asarray(model.as_mixture_params(params).components[0])
            model.check_params(params, first.shape[1], first.dtype)
        elif isinstance(model, HiddenMarkovModel):
            first = np.asarray(params.emissions[0])
            model.check_params(params, first.shape[1], first.dtype)
        elif np.shape(params.centres)[0] != model.n_clusters:
            raise ValueError(f"{np.shape(params.centres)[0]} centres for {model.n_clusters}")
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{os.fspath(path)!r} is incomplete or inconsistent: {err}") from None
    return model, params, prior
