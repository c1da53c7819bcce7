"""Saving and restoring `GANState` with Orbax.

Checkpoints are written asynchronously (training continues while the files are written)
and atomically (a crash mid-write leaves no half checkpoint behind, only a temporary
directory Orbax ignores). A checkpoint that cannot be read is an error, never skipped.

What is guaranteed:

* **Only finite states are saved.** `save` checks every floating-point leaf first and raises
  `NonFiniteStateError` (nothing written) when one holds a NaN or an infinity, so the newest
  checkpoint of a run that diverged is the last good one.
* **A restore returns exactly what was saved, or fails.** Each checkpoint holds, beside the
  state (Orbax item `state`), a CRC-32 of every leaf's bytes with its dtype and shape (item
  `checksums`, JSON), taken from the state being saved. `restore` recomputes them from what
  it read and raises `CorruptCheckpointError` naming the step, the leaves that differ and
  how to resume from the previous checkpoint. Orbax's own format has no checksum of the
  array data: a byte flipped in a data file otherwise restores silently.
* Checkpoints written before the checksums (one Orbax item, `default`) still restore, with a
  warning that they cannot be verified.

With several processes (`gax.parallel.initialize_distributed`) every process must call `save`,
`delete` and `close` of the same checkpoints in the same order: Orbax coordinates the hosts
itself (process 0 finalises a checkpoint once all have written their part), so the directory
must be one all processes see (a shared filesystem). Each process may `restore`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zlib
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

STATE_ITEM = "state"
CHECKSUMS_ITEM = "checksums"
LEGACY_ITEM = "default"  # the single item of checkpoints written before the checksums
CHECKSUM_FORMAT = "gax-crc32-v1"


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into the expected state.

  `summary`: the message without `hint` (how to resume from another checkpoint)."""

  def __init__(self, summary: str, hint: str = ""):
    super().__init__(summary + hint)
    self.summary = summary


class CorruptCheckpointError(CheckpointError):
  """A checkpoint was read, but its arrays are not those that were saved (`step`: its step)."""

  def __init__(self, summary: str, hint: str, step: int):
    super().__init__(summary, hint)
    self.step = step


class CheckpointWriteError(CheckpointError):
  """A checkpoint could not be written (a full disk, a read-only or vanished directory).
  Orbax wrote it into a temporary directory, so the checkpoints finished before are intact."""


class NonFiniteStateError(FloatingPointError):
  """`Checkpointer.save` was given a state with NaN or infinite values; nothing was saved.

  `paths`: the leaves (as `jax.tree_util.keystr` paths) that are not finite."""

  def __init__(self, message: str, paths: List[str]):
    super().__init__(message)
    self.paths = paths


def _leaves(tree: Any):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def _host_value(x: Any) -> Optional[np.ndarray]:
  """The host bytes of one leaf: the whole array, or for an array spread over processes its
  first local replica when it is replicated; `None` when this process cannot see all of it."""
  if isinstance(x, jax.Array):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      if not x.sharding.is_fully_replicated:
        return None
      x = x.addressable_data(0)
  return np.ascontiguousarray(np.asarray(x))


def state_checksums(tree: Any) -> Dict[str, str]:
  """`{leaf path: "dtype[shape]:crc32"}` of every leaf of `tree` (from its host bytes).

  A leaf sharded across processes (not replicated) is recorded as `"dtype[shape]:unchecked"`:
  no process sees all its bytes. gax's states are replicated, so every leaf is checked.
  """
  out = {}
  for path, leaf in _leaves(tree):
    value = _host_value(leaf)
    if value is None:
      out[jax.tree_util.keystr(path)] = f"{leaf.dtype}{list(leaf.shape)}:unchecked"
      continue
    crc = zlib.crc32(value.reshape(-1).view(np.uint8))
    out[jax.tree_util.keystr(path)] = f"{value.dtype}{list(value.shape)}:{crc:08x}"
  return out


