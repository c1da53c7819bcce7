r"""Trains a VAE-GAN (Larsen et al. 2016, `gax.vaegan`) from a config file.

  python experiments/train_vaegan.py --config=experiments/configs/vaegan_digits.py \
      --workdir=runs/vaegan_digits --config.train.steps=5000

The work directory holds config.json, metrics.jsonl (one JSON object per logged step),
samples/ (PNG grids of prior samples `prior_<step>.png` and of reconstructions of a fixed
real batch `recon_<step>.png`, real images in the top half) and checkpoints/ (Orbax,
`VAEGANState`). Re-running with the same --workdir resumes from the newest checkpoint; the
resumption is exact, since the PRNG key is in the state and the data is random access. A
resumed run whose config differs outside `train` is refused.
"""

import json
import math
import os
import sys
import time

# Let configs import their siblings as `experiments.configs.*` when run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from gax import cli, data as data_lib, models, trainer, visualize  # pylint: disable=g-import-not-at-top
from gax.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
from gax.optimizers import build_optimizer  # pylint: disable=g-import-not-at-top
from gax.steps import apply_model  # pylint: disable=g-import-not-at-top
from gax.workdir import WorkdirLock  # pylint: disable=g-import-not-at-top
from gax.vaegan import (VAEGAN, DCGANEncoder, init_vaegan_state,  # pylint: disable=g-import-not-at-top
                        jit_vaegan_train_step, reconstruct)

METRICS_FILE = "metrics.jsonl"
_BUILT = {}  # config (less `train`) as JSON -> (model, source, jitted step): compile once


def _build_cached(config):
  key = json.dumps({k: v for k, v in config.to_dict().items() if k != "train"}, sort_keys=True)
  if key not in _BUILT:
    model, source = build(config)
    _BUILT[key] = (model, source, jit_vaegan_train_step(model))
  return _BUILT[key]


def build(config):
  """`(model, source)`: the `VAEGAN` and the data source (`get(step)` -> `[1, B, H, W, C]`)."""
  data_cfg = config.data.to_dict()
  source = data_lib.DATASETS.build(data_cfg.pop("name"), batch_size=data_cfg.pop("batch_size"),
                                   n_critic=1, seed=config.seed, **data_cfg)
  shape = tuple(source.element_shape)
  model_cfg = config.model.to_dict()
  g, d = models.MODELS.build("dcgan", data_shape=shape, **model_cfg)
  e = DCGANEncoder(resolution=shape[0], latent_dim=int(config.latent_dim),
                   width=int(model_cfg.get("width", 64)))
  opt = config.optimizer.to_dict()
  if set(opt) != {"e", "g", "d"}:
    raise KeyError(f"config.optimizer must have exactly the keys e, g, d; got {sorted(opt)}.")
  model = VAEGAN(e, g, d, build_optimizer(opt["e"]), build_optimizer(opt["g"]),
                 build_optimizer(opt["d"]), latent_dim=int(config.latent_dim),
                 **{k: float(v) for k, v in config.vaegan.items()})
  return model, source


def _write_samples(workdir, step, model, state, z, real):
  out = os.path.join(workdir, "samples")
  os.makedirs(out, exist_ok=True)
  prior = apply_model(model.generator, state.g.params, state.g.model_state, z, False)[0]
  visualize.save_image_grid(os.path.join(out, f"prior_{step:07d}.png"), np.asarray(prior))
  rec = np.asarray(reconstruct(model, state, real))
  both = np.concatenate([real.astype(np.float32) / 127.5 - 1.0, rec])
  visualize.save_image_grid(os.path.join(out, f"recon_{step:07d}.png"), both,
                            ncols=int(math.ceil(math.sqrt(len(real)))))


def train(config, workdir):
  """Trains to `config.train.steps`, resuming from `workdir`'s newest checkpoint; returns the
  final `VAEGANState`. Holds `workdir`'s lock (`gax.workdir.WorkdirLock`) while it runs."""
  with WorkdirLock(workdir):
    return _train(config, workdir)


def _train(config, workdir):
  tc = config.train
  model, source, step_fn = _build_cached(config)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                      max_to_keep=int(tc.get("keep_checkpoints", 3)))
  try:
    trainer.check_or_write_config(workdir, config.to_dict(), ckpt.latest_step() is not None)
    state = init_vaegan_state(model, jax.random.PRNGKey(config.seed), source.element_shape)
    if ckpt.latest_step() is not None:
      state = ckpt.restore(state)
      logging.info("Resumed from step %d.", int(state.step))
    start, total = int(state.step), int(tc.steps)
    metrics_path = os.path.join(workdir, METRICS_FILE)
    trainer.truncate_jsonl(metrics_path, start)
    n = int(tc.get("num_samples", 64))
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (n, model.latent_dim))
    real = np.asarray(source.get(0)[0][:n])  # a fixed real batch to reconstruct
    t0, t_start = time.time(), start
    with open(metrics_path, "a") as mf:
      for step, batch in data_lib.prefetch(source, start, total,
                                           transform=lambda b: jax.device_put(b[0])):
        state, m = step_fn(state, batch)
        done = step + 1
        if done % tc.log_every == 0 or done == total:
          m = {k: float(v) for k, v in jax.device_get(m).items()}
          bad = [k for k, v in m.items() if not math.isfinite(v)]
          if bad:
            raise FloatingPointError(f"Non-finite metrics {bad} at step {done}; "
                                     f"{ckpt.newest_note()}.")
          rate = (done - t_start) / max(time.time() - t0, 1e-9)
          mf.write(json.dumps({"step": done, **m, "steps_per_s": rate}) + "\n")
          mf.flush()
          eta = trainer.format_eta((total - done) / max(rate, 1e-9))
          logging.info("step %d/%d (%.0f%%) | %s | %.1f steps/s | ETA %s", done, total,
                       100 * done / total, " ".join(f"{k}={v:.4g}" for k, v in sorted(m.items())),
                       rate, eta)
        if done % tc.sample_every == 0 or done == total:
          _write_samples(workdir, done, model, state, z, real)
        if done % tc.checkpoint_every == 0 or done == total:
          ckpt.save(done, state)
  finally:
    ckpt.close()
  return state


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  trainer.quiet_library_logs()
  train(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  # Flags are defined only when run as a script, so that tests can import `train` alongside
  # experiments/train.py (which defines the same flag names).
  config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
