"""Many short trainings of one base config with variations over seeds: the engine of the
quality benchmarks (`benchmarks/mode_coverage.py`, `benchmarks/ablate.py`).

A `Variant` is a name and a set of config overrides (dotted keys, e.g.
`{"tricks.label_smoothing.enabled": True}`). `run` trains one (config, seed) in its own work
directory with `gax.trainer.train`, so every run leaves the usual files (`eval.jsonl`,
`alarms.jsonl`, checkpoints) and resumes after a crash; its outcome is summarised in
`result.json` there, and a finished run is not trained again. `summarise` turns the records
of many runs into mean, standard deviation and difference to a baseline variant per metric,
with the failures the monitor flagged, and `markdown_table` prints them.

Runs that diverge (non-finite metrics) or that the monitor stops are records too (status
"diverged" / "stopped", metrics of their last evaluation, if any), so a table shows
stability beside quality.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import ml_collections
import numpy as np
from absl import logging

from gax import checks, evaluation, monitor as monitor_lib, trainer

RESULT_FILE = "result.json"
RESULT_FORMAT = "gax.sweep.result/1"


@dataclasses.dataclass(frozen=True)
class Variant:
  """A named change to a base config: `overrides` maps dotted config keys to values."""

  name: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __add__(self, other: "Variant") -> "Variant":
    """Both variants' overrides (a combination); a key both set differently is an error."""
    clash = {k for k in set(self.overrides) & set(other.overrides)
             if self.overrides[k] != other.overrides[k]}
    if clash:
      raise ValueError(f"Variants {self.name!r} and {other.name!r} set {sorted(clash)} "
                       "differently; they cannot be combined.")
    return Variant(f"{self.name}+{other.name}", {**self.overrides, **other.overrides})


def seed_range(seeds: int, first_seed: int = 0) -> range:
  """Seeds `first_seed .. first_seed + seeds - 1` of a sweep. Several processes (or machines)
  can share one sweep's root by taking disjoint ranges: finished runs are read back, so a
  last pass over all seeds only writes the complete table."""
  seeds = checks.integer(seeds, "--seeds")
  first_seed = checks.integer(first_seed, "--first_seed", 0)
  return range(first_seed, first_seed + seeds)