@jax.jit
def _finite_leaves(tree: Any) -> Any:
  def finite(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      return jnp.bool_(True)
    return jnp.all(jnp.isfinite(x))
  return jax.tree_util.tree_map(finite, tree)


def non_finite_paths(tree: Any) -> List[str]:
  """Paths of the floating-point leaves of `tree` holding a NaN or an infinity (one jitted
  reduction per leaf; with several processes, call it on all of them)."""
  flags = jax.device_get(_finite_leaves(tree))
  return [jax.tree_util.keystr(p) for p, ok in _leaves(flags) if not bool(ok)]


class Checkpointer:
  """Keeps the latest `max_to_keep` checkpoints of a run under `directory`."""

  def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._pending: Optional[int] = None  # the step of the save that may still be running
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
    processes, call it on every process (see `global_replicas`).

    Raises `NonFiniteStateError`, writing nothing, when a floating-point leaf of `state` is
    not finite.
    """
    bad = non_finite_paths(state)
    if bad:
      raise NonFiniteStateError(
          f"The state of step {step} holds NaN or infinite values (in {len(bad)} arrays, e.g. "
          f"{', '.join(bad[:3])}): it was not checkpointed; {self.newest_note()}.", bad)
    state = global_replicas(state)
    args = ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardSave(state),
        CHECKSUMS_ITEM: ocp.args.JsonSave({"format": CHECKSUM_FORMAT,
                                          "leaves": state_checksums(state)})})
    # Orbax raises a failure of the previous (asynchronous) save here, or of this one.
    with self._writing(step):
      self._manager.save(step, args=args, force=True)
    self._pending = step

  @contextlib.contextmanager
  def _writing(self, step: Optional[int]):
    """Turns an Orbax failure to write into `CheckpointWriteError` naming the failed step
    (the pending one, else `step`) and the intact ones."""
    try:
      yield
    except CheckpointError:
      raise
    except Exception as e:  # Orbax raises ValueError, OSError, ... from tensorstore
      failed = self._pending if self._pending is not None else step
      self._pending = None
      try:
        intact = sorted(self._manager.all_steps())
      except Exception:  # pylint: disable=broad-except
        intact = []
      first = str(e).strip().splitlines()[0][:400] if str(e).strip() else ""
      raise CheckpointWriteError(
          f"Could not write the checkpoint of step {failed} to {self.directory}: "
          f"{type(e).__name__}: {first}. " + (
              f"The checkpoints of steps {intact} are intact" if intact else
              "No earlier checkpoint exists") + "; free space (or fix the directory) and "
          "rerun to resume from the newest.") from e

  def newest_note(self) -> str:
    """Once pending saves are done, "the newest checkpoint is step N in DIR, checked finite
    when saved", or that the directory holds none: what a run that stops can resume from."""
    self.wait()
    latest = self.latest_step()
    if latest is None:
      return f"{self.directory} holds no checkpoint"
    return (f"the newest checkpoint is step {latest} in {self.directory}, checked finite when "
            "saved")

  def _hint(self, step: int) -> str:
    others = [s for s in self.all_steps() if s != step]
    if not others:
      return " There is no earlier checkpoint in this directory."
    return (f" Earlier checkpoints: {others}. To resume from step {max(others)}, delete (or "
            f"move away) {self.step_dir(step)}, or set config.train.on_corrupt_checkpoint="
            "'previous'.")

  def restore(self, template: Any, step: Optional[int] = None) -> Any:
    """Restores the checkpoint of `step` (default: latest) into `template`'s structure and
    verifies it against the checksums saved with it.

    `template` is a state (or `jax.eval_shape` of one) with the expected tree structure,
    shapes and dtypes. A checkpoint that cannot be read or does not match it raises
    `CheckpointError`; one whose arrays differ from its checksums raises
    `CorruptCheckpointError`.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    legacy = os.path.isdir(os.path.join(self.step_dir(step), LEGACY_ITEM))
    try:
      if legacy:
        # Orbax fixes a manager to one item layout, so the old layout gets a manager of its own.
        with ocp.CheckpointManager(self.directory) as old:
          state = old.restore(step, args=ocp.args.StandardRestore(abstract))
        logging.warning("The checkpoint of step %d in %s predates gax's checksums: restored "
                        "without verifying its arrays.", step, self.directory)
        return state
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          STATE_ITEM: ocp.args.StandardRestore(abstract),
          CHECKSUMS_ITEM: ocp.args.JsonRestore()}))
    except Exception as e:  # Orbax raises many types for unreadable or mismatched files
      raise CheckpointError(
          f"Could not restore the checkpoint of step {step} from {self.step_dir(step)}: it is "
          f"corrupt or was written for a different model/config. {type(e).__name__}: "
          f"{str(e).split(' [tensorstore_spec')[0][:500]}.", self._hint(step)) from e
    state, saved = restored[STATE_ITEM], restored[CHECKSUMS_ITEM]
    leaves = saved.get("leaves") if isinstance(saved, dict) else None
    if not isinstance(leaves, dict) or saved.get("format") != CHECKSUM_FORMAT:
      raise CorruptCheckpointError(
          f"The checkpoint of step {step} in {self.step_dir(step)} has no readable checksums "
          f"({CHECKSUMS_ITEM}/ is damaged), so its arrays cannot be trusted.", self._hint(step),
          step)
    found = state_checksums(state)
    differ = sorted(k for k in set(found) | set(leaves)
                    if found.get(k) != leaves.get(k) and not str(leaves.get(k)).endswith(
                        ":unchecked"))
    if differ:
      raise CorruptCheckpointError(
          f"The checkpoint of step {step} in {self.step_dir(step)} is corrupt: {len(differ)} of "
          f"its {len(leaves)} arrays differ from the checksums saved with it (e.g. "
          f"{', '.join(differ[:3])}).", self._hint(step), step)
    return state

  def restore_newest_good(self, template: Any) -> Any:
    """Restores the newest checkpoint that reads back intact, moving each newer one that does
    not into `<directory>.corrupt/<step>` (kept for inspection) with a warning; raises the
    oldest one's `CheckpointError` when none is intact."""
    while True:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"No checkpoint in {self.directory}.")
      try:
        return self.restore(template, step)
      except CheckpointError as e:
        if len(self.all_steps()) == 1:
          raise
        aside = os.path.join(self.directory + ".corrupt", str(step))
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        if os.path.exists(aside):
          shutil.rmtree(aside)
        shutil.move(self.step_dir(step), aside)
        self._manager.reload()
        logging.warning("%s Moved it to %s; trying the previous checkpoint.", e.summary, aside)

  def delete(self, step: int) -> None:
    """Deletes the checkpoint of `step` (e.g. to write that step again)."""
    self.wait()
    self._manager.delete(step)

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def wait(self) -> None:
    """Blocks until pending saves are on disk; `CheckpointWriteError` if one failed."""
    with self._writing(None):
      self._manager.wait_until_finished()
    self._pending = None

  def close(self) -> None:
    """Waits for pending saves (`CheckpointWriteError` if one failed) and closes."""
    try:
      self.wait()
    finally:
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


__all__ = ["STATE_ITEM", "CHECKSUMS_ITEM", "LEGACY_ITEM", "CHECKSUM_FORMAT", "CheckpointError",
           "CorruptCheckpointError", "CheckpointWriteError", "NonFiniteStateError",
           "state_checksums", "non_finite_paths", "Checkpointer", "global_replicas"]
