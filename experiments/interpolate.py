r"""Draws latent interpolations of a trained generator as a PNG.

  python experiments/interpolate.py --workdir=runs/digits --out=interp.png \
      --num_rows=8 --num_steps=10 --method=slerp --seed=0

Each row walks from one random latent to another (both drawn with the run's latent
distribution) in `--num_steps` evenly spaced steps, endpoints included. `--method=slerp`
follows the great circle between them (`gax.noise.slerp`, White 2016): high-dimensional
Gaussian draws have nearly equal norms, and slerp keeps the path at that norm, where the
generator was trained; `--method=linear` takes the straight line, whose middle has a lower
norm than any latent the generator saw.

Samples come from G in eval mode, with the EMA weights when the run keeps them (as the
trainer's sample grids), and G's dropout/noise layers, if any, fixed along each path.

Image data gives a grid of generated images, one row per pair and one column per step.
2D point data gives a scatter plot of the paths: each pair's generated points joined in
step order in one colour, the start marked by a filled dot, the mixture's modes as red
rings.
"""

from __future__ import annotations

import colorsys
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top

from gax import cli, builders, noise, trainer, visualize  # pylint: disable=g-import-not-at-top
from gax import conv as conv_lib  # pylint: disable=g-import-not-at-top
from gax.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
from gax.steps import generate, sampling_player  # pylint: disable=g-import-not-at-top

METHODS = ("slerp", "linear")
FLAGS = flags.FLAGS


def interpolate_latents(z0: jax.Array, z1: jax.Array, num_steps: int,
                        method: str = "slerp") -> jax.Array:
  """`[N, D]` start and end latents -> `[N, num_steps, D]` paths, endpoints included."""
  if method not in METHODS:
    raise ValueError(f"Unknown interpolation method {method!r}; choose one of {METHODS}.")
  if num_steps < 2:
    raise ValueError(f"num_steps must be >= 2 (the two endpoints), got {num_steps}.")
  t = jnp.linspace(0.0, 1.0, num_steps)
  a, b = z0[:, None, :], z1[:, None, :]
  if method == "slerp":
    return noise.slerp(a, b, t)
  return (1.0 - t[None, :, None]) * a + t[None, :, None] * b