# Sections whose keys are keyword arguments of a builder (a model or data option the base
# config leaves at its default is absent there); elsewhere an override must name an existing
# key, so that a typo is an error rather than an ignored setting.
OPEN_SECTIONS = ("model", "data")


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted `overrides` set. A key the config lacks is a KeyError,
  except new options of the `OPEN_SECTIONS` (checked when the run builds them).

  A key may name a whole section (`"optimizer.d": {...}` swaps D's optimizer and its
  options); keys are applied shallowest first, so keys inside that section (say a
  combination's `"optimizer.d.schedule"`) change the new section whatever their order.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in sorted(overrides.items(), key=lambda kv: kv[0].count(".")):
    *path, leaf = key.split(".")
    node = config
    for i, part in enumerate(path):
      if part not in node:
        raise KeyError(f"Override {key!r}: the config has no {'.'.join(path[:i + 1])!r}.")
      node = node[part]
    if leaf not in node and tuple(path) not in [(s,) for s in OPEN_SECTIONS]:
      raise KeyError(f"Override {key!r}: the config has no {key!r}; known keys there: "
                     f"{sorted(node.keys())}.")
    if isinstance(value, (list, tuple)):
      value = tuple(value)
    node[leaf] = value
  return config


def _final_metrics(records: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
  if not records:
    return {}
  last = dict(records[-1])
  counts = last.pop("counts", None)
  if counts is not None:
    # VEEGAN's rule (Srivastava et al. 2017, sec. 5.1): a mode is captured when at least one
    # high-quality sample is nearest to it; `modes_covered` is gax's stricter default rule.
    last["modes_any"] = int(sum(c >= 1 for c in counts))
  return last


def run(config: ml_collections.ConfigDict, workdir: str, *, variant: str = "",
        seed: Optional[int] = None, group: str = "") -> Dict[str, Any]:
  """Trains `config` (with `seed` when given) in `workdir` and returns its record.

  The record: `{"group", "variant", "seed", "status": "ok" | "diverged" | "stopped",
  "error", "final": last evaluation (with `modes_any` for mixtures), "best": best.json or
  None, "alarms": {kind: count}, "alarm_steps": {kind: [steps]}, "steps", "wall_s"}`, also
  written to `<workdir>/result.json`. When that file exists from the same config, it is
  returned without training.
  """
  if seed is not None:
    config = apply_overrides(config, {"seed": int(seed)})
  path = os.path.join(workdir, RESULT_FILE)
  cfg = config.to_dict()
  if os.path.isfile(path):
    with open(path) as f:
      old = json.load(f)
    if old.get("format") == RESULT_FORMAT and old.get("config") == json.loads(
        json.dumps(cfg)):
      old.update(_alarm_fields(workdir))  # records written before alarm_steps existed
      old["steps"] = int(config.train.steps)
      return old
    logging.warning("%s is from another config or format; training again.", path)
  t0 = time.time()
  status, error = "ok", ""
  try:
    trainer.train(config, workdir)
  except FloatingPointError as e:
    status, error = "diverged", str(e)
  except monitor_lib.MonitorStop as e:
    status, error = "stopped", str(e)
  record = {
      "format": RESULT_FORMAT, "group": group, "variant": variant, "seed": int(config.seed),
      "status": status, "error": error,
      "final": _final_metrics(evaluation.read_jsonl(os.path.join(workdir,
                                                                 evaluation.EVAL_FILE))),
      "best": evaluation.read_best(workdir), **_alarm_fields(workdir),
      "steps": int(config.train.steps), "wall_s": time.time() - t0, "config": cfg,
  }
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1, sort_keys=True, default=_json_default)
  os.replace(path + ".tmp", path)
  return json.loads(json.dumps(record, default=_json_default))


def _alarm_fields(workdir: str) -> Dict[str, Any]:
  steps: Dict[str, List[int]] = {}
  for a in evaluation.read_jsonl(os.path.join(workdir, trainer.ALARMS_FILE)):
    steps.setdefault(a["kind"], []).append(int(a["step"]))
  return {"alarms": {k: len(v) for k, v in sorted(steps.items())},
          "alarm_steps": dict(sorted(steps.items()))}


def late_failures(record: Mapping[str, Any]) -> List[str]:
  """The failures of a run that count in a table: the monitor's alarm kinds raised in the
  second half of training, `mode_collapse` also when the final evaluation is still below the
  monitor's threshold (an episode that began early and never ended), and a non-"ok" status.
  Alarms of the first half alone are left out: every run starts far from the data, so early
  evaluations cover few modes and early gradients spike in runs that end well."""
  out = set()
  half = record.get("steps", 0) / 2
  for kind, steps in record.get("alarm_steps", {}).items():
    if any(s > half for s in steps):
      out.add(kind)
  final = record.get("final", {})
  fraction = (record.get("config") or {}).get("monitor", {}).get(
      "mode_collapse_fraction", monitor_lib.monitor_config_defaults()["mode_collapse_fraction"])
  if final.get("modes") and final.get("modes_covered", final["modes"]) < fraction * final["modes"]:
    out.add(monitor_lib.MODE_COLLAPSE)
  if record.get("status", "ok") != "ok":
    out.add(record["status"])
  return sorted(out)


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.integer, np.floating)):
    return value.item()
  if isinstance(value, tuple):
    return list(value)
  raise TypeError(f"Not JSON-serialisable: {value!r}")


