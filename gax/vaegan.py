"""VAE-GAN: a VAE whose decoder is a GAN generator (Larsen, Sønderby, Larochelle & Winther
2016, "Autoencoding beyond pixels using a learned similarity metric"), with a focal-loss
reconstruction term (Lin et al. 2017, "Focal loss for dense object detection"); ganhacks 7
suggests such VAE + GAN hybrids when plain GAN training is unstable.

Three players: an encoder E `x -> (mu, log_var)` of a diagonal Gaussian q(z|x), a decoder /
generator G `z -> x` and a discriminator D `x -> logit`. One call of `vaegan_train_step` is one
iteration of Larsen et al.'s algorithm 1 on a batch `x` of B examples:

  mu, log_var = E(x)
  z_enc = mu + exp(log_var / 2) * eps,  eps ~ N(0, I)       (reparameterisation)
  x_rec = G(z_enc)                                           (reconstructions)
  x_p   = G(z_p),                       z_p ~ N(0, I)        (prior samples)

  KL     = E_b[1/2 sum_j (exp(lv_j) + mu_j^2 - 1 - lv_j)]  (`gax.losses.gaussian_kl`)
  recon  = focal(x_rec, x; gamma)           (`gax.losses.focal_reconstruction_loss`)
  feat   = E_b[1/2 ||f(x_rec) - f(x)||^2]   (Larsen's L_llike^Dis_l)
  L_rec  = recon_weight * recon + feature_recon_weight * feat

  L_E    = kl_weight * KL + L_rec
  L_G    = L_rec + gan_weight * (-E log s(D(x_p)) - E log s(D(x_rec)))
  L_D    = -E log s(D(x)) - E log(1 - s(D(x_p))) - E log(1 - s(D(x_rec)))

with s the sigmoid and f D's last hidden activation (`intermediates/features`, which
`gax.models.DCGANDiscriminator` sows), under the Gaussian observation model
p(f(x) | z) = N(f(G(z)), I) of Larsen et al. sec. 2.2 without its constant. E takes the
gradient of L_E, G of L_G and D of L_D, each with respect to its own parameters only:

* E: through mu, log_var (the KL) and through z_enc -> G -> x_rec (the reconstruction terms,
  and for `feat` on through D's features). E gets no adversarial gradient, as in alg. 1.
* G: the reconstruction terms through x_rec and the adversarial term through D(x_p) and
  D(x_rec): Larsen et al. count both prior samples and reconstructions as fakes.
* D: L_D only, which is -L_GAN of alg. 1; D gets no gradient from `feat`.

Larsen et al. write G's loss as gamma * L_llike - L_GAN, i.e. the saturating log(1 - D(.))
terms; like their code (and ganhacks 2) G here minimises the non-saturating -log D(.)
instead. Their gamma is `recon_weight / gan_weight` here, except that `recon_weight` and
`feature_recon_weight` scale the encoder's reconstruction terms too. The defaults give the
pixel-space focal VAE-GAN: `feature_recon_weight=0` turns Larsen's feature-space term off.

All three gradients are taken at the parameters the step starts from, from one shared
forward pass (one `jax.vjp`, one backward pass per player), and the three optimizers then
update simultaneously, as in alg. 1. D sees the real, prior and reconstructed batches as
separate batches (ganhacks 4), so batch norm never mixes them; G likewise runs the encoded
and the prior latents as two batches. Every player keeps its own batch-statistics update.

The step is a pure function of `(model, state, batch)`: its randomness (eps, z_p, G's dropout
/ noise streams) comes from `state.key`. Under `pmap`, `model.axis_name` names the mapped
axis: gradients and metrics are averaged across it, the models' batch norm is synchronised,
and eps and z_p are each device's slice of one draw over the global batch
(`gax.noise.draw_global`), so N devices with per-device batch B take the same step as one
device with batch N * B. All losses are per-example means, so averaging the per-device
gradients gives the gradient of the global-batch loss.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Callable, Optional, Tuple

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from gax import checks, noise
from gax import conv as conv_lib
from gax.losses import (binary_cross_entropy_with_logits, focal_reconstruction_loss,
                        gaussian_kl, minimax_d_loss, non_saturating_g_loss)
from gax.models.dcgan import num_stages
from gax.state import PlayerState, init_player
from gax.steps import Metrics, apply_model, to_model_input

Array = jax.Array

_weight_init = nn.initializers.normal(stddev=0.02)


def _bn_scale_init(key: Array, shape, dtype=jnp.float32) -> Array:
  # As in the DCGAN models: BN scales drawn from N(1, 0.02).
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class DCGANEncoder(nn.Module):
  """images `[B, resolution, resolution, C]` in [-1, 1] -> `(mean, log_var)`, each
  `[B, latent_dim]`: the parameters of the diagonal Gaussian q(z | x) of a VAE-GAN.

  The convolutional trunk mirrors `gax.models.DCGANDiscriminator` (Radford et al. 2016): 4x4
  stride-2 convolutions down to 4x4, `width` channels after the first (un-normalised, biased)
  convolution and doubling at each halving, batch norm on every later convolution and
  LeakyReLU(0.2) throughout. Where D ends in a 4x4 valid convolution to one logit, the encoder
  ends in two dense heads on the flattened 4x4 features (the same linear map), `mean` and
  `log_var`, as in Larsen et al. 2016 (their encoder, table 1, also ends in dense layers).
  Initialised with N(0, 0.02) weights and zero biases, q(z | x) starts close to N(0, I).

  Batch statistics live in the `batch_stats` collection; with `axis_name` set they are
  averaged across that mapped axis (synchronised batch norm).

  Attributes:
    resolution: input height and width, 4 * 2^k with k >= 1.
    latent_dim: size of z.
    width: channels after the first convolution.
    axis_name: the `pmap` axis for synchronised batch norm, `None` outside `pmap`.
    dtype: compute dtype of the convolutions; the heads' outputs are float32.
  """

  resolution: int = 64
  latent_dim: int = 100
  width: int = 64
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Tuple[Array, Array]:
    chex.assert_rank(x, 4)
    checks.integer(self.latent_dim, "DCGANEncoder latent_dim")
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(
          f"DCGANEncoder built for {self.resolution}x{self.resolution} inputs got {x.shape}.")
    k = num_stages(self.resolution)
    conv = lambda c, bias: nn.Conv(c, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                                   use_bias=bias, kernel_init=_weight_init, dtype=self.dtype)
    c = self.width
    x = nn.leaky_relu(conv(c, True)(x), 0.2)
    for _ in range(k - 1):
      c *= 2
      x = conv(c, False)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       axis_name=self.axis_name, scale_init=_bn_scale_init, dtype=self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    h = x.reshape(x.shape[0], -1).astype(jnp.float32)
    mean = nn.Dense(self.latent_dim, kernel_init=_weight_init, name="mean")(h)
    log_var = nn.Dense(self.latent_dim, kernel_init=_weight_init, name="log_var")(h)
    return mean, log_var


def _check_weight(name: str, value: object) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
      math.isfinite(value) and value >= 0):
    raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class VAEGAN:
  """The static description of a VAE-GAN (Larsen et al. 2016): networks, optimizers, weights.

  The losses each weight enters are in the module docstring. Nothing here changes during
  training; everything that does lives in `VAEGANState`.

  Attributes:
    encoder: Flax module `(x [B, *data_shape], train) -> (mean, log_var)`, each
      `[B, latent_dim]` (e.g. `DCGANEncoder`).
    generator: the decoder, Flax module `(z [B, latent_dim], train) -> x [B, *data_shape]`
      in [-1, 1] (e.g. `gax.models.DCGANGenerator`, whose tanh output suits the focal term).
    discriminator: Flax module `(x, train) -> logits [B]`; with `feature_recon_weight > 0`
      it must sow its features as `intermediates/features` (as `DCGANDiscriminator` does).
    e_tx, g_tx, d_tx: the players' optax transformations.
    latent_dim: size of z; the prior is N(0, I), as the KL term assumes.
    kl_weight: weight of KL(q(z | x) || N(0, I)) in the encoder's loss.
    recon_weight: weight of the focal pixel reconstruction term (E's and G's loss).
    feature_recon_weight: weight of the feature-space term 1/2 ||f(x_rec) - f(x)||^2 on D's
      features (Larsen's L_llike^Dis_l; E's and G's loss); 0 turns it off.
    gamma: the focal loss's focusing parameter (0: binary cross-entropy per pixel).
    gan_weight: weight of G's non-saturating adversarial loss on prior samples and
      reconstructions.
    axis_name: the `pmap` axis to average over; `None` for one device or `jit`.
  """

  encoder: nn.Module
  generator: nn.Module
  discriminator: nn.Module
  e_tx: optax.GradientTransformation
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  latent_dim: int
  kl_weight: float = 1.0
  recon_weight: float = 1.0
  feature_recon_weight: float = 0.0
  gamma: float = 2.0
  gan_weight: float = 1.0
  axis_name: Optional[str] = None

  def __post_init__(self):
    checks.integer(self.latent_dim, "latent_dim")
    for name in ("kl_weight", "recon_weight", "feature_recon_weight", "gamma", "gan_weight"):
      _check_weight(name, getattr(self, name))


@flax.struct.dataclass
class VAEGANState:
  """The complete state of a VAE-GAN run (the counterpart of `gax.state.GANState`).

  Attributes:
    step: int32 scalar, the number of completed train steps.
    e: the encoder's `PlayerState`.
    g: the decoder's (generator's) `PlayerState`.
    d: the discriminator's `PlayerState`.
    key: the run's PRNG key (a raw `uint32[2]` key).
  """

  step: Array
  e: PlayerState
  g: PlayerState
  d: PlayerState
  key: Array


def init_vaegan_state(model: VAEGAN, key: Array, data_shape: Tuple[int, ...]) -> VAEGANState:
  """Initialises the three players; checks that E and G fit `data_shape` and `latent_dim`.

  Args:
    model: the VAE-GAN description.
    key: a raw PRNG key (`jax.random.PRNGKey(seed)`).
    data_shape: the shape of one real example, e.g. `(16, 16, 1)`.
  """
  data_shape = tuple(data_shape)
  e_key, g_key, d_key, key = jax.random.split(key, 4)
  x0 = jnp.zeros((2, *data_shape), jnp.float32)
  z0 = jnp.zeros((2, model.latent_dim), jnp.float32)
  # Eval mode at init: no batch statistics are computed, so no mapped axis is needed.
  e_vars = model.encoder.init(e_key, x0, train=False)
  out = jax.eval_shape(lambda v: model.encoder.apply(v, x0, train=False), e_vars)
  if not (isinstance(out, (tuple, list)) and len(out) == 2 and
          all(tuple(o.shape) == (2, model.latent_dim) for o in out)):
    shapes = jax.tree_util.tree_map(lambda o: tuple(o.shape), out)
    raise ValueError(
        f"The encoder must return (mean, log_var), each [B, latent_dim={model.latent_dim}]; "
        f"for a batch of 2 it returned shapes {shapes}.")
  g_vars = model.generator.init(g_key, z0, train=False)
  out = jax.eval_shape(lambda v: model.generator.apply(v, z0, train=False), g_vars)
  if tuple(out.shape[1:]) != data_shape:
    raise ValueError(
        f"The generator makes examples of shape {tuple(out.shape[1:])} but the data has "
        f"{data_shape}.")
  d_vars = model.discriminator.init(d_key, x0, train=False)
  return VAEGANState(
      step=jnp.zeros((), jnp.int32),
      e=init_player(e_vars, model.e_tx),
      g=init_player(g_vars, model.g_tx),
      d=init_player(d_vars, model.d_tx),
      key=key,
  )


def encode(model: VAEGAN, e: PlayerState, x: Array, train: bool = False) -> Tuple[Array, Array]:
  """`(mean, log_var)` of q(z | x) for a batch `x` (uint8 images or floats in [-1, 1]), with
  the encoder's running batch statistics by default."""
  return apply_model(model.encoder, e.params, e.model_state, to_model_input(x), train)[0]