def _check_step(workdir: str, step: Optional[int]) -> None:
  """Raises a clear error when the work directory has no checkpoint (of `step`)."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"The work directory {workdir} does not exist.")
  trainer.load_config(workdir)  # raises when workdir is not a gax work directory
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = []
  if os.path.isdir(ckpt_dir):
    ckpt = Checkpointer(ckpt_dir)
    steps = ckpt.all_steps()
    ckpt.close()
  if not steps:
    raise FileNotFoundError(f"{workdir} has no checkpoint yet: train it first.")
  if step is not None and step not in steps:
    raise FileNotFoundError(f"{workdir} has no checkpoint of step {step}; it has steps "
                            f"{sorted(steps)}.")


def _row_colours(n: int) -> list[tuple[int, int, int]]:
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 0.8))
          for i in range(n)]


def save_paths(path: str, points: np.ndarray, centers: Optional[np.ndarray] = None,
               size: int = 512) -> None:
  """Writes 2D paths `[N, T, 2]` as a PNG: one coloured polyline per path, its start a dot."""
  points = np.asarray(points, np.float32)
  ref = points.reshape(-1, 2)
  if centers is not None:
    ref = np.concatenate([ref, centers])
  ref = ref[np.isfinite(ref).all(1)]
  extent = float(np.max(np.abs(ref), initial=1.0)) * 1.15
  im = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(im)
  to_px = lambda p: ((p[0] / extent + 1) * size / 2, (1 - p[1] / extent) * size / 2)
  for c in [] if centers is None else centers:
    x, y = to_px(c)
    draw.ellipse((x - 6, y - 6, x + 6, y + 6), outline=(200, 30, 30))
  for row, colour in zip(points, _row_colours(len(points))):
    px = [to_px(p) for p in row if np.isfinite(p).all()]
    if len(px) > 1:
      draw.line(px, fill=colour, width=2)
    for i, (x, y) in enumerate(px):
      r = 4 if i == 0 else 2
      draw.ellipse((x - r, y - r, x + r, y + r), fill=colour if i == 0 else None, outline=colour)
  im.save(path)


def interpolate(workdir: str, out: str, num_rows: int = 8, num_steps: int = 10, seed: int = 0,
                step: Optional[int] = None, method: str = "slerp",
                truncation: Optional[float] = None) -> np.ndarray:
  """Writes the interpolation PNG of the run in `workdir` to `out`.

  Args:
    workdir: the run's work directory.
    out: the PNG path to write.
    num_rows: number of latent pairs (rows).
    num_steps: points per path, endpoints included (columns).
    seed: seed of the latent draws.
    step: checkpoint step; None for the newest.
    method: 'slerp' or 'linear'.
    truncation: the truncation trick's threshold for the endpoints (`gax.trainer.truncated`:
      each value from N(0, 1) truncated to [-t, t]); None: the run's own latents. A linear
      path stays inside the box [-t, t]^D; a slerp path can leave it between the endpoints.

  Returns:
    The generated samples, `[num_rows, num_steps, *data_shape]` float32.
  """
  if num_rows < 1:
    raise ValueError(f"num_rows must be >= 1, got {num_rows}.")
  if not out.lower().endswith(".png"):
    raise ValueError(f"The output must be a .png path, got {out!r}.")
  _check_step(workdir, step)
  config, gan, state = trainer.restore_run(workdir, step)
  gan = trainer.truncated(gan, truncation)
  k0, k1, g_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  z0 = gan.latent(k0, (num_rows, gan.latent_dim))
  z1 = gan.latent(k1, (num_rows, gan.latent_dim))
  z = interpolate_latents(z0, z1, num_steps, method)  # [rows, steps, D]
  # One column (step) at a time with the same key, so that G's dropout/noise layers (if any)
  # stay fixed along each path; eval mode, EMA weights when the run keeps them.
  # A conditional run keeps one class per row: row i shows class i mod num_classes.
  y = trainer.sample_labels_for(gan, num_rows)
  gen = jax.vmap(lambda g, zc: generate(gan, sampling_player(g), zc, y, key=g_key),
                 in_axes=(None, 1), out_axes=1)
  gen = jax.jit(gen, compiler_options=conv_lib.compiler_options())
  x = np.asarray(gen(state.g, z), np.float32)  # [rows, steps, *data_shape]

  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if x.ndim == 5:  # [rows, steps, H, W, C] images
    visualize.save_image_grid(out, x.reshape(-1, *x.shape[2:]), ncols=num_steps)
  elif x.ndim == 3 and x.shape[-1] == 2:  # [rows, steps, 2] points
    centers = getattr(builders.build_data(config), "centers", None)
    save_paths(out, x, centers)
  else:
    raise ValueError(f"Cannot draw generated data of shape {x.shape[2:]}: only images "
                     "[H, W, C] and 2D points are supported.")
  logging.info("Wrote %d %s interpolations of %d steps from the checkpoint of step %d to %s",
               num_rows, method, num_steps, int(state.step), out)
  return x


def _define_flags() -> None:
  """Defines the flags; only when run as a script, so importing `interpolate` claims no flag
  names (other launchers define `--workdir` too)."""
  flags.DEFINE_string("workdir", None, "Work directory of a training run.")
  flags.DEFINE_string("out", None, "Output .png path.")
  flags.DEFINE_integer("num_rows", 8, "Number of latent pairs (rows).", lower_bound=1)
  flags.DEFINE_integer("num_steps", 10, "Points per path, endpoints included.", lower_bound=2)
  flags.DEFINE_integer("seed", 0, "Seed of the latent draws.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
  flags.DEFINE_enum("method", "slerp", METHODS, "Interpolation path between the latents.")
  flags.DEFINE_float("truncation", None, "The truncation trick (BigGAN) for the endpoints: "
                     "each latent value from N(0, 1) truncated to [-t, t] (runs with Gaussian "
                     "latents).", lower_bound=1e-3)
  flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.out.lower().endswith(".png"):
    raise app.UsageError(f"--out must be a .png path, got {FLAGS.out!r}")
  trainer.quiet_library_logs()
  try:
    interpolate(FLAGS.workdir, FLAGS.out, FLAGS.num_rows, FLAGS.num_steps, FLAGS.seed,
                FLAGS.step, FLAGS.method, FLAGS.truncation)
  except ValueError as e:
    if "truncat" in str(e).lower():
      raise app.UsageError(f"--truncation: {e}") from e
    raise


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
