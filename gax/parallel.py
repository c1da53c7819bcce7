"""Data parallelism: `pmap` over the local devices, or `jit` over a device `Mesh`.

pmap: the state is replicated (a leading device axis on every leaf), the batch is split
along its example axis, and `GAN.axis_name` names the mapped axis inside the step.

jit + `Mesh`/`NamedSharding` (`sharded_train_step`): the GAN is built with
`axis_name=None`, exactly as for one device; the state is placed replicated on the mesh and
the batch sharded along its example axis, and XLA partitions the one global program,
inserting the gradient and batch-statistics reductions itself. The step then computes what
one device computes on the global batch, on any number of devices and hosts.

Several processes (`initialize_distributed`, one per host or per accelerator): every process
runs the same program. The global batch of `data.batch_size` rows is the one a single process
would draw; each process keeps only the rows its own devices hold (`process_rows`,
`ProcessRows`) and the global array is assembled from those (`put_global_batch`). Under pmap
a process feeds its local devices with its rows and the collectives span all processes.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gax import checks
from gax import conv as conv_lib
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
                 in_shardings=(rep, batch_sharding(mesh)), out_shardings=(rep, rep),
                 compiler_options=conv_lib.compiler_options())


# ----------------------------------------------------------------------------------------------
# Several processes (multi-host): start-up, the rows of each process, agreement between them.


class DistributedInitError(RuntimeError):
  """`jax.distributed.initialize` failed; the message says which flags to set."""


_DISTRIBUTED_FLAGS = ("coordinator_address", "num_processes", "process_id")


def distributed_kwargs(coordinator_address: Optional[str] = None,
                       num_processes: Optional[int] = None, process_id: Optional[int] = None,
                       local_device_ids: Union[None, str, int, Sequence[Union[int, str]]] = None
                       ) -> Dict[str, Any]:
  """The keyword arguments of `jax.distributed.initialize` for the given settings: only those
  given (`None`, `""` or an empty list: leave it to JAX's auto-detection on Cloud TPU, SLURM
  or Open MPI), checked so that a typo is an error naming the flag rather than a hang.

  `local_device_ids` may be a comma-separated string ("0,1"), one int or a sequence.
  """
  kwargs: Dict[str, Any] = {}
  if coordinator_address:
    address = str(coordinator_address).strip()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
      raise ValueError(f"--coordinator_address={coordinator_address!r} must be HOST:PORT, the "
                       "address of process 0 and a free port there (e.g. 10.0.0.1:1234), the "
                       "same on every process.")
    kwargs["coordinator_address"] = address
  if num_processes is not None:
    kwargs["num_processes"] = num_processes = _int_flag(num_processes, "num_processes", 1)
  if process_id is not None:
    kwargs["process_id"] = process_id = _int_flag(process_id, "process_id", 0)
    if num_processes is not None and process_id >= num_processes:
      raise ValueError(f"--process_id={process_id} must be below --num_processes="
                       f"{num_processes} (processes are numbered 0..{num_processes - 1}).")
  if local_device_ids is not None and local_device_ids != "":
    items = (local_device_ids.split(",") if isinstance(local_device_ids, str) else
             [local_device_ids] if isinstance(local_device_ids, int) else list(local_device_ids))
    try:
      ids = [int(str(i).strip()) for i in items]
    except ValueError:
      raise ValueError(f"--local_device_ids={local_device_ids!r} must be comma-separated "
                       "device numbers of this host, e.g. 0,1.") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
      raise ValueError(f"--local_device_ids={local_device_ids!r} must be distinct device "
                       "numbers >= 0.")
    if ids:
      kwargs["local_device_ids"] = ids
  return kwargs


def _int_flag(value: Any, flag: str, minimum: int) -> int:
  return checks.integer(value, f"--{flag}", minimum)


def _distributed_help(kwargs: Mapping[str, Any], error: BaseException) -> str:
  given = ", ".join(f"--{k}={v}" if not isinstance(v, list) else
                    f"--{k}={','.join(map(str, v))}" for k, v in kwargs.items())
  missing = [f"--{k}" for k in _DISTRIBUTED_FLAGS if k not in kwargs]
  lines = [f"jax.distributed.initialize failed ({given or 'no flags: auto-detection'}): "
           f"{type(error).__name__}: {error}"]
  if missing:
    lines.append(
        f"{', '.join(missing)} {'was' if len(missing) == 1 else 'were'} left to JAX's "
        "auto-detection, which only works on Cloud TPU, under SLURM and under Open MPI. "
        "Elsewhere give every process --coordinator_address=HOST:PORT (process 0's address "
        "and a free port, the same everywhere), --num_processes=N and --process_id=I "
        "(0..N-1, a different one per process).")
  lines.append("jax.distributed.initialize must also run once per process, before any other "
               "JAX call, and process 0 must be reachable at the coordinator address.")
  return " ".join(lines)


def process_info() -> Dict[str, int]:
  """`process_index`, `process_count`, `local_device_count`, `device_count` of this process."""
  return {"process_index": jax.process_index(), "process_count": jax.process_count(),
          "local_device_count": jax.local_device_count(), "device_count": jax.device_count()}


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None,
                           local_device_ids: Union[None, str, int, Sequence[Any]] = None
                           ) -> Dict[str, int]:
  """Joins this process to a multi-process JAX run (`jax.distributed.initialize`) with the
  settings given (see `distributed_kwargs`; the others are auto-detected), logs and returns
  `process_info()`.

  Must be called before any other JAX call: JAX fixes the devices it sees when its backend
  starts. An error of JAX (no cluster detected, bad or unreachable coordinator, called too
  late) is raised again as `DistributedInitError` saying which flags to set, chained to it.
  """
  kwargs = distributed_kwargs(coordinator_address, num_processes, process_id, local_device_ids)
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, TypeError, RuntimeError) as e:
    raise DistributedInitError(_distributed_help(kwargs, e)) from e
  info = process_info()
  logging.info("Distributed: process %d of %d, %d local device(s), %d global device(s)",
               info["process_index"], info["process_count"], info["local_device_count"],
               info["device_count"])
  return info


def check_global_batch(batch_size: int, num_devices: int, num_processes: int = 1,
                       key: str = "config.data.batch_size") -> int:
  """The rows of the global batch each process loads, `batch_size / num_processes`, after
  checking that the batch splits evenly over the devices (every device takes an equal share;
  each process holds `num_devices / num_processes` of them). Raises `ValueError` naming `key`.
  """
  batch_size, num_devices, num_processes = int(batch_size), int(num_devices), int(num_processes)
  if num_devices < 1 or num_processes < 1 or num_devices % num_processes:
    raise ValueError(f"{num_devices} devices cannot be spread evenly over {num_processes} "
                     "processes.")
  if batch_size % num_devices:
    up = -(-batch_size // num_devices) * num_devices
    where = (f"the {num_devices} devices" if num_processes == 1 else
             f"the {num_devices} devices ({num_processes} processes x "
             f"{num_devices // num_processes} local devices)")
    raise ValueError(f"{key}={batch_size} is the global batch and must be divisible by {where} "
                     f"that share it, each taking an equal share; use a multiple of "
                     f"{num_devices}, e.g. {up}.")
  return batch_size // num_processes


def process_rows(batch_size: int, process_index: Optional[int] = None,
                 process_count: Optional[int] = None) -> np.ndarray:
  """Rows `[p * B/P, (p + 1) * B/P)` of a global batch of `B = batch_size` rows: those of
  process `p` of `P` (default: this one) under `pmap`, which numbers the devices of process 0
  first, then those of process 1, ..., each taking its slice in that order (`shard_batch`,
  `gax.noise.local_rows`)."""
  p = jax.process_index() if process_index is None else int(process_index)
  n = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= p < n or batch_size % n:
    raise ValueError(f"A batch of {batch_size} rows cannot be split into {n} equal process "
                     f"shares, or process {p} is not one of them.")
  local = batch_size // n
  return np.arange(p * local, (p + 1) * local)


def sharding_process_rows(sharding: NamedSharding, batch_size: int,
                          devices: Optional[Sequence[jax.Device]] = None) -> np.ndarray:
  """The rows (example axis 1) of a global `[n_critic, batch_size, ...]` batch that this
  process's devices (or `devices`) hold under `sharding` (`batch_sharding(mesh)`), ascending:
  the order in which `jax.make_array_from_process_local_data` takes a process's rows. Read
  from the sharding rather than assumed contiguous, since the mesh's device order is the
  caller's."""
  devices = set(sharding.addressable_devices if devices is None else devices)
  rows = set()
  for device, index in sharding.devices_indices_map((1, int(batch_size))).items():
    if device in devices:
      rows.update(range(*index[1].indices(int(batch_size))))
  return np.array(sorted(rows), np.int64)


