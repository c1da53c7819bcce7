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

Tricks that need more than an optimizer or a loss (spectral normalisation, instance noise,
experience replay, ...) are `Hook`s in `gan.hooks`: the steps call every hook at fixed points
(which G the D step samples, D's inputs, D's params, G's loss, after the step) and keep each
hook's state in `state.tricks`; no step code names a trick (see `gax.tricks`).

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
from gax.transforms import EmaParamsState

Array = jax.Array
Metrics = Dict[str, Array]


@dataclasses.dataclass(frozen=True)
class StepContext:
  """What a `Hook` may read about the step it runs in.

  Attributes:
    step: int32 scalar, the number of completed train steps (`GANState.step`).
    axis_name: the mapped axis under `pmap`, else `None`; hooks that draw per-example
      randomness or keep cross-batch state use it to act on the global batch.
  """

  step: Array
  axis_name: Optional[str]


class Hook:
  """A trick that acts inside the train step, on state of its own.

  The step calls every hook of `GAN.hooks` at fixed points, in order; the defaults do
  nothing, so a hook overrides only what its trick changes. A hook's state lives in
  `GANState.tricks[hook.name]` (`init` returning `None` means no entry) and is passed to
  each method as `st`. `gax.tricks` holds the hooks the config can switch on (spectral
  normalisation, instance noise, experience replay, checkpoint swapping, feature matching).
  """

  name: str = "hook"

  def init(self, key: Array, state: GANState, data_shape: Tuple[int, ...]) -> Any:
    """The hook's initial state, from the freshly initialised players (`state.tricks` empty)."""
    del key, state, data_shape
    return None

  def generator_for_d(self, st: Any, g_params: Any, ctx: StepContext) -> Any:
    """The generator params the D step draws its fakes from."""
    del st, ctx
    return g_params

  def discriminator_for_g(self, st: Any, d_params: Any, ctx: StepContext) -> Any:
    """The discriminator params the G step is scored by (before `d_params`)."""
    del st, ctx
    return d_params

  def d_params(self, st: Any, params: Any, update: bool) -> Tuple[Any, Any]:
    """A differentiable transform of D's params applied wherever D runs; `update` is True
    in the D step, whose returned state is kept, and False in the G step."""
    del update
    return params, st

  def d_inputs(self, st: Any, real: Array, fake: Array, key: Array,
               ctx: StepContext) -> Tuple[Array, Array, Any]:
    """D's real and fake input batches in the D step (fakes carry no gradient here)."""
    del key, ctx
    return real, fake, st

  def g_inputs(self, st: Any, real: Array, fake: Array, key: Array,
               ctx: StepContext) -> Tuple[Array, Array]:
    """D's inputs in the G step (differentiable in `fake`)."""
    del st, key, ctx
    return real, fake

  def g_loss(self, st: Any, loss: Array, features: Callable[[Array], Array], real: Array,
             fake: Array, ctx: StepContext) -> Tuple[Array, Metrics]:
    """G's loss and extra metrics; `features(x)` is D's last hidden activation `[B, F]`."""
    del st, features, real, fake, ctx
    return loss, {}

  def after_step(self, st: Any, state: GANState, ctx: StepContext) -> Any:
    """The hook's state after the whole train step (`state` holds the updated players)."""
    del state, ctx
    return st


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
    hooks: `Hook`s with unique names, called in order at the step's fixed points.
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
  hooks: Tuple[Hook, ...] = ()

  def __post_init__(self):
    if self.n_critic < 1:
      raise ValueError(f"n_critic must be >= 1, got {self.n_critic}.")
    if self.latent_dim < 1:
      raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}.")
    names = [h.name for h in self.hooks]
    if len(set(names)) != len(names):
      raise ValueError(f"Hook names must be unique, got {names}.")


# fold_in offsets of the step's random streams: the latent batch uses the step key itself and
# penalty i uses fold_in(key, i + 1), as before hooks existed, so those draws are unchanged.
_G_RNG, _LOSS_RNG, _HOOK_RNG = 1_000, 2_000, 3_000


def _device_key(gan: GAN, key: Array) -> Array:
  """A key distinct per device under `pmap` (for dropout/noise layers of G); `key` otherwise."""
  if gan.axis_name is None:
    return key
  return jax.random.fold_in(key, jax.lax.axis_index(gan.axis_name))


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


