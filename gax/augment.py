"""Differentiable augmentations of D's input images: DiffAugment and ADA's pipeline.

Images are NHWC floats in D's input scale ([-1, 1]). Every op is a deterministic function
of explicit per-example parameters (`brightness(x, b)`, `translate(x, tx, ty)`,
`affine(x, g_inv)`, ...), which the tests check against NumPy references; `diff_augment`,
`flip_translate` and `ada_params` (for `ada_augment`) draw those parameters. Draws go through
`gax.noise.draw_global`, so under `pmap` N devices with batch B augment exactly as one device
with batch N * B does; all ops are differentiable in `x` (gradients reach G through them).

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"), as its reference code (`DiffAugment_pytorch.py` of mit-han-lab/data-efficient-gans)
defines the policies:

  color        brightness + U(-0.5, 0.5); saturation: deviation from the per-pixel channel
               mean scaled by U(0, 2); contrast: deviation from the image mean scaled by
               U(0.5, 1.5), in that order;
  translation  an integer shift of up to `round(0.125 * size)` pixels per axis, filled with 0;
  cutout       a square of `round(0.5 * size)` pixels set to 0, centred uniformly.

ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data",
appendix B; NVlabs/stylegan2-ada-pytorch `training/augment.py`), the `bgc` pipeline: each
transformation applied with probability p, its parameters as in that code:

  geometric  x-flip; rotation by a multiple of 90 degrees; integer translation U(-0.125,
             0.125) of the size; isotropic scaling 2^N(0, 0.2^2); arbitrary rotation
             U(-pi, pi), before and after the anisotropic scaling 2^N(0, 0.2^2), each with
             probability 1 - sqrt(1 - p) so that one of them happens with probability p;
             fractional translation N(0, 0.125^2) of the size;
  colour     brightness + N(0, 0.2^2); contrast 2^N(0, 0.5^2); luma flip; hue rotation
             U(-pi, pi) about the luma axis; saturation 2^N(0, 1) (the last two on RGB only).

The geometric transformations compose into one inverse affine map per image, applied by
`affine`: bilinear sampling with reflection at the borders. ADA's code samples a 2x
upsampled image filtered with symlet-6 wavelets and filters it down again, against aliasing;
gax samples the image itself, which is exact for flips, 90-degree rotations and integer
translations and slightly blurs the others. The colour transformations compose into one 4x4
matrix per image, applied by `color_matrix` (to a grey image, as ADA does, the mean of its
first three rows).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gax import noise

Array = jax.Array

DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _per_example(v: Array) -> Array:
  return v.reshape(-1, 1, 1, 1)


def _draw(sampler: Callable[[Array, Tuple[int, ...]], Array], key: Array,
          shape: Sequence[int], axis_name: Optional[str]) -> Array:
  return noise.draw_global(sampler, key, tuple(shape), axis_name)


def _uniform(lo: float, hi: float):
  return lambda k, s: jax.random.uniform(k, s, jnp.float32, lo, hi)


def _randint(lo: int, hi: int):
  """Integers in [lo, hi)."""
  return lambda k, s: jax.random.randint(k, s, lo, hi)


def check_images(x: Array, where: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"{where} augments images [B, H, W, C]; got an array of shape {x.shape}.")


# ---------------------------------------------------------------------------------------------
# DiffAugment's ops.


def brightness(x: Array, b: Array) -> Array:
  """`x + b` per image (`b` `[B]`)."""
  return x + _per_example(b).astype(x.dtype)


def saturation(x: Array, s: Array) -> Array:
  """Each pixel's deviation from its channel mean scaled by `s` `[B]` (identity on grey)."""
  m = jnp.mean(x, axis=-1, keepdims=True)
  return (x - m) * _per_example(s).astype(x.dtype) + m


def contrast(x: Array, c: Array) -> Array:
  """Each image's deviation from its mean over pixels and channels scaled by `c` `[B]`."""
  m = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - m) * _per_example(c).astype(x.dtype) + m


def _shift_axis(x: Array, t: Array, axis: int) -> Array:
  """`out[b, ..., i, ...] = x[b, ..., i + t[b], ...]` along `axis`, 0 outside the image."""
  n = x.shape[axis]
  idx = jnp.arange(n)[None, :] + t[:, None]  # [B, n]
  valid = (idx >= 0) & (idx < n)
  shape = [x.shape[0]] + [1] * (x.ndim - 1)
  shape[axis] = n
  gathered = jnp.take_along_axis(x, jnp.clip(idx, 0, n - 1).reshape(shape), axis=axis)
  return gathered * valid.reshape(shape).astype(x.dtype)


