"""experiments/train_vaegan.py: a tiny VAE-GAN run writes its metrics, sample grids, config
and checkpoints; a run resumed from the command line's checkpoint continues exactly (same state
as an uninterrupted run, earlier records kept); a changed config is refused."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import vaegan_digits
from experiments.train_vaegan import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"data.batch_size": 8, "data.image_size": 8, "model.width": 4, "latent_dim": 4,
        "train.log_every": 1, "train.sample_every": 2, "train.checkpoint_every": 2,
        "train.num_samples": 4}


def _config(steps):
  c = vaegan_digits.get_config()
  for key, value in {**TINY, "train.steps": steps}.items():
    *parents, leaf = key.split(".")
    section = c
    for p in parents:
      section = section[p]
    section[leaf] = value
  return c


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def test_train_cli_resume_and_config_check(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  state = train(_config(4), a)
  assert int(state.step) == 4
  recs = _records(a)
  assert [r["step"] for r in recs] == [1, 2, 3, 4]
  assert {"e_loss", "g_loss", "d_loss", "kl", "recon", "steps_per_sec"} <= set(recs[0])
  assert all(math.isfinite(v) for r in recs for v in r.values())
  assert sorted(os.listdir(os.path.join(a, "samples"))) == [
      "prior_0000002.png", "prior_0000004.png", "recon_0000002.png", "recon_0000004.png"]
  assert sorted(os.listdir(os.path.join(a, "checkpoints"))) == ["2", "4"]
  with open(os.path.join(a, "config.json")) as f:
    assert json.load(f)["latent_dim"] == 4

  # Two steps from the command line, then resumed in-process to four.
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_vaegan.py"),
         f"--config={os.path.join(ROOT, 'experiments', 'configs', 'vaegan_digits.py')}",
         f"--workdir={b}", "--config.train.steps=2",
         *(f"--config.{k}={v}" for k, v in TINY.items())]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "ETA" in out.stderr
  cli_recs = _records(b)
  assert [r["step"] for r in cli_recs] == [1, 2]
  assert os.listdir(os.path.join(b, "checkpoints")) == ["2"]

  resumed = train(_config(4), b)
  new_recs = _records(b)
  assert [r["step"] for r in new_recs] == [1, 2, 3, 4]
  assert new_recs[:2] == cli_recs  # steps 1-2 were not recomputed
  assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["2", "4"]
  for x, y in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(state)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
  for r, s in zip(new_recs, recs):  # the same losses as the uninterrupted run
    for k in ("e_loss", "g_loss", "d_loss", "kl"):
      assert r[k] == pytest.approx(s[k], rel=1e-4, abs=1e-6)

  other = _config(6)
  other.vaegan.kl_weight = 0.5
  with pytest.raises(ValueError, match="vaegan.kl_weight"):
    train(other, a)
