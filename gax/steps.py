"""Pure GAN train steps.

`d_step` and `g_step` are `(gan, state, real, key) -> (state, metrics)`; `train_step` is
`(gan, state, batch) -> (state, metrics)` and runs `gan.n_critic` discriminator updates and
one generator update in one compiled program, drawing its randomness from `state.key`.
Bind `gan` with `functools.partial` and the step runs eagerly, under `jax.jit` (see
`jit_train_step`, which donates the state buffers) or under `jax.pmap`
(`gax.parallel.pmap_train_step`).

Under `pmap`, `gan.axis_name` names the mapped axis: gradients and metrics are averaged
across it, batch statistics are synchronised by the models' batch norm, and each device
draws its slice of one *global* latent batch, so N devices with per-device batch B compute
the same update as one device with batch N * B.

Discriminator updates see real and fake examples in separate batches (ganhacks 4), so
batch norm never mixes the two. The generator step runs D in train mode but discards D's
batch-statistics update: D's state changes only in D's own step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gax import noise
from gax.losses import GANLoss
from gax.penalties import Penalty
from gax.state import GANState, PlayerState, init_player

Array = jax.Array
Metrics = Dict[str, Array]


@dataclasses.dataclass(frozen=True)
class GAN:
  """The static description of a GAN: networks, loss, optimizers and step structure.

  Nothing here changes during training; everything that does lives in `GANState`.

  Attributes:
    generator: Flax module `(z [B, latent_dim], train) -> x [B, *data_shape]`.
    discriminator: Flax module `(x [B, *data_shape], train) -> logits [B]`.
    loss: the adversarial loss pair.
    g_tx, d_tx: the players' optax transformations.
    latent_dim: size of z.
    latent: sampler `(key, shape) -> z`.
    n_critic: discriminator updates per generator update (WGAN uses 5).
    axis_name: the `pmap` axis to average over; `None` for a single device or `jit` with
      shardings (where XLA inserts the collectives itself).
    d_penalties: `(name, weight, fn)` triples added to D's loss as `weight * fn(d_apply,
      real, fake, key)`, e.g. WGAN-GP or R1 from `gax.penalties`; `d_apply` runs D in train
      mode with the parameters being differentiated.
  """

  generator: nn.Module
  discriminator: nn.Module
  loss: GANLoss
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  latent_dim: int
  latent: noise.LatentSampler = noise.gaussian
  n_critic: int = 1
  axis_name: Optional[str] = None
  d_penalties: Tuple[Tuple[str, float, Penalty], ...] = ()

  def __post_init__(self):
    if self.n_critic < 1:
      raise ValueError(f"n_critic must be >= 1, got {self.n_critic}.")
    if self.latent_dim < 1:
      raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}.")


def apply_model(module: nn.Module, params: Any, model_state: Any, x: Array, train: bool,
                key: Optional[Array] = None) -> Tuple[Array, Any]:
  """Runs a Flax module; returns `(output, new_model_state)`.

  In train mode every non-`params` collection is mutable and its update returned; in eval
  mode `model_state` is returned unchanged. `key`, when given, feeds the module's `dropout`
  and `noise` RNG streams (generator dropout and noise layers).
  """
  variables = {"params": params, **model_state}
  kwargs = {}
  if key is not None:
    kwargs["rngs"] = {"dropout": jax.random.fold_in(key, 0), "noise": jax.random.fold_in(key, 1)}
  if train and model_state:
    return module.apply(variables, x, train=True, mutable=list(model_state), **kwargs)
  return module.apply(variables, x, train=train, **kwargs), model_state


def to_model_input(x: Array) -> Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]; float inputs pass through as float32."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  return x.astype(jnp.float32)


def sample_latent(gan: GAN, key: Array, batch_size: int) -> Array:
  """Draws this device's `[batch_size, latent_dim]` slice of a global latent batch
  (`gax.noise.draw_global`: the result does not depend on how the batch is split across
  devices)."""
  return noise.draw_global(gan.latent, key, (batch_size, gan.latent_dim), gan.axis_name)


def _pmean(gan: GAN, tree: Any) -> Any:
  return tree if gan.axis_name is None else jax.lax.pmean(tree, gan.axis_name)


def _update(gan: GAN, tx: optax.GradientTransformation, player: PlayerState, grads: Any,
            model_state: Any) -> PlayerState:
  updates, opt_state = tx.update(grads, player.opt_state, player.params)
  return PlayerState(params=optax.apply_updates(player.params, updates),
                     model_state=model_state, opt_state=opt_state)


def _check_fake_matches_real(fake: Array, real: Array) -> None:
  if fake.shape != real.shape:
    raise ValueError(
        f"Generator output {fake.shape} does not match the real batch {real.shape}: the "
        "model was built for different data (check data.image_size / channels).")


def generate(gan: GAN, g: PlayerState, z: Array, train: bool = False) -> Array:
  """G(z) with the generator's params; eval mode (running batch statistics) by default."""
  return apply_model(gan.generator, g.params, g.model_state, z, train)[0]


def d_step(gan: GAN, state: GANState, real: Array, key: Array) -> Tuple[GANState, Metrics]:
  """One discriminator update on a real batch `[B, *data_shape]` and B fresh fakes."""
  real = to_model_input(real)
  z = sample_latent(gan, key, real.shape[0])
  penalty_keys = [jax.random.fold_in(key, i + 1) for i in range(len(gan.d_penalties))]
  fake = jax.lax.stop_gradient(generate(gan, state.g, z, train=True))
  _check_fake_matches_real(fake, real)

  def loss_fn(params):
    real_logits, ms = apply_model(gan.discriminator, params, state.d.model_state, real, True)
    fake_logits, ms = apply_model(gan.discriminator, params, ms, fake, True)
    loss = gan.loss.d(real_logits, fake_logits)
    # Penalties see D with the pre-step statistics and leave them unchanged.
    d_apply = lambda x: apply_model(gan.discriminator, params, state.d.model_state, x, True)[0]
    penalties = {}
    for (name, weight, fn), k in zip(gan.d_penalties, penalty_keys):
      value = fn(d_apply, real, fake, k)
      penalties[f"d_penalty_{name}"] = value
      loss = loss + weight * value
    return loss, (ms, real_logits, fake_logits, penalties)

  (loss, (ms, real_logits, fake_logits, penalties)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.d.params)
  grads = _pmean(gan, grads)
  metrics = _pmean(gan, {
      "d_loss": loss,
      "d_real_logit": jnp.mean(real_logits),
      "d_fake_logit": jnp.mean(fake_logits),
      "d_grad_norm": optax.tree.norm(grads),
      **penalties,
  })
  return state.replace(d=_update(gan, gan.d_tx, state.d, grads, ms)), metrics


def g_step(gan: GAN, state: GANState, real: Array, key: Array) -> Tuple[GANState, Metrics]:
  """One generator update with a batch of B fakes (B = `real.shape[0]`).

  `real` sets the batch size and feeds losses with `g_needs_real`.
  """
  real = to_model_input(real)
  z = sample_latent(gan, key, real.shape[0])
  d = state.d

  def loss_fn(params):
    fake, g_ms = apply_model(gan.generator, params, state.g.model_state, z, True)
    _check_fake_matches_real(fake, real)
    fake_logits, _ = apply_model(gan.discriminator, d.params, d.model_state, fake, True)
    real_logits = None
    if gan.loss.g_needs_real:
      real_logits, _ = apply_model(gan.discriminator, d.params, d.model_state, real, True)
    return gan.loss.g(fake_logits, real_logits), g_ms

  (loss, g_ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g.params)
  grads = _pmean(gan, grads)
  metrics = _pmean(gan, {"g_loss": loss, "g_grad_norm": optax.tree.norm(grads)})
  return state.replace(g=_update(gan, gan.g_tx, state.g, grads, g_ms)), metrics


def train_step(gan: GAN, state: GANState, batch: Array) -> Tuple[GANState, Metrics]:
  """`n_critic` D updates then one G update, fused into one program.

  Args:
    gan: the static GAN description.
    state: the current state.
    batch: real data `[n_critic, B, *data_shape]` (uint8 images or float vectors); D step
      i uses `batch[i]`, the G step uses `batch[-1]` where its loss needs real data.

  Returns:
    `(new_state, metrics)`: scalar metrics, D's averaged over its `n_critic` updates.
  """
  if batch.ndim < 2 or batch.shape[0] != gan.n_critic:
    raise ValueError(
        f"train_step expects a batch of shape [n_critic={gan.n_critic}, B, ...]; got {batch.shape}.")
  key, d_key, g_key = jax.random.split(state.key, 3)
  # The critic loop is unrolled at trace time rather than a lax.scan: n_critic is small (1 or
  # 5), and XLA:CPU runs convolutions inside a while loop about 6x slower (measured: 350 ms
  # vs 55 ms for the digits DCGAN step), so a loop would slow every CPU run and test.
  d_metrics = []
  for real, k in zip(batch, jax.random.split(d_key, gan.n_critic)):
    state, m = d_step(gan, state, real, k)
    d_metrics.append(m)
  d_metrics = jax.tree_util.tree_map(lambda *x: jnp.mean(jnp.stack(x)), *d_metrics)
  state, g_metrics = g_step(gan, state, batch[-1], g_key)
  return state.replace(step=state.step + 1, key=key), {**d_metrics, **g_metrics}


def jit_train_step(gan: GAN) -> Callable[[GANState, Array], Tuple[GANState, Metrics]]:
  """`train_step` bound to `gan`, jitted, with the input state's buffers donated."""
  return jax.jit(functools.partial(train_step, gan), donate_argnums=0)


def init_state(gan: GAN, key: Array, data_shape: Tuple[int, ...], tricks: Any = None) -> GANState:
  """Initialises both players and checks that G's output matches `data_shape`.

  Args:
    gan: the GAN description.
    key: a raw PRNG key (`jax.random.PRNGKey(seed)`).
    data_shape: the shape of one real example, e.g. `(16, 16, 1)` or `(2,)`.
    tricks: initial trick state (default `{}`).
  """
  g_key, d_key, key = jax.random.split(key, 3)
  # Eval mode at init: no batch statistics are computed, so no mapped axis is needed.
  g_vars = gan.generator.init(g_key, jnp.zeros((2, gan.latent_dim), jnp.float32), train=False)
  out = jax.eval_shape(
      lambda v: gan.generator.apply(v, jnp.zeros((2, gan.latent_dim)), train=False), g_vars)
  if tuple(out.shape[1:]) != tuple(data_shape):
    raise ValueError(
        f"The generator makes examples of shape {tuple(out.shape[1:])} but the data has "
        f"{tuple(data_shape)}.")
  d_vars = gan.discriminator.init(d_key, jnp.zeros((2, *data_shape), jnp.float32), train=False)
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g=init_player(g_vars, gan.g_tx),
      d=init_player(d_vars, gan.d_tx),
      tricks={} if tricks is None else tricks,
      key=key,
  )
