"""Fault injection: crashes, damaged checkpoints, two writers, NaN between logs, full disks.

Each test injects one fault into a small ring run (or a `Checkpointer` of a small state) and
checks the guarantee of README's "What a run leaves behind": a clear one-line error or an
exact recovery, never a silently wrong state. Crashes are real: the run is a subprocess
(this file run as a script, `python tests/test_faults.py MODE ...`) that SIGKILLs itself at
the injected point, or whose file-size limit (`RLIMIT_FSIZE`) makes the OS refuse writes
partway through a checkpoint or a metrics line, as a full disk does.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
from gax import loop, trainer  # pylint: disable=g-import-not-at-top
from gax.builders import base_config  # pylint: disable=g-import-not-at-top
from gax.checkpoint import (Checkpointer, CheckpointError,  # pylint: disable=g-import-not-at-top
                            CheckpointWriteError, CorruptCheckpointError, NonFiniteStateError)
from gax.workdir import WorkdirError, WorkdirLock, WorkdirLocked  # pylint: disable=g-import-not-at-top

STEPS = 12


def ring_config(**train):
  c = base_config()
  c.data = {"name": "ring", "batch_size": 32}
  c.model = {"name": "mlp", "g_hidden": (32,), "d_hidden": (32,)}
  c.latent.dim = 4
  c.eval.every = -1
  c.train.update({**dict(steps=STEPS, log_every=1, sample_every=0, checkpoint_every=4,
                         num_samples=16), **train})
  return c


def read_jsonl(path, drop=("steps_per_sec", "elapsed_sec")):
  with open(path) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in f]


def assert_same_state(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  state = trainer.train(ring_config(), workdir)
  return read_jsonl(os.path.join(workdir, "metrics.jsonl")), state


# ---------------------------------------------------------------------------------------------
# The subprocess side: `python tests/test_faults.py MODE WORKDIR [ARG]`.


def _child(mode: str, workdir: str, arg: int) -> None:
  import resource  # pylint: disable=g-import-not-at-top
  real_step, real_save = loop.jit_train_step, Checkpointer.save

  def limit_file_size(nbytes):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write returns EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.RLIM_INFINITY))

  if mode == "kill_in_step":  # SIGKILL as step `arg` starts, every checkpoint before it done
    def save(self, step, state):
      real_save(self, step, state)
      self.wait()
    Checkpointer.save = save

    def jit_train_step(gan):
      step = real_step(gan)

      def run(state, batch):
        if int(state.step) == arg - 1:
          os.kill(os.getpid(), signal.SIGKILL)
        return step(state, batch)
      return run
    loop.jit_train_step = jit_train_step
  elif mode == "kill_in_save":  # SIGKILL right after Orbax starts writing step `arg`
    def save(self, step, state):
      real_save(self, step, state)
      if step == arg:
        os.kill(os.getpid(), signal.SIGKILL)
    Checkpointer.save = save
  elif mode == "full_disk_in_save":  # the checkpoint of step `arg` cannot be written
    def save(self, step, state):
      if step == arg:
        self.wait()
        # Room for the metrics lines still to come, not for the checkpoint's data files.
        limit_file_size(os.path.getsize(os.path.join(workdir, trainer.METRICS_FILE)) + 4096)
      real_save(self, step, state)
    Checkpointer.save = save
  elif mode == "full_disk_in_metrics":  # metrics.jsonl is full after the checkpoint `arg`
    def save(self, step, state):
      real_save(self, step, state)
      if step == arg:
        self.wait()
        limit_file_size(os.path.getsize(os.path.join(workdir, trainer.METRICS_FILE)) + 100)
    Checkpointer.save = save
  elif mode == "full_disk_in_tensorboard":  # the event file is full after the checkpoint `arg`
    def save(self, step, state):
      real_save(self, step, state)
      if step == arg:
        self.wait()
        [events] = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
        limit_file_size(max(os.path.getsize(events),
                            os.path.getsize(os.path.join(workdir, trainer.METRICS_FILE))) + 100)
    Checkpointer.save = save
  elif mode == "hold_lock":  # hold the work directory's lock until killed
    WorkdirLock(workdir).acquire()
    print("locked", flush=True)
    time.sleep(600)
  elif mode != "plain":
    raise ValueError(mode)
  # The checkpoint and metrics cases fill the disk for those files alone; TensorBoard's
  # (larger) event file has its own case.
  trainer.train(ring_config(tensorboard=mode not in ("full_disk_in_save",
                                                     "full_disk_in_metrics")), workdir)


def _spawn(mode, workdir, arg=0, **kwargs):
  return subprocess.run([sys.executable, os.path.abspath(__file__), mode, str(workdir),
                         str(arg)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                        **kwargs)


# ---------------------------------------------------------------------------------------------
# Crashes.


@pytest.mark.parametrize("mode,at", [("kill_in_step", 7), ("kill_in_save", 8)])
def test_kill_9_then_resume_gives_the_uninterrupted_losses_bit_for_bit(straight, tmp_path,
                                                                       mode, at):
  r = _spawn(mode, tmp_path, at)
  assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
  c = Checkpointer(str(tmp_path / "checkpoints"))
  steps = c.all_steps()
  c.close()
  assert max(steps) == 4 if mode == "kill_in_step" else max(steps) in (4, 8)
  state = trainer.train(ring_config(), str(tmp_path))  # resume in this process
  assert read_jsonl(tmp_path / "metrics.jsonl") == straight[0]
  assert_same_state(state, straight[1])


def test_a_half_written_checkpoint_directory_is_ignored_on_resume(straight, tmp_path):
  trainer.train(ring_config(steps=8), str(tmp_path))
  ckpts = tmp_path / "checkpoints"
  # What a crash mid-write leaves: Orbax's temporary directory, files cut short.
  partial = ckpts / "12.orbax-checkpoint-tmp"
  shutil.copytree(ckpts / "8", partial)
  for root, _, files in os.walk(partial):
    for name in files:
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 2)
  state = trainer.train(ring_config(), str(tmp_path))
  assert read_jsonl(tmp_path / "metrics.jsonl") == straight[0]
  assert_same_state(state, straight[1])


# ---------------------------------------------------------------------------------------------
# Damaged checkpoint files.


def _small_state(shift=0.0):
  return {"w": jnp.arange(4096, dtype=jnp.float32) + shift,
          "h": jnp.ones((8, 8), jnp.bfloat16) * (1 + shift),
          "step": jnp.int32(7 + shift), "key": jax.random.PRNGKey(int(shift))}


def _damage(path, fault):
  if fault == "delete":
    os.remove(path)
  elif fault == "truncate":
    os.truncate(path, os.path.getsize(path) // 2)
  else:  # flip 64 bytes (or all of a smaller file) in its middle, size unchanged
    data = bytearray(open(path, "rb").read())
    n = min(64, len(data))
    start = (len(data) - n) // 2
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    with open(path, "wb") as f:
      f.write(data)


def _flip_array_data(step_dir):
  """Flips bytes in the middle of every array-data file of a checkpoint (sizes unchanged)."""
  for root, _, names in os.walk(step_dir):
    if os.path.basename(root) == "d":
      for name in names:
        _damage(os.path.join(root, name), "flip")


def test_every_damaged_checkpoint_file_is_an_error_or_an_exact_restore(tmp_path):
  pristine = str(tmp_path / "pristine")
  c = Checkpointer(pristine)
  c.save(1, _small_state(0.0))
  c.save(2, _small_state(1.0))
  c.close()
  files = sorted(os.path.relpath(os.path.join(r, f), os.path.join(pristine, "2"))
                 for r, _, fs in os.walk(os.path.join(pristine, "2")) for f in fs)
  assert any(f.startswith("state/") for f in files) and any(
      f.startswith("checksums/") for f in files)
  outcomes = {}
  for name in files:
    for fault in ("flip", "truncate", "delete"):
      work = str(tmp_path / "work")
      shutil.rmtree(work, ignore_errors=True)
      shutil.copytree(pristine, work)
      _damage(os.path.join(work, "2", name), fault)
      c = Checkpointer(work)
      try:
        restored = c.restore(_small_state(), 2)
        assert_same_state(restored, _small_state(1.0))  # harmless damage: exactly the state
        outcomes[name, fault] = "exact"
      except CheckpointError as e:
        assert "step 2" in str(e) and "resume from step 1" in str(e), str(e)
        outcomes[name, fault] = type(e).__name__
        # The opt-in fallback restores the previous checkpoint exactly.
        assert_same_state(c.restore_newest_good(_small_state()), _small_state(0.0))
        assert os.path.isdir(work + ".corrupt/2") and c.all_steps() == [1]
      finally:
        c.close()
        shutil.rmtree(work + ".corrupt", ignore_errors=True)
  # Flipped bytes in the array data, which Orbax alone restores silently, are caught by the
  # checksums. (Orbax keeps two copies of the data, `state/d/` and `state/ocdbt.process_0/d/`,
  # and reads one: damage to the other is harmless, an exact restore above.)
  data = [f for f in files if "d/" in f and os.path.getsize(os.path.join(pristine, "2", f)) >
          1000]
  assert data and "CorruptCheckpointError" in {outcomes[f, "flip"] for f in data}, outcomes


def test_a_corrupt_newest_checkpoint_stops_the_run_or_falls_back_when_asked(straight, tmp_path):
  trainer.train(ring_config(steps=8), str(tmp_path))
  _flip_array_data(str(tmp_path / "checkpoints" / "8"))
  with pytest.raises(CheckpointError, match=r"step 8 .* corrupt.*resume from step 4"):
    trainer.train(ring_config(), str(tmp_path))
  state = trainer.train(ring_config(on_corrupt_checkpoint="previous"), str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints.corrupt") == ["8"]
  assert read_jsonl(tmp_path / "metrics.jsonl") == straight[0]
  assert_same_state(state, straight[1])
  with pytest.raises(ValueError, match="on_corrupt_checkpoint='sometimes'"):
    trainer.train(ring_config(on_corrupt_checkpoint="sometimes"), str(tmp_path))


def test_checkpoints_written_before_the_checksums_still_restore(tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.CheckpointManager(str(tmp_path)) as old:  # the layout of earlier gax versions
    old.save(3, args=ocp.args.StandardSave(_small_state(2.0)))
  c = Checkpointer(str(tmp_path))
  assert_same_state(c.restore(_small_state()), _small_state(2.0))
  c.save(4, _small_state(3.0))  # new checkpoints in the same directory carry checksums
  c.wait()
  assert_same_state(c.restore(_small_state(), 4), _small_state(3.0))
  assert_same_state(c.restore(_small_state(), 3), _small_state(2.0))
  c.close()


# ---------------------------------------------------------------------------------------------
# Bad state.


def test_a_state_with_nan_is_never_checkpointed(tmp_path, monkeypatch):
  real = loop.jit_train_step

  def poisoned(gan):  # NaN in G's parameters after step 5, between two logs
    step = real(gan)

    def run(state, batch):
      state, metrics = step(state, batch)
      if int(state.step) == 5:
        state = state.replace(g=state.g.replace(params=jax.tree_util.tree_map(
            lambda x: x * jnp.nan, state.g.params)))
      return state, metrics
    return run

  monkeypatch.setattr(loop, "jit_train_step", poisoned)
  with pytest.raises(NonFiniteStateError, match=r"step 8 holds NaN.*newest checkpoint is step "
                     r"4") as e:
    trainer.train(ring_config(log_every=100), str(tmp_path))
  assert any(p.startswith(".g.params") for p in e.value.paths)
  c = Checkpointer(str(tmp_path / "checkpoints"))
  assert c.all_steps() == [4]
  c.close()
  # And a non-finite metric at a log names the newest (finite) checkpoint.
  with pytest.raises(FloatingPointError, match=r"Non-finite.*up to 6.*newest checkpoint is "
                     r"step 4 .* checked finite"):
    trainer.train(ring_config(log_every=1), str(tmp_path / "logged"))


def test_checkpointer_refuses_non_finite_leaves(tmp_path):
  c = Checkpointer(str(tmp_path))
  bad = {**_small_state(), "w": jnp.full((3,), jnp.inf)}
  with pytest.raises(NonFiniteStateError, match=r"step 9 .* \['w'\].*holds no checkpoint"):
    c.save(9, bad)
  c.save(10, _small_state())  # integer leaves and keys are not checked
  c.wait()
  assert c.all_steps() == [10]
  with pytest.raises(NonFiniteStateError, match=r"\['h'\].*newest checkpoint is step 10"):
    c.save(11, {**_small_state(), "h": jnp.full((8, 8), jnp.nan, jnp.bfloat16)})
  c.close()


# ---------------------------------------------------------------------------------------------
# Two writers.


def test_a_second_run_on_a_locked_workdir_stops_at_once_naming_the_holder(tmp_path):
  holder = subprocess.Popen([sys.executable, os.path.abspath(__file__), "hold_lock",
                             str(tmp_path), "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
  try:
    assert holder.stdout.readline().strip() == "locked"
    t0 = time.time()
    with pytest.raises(WorkdirLocked, match=rf"in use by another run: pid {holder.pid} on host "
                       r"\S+ since 20\d\d-"):
      trainer.train(ring_config(), str(tmp_path))
    assert time.time() - t0 < 5
    assert not os.path.exists(tmp_path / "metrics.jsonl")
  finally:
    holder.kill()  # SIGKILL: the kernel releases the lock
    holder.wait()
  trainer.train(ring_config(steps=2), str(tmp_path))
  with WorkdirLock(str(tmp_path)):  # released at the end of a run
    pass


# ---------------------------------------------------------------------------------------------
# Full disk, read-only work directory.


def test_a_full_disk_during_a_checkpoint_stops_cleanly_keeping_the_previous(straight, tmp_path):
  r = _spawn("full_disk_in_save", tmp_path, 8)
  assert r.returncode == 1, r.stderr[-3000:]
  assert "CheckpointWriteError: Could not write the checkpoint of step 8" in r.stderr
  assert "checkpoints of steps [4] are intact" in r.stderr
  state = trainer.train(ring_config(), str(tmp_path))  # resume from step 4
  assert read_jsonl(tmp_path / "metrics.jsonl") == straight[0]
  assert_same_state(state, straight[1])


def test_a_full_disk_during_a_metrics_write_stops_cleanly(straight, tmp_path):
  r = _spawn("full_disk_in_metrics", tmp_path, 4)
  assert r.returncode == 1, r.stderr[-3000:]
  assert "WorkdirError: Could not write " in r.stderr and "metrics.jsonl" in r.stderr
  state = trainer.train(ring_config(), str(tmp_path))  # a half line is dropped on resume
  assert read_jsonl(tmp_path / "metrics.jsonl") == straight[0]
  assert_same_state(state, straight[1])


def test_a_full_disk_during_a_tensorboard_write_stops_cleanly(straight, tmp_path):
  r = _spawn("full_disk_in_tensorboard", tmp_path, 4)
  assert r.returncode == 1, r.stderr[-3000:]
  assert "WorkdirError: Could not write " in r.stderr and "events.out.tfevents" in r.stderr
  state = trainer.train(ring_config(), str(tmp_path))  # resumed from step 4
  assert read_jsonl(tmp_path / "metrics.jsonl") == straight[0]
  assert_same_state(state, straight[1])
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
  acc.Reload()
  assert [e.step for e in acc.Scalars("train/d_loss")] == list(range(1, STEPS + 1))


def test_a_read_only_workdir_is_a_clear_error(tmp_path, monkeypatch):
  workdir = tmp_path / "ro"
  workdir.mkdir()
  if os.geteuid() != 0:
    workdir.chmod(0o500)
  else:  # root writes anywhere: inject the error the kernel gives everyone else
    real_open = os.open

    def refuse(path, *args, **kwargs):
      if str(path).startswith(str(workdir)):
        raise PermissionError(13, "Permission denied", str(path))
      return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", refuse)
  with pytest.raises(WorkdirError, match=r"Cannot write to the work directory .*ro: "
                     "Permission denied"):
    trainer.train(ring_config(), str(workdir))


# ---------------------------------------------------------------------------------------------
# The launchers' errors: one line.


def _launch(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)


def _error_lines(stderr):
  return [l for l in stderr.splitlines() if ": error: " in l]


def test_launcher_errors_are_one_line(tmp_path):
  from experiments.configs import ring  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  c = ring.get_config()  # the config the command line below gives
  c.train.update(steps=8, checkpoint_every=4, log_every=1, sample_every=0)
  c.data.batch_size, c.latent.dim, c.eval.every, c.d_penalty.r1 = 32, 4, -1, 0.0
  c.model.g_hidden, c.model.d_hidden = (32,), (32,)
  trainer.train(c, workdir)
  _flip_array_data(os.path.join(workdir, "checkpoints", "8"))
  empty = tmp_path / "empty"  # a run that never checkpointed
  empty.mkdir()
  for name in (trainer.CONFIG_FILE, trainer.RUN_FILE):
    shutil.copy(os.path.join(workdir, name), empty / name)
  config = [f"--config.{k}" for k in ("train.steps=12", "train.checkpoint_every=4",
                                      "data.batch_size=32", "latent.dim=4",
                                      "model.g_hidden=(32,)", "model.d_hidden=(32,)",
                                      "train.log_every=1", "train.sample_every=0",
                                      "eval.every=-1", "d_penalty.r1=0.0")]
  cases = [
      (_launch("train.py", "--config=experiments/configs/ring.py", f"--workdir={workdir}",
               *config), r"train.py: error: .*checkpoint of step 8 .* corrupt.*resume from step 4"),
      (_launch("sample.py", f"--workdir={tmp_path / 'none'}", f"--out={tmp_path / 'x.npy'}"),
       r"sample.py: error: No work directory"),
      (_launch("sample.py", f"--workdir={empty}", f"--out={tmp_path / 'x.npy'}"),
       r"sample.py: error: .* has no checkpoint yet"),
      (_launch("train.py", "--config=experiments/configs/dcgan_digits.py",
               f"--workdir={tmp_path / 'd'}", "--config.data.path=x.npz"),
       r"train.py: error: config.data has no key 'path' .*its keys: batch_size, image_size, "
       r"name\. .*--config=experiments/configs/dcgan_digits.py:array"),
      (_launch("train.py", "--config=experiments/configs/dcgan_digits.py",
               f"--workdir={tmp_path / 'd'}", "--config.data.imagesize=8"),
       r"train.py: error: config.data has no key 'imagesize'"),
  ]
  for r, pattern in cases:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and re.search(pattern, lines[0]), r.stderr[-3000:]


def test_a_config_switches_to_another_data_source_from_the_command_line(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
  np.save(tmp_path / "images.npy", images)
  r = _launch("train.py", "--config=experiments/configs/dcgan_digits.py:array",
              f"--workdir={tmp_path / 'run'}", f"--config.data.path={tmp_path / 'images.npy'}",
              "--config.data.image_size=8", "--config.model.width=4", "--config.train.steps=2",
              "--config.data.batch_size=8", "--config.train.log_every=1",
              "--config.train.sample_every=0", "--config.eval.every=-1")
  assert r.returncode == 0, r.stderr[-3000:]
  saved = trainer.load_config(str(tmp_path / "run"))
  assert saved.data.name == "array" and saved.data.path == str(tmp_path / "images.npy")
  assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 2


if __name__ == "__main__":
  _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
