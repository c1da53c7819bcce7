"""Latent distributions, global-batch draws, and the optimizers built from config sections."""


import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import builders, noise
from gax.optimizers import build_optimizer
from gax.steps import init_state, train_step


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


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_truncated_latents_keep_their_support_and_the_truncated_normal_moments(t):
  """Support [-t, t]; variance 1 - 2 t phi(t) / (2 Phi(t) - 1) and the truncated density's
  shape (the fraction inside [-t/2, t/2]), against the closed forms."""
  z = np.asarray(noise.truncated_gaussian(t)(jax.random.PRNGKey(2), (40000, 5)))
  assert z.min() >= -t and z.max() <= t
  phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
  mass = math.erf(t / math.sqrt(2))  # 2 Phi(t) - 1
  assert abs(z.mean()) < 0.01
  assert abs(z.var() - (1 - 2 * t * phi / mass)) < 0.01
  inner = math.erf(t / 2 / math.sqrt(2)) / mass
  assert abs(np.mean(np.abs(z) <= t / 2) - inner) < 0.01
  with pytest.raises(ValueError, match="> 0"):
    noise.truncated_gaussian(0.0)


def test_truncation_applies_to_gaussian_runs_only():
  from gax import trainer  # pylint: disable=g-import-not-at-top
  c = builders.base_config()
  c.data = {"name": "ring", "batch_size": 8}
  c.model = {"name": "mlp", "g_hidden": (8,), "d_hidden": (8,)}
  gan = builders.build_gan(c, (2,))
  state = builders.build_state(gan, c, (2,))
  assert trainer.truncated(gan, None) is gan
  cut = trainer.truncated(gan, 0.1)
  z = np.asarray(cut.latent(jax.random.PRNGKey(0), (1000, gan.latent_dim)))
  assert np.abs(z).max() <= 0.1
  # Sampling goes through the truncated latents: G of tiny z stays near G(0).
  x = trainer.sample(cut, state, jax.random.PRNGKey(1), 200)
  x0 = trainer.sample(trainer.truncated(gan, 1e-3), state, jax.random.PRNGKey(1), 200)
  full = trainer.sample(gan, state, jax.random.PRNGKey(1), 200)
  assert np.std(x0, 0).max() < np.std(x, 0).max() < np.std(full, 0).max()
  c.latent.distribution = "uniform"
  with pytest.raises(ValueError, match="'gaussian' only"):
    trainer.truncated(builders.build_gan(c, (2,)), 1.0)


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


def _sgd_learning_rates(cfg, updates):
  """The learning rate of each of `updates` SGD updates with gradient 1, read off the
  parameter changes."""
  tx = build_optimizer({"name": "sgd", "learning_rate": 0.1, **cfg})
  params, rates = jnp.zeros(()), []
  state = tx.init(params)
  for _ in range(updates):
    delta, state = tx.update(jnp.ones(()), state, params)
    rates.append(-float(delta))
  return np.array(rates)


@pytest.mark.parametrize("cfg, expected", [
    ({}, lambda t: 0.1 * np.ones_like(t)),
    # Linear from lr to final_scale * lr over decay_steps updates, then held.
    ({"schedule": "linear", "decay_steps": 8, "final_scale": 0.25},
     lambda t: 0.1 * (1 - 0.75 * np.minimum(t, 8) / 8)),
    # Cosine: lr * (final_scale + (1 - final_scale) * (1 + cos(pi t / T)) / 2).
    ({"schedule": "cosine", "decay_steps": 8},
     lambda t: 0.1 * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 8) / 8))),
    # Warm-up: 0 -> lr over 4 updates, then the linear decay to 0 over 8 more.
    ({"schedule": "linear", "decay_steps": 8, "warmup_steps": 4},
     lambda t: np.where(t < 4, 0.1 * t / 4, 0.1 * (1 - np.minimum(t - 4, 8) / 8))),
])
def test_learning_rate_schedules_follow_their_formulas(cfg, expected):
  t = np.arange(14.0)
  np.testing.assert_allclose(_sgd_learning_rates(cfg, 14), expected(t), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cfg, error", [
    ({"schedule": "exponential", "decay_steps": 10}, "Unknown learning-rate schedule"),
    ({"schedule": "linear"}, "decay_steps must be an integer >= 1 .*schedule='linear' needs"),
    ({"schedule": "cosine", "decay_steps": 0}, "decay_steps must be an integer >= 1"),
    ({"schedule": "linear", "decay_steps": 10, "final_scale": 1.5},
     r"final_scale must be in \[0, 1\]"),
    ({"decay_steps": 10}, "schedule is 'constant'"),
    ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
])
def test_bad_schedules_are_clear_errors(cfg, error):
  with pytest.raises(ValueError, match=error):
    build_optimizer({"name": "adam", "learning_rate": 1e-3, **cfg})


def test_each_player_schedule_counts_its_own_updates_in_the_train_step():
  # n_critic = 2: after 3 fused train steps D has made 6 updates and G 3, so their linear
  # schedules over 8 updates stand at lr * (1 - 6/8) and lr * (1 - 3/8).
  c = builders.base_config()
  c.n_critic = 2
  c.model = {"name": "mlp", "g_hidden": (4,), "d_hidden": (4,)}
  for player in ("g", "d"):
    c.optimizer[player] = {"name": "sgd", "learning_rate": 0.1, "schedule": "linear",
                           "decay_steps": 8}
  gan = builders.build_gan(c, (2,))
  state = init_state(gan, jax.random.PRNGKey(0), (2,))
  batch = jnp.ones((2, 8, 2))
  for _ in range(3):
    state, _ = train_step(gan, state, batch)

  # The schedule's update counts live in the optimizer states.
  assert int(optax.tree_utils.tree_get(state.d.opt_state, "count")) == 6
  assert int(optax.tree_utils.tree_get(state.g.opt_state, "count")) == 3
  # Another update of each player uses the scheduled rate: SGD moves by lr(t) * gradient.
  for player, done in (("d", 6), ("g", 3)):
    tx = getattr(gan, f"{player}_tx")
    opt_state = getattr(state, player).opt_state
    params = getattr(state, player).params
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    delta, _ = tx.update(grads, opt_state, params)
    np.testing.assert_allclose(jax.tree_util.tree_leaves(delta)[0], -0.1 * (1 - done / 8),
                               rtol=1e-5)


def test_configs_saved_before_schedules_existed_still_match():
  # A run's config.json written before the schedule keys existed resumes under a config that
  # holds them at their neutral values; a real schedule is a difference.
  new = builders.base_config().to_dict()
  old = builders.base_config().to_dict()
  for player in ("g", "d"):
    for key in ("schedule", "decay_steps", "final_scale", "warmup_steps"):
      del old["optimizer"][player][key]
  assert builders.compatibility_diff(old, new) == []
  new["optimizer"]["d"]["schedule"] = "linear"
  assert builders.compatibility_diff(old, new) == [
      "optimizer.d.schedule: '<absent>' -> 'linear'"]