@dataclasses.dataclass
class Row:
  """Summary of the runs of one (group, variant).

  Attributes:
    group: e.g. the dataset.
    variant: the variant's name.
    runs: number of runs.
    stats: metric -> (mean, std over runs with a finite value, number of such runs).
    deltas: metric -> (mean - baseline mean, standard error of that difference) or absent.
    failures: failure -> number of runs with it (`late_failures`: monitor alarm kinds,
      "diverged", "stopped").
    all_seeds: metric -> the value of every run, in seed order.
  """

  group: str
  variant: str
  runs: int
  stats: Dict[str, tuple] = dataclasses.field(default_factory=dict)
  deltas: Dict[str, tuple] = dataclasses.field(default_factory=dict)
  failures: Dict[str, int] = dataclasses.field(default_factory=dict)
  all_seeds: Dict[str, list] = dataclasses.field(default_factory=dict)


def _values(records: Sequence[Mapping[str, Any]], metric: str) -> List[float]:
  out = []
  for r in records:
    v = r.get("final", {}).get(metric)
    out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
               else float("nan"))
  return out


def _mean_std(values: Sequence[float]) -> tuple:
  finite = [v for v in values if math.isfinite(v)]
  if not finite:
    return (float("nan"), float("nan"), 0)
  return (float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0,
          len(finite))


def summarise(records: Iterable[Mapping[str, Any]], metrics: Sequence[str],
              baseline: Optional[str] = None) -> List[Row]:
  """One `Row` per (group, variant), in order of first appearance; with `baseline` (a variant
  name), each row's `deltas` against that variant's row of the same group. The standard
  error of a difference of means is `sqrt(s1^2/n1 + s2^2/n2)` (0 with one run each)."""
  grouped: Dict[tuple, List[Mapping[str, Any]]] = {}
  for r in records:
    grouped.setdefault((r["group"], r["variant"]), []).append(r)
  rows = []
  for (group, variant), rs in grouped.items():
    rs = sorted(rs, key=lambda r: r["seed"])
    row = Row(group, variant, len(rs))
    for m in metrics:
      row.all_seeds[m] = _values(rs, m)
      row.stats[m] = _mean_std(row.all_seeds[m])
    fails: collections.Counter = collections.Counter()
    for r in rs:
      fails.update(late_failures(r))
    row.failures = dict(sorted(fails.items()))
    rows.append(row)
  if baseline is not None:
    base = {row.group: row for row in rows if row.variant == baseline}
    for row in rows:
      b = base.get(row.group)
      if b is None or row is b:
        continue
      for m in metrics:
        (m1, s1, n1), (m0, s0, n0) = row.stats[m], b.stats[m]
        if n1 and n0:
          row.deltas[m] = (m1 - m0, math.sqrt(s1 ** 2 / n1 + s0 ** 2 / n0))
  return rows


def _fmt(value: float, scale: float, digits: int) -> str:
  return "nan" if not math.isfinite(value) else f"{value * scale:.{digits}f}"


# How each metric is shown: (column title, scale, decimals).
METRIC_FORMATS = {
    "modes_covered": ("modes", 1, 1),
    "modes_any": ("modes (>=1 HQ)", 1, 1),
    "hq_fraction": ("% HQ", 100, 1),
    "reverse_kl": ("reverse KL", 1, 3),
    "fid": ("FID", 1, 1),
    "kid": ("KID", 1, 4),
    "is": ("IS", 1, 2),
    "precision": ("precision", 1, 3),
    "recall": ("recall", 1, 3),
    "density": ("density", 1, 3),
    "coverage": ("coverage", 1, 3),
    "intra_fid": ("intra-FID", 1, 1),
    "class_accuracy": ("accuracy", 1, 3),
}


