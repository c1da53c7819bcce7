r"""Per-layer profile of a model's convolutions: each linear map in each formulation.

python benchmarks/conv_layers.py --model=dcgan --resolution=64 --batch_size=32

Traces one train step of the model (`step_throughput.build_gan`) to find every distinct
convolution it runs, then times, for each layer and each of `gax.conv.FORMULATIONS`, the
three linear maps a step runs (see `gax.conv`):

  A  the convolution x -> y (a Conv's forward; a ConvTranspose's input gradient)
  B  its transpose in x (a Conv's input gradient; a ConvTranspose's forward)
  C  its transpose in the kernel (both layers' kernel gradient)

Each cell is GFLOP/s (2 * MACs of the map / the best of `--repeats` timed calls of the
jitted map); `*` marks the formulation the "auto" plan of this backend picks (for a
ConvTranspose, the plan as `gax.conv.transpose_plan` adjusts it). `xla` is
`lax.conv_general_dilated` of the row's convolution and JAX's own transposes of it, i.e. a
Conv layer as Flax lowers it; Flax's ConvTranspose lowers its maps differently (its forward
as a convolution of the dilated input, its kernel gradient the slowest case of all), which
`step_throughput.py --conv_impls=xla` measures in the whole step. Results go to
`<out_dir>/conv_layers_<model>_<resolution>_<batch>.md`.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from jax import lax  # pylint: disable=g-import-not-at-top

from benchmarks import step_throughput  # pylint: disable=g-import-not-at-top
from gax import conv as conv_lib  # pylint: disable=g-import-not-at-top
from gax import host  # pylint: disable=g-import-not-at-top
from gax.steps import init_state, train_step  # pylint: disable=g-import-not-at-top

_DN = ("NHWC", "HWIO", "NHWC")


def record_layers(model: str, resolution: int, batch_size: int, dtype: str = "float32"):
  """The distinct convolutions of one train step, as `(kind, x_shape, k_shape, strides, pads)`
  of the convolution A (for a ConvTranspose: the one it is the transpose of)."""
  layers = []
  orig_conv, orig_t = conv_lib.conv, conv_lib.conv_transpose

  def rec_conv(x, k, strides=(1, 1), padding="SAME", impl="auto"):
    strides = tuple(strides)
    pads = conv_lib.conv_pads(x.shape[1:3], k.shape[:2], strides, padding)
    layers.append(("Conv", tuple(x.shape), tuple(k.shape), strides, pads))
    return orig_conv(x, k, strides, padding, impl)

  def rec_t(x, k, strides=(1, 1), padding="SAME", impl="auto"):
    strides = tuple(strides)
    hi, kt, pads, _ = conv_lib.transpose_geometry(x.shape, k.shape, strides, padding)
    layers.append(("ConvTranspose", tuple(hi), tuple(kt), strides, pads))
    return orig_t(x, k, strides, padding, impl)

  gan = step_throughput.build_gan(model, resolution, dtype, 1)
  shape = (resolution, resolution, 3)
  conv_lib.conv, conv_lib.conv_transpose = rec_conv, rec_t
  try:
    state = init_state(gan, jax.random.PRNGKey(0), shape)
    batch = jax.ShapeDtypeStruct((1, batch_size, *shape), jnp.uint8)
    layers.clear()
    jax.eval_shape(functools.partial(train_step, gan), state, batch)
  finally:
    conv_lib.conv, conv_lib.conv_transpose = orig_conv, orig_t
  return list(dict.fromkeys(layers))


def _best_time(f: Callable, args, repeats: int) -> float:
  f = jax.jit(f, compiler_options=conv_lib.compiler_options())
  jax.block_until_ready(f(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def maps(form: str, strides, pads, x_shape, k_shape) -> Dict[str, Callable]:
  """The three maps of one layer in formulation `form` ("xla": lax and its autodiff)."""
  if form == "xla":
    a = lambda x, k: lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=_DN)
  else:
    a = lambda x, k: conv_lib.apply_formulation(form, x, k, strides, pads)
  b = lambda dy, k: jax.linear_transpose(lambda x: a(x, k),
                                         jax.ShapeDtypeStruct(x_shape, dy.dtype))(dy)[0]
  c = lambda x, dy: jax.linear_transpose(lambda k: a(x, k),
                                         jax.ShapeDtypeStruct(k_shape, dy.dtype))(dy)[0]
  return {"A": a, "B": b, "C": c}


def profile(model: str, resolution: int, batch_size: int, repeats: int = 10) -> List[dict]:
  rng = np.random.default_rng(0)
  rows = []
  for kind, x_shape, k_shape, strides, pads in record_layers(model, resolution, batch_size):
    out_hw = conv_lib.conv_out_hw(x_shape, k_shape, strides, pads)
    y_shape = (x_shape[0], *out_hw, k_shape[-1])
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape) * 0.05, jnp.float32)
    dy = jnp.asarray(rng.standard_normal(y_shape), jnp.float32)
    gflop = 2 * np.prod(y_shape) * np.prod(k_shape[:3]) / 1e9
    plan = conv_lib.resolve("auto", x_shape, k_shape, strides, out_hw)
    row = {"kind": kind, "x": x_shape, "k": k_shape, "strides": strides, "gflop": gflop,
           "plan": plan, "gflops": {}}
    for form in ("xla",) + conv_lib.FORMULATIONS:
      fs = maps(form, strides, pads, x_shape, k_shape)
      for name, args in (("A", (x, k)), ("B", (dy, k)), ("C", (x, dy))):
        row["gflops"][(name, form)] = gflop / _best_time(fs[name], args, repeats)
    rows.append(row)
    logging.info("%s %s x %s: %s", kind, x_shape, k_shape,
                 {f"{m}.{f}": round(v) for (m, f), v in row["gflops"].items()})
  return rows


def markdown(rows: List[dict]) -> str:
  forms = ("xla",) + conv_lib.FORMULATIONS
  head = "| layer | x -> y | kernel | GFLOP | " + " | ".join(
      f"{m}: " + " / ".join(forms) for m in "ABC") + " |"
  out = [head, "|" + " --- |" * 7]
  for r in rows:
    plan = r["plan"]
    if plan is not None and r["kind"] == "ConvTranspose":
      plan = conv_lib.transpose_plan(plan)
    cells = []
    for m in "ABC":
      chosen = None if plan is None else getattr(plan, m.lower())
      cells.append(" / ".join(f"{r['gflops'][(m, f)]:.0f}{'*' if f == chosen else ''}"
                              for f in forms))
    s = "x".join(map(str, r["strides"]))
    out.append(f"| {r['kind']} s{s} | {r['x'][1:]} | {r['k']} | {r['gflop']:.2f} | "
               + " | ".join(cells) + " |")
  return "\n".join(out)


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_enum("model", "dcgan", list(step_throughput.MODELS), "Model to profile.")
  flags.DEFINE_integer("resolution", 64, "Image resolution (4 * 2^k).")
  flags.DEFINE_integer("batch_size", 32, "Batch size.")
  flags.DEFINE_integer("repeats", 10, "Timed calls per map; the best is reported.")
  flags.DEFINE_string("out_dir", "benchmarks/results", "Where the Markdown table goes.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  host.tune_malloc()
  if FLAGS.model == "mlp":
    raise app.UsageError("--model=mlp has no convolutions.")
  rows = profile(FLAGS.model, FLAGS.resolution, FLAGS.batch_size, FLAGS.repeats)
  table = markdown(rows)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  path = os.path.join(FLAGS.out_dir,
                      f"conv_layers_{FLAGS.model}_{FLAGS.resolution}_{FLAGS.batch_size}.md")
  with open(path, "w") as f:
    f.write(f"{jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}\n\n"
            + table + "\n")
  print(table)
  logging.info("Wrote %s", path)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
