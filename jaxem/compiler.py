"""XLA options for the programs jaxem compiles itself, never JAX's or XLA's global configuration
behind the user's back.

The one option is CPU tuning. XLA's CPU backend (jaxlib 0.10) emits fused kernels through MLIR
"fusion emitters" by default; its older elemental emitter (``xla_cpu_use_fusion_emitters=False``)
compiles jaxem's programs faster and runs them faster. Measured on a 2-core CPU in float32:
`select`'s program for Old Faithful's spherical cells compiles in 1.4 s instead of 2.0 s (the
whole grid: 12.4 s instead of 16.5 s); one EM iteration of a full-covariance mixture on
200,000 x 5 takes 8.0 ms instead of 12.2 ms, diagonal 6.3 instead of 9.8. Other backends
ignore the option.

Where it applies: `jit` for programs compiled at the top level (`jaxem.select`'s grid), and
`with_options` for the ``XLA_FLAGS`` of a process jaxem starts itself (the command line sets
them before JAX starts its backend). JAX refuses compiler options on a ``jit`` nested inside
another, so the functions users may call inside their own ``jit`` (`jaxem.fit` and the rest)
compile with whatever the user configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def jit(fun: Callable, **kwargs: Any) -> Any:
    """``jax.jit(fun, compiler_options=OPTIONS, **kwargs)``: for top-level programs only."""
    return jax.jit(fun, compiler_options=OPTIONS, **kwargs)


def with_options(xla_flags: str) -> str:
    """``xla_flags`` (the value of ``XLA_FLAGS``) with `OPTIONS` appended, except those it
    already sets: the user's own choice wins."""
    flags = xla_flags.split()
    for name, value in OPTIONS.items():
        if not any(flag.lstrip("-").split("=")[0] == name for flag in flags):
            flags.append(f"--{name}={str(value).lower()}")
    return " ".join(flags)


__all__ = ["OPTIONS", "jit", "with_options"]
