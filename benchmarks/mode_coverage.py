r"""Mode coverage on the 2D ring (8 modes) and grid (25 modes) over seeds, beside the
published numbers of VEEGAN and PacGAN.

python benchmarks/mode_coverage.py --datasets=ring,grid --methods=baseline,r1 --seeds=5 \
    --steps=20000 --workdir=runs/mode_coverage

Protocol (`benchmarks/variants.py`): the mixtures of the official PacGAN code (ring: 8
Gaussians, std 0.01, radius 1; grid: 25 Gaussians, std 0.05, spacing 2), 2500 samples from
the final generator, a sample is high quality within 3 std of its nearest mode; VEEGAN
(Srivastava et al. 2017, sec. 5.1) counts a mode as captured when at least one high-quality
sample is nearest to it ("modes (>=1 HQ)"); gax's `modes_covered` ("modes") asks for at least
20% of the mode's expected share of samples, so a mode grazed by a few samples does not
count. Reverse KL is over the high-quality samples' modes against the uniform (PacGAN).
Networks and training length are gax's and this command's, not the papers'.

Each method is a variant name of `benchmarks/variants.py` or a `+` combination. Runs live in
`<workdir>/<dataset>/<method>/seed_<s>/` and resume; `<workdir>/mode_coverage.md` and
`.jsonl` are rewritten after every run.

`--drs` also scores every run's final generator through discriminator rejection sampling
(`gax.rejection`, Azadi et al. 2019): 2500 samples that the run's final D accepts, a row
"<method> + DRS" beside the method's own (the same trained runs, sampled differently), kept
per run in `eval_drs_<setting>.jsonl` so that a rerun reads it back. `--drs_calibrate_steps`
trains a copy of each run's D that many steps against its final G before DRS
(`gax.rejection.calibrate_discriminator`; rows "<method> + DRS c<steps>").
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from benchmarks import variants as variants_lib  # pylint: disable=g-import-not-at-top
from gax import evaluation, sweep, trainer  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
CALIBRATE_LR = evaluation.EvalSettings.drs_calibrate_lr  # DRS calibration's default rate


METRICS = ("modes_any", "modes_covered", "hq_fraction", "reverse_kl")
TABLE_FILE, RECORDS_FILE = "mode_coverage.md", "mode_coverage.jsonl"

# Published results, by dataset: (method, source, modes, % high-quality, reverse KL), with
# None where the source reports no value. Transcribed from the papers' tables (VEEGAN:
# Srivastava et al. 2017, Table 1, 5 runs, a mode captured by >= 1 high-quality sample;
# PacGAN: Lin et al. 2018, Table 1, mean ± std over 10 trials). The offline machine these
# benchmarks were written on could not re-open the papers: check against them before quoting.
PUBLISHED: Dict[str, List[tuple]] = {
    "ring": [
        ("GAN", "VEEGAN Table 1", "1.0", "99.3", None),
        ("ALI", "VEEGAN Table 1", "2.8", "0.13", None),
        ("Unrolled GAN", "VEEGAN Table 1", "7.6", "35.6", None),
        ("VEEGAN", "VEEGAN Table 1", "8.0", "52.9", None),
        ("GAN", "PacGAN Table 1", "6.3 ± 0.5", "98.2 ± 0.2", "0.45 ± 0.09"),
        ("PacGAN2", "PacGAN Table 1", "7.9 ± 0.1", "95.6 ± 2.0", "0.07 ± 0.03"),
        ("PacGAN3", "PacGAN Table 1", "7.8 ± 0.1", "97.7 ± 0.3", "0.10 ± 0.02"),
        ("PacGAN4", "PacGAN Table 1", "7.8 ± 0.1", "95.9 ± 1.4", "0.07 ± 0.02"),
    ],
    "grid": [
        ("GAN", "VEEGAN Table 1", "3.3", "0.5", None),
        ("ALI", "VEEGAN Table 1", "15.8", "1.6", None),
        ("Unrolled GAN", "VEEGAN Table 1", "23.6", "16.0", None),
        ("VEEGAN", "VEEGAN Table 1", "24.6", "40.0", None),
        ("GAN", "PacGAN Table 1", "17.3 ± 0.8", "94.8 ± 0.7", "0.70 ± 0.07"),
        ("PacGAN2", "PacGAN Table 1", "23.8 ± 0.7", "91.3 ± 0.8", "0.13 ± 0.04"),
        ("PacGAN3", "PacGAN Table 1", "24.6 ± 0.4", "94.2 ± 0.4", "0.06 ± 0.02"),
        ("PacGAN4", "PacGAN Table 1", "24.8 ± 0.2", "93.6 ± 0.6", "0.04 ± 0.01"),
    ],
}


def make_jobs(datasets: Sequence[str], methods: Sequence[str], seeds: int, steps: int,
              hidden: Sequence[int], arch: str = "gax", first_seed: int = 0) -> List[sweep.Job]:
  bad = [d for d in datasets if d not in variants_lib.MIXTURES]
  if bad:
    raise ValueError(f"Unknown mixtures {bad}; choose from {sorted(variants_lib.MIXTURES)}.")
  seed_list = sweep.seed_range(seeds, first_seed)
  jobs = []
  for dataset in datasets:
    base = variants_lib.mixture_config(dataset, steps, hidden=hidden, arch=arch)
    for method in methods:
      v = variants_lib.variant(method, dataset, steps)
      if method != "baseline" and not variants_lib.changes_base(base, v):
        raise ValueError(f"{method!r} does not change the {arch} base config on {dataset!r}: "
                         "its runs would be the baseline's.")
      jobs.extend(sweep.Job(dataset, v, seed, base) for seed in seed_list)
  return jobs


def drs_label(gamma: float = 0.0, percentile: float = 0.0, calibrate_steps: int = 0,
              calibrate_lr: float = CALIBRATE_LR) -> str:
  """The row suffix and file tag of a DRS setting: "DRS" (exact), "DRS p80", "DRS g1.5",
  "DRS c5000" (D calibrated 5000 steps first), "DRS c5000 lr0.001"."""
  if percentile and gamma:
    raise ValueError("Give --drs_gamma or --drs_percentile, not both.")
  if calibrate_steps < 0 or not calibrate_lr > 0:
    raise ValueError(f"--drs_calibrate_steps ({calibrate_steps}) must be >= 0 and "
                     f"--drs_calibrate_lr ({calibrate_lr}) > 0.")
  label = "DRS" + (f" p{percentile:g}" if percentile else f" g{gamma:g}" if gamma else "")
  if calibrate_steps:
    label += f" c{calibrate_steps}" + (f" lr{calibrate_lr:g}" if calibrate_lr != CALIBRATE_LR
                                       else "")
  return label


def drs_record(record: Dict, workdir: str, gamma: float = 0.0, percentile: float = 0.0,
               calibrate_steps: int = 0, calibrate_lr: float = CALIBRATE_LR,
               max_draws: Optional[int] = None) -> Dict:
  """`record` (a finished run in `workdir`) with its final checkpoint scored by
  discriminator rejection sampling instead: variant "<variant> + DRS...", `final` the DRS
  samples' metrics (and `acceptance`). Read back from the run's `eval_drs_<tag>.jsonl` when
  that step was scored before with the same setting. `max_draws` (None: the evaluator's
  default) bounds G's draws; it changes no accepted sample, only when DRS gives up."""
  label = drs_label(gamma, percentile, calibrate_steps, calibrate_lr)
  path = os.path.join(workdir, f"eval_{label.lower().replace(' ', '_')}.jsonl")
  done = [r for r in evaluation.read_jsonl(path) if r.get("step") == record["steps"]]
  if not done:
    done = trainer.evaluate_run(workdir, out_file=os.path.basename(path), drs=True,
                                drs_gamma=gamma, drs_percentile=percentile,
                                drs_calibrate_steps=calibrate_steps,
                                drs_calibrate_lr=calibrate_lr, drs_max_draws=max_draws)
    if done[-1]["step"] != record["steps"]:
      raise RuntimeError(f"{workdir}: the newest checkpoint is step {done[-1]['step']}, not "
                         f"the run's last step {record['steps']}.")
  p = evaluation.DRS_PREFIX
  final = {"step": done[-1]["step"],
           **{k[len(p):]: v for k, v in done[-1].items() if k.startswith(p)}}
  if "counts" in final:
    final["modes_any"] = int(sum(c >= 1 for c in final["counts"]))
  return {**record, "variant": f"{record['variant']} + {label}", "final": final}


