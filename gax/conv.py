"""2D convolutions lowered by gax for speed on each backend, with Flax's parameters.

A convolution `y = conv(x, k)` (stride s, kernel `[kh, kw, c_in, c_out]`, NHWC) is bilinear,
and a training step runs three linear maps of it:

  A  the convolution itself, x -> y (a `Conv`'s forward pass; a `ConvTranspose`'s input
     gradient);
  B  its transpose in x, dy -> dx (a `Conv`'s input gradient; a `ConvTranspose`'s forward
     pass, with the kernel flipped and its channel axes swapped);
  C  its transpose in k, (x, dy) -> dk (both layers' kernel gradient).

XLA:CPU runs some of them far below the machine's matmul speed. Its worst case is C of a
transposed convolution, which autodiff lowers to a convolution with a dilated input: 5 GFLOP/s
for the DCGAN generator's layers on a 2-core AVX2 CPU that multiplies matrices at 100-140
(issue 19 of the project). This module writes each of A, B and C through one of six
*formulations* of the same linear function, chosen per layer shape, and ties them together
with a `jax.custom_jvp` whose tangent is `A_b(dx, k) + A_c(x, dk)`: JAX transposes the first
term in x and the second in k, so reverse mode computes B with formulation `b` and C with
formulation `c`, while forward mode and any order of differentiation (the R1 and WGAN-GP
penalties differentiate D twice) keep working. The formulations, all exact:

  native   `lax.conv_general_dilated` as Flax calls it.
  s2d      space-to-depth: a stride-s convolution is a stride-1 convolution of
           `space_to_depth(x, s)` (`s * s * c_in` channels) with a kernel of `ceil(k / s)` taps,
           the original taps regrouped (and zero-padded to a multiple of s). Its transposes are
           stride-1 convolutions too, with neither input nor kernel dilation.
  taps     s2d, with the stride-1 convolution as a sum over its taps of shifted-slice x
           kernel-tap matrix products.
  im2col   s2d, with the stride-1 convolution as one matrix product of the concatenated
           shifted slices (the patches) with the kernel reshaped to `[taps * c, c_out]`.
  patches  im2col of the strided views of x itself (no space-to-depth), contracted with the
           kernel as `[kh * kw, c_in, c_out]`, so that its transpose in the kernel is one
           matrix product that yields the gradient in the kernel's own layout.
  chunked  native, on chunks of the batch (`batch_chunk` images each, about 1024 output
           positions) whose outputs are concatenated. Its transpose in the kernel is a sum
           of XLA's kernel gradients over the chunks: XLA:CPU (YNNPACK) runs a kernel
           gradient whose contraction spans the whole batch of a large feature map 1.7-2.9x
           slower than the same FLOPs in chunks (docs/speed.md, 2026-12-05 Sapphire Rapids).

A `ConvTranspose` is B of the convolution that maps its output shape back to its input shape,
computed as the linear transpose of one of the formulations, so a transposed convolution
without the slow lowering is the transpose of an ordinary one (the sub-pixel view of Shi et
al. 2016: each output phase is an ordinary convolution of the input).

`impl` (`model.conv_impl` in a config) picks the formulations:

  "xla"     plain `lax` convolutions and JAX's own derivatives: exactly Flax's layers.
  "matmul"  taps for A and C, im2col (col2im) for B, whatever the shape.
  "auto"    on CPU, a per-shape plan measured on the project's 2-core CPUs, by the CPU's
            instruction set and the library XLA runs convolutions with (`cpu_plan`,
            `cpu_isa`, `cpu_conv_library`); on every other backend "xla" (native
            convolutions, which cuDNN and the TPU compiler run well; nothing here was
            measured faster there).

On CPU the library is a compiler option (`compiler_options`): on an Intel AVX-512 CPU gax
compiles its steps with XLA's Eigen convolutions instead of YNNPACK's, which ran 25-40%
slower there. gax's jitted steps and samplers pass these options; pass them to your own
`jax.jit` of a gax step too.

Parameters (names, shapes, initialisers) and outputs are those of `flax.linen.Conv` and
`flax.linen.ConvTranspose` for every `impl`, so checkpoints and configs carry over;
`tests/test_conv.py` checks values and gradients against them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from absl import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

IMPLS = ("auto", "xla", "matmul")
FORMULATIONS = ("native", "s2d", "taps", "im2col", "patches", "chunked")

# Output positions per batch chunk of the "chunked" formulation (`batch_chunk`).
CHUNK_POSITIONS = 1024

Pads = Tuple[Tuple[int, int], Tuple[int, int]]
Padding = Union[str, Sequence[Tuple[int, int]]]

_DN = ("NHWC", "HWIO", "NHWC")
KERNEL_LAYOUTS = ("HWIO", "HWOI")


def _dimension_numbers(kernel_layout: str) -> Tuple[str, str, str]:
  if kernel_layout not in KERNEL_LAYOUTS:
    raise ValueError(f"kernel_layout must be one of {KERNEL_LAYOUTS}; got {kernel_layout!r}.")
  return ("NHWC", kernel_layout, "NHWC")


def check_impl(impl: str) -> None:
  if impl not in IMPLS:
    raise ValueError(f"Unknown conv_impl {impl!r}; allowed: {', '.join(map(repr, IMPLS))}.")


@dataclasses.dataclass(frozen=True)
class Plan:
  """The formulation (from `FORMULATIONS`) of each linear map of one convolution.

  Attributes:
    a: computes A, the convolution x -> y.
    b: its transpose in x computes B, dy -> dx.
    c: its transpose in the kernel computes C, (x, dy) -> dk.
  """

  a: str
  b: str
  c: str

  def __post_init__(self):
    for name in ("a", "b", "c"):
      if getattr(self, name) not in FORMULATIONS:
        raise ValueError(f"Plan.{name}: unknown formulation {getattr(self, name)!r}; allowed: "
                         f"{FORMULATIONS}.")


def _cpuinfo(key: str) -> Optional[str]:
  """The first `key : value` line's value in /proc/cpuinfo, `None` where there is none."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
          return value.strip()
  except OSError:
    pass
  return None