def reconstruct(model: VAEGAN, state: VAEGANState, x: Array,
                key: Optional[Array] = None) -> Array:
  """G(mean(x)): deterministic reconstructions at the posterior means, in eval mode.

  `key` feeds G's dropout/noise layers (needed only for a generator with dropout).
  """
  mean, _ = encode(model, state.e, x)
  return apply_model(model.generator, state.g.params, state.g.model_state, mean, False, key)[0]


def feature_reconstruction_loss(recon_features: Array, real_features: Array) -> Array:
  """E_b[1/2 ||f(x_rec) - f(x)||^2]: the negative log-likelihood of D's features of `x`
  under N(f(x_rec), I), up to a constant (Larsen et al. 2016, sec. 2.2, L_llike^Dis_l)."""
  r = recon_features.reshape(recon_features.shape[0], -1).astype(jnp.float32)
  t = real_features.reshape(real_features.shape[0], -1).astype(jnp.float32)
  if r.shape != t.shape:
    raise ValueError(f"Reconstruction and real features differ in shape: {r.shape} vs {t.shape}.")
  return jnp.mean(0.5 * jnp.sum(jnp.square(r - t), axis=1))


def _pmean(model: VAEGAN, tree: Any) -> Any:
  return tree if model.axis_name is None else jax.lax.pmean(tree, model.axis_name)


