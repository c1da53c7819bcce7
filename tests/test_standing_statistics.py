"""Standing statistics (gax.steps.standing_statistics, `eval.standing_stats`): G's batch-norm
running statistics recomputed for the params it samples with, checked against train mode on
the same batch (the closed form for one batch), the batches' mean for the first layer, any
momentum, and clear errors."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import dcgan_digits
from gax import builders, evaluation
from gax.steps import generate, standing_statistics

SHAPE = (8, 8, 1)


def _tiny_dcgan():
  c = dcgan_digits.get_config()
  c.data.image_size, c.model.width = 8, 4
  c.tricks.g_ema.enabled = True
  gan = builders.build_gan(c, SHAPE)
  state = builders.build_state(gan, c, SHAPE)
  # Params away from their initialisation, so that every batch norm has work to do.
  leaves, tree = jax.tree_util.tree_flatten(state.g.params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  noisy = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return gan, state.replace(g=state.g.replace(params=tree.unflatten(noisy)))


def _latents(gan, key, i, batch_size):
  """The latents of batch i, as `standing_statistics` draws them."""
  k_z, _ = jax.random.split(jax.random.fold_in(key, i))
  return gan.latent(k_z, (batch_size, gan.latent_dim))


def test_one_batch_gives_eval_mode_the_train_mode_output_of_that_batch():
  gan, state = _tiny_dcgan()
  g, key = state.g, jax.random.PRNGKey(7)
  model_state = standing_statistics(gan, g, key, num_batches=1, batch_size=16, params=g.params)
  z = _latents(gan, key, 0, 16)
  train = generate(gan, g, z, train=True)
  before = generate(gan, g, z)  # the initial running statistics: far from this batch's
  after = generate(gan, g.replace(model_state=model_state), z)
  np.testing.assert_allclose(after, train, atol=2e-5)
  assert float(jnp.max(jnp.abs(before - train))) > 1e-2
  assert jax.tree.structure(model_state) == jax.tree.structure(g.model_state)


def test_the_sampling_params_are_the_default_and_the_state_is_not_changed():
  gan, state = _tiny_dcgan()
  g = state.g
  ema_like = jax.tree.map(lambda p: 0.5 * p, g.params)
  key = jax.random.PRNGKey(3)
  default = standing_statistics(gan, g, key, 2, 8)  # the EMA: the initial params here
  from gax.steps import sampling_params  # pylint: disable=g-import-not-at-top
  same = standing_statistics(gan, g, key, 2, 8, params=sampling_params(g))
  other = standing_statistics(gan, g, key, 2, 8, params=ema_like)
  jax.tree.map(np.testing.assert_array_equal, default, same)
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, default, other)))
  initial = jax.tree.map(np.asarray, g.model_state)
  jax.tree.map(np.testing.assert_array_equal, initial, jax.tree.map(np.asarray, g.model_state))


class _TwoLayers(nn.Module):
  momentum: float

  @nn.compact
  def __call__(self, z, train: bool = False):
    h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(nn.Dense(6)(z))
    h = nn.Dense(5)(nn.relu(h))
    return nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(h)


def _with_generator(module):
  gan, _ = _tiny_dcgan()
  gan = dataclasses.replace(gan, generator=module)
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((2, gan.latent_dim)))
  from gax.state import PlayerState  # pylint: disable=g-import-not-at-top
  g = PlayerState(params=variables["params"],
                  model_state={k: v for k, v in variables.items() if k != "params"},
                  opt_state=())
  return gan, g


def test_any_momentum_and_the_first_layer_is_the_mean_of_the_batches():
  key, n, b = jax.random.PRNGKey(5), 3, 32
  results = []
  for momentum in (0.5, 0.9, 0.99):
    gan, g = _with_generator(_TwoLayers(momentum))
    results.append(standing_statistics(gan, g, key, n, b))
  for other in results[1:]:
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=2e-4, atol=1e-6),
                 results[0], other)
  # Layer 1 normalises Dense(z): its standing mean and variance are the batches' means of
  # their own means and (biased) variances, computed here by hand.
  dense = g.params["Dense_0"]
  h = [np.asarray(_latents(gan, key, i, b)) @ np.asarray(dense["kernel"]) +
       np.asarray(dense["bias"]) for i in range(n)]
  first = results[1]["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(first["mean"], np.mean([x.mean(0) for x in h], 0), atol=1e-5)
  np.testing.assert_allclose(first["var"], np.mean([x.var(0) for x in h], 0), rtol=1e-4)


class _Counter(nn.Module):
  """Keeps a count in `batch_stats`, not a running average."""

  @nn.compact
  def __call__(self, z, train: bool = False):
    count = self.variable("batch_stats", "count", jnp.zeros, ())
    if train:
      count.value = count.value + 1.0
    return nn.Dense(3)(z)


def test_clear_errors():
  gan, g = _with_generator(_Counter())
  with pytest.raises(ValueError, match="not updated as a running average"):
    standing_statistics(gan, g, jax.random.PRNGKey(0), 1, 4)
  with pytest.raises(ValueError, match="keeps none"):
    standing_statistics(gan, g.replace(model_state={}), jax.random.PRNGKey(0), 1, 4)
  gan, g = _with_generator(_TwoLayers(0.9))
  for bad in ({"num_batches": 0}, {"batch_size": 1}):
    with pytest.raises(ValueError):
      standing_statistics(gan, g, jax.random.PRNGKey(0), **{"num_batches": 2, "batch_size": 4,
                                                             **bad})


def test_the_eval_setting(caplog):
  assert evaluation.EvalSettings.from_config({}).standing_stats == 0
  assert evaluation.EvalSettings.from_config({"standing_stats": 4}).standing_stats == 4
  with pytest.raises(ValueError, match="standing_stats"):
    evaluation.EvalSettings.from_config({"standing_stats": -1})
  gan, state = _tiny_dcgan()
  off = evaluation.EvalSettings.from_config({})
  evaluation._WARNED_STANDING_STATS.clear()  # pylint: disable=protected-access
  with caplog.at_level("WARNING"):
    assert evaluation.with_standing_statistics(gan, state, off) is state
  assert "eval.standing_stats=16" in caplog.text  # an EMA on a batch-norm G: warned
  caplog.clear()
  evaluation._WARNED_STANDING_STATS.clear()  # pylint: disable=protected-access
  no_ema = state.replace(g=state.g.replace(opt_state=()))
  with caplog.at_level("WARNING"):
    evaluation.with_standing_statistics(gan, no_ema, off)
  assert "standing_stats" not in caplog.text  # the trained params: their own statistics
  on = evaluation.EvalSettings.from_config({"standing_stats": 2, "batch_size": 8})
  new = evaluation.with_standing_statistics(gan, state, on)
  jax.tree.map(np.testing.assert_array_equal, new.d, state.d)
  jax.tree.map(np.testing.assert_array_equal, new.g.params, state.g.params)
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, new.g.model_state,
                                              state.g.model_state)))


def test_gax_sample_with_standing_statistics():
  from gax import trainer  # pylint: disable=g-import-not-at-top
  gan, state = _tiny_dcgan()
  key = jax.random.PRNGKey(2)
  plain = trainer.sample(gan, state, key, 20, batch_size=10)
  standing = trainer.sample(gan, state, key, 20, batch_size=10, standing_stats=3)
  assert plain.shape == standing.shape == (20, *SHAPE)
  assert float(np.max(np.abs(plain - standing))) > 1e-3
  # The same as sampling by hand with the statistics `standing_statistics` gives.
  from gax.steps import STANDING_STATS_STREAM  # pylint: disable=g-import-not-at-top
  stream = jax.random.fold_in(key, STANDING_STATS_STREAM)
  g = state.g.replace(model_state=standing_statistics(gan, state.g, stream, 3, 10))
  np.testing.assert_allclose(trainer.sample(gan, state.replace(g=g), key, 20, batch_size=10),
                             standing, atol=1e-6)


def test_a_bad_collection_fails_at_the_first_batch_and_the_batch_compiles_once(monkeypatch):
  from gax import steps  # pylint: disable=g-import-not-at-top
  calls = []
  real = steps._standing_batch  # pylint: disable=protected-access

  def counted(*args):
    calls.append(args[-1])
    return real(*args)

  monkeypatch.setattr(steps, "_standing_batch", counted)
  gan, g = _with_generator(_Counter())
  with pytest.raises(ValueError, match="not updated as a running average"):
    standing_statistics(gan, g, jax.random.PRNGKey(0), num_batches=50, batch_size=4)
  assert len(calls) == 1  # checked after batch 0, not after all 50
  # Later calls (another key, other params of the same shapes) reuse the compiled batch.
  gan, state = _tiny_dcgan()
  standing_statistics(gan, state.g, jax.random.PRNGKey(0), 2, 8)
  compiled = real._cache_size()  # pylint: disable=protected-access
  standing_statistics(gan, state.g, jax.random.PRNGKey(1), 3, 8,
                      params=jax.tree.map(lambda p: 0.5 * p, state.g.params))
  assert real._cache_size() == compiled  # pylint: disable=protected-access