@functools.lru_cache(maxsize=None)
def cpu_isa() -> str:
  """"avx512" when this CPU has AVX-512 (the `avx512f` flag of /proc/cpuinfo), else "avx2".

  The two kinds of machine the project has run on want different plans: on a 2-core AVX2
  EPYC, XLA:CPU's native convolutions ran at 40-120 GFLOP/s against 130-170 for its matrix
  products, so the matrix-product formulations won; on a 2-core AVX-512 EPYC (Zen 5) they run
  at 300-400 against 430, and the copies those formulations add cost more than they gain.
  """
  flags = _cpuinfo("flags")
  return "avx512" if flags is not None and "avx512f" in flags.split() else "avx2"


@functools.lru_cache(maxsize=None)
def cpu_vendor() -> str:
  """The CPU's `vendor_id` in /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"), or ""."""
  return _cpuinfo("vendor_id") or ""


# Which library runs XLA:CPU's convolutions, and the compiler options that choose it. By
# default XLA (jaxlib 0.10) hands single convolutions, single matrix products and reductions
# to YNNPACK; "eigen" is that list without the convolutions, which then run in XLA's Eigen
# runtime. (The list matters: without YNNPACK's reductions, batch norm's statistics and the
# bias gradients cost the DCGAN step about 40% more; with its elementwise fusions added,
# about 15% more: docs/speed.md.)
CONV_LIBRARIES = ("ynnpack", "eigen")
CPU_COMPILER_OPTIONS = {
    "ynnpack": {},
    "eigen": {"xla_cpu_experimental_ynn_fusion_type":
              "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"},
}
CONV_LIBRARY_ENV = "GAX_CPU_CONV_LIBRARY"


@functools.lru_cache(maxsize=None)
def _options_compile(library: str) -> bool:
  """Whether this jaxlib compiles a CPU computation with `library`'s options."""
  options = CPU_COMPILER_OPTIONS[library]
  if not options:
    return True
  try:
    on_cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    jax.jit(lambda x: x + 1, compiler_options=options).lower(
        jax.ShapeDtypeStruct((), jnp.float32, sharding=on_cpu)).compile()
  except RuntimeError as e:  # jax.errors.JaxRuntimeError: no such option, or a bad value
    logging.warning("This jaxlib refuses the compiler options %s (%s); gax.conv's CPU plan "
                    "falls back to the YNNPACK table, tuned for XLA's default libraries.",
                    options, e)
    return False
  return True


@functools.lru_cache(maxsize=None)
def cpu_conv_library() -> str:
  """The library gax has XLA:CPU run its convolutions with: "eigen" or "ynnpack".

  `$GAX_CPU_CONV_LIBRARY` sets it; by default "eigen" on Intel CPUs with AVX-512, where
  XLA's Eigen convolutions ran 25-40% faster than YNNPACK's (forward passes of the DCGAN's
  large layers 270-290 GFLOP/s against 205-235 on a 2-core Sapphire Rapids Xeon; kernel
  gradients up to 2x), and "ynnpack" elsewhere: on the AMD EPYC machines (Zen 4 and 5)
  YNNPACK ran them near the matrix-product speed. `cpu_plan` has a table for each, and
  `compiler_options` gives the options a step must be compiled with for the choice to hold.
  """
  choice = os.environ.get(CONV_LIBRARY_ENV, "")
  if choice:
    if choice not in CONV_LIBRARIES:
      raise ValueError(f"${CONV_LIBRARY_ENV} must be one of {CONV_LIBRARIES}; got {choice!r}.")
    if not _options_compile(choice):
      raise ValueError(f"${CONV_LIBRARY_ENV}={choice}, but this jaxlib refuses its compiler "
                       f"options {CPU_COMPILER_OPTIONS[choice]}.")
    return choice
  if cpu_isa() == "avx512" and cpu_vendor() == "GenuineIntel" and _options_compile("eigen"):
    return "eigen"
  return "ynnpack"


def compiler_options(backend: Optional[str] = None) -> Dict[str, str]:
  """The XLA compiler options for a jitted function that runs `gax.conv` on `backend`
  (default: JAX's default backend): on CPU those of `cpu_conv_library()`, elsewhere none.

  gax's own jitted steps and samplers pass them (`jax.jit(..., compiler_options=...)`); a
  step jitted without them runs its convolutions in YNNPACK with a plan meant for Eigen,
  which is correct but slower. `jax.pmap` takes no compiler options, so a pmapped step
  runs with XLA's defaults.
  """
  backend = jax.default_backend() if backend is None else backend
  if backend != "cpu":
    return {}
  return dict(CPU_COMPILER_OPTIONS[cpu_conv_library()])


