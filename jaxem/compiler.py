"""XLA options for the programs jaxem compiles itself, never JAX's or XLA's global configuration
behind the user's back.

The one option is CPU tuning. XLA's CPU backend (jaxlib 0.10) emits fused kernels through MLIR
"fusion emitters" by default; its older elemental emitter (``xla_cpu_use_fusion_emitters=False``)
compiles jaxem's programs faster and runs them faster. Measured on a 2-core CPU in float32:
`select`'s program for Old Faithful's spherical cells compiles in 1.4 s instead of 2.0 s (the
whole grid: 12.4 s instead of 16.5 s); one EM iteration of a full-covariance mixture on
200,000 x 5 takes 8.0 ms instead of 12.2 ms, diagonal 6.3 instead of 9.8. Other backends
ignore the option.

Where it applies: jaxem's compiled entry points use `jit`, which passes the options when called
at the top level and compiles as a plain ``jax.jit`` inside the user's own ``jit``, ``vmap`` or
``grad`` (JAX refuses compiler options on a nested ``jit``; there the user's program decides).
The models' E- and M-steps and prior densities are `compiled_method`s: called at the top
level (a user's own loop, a notebook) each is one program; inside a trace, plain code.
`with_options` gives the ``XLA_FLAGS`` of a process jaxem starts itself (the command line sets
them before JAX starts its backend), so that its small programs get the option too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.extend.core import get_opaque_trace_state

OPTIONS = {"xla_cpu_use_fusion_emitters": False}
# For programs compiled side by side, one thread per core (`jaxem.grid`): XLA's CPU backend
# splits a program's fused kernels into 32 LLVM modules to compile them on idle cores; with
# every core already compiling a program of its own the split only adds each part's fixed
# cost. `select` over mclust's fourteen models on a 2-core CPU, float64, cold: Old Faithful
# 5.9 -> 5.5 s, iris 6.9 -> 6.5 s, 1,000 x 5 7.6 -> 7.1 s.
CONCURRENT_OPTIONS = {**OPTIONS, "xla_cpu_parallel_codegen_split_count": 1}

_TOP_LEVEL = get_opaque_trace_state(convention="jaxem")  # no tracing while jaxem is imported


def at_top_level() -> bool:
    """Whether JAX is tracing nothing now (no ``jit``, ``vmap`` or ``grad`` around the call)."""
    return get_opaque_trace_state(convention="jaxem") == _TOP_LEVEL


def jit(fun: Callable | None = None, **kwargs: Any) -> Callable:
    """``jax.jit(fun, **kwargs)`` that compiles with `OPTIONS` when called at the top level;
    as a decorator with arguments, ``partial(jit, static_argnames=...)``."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    plain = jax.jit(fun, **kwargs)
    tuned = jax.jit(fun, compiler_options=OPTIONS, **kwargs)

    @functools.wraps(fun)
    def call(*args: Any, **kw: Any) -> Any:
        return (tuned if at_top_level() else plain)(*args, **kw)

    return call


def compiled_method(fun: Callable) -> Callable:
    """A model's method (an E-step, an M-step) compiled as one program when called at the top
    level, the model static (a frozen dataclass: hashed and compared by its fields); inside a
    trace (the drivers' own programs, the user's ``jit`` or ``vmap``) it is traced as written.
    Called eagerly, each operation of an M-step ran, and compiled, on its own: 119 programs and
    2.7 s for the first VEV M-step of a three-component mixture, 4 programs (its loops) on
    every later call. A model that cannot be hashed (a field holding an array) runs eagerly."""
    compiled = jit(fun, static_argnums=0)

    @functools.wraps(fun)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not at_top_level():
            return fun(self, *args, **kwargs)
        try:
            hash(self)
        except TypeError:
            return fun(self, *args, **kwargs)
        return compiled(self, *args, **kwargs)

    return call


def with_options(xla_flags: str) -> str:
    """``xla_flags`` (the value of ``XLA_FLAGS``) with `OPTIONS` appended, except those it
    already sets: the user's own choice wins."""
    flags = xla_flags.split()
    for name, value in OPTIONS.items():
        if not any(flag.lstrip("-").split("=")[0] == name for flag in flags):
            flags.append(f"--{name}={str(value).lower()}")
    return " ".join(flags)


def starts_side_by_side() -> bool:
    """Whether `jaxem.select`'s many starts of one model should iterate side by side (the
    lanes of `jaxem.batch.fit_lanes`, under ``vmap``) rather than one after another
    (``jax.lax.map``): on an accelerator, where every operation has a launch cost and a
    batched one costs about as much as a single one, yes; on a CPU, no. There a batched
    step does every lane's arithmetic plus ``vmap``'s selects, and the batched program (a
    ``while_loop`` under ``vmap`` becomes a loop of selects over every carry) takes about
    twice as long to trace and compile. Measured on a 2-core CPU, float32, 198 starts (K = 1..6,
    33 each) of one model, trace + compile + run in seconds, one after another against side by
    side: Old Faithful VVV 0.25 + 0.66 + 0.17 against 0.39 + 1.01 + 0.33, EVE 0.46 + 1.31 +
    0.28 against 0.87 + 2.38 + 0.52; 1,000 x 5 VVV 0.31 + 1.02 + 0.74 against 0.56 + 1.28 +
    1.96."""
    return jax.default_backend() != "cpu"


__all__ = [
    "CONCURRENT_OPTIONS",
    "OPTIONS",
    "at_top_level",
    "compiled_method",
    "jit",
    "starts_side_by_side",
    "with_options",
]
