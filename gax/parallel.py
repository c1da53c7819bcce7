"""Data parallelism: `pmap` over the local devices, or `jit` over a device `Mesh`.

pmap: the state is replicated (a leading device axis on every leaf), the batch is split
along its example axis, and `GAN.axis_name` names the mapped axis inside the step.

jit + `Mesh`/`NamedSharding` (`sharded_train_step`): the GAN is built with
`axis_name=None`, exactly as for one device; the state is placed replicated on the mesh and
the batch sharded along its example axis, and XLA partitions the one global program,
inserting the gradient and batch-statistics reductions itself. The step then computes what
one device computes on the global batch, on any number of devices and hosts.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gax.steps import GAN, Metrics, train_step

DEFAULT_AXIS = "batch"


def device_axis_sharding(devices: Optional[Sequence[jax.Device]] = None) -> NamedSharding:
  """Sharding that splits an array's leading axis over `devices` (default: local devices),
  the layout `pmap` expects for its mapped inputs."""
  return NamedSharding(make_mesh(devices or jax.local_devices()), PartitionSpec(DEFAULT_AXIS))


def replicate(tree: Any, devices: Optional[Sequence[jax.Device]] = None) -> Any:
  """Copies every leaf to each device, adding a leading device axis."""
  sharding = device_axis_sharding(devices)
  n = sharding.mesh.size

  def put(x):
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x[None], (n, *x.shape)), sharding)

  return jax.tree_util.tree_map(put, tree)


def unreplicate(tree: Any) -> Any:
  """The first device's copy of a replicated tree."""
  return jax.tree_util.tree_map(lambda x: x[0], tree)


def shard_batch(batch: Any, n_devices: int) -> Any:
  """`[n_critic, B, ...]` -> `[n_devices, n_critic, B / n_devices, ...]`, device i taking
  examples `[i * B/n, (i+1) * B/n)` of every critic batch.

  A batch with labels, `{"x": [n_critic, B, ...], "y": [n_critic, B]}` (`gax.data`), is split
  the same way leaf by leaf, so every example keeps its label.
  """

  def split(x):
    n_critic, b = x.shape[:2]
    if b % n_devices:
      raise ValueError(f"Batch size {b} is not divisible by the {n_devices} devices.")
    x = x.reshape(n_critic, n_devices, b // n_devices, *x.shape[2:])
    return np.swapaxes(x, 0, 1) if isinstance(x, np.ndarray) else x.swapaxes(0, 1)

  return jax.tree_util.tree_map(split, batch)


def pmap_train_step(gan: GAN) -> Callable[[Any, Any], Tuple[Any, Metrics]]:
  """`train_step` bound to `gan` and `pmap`-ped over `gan.axis_name`, state donated.

  Takes a replicated state and a batch from `shard_batch`; returns the replicated state and
  metrics (identical on every device, as they are cross-replica means).
  """
  if gan.axis_name is None:
    raise ValueError("pmap_train_step needs a GAN built with an axis_name (e.g. 'batch').")
  return jax.pmap(functools.partial(train_step, gan), axis_name=gan.axis_name, donate_argnums=0)


def make_mesh(devices: Optional[Sequence[jax.Device]] = None, axis: str = DEFAULT_AXIS) -> Mesh:
  """A 1D data-parallel mesh over `devices` (default: all devices of all processes)."""
  return Mesh(np.array(list(devices or jax.devices())), (axis,))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Every device of `mesh` holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: Optional[str] = None) -> NamedSharding:
  """Splits axis 1 (the example axis of `[n_critic, B, ...]` batches) over `mesh`."""
  return NamedSharding(mesh, PartitionSpec(None, axis or mesh.axis_names[0]))


def sharded_train_step(gan: GAN, mesh: Mesh) -> Callable[[Any, Any], Tuple[Any, Metrics]]:
  """`train_step` bound to `gan`, jitted over `mesh`: state replicated, batch split along its
  example axis, state donated.

  `gan` must be built with `axis_name=None` (collectives come from the sharding, not from a
  named axis). Place the inputs with `jax.device_put(state, replicated_sharding(mesh))` and
  `jax.device_put(batch, batch_sharding(mesh))`; for several hosts, assemble the global batch
  from each process's rows with `jax.make_array_from_process_local_data(batch_sharding(mesh),
  local_rows)`.
  """
  if gan.axis_name is not None:
    raise ValueError(f"sharded_train_step needs a GAN built with axis_name=None; got "
                     f"{gan.axis_name!r} (that is for pmap).")
  rep = replicated_sharding(mesh)
  return jax.jit(functools.partial(train_step, gan), donate_argnums=0,
                 in_shardings=(rep, batch_sharding(mesh)), out_shardings=(rep, rep))
