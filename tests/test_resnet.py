"""The SNGAN-style ResNet pair: the CIFAR-10 sizes of Miyato et al. 2018 and a train step
with spectral normalisation from the config."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import builders, models
from gax.state import param_count
from gax.steps import train_step


def test_cifar_sized_pair_has_the_sngan_structure_and_size():
  g, d = models.MODELS.build("resnet", data_shape=(32, 32, 3))
  z = jnp.zeros((2, 128))
  gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), z, train=False))
  x = jnp.zeros((2, 32, 32, 3))
  dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), x))
  # Three up-blocks in G; in D two down-blocks (32 -> 16 -> 8) and two plain blocks.
  assert sorted(k for k in gv["params"] if k.startswith("_GBlock")) == [
      "_GBlock_0", "_GBlock_1", "_GBlock_2"]
  assert sorted(k for k in dv["params"] if k.startswith("_DBlock")) == [
      "_DBlock_0", "_DBlock_1", "_DBlock_2", "_DBlock_3"]
  # About 4.3M and 1.1M parameters: the sizes usually quoted for SNGAN's CIFAR-10 ResNets.
  assert 4.2e6 < param_count(gv["params"]) < 4.4e6
  assert 1.0e6 < param_count(dv["params"]) < 1.1e6


def test_forward_shapes_range_and_sown_features():
  g, d = models.MODELS.build("resnet", data_shape=(16, 16, 1), g_width=8, d_width=8)
  z = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  gv = g.init(jax.random.PRNGKey(1), z, train=False)
  x = g.apply(gv, z, train=False)
  assert x.shape == (3, 16, 16, 1) and float(jnp.abs(x).max()) <= 1.0
  dv = d.init(jax.random.PRNGKey(2), x)
  logits, inter = d.apply(dv, x, mutable=["intermediates"])
  assert logits.shape == (3,)
  features = inter["intermediates"]["features"][0]
  assert features.shape == (3, 8) and bool(jnp.all(features >= 0))  # sum-pooled ReLU


def test_bad_shapes_are_clear_errors():
  with pytest.raises(ValueError, match="square images"):
    models.MODELS.build("resnet", data_shape=(16, 8, 3))
  with pytest.raises(TypeError, match="Bad arguments for model 'resnet'"):
    models.MODELS.build("resnet", data_shape=(16, 16, 3), conditioning="auxiliary")


def test_config_trains_a_resnet_with_spectral_norm_and_hinge():
  c = builders.base_config()
  c.model = {"name": "resnet", "g_width": 8, "d_width": 8}
  c.loss = "hinge"
  c.tricks.spectral_norm.enabled = True
  shape = (8, 8, 3)
  gan = builders.build_gan(c, shape)
  state = builders.build_state(gan, c, shape)
  assert set(state.tricks["spectral_norm"]) >= {"_DBlock_0/Conv_0/kernel", "Dense_0/kernel"}
  batch = np.random.default_rng(0).integers(0, 256, (1, 4, *shape), dtype=np.uint8)
  new, metrics = jax.jit(functools.partial(train_step, gan))(state, batch)
  assert int(new.step) == 1
  assert all(np.isfinite(float(v)) for v in metrics.values())