def _draw(model: VAEGAN, key: Array, batch_size: int) -> Array:
  """This device's `[batch_size, latent_dim]` slice of a global N(0, I) batch."""
  return noise.draw_global(noise.gaussian, key, (batch_size, model.latent_dim), model.axis_name)


def _discriminate(model: VAEGAN, params: Any, model_state: Any, x: Array,
                  features: bool) -> Tuple[Array, Optional[Array], Any]:
  """D on `x` in train mode: `(logits, features or None, new_model_state)`."""
  mutable = [*model_state, *(["intermediates"] if features else [])]
  variables = {"params": params, **model_state}
  if not mutable:
    return model.discriminator.apply(variables, x, train=True), None, model_state
  logits, out = model.discriminator.apply(variables, x, train=True, mutable=mutable)
  out = dict(out)
  sown = out.pop("intermediates", {})
  f = None
  if features:
    try:
      f = sown["features"][0]
    except KeyError:
      raise ValueError(
          f"{type(model.discriminator).__name__} does not sow 'intermediates/features', which "
          "feature_recon_weight > 0 needs.") from None
  return logits, f, {k: out[k] for k in model_state}


def _check_batch(model: VAEGAN, state: VAEGANState, x: Array, z: Array, key: Array) -> None:
  """Raises unless G's examples (shapes only, nothing computed) have the real batch's shape."""
  out = jax.eval_shape(lambda p, z: apply_model(model.generator, p, state.g.model_state, z,
                                                False, key)[0], state.g.params, z)
  if tuple(out.shape) != tuple(x.shape):
    raise ValueError(
        f"Generator output {tuple(out.shape)} does not match the real batch {tuple(x.shape)}: "
        "the model was built for different data (check the image size / channels).")


