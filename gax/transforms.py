"""GAN training tricks as optax `GradientTransformation`s (`TRANSFORMS`).

Each piece is a pure `(init, update)` pair with a `NamedTuple` state, so it composes with
`optax.chain` and lives in `PlayerState.opt_state` (and therefore in checkpoints):

  d_tx = optax.chain(track_gradient_norm(), optax.rmsprop(5e-5), clip_params(0.01))

Order matters in a chain. `track_gradient_norm` sees whatever arrives at its position (put it
first to record the raw gradients); `historical_averaging` and `add_gradient_noise` change
gradients and belong before the optimizer; `clip_params` and `ema_params` read the final
updates and belong after it (`clip_params` last of all, `ema_params` after `clip_params`
when both are used, so that the average is taken over clipped weights).

Hyper-parameters that naturally vary during training (`historical_averaging`'s weight,
`ema_params`' decay) may be optax schedules `step -> value`, evaluated at the number of
updates done before the current one (0 for the first update), as optax does.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Type, TypeVar

import jax
import jax.numpy as jnp
import optax

from gax.registry import Registry

Array = jax.Array
PyTree = Any
S = TypeVar("S")

TRANSFORMS: Registry = Registry("gradient transform")


def _value(x: optax.ScalarOrSchedule, count: Array) -> Array:
  return x(count) if callable(x) else jnp.asarray(x)


def _require_params(name: str, params: Optional[PyTree]) -> PyTree:
  if params is None:
    raise ValueError(f"{name} needs the current params: call tx.update(updates, state, params).")
  return params


def _find_state(opt_state: PyTree, cls: Type[S], transform: str) -> S:
  """The unique `cls` instance nested anywhere in `opt_state` (chains, tuples, dicts, ...)."""
  found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, cls))
           if isinstance(s, cls)]
  if not found:
    raise ValueError(f"No {cls.__name__} in this optimizer state: the optimizer has no "
                     f"{transform}() in its chain.")
  if len(found) > 1:
    raise ValueError(f"{len(found)} {cls.__name__}s in this optimizer state: the optimizer "
                     f"chains {transform}() more than once, so which one to read is ambiguous.")
  return found[0]


# --------------------------------------------------------------------------------------------
# Orthogonal regularisation (BigGAN).


@TRANSFORMS.register("orthogonal_regularization")
def orthogonal_regularization(strength: float = 1e-4) -> optax.GradientTransformation:
  """BigGAN's off-diagonal orthogonal regularisation (Brock et al. 2019, sec. 3.1, eq. 3).

  For every kernel of two or more dimensions (Flax's `[..., in, out]`: a Dense `[in, out]`,
  a convolution `[kh, kw, in, out]`), with `W` its `[out, kh * kw * in]` matrix of filters
  as rows, adds to the gradient

    g <- g + strength * 2 (W W^T * (1 - I)) W,

  the gradient of `(strength / 2) ||W W^T * (1 - I)||_F^2`, i.e. the paper's
  `beta ||W^T W * (1 - I)||_F^2` (over filters as BigGAN's code takes it, `utils.ortho`,
  whose update this is, at its `strength` 1e-4). Only the filters' pairwise cosines are
  pushed to 0, not their norms; biases and other 1-D leaves are left alone. Place it before
  the optimizer in G's chain.

  Args:
    strength: beta, >= 0 (BigGAN: 1e-4).

  Returns:
    A stateless transformation; its `update` requires `params`.
  """
  if not strength >= 0:
    raise ValueError(f"orthogonal_regularization needs strength >= 0, got {strength!r}.")

  def term(p):
    if p.ndim < 2:
      return jnp.zeros_like(p)
    w = p.astype(jnp.float32).reshape(-1, p.shape[-1]).T  # [out, rest]
    gram = jnp.matmul(w, w.T, precision=jax.lax.Precision.HIGHEST)
    off = gram * (1.0 - jnp.eye(w.shape[0], dtype=gram.dtype))
    grad = 2.0 * jnp.matmul(off, w, precision=jax.lax.Precision.HIGHEST)
    return grad.T.reshape(p.shape)

  def update_fn(updates, state, params=None):
    params = _require_params("orthogonal_regularization", params)
    updates = jax.tree.map(lambda g, p: (g + strength * term(p)).astype(g.dtype), updates, params)
    return updates, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


# --------------------------------------------------------------------------------------------
# WGAN weight clipping.


@TRANSFORMS.register("clip_params")
def clip_params(c: float) -> optax.GradientTransformation:
  """Weight clipping of the WGAN critic (Arjovsky et al. 2017, alg. 1, line 7).

  Returns updates `u' = clip(params + u, -c, c) - params`, so `optax.apply_updates` yields
  params clipped to `[-c, c]` (up to one float rounding of `params + u'`). Every leaf is
  clipped, biases included, as in the paper. Meant to be the *last* transform of a chain:
  anything after it would move the params out of the box again.

  Args:
    c: the clipping bound, > 0 (0.01 in the paper).

  Returns:
    A transformation with `optax.EmptyState`; its `update` requires `params`.
  """
  if not c > 0:
    raise ValueError(f"clip_params needs c > 0, got {c!r}.")

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    params = _require_params("clip_params", params)
    updates = jax.tree.map(
        lambda u, p: (jnp.clip(p + u, -c, c) - p).astype(u.dtype), updates, params)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------
# Historical averaging.


class HistoricalAveragingState(NamedTuple):
  """State of `historical_averaging`.

  Attributes:
    count: int32 scalar, number of updates done (= number of past param values averaged).
    mean: the mean of the params passed to the `count` updates so far (params' structure,
      float32 leaves); zeros before the first update.
  """

  count: Array
  mean: PyTree


@TRANSFORMS.register("historical_averaging")
def historical_averaging(weight: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  """Historical averaging (Salimans et al. 2016, "Improved techniques for training GANs", 3.3).

  The paper adds the cost `weight * ||theta - (1/t) sum_{i=1..t} theta[i]||^2` to each
  player's loss, theta[i] being the params at past time i. Here the average runs over the
  params passed to `update` at every update so far, *including the current one*, exactly
  the paper's `i = 1..t`: at the t-th update (t = 1, 2, ...), with current params theta_t,

    m_t = (theta_1 + ... + theta_t) / t
    g  <- g + 2 * weight * (1 - 1/t) * (theta_t - m_t),

  which is the exact gradient of the cost w.r.t. theta_t with the past values theta_1 ..
  theta_{t-1} held fixed (the `(1 - 1/t)` is theta_t's own share of the mean). The first
  update therefore adds nothing (the average of one value is that value). The state keeps
  `m_t` and `t` in float32 (the running mean, not the history).

  Args:
    weight: the cost's weight (scalar or schedule of the update count).

  Returns:
    A transformation with `HistoricalAveragingState`; its `update` requires `params`.
    Place it before the optimizer in a chain.
  """

  def init_fn(params):
    return HistoricalAveragingState(
        count=jnp.zeros([], jnp.int32),
        mean=jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), params))

  def update_fn(updates, state, params=None):
    params = _require_params("historical_averaging", params)
    w = _value(weight, state.count).astype(jnp.float32)
    t = (state.count + 1).astype(jnp.float32)
    mean = jax.tree.map(lambda m, p: m + (p.astype(jnp.float32) - m) / t, state.mean, params)
    scale = 2.0 * w * (1.0 - 1.0 / t)
    updates = jax.tree.map(
        lambda g, p, m: (g + scale * (p.astype(jnp.float32) - m)).astype(g.dtype),
        updates, params, mean)
    return updates, HistoricalAveragingState(count=optax.safe_increment(state.count), mean=mean)

  return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------
# Annealed gradient noise.


class AddGradientNoiseState(NamedTuple):
  """State of `add_gradient_noise`.

  Attributes:
    count: int32 scalar, number of updates done (t of the next update).
    rng_key: the raw `uint32[2]` PRNG key of the next update (checkpoints as a plain array).
  """

  count: Array
  rng_key: Array


@TRANSFORMS.register("gradient_noise")
def add_gradient_noise(eta: float, gamma: float = 0.55, seed: int = 0
                       ) -> optax.GradientTransformation:
  """Annealed Gaussian gradient noise (Neelakantan et al. 2015, "Adding gradient noise
  improves learning for very deep networks").

  At update t = 0, 1, 2, ... (the number of updates done before it) every gradient element
  gets independent noise `N(0, sigma_t^2)` with `sigma_t^2 = eta / (1 + t)^gamma`.

  Args:
    eta: the initial variance, >= 0 (the paper uses 0.01, 0.3 or 1.0).
    gamma: the annealing exponent (0.55 in the paper).
    seed: seed of the noise's PRNG key.

  Returns:
    A transformation with `AddGradientNoiseState`. Place it before the optimizer.
  """
  if eta < 0:
    raise ValueError(f"add_gradient_noise needs eta >= 0, got {eta!r}.")

  def init_fn(params):
    del params
    return AddGradientNoiseState(count=jnp.zeros([], jnp.int32),
                                 rng_key=jax.random.PRNGKey(seed))

  def update_fn(updates, state, params=None):
    del params
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    key, *leaf_keys = jax.random.split(state.rng_key, len(leaves) + 1)
    t = state.count.astype(jnp.float32)
    std = jnp.sqrt(eta / jnp.power(1.0 + t, gamma))
    noisy = [(g + std * jax.random.normal(k, jnp.shape(g), jnp.float32)).astype(g.dtype)
             for g, k in zip(leaves, leaf_keys)]
    return (jax.tree_util.tree_unflatten(treedef, noisy),
            AddGradientNoiseState(count=optax.safe_increment(state.count), rng_key=key))

  return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------
# Gradient norm tracking.


class GradientNormState(NamedTuple):
  """State of `track_gradient_norm`: `norm`, the float32 global L2 norm of the updates that
  arrived at the last update (0 before the first)."""

  norm: Array


@TRANSFORMS.register("track_gradient_norm")
def track_gradient_norm() -> optax.GradientTransformation:
  """Records `sqrt(sum of squares of all update elements)` in its state; updates unchanged.

  It sees what arrives at its place in the chain: first in the chain, the raw gradients
  (as averaged across devices by the train step). Read it back with `find_gradient_norm`.
  """

  def init_fn(params):
    del params
    return GradientNormState(norm=jnp.zeros([], jnp.float32))

  def update_fn(updates, state, params=None):
    del state, params
    return updates, GradientNormState(norm=optax.tree.norm(updates).astype(jnp.float32))

  return optax.GradientTransformation(init_fn, update_fn)


def find_gradient_norm(opt_state: optax.OptState) -> Array:
  """The norm recorded by the (single) `track_gradient_norm` in `opt_state`'s chain."""
  return _find_state(opt_state, GradientNormState, "track_gradient_norm").norm


# --------------------------------------------------------------------------------------------
# Exponential moving average of the params.


class EmaParamsState(NamedTuple):
  """State of `ema_params`.

  Attributes:
    count: int32 scalar, number of updates done.
    weight: float32 scalar `1 - prod_i decay_i` over the updates done: the total weight the
      average gives to post-update params (the rest is on the initial params).
    ema: the average (params' structure and dtypes); debiased when `debias=True`.
  """

  count: Array
  weight: Array
  ema: PyTree


@TRANSFORMS.register("ema")
def ema_params(decay: optax.ScalarOrSchedule, debias: bool = False
               ) -> optax.GradientTransformation:
  """An exponential moving average of the params, kept in the state; updates unchanged.

  After each update, with the new params `x = params + updates` and `d` the decay,

    ema <- d * ema + (1 - d) * x,

  starting from a copy of the initial params (the usual EMA generator, e.g. Karras et al.
  2018 / Yazici et al. 2019). With `debias=True` the initial params get no weight: the state
  holds `(sum_i w_i x_i) / (sum_i w_i)`, the biased average from zeros divided by its
  weight `1 - prod_i d_i`, as `optax.ema(debias=True)` returns (Kingma & Ba 2015, sec. 3).

  Read the average with `find_ema_params`. Put it after the optimizer (and after
  `clip_params`) in a chain: it must see the final updates.

  Args:
    decay: the decay in [0, 1] (scalar or schedule of the update count).
    debias: whether to remove the initial params' weight from the average.

  Returns:
    A transformation with `EmaParamsState`; its `update` requires `params`.
  """

  def init_fn(params):
    return EmaParamsState(count=jnp.zeros([], jnp.int32), weight=jnp.zeros([], jnp.float32),
                          ema=jax.tree.map(jnp.array, params))

  def update_fn(updates, state, params=None):
    params = _require_params("ema_params", params)
    d = _value(decay, state.count).astype(jnp.float32)
    new_params = optax.apply_updates(params, updates)
    weight = d * state.weight + (1.0 - d)
    if debias:
      # ema_t = (d w_{t-1} ema_{t-1} + (1 - d) x_t) / w_t; with w_t = 0 (all decays 1) there
      # is nothing to average yet and the initial params stay.
      safe = jnp.where(weight > 0, weight, 1.0)
      old, new = jnp.where(weight > 0, d * state.weight / safe, 1.0), (1.0 - d) / safe
    else:
      old, new = d, 1.0 - d
    ema = jax.tree.map(
        lambda e, x: (old * e.astype(jnp.float32) + new * x.astype(jnp.float32)).astype(e.dtype),
        state.ema, new_params)
    return updates, EmaParamsState(count=optax.safe_increment(state.count), weight=weight, ema=ema)

  return optax.GradientTransformation(init_fn, update_fn)


def find_ema_params(opt_state: optax.OptState) -> PyTree:
  """The averaged params of the (single) `ema_params` in `opt_state`'s chain."""
  return _find_state(opt_state, EmaParamsState, "ema_params").ema


def build_transform(name: str, **kwargs: Any) -> optax.GradientTransformation:
  """`build_transform('clip_params', c=0.01)`: the registered transform `name` with `kwargs`."""
  return TRANSFORMS.build(name, **kwargs)


__all__ = ["TRANSFORMS", "orthogonal_regularization", "clip_params", "HistoricalAveragingState",
           "historical_averaging", "AddGradientNoiseState", "add_gradient_noise",
           "GradientNormState", "track_gradient_norm", "find_gradient_norm", "EmaParamsState",
           "ema_params", "find_ema_params", "build_transform"]
