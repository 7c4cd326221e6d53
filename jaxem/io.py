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

from jaxem.gaussian_mixture import GaussianMixture, GaussianMixtureParams
from jaxem.kmeans import KMeans, KMeansParams
from jaxem.priors import GaussianMixturePrior

FORMAT = "jaxem-model"
VERSION = 1
MODELS = {
    "GaussianMixture": (GaussianMixture, GaussianMixtureParams),
    "KMeans": (KMeans, KMeansParams),
}


def save(path: str | os.PathLike, model: Any, params: Any, prior: Any = None) -> None:
    """Write ``model`` (its class and configuration), ``params`` and an optional ``prior`` to
    ``path`` (an ``.npz`` file). The arrays are stored as they are (dtype and bits)."""
    name = type(model).__name__
    if name not in MODELS or not isinstance(model, MODELS[name][0]):
        raise TypeError(f"save knows the models {sorted(MODELS)}; got {name}")
    params_type = MODELS[name][1]
    if not isinstance(params, params_type):
        raise TypeError(f"params must be a {params_type.__name__}; got {type(params).__name__}")
    if prior is not None and not isinstance(prior, GaussianMixturePrior):
        raise TypeError(f"prior must be a GaussianMixturePrior or None; got {type(prior).__name__}")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": name,
        "config": dataclasses.asdict(model),
        "prior": prior is not None,
    }
    arrays = {f"params/{f}": np.asarray(getattr(params, f)) for f in params._fields}
    if prior is not None:
        arrays.update({f"prior/{f}": np.asarray(getattr(prior, f)) for f in prior._fields})
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
    model_type, params_type = MODELS[name]
    try:
        model = model_type(**meta["config"])
        params = params_type(**{f: contents[f"params/{f}"] for f in params_type._fields})
        prior = None
        if meta.get("prior"):
            prior = GaussianMixturePrior(
                **{f: contents[f"prior/{f}"] for f in GaussianMixturePrior._fields}
            )
        if isinstance(model, GaussianMixture):
            model.check_params(params, np.shape(params.means)[-1], params.means.dtype)
        elif np.shape(params.centres)[0] != model.n_clusters:
            raise ValueError(f"{np.shape(params.centres)[0]} centres for {model.n_clusters}")
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{os.fspath(path)!r} is incomplete or inconsistent: {err}") from None
    return model, params, prior
