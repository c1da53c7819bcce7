"""Fully connected G and D for low-dimensional toy data (the 2D Gaussian mixtures).

Options, as in `gax.models.dcgan` (defaults reproduce the plain MLPs, with the same parameter
names):

* G `norm`: "none" | "batch" | "virtual_batch" after every hidden dense layer. "batch" keeps
  running statistics in `batch_stats` (synchronised over `axis_name` under `pmap`);
  "virtual_batch" (Salimans et al. 2016, sec. 3.5) runs a fixed reference latent batch, kept in
  the `vbn_reference` collection and drawn once at init, through G in front of every batch
  (see `gax.models.dcgan`).
* G `noise_std` > 0: Gaussian noise after every hidden layer, train mode only (`noise` RNG).
* G `dropout` > 0: dropout after every hidden layer at train and sample time (`dropout` RNG).
* D `activation`: "leaky_relu" (slope 0.2, default) | "relu" (the sparse gradients ganhacks
  tip 5 advises against, for ablations) | "maxout" (`maxout_pieces` affine pieces per unit,
  Goodfellow et al. 2013; the D of the PacGAN mixture experiments).
* `init_std` > 0: kernels of every dense layer drawn from N(0, init_std^2), biases 0 (the
  DCGAN / PacGAN initialisation); 0 keeps Flax's LeCun-normal default.
* D `minibatch`: "none" | "stddev" (one feature appended) | "discrimination" (`minibatch_kernels`
  features appended), between the last hidden layer (sown as `intermediates/features`) and
  the output layer; computed over the per-device batch under `pmap`.
* `num_classes`, `conditioning`: "none" | "concat" (cGAN: a class embedding appended to z and
  a learned `d_class_dim`-vector per class to D's input) | "auxiliary" (AC-GAN: G as for
  "concat", a class head on D's last hidden features) | "projection" (conditional batch norm
  in G, which needs `norm="batch"`; the projection term on D's last hidden features); see
  `gax.models.conditioning`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax.layers import Maxout, MinibatchDiscrimination, MinibatchStdDev, check_option
from gax.models import conditioning as cond
from gax.models.dcgan import MINIBATCH, check_g_regularisers, g_hidden, g_input, g_norm_layer

G_NORMS = ("none", "batch", "virtual_batch")
D_ACTIVATIONS = ("leaky_relu", "relu", "maxout")


def check_init_std(init_std: float) -> None:
  if not init_std >= 0:
    raise ValueError(f"init_std must be >= 0 (0: Flax's default), got {init_std!r}.")


def kernel_init(init_std: float):
  """N(0, init_std^2) kernels, or Flax's LeCun normal for `init_std` = 0."""
  check_init_std(init_std)
  return nn.initializers.normal(init_std) if init_std else nn.initializers.lecun_normal()


class MLPGenerator(nn.Module):
  """z `[B, latent_dim]` (and, when conditional, `labels` `[B]`) -> points `[B, out_dim]`
  (linear output: toy data is unbounded)."""

  hidden: Sequence[int] = (256, 256, 256)
  out_dim: int = 2
  norm: str = "none"
  noise_std: float = 0.0
  dropout: float = 0.0
  axis_name: Optional[str] = None
  vbn_reference_size: int = 64
  vbn_reference_latent: str = "gaussian"
  num_classes: int = 0
  conditioning: str = "none"
  g_class_dim: int = 16
  init_std: float = 0.0

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True,
               labels: Optional[jax.Array] = None) -> jax.Array:
    chex.assert_rank(z, 2)
    check_option("g_norm", self.norm, G_NORMS)
    check_g_regularisers(self, self.noise_std, self.dropout, train)
    cond.check_g_norm(self.conditioning, self.norm)
    x, n_ref = g_input(self, z, labels, self.norm, self.vbn_reference_size,
                       self.vbn_reference_latent, self.num_classes, self.conditioning,
                       self.g_class_dim)
    init = kernel_init(self.init_std)
    for h in self.hidden:
      x = nn.Dense(h, use_bias=self.norm == "none", kernel_init=init)(x)
      x = g_hidden(x, g_norm_layer(self, train, labels, n_ref), train, self.noise_std,
                   self.dropout)
    return nn.Dense(self.out_dim, kernel_init=init)(x)[n_ref:]


class MLPDiscriminator(nn.Module):
  """points `[B, in_dim]` -> logits `[B]`, LeakyReLU(0.2) or maxout hidden layers; the last hidden
  activation is sown as `intermediates/features`, before the optional minibatch layer.

  "concat" appends each label's learned `d_class_dim`-vector to the input (labels required);
  "auxiliary" returns `(logits [B], class_logits [B, num_classes])`.
  """

  hidden: Sequence[int] = (256, 256, 256)
  axis_name: Optional[str] = None  # unused: the MLP has no batch statistics
  minibatch: str = "none"
  minibatch_kernels: int = 100
  minibatch_kernel_dim: int = 5
  minibatch_group_size: Optional[int] = None
  num_classes: int = 0
  conditioning: str = "none"
  d_class_dim: int = 4
  activation: str = "leaky_relu"
  maxout_pieces: int = 5
  init_std: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True, labels: Optional[jax.Array] = None):
    del train
    chex.assert_rank(x, 2)
    check_option("minibatch", self.minibatch, MINIBATCH)
    check_option("d_activation", self.activation, D_ACTIVATIONS)
    cond.check_conditioning(self.num_classes, self.conditioning)
    cond.check_labels(self, labels, x.shape[0], self.conditioning in cond.D_TAKES_LABELS,
                      self.conditioning)
    if self.conditioning == "concat":
      x = cond.class_vector(x, labels, self.num_classes, self.d_class_dim)
    init = kernel_init(self.init_std)
    for h in self.hidden:
      if self.activation == "maxout":
        x = Maxout(h, self.maxout_pieces, kernel_init=init)(x)
      elif self.activation == "relu":
        x = nn.relu(nn.Dense(h, kernel_init=init)(x))
      else:
        x = nn.leaky_relu(nn.Dense(h, kernel_init=init)(x), 0.2)
    self.sow("intermediates", "features", x)  # for feature matching
    features = x
    if self.minibatch == "stddev":
      x = MinibatchStdDev(self.minibatch_group_size)(x)
    elif self.minibatch == "discrimination":
      x = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_kernel_dim)(x)
    logits = nn.Dense(1, kernel_init=init)(x).reshape(x.shape[0]).astype(jnp.float32)
    if self.conditioning == "auxiliary":
      return logits, cond.class_head(features, self.num_classes)
    if self.conditioning == "projection":
      logits = logits + cond.ClassProjection(self.num_classes, kernel_init=init,
                                             name="class_projection")(features, labels)
    return logits


__all__ = ["G_NORMS", "D_ACTIVATIONS", "check_init_std", "kernel_init", "MLPGenerator",
           "MLPDiscriminator"]