def process_share(source: Any, rows: Sequence[int]) -> Any:
  """The source of one process's `rows` of every global batch: `source.with_rows(rows)` for a
  source that can read just those (`gax.data.GrainSource`, which then decodes only its
  shard), else `ProcessRows(source, rows)`."""
  if hasattr(source, "with_rows"):
    return source.with_rows(rows)
  return ProcessRows(source, rows)


class ProcessRows:
  """One process's share of a data source: `get(step)` is `source.get(step)[:, rows]` (every
  leaf of a labelled batch alike).

  The source still draws the whole global batch of the step and the process keeps its rows,
  so a run's data (and losses) do not depend on the number of processes and one process reads
  exactly what it did before. The cost is drawing `P` times the rows the process needs, which
  for gax's in-memory sources is an index gather (`gax.data.benchmark_source`).
  """

  def __init__(self, source: Any, rows: Sequence[int]):
    self.source = source
    self.rows = np.asarray(rows, np.int64)
    if not len(self.rows):
      raise ValueError("ProcessRows needs at least one row.")
    contiguous = np.array_equal(self.rows, np.arange(self.rows[0], self.rows[0] + len(self.rows)))
    self._index = slice(int(self.rows[0]), int(self.rows[-1]) + 1) if contiguous else self.rows

  def get(self, step: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x[:, self._index], self.source.get(step))


