"""An explicit switch for JAX's persistent compilation cache.

Most of a first fit's time is compilation (seconds on a laptop CPU), and JAX can keep compiled
programs on disk so that the next process reuses them. Importing jaxem never changes JAX's
global configuration; a user (or the ``jaxem`` command line, which does it for every command
unless ``JAXEM_NO_CACHE`` is set) calls `enable_compilation_cache` to turn the cache on.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def default_directory() -> Path:
    """``$JAXEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxem/xla`` (``~/.cache/jaxem/xla``)."""
    if os.environ.get("JAXEM_CACHE_DIR"):
        return Path(os.environ["JAXEM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxem" / "xla"


def enable_compilation_cache(directory: str | Path | None = None) -> Path:
    """Keep compiled programs of more than 0.2 s of compile time in ``directory`` (default:
    `default_directory`) across processes, through JAX's own persistent cache
    (``jax_compilation_cache_dir``). Returns the directory."""
    path = Path(directory) if directory is not None else default_directory()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
