"""The fused train step: eager == jit == pmap, and each update against a reference."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import conv as conv_lib
from gax import losses, models, parallel
from gax.steps import GAN, d_step, g_step, init_state, jit_train_step, train_step

B, N_DEV = 8, 4
SHAPE = (16, 16, 1)


def _dcgan(axis_name=None, n_critic=2):
  g, d = models.MODELS.build("dcgan", data_shape=SHAPE, width=4, axis_name=axis_name)
  return GAN(g, d, losses.get_loss("non_saturating"), optax.adam(1e-3, 0.5),
             optax.adam(1e-3, 0.5), latent_dim=8, n_critic=n_critic, axis_name=axis_name)


@pytest.fixture(scope="module")
def setup():
  gan = _dcgan()
  state = init_state(gan, jax.random.PRNGKey(0), SHAPE)
  batch = np.random.default_rng(0).integers(0, 256, (2, B, *SHAPE), dtype=np.uint8)
  eager = train_step(gan, state, batch)
  return gan, state, batch, eager


def _close(a, b, atol=2e-5):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4), a, b)


def test_jit_matches_eager(setup):
  gan, state, batch, (s_eager, m_eager) = setup
  s_jit, m_jit = jax.jit(functools.partial(train_step, gan))(state, batch)
  _close(s_jit, s_eager)
  _close(m_jit, m_eager)
  assert int(s_jit.step) == 1


def test_pmap_on_4_devices_matches_one_device_on_the_global_batch(setup):
  gan, state, batch, (s_eager, m_eager) = setup
  assert jax.local_device_count() == N_DEV
  pgan = _dcgan(axis_name=parallel.DEFAULT_AXIS)
  s_p, m_p = parallel.pmap_train_step(pgan)(parallel.replicate(state),
                                            parallel.shard_batch(batch, N_DEV))
  # Every replica holds the same state: gradients and batch statistics were averaged.
  for leaf in jax.tree_util.tree_leaves(s_p):
    np.testing.assert_allclose(leaf, np.broadcast_to(leaf[0], leaf.shape), atol=1e-6)
  _close(parallel.unreplicate(s_p), s_eager)
  _close(parallel.unreplicate(m_p), m_eager)


def test_jit_train_step_donates_the_state(setup):
  gan, state, batch, _ = setup
  fresh = jax.tree_util.tree_map(jnp.copy, state)
  jit_train_step(gan)(fresh, batch)
  assert all(x.is_deleted() for x in jax.tree_util.tree_leaves(fresh.g.params))


def test_jit_train_step_compiles_with_gax_conv_options(setup, monkeypatch):
  # The jitted step takes its XLA options from gax.conv (on CPU, the library the plan was
  # tuned for): an option XLA refuses must surface when the step compiles.
  gan, state, batch, _ = setup
  monkeypatch.setattr(conv_lib, "compiler_options", lambda: {"xla_gax_no_such_option": "1"})
  with pytest.raises(RuntimeError, match="xla_gax_no_such_option"):
    jit_train_step(gan).lower(state, batch).compile()


def test_train_step_equals_a_loop_of_critic_steps_then_a_generator_step(setup):
  gan, state, batch, (s_fused, m_fused) = setup
  key, d_key, g_key = jax.random.split(state.key, 3)
  s = state
  d_losses = []
  for real, k in zip(batch, jax.random.split(d_key, gan.n_critic)):
    s, m = d_step(gan, s, real, k)
    d_losses.append(m["d_loss"])
  s, m = g_step(gan, s, batch[-1], g_key)
  _close(s_fused.g, s.g)
  _close(s_fused.d, s.d)
  np.testing.assert_array_equal(s_fused.key, key)
  np.testing.assert_allclose(m_fused["d_loss"], np.mean(d_losses), rtol=1e-5)
  np.testing.assert_allclose(m_fused["g_loss"], m["g_loss"], rtol=1e-5)


# --- Updates against references written from the formulas -------------------------------

LR = 0.1


def _mlp_gan(loss="hinge"):
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(8,), d_hidden=(8,))
  return GAN(g, d, losses.get_loss(loss), optax.sgd(LR), optax.sgd(LR), latent_dim=3)


def test_d_step_is_a_gradient_step_on_the_d_loss():
  gan = _mlp_gan()
  state = init_state(gan, jax.random.PRNGKey(1), (2,))
  real = jax.random.normal(jax.random.PRNGKey(2), (16, 2))
  key = jax.random.PRNGKey(3)
  z = jax.random.normal(key, (16, 3))
  fake = gan.generator.apply({"params": state.g.params}, z)

  def reference(p):  # hinge loss, Lim & Ye 2017
    dr = gan.discriminator.apply({"params": p}, real)
    df = gan.discriminator.apply({"params": p}, fake)
    return jnp.mean(jnp.maximum(0, 1 - dr)) + jnp.mean(jnp.maximum(0, 1 + df))

  expected = jax.tree_util.tree_map(lambda p, g: p - LR * g, state.d.params,
                                    jax.grad(reference)(state.d.params))
  new, metrics = d_step(gan, state, real, key)
  _close(new.d.params, expected, atol=1e-6)
  _close(new.g.params, state.g.params, atol=0)  # G untouched
  np.testing.assert_allclose(metrics["d_loss"], reference(state.d.params), rtol=1e-6)


def test_d_penalty_is_added_to_the_d_loss_with_its_weight():
  # R1 (Mescheder et al. 2018) with weight w: hinge + w * E ||grad_x D(x_real)||^2.
  from gax.penalties import r1_penalty  # pylint: disable=g-import-not-at-top
  base = _mlp_gan()
  w = 0.7
  gan = GAN(base.generator, base.discriminator, base.loss, base.g_tx, base.d_tx,
            latent_dim=3, d_penalties=(("r1", w, r1_penalty),))
  state = init_state(gan, jax.random.PRNGKey(1), (2,))
  real = jax.random.normal(jax.random.PRNGKey(2), (16, 2))
  key = jax.random.PRNGKey(3)
  fake = gan.generator.apply({"params": state.g.params}, jax.random.normal(key, (16, 3)))

  def reference(p):
    d = lambda x: gan.discriminator.apply({"params": p}, x[None])[0]
    dr = gan.discriminator.apply({"params": p}, real)
    df = gan.discriminator.apply({"params": p}, fake)
    grad_sq = jnp.stack([jnp.sum(jax.grad(d)(x) ** 2) for x in real])  # per-example loop
    return (jnp.mean(jnp.maximum(0, 1 - dr)) + jnp.mean(jnp.maximum(0, 1 + df))
            + w * jnp.mean(grad_sq))

  expected = jax.tree_util.tree_map(lambda p, g: p - LR * g, state.d.params,
                                    jax.grad(reference)(state.d.params))
  new, metrics = jax.jit(lambda s: d_step(gan, s, real, key))(state)
  _close(new.d.params, expected, atol=1e-5)
  np.testing.assert_allclose(metrics["d_loss"], reference(state.d.params), rtol=1e-5)
  assert float(metrics["d_penalty_r1"]) > 0


def test_g_step_is_a_gradient_step_on_the_g_loss():
  gan = _mlp_gan("non_saturating")
  state = init_state(gan, jax.random.PRNGKey(1), (2,))
  real = jnp.zeros((16, 2))
  key = jax.random.PRNGKey(4)
  z = jax.random.normal(key, (16, 3))

  def reference(p):  # -E log sigmoid(D(G(z)))
    df = gan.discriminator.apply({"params": state.d.params},
                                 gan.generator.apply({"params": p}, z))
    return -jnp.mean(jnp.log(jax.nn.sigmoid(df)))

  expected = jax.tree_util.tree_map(lambda p, g: p - LR * g, state.g.params,
                                    jax.grad(reference)(state.g.params))
  new, _ = g_step(gan, state, real, key)
  _close(new.g.params, expected, atol=1e-6)
  _close(new.d.params, state.d.params, atol=0)


class _InputNormD(nn.Module):
  """BatchNorm straight on the input, so its running mean is a closed form of the data."""

  axis_name: str = None

  @nn.compact
  def __call__(self, x, train=True):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(x)
    return nn.Dense(1)(x)[:, 0]


def _bn_gan(axis_name=None):
  g, _ = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(8,))
  return GAN(g, _InputNormD(axis_name), losses.get_loss("minimax"), optax.sgd(LR),
             optax.sgd(LR), latent_dim=3, axis_name=axis_name)


def test_d_normalises_real_and_fake_as_separate_batches_and_keeps_stats_in_state():
  # ganhacks 4: D sees all-real then all-fake batches. With momentum 0.9 from a zero mean,
  # the running mean after one D step is 0.9 * (0.1 * mean(real)) + 0.1 * mean(fake).
  gan = _bn_gan()
  state = init_state(gan, jax.random.PRNGKey(0), (2,))
  real = 5.0 + jax.random.normal(jax.random.PRNGKey(1), (8, 2))
  key = jax.random.PRNGKey(2)
  fake = gan.generator.apply({"params": state.g.params}, jax.random.normal(key, (8, 3)))
  new, _ = d_step(gan, state, real, key)
  expected = 0.9 * 0.1 * real.mean(0) + 0.1 * fake.mean(0)
  np.testing.assert_allclose(new.d.model_state["batch_stats"]["BatchNorm_0"]["mean"], expected,
                             rtol=1e-5)
  # The generator step runs D in train mode but must leave D's statistics alone.
  after_g, _ = g_step(gan, new, real, key)
  _close(after_g.d.model_state, new.d.model_state, atol=0)


def test_pmap_batch_statistics_are_synchronised():
  gan, pgan = _bn_gan(), _bn_gan(parallel.DEFAULT_AXIS)
  state = init_state(gan, jax.random.PRNGKey(0), (2,))
  batch = np.asarray(3.0 + jax.random.normal(jax.random.PRNGKey(1), (1, 16, 2)))
  single, _ = train_step(gan, state, batch)
  mapped, _ = parallel.pmap_train_step(pgan)(parallel.replicate(state),
                                             parallel.shard_batch(batch, N_DEV))
  _close(parallel.unreplicate(mapped).d.model_state, single.d.model_state, atol=1e-5)


# --- Bad input ---------------------------------------------------------------------------


def test_batch_without_the_critic_axis_is_rejected(setup):
  gan, state, batch, _ = setup
  with pytest.raises(ValueError, match=r"\[n_critic=2, B, \.\.\.\]"):
    train_step(gan, state, batch[0])


def test_real_batch_of_another_shape_is_rejected(setup):
  gan, state, _, _ = setup
  wrong = np.zeros((2, B, 8, 8, 1), np.uint8)
  with pytest.raises(ValueError, match="does not match the real batch"):
    train_step(gan, state, wrong)


def test_generator_not_matching_the_data_is_rejected_at_init():
  gan = _dcgan()
  with pytest.raises(ValueError, match=r"makes examples of shape \(16, 16, 1\).*\(32, 32, 1\)"):
    init_state(gan, jax.random.PRNGKey(0), (32, 32, 1))


def test_pmap_step_needs_an_axis_name(setup):
  with pytest.raises(ValueError, match="axis_name"):
    parallel.pmap_train_step(setup[0])


def test_uneven_device_split_is_rejected():
  with pytest.raises(ValueError, match="not divisible"):
    parallel.shard_batch(np.zeros((1, 6, 2)), N_DEV)
