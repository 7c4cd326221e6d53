"""Families by name, for files: `jaxem.save` writes a family's name and configuration, and
`jaxem.load` makes the family again from the class registered under that name (never from a
module named in the file: loading imports and runs nothing a file chooses).

A family describes what is saved of it: its configuration (a dataclass's fields) and its
parameter and prior types, the class attributes ``params_type`` and ``prior_type`` (NamedTuple
classes; ``prior_type`` None for a family without a prior); and, optionally, the name the
command line knows it by (``name``, with the ``options`` it takes and a classmethod
``for_data(X, missing, **options)``). jaxem's own families are registered
here; a family of one's own with ``jaxem.families.register(MyFamily)`` (also a decorator).
"""

from __future__ import annotations

import dataclasses
from typing import Any

_REGISTERED: dict[str, type] = {}
_NAMED: dict[str, type] = {}  # by the name a family declares (``name``: "gaussian")


def register(cls: type) -> type:
    """Register the family class ``cls`` under its class name, so that models over it save and
    load; returns ``cls``. ``TypeError`` unless it is a dataclass with ``params_type`` (and
    ``prior_type``, possibly None) naming NamedTuple classes."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register takes a family class that is a dataclass; got {cls!r}")
    for field in ("params_type", "prior_type"):
        kind = getattr(cls, field, None)  # the class's own declaration, read once here
        if kind is None and field == "params_type":
            raise TypeError(f"{cls.__name__} must declare params_type (its NamedTuple)")
        if kind is not None and not (isinstance(kind, type) and issubclass(kind, tuple)):
            raise TypeError(f"{cls.__name__}.{field} must be a NamedTuple class; got {kind!r}")
    known = _REGISTERED.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"another family is registered as {cls.__name__!r}: {known!r}")
    _REGISTERED[cls.__name__] = cls
    word = getattr(cls, "name", None)  # its command-line name, if it declares one
    if isinstance(word, str):
        _NAMED[word] = cls
    return cls


def name_of(family: Any) -> str:
    """The registered name of ``family``'s class; ``TypeError`` for an unregistered one."""
    name = type(family).__name__
    if _REGISTERED.get(name) is not type(family):
        raise TypeError(
            f"{name} is not a registered family: jaxem.families.register({name}) lets models "
            "over it save and load"
        )
    return name


def by_name(name: str) -> type:
    """The family class registered as ``name``; ``ValueError`` naming the known ones."""
    if name not in _REGISTERED:
        raise ValueError(f"no family {name!r} is registered (known: {sorted(_REGISTERED)})")
    return _REGISTERED[name]


def names() -> list[str]:
    """The names registered families declare (``name``), for the command line's ``--family``."""
    return list(_NAMED)


def by_family_name(name: str) -> type:
    """The registered family class that declares ``name`` (``"poisson"``); ``ValueError``
    naming the known ones."""
    if name not in _NAMED:
        raise ValueError(f"no family is named {name!r} (known: {names()})")
    return _NAMED[name]
