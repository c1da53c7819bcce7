"""Saving and restoring `GANState` with Orbax.

Checkpoints are written asynchronously (training continues while the files are written)
and atomically (a crash mid-write leaves no half checkpoint behind, only a temporary
directory Orbax ignores). A checkpoint that cannot be read is an error, never skipped.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


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
    """Starts saving `state` as `step` (returns before the write finishes)."""
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

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
