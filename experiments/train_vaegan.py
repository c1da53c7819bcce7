r"""Trains a VAE-GAN (Larsen et al. 2016, `gax.vaegan`) from a config file.

  python experiments/train_vaegan.py --config=experiments/configs/vaegan_digits.py \
      --workdir=runs/vaegan_digits --config.train.steps=5000

It trains through `gax.fit`, the loop of `experiments/train.py`, with the VAE-GAN's own step
(`fit(train_step=...)`), so logging, checkpoints, the write-failure and non-finite stops and
the resume are the same. The work directory holds config.json, metrics.jsonl (one JSON
object per logged step),
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

# Let configs import their siblings as `experiments.configs.*` when run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from gax import cli, data as data_lib, loop, models, trainer, visualize  # pylint: disable=g-import-not-at-top
from gax import conv as conv_lib  # pylint: disable=g-import-not-at-top
from gax.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
from gax.optimizers import build_optimizer  # pylint: disable=g-import-not-at-top
from gax.steps import apply_model  # pylint: disable=g-import-not-at-top
from gax.workdir import WorkdirLock  # pylint: disable=g-import-not-at-top
from gax.vaegan import (VAEGAN, DCGANEncoder, init_vaegan_state,  # pylint: disable=g-import-not-at-top
                        reconstruct, vaegan_train_step)

_BUILT = {}  # config (less `train`) as JSON -> (model, source, jitted step): compile once


def _build_cached(config):
  key = json.dumps({k: v for k, v in config.to_dict().items() if k != "train"}, sort_keys=True)
  if key not in _BUILT:
    model, source = build(config)
    # The sources' batches are [n_critic = 1, B, ...]; the VAE-GAN step takes [B, ...].
    step = jax.jit(lambda s, b: vaegan_train_step(model, s, b[0]), donate_argnums=0,
                   compiler_options=conv_lib.compiler_options())
    _BUILT[key] = (model, source, step)
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


class _Samples(loop.Callback):
  """Every `every` steps (and at the last), a grid of prior samples `prior_<step>.png` and of
  reconstructions of a fixed real batch `recon_<step>.png` (real images in the top half)."""

  def __init__(self, model, directory, every, z, real):
    self.model, self.directory, self.every, self.z, self.real = model, directory, every, z, real

  def on_step(self, step, state):
    os.makedirs(self.directory, exist_ok=True)
    g = state.g
    prior = apply_model(self.model.generator, g.params, g.model_state, self.z, False)[0]
    visualize.save_image_grid(os.path.join(self.directory, f"prior_{step:07d}.png"),
                              np.asarray(prior))
    rec = np.asarray(reconstruct(self.model, state, self.real))
    both = np.concatenate([self.real.astype(np.float32) / 127.5 - 1.0, rec])
    visualize.save_image_grid(os.path.join(self.directory, f"recon_{step:07d}.png"), both,
                              ncols=int(math.ceil(math.sqrt(len(self.real)))))


def train(config, workdir):
  """Trains to `config.train.steps` with `gax.fit` (logging, checkpoints, exact resume from
  `workdir`'s newest checkpoint), holding `workdir`'s lock (`gax.workdir.WorkdirLock`) from
  the config check on; returns the final `VAEGANState`."""
  tc = config.train
  model, source, step_fn = _build_cached(config)
  os.makedirs(workdir, exist_ok=True)
  with WorkdirLock(workdir):
    ckpt = Checkpointer(trainer.checkpoint_dir(workdir))
    resuming = ckpt.latest_step() is not None
    ckpt.close()
    trainer.check_or_write_config(workdir, config.to_dict(), resuming)
    state = init_vaegan_state(model, jax.random.PRNGKey(config.seed), source.element_shape)
    n = int(tc.get("num_samples", 64))
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (n, model.latent_dim))
    real = np.asarray(source.get(0)[0][:n])  # a fixed real batch to reconstruct
    samples = _Samples(model, os.path.join(workdir, "samples"), int(tc.sample_every), z, real)
    return loop.fit(model, state, source, int(tc.steps), workdir=workdir,
                    log_every=int(tc.log_every), checkpoint_every=int(tc.checkpoint_every),
                    keep_checkpoints=int(tc.get("keep_checkpoints", 3)), callbacks=[samples],
                    lock=False, train_step=step_fn)


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