def put_global_batch(batch: Any, sharding: NamedSharding, batch_size: int) -> Any:
  """The global `[n_critic, batch_size, ...]` array laid out by `sharding`, from this
  process's rows `batch` (`sharding_process_rows`); with one process, `batch` is the whole
  batch and this is `jax.device_put`."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(
          sharding, x, (x.shape[0], int(batch_size), *x.shape[2:])), batch)


def put_replicated(tree: Any, sharding: NamedSharding) -> Any:
  """`tree` with every leaf replicated by `sharding` (`replicated_sharding(mesh)`). With one
  process this is `jax.device_put`; with several each process supplies its own copy of the
  same values, since a host-local array (e.g. a restored state) cannot be `device_put` onto
  another process's devices."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree_util.tree_map(put, tree)


def sync_processes(name: str) -> None:
  """Waits until every process reaches the barrier `name` (nothing with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def broadcast_from_process_0(value: Any) -> Any:
  """Process 0's `value` (anything JSON can carry) on every process, so that decisions taken
  from it (e.g. saving a new best checkpoint, which all processes must do together) are the
  same everywhere even if floating point differs between hosts. With one process, `value`."""
  if jax.process_count() == 1:
    return value
  data = np.frombuffer(json.dumps(value).encode(), np.uint8) if jax.process_index() == 0 else \
      np.zeros(0, np.uint8)
  size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
  buf = np.zeros(size, np.uint8)
  buf[:data.size] = data
  return json.loads(np.asarray(multihost_utils.broadcast_one_to_all(buf)).tobytes().decode())


def process_0_first(fn: Callable[[], Any], name: str) -> Any:
  """`fn()` on process 0, then (after the barrier `name`) on the others: for work that
  creates files in a shared directory which the others then only read. With one process,
  `fn()`."""
  if jax.process_count() == 1:
    return fn()
  if jax.process_index() == 0:
    try:
      return fn()
    finally:  # reached even if fn fails, so that the others do not wait forever
      sync_processes(name)
  sync_processes(name)
  return fn()


__all__ = ["DEFAULT_AXIS", "device_axis_sharding", "replicate", "unreplicate", "shard_batch",
           "pmap_train_step", "make_mesh", "replicated_sharding", "batch_sharding",
           "sharded_train_step", "DistributedInitError", "distributed_kwargs", "process_info",
           "initialize_distributed", "check_global_batch", "process_rows",
           "sharding_process_rows", "process_share", "ProcessRows", "put_global_batch",
           "put_replicated", "sync_processes", "broadcast_from_process_0", "process_0_first"]