def _update(tx: optax.GradientTransformation, player: PlayerState, grads: Any,
            model_state: Any) -> PlayerState:
  updates, opt_state = tx.update(grads, player.opt_state, player.params)
  return PlayerState(params=optax.apply_updates(player.params, updates),
                     model_state=model_state, opt_state=opt_state)


def vaegan_losses(model: VAEGAN, state: VAEGANState, x: Array, eps: Array, z_prior: Array,
                  g_key: Optional[Array] = None):
  """The three players' losses as a function of their parameters, for given noise.

  Args:
    model: the VAE-GAN description.
    state: supplies the players' batch statistics (the parameters are the function's args).
    x: real batch `[B, *data_shape]`, float in [-1, 1] (see `gax.steps.to_model_input`).
    eps: `[B, latent_dim]` reparameterisation noise.
    z_prior: `[B', latent_dim]` prior latents.
    g_key: key for G's dropout/noise RNG streams (`None`: none given).

  Returns:
    `f(e_params, g_params, d_params) -> ((L_E, L_G, L_D), aux)` with `aux = (model_states,
    metrics)`: the players' new batch statistics `(e, g, d)` and scalar per-device metrics.
  """
  with_features = model.feature_recon_weight > 0
  g_rec_key = g_prior_key = None
  if g_key is not None:
    g_rec_key, g_prior_key = jax.random.fold_in(g_key, 0), jax.random.fold_in(g_key, 1)

  def f(e_params, g_params, d_params):
    (mean, log_var), e_ms = apply_model(model.encoder, e_params, state.e.model_state, x, True)
    z_enc = mean + jnp.exp(0.5 * log_var) * eps
    x_rec, g_ms = apply_model(model.generator, g_params, state.g.model_state, z_enc, True,
                              g_rec_key)
    x_p, g_ms = apply_model(model.generator, g_params, g_ms, z_prior, True, g_prior_key)
    real_logits, real_f, d_ms = _discriminate(model, d_params, state.d.model_state, x,
                                              with_features)
    prior_logits, _, d_ms = _discriminate(model, d_params, d_ms, x_p, False)
    rec_logits, rec_f, d_ms = _discriminate(model, d_params, d_ms, x_rec, with_features)

    kl = gaussian_kl(mean, log_var)
    recon = focal_reconstruction_loss(x_rec, x, model.gamma)
    l_rec = model.recon_weight * recon
    metrics = {}
    if with_features:
      feat = feature_reconstruction_loss(rec_f, real_f)
      l_rec = l_rec + model.feature_recon_weight * feat
      metrics["feature_recon"] = feat
    g_gan = non_saturating_g_loss(prior_logits) + non_saturating_g_loss(rec_logits)
    e_loss = model.kl_weight * kl + l_rec
    g_loss = l_rec + model.gan_weight * g_gan
    # -L_GAN of alg. 1: -log D(x) - log(1 - D(x_p)) - log(1 - D(x_rec)).
    d_loss = minimax_d_loss(real_logits, prior_logits) + binary_cross_entropy_with_logits(
        rec_logits, 0.0)
    metrics.update({
        "e_loss": e_loss,
        "g_loss": g_loss,
        "d_loss": d_loss,
        "kl": kl,
        "recon": recon,
        "g_gan": g_gan,
        "d_real_logit": jnp.mean(real_logits),
        "d_prior_logit": jnp.mean(prior_logits),
        "d_recon_logit": jnp.mean(rec_logits),
    })
    return (e_loss, g_loss, d_loss), ((e_ms, g_ms, d_ms), metrics)

  return f


