"""DCGAN and MLP architectures against the DCGAN paper's guidelines."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import models
from gax.models.dcgan import num_stages


def _init(module, x):
  return module.init(jax.random.PRNGKey(0), x, train=False)


@pytest.mark.parametrize("resolution,channels", [(8, 1), (16, 3), (32, 1)])
def test_dcgan_shapes(resolution, channels):
  g, d = models.MODELS.build("dcgan", data_shape=(resolution, resolution, channels), width=8)
  z = jnp.ones((3, 10))
  gv = _init(g, z)
  x = g.apply(gv, z, train=False)
  assert x.shape == (3, resolution, resolution, channels)
  assert float(jnp.max(jnp.abs(x))) <= 1.0  # tanh output
  dv = _init(d, x)
  assert d.apply(dv, x, train=False).shape == (3,)


def test_dcgan_64_has_the_papers_channel_progression():
  g, d = models.MODELS.build("dcgan", data_shape=(64, 64, 3), width=64)
  gv = jax.eval_shape(lambda: _init(g, jnp.ones((2, 100))))
  dv = jax.eval_shape(lambda: _init(d, jnp.ones((2, 64, 64, 3))))
  gp, dp = gv["params"], dv["params"]
  assert gp["Dense_0"]["kernel"].shape == (100, 4 * 4 * 512)  # project and reshape
  assert [gp[f"ConvTranspose_{i}"]["kernel"].shape[-1] for i in range(4)] == [256, 128, 64, 3]
  assert [dp[f"Conv_{i}"]["kernel"].shape[-1] for i in range(5)] == [64, 128, 256, 512, 1]
  assert all(dp[f"Conv_{i}"]["kernel"].shape[:2] == (4, 4) for i in range(5))
  # Batch norm everywhere except G's output and D's input layer: 4 in G, 3 in D.
  assert len([k for k in gp if k.startswith("BatchNorm")]) == 4
  assert len([k for k in dp if k.startswith("BatchNorm")]) == 3
  assert "batch_stats" in gv and "batch_stats" in dv


def test_dcgan_weights_are_drawn_from_n0_002():
  g, d = models.MODELS.build("dcgan", data_shape=(32, 32, 3), width=64)
  dv = _init(d, jnp.ones((2, 32, 32, 3)))
  k = np.asarray(dv["params"]["Conv_1"]["kernel"]).ravel()
  assert abs(k.mean()) < 2e-3 and abs(k.std() - 0.02) < 1e-3


def test_dcgan_batch_norm_updates_batch_stats_in_train_mode():
  _, d = models.MODELS.build("dcgan", data_shape=(16, 16, 1), width=4)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1)) + 3.0
  v = _init(d, x)
  _, new = d.apply(v, x, train=True, mutable=["batch_stats"])
  before = jax.tree_util.tree_leaves(v["batch_stats"])
  after = jax.tree_util.tree_leaves(new["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("resolution", [4, 12, 48, 0])
def test_bad_dcgan_resolution_is_rejected(resolution):
  with pytest.raises(ValueError, match="4 \\* 2\\^k"):
    num_stages(resolution)


def test_dcgan_needs_square_images_and_mlp_needs_vectors():
  with pytest.raises(ValueError, match="square"):
    models.MODELS.build("dcgan", data_shape=(16, 8, 1))
  with pytest.raises(ValueError, match="vector data"):
    models.MODELS.build("mlp", data_shape=(8, 8, 1))


def test_unknown_model_option_names_the_option():
  with pytest.raises(TypeError, match="Bad arguments for model 'dcgan'.*depth"):
    models.MODELS.build("dcgan", data_shape=(16, 16, 1), depth=3)


def test_mlp_shapes():
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(16,), d_hidden=(16, 16))
  z = jnp.ones((5, 4))
  x = g.apply(_init(g, z), z)
  assert x.shape == (5, 2)
  assert d.apply(_init(d, x), x).shape == (5,)
