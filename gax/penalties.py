"""Discriminator gradient penalties as pure functions (`PENALTIES`).

Every penalty is `fn(d_apply, real, fake, key) -> scalar`:

  d_apply: `x [B, ...] -> logits [B]` (or `[B, 1]`), a closure over D's params and model
    state, e.g. `lambda x: apply_model(gan.discriminator, params, ms, x, True)[0]`;
  real, fake: float arrays of the same shape `[B, ...]`;
  key: a PRNG key (penalties that draw nothing ignore it).

The penalty is differentiable w.r.t. whatever `d_apply` closes over, so it is added to the
discriminator loss inside `jax.grad` (double backpropagation), weighted by the caller.

Input gradients are taken as `grad_x sum_b D(x)_b`, which is the per-example gradient
`grad_{x_b} D(x_b)` only when D treats the examples of a batch independently: no batch
normalisation in train mode (Gulrajani et al. 2017, sec. 4, use layer norm instead).

Gradient norms use a zero-safe square root: a zero input gradient gives norm 0 and a
finite (zero) gradient through the norm instead of NaN.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from gax.registry import Registry

Array = jax.Array
DApply = Callable[[Array], Array]
Penalty = Callable[[DApply, Array, Array, Array], Array]

PENALTIES: Registry[Penalty] = Registry("penalty")


def _check_inputs(real: Array, fake: Array) -> None:
  chex.assert_equal_shape([real, fake])
  if real.ndim < 1:
    raise ValueError(f"Penalties need batched inputs [B, ...]; got shape {real.shape}.")
  for name, x in (("real", real), ("fake", fake)):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise TypeError(f"Penalties need float inputs; {name} has dtype {x.dtype} (convert "
                      "uint8 images with gax.steps.to_model_input first).")


def input_gradients(d_apply: DApply, x: Array) -> Array:
  """`grad_x sum_b D(x)_b`: the input gradient of each of D's logits, `[B, ...]`.

  A packed D (PacGAN, `gax.models.packing`) returns one logit per pack of `m = B / P`
  consecutive examples; its input is the pack, so the gradients are returned per pack,
  `[P, m * prod(...)]` (each row the gradient with respect to one pack), and the norms of
  the penalties below are the packs' norms, as for a D that takes the pack as one input.
  """
  n_out = []

  def total(x):
    logits = d_apply(x)
    chex.assert_rank(logits, {1, 2})
    if logits.size == 0 or x.shape[0] % logits.size or logits.size != logits.shape[0]:
      raise ValueError(f"d_apply must return one logit per example ([B] or [B, 1] with "
                       f"B={x.shape[0]}), or one per pack of examples; got shape "
                       f"{logits.shape}.")
    n_out.append(logits.shape[0])
    return jnp.sum(logits.astype(jnp.float32))

  g = jax.grad(total)(x)
  return g if n_out[0] == x.shape[0] else g.reshape(n_out[0], -1)


def squared_norms(g: Array) -> Array:
  """`[B, ...] -> [B]`: squared L2 norm of each example, in float32."""
  g = g.astype(jnp.float32)
  return jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1)


def _safe_sqrt(sq: Array) -> Array:
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _unit_norm_penalty(d_apply: DApply, x_hat: Array) -> Array:
  """E[(||grad_x D(x_hat)||_2 - 1)^2] over the batch."""
  norms = _safe_sqrt(squared_norms(input_gradients(d_apply, x_hat)))
  return jnp.mean(jnp.square(norms - 1.0))


def _per_example_shape(x: Array) -> tuple:
  return (x.shape[0],) + (1,) * (x.ndim - 1)


def gradient_penalty(d_apply: DApply, real: Array, fake: Array, key: Array) -> Array:
  """WGAN-GP (Gulrajani et al. 2017, eq. 3, alg. 1): E[(||grad D(x_hat)||_2 - 1)^2].

  `x_hat = eps * real + (1 - eps) * fake` with one `eps ~ U[0, 1]` per example, drawn as
  `jax.random.uniform(key, [B, 1, ..., 1], real.dtype)`. Multiply by lambda (10 in the
  paper) in the critic loss.
  """
  _check_inputs(real, fake)
  eps = jax.random.uniform(key, _per_example_shape(real), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  return _unit_norm_penalty(d_apply, x_hat)


def r1_penalty(d_apply: DApply, real: Array, fake: Array, key: Array) -> Array:
  """R1 (Mescheder et al. 2018, eq. 9, without its gamma / 2): E_real[||grad_x D(x)||^2].

  The regulariser of the paper is `gamma / 2 *` this value; the factor is the caller's
  weight. `fake` and `key` are unused.
  """
  del key
  _check_inputs(real, fake)
  return jnp.mean(squared_norms(input_gradients(d_apply, real)))


def r2_penalty(d_apply: DApply, real: Array, fake: Array, key: Array) -> Array:
  """R2 (Mescheder et al. 2018, eq. 10, without its gamma / 2): E_fake[||grad_x D(x)||^2].

  `real` and `key` are unused.
  """
  del key
  _check_inputs(real, fake)
  return jnp.mean(squared_norms(input_gradients(d_apply, fake)))


def dragan_penalty(d_apply: DApply, real: Array, fake: Array, key: Array, *,
                   c: float = 0.5) -> Array:
  """DRAGAN (Kodali et al. 2017, "On convergence and stability of GANs"):
  E[(||grad D(x_hat)||_2 - 1)^2] at points x_hat near the real data.

  As in the authors' implementation (github.com/kodalinaveen3/DRAGAN, also followed by the
  common PyTorch ports): the perturbed batch is `x_p = real + c * std(real) * u`, with
  `std` the standard deviation of all elements of the real batch (ddof 0) and `u ~ U[0, 1]`
  per element, and the penalty is taken at `x_hat = real + alpha * (x_p - real)`, one
  `alpha ~ U[0, 1]` per example. With `k_alpha, k_u = jax.random.split(key)`:
  `alpha = uniform(k_alpha, [B, 1, ..., 1])`, `u = uniform(k_u, real.shape)`. `fake` is
  unused. The paper weights it with lambda = 10.
  """
  _check_inputs(real, fake)
  k_alpha, k_u = jax.random.split(key)
  alpha = jax.random.uniform(k_alpha, _per_example_shape(real), real.dtype)
  u = jax.random.uniform(k_u, real.shape, real.dtype)
  x_hat = real + alpha * (c * jnp.std(real) * u)
  return _unit_norm_penalty(d_apply, x_hat)


PENALTIES.register("gradient_penalty", gradient_penalty)
PENALTIES.register("r1", r1_penalty)
PENALTIES.register("r2", r2_penalty)
PENALTIES.register("dragan", dragan_penalty)


def get_penalty(name: str, **kwargs: Any) -> Penalty:
  """The registered penalty `name`, with keyword options bound (`get_penalty('dragan', c=1.0)`)."""
  fn = PENALTIES.get(name)
  if not kwargs:
    return fn
  try:
    inspect.signature(fn).bind(None, None, None, None, **kwargs)
  except TypeError as e:
    raise TypeError(f"Bad arguments for penalty {name!r}: {e}") from e
  return functools.partial(fn, **kwargs)


__all__ = ["PENALTIES", "input_gradients", "squared_norms", "gradient_penalty", "r1_penalty",
           "r2_penalty", "dragan_penalty", "get_penalty"]
