r"""Trick ablation: each trick switched on (alone, or in combinations) against the base
config, over seeds, on the 2D mixtures and the digits.

python benchmarks/ablate.py --datasets=ring,grid,digits --seeds=3 \
    --variants=label_smoothing,train_d_more,minibatch_discrimination \
    --combos=r1+minibatch_discrimination --workdir=runs/ablate

Every (dataset, variant, seed) is one `gax.trainer.train` run in
`<workdir>/<dataset>/<variant>/seed_<seed>/`, with its `eval.jsonl` and the monitor's
`alarms.jsonl`; a finished run is read back instead of trained again, so an interrupted
sweep resumes where it stopped. After every run `<workdir>/ablation.md` (the table) and
`ablation.jsonl` (one record per run) are rewritten (`--table_name` renames them). The table gives per dataset and variant
the mean ± standard deviation over seeds of the final evaluation's metrics (mixtures: modes
covered, modes with >= 1 high-quality sample, % high-quality samples, reverse KL; digits: FID,
IS, precision, recall, with one classifier shared by all runs), the difference to `baseline`
± its standard error, and how many runs the monitor flagged with each failure (and how many
diverged).

The variants are `benchmarks/variants.py`'s `VARIANTS` (`--variants=all` for every one).
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from benchmarks import variants as variants_lib  # pylint: disable=g-import-not-at-top
from gax import sweep, trainer  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS


MIXTURE_METRICS = ("modes_covered", "modes_any", "hq_fraction", "reverse_kl")
DIGITS_METRICS = ("fid", "is", "precision", "recall")
MNIST_METRICS = ("fid", "kid", "is", "precision", "recall")


def metrics_for(dataset: str) -> Sequence[str]:
  return {"digits": DIGITS_METRICS, "mnist": MNIST_METRICS}.get(dataset, MIXTURE_METRICS)


def make_jobs(datasets: Sequence[str], names: Sequence[str], seeds: int, mixture_steps: int,
              digits_steps: int, hidden: Sequence[int], root: str,
              digits_samples: int = 1000, arch: str = "gax",
              first_seed: int = 0, data_fraction: float = 1.0,
              base_variant: str = "", digits_evals: int = 2) -> List[sweep.Job]:
  """The jobs of a sweep: for each dataset the baseline and every variant name, each seed.

  Image datasets train on `data_fraction` of their images (`gax.data.class_fraction`) and
  are scored against all of them; `base_variant` (a variant name or `+` combination) is
  switched on in the baseline and every variant, e.g. `sn_hinge_ema`."""
  bad = [d for d in datasets if d not in variants_lib.DATASETS]
  if bad:
    raise ValueError(f"Unknown datasets {bad}; choose from {variants_lib.DATASETS}.")
  seed_list = sweep.seed_range(seeds, first_seed)
  jobs = []
  for dataset in datasets:
    if dataset in variants_lib.IMAGE_DATASETS:
      steps = digits_steps
      base = variants_lib.base_for(
          dataset, steps, evals=digits_evals, num_samples=digits_samples, fraction=data_fraction,
          classifier_path=os.path.abspath(os.path.join(root, f"{dataset}_classifier.npz")))
    else:
      if data_fraction != 1.0:
        raise ValueError("--data_fraction applies to the image datasets only.")
      steps = mixture_steps
      base = variants_lib.mixture_config(dataset, steps, hidden=hidden, arch=arch)
    if base_variant:
      base = sweep.apply_overrides(
          base, variants_lib.variant(base_variant, dataset, steps, base.data.batch_size).overrides)
    jobs.extend(sweep.Job(dataset, variants_lib.VARIANTS["baseline"], seed, base)
                for seed in seed_list)
    for name in names:
      if name == "baseline":
        continue
      if variants_lib.inapplicable(name, dataset):
        logging.warning("Skipping %s on %s: it does not apply there.", name, dataset)
        continue
      v = variants_lib.variant(name, dataset, steps, base.data.batch_size)
      if not variants_lib.changes_base(base, v):
        logging.warning("Skipping %s on %s: the base config already has it.", name, dataset)
        continue
      jobs.extend(sweep.Job(dataset, v, seed, base) for seed in seed_list)
  return jobs


def write_outputs(root: str, records: Sequence[Dict], datasets: Sequence[str],
                  name: str = "ablation") -> str:
  """Rewrites `<root>/<name>.md` and `<name>.jsonl`; returns the table."""
  parts = []
  for dataset in datasets:
    rs = [r for r in records if r["group"] == dataset]
    if rs:
      rows = sweep.summarise(rs, metrics_for(dataset), baseline="baseline")
      parts.append(sweep.markdown_table(rows, metrics_for(dataset), deltas=True))
  table = "\n".join(parts)
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, name + ".md")
  with open(path + ".tmp", "w") as f:
    f.write(table)
  os.replace(path + ".tmp", path)
  sweep.write_jsonl(os.path.join(root, name + ".jsonl"), records)
  return table


def main(argv):
  del argv
  trainer.quiet_library_logs()
  host.tune_malloc()
  names = list(FLAGS.variants)
  if names == ["all"]:
    names = [n for n in variants_lib.VARIANTS if n != "baseline"]
  names += list(FLAGS.combos)
  try:
    hidden = [int(h) for h in FLAGS.hidden]
  except ValueError:
    raise app.UsageError(f"--hidden must be integers, got {FLAGS.hidden}.") from None
  try:
    jobs = make_jobs(FLAGS.datasets, names, FLAGS.seeds, FLAGS.mixture_steps,
                     FLAGS.digits_steps, hidden, FLAGS.workdir, FLAGS.digits_samples,
                     FLAGS.arch, FLAGS.first_seed, FLAGS.data_fraction, FLAGS.base_variant,
                     FLAGS.digits_evals)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  logging.info("%d runs in %s", len(jobs), FLAGS.workdir)
  out = lambda rs: write_outputs(FLAGS.workdir, rs, FLAGS.datasets, FLAGS.table_name)
  records = sweep.run_many(jobs, FLAGS.workdir, on_record=out)
  print(out(records))


def define_flags() -> None:
  """The command's flags (defined only when run as a script, so that tests can import
  both benchmark modules)."""
  flags.DEFINE_list("datasets", ["ring", "grid", "digits"], "Datasets: ring, grid, digits, "
                    "mnist.")
  flags.DEFINE_list("variants", ["all"], "Variants to switch on alone ('all': every one).")
  flags.DEFINE_list("combos", [], "Combinations to run too, e.g. r1+minibatch_discrimination.")
  flags.DEFINE_integer("seeds", 3, "Number of seeds per variant: first_seed, first_seed + 1, ...")
  flags.DEFINE_integer("first_seed", 0, "The first seed (processes sharing a --workdir can "
                       "take disjoint seed ranges).")
  flags.DEFINE_integer("mixture_steps", 5000, "Training steps on the mixtures.")
  flags.DEFINE_integer("digits_steps", 1000, "Training steps on the image datasets.")
  flags.DEFINE_float("data_fraction", 1.0, "Fraction of each class of the image datasets to "
                     "train on (scored against all of it): limited-data runs.")
  flags.DEFINE_string("base_variant", "", "A variant (or + combination) switched on in the "
                      "baseline and every variant, e.g. sn_hinge_ema.")
  flags.DEFINE_list("hidden", ["128", "128", "128"], "MLP hidden widths (mixtures, arch gax).")
  flags.DEFINE_enum("arch", "gax", variants_lib.ARCHS, "Mixture networks and optimiser: gax's "
                    "MLPs, or those of the PacGAN code (benchmarks/variants.py: PACGAN_ARCH).")
  flags.DEFINE_integer("digits_samples", 1000, "Generated images per digits evaluation.")
  flags.DEFINE_integer("digits_evals", 2, "Evaluations (and checkpoints) per image-dataset "
                       "run, evenly spaced; the table reads the last.")
  flags.DEFINE_string("workdir", "runs/ablate", "Root of the runs and the result table.")
  flags.DEFINE_string("table_name", "ablation", "The table is <workdir>/<table_name>.md, the "
                      "records <table_name>.jsonl.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
