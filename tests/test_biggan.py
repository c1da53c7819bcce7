"""The BigGAN-style pair (gax.models.biggan): conditional batch norm from a vector against
NumPy, the hierarchical latent (each chunk reaches only its own block), one shared class
embedding, the projection D as its unconditional part plus the class term, eager == jit ==
pmap for a train step, the config end to end, and clear errors."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import builders, models, parallel, trainer
from gax.models.biggan import VectorConditionalBatchNorm
from gax.steps import train_step

K = 3


def _pair(resolution=16, **kw):
  return models.MODELS.build("biggan", data_shape=(resolution, resolution, 1), width=4,
                             num_classes=K, shared_dim=5, **kw)


def test_vector_conditional_batch_norm_against_numpy():
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (6, 2, 2, 4))) * 3 + 1
  c = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (6, 5)))
  layer = VectorConditionalBatchNorm()
  v = layer.init(jax.random.PRNGKey(2), x, c)
  np.testing.assert_array_equal(v["params"]["gain"]["kernel"], 0)  # starts as plain BN
  wg = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (5, 4)))
  wb = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (5, 4)))
  v = {**v, "params": {"gain": {"kernel": wg}, "bias": {"kernel": wb}}}
  out, _ = layer.apply(v, x, c, mutable=["batch_stats"])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  want = ((x - mean) / np.sqrt(var + 1e-5) * (1 + c @ wg)[:, None, None, :]
          + (c @ wb)[:, None, None, :])
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_hierarchical_latent_and_shared_embedding():
  g, _ = _pair(attention=8)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 9))  # 16x16: 2 blocks, 3 chunks of 3
  y = jnp.array([0, 1, 2, 1])
  v = g.init(jax.random.PRNGKey(1), z, True, y)
  p = v["params"]
  assert p["shared"]["embedding"].shape == (K, 5)  # one table for every block
  assert p["Dense_0"]["kernel"].shape[0] == 3  # the first chunk feeds the input layer
  for block in ("_GBlock_0", "_GBlock_1"):  # chunk + shared embedding condition each BN
    assert p[block]["VectorConditionalBatchNorm_0"]["gain"]["kernel"].shape == (3 + 5, 16)
  # With the gains' kernels non-zero, a change to chunk 2 (the second block's) reaches the
  # images, and a change to chunk 1 too; the class changes them as well.
  p = jax.tree_util.tree_map(lambda a: a, p)
  key = iter(jax.random.split(jax.random.PRNGKey(5), 8))
  for block in ("_GBlock_0", "_GBlock_1"):
    for i in (0, 1):
      bn = p[block][f"VectorConditionalBatchNorm_{i}"]
      for name in ("gain", "bias"):
        bn[name]["kernel"] = 0.3 * jax.random.normal(next(key), bn[name]["kernel"].shape)
  run = lambda z, y: g.apply({**v, "params": p}, z, True, y, mutable=["batch_stats"])[0]
  base = run(z, y)
  for chunk in (1, 2):
    moved = z.at[0, 3 * chunk:3 * chunk + 3].add(1.0)
    out = run(moved, y)
    assert not np.allclose(out[0], base[0], atol=1e-4)
  assert not np.allclose(run(z, y.at[0].set(2))[0], base[0], atol=1e-4)
  with pytest.raises(ValueError, match="multiple of 3"):
    g.init(jax.random.PRNGKey(1), jnp.zeros((2, 10)), True, jnp.array([0, 1]))


def test_projection_d_is_its_linear_output_plus_the_class_term():
  _, d = _pair()
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 1))
  y = jnp.array([2, 0, 1, 2])
  v = d.init(jax.random.PRNGKey(1), x, True, y)
  logits, out = d.apply(v, x, True, y, mutable=["intermediates"])
  phi = np.asarray(out["intermediates"]["features"][0])
  dense = v["params"]["Dense_0"]
  psi = phi @ np.asarray(dense["kernel"])[:, 0] + np.asarray(dense["bias"])[0]
  vy = np.asarray(v["params"]["class_projection"]["kernel"])[np.asarray(y)]
  np.testing.assert_allclose(logits, psi + np.sum(vy * phi, -1), rtol=1e-4, atol=1e-4)


def _tiny_config():
  # 8x8: one up-block (z in 2 chunks), no room for attention (tested at 16x16 above and in
  # the DCGAN's step in test_conditional.py).
  c = importlib.import_module("experiments.configs.biggan_digits").get_config()
  c.data.update(image_size=8, batch_size=8)
  c.model.update(width=4, shared_dim=5, attention=0)
  c.latent.dim = 8
  return c


def test_eager_jit_and_pmap_on_4_devices_agree():
  c = _tiny_config()
  # SGD, not the config's Adam with beta1 = 0, whose first update is lr * sign(g): the conv
  # biases before a batch norm have gradients that are zero up to rounding, and rounding
  # differs between one device and four.
  for player in ("g", "d"):
    c.optimizer[player] = {"name": "sgd", "learning_rate": 0.01}
  c.n_critic = 1  # one D step: the eager step is slow
  source = builders.build_data(c)
  gan = builders.build_gan(c, source.element_shape)
  state = builders.build_state(gan, c, source.element_shape)
  batch = source.get(0)
  close = lambda a, b: jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=3e-5), a, b)
  s_eager, m_eager = train_step(gan, state, batch)
  s_jit, m_jit = jax.jit(functools.partial(train_step, gan))(state, batch)
  close(s_jit, s_eager)
  close(m_jit, m_eager)
  pgan = builders.build_gan(c, source.element_shape, parallel.DEFAULT_AXIS)
  s_p, m_p = parallel.pmap_train_step(pgan)(parallel.replicate(state),
                                            parallel.shard_batch(batch, 4))
  close(parallel.unreplicate(s_p), s_eager)
  close(parallel.unreplicate(m_p), m_eager)
  assert "class_projection/kernel" in state.tricks["spectral_norm"]


def test_config_trains_and_samples_by_class(tmp_path):
  c = _tiny_config()
  c.train.update(steps=2, log_every=1, sample_every=2, checkpoint_every=2, num_samples=6)
  c.eval.every = -1
  state = trainer.train(c, str(tmp_path))
  assert int(state.step) == 2
  _, gan, restored = trainer.restore_run(str(tmp_path))
  x = trainer.sample(gan, restored, jax.random.PRNGKey(0), 6, labels=2)
  assert x.shape == (6, 8, 8, 1) and np.all(np.abs(x) <= 1)


def test_biggan_misuse_is_refused():
  with pytest.raises(ValueError, match="conditioning='projection'"):
    models.MODELS.build("biggan", data_shape=(16, 16, 1), num_classes=0)
  with pytest.raises(ValueError, match="feature-map side"):
    _pair(attention=16)
  with pytest.raises(ValueError, match="square images"):
    models.MODELS.build("biggan", data_shape=(16, 8, 1), num_classes=K)