def vaegan_train_step(model: VAEGAN, state: VAEGANState, batch: Array
                      ) -> Tuple[VAEGANState, Metrics]:
  """One VAE-GAN iteration (Larsen et al. 2016, alg. 1): E, G and D each take one optimizer
  step on their own loss (module docstring), all from the gradients at `state`'s params.

  Args:
    model: the static VAE-GAN description.
    state: the current state.
    batch: real data `[B, *data_shape]`, uint8 images in [0, 255] or floats in [-1, 1]; under
      `pmap`, this device's `B` examples of the global batch.

  Returns:
    `(new_state, metrics)`: scalar metrics of the step's starting point, averaged across
    devices under `pmap`: the losses `e_loss`, `g_loss`, `d_loss`, their parts `kl`, `recon`
    (focal), `g_gan` (G's adversarial part) and with `feature_recon_weight > 0`
    `feature_recon`, D's mean logits on real, prior and reconstructed batches, and the
    players' global gradient norms `e_grad_norm`, `g_grad_norm`, `d_grad_norm`.
  """
  if batch.ndim < 2:
    raise ValueError(f"vaegan_train_step expects a batch of shape [B, ...]; got {batch.shape}.")
  key, eps_key, prior_key, g_key = jax.random.split(state.key, 4)
  x = to_model_input(batch)
  eps = _draw(model, eps_key, x.shape[0])
  z_prior = _draw(model, prior_key, x.shape[0])
  g_key = noise.per_device_key(g_key, model.axis_name)
  _check_batch(model, state, x, z_prior, g_key)
  f = vaegan_losses(model, state, x, eps, z_prior, g_key)
  losses, vjp, (model_states, metrics) = jax.vjp(
      f, state.e.params, state.g.params, state.d.params, has_aux=True)
  one, zero = jnp.ones_like(losses[0]), jnp.zeros_like(losses[0])
  # Player i takes the gradient of its own loss w.r.t. its own params (cotangent e_i).
  grads = [vjp(tuple(one if j == i else zero for j in range(3)))[i] for i in range(3)]
  grads = _pmean(model, grads)
  e_ms, g_ms, d_ms = model_states
  metrics = _pmean(model, {
      **metrics,
      "e_grad_norm": optax.tree.norm(grads[0]),
      "g_grad_norm": optax.tree.norm(grads[1]),
      "d_grad_norm": optax.tree.norm(grads[2]),
  })
  new_state = state.replace(
      step=state.step + 1,
      e=_update(model.e_tx, state.e, grads[0], e_ms),
      g=_update(model.g_tx, state.g, grads[1], g_ms),
      d=_update(model.d_tx, state.d, grads[2], d_ms),
      key=key,
  )
  return new_state, metrics


def jit_vaegan_train_step(model: VAEGAN) -> Callable[[VAEGANState, Array],
                                                     Tuple[VAEGANState, Metrics]]:
  """`vaegan_train_step` bound to `model`, jitted, with the input state's buffers donated."""
  return jax.jit(functools.partial(vaegan_train_step, model), donate_argnums=0,
                 compiler_options=conv_lib.compiler_options())


def pmap_vaegan_train_step(model: VAEGAN) -> Callable[[Any, Array], Tuple[Any, Metrics]]:
  """`vaegan_train_step` bound to `model` and `pmap`-ped over `model.axis_name`, state donated.

  Takes a replicated state (`gax.parallel.replicate`) and a batch `[n_devices, B, ...]`
  (device i holding examples `[i * B, (i + 1) * B)` of the global batch, e.g.
  `gax.parallel.shard_batch(batch[None], n)[:, 0]`); returns the replicated state and
  metrics (identical on every device).
  """
  if model.axis_name is None:
    raise ValueError("pmap_vaegan_train_step needs a VAEGAN built with an axis_name "
                     "(e.g. 'batch').")
  return jax.pmap(functools.partial(vaegan_train_step, model), axis_name=model.axis_name,
                  donate_argnums=0)


__all__ = ["DCGANEncoder", "VAEGAN", "VAEGANState", "init_vaegan_state", "encode",
           "reconstruct", "feature_reconstruction_loss", "vaegan_losses", "vaegan_train_step",
           "jit_vaegan_train_step", "pmap_vaegan_train_step"]
