"""Saving and restoring `GANState` with Orbax.

Checkpoints are written asynchronously (training continues while the files are written)
and atomically (a crash mid-write leaves no half checkpoint behind, only a temporary
directory Orbax ignores). A checkpoint that cannot be read is an error, never skipped.

With several processes (`gax.parallel.initialize_distributed`) every process must call `save`,
`delete` and `close` of the same checkpoints in the same order: Orbax coordinates the hosts
itself (process 0 finalises a checkpoint once all have written their part), so the directory
must be one all processes see (a shared filesystem). Each process may `restore`.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into the expected state."""


class Checkpointer:
  """Keeps the latest `max_to_keep` checkpoints of a run under `directory`."""

  def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save))

  def latest_step(self) -> Optional[int]:
    """The newest saved step, or `None` when there is no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    """Starts saving `state` as `step` (returns before the write finishes). With several
    processes, call it on every process (see `global_replicas`)."""
    self._manager.save(step, args=ocp.args.StandardSave(global_replicas(state)), force=True)

  def restore(self, template: Any, step: Optional[int] = None) -> Any:
    """Restores the checkpoint of `step` (default: latest) into `template`'s structure.

    `template` is a state (or `jax.eval_shape` of one) with the expected tree structure,
    shapes and dtypes; a checkpoint that does not match it raises `CheckpointError`.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax raises many types for unreadable or mismatched files
      others = [s for s in self.all_steps() if s != step]
      hint = (f" Earlier checkpoints: {others}; delete {self.step_dir(step)} to resume from "
              f"step {max(others)}." if others else "")
      raise CheckpointError(
          f"Could not restore the checkpoint of step {step} from {self.step_dir(step)}: it is "
          f"corrupt or was written for a different model/config. {type(e).__name__}: "
          f"{str(e)[:500]}{hint}") from e

  def delete(self, step: int) -> None:
    """Deletes the checkpoint of `step` (e.g. to write that step again)."""
    self._manager.wait_until_finished()
    self._manager.delete(step)

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def wait(self) -> None:
    """Blocks until pending saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def global_replicas(tree: Any) -> Any:
  """With several processes, every host-local `jax.Array` leaf of `tree` (an unreplicated pmap
  state, a state on one device) as a global array replicated over all devices; other leaves,
  and every leaf with one process, unchanged.

  Orbax refuses host-local arrays in a multi-process save, since each host would write the
  same array; a global replicated array is written once. Each process's leaf must hold the same
  value, as every replicated gax state does.
  """
  if jax.process_count() == 1:
    return tree
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("replica",)), PartitionSpec())

  def put(x):
    if not isinstance(x, jax.Array) or not x.is_fully_addressable:
      return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree_util.tree_map(put, tree)
