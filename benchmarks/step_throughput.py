r"""Throughput of the fused, jitted GAN train step (`n_critic` D updates + one G update).

python benchmarks/step_throughput.py --models=dcgan,resnet --batch_sizes=128,1024 \
    --dtypes=float32,bfloat16 --out_dir=benchmarks/results

For every (model, batch size, dtype) it compiles `gax.steps.train_step` once with the state
donated, times `--iters` steps per repeat after `--warmup` untimed steps, synchronising on
the device (`jax.block_until_ready`) at the end of each repeat, and reports the median over
`--repeats`:

  img/s          generated-and-discriminated images per second: batch size / step time
  ms/step        median wall time of one train step
  compile_s      time to compile the step (lowering excluded)
  peak_mem_gib   the device's peak memory in use (where the backend reports it)
  tflop/step     FLOPs of one compiled step, from XLA's own cost analysis
  mfu            model FLOP utilisation: (FLOPs / step time) / the device's peak FLOP/s
                 for the dtype (`PEAK_TFLOPS`, or `--peak_tflops`)

Models: `dcgan` is the DCGAN of Radford et al. 2016 at 64x64 (nz=100, width 64, the paper's
setting) with the non-saturating loss and Adam(2e-4, 0.5); `resnet` is the SNGAN-style
ResNet (`gax.models.resnet`, G width 256, D width 128) with hinge loss, spectral
normalisation of D and Adam(2e-4, 0.0, 0.9). `bfloat16` computes in bf16 with float32
parameters and optimizer state (Flax `dtype` vs `param_dtype`).

`mlp` is gax's 3 x 128 MLP pair on the 2D ring (float32; "img/s" counts its points).
`--trainer` also runs each row's config (`benchmark_config`, from which the bare step is
built too) through `gax.trainer.train` for `--trainer_steps` steps (evaluation, samples and
checkpoints off; random uint8 images from a temporary `.npy` for the image models) and
reports the median steps/s it logs after its first interval, and that over the bare step's
steps/s: the training loop's overhead as a number.

`--conv_impls=auto,xla` adds a row per lowering of the convolutions (`gax.conv`: "xla" is
Flax's own layers, "auto" gax's per-backend plan), for before/after comparisons.

The batch is random uint8 data already on the device, so this times the step, not the input
pipeline. Results go to `<out_dir>/step_throughput.json` and `.md`.

`--compare_torch` also times the same network and update in eager PyTorch
(`benchmarks/torch_dcgan.py`, `benchmarks/torch_resnet.py`: channels-last, `torch.autocast`
bf16 for `bfloat16`) on the same batch size in the same process, one PyTorch repeat after
each gax repeat (so that a drift in the machine's speed reaches both), and adds its img/s
and the ratio gax / PyTorch to the table (DCGAN and ResNet rows; needs `pip install torch`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from benchmarks import variants  # pylint: disable=g-import-not-at-top
from gax import builders, trainer  # pylint: disable=g-import-not-at-top
from gax import conv as conv_lib  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top
from gax.steps import GAN, init_state, train_step  # pylint: disable=g-import-not-at-top

MODELS = ("dcgan", "resnet", "mlp")
DTYPES = ("float32", "bfloat16")

# Dense peak TFLOP/s by device kind (substring of `device.device_kind`) and compute dtype,
# from the vendors' data sheets: H100 SXM 989 (bf16 tensor) and 495 (tf32 tensor; XLA runs
# float32 convolutions and matmuls as TF32 on these GPUs by default); H200 the same chip;
# A100 312 / 156.
PEAK_TFLOPS = {
    ("H100", "bfloat16"): 989.0, ("H100", "float32"): 495.0,
    ("H200", "bfloat16"): 989.0, ("H200", "float32"): 495.0,
    ("A100", "bfloat16"): 312.0, ("A100", "float32"): 156.0,
}


@dataclasses.dataclass
class Result:
  model: str
  batch_size: int
  dtype: str
  resolution: int
  n_critic: int
  img_per_sec: float
  ms_per_step: float
  ms_per_step_spread: float
  compile_s: float
  peak_mem_gib: Optional[float]
  tflop_per_step: Optional[float]
  mfu: Optional[float]
  device: str
  torch_img_per_sec: Optional[float] = None
  torch_device: Optional[str] = None
  conv_impl: str = "auto"
  trainer_steps_per_sec: Optional[float] = None

  @property
  def torch_ratio(self) -> Optional[float]:
    """gax img/s over PyTorch img/s (with `--compare_torch`)."""
    return self.img_per_sec / self.torch_img_per_sec if self.torch_img_per_sec else None

  @property
  def trainer_ratio(self) -> Optional[float]:
    """`gax.trainer.train`'s steps/s over the bare step's (with `--trainer`)."""
    if not self.trainer_steps_per_sec:
      return None
    return self.trainer_steps_per_sec * self.ms_per_step / 1e3


def measure_trainer(model: str, batch_size: int, dtype: str, resolution: int, n_critic: int,
                    conv_impl: str, steps: int, log_every: int, workdir: str) -> float:
  """Median steps/s that `gax.trainer.train` logs for `benchmark_config` over `steps` steps
  in `workdir` (log intervals after the first, which includes compilation)."""
  if steps < 3 * log_every or log_every < 1:
    raise ValueError(f"--trainer_steps ({steps}) must be at least 3 x --trainer_log_every "
                     f"({log_every}) >= 1: the first log interval (compilation) is dropped.")
  cfg = benchmark_config(model, resolution, batch_size, dtype, n_critic, conv_impl)
  os.makedirs(workdir, exist_ok=True)
  if model != "mlp":
    path = os.path.join(workdir, "images.npy")
    np.save(path, np.random.default_rng(0).integers(
        0, 256, (4 * batch_size, *data_shape(model, resolution)), dtype=np.uint8))
    cfg.data.path = path
  cfg.train.steps, cfg.train.log_every = steps, log_every
  run_dir = os.path.join(workdir, f"run_{model}_{batch_size}_{dtype}_{conv_impl}")
  if os.path.exists(run_dir):
    shutil.rmtree(run_dir)
  trainer.train(cfg, run_dir)
  with open(os.path.join(run_dir, trainer.METRICS_FILE)) as f:
    rates = [json.loads(line)["steps_per_sec"] for line in f if line.strip()]
  if len(rates) < 3:
    raise RuntimeError(f"The trainer logged {len(rates)} intervals in {run_dir}; need >= 3.")
  return statistics.median(rates[1:])


def benchmark_config(model: str, resolution: int, batch_size: int, dtype: str = "float32",
                     n_critic: int = 1, conv_impl: str = "auto") -> ml_collections.ConfigDict:
  """The trainer config of a benchmarked model (the bare step is built from it too).

  `dcgan`: the paper's DCGAN (nz=100, width 64), non-saturating loss, Adam(2e-4, 0.5);
  `resnet`: the SNGAN-style ResNet (G width 256, D width 128), hinge loss, spectral norm of
  D, Adam(2e-4, 0.0, 0.9); `mlp`: gax's 3 x 128 MLPs on the 8-Gaussian ring with z of
  dimension 64 (`benchmarks/variants.mixture_config`, the mode-coverage runs' networks),
  float32 only. Image models read random uint8 images (`data.name="array"`, path set by the
  caller); the MLP reads the ring.
  """
  if model not in MODELS:
    raise ValueError(f"Unknown model {model!r}; choose from {MODELS}.")
  if dtype not in DTYPES:
    raise ValueError(f"Unknown dtype {dtype!r}; choose from {DTYPES}.")
  if model == "mlp":
    if dtype != "float32":
      raise ValueError(f"The MLP model computes in float32 only; got dtype {dtype!r}.")
    c = variants.mixture_config("ring", steps=1000, batch_size=batch_size)
  else:
    c = builders.base_config()
    c.data = {"name": "array", "batch_size": batch_size, "path": ""}
    c.train.num_samples = 16
  if model == "dcgan":
    c.model = {"name": "dcgan", "width": 64, "dtype": dtype, "conv_impl": conv_impl}
    c.latent.dim = 100
    c.loss = "non_saturating"
  elif model == "resnet":
    c.model = {"name": "resnet", "g_width": 256, "d_width": 128, "dtype": dtype,
               "conv_impl": conv_impl}
    c.latent.dim = 128
    c.loss = "hinge"
    c.tricks.spectral_norm.enabled = True
    for player in ("g", "d"):
      c.optimizer[player].b1, c.optimizer[player].b2 = 0.0, 0.9
  c.n_critic = n_critic
  # Nothing but training and its log lines: no evaluation, sample grids or checkpoints.
  c.eval.every = -1
  c.train.sample_every = 0
  c.train.checkpoint_every = 0
  return c


def data_shape(model: str, resolution: int) -> Tuple[int, ...]:
  return (2,) if model == "mlp" else (resolution, resolution, 3)


def build_gan(model: str, resolution: int, dtype: str, n_critic: int,
              conv_impl: str = "auto") -> GAN:
  """The benchmarked GAN (`benchmark_config`), with convolutions lowered by `gax.conv` as
  `conv_impl` says."""
  cfg = benchmark_config(model, resolution, 1, dtype, n_critic, conv_impl)
  return builders.build_gan(cfg, data_shape(model, resolution))


def _flops(compiled: Any) -> Optional[float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def _peak_memory_gib(device: Any) -> Optional[float]:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / 2 ** 30


def peak_tflops(device_kind: str, dtype: str, override: Optional[float] = None) -> Optional[float]:
  """The device's dense peak TFLOP/s for `dtype`, `override` if given, else `None`."""
  if override:
    return override
  for (kind, dt), tflops in PEAK_TFLOPS.items():
    if kind in device_kind and dt == dtype:
      return tflops
  return None


class Timer:
  """Compiles one configuration of the train step (state donated) and runs its warm-up
  steps; each `repeat(iters)` times `iters` steps, synchronised at the end, and returns
  seconds per step; `result(times)` is the `Result` of those repeats."""

  def __init__(self, model: str, batch_size: int, dtype: str, resolution: int = 64,
               n_critic: int = 1, warmup: int = 3, peak_override: Optional[float] = None,
               conv_impl: str = "auto"):
    if warmup < 0:
      raise ValueError(f"Need warmup >= 0; got {warmup}.")
    self.args = dict(model=model, batch_size=batch_size, dtype=dtype, resolution=resolution,
                     n_critic=n_critic, conv_impl=conv_impl)
    self.peak_override = peak_override
    gan = build_gan(model, resolution, dtype, n_critic, conv_impl)
    shape = data_shape(model, resolution)
    self.state = init_state(gan, jax.random.PRNGKey(0), shape)
    rng = np.random.default_rng(0)
    if model == "mlp":
      batch = rng.standard_normal((n_critic, batch_size, *shape)).astype(np.float32)
    else:
      batch = rng.integers(0, 256, (n_critic, batch_size, *shape), dtype=np.uint8)
    self.batch = jax.device_put(batch)
    lowered = jax.jit(functools.partial(train_step, gan), donate_argnums=0,
                      compiler_options=conv_lib.compiler_options()).lower(
        self.state, self.batch)
    t0 = time.perf_counter()
    self.step = lowered.compile()
    self.compile_s = time.perf_counter() - t0
    self.flops = _flops(self.step)
    for _ in range(warmup):
      self.state, self.metrics = self.step(self.state, self.batch)
    jax.block_until_ready(self.state)

  def repeat(self, iters: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
      self.state, self.metrics = self.step(self.state, self.batch)
    jax.block_until_ready((self.state, self.metrics))
    return (time.perf_counter() - t0) / iters

  def result(self, times: List[float]) -> Result:
    metrics = jax.device_get(self.metrics)
    if not all(np.isfinite(float(v)) for v in metrics.values()):
      raise FloatingPointError(f"Non-finite metrics in the benchmarked step: {metrics}")
    t = statistics.median(times)
    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind, self.args["dtype"], self.peak_override)
    flops = self.flops
    return Result(
        **self.args, img_per_sec=self.args["batch_size"] / t, ms_per_step=1e3 * t,
        ms_per_step_spread=1e3 * (max(times) - min(times)), compile_s=self.compile_s,
        peak_mem_gib=_peak_memory_gib(device),
        tflop_per_step=None if flops is None else flops / 1e12,
        mfu=None if flops is None or peak is None else flops / t / (peak * 1e12),
        device=f"{device.platform}:{device.device_kind}")


def measure(model: str, batch_size: int, dtype: str, resolution: int = 64, n_critic: int = 1,
            warmup: int = 3, iters: int = 10, repeats: int = 5,
            peak_override: Optional[float] = None, conv_impl: str = "auto",
            alongside: Optional[Callable[[], None]] = None) -> Result:
  """Compiles and times one configuration of the train step: the median over `repeats` of
  `iters` steps after `warmup` untimed ones. `alongside`, if given, runs after each repeat
  (`--compare_torch` times one PyTorch repeat there, so both steps see the same machine)."""
  if repeats < 1 or iters < 1:
    raise ValueError(f"Need repeats >= 1, iters >= 1; got {repeats}, {iters}.")
  timer = Timer(model, batch_size, dtype, resolution, n_critic, warmup, peak_override,
                conv_impl)
  times = []
  for _ in range(repeats):
    times.append(timer.repeat(iters))
    if alongside is not None:
      alongside()
  return timer.result(times)


def markdown(results: List[Result]) -> str:
  """The results as a Markdown table."""
  fmt = lambda v, f: "n/a" if v is None else format(v, f)
  torch_cols = any(r.torch_img_per_sec for r in results)
  trainer_cols = any(r.trainer_steps_per_sec for r in results)
  head = ("| model | batch | dtype | conv | img/s | ms/step | compile s | peak GiB | TFLOP/step "
          "| MFU | device |")
  if torch_cols:
    head += " PyTorch img/s | gax / PyTorch |"
  if trainer_cols:
    head += " trainer steps/s | trainer / step |"
  rows = [head, "|" + " --- |" * (11 + 2 * torch_cols + 2 * trainer_cols)]
  for r in results:
    shape = "2D" if r.model == "mlp" else f"{r.resolution}x{r.resolution}"
    row = (f"| {r.model} {shape} | {r.batch_size} | {r.dtype} | "
           f"{r.conv_impl} | "
           f"{r.img_per_sec:,.0f} | {r.ms_per_step:.2f} | {r.compile_s:.1f} | "
           f"{fmt(r.peak_mem_gib, '.2f')} | {fmt(r.tflop_per_step, '.3f')} | "
           f"{fmt(r.mfu, '.1%')} | {r.device} |")
    if torch_cols:
      row += (f" {fmt(r.torch_img_per_sec, ',.0f')} | "
              f"{fmt(r.torch_ratio, '.2f')}{'x' if r.torch_ratio else ''} |")
    if trainer_cols:
      row += (f" {fmt(r.trainer_steps_per_sec, ',.1f')} | {fmt(r.trainer_ratio, '.2f')} |")
    rows.append(row)
  return "\n".join(rows)


def write(results: List[Result], out_dir: str) -> Dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, "step_throughput.json"),
           "md": os.path.join(out_dir, "step_throughput.md")}
  meta = {"jax": jax.__version__, "backend": jax.default_backend(),
          "host": platform.node(), "python": platform.python_version()}
  with open(paths["json"], "w") as f:
    json.dump({"meta": meta, "results": [
        {**dataclasses.asdict(r), "torch_ratio": r.torch_ratio, "trainer_ratio": r.trainer_ratio}
        for r in results]}, f, indent=2)
  with open(paths["md"], "w") as f:
    f.write(markdown(results) + "\n")
  return paths


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_list("models", list(MODELS), f"Models to time, from {MODELS}.")
  flags.DEFINE_list("batch_sizes", ["128", "1024"], "Global batch sizes.")
  flags.DEFINE_list("dtypes", ["float32", "bfloat16"], f"Compute dtypes, from {DTYPES}.")
  flags.DEFINE_integer("resolution", 64, "Image resolution (4 * 2^k).")
  flags.DEFINE_integer("n_critic", 1, "D updates per G update inside the step.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
  flags.DEFINE_integer("iters", 10, "Steps per timed repeat.")
  flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
  flags.DEFINE_float("peak_tflops", None, "Override the device's peak TFLOP/s for the MFU.")
  flags.DEFINE_string("out_dir", "benchmarks/results", "Where the JSON and Markdown go.")
  flags.DEFINE_list("conv_impls", ["auto"], "How convolutions are lowered, from "
                    f"{list(conv_lib.IMPLS)} (gax.conv); one row per value.")
  flags.DEFINE_bool("trainer", False, "Also run each row's config through gax.trainer.train "
                    "and report its logged steps/s and the ratio to the bare step.")
  flags.DEFINE_integer("trainer_steps", 60, "Steps of each --trainer run.")
  flags.DEFINE_integer("trainer_log_every", 10, "Log interval of each --trainer run.")
  flags.DEFINE_string("trainer_workdir", None, "Where --trainer runs go (default: a temporary "
                      "directory, removed afterwards).")
  flags.DEFINE_bool("compare_torch", False, "Also time the DCGAN and ResNet steps in eager "
                    "PyTorch (channels-last, bf16 autocast) and report the ratio.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for m in FLAGS.models:
    if m not in MODELS:
      raise app.UsageError(f"--models: unknown {m!r}; choose from {MODELS}.")
  for d in FLAGS.dtypes:
    if d not in DTYPES:
      raise app.UsageError(f"--dtypes: unknown {d!r}; choose from {DTYPES}.")
  for c in FLAGS.conv_impls:
    if c not in conv_lib.IMPLS:
      raise app.UsageError(f"--conv_impls: unknown {c!r}; choose from {list(conv_lib.IMPLS)}.")
  try:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  except ValueError:
    raise app.UsageError(f"--batch_sizes must be integers, got {FLAGS.batch_sizes}.") from None
  torch_steps = {}
  if FLAGS.compare_torch:
    try:
      from benchmarks import torch_dcgan, torch_resnet  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise app.UsageError(f"--compare_torch needs PyTorch (pip install torch): {e}") from None
    torch_steps = {"dcgan": torch_dcgan.DCGANStep, "resnet": torch_resnet.ResNetStep}
  malloc = "tuned" if host.tune_malloc() else "default"
  logging.info("Backend %s, devices %s; malloc %s (gax.host)", jax.default_backend(),
               jax.devices(), malloc)
  results = []
  runs = []
  for model, bs, dtype, impl in itertools.product(FLAGS.models, batch_sizes, FLAGS.dtypes,
                                                  FLAGS.conv_impls):
    if model == "mlp" and (dtype != "float32" or impl != FLAGS.conv_impls[0]):
      logging.warning("Skipping mlp with dtype %s / conv_impl %s: the MLP computes in float32 "
                      "and has no convolutions.", dtype, impl)
      continue
    runs.append((model, bs, dtype, impl))
  trainer_dir = FLAGS.trainer_workdir or (tempfile.mkdtemp(prefix="gax_step_throughput_")
                                          if FLAGS.trainer else None)
  for i, (model, bs, dtype, impl) in enumerate(runs):
    logging.info("[%d/%d] %s batch %d %s conv %s ...", i + 1, len(runs), model, bs, dtype, impl)
    torch_timer, torch_times = None, []
    if model in torch_steps:
      # PyTorch's repeats alternate with gax's: this machine's speed drifts within minutes.
      torch_timer = torch_dcgan.Timer(bs, dtype, FLAGS.resolution, FLAGS.n_critic,
                                      FLAGS.warmup, make_step=torch_steps[model])
    alongside = (None if torch_timer is None else
                 lambda: torch_times.append(torch_timer.repeat(FLAGS.iters)))
    r = measure(model, bs, dtype, FLAGS.resolution, FLAGS.n_critic, FLAGS.warmup, FLAGS.iters,
                FLAGS.repeats, FLAGS.peak_tflops, impl, alongside=alongside)
    logging.info("  %.0f img/s, %.2f ms/step, compile %.1f s, MFU %s", r.img_per_sec,
                 r.ms_per_step, r.compile_s, "n/a" if r.mfu is None else f"{r.mfu:.1%}")
    if torch_timer is not None:
      t = torch_timer.result(torch_times)
      r.torch_img_per_sec, r.torch_device = t["img_per_sec"], t["device"]
      logging.info("  PyTorch: %.0f img/s, %.2f ms/step; gax / PyTorch = %.2fx",
                   t["img_per_sec"], t["ms_per_step"], r.torch_ratio)
    if FLAGS.trainer:
      r.trainer_steps_per_sec = measure_trainer(
          model, bs, dtype, FLAGS.resolution, FLAGS.n_critic, impl, FLAGS.trainer_steps,
          FLAGS.trainer_log_every, trainer_dir)
      logging.info("  trainer: %.1f steps/s, %.2f of the bare step", r.trainer_steps_per_sec,
                   r.trainer_ratio)
    results.append(r)
  if FLAGS.trainer and not FLAGS.trainer_workdir:
    shutil.rmtree(trainer_dir, ignore_errors=True)
  paths = write(results, FLAGS.out_dir)
  print(markdown(results))
  logging.info("Wrote %s and %s", paths["json"], paths["md"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