def published_table(dataset: str) -> str:
  lines = ["| method | source | modes | % HQ | reverse KL |", "| --- | --- | --- | --- | --- |"]
  for method, source, modes, hq, kl in PUBLISHED[dataset]:
    lines.append(f"| {method} | {source} | {modes} | {hq} | {kl or '-'} |")
  return "\n".join(lines) + "\n"


def report(records: Sequence[Dict], datasets: Sequence[str]) -> str:
  """Per dataset: the measured table (mean ± std over seeds, every seed's modes, failures)
  and the published one."""
  parts = []
  for dataset in datasets:
    rs = [r for r in records if r["group"] == dataset]
    if not rs:
      continue
    rows = sweep.summarise(rs, METRICS)
    modes = {"ring": 8, "grid": 25}[dataset]
    parts.append(f"### {dataset} ({modes} modes)\n\nMeasured (gax):\n\n"
                 + sweep.markdown_table(rows, METRICS))
    seeds = ["| variant | modes (>=1 HQ) per seed | % HQ per seed |", "| --- | --- | --- |"]
    for row in rows:
      seeds.append(f"| {row.variant} | {', '.join(f'{v:g}' for v in row.all_seeds['modes_any'])}"
                   f" | {', '.join(f'{100 * v:.1f}' for v in row.all_seeds['hq_fraction'])} |")
    parts.append("\n".join(seeds) + "\n")
    kept: Dict[str, List[str]] = {}
    for r in sorted(rs, key=lambda r: r["seed"]):
      if "acceptance" in r["final"]:
        kept.setdefault(r["variant"], []).append(f"{r['final']['acceptance']:.2g}")
    if kept:
      parts.append("DRS acceptance (fraction of G's samples kept) per seed: " + "; ".join(
          f"{v}: {', '.join(a)}" for v, a in kept.items()) + "\n")
    parts.append("Published:\n\n" + published_table(dataset))
  return "\n".join(parts)


