r"""Speed of the input pipeline beside the speed of the jitted train step it feeds.

python benchmarks/input_pipeline.py --batch_sizes=128,1024 --resolution=64 \
    --step_results=benchmarks/results/step_throughput.json --out_dir=benchmarks/results

By default it times the in-memory path every gax source ends in (`gax.data.ArraySource`: a
seeded per-epoch permutation and an index gather from uint8 host memory) on `--num_images`
random uint8 images of `--resolution`; with `--config` (a trainer config file, overridable as
in experiments/train.py) it times that run's own data source, e.g. a prepared TFDS dataset:

python benchmarks/input_pipeline.py --config=experiments/configs/dcgan_tfds.py:mnist \
    --config.data.data_dir=/data/tfds --batch_sizes=128,1024

With `--compare_loaders` it times TFDS's two loaders on one prepared array_record dataset,
each in a fresh child process so that its peak resident memory is its own: `memory` (the
split decoded into host RAM, `ArraySource`) and `grain` (streamed, `gax.data.GrainSource`).
Without `--config` the dataset is `--num_images` random images written once into
`--tfds_dir` (a data set larger than Grain's buffers, e.g. 60,000 at 64x64):

python benchmarks/input_pipeline.py --compare_loaders --tfds_dir=/tmp/gax_tfds \
    --num_images=60000 --resolution=64 --batch_sizes=32,128

It adds the source's build time and the child's peak RSS (`ru_maxrss`) beside the rates.

For each batch size it reports (`gax.data.benchmark_source`): `get` ms (host batch), `put` ms
(to the device, waited for) and images/s through the trainer's prefetch thread. Given the
JSON of `benchmarks/step_throughput.py`, it adds the step's img/s at the same batch size
(fastest dtype and model there) and the headroom, input img/s / step img/s: above 1 the
pipeline keeps up with the step. Results go to `<out_dir>/input_pipeline.{json,md}`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top

from gax import builders, data  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top


def synthetic_source(batch_size: int, num_images: int, resolution: int,
                     channels: int = 3) -> data.ArraySource:
  """`num_images` random uint8 images in an `ArraySource`."""
  if num_images < batch_size:
    raise ValueError(f"--num_images ({num_images}) must be at least the batch size "
                     f"({batch_size}).")
  images = np.random.default_rng(0).integers(
      0, 256, (num_images, resolution, resolution, channels), dtype=np.uint8)
  return data.ArraySource(images, batch_size=batch_size)


def step_rates(path: str) -> Dict[int, float]:
  """Batch size -> the fastest img/s of the step in a `step_throughput.py` JSON."""
  with open(path) as f:
    results = json.load(f).get("results")
  if not isinstance(results, list):
    raise ValueError(f"{path} is not a step_throughput.py result file (no 'results' list).")
  rates: Dict[int, float] = {}
  for r in results:
    b = int(r["batch_size"])
    rates[b] = max(rates.get(b, 0.0), float(r["img_per_sec"]))
  return rates


def measure(source, steps: int, step_rate: Optional[float] = None) -> Dict[str, float]:
  stats = data.benchmark_source(source, steps=steps)
  out = {"batch_size": int(source.batch_size), **stats}
  if step_rate:
    out["step_img_per_sec"] = step_rate
    out["headroom"] = stats["examples_per_s"] / step_rate
  return out


def bench_dataset(tfds_dir: str, num_images: int, resolution: int) -> str:
  """The name of a TFDS dataset of `num_images` random uint8 `resolution`^2 x 3 images in
  `tfds_dir` (array_record), written on first use."""
  name = f"gax_bench_{num_images}x{resolution}"
  if not os.path.isdir(os.path.join(tfds_dir, name)):
    t0 = time.time()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_images, resolution, resolution, 3), dtype=np.uint8)
    data.prepare_tfds_from_arrays(name, tfds_dir, images, np.arange(num_images) % 10,
                                  num_classes=10)
    print(f"Wrote {num_images} images as TFDS dataset {name} in {tfds_dir} "
          f"({time.time() - t0:.0f}s).")
  return name


def loader_child(options: str) -> None:
  """In a fresh process: build one loader's source, time it, print its row as JSON."""
  o = json.loads(options)
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  t0 = time.perf_counter()
  source = data.DATASETS.build("tfds", **o["data"])
  build_s = time.perf_counter() - t0
  row = measure(source, o["steps"], o.get("step_rate"))
  row.update(loader=o["data"]["loader"], build_s=build_s, rss_before_mb=rss0,
             peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
  print("ROW " + json.dumps(row))


def compare_loaders(data_options: Dict, batch_sizes: List[int], steps: int,
                    rates: Dict[int, float]) -> List[Dict[str, float]]:
  """`loader_child` for each loader and batch size, each in its own process."""
  rows = []
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for loader in ("memory", "grain"):
    for b in batch_sizes:
      options = {"data": {**data_options, "batch_size": b, "loader": loader}, "steps": steps,
                 "step_rate": rates.get(b)}
      code = ("import sys; sys.path.insert(0, sys.argv[1]); from benchmarks import "
              "input_pipeline; input_pipeline.loader_child(sys.argv[2])")
      r = subprocess.run([sys.executable, "-c", code, root, json.dumps(options)],
                         capture_output=True, text=True, cwd=root)
      lines = [l for l in r.stdout.splitlines() if l.startswith("ROW ")]
      if r.returncode or not lines:
        raise RuntimeError(f"The {loader} loader's run failed:\n{r.stderr[-3000:]}")
      rows.append(json.loads(lines[-1][4:]))
      print(f"{loader} batch {b}: {rows[-1]['examples_per_s']:,.0f} img/s, peak RSS "
            f"{rows[-1]['peak_rss_mb']:,.0f} MB", flush=True)
  return rows


def markdown(rows: List[Dict[str, float]], what: str) -> str:
  if rows and "loader" in rows[0]:
    head = ("| loader | batch | build s | get ms | input img/s | step img/s | input / step | "
            "RSS before MB | peak RSS MB |")
    lines = [f"Source: {what}", "", head, "|" + " --- |" * 9]
    for r in rows:
      step = r.get("step_img_per_sec")
      lines.append(
          f"| {r['loader']} | {r['batch_size']} | {r['build_s']:.1f} | {r['get_ms']:.2f} | "
          f"{r['examples_per_s']:,.0f} | {'n/a' if step is None else format(step, ',.0f')} | "
          f"{'n/a' if step is None else format(r['headroom'], '.1f') + 'x'} | "
          f"{r['rss_before_mb']:,.0f} | {r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines) + "\n"
  head = ("| source | batch | get ms | put ms | input img/s | MB/s | step img/s | "
          "input / step |")
  lines = [head, "|" + " --- |" * 8]
  for r in rows:
    step = r.get("step_img_per_sec")
    lines.append(
        f"| {what} | {r['batch_size']} | {r['get_ms']:.2f} | {r['put_ms']:.2f} | "
        f"{r['examples_per_s']:,.0f} | {r['mb_per_s']:,.0f} | "
        f"{'n/a' if step is None else format(step, ',.0f')} | "
        f"{'n/a' if step is None else format(r['headroom'], '.1f') + 'x'} |")
  return "\n".join(lines) + "\n"


def write(rows: List[Dict[str, float]], what: str, out_dir: str) -> Dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, "input_pipeline.json"),
           "md": os.path.join(out_dir, "input_pipeline.md")}
  device = jax.devices()[0]
  meta = {"source": what, "jax": jax.__version__, "device": f"{device.platform}:"
          f"{device.device_kind}", "host": platform.node(), "cpus": os.cpu_count()}
  with open(paths["json"], "w") as f:
    json.dump({"meta": meta, "results": rows}, f, indent=2)
  with open(paths["md"], "w") as f:
    f.write(markdown(rows, what))
  return paths


