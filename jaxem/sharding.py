"""Data parallelism: fits over data split across devices along the sample (or batch) axis.

The E-step's statistics are sums over samples, so with the rows of ``X`` split over devices
each device computes the statistics of its own rows (in row blocks, see
`jaxem.chunking`) and one all-reduce (``lax.psum``) adds them up; the M-step, tiny, runs
on every device alike. Nothing but the statistics crosses between devices.

jaxem reads the layout from the data: an ``X`` placed with a
``NamedSharding(mesh, PartitionSpec(axes))`` whose first axis is split over more than one
device is fitted this way (`shard` makes one). The same code runs on one host with
several devices and on many hosts after ``jax.distributed.initialize()`` (see
``docs/scale.md``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array


class SampleSharding(NamedTuple):
    """Where the rows of the data live: ``mesh`` and the mesh ``axes`` that split them."""

    mesh: Mesh
    axes: Any  # a mesh axis name or a tuple of them, as in PartitionSpec

    @property
    def n_shards(self) -> int:
        axes = self.axes if isinstance(self.axes, tuple) else (self.axes,)
        return int(np.prod([self.mesh.shape[a] for a in axes]))

    @property
    def spec(self) -> PartitionSpec:
        return PartitionSpec(self.axes)

    def place(self, a: Array) -> Array:
        """``a`` ``(n_samples, ...)`` split over the devices as the data is. With devices of
        several processes (``jax.distributed``), an ``a`` held whole by this process (the same
        values in every process, as for any argument of a multi-controller program) gives each
        process's devices their own rows."""
        sharding = NamedSharding(self.mesh, self.spec)
        if sharding.is_fully_addressable or (
            isinstance(a, jax.Array) and not a.is_fully_addressable
        ):
            return jax.device_put(a, sharding)
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            placed = self.place(jax.random.key_data(a))
            return jax.random.wrap_key_data(placed, impl=jax.random.key_impl(a))
        whole = np.asarray(a)
        return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])


def sample_sharding(X: Any, name: str = "X") -> SampleSharding | None:
    """The split of ``X``'s first axis over devices, or None when it is on one device (or not a
    sharded ``jax.Array``). Raises ``ValueError`` when the split is uneven, or splits other
    axes too."""
    sharding = getattr(X, "sharding", None)
    if not isinstance(sharding, NamedSharding) or isinstance(X, jax.core.Tracer):
        return None
    spec = tuple(sharding.spec)
    if not spec or spec[0] is None:
        return None
    if any(s is not None for s in spec[1:]):
        raise ValueError(
            f"{name} may be split over devices along its first axis only; got PartitionSpec{spec}"
        )
    found = SampleSharding(sharding.mesh, spec[0])
    if found.n_shards == 1:
        return None
    if X.shape[0] % found.n_shards:
        raise ValueError(
            f"{name} has {X.shape[0]} rows, not a multiple of the {found.n_shards} devices it is "
            "split over; pad it with zero-weight rows (weights=0 rows have no influence)"
        )
    return found


def shard(X: Any, mesh: Mesh | None = None, axis: str = "data") -> Array:
    """``X`` with its rows split evenly over ``mesh`` (default: every device, one mesh axis
    ``axis``). ``X`` ``(n_samples, ...)``, ``n_samples`` a multiple of the number of devices."""
    if mesh is None:
        mesh = jax.make_mesh(
            (jax.device_count(),), (axis,), axis_types=(jax.sharding.AxisType.Auto,)
        )
    X = jnp.asarray(X)
    spec = PartitionSpec(axis, *([None] * (X.ndim - 1)))
    n_shards = mesh.shape[axis]
    if X.shape[0] % n_shards:
        raise ValueError(
            f"X has {X.shape[0]} rows, not a multiple of the {n_shards} devices on mesh axis "
            f"{axis!r}"
        )
    return jax.device_put(X, NamedSharding(mesh, spec))


def as_auto(X: Array) -> Array:
    """``X`` on the same devices and layout, its mesh's axes of type ``Auto``, so that XLA's
    partitioner places whatever a computation on it needs (an ``Explicit`` mesh would require
    every operation's sharding spelled out)."""
    sharding = X.sharding
    mesh = sharding.mesh
    if all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types):
        return X
    auto = Mesh(
        mesh.devices,
        mesh.axis_names,
        axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names),
    )
    return jax.device_put(X, NamedSharding(auto, sharding.spec))


def _on_rows(fn, layout: SampleSharding, n_replicated: int, out_spec: PartitionSpec):
    """``shard_map`` of ``fn``: its first ``n_replicated`` arguments the same on every device,
    the others split along their first axis as ``layout`` says."""

    def run(*args):
        specs = (PartitionSpec(),) * n_replicated + (layout.spec,) * (len(args) - n_replicated)
        return jax.shard_map(
            fn, mesh=layout.mesh, in_specs=specs, out_specs=out_spec, check_vma=False
        )(*args)

    return run


def local_then_psum(fn, layout: SampleSharding, n_replicated: int = 0):
    """``fn(*replicated, *row_args)`` on every device's rows, its outputs (sums over rows)
    added up across the devices: the same on every device."""
    return _on_rows(
        lambda *a: jax.lax.psum(fn(*a), layout.axes), layout, n_replicated, PartitionSpec()
    )


def per_device(fn, layout: SampleSharding, n_replicated: int = 0):
    """``fn(*replicated, *row_args)`` on every device's rows; its pytree result stays on each
    device, stacked along a new leading axis (one entry per device) for a later per-device
    call."""
    return _on_rows(
        lambda *a: jax.tree.map(lambda x: x[None], fn(*a)), layout, n_replicated, layout.spec
    )


def split_rows(fn, layout: SampleSharding, n_replicated: int = 0):
    """``fn(*replicated, *row_args)`` on every device's rows, whose result has the same
    leading axis as the rows (one output per row, e.g. per member of a batch)."""
    return _on_rows(fn, layout, n_replicated, layout.spec)
