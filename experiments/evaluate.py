r"""Evaluates the checkpoints of a training run; appends to <workdir>/eval_offline.jsonl.

  python experiments/evaluate.py --workdir=runs/dcgan_digits                  # newest
  python experiments/evaluate.py --workdir=runs/dcgan_digits --all_steps --num_samples=10000 \
      --metrics=fid,kid,is,pr
  python experiments/evaluate.py --workdir=runs/dcgan_digits --best
  python experiments/evaluate.py --workdir=runs/ring --drs       # + rejection sampling
  python experiments/evaluate.py --workdir=runs/dcgan_ema --standing_stats=16  # EMA + BN
  python experiments/evaluate.py --workdir=runs/ring --drs --drs_calibrate_steps=5000
  python experiments/evaluate.py --workdir=runs/cifar --features=inception_v3 \
      --inception_path=fid_inception_v3.npz

The settings default to the run's `eval` config section (see `gax.evaluation.EvalSettings`),
so with no flags an evaluation repeats the one the trainer logged in eval.jsonl for the same
step. The run's classifier (`eval_classifier.npz`) and reference statistics are reused, or
made once and kept in the work directory. Prints a table of the results.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from gax import cli, evaluation, trainer  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a training run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
_ALL_STEPS = flags.DEFINE_bool("all_steps", False, "Evaluate every kept checkpoint.")
_BEST = flags.DEFINE_bool("best", False, "Evaluate the best checkpoint (<workdir>/best/).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", None, "Generated images per evaluation "
                                    "(default: the run's eval.num_samples).", lower_bound=10)
_METRICS = flags.DEFINE_list("metrics", None, "Image metrics among "
                             f"{','.join(evaluation.IMAGE_METRICS)} (fid always; pr = "
                             "precision and recall, dc = density and coverage; conditional "
                             "runs: intra_fid, and accuracy of the samples' classes). Default: "
                             "the run's eval.metrics.")
_FEATURES = flags.DEFINE_enum("features", None, list(evaluation.FEATURES),
                              "Feature network (default: the run's eval.features).")
_INCEPTION_PATH = flags.DEFINE_string("inception_path", None,
                                      "Local Inception-v3 .npz for --features=inception_v3.")
_CLASSIFIER_PATH = flags.DEFINE_string(
    "classifier_path", None, "Classifier .npz for --features=classifier (default: the run's, "
    "<workdir>/eval_classifier.npz); made from the run's labelled data when absent.")
_CLASSIFIER_STEPS = flags.DEFINE_integer(
    "classifier_steps", None, "Training steps of a classifier made here (default: the run's "
    "eval.classifier_steps).", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", None, "Seed of the generated samples (default: the "
                             "run's eval.seed).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Images per generator/feature call.",
                                   lower_bound=1)
_DRS = flags.DEFINE_bool("drs", None, "Mixtures: also score samples kept by discriminator "
                         "rejection sampling (gax.rejection; default: the run's eval.drs).")
_DRS_GAMMA = flags.DEFINE_float("drs_gamma", None, "DRS's fixed shift of the acceptance logit "
                                "(0: exact rejection sampling).")
_DRS_PERCENTILE = flags.DEFINE_float("drs_percentile", None, "When > 0, DRS's shift is this "
                                     "percentile of each batch's acceptance logits.")
_DRS_CALIBRATE_STEPS = flags.DEFINE_integer(
    "drs_calibrate_steps", None, "When > 0, train a copy of D this many steps against the "
    "final G before DRS (gax.rejection.calibrate_discriminator).", lower_bound=0)
_DRS_CALIBRATE_LR = flags.DEFINE_float("drs_calibrate_lr", None, "Adam learning rate of the "
                                       "calibration (default: the run's, 1e-4).")
_STANDING_STATS = flags.DEFINE_integer(
    "standing_stats", None, "When > 0, recompute G's batch-norm statistics for the weights it "
    "samples with (e.g. G's EMA) from this many train-mode batches first (BigGAN's standing "
    "statistics; default: the run's eval.standing_stats).", lower_bound=0)
_TRUNCATIONS = flags.DEFINE_list(
    "truncations", None, "Also evaluate with the truncation trick at these thresholds, e.g. "
    "none,2,1.5,1,0.5 for the FID-vs-truncation curve ('none': the full Gaussian; runs with "
    "Gaussian latents).")
flags.mark_flags_as_required(["workdir"])


EvaluationError = trainer.EvaluationError
evaluate_run = trainer.evaluate_run


def format_table(records) -> str:
  """The records as a plain-text table: one row per checkpoint, one column per metric."""
  keys = [k for k in ("truncation", "fid", "kid", "kid_std", "is", "is_std", "precision",
                      "recall", "density", "coverage", "intra_fid", "class_accuracy",
                      "modes_covered", "modes", "hq_fraction", "reverse_kl",
                      "drs_modes_covered", "drs_hq_fraction", "drs_reverse_kl",
                      "drs_acceptance")
          if any(k in r for r in records)]
  header = ["step", "checkpoint", *keys, "num_samples",
            *(["features"] if any("features" in r for r in records) else [])]

  def cell(v):
    if isinstance(v, float):
      return f"{v:.6g}"
    return "-" if v is None else str(v)

  rows = [header] + [[cell(r.get(k)) for k in header] for r in records]
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _truncations():
  if not _TRUNCATIONS.value:
    return (None,)
  out = []
  for v in _TRUNCATIONS.value:
    try:
      t = None if v.strip().lower() == "none" else float(v)
    except ValueError:
      raise app.UsageError(f"--truncations: {v!r} is neither a number nor 'none'.") from None
    if t is not None and not t > 0:
      raise app.UsageError(f"--truncations: thresholds must be > 0, got {v!r}.")
    out.append(t)
  return tuple(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  trainer.quiet_library_logs()
  records = evaluate_run(
      _WORKDIR.value, step=_STEP.value, all_steps=_ALL_STEPS.value, best=_BEST.value,
      num_samples=_NUM_SAMPLES.value, metrics=_METRICS.value, features=_FEATURES.value,
      inception_path=_INCEPTION_PATH.value, classifier_path=_CLASSIFIER_PATH.value,
      classifier_steps=_CLASSIFIER_STEPS.value, seed=_SEED.value,
      batch_size=_BATCH_SIZE.value, drs=_DRS.value, drs_gamma=_DRS_GAMMA.value,
      drs_percentile=_DRS_PERCENTILE.value, drs_calibrate_steps=_DRS_CALIBRATE_STEPS.value,
      drs_calibrate_lr=_DRS_CALIBRATE_LR.value, standing_stats=_STANDING_STATS.value,
      truncations=_truncations())
  print(format_table(records))
  print(f"Appended to {os.path.join(_WORKDIR.value, evaluation.OFFLINE_EVAL_FILE)}")


if __name__ == "__main__":
  cli.run(main)
