"""Multi-process training: the start-up flags, each process's rows of the global batch, and a
real run of experiments/train.py as 2 processes on this CPU machine (2 CPU devices each)."""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gax import checkpoint, data, parallel, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------------------------------------
# jax.distributed.initialize arguments and errors.


def test_only_the_given_settings_reach_jax_distributed_initialize():
  assert parallel.distributed_kwargs() == {}
  assert parallel.distributed_kwargs("", None, None, "") == {}  # the flags' defaults
  assert parallel.distributed_kwargs(num_processes=4) == {"num_processes": 4}
  assert parallel.distributed_kwargs("10.0.0.1:1234", 2, 1, "0,1") == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1,
      "local_device_ids": [0, 1]}
  assert parallel.distributed_kwargs(local_device_ids=["2", "3"]) == {"local_device_ids": [2, 3]}
  assert parallel.distributed_kwargs(local_device_ids=5) == {"local_device_ids": [5]}


@pytest.mark.parametrize("kwargs, match", [
    ({"coordinator_address": "10.0.0.1"}, "--coordinator_address='10.0.0.1' must be HOST:PORT"),
    ({"coordinator_address": "host:port"}, "must be HOST:PORT"),
    ({"num_processes": 0}, "--num_processes must be an integer >= 1, got 0"),
    ({"process_id": -1}, "--process_id must be an integer >= 0, got -1"),
    ({"num_processes": 2, "process_id": 2}, "--process_id=2 must be below --num_processes=2"),
    ({"local_device_ids": "0,x"}, "--local_device_ids='0,x' must be comma-separated"),
    ({"local_device_ids": "0,0"}, "distinct"),
])
def test_bad_settings_are_errors_naming_the_flag(kwargs, match):
  with pytest.raises(ValueError, match=match):
    parallel.distributed_kwargs(**kwargs)


def test_initialize_distributed_passes_the_settings_and_explains_jax_errors(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  info = parallel.initialize_distributed("localhost:1234", 1, 0)
  assert calls == [{"coordinator_address": "localhost:1234", "num_processes": 1,
                    "process_id": 0}]
  assert info == {"process_index": 0, "process_count": 1,
                  "local_device_count": jax.local_device_count(),
                  "device_count": jax.device_count()}

  jax_error = ValueError("coordinator_address should be defined.")

  def fail(**kw):
    raise jax_error

  monkeypatch.setattr(jax.distributed, "initialize", fail)
  with pytest.raises(parallel.DistributedInitError) as e:
    parallel.initialize_distributed(num_processes=2)
  message = str(e.value)
  assert e.value.__cause__ is jax_error
  assert "coordinator_address should be defined" in message  # JAX's own words
  assert "--coordinator_address, --process_id were left to JAX's auto-detection" in message
  assert "--coordinator_address=HOST:PORT" in message and "--process_id=I" in message


def _launcher(*args, drop_env=(), timeout=120):
  env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_env))}
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_launcher_refuses_distributed_flags_without_distributed(tmp_path):
  r = _launcher("--config=experiments/configs/ring.py", f"--workdir={tmp_path}",
                "--num_processes=2", "--process_id=0")
  assert r.returncode != 0
  assert "--num_processes, --process_id only take(s) effect with --distributed" in r.stderr
  assert not os.path.exists(os.path.join(tmp_path, "config.json"))


def test_launcher_wraps_the_failed_auto_detection_with_the_flags_to_set(tmp_path):
  # Not on Cloud TPU, SLURM or Open MPI: JAX cannot find the coordinator by itself.
  r = _launcher("--config=experiments/configs/ring.py", f"--workdir={tmp_path}",
                "--distributed", "--num_processes=2", drop_env=("SLURM_", "OMPI_"))
  assert r.returncode != 0
  assert "DistributedInitError" in r.stderr
  assert "coordinator_address should be defined" in r.stderr
  assert "--coordinator_address=HOST:PORT" in r.stderr


# ------------------------------------------------------------------------------------------
# Rows of the global batch.


