"""jit over a 4-device Mesh with NamedSharding gives the single-device step."""

import jax
import numpy as np
import optax
import pytest

from gax import losses, models, parallel
from gax.steps import GAN, init_state, train_step

B, SHAPE = 8, (8, 8, 1)


def _gan():
  g, d = models.MODELS.build("dcgan", data_shape=SHAPE, width=4)
  return GAN(g, d, losses.get_loss("non_saturating"), optax.adam(1e-3, 0.5),
             optax.adam(1e-3, 0.5), latent_dim=4, n_critic=2)


def test_mesh_jit_on_4_devices_matches_one_device_and_keeps_the_layouts():
  gan = _gan()
  state = init_state(gan, jax.random.PRNGKey(0), SHAPE)
  batch = np.random.default_rng(0).integers(0, 256, (2, B, *SHAPE), dtype=np.uint8)
  want_state, want_metrics = jax.jit(lambda s, b: train_step(gan, s, b))(state, batch)

  mesh = parallel.make_mesh(jax.devices()[:4])
  step = parallel.sharded_train_step(gan, mesh)
  s = jax.device_put(state, parallel.replicated_sharding(mesh))
  b = jax.device_put(batch, parallel.batch_sharding(mesh))
  assert b.addressable_shards[0].data.shape == (2, B // 4, *SHAPE)
  got_state, got_metrics = step(s, b)
  for leaf in jax.tree_util.tree_leaves(got_state):
    assert leaf.sharding.is_fully_replicated
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, atol=2e-5, rtol=1e-4),
                         (got_state, got_metrics), (want_state, want_metrics))


def test_sharded_step_refuses_a_pmap_gan():
  g, d = models.MODELS.build("mlp", data_shape=(2,), axis_name="batch")
  gan = GAN(g, d, losses.get_loss("hinge"), optax.sgd(0.1), optax.sgd(0.1), latent_dim=2,
            axis_name="batch")
  with pytest.raises(ValueError, match="axis_name=None"):
    parallel.sharded_train_step(gan, parallel.make_mesh())