def write_outputs(root: str, records: Sequence[Dict], datasets: Sequence[str]) -> str:
  return sweep.write_results(root, TABLE_FILE, report(records, datasets), RECORDS_FILE, records)


def main(argv):
  del argv
  trainer.quiet_library_logs()
  host.tune_malloc()
  try:
    hidden = [int(h) for h in FLAGS.hidden]
    jobs = make_jobs(FLAGS.datasets, FLAGS.methods, FLAGS.seeds, FLAGS.steps, hidden,
                     FLAGS.arch, FLAGS.first_seed)
    drs = dict(gamma=FLAGS.drs_gamma, percentile=FLAGS.drs_percentile,
               calibrate_steps=FLAGS.drs_calibrate_steps, calibrate_lr=FLAGS.drs_calibrate_lr)
    drs_label(**drs)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  logging.info("%d runs in %s", len(jobs), FLAGS.workdir)

  def with_drs(records):
    if not FLAGS.drs:
      return records
    return records + [drs_record(r, job.workdir(FLAGS.workdir), **drs,
                                 max_draws=FLAGS.drs_max_draws)
                      for job, r in zip(jobs, records) if r["status"] == "ok"]

  records = sweep.run_many(jobs, FLAGS.workdir, on_record=lambda rs: write_outputs(
      FLAGS.workdir, with_drs(rs), FLAGS.datasets))
  print(write_outputs(FLAGS.workdir, with_drs(records), FLAGS.datasets))


def define_flags() -> None:
  """The command's flags (defined only when run as a script, so that tests can import
  both benchmark modules)."""
  flags.DEFINE_list("datasets", ["ring", "grid"], "Mixtures: ring, grid.")
  flags.DEFINE_list("methods", ["baseline", "r1"], "Variants of benchmarks/variants.py, or a+b.")
  flags.DEFINE_integer("seeds", 5, "Number of seeds per method: first_seed, first_seed + 1, ...")
  flags.DEFINE_integer("first_seed", 0, "The first seed (processes sharing a --workdir can "
                       "take disjoint seed ranges).")
  flags.DEFINE_integer("steps", 20000, "Training steps per run.")
  flags.DEFINE_list("hidden", ["128", "128", "128"], "MLP hidden widths of G and D (arch gax).")
  flags.DEFINE_enum("arch", "gax", variants_lib.ARCHS, "Networks and optimiser: gax's MLPs, "
                    "or those of the PacGAN code (benchmarks/variants.py: PACGAN_ARCH).")
  flags.DEFINE_string("workdir", "runs/mode_coverage", "Root of the runs and the result table.")
  flags.DEFINE_bool("drs", False, "Also score each run's final generator through "
                    "discriminator rejection sampling (gax.rejection): rows '<method> + DRS'.")
  flags.DEFINE_float("drs_gamma", 0.0, "DRS's fixed shift of the acceptance logit (0: exact "
                     "rejection sampling).")
  flags.DEFINE_float("drs_percentile", 0.0, "When > 0, DRS's shift is this percentile of each "
                     "batch's acceptance logits.", lower_bound=0.0, upper_bound=100.0)
  flags.DEFINE_integer("drs_calibrate_steps", 0, "When > 0, DRS first trains a copy of each "
                       "run's D this many steps against its final G "
                       "(gax.rejection.calibrate_discriminator).", lower_bound=0)
  flags.DEFINE_float("drs_calibrate_lr", CALIBRATE_LR, "Adam learning rate of the calibration.")
  flags.DEFINE_integer("drs_max_draws", None, "G's samples DRS may draw per run before giving "
                       "up (default: config.eval.drs_max_draws, 2,000,000); a shift gamma "
                       "divides the acceptance by about exp(gamma).", lower_bound=2500)


if __name__ == "__main__":
  define_flags()
  app.run(main)
