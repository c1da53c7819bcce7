r"""Writes N samples of a trained generator to a .npy file.

  python experiments/sample.py --workdir=runs/digits --num=1000 --out=samples.npy --seed=0

Images come out as float32 NHWC in [-1, 1]; 2D mixtures as float32 [N, 2] points. For a
conditional run (model.conditioning), `--label=K` samples class K only; by default sample i
is of class i mod num_classes.

`--drs` keeps only the samples the run's discriminator accepts by discriminator rejection
sampling (`gax.rejection`, Azadi et al. 2019; unconditional runs trained with the minimax or
non-saturating loss), drawing until it has `--num`:

  python experiments/sample.py --workdir=runs/ring --num=2500 --out=drs.npy --drs
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from gax import cli, rejection, trainer  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a training run.")
_NUM = flags.DEFINE_integer("num", 1000, "Number of samples.", lower_bound=1)
_OUT = flags.DEFINE_string("out", None, "Output .npy path.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latent draws.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
_LABEL = flags.DEFINE_integer("label", None, "Class of every sample (conditional runs only); "
                              "default: the classes in turn.", lower_bound=0)
_DRS = flags.DEFINE_bool("drs", False, "Discriminator rejection sampling: keep the samples D "
                         "accepts.")
_DRS_GAMMA = flags.DEFINE_float("drs_gamma", 0.0, "DRS's fixed shift of the acceptance logit "
                                "(0: exact rejection sampling).")
_DRS_PERCENTILE = flags.DEFINE_float("drs_percentile", None, "DRS's shift as this percentile "
                                     "of each batch's acceptance logits.", lower_bound=0.0,
                                     upper_bound=100.0)
_TRUNCATION = flags.DEFINE_float("truncation", None, "The truncation trick (BigGAN): draw each "
                                 "latent value from N(0, 1) truncated to [-t, t] (runs with "
                                 "Gaussian latents).", lower_bound=1e-3)
_STANDING_STATS = flags.DEFINE_integer(
    "standing_stats", 0, "When > 0, recompute G's batch-norm statistics for the weights it "
    "samples with (G's EMA) from this many batches first (BigGAN's standing statistics).",
    lower_bound=0)
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _OUT.value.endswith(".npy"):
    raise app.UsageError(f"--out must be a .npy path, got {_OUT.value!r}")
  trainer.quiet_library_logs()
  config, gan, state = trainer.restore_run(_WORKDIR.value, _STEP.value)
  try:
    gan = trainer.truncated(gan, _TRUNCATION.value)
  except ValueError as e:
    raise app.UsageError(f"--truncation: {e}") from e
  if _DRS.value:
    if _LABEL.value is not None:
      raise app.UsageError("--drs samples unconditional runs; --label does not apply.")
    try:
      rejection.check_loss(config.loss)
      res = rejection.rejection_sample(gan, state, jax.random.PRNGKey(_SEED.value), _NUM.value,
                                       gamma=_DRS_GAMMA.value, percentile=_DRS_PERCENTILE.value)
    except ValueError as e:
      raise app.UsageError(f"--drs: {e}") from e
    logging.info("DRS kept %.4f of %d samples drawn (max logit %.3g)", res.acceptance,
                 res.drawn, res.max_logit)
    x = res.samples
  else:
    x = _sample(gan, state)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  np.save(_OUT.value, x)
  logging.info("Wrote %d samples of shape %s from step %d to %s", len(x), x.shape[1:],
               int(state.step), _OUT.value)


def _sample(gan, state):
  try:
    x = trainer.sample(gan, state, jax.random.PRNGKey(_SEED.value), _NUM.value,
                       labels=_LABEL.value, standing_stats=_STANDING_STATS.value)
  except ValueError as e:
    if _LABEL.value is None:
      raise
    raise app.UsageError(f"--label: {e}") from e
  return x


if __name__ == "__main__":
  cli.run(main)