def cpu_plan(x_shape: Sequence[int], k_shape: Sequence[int], strides: Tuple[int, int],
             out_hw: Tuple[int, int], isa: Optional[str] = None,
             library: Optional[str] = None) -> Plan:
  """The plan "auto" uses on CPU for a convolution of `x_shape` by `k_shape` (HWIO), on a CPU
  of kind `isa` ("avx2" or "avx512"; default `cpu_isa()`) whose XLA runs convolutions with
  `library` ("eigen" or "ynnpack"; default `cpu_conv_library()`).

  From per-map timings of the DCGAN's and the SNGAN ResNet's layers at batch 32 and 64
  (`benchmarks/conv_layers.py` prints them), then whole-step A/B timings of candidate plans
  in one process, on 2-core AMD EPYC machines (AVX2; AVX-512 Zen 4 and 5) and a 2-core
  Sapphire Rapids Xeon (AVX-512) (docs/speed.md). Every table:

  * a 1x1 stride-1 convolution is a matrix product: taps for all three maps;
  * few input channels after space-to-depth (<= 16, an RGB image's first layer): im2col for
    all three (XLA's native kernel gradient runs at 5-20 GFLOP/s there on AVX2);
  * few output channels (<= 16, an RGB image's last layer): a matrix product with so few
    columns runs at 1-3 GFLOP/s, so native convolutions (stride-1 s2d for B);
  * large outputs (>= 16x16 positions) with more channels: XLA's native forward convolution
    and the stride-1 s2d form for the input gradient (B), which native lowers with a dilated
    input at 40-50 GFLOP/s on AVX2 (220 on AVX-512, against 330 for s2d).

  AVX2, for the rest: on large outputs the kernel gradient as patches when strided, taps
  when not; on small outputs taps for A, im2col (col2im) for B and C, 20-80% above native.
  The kernel gradient's form matters beyond its own speed there: its pieces are reassembled
  into the kernel's layout, and XLA:CPU fuses that reassembly into each of the optimizer's
  elementwise updates (four for Adam) rather than materialising it once.

  AVX-512 with YNNPACK, for the rest: native for A and B, and XLA's own kernel gradient for
  C (it ran at 180-200 GFLOP/s against 76-80 for patches on Zen 5), taken over batch chunks
  ("chunked"): on a Sapphire Rapids Xeon a whole-batch kernel gradient of a 16x16-output
  layer ran at 95 GFLOP/s and at 160-180 in chunks of 4 images, and the chunks change nothing
  where the batch already has fewer than `CHUNK_POSITIONS` output positions. A
  ConvTranspose's kernel gradient is XLA's kernel gradient of A the same way
  (`transpose_plan`).

  AVX-512 with Eigen (the Sapphire Rapids Xeon): native for A, B and C. Eigen's kernel
  gradient of the whole batch ran at 200-260 GFLOP/s, where chunks lost up to 40%, and
  matrix forms for B on small outputs changed the step by less than its noise.
  """
  isa = cpu_isa() if isa is None else isa
  if isa not in ("avx2", "avx512"):
    raise ValueError(f"cpu_plan's isa must be 'avx2' or 'avx512', got {isa!r}.")
  library = cpu_conv_library() if library is None else library
  if library not in CONV_LIBRARIES:
    raise ValueError(f"cpu_plan's library must be one of {CONV_LIBRARIES}, got {library!r}.")
  kh, kw, c_in, _ = k_shape
  sh, sw = strides
  if kh * kw == 1 and sh * sw == 1:
    return Plan("taps", "taps", "taps")
  if sh * sw * c_in <= 16:
    return Plan("im2col", "im2col", "im2col")
  if k_shape[-1] <= 16:
    return Plan("native", "s2d", "native")
  large = out_hw[0] * out_hw[1] >= 256
  if isa == "avx512":
    return Plan("native", "s2d" if large else "native",
                "native" if library == "eigen" else "chunked")
  if large:
    return Plan("native", "s2d", "patches" if sh * sw > 1 else "taps")
  return Plan("taps", "im2col", "im2col")


# ---------------------------------------------------------------------------------------------
# Geometry


def _same_pads(size: int, k: int, s: int) -> Tuple[int, int]:
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def conv_pads(x_hw: Sequence[int], k_hw: Sequence[int], strides: Sequence[int],
              padding: Padding) -> Pads:
  """Explicit `((lo, hi), (lo, hi))` padding of `lax.conv_general_dilated`'s `padding`."""
  if isinstance(padding, str):
    if padding.upper() == "SAME":
      return tuple(_same_pads(n, k, s) for n, k, s in zip(x_hw, k_hw, strides))
    if padding.upper() == "VALID":
      return ((0, 0), (0, 0))
    raise ValueError(f"Unsupported padding {padding!r}: 'SAME', 'VALID' or (lo, hi) pairs.")
  pads = tuple(tuple(int(v) for v in p) for p in padding)
  if len(pads) != 2 or any(len(p) != 2 for p in pads):
    raise ValueError(f"padding must be two (lo, hi) pairs for a 2D convolution; got {padding}.")
  return pads


def transpose_pads(k: int, s: int, padding: str) -> Tuple[int, int]:
  """`lax.conv_transpose`'s padding of the dilated input for "SAME" / "VALID", one axis."""
  if padding.upper() == "SAME":
    pad_len = k + s - 2
    pad_a = k - 1 if s > k - 1 else int(math.ceil(pad_len / 2))
  elif padding.upper() == "VALID":
    pad_len = k + s - 2 + max(k - s, 0)
    pad_a = k - 1
  else:
    raise ValueError(f"Unsupported padding {padding!r}: 'SAME', 'VALID' or (lo, hi) pairs.")
  return pad_a, pad_len - pad_a


def out_size(n: int, k: int, s: int, pads: Tuple[int, int]) -> int:
  return (n + pads[0] + pads[1] - k) // s + 1


def conv_out_hw(x_shape: Sequence[int], k_shape: Sequence[int], strides: Sequence[int],
                pads: Pads) -> Tuple[int, int]:
  """The output height and width of an NHWC / HWIO convolution with explicit `pads`."""
  return tuple(out_size(n, k, s, p) for n, k, s, p in
               zip(x_shape[1:3], k_shape[:2], strides, pads))


# ---------------------------------------------------------------------------------------------
# Formulations of A: y = conv(x, k) with stride `strides`, explicit `pads`, NHWC / HWIO.