def translate(x: Array, tx: Array, ty: Array) -> Array:
  """`out[b, i, j] = x[b, i + tx[b], j + ty[b]]`, zero where that falls outside (DiffAugment's
  `rand_translation`; `tx` moves along the height, `ty` along the width, int `[B]`)."""
  return _shift_axis(_shift_axis(x, tx, 1), ty, 2)


def cutout_mask(shape: Sequence[int], cx: Array, cy: Array, size: Tuple[int, int]) -> Array:
  """`[B, H, W, 1]`: 0 on the `size` rectangle whose rows start at `cx - size[0] // 2` (and
  columns at `cy - size[1] // 2`), 1 elsewhere (DiffAugment's `rand_cutout`)."""
  _, h, w = shape[:3]
  rows = jnp.arange(h)[None, :] - (cx[:, None] - size[0] // 2)
  cols = jnp.arange(w)[None, :] - (cy[:, None] - size[1] // 2)
  in_rows = (rows >= 0) & (rows < size[0])
  in_cols = (cols >= 0) & (cols < size[1])
  return (~(in_rows[:, :, None] & in_cols[:, None, :]))[..., None]


def cutout(x: Array, cx: Array, cy: Array, ratio: float = CUTOUT_RATIO) -> Array:
  """`x` with a square of `round(ratio * size)` pixels set to 0 (`cutout_mask`)."""
  size = cutout_size(x.shape, ratio)
  return x * cutout_mask(x.shape, cx, cy, size).astype(x.dtype)


def translation_range(shape: Sequence[int], ratio: float = TRANSLATION_RATIO) -> Tuple[int, int]:
  """The largest shift per axis: `int(size * ratio + 0.5)`, as the reference code rounds."""
  return int(shape[1] * ratio + 0.5), int(shape[2] * ratio + 0.5)


def cutout_size(shape: Sequence[int], ratio: float = CUTOUT_RATIO) -> Tuple[int, int]:
  return int(shape[1] * ratio + 0.5), int(shape[2] * ratio + 0.5)


def diff_augment(x: Array, key: Array, policy: Sequence[str],
                 axis_name: Optional[str] = None) -> Array:
  """DiffAugment of a batch with the policies `policy` (from `DIFFAUGMENT_POLICIES`, applied
  in the given order), each image with its own random parameters drawn from `key`."""
  check_images(x, "DiffAugment")
  check_policy(policy)
  n = x.shape[0]
  for i, p in enumerate(policy):
    k = jax.random.fold_in(key, i)
    k1, k2, k3 = jax.random.split(k, 3)
    if p == "color":
      x = brightness(x, _draw(_uniform(-0.5, 0.5), k1, (n,), axis_name))
      x = saturation(x, _draw(_uniform(0.0, 2.0), k2, (n,), axis_name))
      x = contrast(x, _draw(_uniform(0.5, 1.5), k3, (n,), axis_name))
    elif p == "translation":
      sx, sy = translation_range(x.shape)
      x = translate(x, _draw(_randint(-sx, sx + 1), k1, (n,), axis_name),
                    _draw(_randint(-sy, sy + 1), k2, (n,), axis_name))
    elif p == "cutout":
      hx, hy = cutout_size(x.shape)
      x = cutout(x, _draw(_randint(0, x.shape[1] + (1 - hx % 2)), k1, (n,), axis_name),
                 _draw(_randint(0, x.shape[2] + (1 - hy % 2)), k2, (n,), axis_name))
  return x


def flip_translate(x: Array, key: Array, axis_name: Optional[str] = None) -> Array:
  """Consistency regularisation's T (`gax.tricks.Consistency`): a horizontal flip with
  probability 1/2 and an integer shift of up to 1/8 of the size per axis (zero-filled,
  `translate`), per image."""
  check_images(x, "Consistency regularisation")
  n = x.shape[0]
  k_flip, k_x, k_y = jax.random.split(key, 3)
  flip = _draw(lambda k, s: jax.random.bernoulli(k, 0.5, s), k_flip, (n,), axis_name)
  x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
  sx, sy = translation_range(x.shape)
  return translate(x, _draw(_randint(-sx, sx + 1), k_x, (n,), axis_name),
                   _draw(_randint(-sy, sy + 1), k_y, (n,), axis_name))


def check_policy(policy: Sequence[str]) -> Tuple[str, ...]:
  policy = tuple(policy)
  bad = [p for p in policy if p not in DIFFAUGMENT_POLICIES]
  if bad or not policy:
    raise ValueError(f"DiffAugment policy {list(policy)}: choose one or more of "
                     f"{DIFFAUGMENT_POLICIES}.")
  if len(set(policy)) != len(policy):
    raise ValueError(f"DiffAugment policy {list(policy)} names a policy twice.")
  return policy


# ---------------------------------------------------------------------------------------------
# ADA: geometric transformations as one inverse affine map per image.
#
# Coordinates are (x = column, y = row) in pixels from the image centre; `g_inv` maps an
# output pixel's homogeneous coordinates to the input position it reads.


def _mat3(rows) -> Array:
  return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def scale2d(sx: Array, sy: Array) -> Array:
  o, z = jnp.ones_like(sx), jnp.zeros_like(sx)
  return _mat3([[sx, z, z], [z, sy, z], [z, z, o]])


def translate2d(tx: Array, ty: Array) -> Array:
  o, z = jnp.ones_like(tx), jnp.zeros_like(tx)
  return _mat3([[o, z, tx], [z, o, ty], [z, z, o]])


def rotate2d(theta: Array) -> Array:
  c, s = jnp.cos(theta), jnp.sin(theta)
  o, z = jnp.ones_like(theta), jnp.zeros_like(theta)
  return _mat3([[c, -s, z], [s, c, z], [z, z, o]])


def _reflect(i: Array, n: int) -> Array:
  """Integer indices reflected into [0, n) without repeating the edge (…2 1 0 1 2…)."""
  if n == 1:
    return jnp.zeros_like(i)
  period = 2 * (n - 1)
  i = jnp.mod(i, period)
  return jnp.where(i > n - 1, period - i, i)


def affine(x: Array, g_inv: Array) -> Array:
  """Resamples each image `x[b]` at `g_inv[b] @ (x, y, 1)` of every output pixel (centred
  pixel coordinates, `g_inv` `[B, 3, 3]`): bilinear interpolation, reflection at the
  borders."""
  b, h, w, c = x.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")
  pts = jnp.stack([xs.ravel(), ys.ravel(), jnp.ones(h * w)], axis=0)  # [3, HW]
  src = jnp.einsum("bij,jn->bin", g_inv.astype(jnp.float32), pts)
  sx, sy = src[:, 0] + (w - 1) / 2, src[:, 1] + (h - 1) / 2  # [B, HW] in pixel indices
  x0, y0 = jnp.floor(sx), jnp.floor(sy)
  fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  flat = x.reshape(b, h * w, c)

  def at(yi, xi):
    idx = _reflect(yi, h) * w + _reflect(xi, w)
    return jnp.take_along_axis(flat, idx[..., None], axis=1)

  fx, fy = fx.astype(x.dtype), fy.astype(x.dtype)
  top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
  bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
  return (top * (1 - fy) + bottom * fy).reshape(b, h, w, c)


# Colour: homogeneous 4x4 matrices acting on (r, g, b, 1).

# NumPy, not jnp: a JAX array made at import would start the backend before
# `jax.distributed.initialize` can run (multi-host launches import the tricks first).
_LUMA = np.asarray([1.0, 1.0, 1.0, 0.0], np.float32) / np.float32(math.sqrt(3.0))


def _eye4(n: int) -> Array:
  return jnp.broadcast_to(jnp.eye(4), (n, 4, 4))


def translate3d(t: Array) -> Array:
  m = _eye4(t.shape[0])
  return m.at[:, :3, 3].set(t[:, None])


def scale3d(s: Array) -> Array:
  return _eye4(s.shape[0]) * jnp.concatenate(
      [jnp.broadcast_to(s[:, None], (s.shape[0], 3)), jnp.ones((s.shape[0], 1))], 1)[:, None, :]


def luma_flip3d(i: Array) -> Array:
  """Householder reflection of the luma axis where `i` is 1, identity where 0."""
  vv = jnp.outer(_LUMA, _LUMA)
  return jnp.eye(4) - 2 * vv * i[:, None, None]


def hue_rotate3d(theta: Array) -> Array:
  """Rotation by `theta` about the luma axis (Rodrigues' formula), homogeneous."""
  v = _LUMA[:3]
  k = jnp.asarray([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
  c, s = jnp.cos(theta)[:, None, None], jnp.sin(theta)[:, None, None]
  r = c * jnp.eye(3) + s * k + (1 - c) * jnp.outer(v, v)
  m = _eye4(theta.shape[0])
  return m.at[:, :3, :3].set(r)


def saturation3d(s: Array) -> Array:
  vv = jnp.outer(_LUMA, _LUMA)
  return vv + (jnp.eye(4) - vv) * s[:, None, None]


def color_matrix(x: Array, m: Array) -> Array:
  """`m[b] @ (r, g, b, 1)` for every pixel of RGB images; for grey images `x * sum(m') + m'_3`
  with `m'` the mean of `m`'s first three rows, as ADA's code applies it."""
  b, h, w, c = x.shape
  m = m.astype(x.dtype)
  if c == 3:
    return jnp.einsum("bij,bhwj->bhwi", m[:, :3, :3], x) + m[:, None, None, :3, 3]
  if c == 1:
    row = jnp.mean(m[:, :3, :], axis=1)  # [B, 4]
    return x * _per_example(jnp.sum(row[:, :3], axis=1)) + _per_example(row[:, 3])
  raise ValueError(f"ADA's colour transformations need 1 or 3 channels; got {c}.")


def ada_params(key: Array, shape: Sequence[int], p: Array,
               axis_name: Optional[str] = None) -> Dict[str, Array]:
  """The `bgc` pipeline's random draws for a batch of `shape` at probability `p`: the inverse
  geometric map `g_inv` `[B, 3, 3]` and the colour matrix `color` `[B, 4, 4]` (identity for
  every transformation not drawn)."""
  n, h, w, c = shape
  keys = iter(jax.random.split(key, 32))
  draw = lambda sampler, s=(n,): _draw(sampler, next(keys), s, axis_name)
  normal = lambda k, s: jax.random.normal(k, s, jnp.float32)
  uniform = _uniform(0.0, 1.0)
  apply = lambda prob: draw(uniform) < prob  # per image: whether this transformation happens
  p = jnp.asarray(p, jnp.float32)
  g = jnp.broadcast_to(jnp.eye(3), (n, 3, 3))
  # Blit: x-flip, 90-degree rotations, integer translation.
  flip = jnp.where(apply(p), jnp.floor(draw(uniform) * 2), 0.0)
  g = g @ scale2d(1 - 2 * flip, jnp.ones(n))
  quarter = jnp.where(apply(p), jnp.floor(draw(uniform) * 4), 0.0)
  g = g @ rotate2d(math.pi / 2 * quarter)  # inverse of rotating by -pi/2 * quarter
  t = (draw(uniform, (n, 2)) * 2 - 1) * 0.125
  t = jnp.where(apply(p)[:, None], t, 0.0)
  g = g @ translate2d(-jnp.round(t[:, 0] * w), -jnp.round(t[:, 1] * h))
  # General geometric: isotropic scaling, rotation, anisotropic scaling, rotation, fractional
  # translation.
  s = jnp.where(apply(p), jnp.exp2(draw(normal) * 0.2), 1.0)
  g = g @ scale2d(1 / s, 1 / s)
  p_rot = 1 - jnp.sqrt(jnp.clip(1 - p, 0.0, 1.0))
  theta = jnp.where(apply(p_rot), (draw(uniform) * 2 - 1) * math.pi, 0.0)
  g = g @ rotate2d(theta)
  s = jnp.where(apply(p), jnp.exp2(draw(normal) * 0.2), 1.0)
  g = g @ scale2d(1 / s, s)
  theta = jnp.where(apply(p_rot), (draw(uniform) * 2 - 1) * math.pi, 0.0)
  g = g @ rotate2d(theta)
  t = jnp.where(apply(p)[:, None], draw(normal, (n, 2)) * 0.125, 0.0)
  g = g @ translate2d(-t[:, 0] * w, -t[:, 1] * h)
  # Colour: brightness, contrast, luma flip, hue, saturation.
  m = _eye4(n)
  m = translate3d(jnp.where(apply(p), draw(normal) * 0.2, 0.0)) @ m
  m = scale3d(jnp.where(apply(p), jnp.exp2(draw(normal) * 0.5), 1.0)) @ m
  m = luma_flip3d(jnp.where(apply(p), jnp.floor(draw(uniform) * 2), 0.0)) @ m
  if c > 1:
    m = hue_rotate3d(jnp.where(apply(p), (draw(uniform) * 2 - 1) * math.pi, 0.0)) @ m
    m = saturation3d(jnp.where(apply(p), jnp.exp2(draw(normal)), 1.0)) @ m
  return {"g_inv": g, "color": m}


def ada_augment(x: Array, key: Array, p: Array, axis_name: Optional[str] = None) -> Array:
  """ADA's `bgc` augmentation of a batch at probability `p` (a traced scalar is fine)."""
  check_images(x, "ADA")
  params = ada_params(key, x.shape, p, axis_name)
  return color_matrix(affine(x, params["g_inv"]), params["color"])


__all__ = ["DIFFAUGMENT_POLICIES", "TRANSLATION_RATIO", "CUTOUT_RATIO", "check_images",
           "brightness", "saturation", "contrast", "translate", "cutout_mask", "cutout",
           "translation_range", "cutout_size", "diff_augment", "flip_translate", "check_policy",
           "scale2d", "translate2d", "rotate2d", "affine", "translate3d", "scale3d",
           "luma_flip3d", "hue_rotate3d", "saturation3d", "color_matrix", "ada_params",
           "ada_augment"]