def markdown_table(rows: Sequence[Row], metrics: Sequence[str], deltas: bool = False) -> str:
  """A Markdown table: group, variant, runs, `mean ± std` per metric (with `deltas`, also
  `Δ mean ± s.e.` against the baseline), and the `late_failures` (runs with each)."""
  head = ["data", "variant", "runs"]
  for m in metrics:
    title = METRIC_FORMATS.get(m, (m, 1, 3))[0]
    head.append(title)
    if deltas:
      head.append(f"Δ {title}")
  head.append("late failures (runs)")
  lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
  for row in rows:
    cells = [row.group, row.variant, str(row.runs)]
    for m in metrics:
      _, scale, digits = METRIC_FORMATS.get(m, (m, 1, 3))
      mean, std, n = row.stats[m]
      if n == 0:  # e.g. the reverse KL of runs without a single high-quality sample
        cells.append("n/a (0 runs)")
      else:
        cells.append(f"{_fmt(mean, scale, digits)} ± {_fmt(std, scale, digits)}"
                     + ("" if n == row.runs else f" ({n} runs)"))
      if deltas:
        d = row.deltas.get(m)
        cells.append("" if d is None else
                     f"{'+' if d[0] >= 0 else ''}{_fmt(d[0], scale, digits)} ± "
                     f"{_fmt(d[1], scale, digits)}")
    cells.append(", ".join(f"{k} {v}/{row.runs}" for k, v in row.failures.items()) or "none")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_jsonl(path: str, records: Iterable[Mapping[str, Any]]) -> None:
  """Writes `records` (one JSON object per line) to `path`, atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    for r in records:
      f.write(json.dumps({k: v for k, v in r.items() if k != "config"}, sort_keys=True,
                         default=_json_default) + "\n")
  os.replace(path + ".tmp", path)


def write_results(root: str, table_file: str, text: str, records_file: str,
                  records: Iterable[Mapping[str, Any]]) -> str:
  """Writes a sweep's table `text` to `<root>/<table_file>` and its `records` to
  `<root>/<records_file>` (JSON lines), each atomically; returns `text`."""
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, table_file)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  write_jsonl(os.path.join(root, records_file), records)
  return text


@dataclasses.dataclass(frozen=True)
class Job:
  """One run of a sweep: `base` with `variant` and `seed`, in `<root>/<group>/<variant>/
  seed_<seed>`."""

  group: str
  variant: Variant
  seed: int
  base: ml_collections.ConfigDict

  def workdir(self, root: str) -> str:
    return os.path.join(root, self.group, self.variant.name, f"seed_{self.seed}")


def run_many(jobs: Sequence[Job], root: str,
             on_record: Optional[Any] = None) -> List[Dict[str, Any]]:
  """Runs `jobs` in order (finished ones are read back from their `result.json`), logging
  progress with an ETA; `on_record(records_so_far)` is called after each, e.g. to rewrite
  the result table so that a crash loses at most the run in progress."""
  records: List[Dict[str, Any]] = []
  t0 = time.time()
  trained = 0
  for i, job in enumerate(jobs):
    config = apply_overrides(job.base, job.variant.overrides)
    workdir = job.workdir(root)
    had = os.path.isfile(os.path.join(workdir, RESULT_FILE))
    record = run(config, workdir, variant=job.variant.name, seed=job.seed, group=job.group)
    records.append(record)
    if not had:
      trained += 1
    left = len(jobs) - i - 1
    eta = (time.time() - t0) / trained * left if trained else 0.0
    logging.info("run %d/%d %s %s seed %d: %s, %s (%.0fs) | ETA %s", i + 1, len(jobs),
                 job.group, job.variant.name, job.seed, record["status"],
                 _brief(record["final"]), record["wall_s"], trainer.format_eta(eta))
    if on_record is not None:
      on_record(records)
  return records


def _brief(final: Mapping[str, Any]) -> str:
  keys = [k for k in ("modes_covered", "modes_any", "hq_fraction", "reverse_kl", "fid", "is")
          if k in final]
  return " ".join(f"{k}={final[k]:.4g}" for k in keys) or "no evaluation"


__all__ = ["RESULT_FILE", "RESULT_FORMAT", "Variant", "seed_range", "OPEN_SECTIONS",
           "apply_overrides", "run", "late_failures", "Row", "summarise", "METRIC_FORMATS",
           "markdown_table", "write_jsonl", "write_results", "Job", "run_many"]