def test_global_batch_must_split_evenly_over_the_devices():
  assert parallel.check_global_batch(32, 4) == 32
  assert parallel.check_global_batch(32, 4, num_processes=2) == 16
  with pytest.raises(ValueError, match=r"config.data.batch_size=30 is the global batch and must "
                     r"be divisible by the 4 devices .*e.g. 32"):
    parallel.check_global_batch(30, 4)
  with pytest.raises(ValueError, match=r"8 devices \(2 processes x 4 local devices\)"):
    parallel.check_global_batch(36, 8, num_processes=2)


def test_the_trainer_checks_the_global_batch_before_any_work(tmp_path):
  c = _ring_config()
  c.parallel = "mesh"
  c.data.batch_size = 30
  with pytest.raises(ValueError, match="config.data.batch_size=30 .* 4 devices"):
    trainer.train(c, str(tmp_path))


def test_the_trainer_refuses_parallel_none_with_several_processes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda *a, **k: 2)
  with pytest.raises(ValueError, match="config.parallel='none' .* 2 processes"):
    trainer.train(_ring_config(), str(tmp_path))


def test_process_rows_concatenated_over_processes_are_the_global_batch():
  source = data.ring(batch_size=12, n_critic=2, seed=3, labels=True)
  want = source.get(5)
  parts = [parallel.ProcessRows(source, parallel.process_rows(12, p, 3)).get(5) for p in range(3)]
  for key in ("x", "y"):
    assert all(part[key].shape[:2] == (2, 4) for part in parts)
    np.testing.assert_array_equal(np.concatenate([part[key] for part in parts], axis=1),
                                  want[key])
  images = np.arange(20 * 2 * 2 * 1, dtype=np.uint8).reshape(20, 2, 2, 1)
  source = data.ArraySource(images, batch_size=8, n_critic=1, seed=0)
  rows = [parallel.process_rows(8, p, 2) for p in range(2)]
  np.testing.assert_array_equal(
      np.concatenate([parallel.ProcessRows(source, r).get(7) for r in rows], axis=1),
      source.get(7))
  with pytest.raises(ValueError, match="cannot be split into 3"):
    parallel.process_rows(8, 0, 3)


def test_sharding_rows_follow_the_mesh_device_order():
  devices = jax.devices()[:4]
  # Devices 0 and 1 as one "process", 2 and 3 as another, laid out alternately on the mesh.
  mesh = parallel.make_mesh([devices[0], devices[2], devices[1], devices[3]])
  sharding = parallel.batch_sharding(mesh)
  first = parallel.sharding_process_rows(sharding, 8, devices[:2])
  second = parallel.sharding_process_rows(sharding, 8, devices[2:])
  np.testing.assert_array_equal(first, [0, 1, 4, 5])
  np.testing.assert_array_equal(second, [2, 3, 6, 7])
  np.testing.assert_array_equal(parallel.sharding_process_rows(sharding, 8), np.arange(8))
  source = data.ring(batch_size=8, n_critic=2)
  got = parallel.ProcessRows(source, first).get(1)  # non-contiguous rows: an index array
  np.testing.assert_array_equal(got, source.get(1)[:, [0, 1, 4, 5]])


def test_with_one_process_the_helpers_change_nothing():
  mesh = parallel.make_mesh(jax.devices()[:4])
  batch = np.arange(2 * 8 * 2, dtype=np.float32).reshape(2, 8, 2)
  got = parallel.put_global_batch(batch, parallel.batch_sharding(mesh), 8)
  assert got.sharding == parallel.batch_sharding(mesh)
  np.testing.assert_array_equal(got, batch)
  tree = {"a": np.ones(3, np.float32), "b": np.int32(2)}
  rep = parallel.put_replicated(tree, parallel.replicated_sharding(mesh))
  assert rep["a"].sharding.is_fully_replicated and rep["a"].sharding.num_devices == 4
  assert checkpoint.global_replicas(tree) is tree
  value = {"fid": 1.5, "counts": [1, 2]}
  assert parallel.broadcast_from_process_0(value) is value
  calls = []
  assert parallel.process_0_first(lambda: calls.append(1) or 7, "barrier") == 7
  assert calls == [1]
  parallel.sync_processes("nothing to wait for")