def generate(gan: GAN, g: PlayerState, z: Array, train: bool = False,
             key: Optional[Array] = None) -> Array:
  """G(z) with the generator's params; eval mode (running batch statistics) by default.

  `key` feeds G's dropout/noise layers; a generator with dropout needs one even in eval mode
  (ganhacks 17: dropout at sample time).
  """
  return apply_model(gan.generator, g.params, g.model_state, z, train, key)[0]


def sampling_params(g: PlayerState) -> Any:
  """The params to sample with: the moving average of `gax.transforms.ema_params` when G's
  optimizer keeps one (the `g_ema` trick), else the trained params."""
  found = [s for s in jax.tree_util.tree_leaves(
      g.opt_state, is_leaf=lambda x: isinstance(x, EmaParamsState)) if isinstance(s, EmaParamsState)]
  return found[0].ema if len(found) == 1 else g.params


def sampling_player(g: PlayerState) -> PlayerState:
  """`g` with `sampling_params(g)` as its params, for `generate`."""
  return g.replace(params=sampling_params(g))


def _set(tricks: Dict[str, Any], name: str, st: Any) -> None:
  if st is not None:
    tricks[name] = st


def _transform_d_params(gan: GAN, tricks: Dict[str, Any], params: Any, update: bool):
  """D's params through every hook's `d_params`; returns `(params, new_tricks)`."""
  tricks = dict(tricks)
  for h in gan.hooks:
    params, st = h.d_params(tricks.get(h.name), params, update)
    _set(tricks, h.name, st)
  return params, tricks


def d_features(gan: GAN, params: Any, model_state: Any, x: Array) -> Array:
  """D's last hidden activation `[B, F]` (sown as `intermediates/features`), in train mode."""
  _, out = gan.discriminator.apply({"params": params, **model_state}, x, train=True,
                                   mutable=[*model_state, "intermediates"])
  try:
    return out["intermediates"]["features"][0]
  except KeyError:
    raise ValueError(f"{type(gan.discriminator).__name__} does not sow "
                     "'intermediates/features', which feature matching needs.") from None


def d_step(gan: GAN, state: GANState, real: Array, key: Array) -> Tuple[GANState, Metrics]:
  """One discriminator update on a real batch `[B, *data_shape]` and B fresh fakes."""
  ctx = StepContext(step=state.step, axis_name=gan.axis_name)
  real = to_model_input(real)
  z = sample_latent(gan, key, real.shape[0])
  penalty_keys = [jax.random.fold_in(key, i + 1) for i in range(len(gan.d_penalties))]
  tricks = dict(state.tricks)
  g_params = state.g.params
  for h in gan.hooks:
    g_params = h.generator_for_d(tricks.get(h.name), g_params, ctx)
  fake = generate(gan, state.g.replace(params=g_params), z, train=True,
                  key=_device_key(gan, jax.random.fold_in(key, _G_RNG)))
  fake = jax.lax.stop_gradient(fake)
  _check_fake_matches_real(fake, real)
  for i, h in enumerate(gan.hooks):
    real, fake, st = h.d_inputs(tricks.get(h.name), real, fake,
                                jax.random.fold_in(key, _HOOK_RNG + i), ctx)
    _set(tricks, h.name, st)
  loss_args = (jax.random.fold_in(key, _LOSS_RNG),) if gan.loss.d_needs_key else ()

  def loss_fn(params):
    params, new_tricks = _transform_d_params(gan, tricks, params, update=True)
    real_logits, ms = apply_model(gan.discriminator, params, state.d.model_state, real, True)
    fake_logits, ms = apply_model(gan.discriminator, params, ms, fake, True)
    loss = gan.loss.d(real_logits, fake_logits, *loss_args)
    # Penalties see D with the pre-step statistics and leave them unchanged.
    d_apply = lambda x: apply_model(gan.discriminator, params, state.d.model_state, x, True)[0]
    penalties = {}
    for (name, weight, fn), k in zip(gan.d_penalties, penalty_keys):
      value = fn(d_apply, real, fake, k)
      penalties[f"d_penalty_{name}"] = value
      loss = loss + weight * value
    return loss, (ms, real_logits, fake_logits, penalties, new_tricks)

  (loss, (ms, real_logits, fake_logits, penalties, tricks)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.d.params)
  grads = _pmean(gan, grads)
  metrics = _pmean(gan, {
      "d_loss": loss,
      "d_real_logit": jnp.mean(real_logits),
      "d_fake_logit": jnp.mean(fake_logits),
      "d_grad_norm": optax.tree.norm(grads),
      **penalties,
  })
  new_d = _update(gan, gan.d_tx, state.d, grads, ms)
  return state.replace(d=new_d, tricks=tricks), metrics