FLAGS = flags.FLAGS


def main(argv):
  del argv
  host.tune_malloc()
  try:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  except ValueError:
    raise app.UsageError(f"--batch_sizes must be integers, got {FLAGS.batch_sizes}.") from None
  if not batch_sizes or any(b < 1 for b in batch_sizes) or FLAGS.steps < 1:
    raise app.UsageError("--batch_sizes (at least one) and --steps must be positive.")
  rates = step_rates(FLAGS.step_results) if FLAGS.step_results else {}
  config = FLAGS.config
  rows = []
  if FLAGS.compare_loaders:
    if config is not None:
      options = {k: v for k, v in dict(config.data).items()
                 if k not in ("name", "batch_size", "loader")}
      if config.data.name != "tfds":
        raise app.UsageError(f"--compare_loaders times the 'tfds' loaders; the config's data "
                             f"is {config.data.name!r}.")
      what = f"tfds {config.data.dataset} ({os.path.basename(FLAGS['config'].config_filename)})"
    else:
      if not FLAGS.tfds_dir:
        raise app.UsageError("--compare_loaders without --config needs --tfds_dir, where the "
                             "random images are written as a TFDS dataset once.")
      name = bench_dataset(FLAGS.tfds_dir, FLAGS.num_images, FLAGS.resolution)
      options = {"dataset": name, "data_dir": FLAGS.tfds_dir}
      what = (f"TFDS array_record, {FLAGS.num_images:,} random {FLAGS.resolution}x"
              f"{FLAGS.resolution}x3 PNGs")
    try:
      rows = compare_loaders(options, batch_sizes, FLAGS.steps, rates)
    except RuntimeError as e:
      raise app.UsageError(str(e)) from None
    paths = write(rows, what, FLAGS.out_dir)
    with open(paths["md"]) as f:
      print(f.read())
    return
  for b in batch_sizes:
    try:
      if config is not None:
        source = builders.build_data(config, batch_size=b)
        what = f"{config.data.name} ({os.path.basename(FLAGS['config'].config_filename)})"
      else:
        source = synthetic_source(b, FLAGS.num_images, FLAGS.resolution)
        what = f"in-memory uint8 {FLAGS.resolution}x{FLAGS.resolution}x3"
    except (ValueError, FileNotFoundError) as e:
      raise app.UsageError(str(e)) from None
    rows.append(measure(source, FLAGS.steps, rates.get(b)))
  paths = write(rows, what, FLAGS.out_dir)
  with open(paths["md"]) as f:
    print(f.read())


def define_flags() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "A trainer config whose data source to time "
                                  "(default: random in-memory images).", lock_config=True)
  flags.DEFINE_list("batch_sizes", ["128", "1024"], "Batch sizes (images per critic step).")
  flags.DEFINE_integer("resolution", 64, "Image side of the random images (without --config).")
  flags.DEFINE_integer("num_images", 20000, "Random images held in memory (without --config).")
  flags.DEFINE_integer("steps", 50, "Batches timed per batch size.")
  flags.DEFINE_string("step_results", "", "step_throughput.py JSON to compare against.")
  flags.DEFINE_bool("compare_loaders", False, "Time the 'tfds' source's memory and grain "
                    "loaders, each in its own process, with their peak RSS.")
  flags.DEFINE_string("tfds_dir", "", "With --compare_loaders and no --config: where the "
                      "--num_images random images are written as a TFDS dataset.")
  flags.DEFINE_string("out_dir", "benchmarks/results", "Where the JSON and Markdown go.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
