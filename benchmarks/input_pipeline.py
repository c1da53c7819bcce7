r"""Speed of the input pipeline beside the speed of the jitted train step it feeds.

python benchmarks/input_pipeline.py --batch_sizes=128,1024 --resolution=64 \
    --step_results=benchmarks/results/step_throughput.json --out_dir=benchmarks/results

By default it times the in-memory path every gax source ends in (`gax.data.ArraySource`: a
seeded per-epoch permutation and an index gather from uint8 host memory) on `--num_images`
random uint8 images of `--resolution`; with `--config` (a trainer config file, overridable as
in experiments/train.py) it times that run's own data source, e.g. a prepared TFDS dataset:

python benchmarks/input_pipeline.py --config=experiments/configs/dcgan_tfds.py:mnist \
    --config.data.data_dir=/data/tfds --batch_sizes=128,1024

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
import sys
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top

from gax import builders, data  # pylint: disable=g-import-not-at-top


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


def markdown(rows: List[Dict[str, float]], what: str) -> str:
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
  try:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  except ValueError:
    raise app.UsageError(f"--batch_sizes must be integers, got {FLAGS.batch_sizes}.") from None
  if not batch_sizes or any(b < 1 for b in batch_sizes) or FLAGS.steps < 1:
    raise app.UsageError("--batch_sizes (at least one) and --steps must be positive.")
  rates = step_rates(FLAGS.step_results) if FLAGS.step_results else {}
  config = FLAGS.config
  rows = []
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
  flags.DEFINE_string("out_dir", "benchmarks/results", "Where the JSON and Markdown go.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
