r"""Class-conditional GANs side by side: class maps as D channels (cGAN), an auxiliary
classifier (AC-GAN) and the projection discriminator with conditional batch norm in G
(SNGAN-projection), on one base config, over seeds.

python benchmarks/conditional.py --seeds=3 --steps=3000 --workdir=runs/conditional

Each (conditioning, seed) is one `gax.trainer.train` run of the digits DCGAN
(`experiments/configs/dcgan_digits.py`, 16x16), with `--base=sn` (default) the SNGAN recipe
of `dcgan_digits_sn.py` (spectral norm in a D without batch norm, hinge loss, G's EMA) for
all three, so that only the conditioning differs; `--base=dcgan` keeps the plain DCGAN
(batch norm in D, the non-saturating loss). The conditioning options are those of
`cgan_digits.py`, `acgan_digits.py` and `projection_digits.py`. Every run is scored by FID,
intra-class FID, the classifier's accuracy on the samples' classes and density/coverage,
with one digits classifier shared by all runs (`<workdir>/digits_classifier.npz`). The
table (`<workdir>/conditional.md`, mean ± standard deviation over seeds and the difference
to the cGAN row ± its standard error) and `conditional.jsonl` are rewritten after every
run; finished runs are read back, so an interrupted sweep resumes.
"""

from __future__ import annotations

import os
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from benchmarks import variants as variants_lib  # pylint: disable=g-import-not-at-top
from experiments.configs import dcgan_digits, dcgan_digits_sn  # pylint: disable=g-import-not-at-top
from gax import sweep, trainer  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS

METRICS = ("fid", "intra_fid", "class_accuracy", "density", "coverage")
BASES = ("sn", "dcgan")
# name -> the model options of the experiments' conditional configs.
CONDITIONINGS = {
    "cgan": {"model.conditioning": "concat", "model.g_class_dim": 16, "model.d_class_dim": 4,
             "model.class_map_resize": "nearest"},
    "acgan": {"model.conditioning": "auxiliary", "model.g_class_dim": 16,
              "model.aux_weight": 1.0},
    "projection": {"model.conditioning": "projection"},
}


def base_config(base: str, steps: int, num_samples: int, classifier_path: str):
  """The digits config every conditioning starts from, scheduled for `steps` steps."""
  if base not in BASES:
    raise ValueError(f"--base must be one of {BASES}, got {base!r}.")
  c = (dcgan_digits_sn if base == "sn" else dcgan_digits).get_config()
  c = variants_lib.image_config(c, steps, 2, num_samples, classifier_path, 1.0,
                                ("fid", "intra_fid", "accuracy", "dc"))
  c.data.labels = True
  c.model.num_classes = 10
  return c


def make_jobs(names: List[str], seeds: int, steps: int, base: str, root: str,
              num_samples: int = 1000, first_seed: int = 0) -> List[sweep.Job]:
  bad = [n for n in names if n not in CONDITIONINGS]
  if bad:
    raise ValueError(f"Unknown conditionings {bad}; choose from {sorted(CONDITIONINGS)}.")
  cfg = base_config(base, steps, num_samples,
                    os.path.abspath(os.path.join(root, "digits_classifier.npz")))
  return [sweep.Job(f"digits_{base}", sweep.Variant(n, CONDITIONINGS[n]), seed, cfg)
          for n in names for seed in sweep.seed_range(seeds, first_seed)]


def write_outputs(root: str, records, name: str = "conditional") -> str:
  rows = sweep.summarise(records, METRICS, baseline="cgan")
  table = sweep.markdown_table(rows, METRICS, deltas=True)
  sweep.write_results(root, name + ".md", table, name + ".jsonl", records)
  return table


def main(argv):
  del argv
  trainer.quiet_library_logs()
  host.tune_malloc()
  try:
    jobs = make_jobs(list(FLAGS.conditionings), FLAGS.seeds, FLAGS.steps, FLAGS.base,
                     FLAGS.workdir, FLAGS.num_samples, FLAGS.first_seed)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  logging.info("%d runs in %s", len(jobs), FLAGS.workdir)
  records = sweep.run_many(jobs, FLAGS.workdir,
                           on_record=lambda rs: write_outputs(FLAGS.workdir, rs))
  print(write_outputs(FLAGS.workdir, records))


def define_flags() -> None:
  flags.DEFINE_list("conditionings", list(CONDITIONINGS), "Conditionings to compare, from "
                    f"{sorted(CONDITIONINGS)}; the first row of the table is the reference.")
  flags.DEFINE_integer("seeds", 3, "Seeds per conditioning: first_seed, first_seed + 1, ...")
  flags.DEFINE_integer("first_seed", 0, "The first seed.")
  flags.DEFINE_integer("steps", 3000, "Training steps of each run.")
  flags.DEFINE_enum("base", "sn", BASES, "sn: the SNGAN recipe for all; dcgan: plain DCGAN.")
  flags.DEFINE_integer("num_samples", 1000, "Generated images per evaluation.")
  flags.DEFINE_string("workdir", "runs/conditional", "Root of the runs and the table.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