def g_step(gan: GAN, state: GANState, real: Array, key: Array) -> Tuple[GANState, Metrics]:
  """One generator update with a batch of B fakes (B = `real.shape[0]`).

  `real` sets the batch size and feeds losses with `g_needs_real` and hooks (feature
  matching).
  """
  ctx = StepContext(step=state.step, axis_name=gan.axis_name)
  real = to_model_input(real)
  z = sample_latent(gan, key, real.shape[0])
  d = state.d
  tricks = state.tricks
  d_params = d.params
  for h in gan.hooks:
    d_params = h.discriminator_for_g(tricks.get(h.name), d_params, ctx)
  d_params, _ = _transform_d_params(gan, tricks, d_params, update=False)
  g_key = _device_key(gan, jax.random.fold_in(key, _G_RNG))
  d_of = lambda x: apply_model(gan.discriminator, d_params, d.model_state, x, True)[0]

  def loss_fn(params):
    fake, g_ms = apply_model(gan.generator, params, state.g.model_state, z, True, g_key)
    _check_fake_matches_real(fake, real)
    real_in = real
    for i, h in enumerate(gan.hooks):
      real_in, fake = h.g_inputs(tricks.get(h.name), real_in, fake,
                                 jax.random.fold_in(key, _HOOK_RNG + i), ctx)
    real_logits = d_of(real_in) if gan.loss.g_needs_real else None
    loss = gan.loss.g(d_of(fake), real_logits)
    features = lambda x: d_features(gan, d_params, d.model_state, x)
    metrics = {}
    for h in gan.hooks:
      loss, m = h.g_loss(tricks.get(h.name), loss, features, real_in, fake, ctx)
      metrics.update(m)
    return loss, (g_ms, metrics)

  (loss, (g_ms, hook_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g.params)
  grads = _pmean(gan, grads)
  metrics = _pmean(gan, {"g_loss": loss, "g_grad_norm": optax.tree.norm(grads), **hook_metrics})
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
  ctx = StepContext(step=state.step, axis_name=gan.axis_name)
  tricks = dict(state.tricks)
  for h in gan.hooks:
    _set(tricks, h.name, h.after_step(tricks.get(h.name), state, ctx))
  return state.replace(step=state.step + 1, key=key, tricks=tricks), {**d_metrics, **g_metrics}


def jit_train_step(gan: GAN) -> Callable[[GANState, Array], Tuple[GANState, Metrics]]:
  """`train_step` bound to `gan`, jitted, with the input state's buffers donated."""
  return jax.jit(functools.partial(train_step, gan), donate_argnums=0)


def init_state(gan: GAN, key: Array, data_shape: Tuple[int, ...]) -> GANState:
  """Initialises both players and the hooks' state; checks that G's output matches
  `data_shape`.

  Args:
    gan: the GAN description.
    key: a raw PRNG key (`jax.random.PRNGKey(seed)`).
    data_shape: the shape of one real example, e.g. `(16, 16, 1)` or `(2,)`.
  """
  g_key, d_key, key = jax.random.split(key, 3)
  # Eval mode at init: no batch statistics are computed, so no mapped axis is needed.
  g_vars = gan.generator.init(g_key, jnp.zeros((2, gan.latent_dim), jnp.float32), train=False)
  out = jax.eval_shape(
      lambda v: apply_model(gan.generator, v["params"], {k: x for k, x in v.items() if k != "params"},
                            jnp.zeros((2, gan.latent_dim)), False, g_key)[0], g_vars)
  if tuple(out.shape[1:]) != tuple(data_shape):
    raise ValueError(
        f"The generator makes examples of shape {tuple(out.shape[1:])} but the data has "
        f"{tuple(data_shape)}.")
  d_vars = gan.discriminator.init(d_key, jnp.zeros((2, *data_shape), jnp.float32), train=False)
  state = GANState(
      step=jnp.zeros((), jnp.int32),
      g=init_player(g_vars, gan.g_tx),
      d=init_player(d_vars, gan.d_tx),
      tricks={},
      key=key,
  )
  tricks = {}
  for i, h in enumerate(gan.hooks):
    # Hook keys come from the data key's fold_in, leaving the players' initialisation and the
    # run's key stream as they are without hooks.
    _set(tricks, h.name, h.init(jax.random.fold_in(d_key, _HOOK_RNG + i), state, tuple(data_shape)))
  return state.replace(tricks=tricks)
