"""Latent distributions, global-batch draws, and the optimizers built from config sections."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import builders, noise
from gax.optimizers import build_optimizer


@pytest.mark.parametrize("name, mean, var", [("gaussian", 0.0, 1.0), ("uniform", 0.0, 1 / 3)])
def test_latent_moments(name, mean, var):
  z = np.asarray(noise.LATENTS.get(name)(jax.random.PRNGKey(0), (20000, 8)))
  assert abs(z.mean() - mean) < 0.01 and abs(z.var() - var) < 0.01 * 3
  if name == "uniform":
    assert z.min() >= -1 and z.max() <= 1


def test_sphere_latents_have_unit_norm_and_no_preferred_direction():
  z = np.asarray(noise.sphere(jax.random.PRNGKey(1), (20000, 3)))
  np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, rtol=1e-5)
  # Uniform on S^2: E[z] = 0 and E[z z^T] = I / 3.
  np.testing.assert_allclose(z.mean(0), 0.0, atol=0.02)
  np.testing.assert_allclose(z.T @ z / len(z), np.eye(3) / 3, atol=0.02)


def test_draw_global_under_pmap_is_the_single_device_draw_split_across_devices():
  key = jax.random.PRNGKey(3)
  whole = noise.draw_global(noise.gaussian, key, (8, 5))
  per_device = jax.pmap(lambda k: noise.draw_global(noise.gaussian, k, (2, 5), "i"),
                        axis_name="i")(jnp.stack([key] * 4))
  np.testing.assert_array_equal(per_device.reshape(8, 5), whole)


def _one_update(tx, grads, params):
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


@pytest.mark.parametrize("cfg, reference", [
    ({"name": "adam", "learning_rate": 2e-4}, optax.adam(2e-4, b1=0.5, b2=0.999)),
    ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, optax.sgd(0.1, momentum=0.9)),
    ({"name": "rmsprop", "learning_rate": 5e-5}, optax.rmsprop(5e-5, decay=0.9)),
])
def test_optimizers_from_config_match_optax(cfg, reference):
  params = {"w": jnp.arange(3.0)}
  grads = {"w": jnp.array([0.5, -1.0, 2.0])}
  np.testing.assert_allclose(_one_update(build_optimizer(cfg), grads, params)["w"],
                             _one_update(reference, grads, params)["w"], rtol=1e-6)


@pytest.mark.parametrize("cfg, error", [
    ({"learning_rate": 1e-3}, "no 'name'"),
    ({"name": "adamw", "learning_rate": 1e-3}, "Unknown optimizer"),
    ({"name": "adam", "learning_rate": 0.0}, "positive learning_rate"),
    ({"name": "adam", "learning_rate": 1e-3, "beta1": 0.5}, "Bad arguments for optimizer 'adam'"),
])
def test_bad_optimizer_sections_are_clear_errors(cfg, error):
  with pytest.raises((KeyError, ValueError, TypeError), match=error):
    build_optimizer(cfg)


def test_players_get_their_own_optimizer_and_learning_rate():
  # TTUR (Heusel et al. 2017) / ganhacks 9: D with SGD at 4x G's Adam learning rate.
  c = builders.base_config()
  c.optimizer.d = {"name": "sgd", "learning_rate": 4e-4}
  gan = builders.build_gan(c, (2,))
  grads = {"w": jnp.array([0.5, -1.0])}
  params = {"w": jnp.zeros(2)}
  np.testing.assert_allclose(_one_update(gan.d_tx, grads, params)["w"], -4e-4 * grads["w"])
  np.testing.assert_allclose(_one_update(gan.g_tx, grads, params)["w"],
                             _one_update(optax.adam(2e-4, b1=0.5), grads, params)["w"])