def _space_to_depth(x: jax.Array, k: jax.Array, strides: Tuple[int, int],
                    pads: Pads) -> Tuple[jax.Array, jax.Array]:
  """`(xs, ks)` with `conv(x, k, strides, pads) == conv(xs, ks, 1, 'VALID')`.

  x is padded (or cropped) so that each spatial size is s * (out + taps - 1), then reshaped to
  `[B, H / s, W / s, s * s * C]` with channel `(u * s + v) * C + c` holding `x[s*i + u, s*j + v,
  c]`; the kernel is zero-padded to `s * ceil(k / s)` taps and regrouped the same way, so
  `ks[a, b, (u, v, c)] = k[s*a + u, s*b + v, c]`.
  """
  b, h, w, c = x.shape
  kh, kw, _, co = k.shape
  (sh, sw), ((lh, hh), (lw, hw)) = strides, pads
  ho, wo = out_size(h, kh, sh, (lh, hh)), out_size(w, kw, sw, (lw, hw))
  th, tw = -(-kh // sh), -(-kw // sw)  # taps after regrouping
  hs, ws = ho + th - 1, wo + tw - 1
  zero = jnp.zeros((), x.dtype)
  x = lax.pad(x, zero, ((0, 0, 0), (lh, sh * hs - h - lh, 0), (lw, sw * ws - w - lw, 0),
                        (0, 0, 0)))
  if sh * sw == 1:
    return x, k
  x = x.reshape(b, hs, sh, ws, sw, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hs, ws, sh * sw * c)
  k = jnp.pad(k, ((0, sh * th - kh), (0, sw * tw - kw), (0, 0), (0, 0)))
  k = k.reshape(th, sh, tw, sw, c, co).transpose(0, 2, 1, 3, 4, 5).reshape(th, tw, sh * sw * c, co)
  return x, k


def _shifted(xs: jax.Array, th: int, tw: int):
  """The stride-1 VALID window's shifted views of `xs`, tap (i, j) in row-major order."""
  _, hs, ws, _ = xs.shape
  ho, wo = hs - th + 1, ws - tw + 1
  return [xs[:, i:i + ho, j:j + wo, :] for i in range(th) for j in range(tw)]


def _matmul(x: jax.Array, k: jax.Array) -> jax.Array:
  """`[B, H, W, C] x [C, O] -> [B, H, W, O]` as one 2D matrix product."""
  b, h, w, c = x.shape
  return (x.reshape(b * h * w, c) @ k).reshape(b, h, w, k.shape[-1])


def _patches_conv(x: jax.Array, k: jax.Array, strides: Tuple[int, int], pads: Pads) -> jax.Array:
  """im2col without space-to-depth: the `kh * kw` strided views of the padded x stacked as
  `[B, ho, wo, taps, C]`, contracted with the kernel read as `[taps, C, O]` (a reshape of
  HWIO). Transposed in the kernel, this is one matrix product whose output *is* the kernel
  gradient in HWIO, with nothing to reassemble."""
  b, h, w, c = x.shape
  kh, kw, _, co = k.shape
  (sh, sw), ((lh, hh), (lw, hw)) = strides, pads
  ho, wo = out_size(h, kh, sh, (lh, hh)), out_size(w, kw, sw, (lw, hw))
  x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (lh, hh, 0), (lw, hw, 0), (0, 0, 0)))
  views = [lax.slice(x, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                     (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
  p = jnp.stack(views, axis=3)
  return lax.dot_general(p, k.reshape(kh * kw, c, co), (((3, 4), (0, 1)), ((), ())))


def batch_chunk(batch: int, out_hw: Sequence[int]) -> int:
  """Images per chunk of the "chunked" formulation: `CHUNK_POSITIONS` output positions, at
  least 1 and at most `batch` (then "chunked" is "native")."""
  return max(1, min(batch, CHUNK_POSITIONS // max(1, out_hw[0] * out_hw[1])))


def _chunks(batch: int, chunk: int):
  return [(i, min(i + chunk, batch)) for i in range(0, batch, chunk)]


def _chunked_conv(x: jax.Array, k: jax.Array, strides: Tuple[int, int], pads: Pads,
                  kernel_layout: str) -> jax.Array:
  """Native convolutions of the batch's chunks (`batch_chunk`), concatenated."""
  dn = _dimension_numbers(kernel_layout)
  chunk = batch_chunk(x.shape[0], conv_out_hw(x.shape, k.shape, strides, pads))
  parts = [lax.conv_general_dilated(x[lo:hi], k, strides, pads, dimension_numbers=dn)
           for lo, hi in _chunks(x.shape[0], chunk)]
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def apply_formulation(name: str, x: jax.Array, k: jax.Array, strides: Tuple[int, int],
                      pads: Pads, kernel_layout: str = "HWIO") -> jax.Array:
  """A, the convolution `x * k`, written with formulation `name` (see the module docstring).

  `kernel_layout` "HWOI" reads `k` with its channel axes swapped (a ConvTranspose's own
  kernel, flipped, is its convolution A's kernel in that layout): the native formulation
  takes it as it is, the others swap the axes first.
  """
  if name == "native":
    return lax.conv_general_dilated(x, k, strides, pads,
                                    dimension_numbers=_dimension_numbers(kernel_layout))
  if name == "chunked":
    return _chunked_conv(x, k, strides, pads, kernel_layout)
  if kernel_layout == "HWOI":
    k = jnp.swapaxes(k, 2, 3)
  if name == "patches":
    return _patches_conv(x, k, strides, pads)
  xs, ks = _space_to_depth(x, k, strides, pads)
  th, tw, c, co = ks.shape
  if name == "s2d":
    return lax.conv_general_dilated(xs, ks, (1, 1), "VALID", dimension_numbers=_DN)
  views = _shifted(xs, th, tw)
  if name == "taps":
    taps = ks.reshape(th * tw, c, co)
    return functools.reduce(jnp.add, [_matmul(v, taps[t]) for t, v in enumerate(views)])
  if name == "im2col":
    patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
    return _matmul(patches, ks.reshape(th * tw * c, co))
  raise ValueError(f"Unknown formulation {name!r}; allowed: {FORMULATIONS}.")


def transpose_in_x(name: str, dy: jax.Array, k: jax.Array, strides: Tuple[int, int],
                    pads: Pads, x_shape: Tuple[int, ...],
                    kernel_layout: str = "HWIO") -> jax.Array:
  """B with formulation `name`: the transpose in x of `apply_formulation(name, ., k)`."""
  f = lambda x: apply_formulation(name, x, k, strides, pads, kernel_layout)
  (dx,) = jax.linear_transpose(f, jax.ShapeDtypeStruct(x_shape, dy.dtype))(dy)
  return dx


# ---------------------------------------------------------------------------------------------
# The convolution and the transposed convolution with chosen formulations.


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv(x: jax.Array, k: jax.Array, strides: Tuple[int, int], pads: Pads,
          plan: Plan) -> jax.Array:
  return apply_formulation(plan.a, x, k, strides, pads)


def _conv_jvp(strides, pads, plan, primals, tangents):
  x, k = primals
  dx, dk = tangents
  y = _conv(x, k, strides, pads, plan)
  dy = None
  if not isinstance(dx, SymbolicZero):
    dy = apply_formulation(plan.b, dx, k, strides, pads)
  if not isinstance(dk, SymbolicZero):
    t = apply_formulation(plan.c, x, dk, strides, pads)
    dy = t if dy is None else dy + t
  if dy is None:
    dy = SymbolicZero(jax.core.get_aval(y).to_tangent_aval())
  return y, dy


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


def _native_kernel_adjoint(y: jax.Array, dkt: jax.Array, strides: Tuple[int, int],
                           pads: Pads, x_shape: Tuple[int, ...], kernel_layout: str,
                           chunk: Optional[int] = None) -> jax.Array:
  """`B(y; dkt)` (the transposed convolution of `y` by the kernel tangent `dkt`), written so
  that its transpose in `dkt` is XLA's own kernel gradient of the strided convolution A.

  A ConvTranspose's kernel gradient is C of A with A's input and output cotangent swapped
  into place: `C_A(g, y) = d/dk <y, A(g; k)>`, for the cotangent g of the layer's output.
  `jax.linear_transpose` of `g -> C_A(g, y)`, taken natively (a stride-1 convolution with a
  dilated kernel), is a map of `dkt` equal to `B(y; dkt)` (both are adjoint to it), and
  transposing it back gives that native kernel gradient. Written directly as B's tangent, JAX
  would transpose B's dilated-input convolution in the kernel instead: XLA:CPU's slowest
  form (`transpose_plan`). With `chunk`, the same on chunks of that many images, so the
  kernel gradient is a sum over chunks (the "chunked" formulation).
  """
  kt_aval = jax.ShapeDtypeStruct(dkt.shape, dkt.dtype)

  def adjoint(y):

    def kernel_gradient(g):
      a = lambda k: lax.conv_general_dilated(g, k, strides, pads,
                                             dimension_numbers=_dimension_numbers(kernel_layout))
      return jax.linear_transpose(a, kt_aval)(y)[0]

    g_aval = jax.ShapeDtypeStruct((y.shape[0],) + tuple(x_shape[1:]), y.dtype)
    return jax.linear_transpose(kernel_gradient, g_aval)(dkt)[0]

  if chunk is None or chunk >= y.shape[0]:
    return adjoint(y)
  # Concatenated over the batch's chunks: transposed, a sum of the chunks' kernel gradients.
  return jnp.concatenate([adjoint(y[lo:hi]) for lo, hi in _chunks(y.shape[0], chunk)], axis=0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_t(y: jax.Array, kt: jax.Array, strides: Tuple[int, int], pads: Pads,
            x_shape: Tuple[int, ...], plan: Plan, kernel_layout: str) -> jax.Array:
  """B(y) of the convolution A (kernel `kt` in `kernel_layout`, `x_shape` -> `y.shape`),
  with formulation b."""
  return transpose_in_x(plan.b, y, kt, strides, pads, x_shape, kernel_layout)


def _conv_t_jvp(strides, pads, x_shape, plan, kernel_layout, primals, tangents):
  y, kt = primals
  dy, dkt = tangents
  out = _conv_t(y, kt, strides, pads, x_shape, plan, kernel_layout)
  d = None
  if not isinstance(dy, SymbolicZero):
    # Transposed (reverse mode), this is A of formulation a: the layer's input gradient.
    d = transpose_in_x(plan.a, dy, kt, strides, pads, x_shape, kernel_layout)
  if not isinstance(dkt, SymbolicZero):
    # Linear in dkt; transposed, the kernel gradient C of formulation c (`transpose_plan`).
    if plan.c in ("native", "chunked"):
      chunk = batch_chunk(y.shape[0], y.shape[1:3]) if plan.c == "chunked" else None
      t = _native_kernel_adjoint(y, dkt, strides, pads, x_shape, kernel_layout, chunk)
    else:
      t = transpose_in_x(plan.c, y, dkt, strides, pads, x_shape, kernel_layout)
    d = t if d is None else d + t
  if d is None:
    d = SymbolicZero(jax.core.get_aval(out).to_tangent_aval())
  return out, d


_conv_t.defjvp(_conv_t_jvp, symbolic_zeros=True)


def transpose_plan(plan: Plan, isa: Optional[str] = None) -> Plan:
  """`plan` as a ConvTranspose runs it. Its kernel gradient is C of the convolution A
  (`_native_kernel_adjoint` computes a native C as XLA's kernel gradient of A, never as the
  transpose in the kernel of B's dilated-input convolution). On AVX-512 that native C runs
  at 100-150 GFLOP/s for the DCGAN generator's layers against 45-160 for patches, so the plan
  stays; on AVX2, where XLA's kernel gradients of strided convolutions lost to the matrix
  forms (`cpu_plan`), a native C runs as taps. A "chunked" C is that kernel gradient of A
  summed over batch chunks, and stays."""
  if plan.c != "native":
    return plan
  isa = cpu_isa() if isa is None else isa
  return plan if isa == "avx512" else dataclasses.replace(plan, c="taps")


def resolve(impl: str, x_shape, k_shape, strides, out_hw) -> Optional[Plan]:
  """The plan for `impl` on the default backend, `None` for plain XLA convolutions."""
  check_impl(impl)
  if impl == "xla" or (impl == "auto" and jax.default_backend() != "cpu"):
    return None
  if impl == "matmul":
    return Plan("taps", "im2col", "taps")
  return cpu_plan(x_shape, k_shape, tuple(strides), tuple(out_hw))


def _check(x: jax.Array, k: jax.Array, strides: Sequence[int]) -> Tuple[int, int]:
  if x.ndim != 4 or k.ndim != 4:
    raise ValueError(f"gax.conv handles 2D convolutions of [B, H, W, C] inputs by [kh, kw, "
                     f"c_in, c_out] kernels; got {x.shape} and {k.shape}.")
  strides = tuple(int(s) for s in strides)
  if len(strides) != 2 or min(strides) < 1:
    raise ValueError(f"strides must be two positive integers; got {strides}.")
  return strides


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
         padding: Padding = "SAME", impl: str = "auto") -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding)` in NHWC / HWIO / NHWC, with the
  formulations `impl` picks (module docstring)."""
  strides = _check(x, kernel, strides)
  pads = conv_pads(x.shape[1:3], kernel.shape[:2], strides, padding)
  hw = conv_out_hw(x.shape, kernel.shape, strides, pads)
  if min(hw) < 1:
    raise ValueError(f"Convolution of {x.shape} by {kernel.shape} with strides {strides} and "
                     f"padding {pads} has no output positions.")
  plan = resolve(impl, x.shape, kernel.shape, strides, hw)
  if plan is None:
    return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DN)
  return _conv(x, kernel, strides, pads, plan)


def transpose_geometry(x_shape: Sequence[int], k_shape: Sequence[int], strides: Sequence[int],
                       padding: Padding):
  """The convolution whose transpose in its input is `conv_transpose(x, k, strides, padding)`.

  Returns `(hi_shape, kt_shape, pads, tpads)`: that convolution maps `hi_shape` (the transposed
  convolution's output shape) to `x_shape` with the kernel `kt = flip(k)` with its channel
  axes swapped (`kt_shape`) and padding `pads`, `k - 1 - pad` where `lax.conv_transpose` pads
  the dilated input by `pad` ("SAME" and "VALID" as `lax.conv_transpose` computes them;
  explicit pairs are that `pad`), and `tpads` is that `pad`. `pads` may be negative
  (cropping) for unusual geometries.
  """
  kh, kw, c_in, c_out = k_shape
  if isinstance(padding, str):
    tpads = tuple(transpose_pads(k, s, padding) for k, s in zip((kh, kw), strides))
  else:  # explicit pairs pad the dilated input directly, as in lax.conv_transpose
    tpads = conv_pads((0, 0), (kh, kw), strides, padding)
  hw = tuple((n - 1) * s + a + b - k + 2 for n, s, (a, b), k in
             zip(x_shape[1:3], strides, tpads, (kh, kw)))
  pads = tuple((k - 1 - a, k - 1 - b) for k, (a, b) in zip((kh, kw), tpads))
  return (x_shape[0], *hw, c_out), (kh, kw, c_out, c_in), pads, tpads


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
                   padding: Padding = "SAME", impl: str = "auto") -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding)` (kernel `[kh, kw, c_in, c_out]`, not
  flipped: `transpose_kernel=False`, as `flax.linen.ConvTranspose` calls it), NHWC, computed
  as the transpose of a convolution (`transpose_geometry`) with the formulations `impl`
  picks."""
  strides = _check(x, kernel, strides)
  check_impl(impl)
  hi_shape, kt_shape, pads, tpads = transpose_geometry(x.shape, kernel.shape, strides, padding)
  plan = None
  if min(hi_shape[1:3]) >= 1 and min(min(p) for p in pads) >= 0:
    plan = resolve(impl, hi_shape, kt_shape, strides, x.shape[1:3])
  if plan is None:
    # "xla", a non-CPU "auto", or a geometry (cropping pads) the formulations do not cover.
    return lax.conv_transpose(x, kernel, strides, tpads, dimension_numbers=_DN)
  # A's kernel is the flipped kernel with its channel axes swapped; only the flip is
  # written here (whole [c_in, c_out] blocks move), the swap is A's "HWOI" layout, so the
  # kernel gradient also comes back as whole blocks to flip (cheap to fuse into the
  # optimizer's updates, where a channel transpose fused into them is not). XLA:CPU still
  # copies the kernel into HWIO for YNNPACK's convolutions (docs/speed.md, 2026-12-05).
  return _conv_t(x, jnp.flip(kernel, (0, 1)), strides, pads, hi_shape, transpose_plan(plan),
                 "HWOI")


# ---------------------------------------------------------------------------------------------
# A convolution of a nearest-neighbour 2x upsampled input, as sub-pixel convolutions.


def _check_resampling(name: str, x: jax.Array, kernel: jax.Array, impl: str) -> bool:
  """Checks the arguments of `name` (a SAME convolution by an odd square kernel fused with a
  resampling); True where `impl` computes it as written (lax's convolution and the
  resampling: "xla", and "auto" off CPU)."""
  check_impl(impl)
  kh, kw, c_in, _ = kernel.shape
  if x.ndim != 4 or x.shape[-1] != c_in:
    raise ValueError(f"{name} takes [B, H, W, {c_in}] inputs for a {kernel.shape} kernel; "
                     f"got {x.shape}.")
  if kh != kw or kh % 2 == 0:
    raise ValueError(f"{name} needs an odd square kernel; got {kernel.shape[:2]}.")
  return impl == "xla" or (impl == "auto" and jax.default_backend() != "cpu")


def upsample2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling of `[B, H, W, C]` (each pixel repeated 2 x 2)."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(
      b, 2 * h, 2 * w, c)


def _phase_taps(k: int, p: int) -> Tuple[int, list]:
  """For output phase `p` (0 or 1) of a stride-1 SAME convolution with an odd kernel of `k`
  taps applied to a 2x upsampled axis: `(first, groups)`, where low-resolution offset
  `first + t` collects the kernel taps `groups[t]`."""
  r = (k - 1) // 2
  offsets = [(p + a) // 2 for a in range(-r, r + 1)]
  first = offsets[0]
  groups = [[] for _ in range(offsets[-1] - first + 1)]
  for tap, o in enumerate(offsets):
    groups[o - first].append(tap)
  return first, groups


def _phase_kernel(kernel: jax.Array, p: int, q: int) -> jax.Array:
  """The `[n, n, c_in, c_out]` kernel of output phase (p, q) on the low-resolution input:
  the taps that read the same low-resolution pixel summed."""
  _, rows = _phase_taps(kernel.shape[0], p)
  _, cols = _phase_taps(kernel.shape[1], q)
  return jnp.stack([jnp.stack([sum(kernel[i, j] for i in ri for j in cj) for cj in cols])
                    for ri in rows])


def upsample_conv(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
  """`conv(upsample2x(x), kernel, padding="SAME")` for an odd square kernel, without building
  the upsampled input (the ResNet generator's up-blocks).

  Output pixel (2i + p, 2j + q) of a k x k SAME convolution of the upsampled input reads
  low-resolution pixels only, through a smaller kernel whose taps are sums of the original
  taps (Odena et al. 2016's observation about resize-convolutions, the sub-pixel view of Shi
  et al. 2016): for k = 3, one 2 x 2 kernel per phase, so the four phases together cost
  16 / 36 of the upsampled convolution's multiply-adds. The phases' kernels are stacked
  along the output channels of one stride-1 convolution (`conv` with `impl`) whose window
  starts one pixel later for odd phases, then interleaved. A 1 x 1 kernel is
  `upsample2x(conv(x, kernel))`, a quarter of the work. Equal to the upsampled convolution
  up to float rounding; `impl="xla"` (and "auto" off CPU, where nothing else was measured)
  computes that upsampled convolution as Flax would.
  """
  if _check_resampling("upsample_conv", x, kernel, impl):
    return lax.conv_general_dilated(upsample2x(x), kernel, (1, 1), "SAME",
                                    dimension_numbers=_DN)
  kh, kw, _, c_out = kernel.shape
  if kh == 1:
    return upsample2x(conv(x, kernel, (1, 1), "VALID", impl))
  b, h, w, _ = x.shape
  firsts = [_phase_taps(kh, p)[0] for p in (0, 1)]
  n = len(_phase_taps(kh, 0)[1])
  lo, shift = -firsts[0], firsts[1] - firsts[0]
  # Enough padding that every phase's window fits: the odd phase starts `shift` later.
  hi = n - 1 + shift - lo
  phases = jnp.concatenate([_phase_kernel(kernel, p, q) for p in (0, 1) for q in (0, 1)],
                           axis=-1)
  # Padded first, then a VALID convolution: XLA:CPU hands that convolution's kernel gradient
  # to YNNPACK, and runs the padded convolution's (output larger than input) through its
  # generic loop, 30x slower.
  x = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  z = conv(x, phases, (1, 1), "VALID", impl)  # [B, H + shift, W + shift, 4 C]
  z = z.reshape(b, h + shift, w + shift, 2, 2, c_out)
  rows = [jnp.stack([z[:, p * shift:p * shift + h, q * shift:q * shift + w, p, q]
                     for q in (0, 1)], axis=3) for p in (0, 1)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c_out)


def avg_pool2x(x: jax.Array) -> jax.Array:
  """2 x 2 average pooling with stride 2 of `[B, H, W, C]` (`flax.linen.avg_pool`'s VALID
  windows: an odd last row or column is dropped)."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def conv_avg_pool(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
  """`avg_pool2x(conv(x, kernel, padding="SAME"))` for an odd square kernel and even H, W,
  as one stride-2 convolution (the ResNet discriminator's down-blocks).

  Averaging 2 x 2 outputs of a k x k convolution is a stride-2 convolution with the
  (k + 1) x (k + 1) kernel `K[u, v] = 1/4 sum_{a, b in {0, 1}} k[u - a, v - b]`: for k = 3 a
  4 x 4 kernel with stride 2 and padding 1, the DCGAN's layer geometry, at 16/36 of the
  multiply-adds of the convolution before pooling; a 1 x 1 kernel pools first (1/4). Equal
  up to float rounding; `impl="xla"` (and "auto" off CPU) convolves, then pools.
  """
  if x.ndim == 4 and (x.shape[1] % 2 or x.shape[2] % 2):
    raise ValueError(f"conv_avg_pool needs an even height and width; got {x.shape}.")
  if _check_resampling("conv_avg_pool", x, kernel, impl):
    return avg_pool2x(lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                               dimension_numbers=_DN))
  kh = kernel.shape[0]
  if kh == 1:
    return conv(avg_pool2x(x), kernel, (1, 1), "VALID", impl)
  r = (kh - 1) // 2
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  box = sum(jnp.roll(padded, (a, b), axis=(0, 1)) for a in (0, 1) for b in (0, 1)) / 4
  return conv(x, box, (2, 2), ((r, r), (r, r)), impl)


# ---------------------------------------------------------------------------------------------
# Flax layers.


def conv_general_dilated(impl: str = "auto") -> Callable[..., jax.Array]:
  """A `lax.conv_general_dilated` replacement for `flax.linen.Conv(conv_general_dilated=...)`.

  2D NHWC convolutions without dilation or feature groups go through `conv(..., impl=impl)`;
  anything else goes to `lax.conv_general_dilated` unchanged.
  """
  check_impl(impl)
  return _FLAX_HOOKS[impl]


def _plain_2d(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
              batch_group_count, precision, preferred_element_type) -> bool:
  """Whether a `conv_general_dilated` call is a 2D NHWC / HWIO convolution without dilation,
  feature or batch groups, precision or element-type settings: what `conv` computes."""
  return (lhs.ndim == 4 and rhs.ndim == 4 and feature_group_count == 1
          and batch_group_count == 1 and precision is None and preferred_element_type is None
          and all(d == 1 for d in (lhs_dilation or (1, 1)))
          and all(d == 1 for d in (rhs_dilation or (1, 1)))
          and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
          == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN))


def _hook(impl: str):

  def conv_general_dilated_(lhs, rhs, window_strides, padding, lhs_dilation=None,
                            rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                            batch_group_count=1, precision=None, preferred_element_type=None):
    if _plain_2d(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
                 batch_group_count, precision, preferred_element_type):
      return conv(lhs, rhs, window_strides, padding, impl)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type)

  conv_general_dilated_.__name__ = f"conv_general_dilated_{impl}"
  return conv_general_dilated_


_FLAX_HOOKS = {impl: _hook(impl) for impl in IMPLS}


def _resampling_hook(fused: Callable[..., jax.Array], before: Callable[[jax.Array], jax.Array],
                     after: Callable[[jax.Array], jax.Array], even_sizes: bool, impl: str):
  """A `conv_general_dilated` for `nn.Conv` that computes `after(conv(before(lhs)))`: with
  `fused(lhs, rhs, impl)` for a plain (`_plain_2d`) stride-1 SAME convolution by an odd
  square kernel (of an input with even height and width where `even_sizes`), with `before`
  and `after` around lax's convolution otherwise."""

  def conv_general_dilated_(lhs, rhs, window_strides, padding, lhs_dilation=None,
                            rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                            batch_group_count=1, precision=None, preferred_element_type=None):
    r = (rhs.shape[0] - 1) // 2
    same = (padding.upper() == "SAME" if isinstance(padding, str)
            else tuple(map(tuple, padding)) == ((r, r), (r, r)))
    plain = (_plain_2d(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, batch_group_count, precision,
                       preferred_element_type)
             and same and tuple(window_strides) == (1, 1)
             and rhs.shape[0] == rhs.shape[1] and rhs.shape[0] % 2 == 1
             and not (even_sizes and (lhs.shape[1] % 2 or lhs.shape[2] % 2)))
    if plain:
      return fused(lhs, rhs, impl)
    return after(lax.conv_general_dilated(
        before(lhs), rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers, feature_group_count, batch_group_count, precision,
        preferred_element_type))

  conv_general_dilated_.__name__ = f"{fused.__name__}_conv_general_dilated_{impl}"
  return conv_general_dilated_


_identity = lambda x: x
_UPSAMPLING_HOOKS = {impl: _resampling_hook(upsample_conv, upsample2x, _identity, False, impl)
                     for impl in IMPLS}
_POOLING_HOOKS = {impl: _resampling_hook(conv_avg_pool, _identity, avg_pool2x, True, impl)
                  for impl in IMPLS}


def UpsampleConv(*args, impl: str = "auto", **kwargs) -> nn.Conv:  # pylint: disable=invalid-name
  """`flax.linen.Conv(*args, **kwargs)` applied to the nearest-neighbour 2x upsampled input:
  the same module, parameters and name as that `Conv`, computed by `upsample_conv` (stride 1,
  SAME, odd square kernels; other settings upsample and convolve as written)."""
  check_impl(impl)
  return nn.Conv(*args, conv_general_dilated=_UPSAMPLING_HOOKS[impl], **kwargs)


def ConvAvgPool(*args, impl: str = "auto", **kwargs) -> nn.Conv:  # pylint: disable=invalid-name
  """`flax.linen.Conv(*args, **kwargs)` followed by 2 x 2 average pooling (`avg_pool2x`; a
  bias passes through the pooling unchanged): the same module, parameters and name as that
  `Conv`, computed by `conv_avg_pool` (stride 1, SAME, odd square kernels, even sizes; other
  settings convolve as written, then pool)."""
  check_impl(impl)
  return nn.Conv(*args, conv_general_dilated=_POOLING_HOOKS[impl], **kwargs)


def Conv(*args, impl: str = "auto", **kwargs) -> nn.Conv:  # pylint: disable=invalid-name
  """`flax.linen.Conv(*args, **kwargs)` computed by `conv(..., impl=impl)`: the same module
  (its parameters are named and shaped as always, and it is auto-named `Conv_<i>`)."""
  return nn.Conv(*args, conv_general_dilated=conv_general_dilated(impl), **kwargs)


class ConvTranspose(nn.Module):
  """`flax.linen.ConvTranspose` (2D, NHWC, `transpose_kernel=False`) computed by
  `conv_transpose(..., impl=impl)`: the same parameters (`kernel` `[kh, kw, c_in, features]`,
  `bias` `[features]`), initialisers, dtype promotion and outputs."""

  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., jax.Array] = nn.linear.default_kernel_init
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_impl(self.impl)
    if x.ndim != 4:
      raise ValueError(f"gax.conv.ConvTranspose takes [B, H, W, C] inputs; got {x.shape}.")
    kernel_size = tuple(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, kernel_size + (x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_transpose(x, kernel, self.strides, self.padding, self.impl)
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y


__all__ = ["IMPLS", "FORMULATIONS", "Plan", "cpu_isa", "cpu_vendor", "cpu_conv_library",
           "compiler_options", "CONV_LIBRARIES", "CPU_COMPILER_OPTIONS", "cpu_plan", "conv",
           "conv_transpose",
           "transpose_geometry", "transpose_in_x", "transpose_plan",
           "conv_general_dilated", "Conv", "ConvTranspose", "apply_formulation",
           "upsample2x", "upsample_conv", "UpsampleConv", "avg_pool2x", "conv_avg_pool",
           "ConvAvgPool", "batch_chunk", "conv_out_hw"]