def test_only_checking_the_config_writes_nothing(tmp_path):
  trainer.check_or_write_config(str(tmp_path), {"a": 1}, has_checkpoint=False, write=False)
  assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------------------
# A real 2-process run.

STEPS = 6
OVERRIDES = {"parallel": "mesh", "data.batch_size": 32, "model.g_hidden": (16,),
             "model.d_hidden": (16,), "latent.dim": 4, "train.steps": STEPS,
             "train.log_every": 1, "train.sample_every": 3, "train.checkpoint_every": 3,
             "train.num_samples": 16}


def _ring_config():
  from experiments.configs import ring  # pylint: disable=g-import-not-at-top
  c = ring.get_config()
  for key, value in OVERRIDES.items():
    section, _, name = key.rpartition(".")
    setattr(c[section] if section else c, name, value)
  c.parallel = "none"
  return c


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _read_jsonl(path, drop=("steps_per_sec", "elapsed_sec")):
  with open(path) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in f]


def test_two_processes_train_like_one_and_only_process_0_writes(tmp_path):
  workdir = str(tmp_path / "two")
  port = _free_port()
  flags = ["--config=experiments/configs/ring.py", f"--workdir={workdir}", "--distributed",
           f"--coordinator_address=localhost:{port}", "--num_processes=2",
           *(f"--config.{k}={v}" for k, v in OVERRIDES.items())]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  logs = [open(tmp_path / f"process_{i}.log", "w+") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments", "train.py"),
                             *flags, f"--process_id={i}"], cwd=ROOT, env=env, stdout=logs[i],
                            stderr=subprocess.STDOUT) for i in range(2)]
  deadline = time.time() + 300
  try:
    for p in procs:
      p.wait(timeout=max(deadline - time.time(), 1))
  finally:
    for p in procs:  # JAX catches SIGTERM; a hung process needs SIGKILL
      if p.poll() is None:
        p.kill()
  out = []
  for f in logs:
    f.seek(0)
    out.append(f.read())
    f.close()
  assert [p.returncode for p in procs] == [0, 0], out[0][-3000:] + out[1][-3000:]
  assert "Distributed: process 0 of 2, 2 local device(s), 4 global device(s)" in out[0]
  assert "Distributed: process 1 of 2, 2 local device(s), 4 global device(s)" in out[1]
  # Process 0 logs the progress and writes the records, once per step; process 1 neither.
  assert f"step {STEPS}/{STEPS} (100%)" in out[0] and "in 2 processes" in out[0]
  assert "step 1/" not in out[1] and "Wrote samples" not in out[1]
  two = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in two] == list(range(1, STEPS + 1))
  evals = _read_jsonl(os.path.join(workdir, "eval.jsonl"))
  assert [e["step"] for e in evals] == [3, 6]
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_0000003.png",
                                                                  "step_0000006.png"]
  with open(os.path.join(workdir, "best.json")) as f:
    assert json.load(f)["step"] == 3
  # All processes took part in the Orbax saves; each checkpoint is complete.
  for step in (3, 6):
    assert os.path.exists(os.path.join(workdir, "checkpoints", str(step), "commit_success.txt"))

  # One process on one device, the same global batches: the same losses and evaluations.
  one = str(tmp_path / "one")
  trainer.train(_ring_config(), one)
  for a, b in zip(two, _read_jsonl(os.path.join(one, "metrics.jsonl")), strict=True):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
  for a, b in zip(evals, _read_jsonl(os.path.join(one, "eval.jsonl")), strict=True):
    assert a.keys() == b.keys() and a["counts"] == b["counts"]
    np.testing.assert_allclose(a["reverse_kl"], b["reverse_kl"], rtol=1e-6)
