"""Packing (PacGAN, gax.models.packing): packs are consecutive examples side by side on the
last axis; the packed D is the inner D on packs; a packed GAN steps the same eagerly, under
jit and under pmap on 4 CPU devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import builders, parallel
from gax.models.dcgan import DCGANDiscriminator
from gax.models.mlp import MLPDiscriminator
from gax.models.packing import Packed, pack
from gax.steps import train_step

B, N_DEV, SHAPE = 16, 4, (2,)  # 4 examples per device: 2 packs of 2


def test_pack_puts_consecutive_examples_side_by_side():
  x = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)
  np.testing.assert_array_equal(pack(x, 3), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
  img = np.arange(4 * 2 * 2 * 3).reshape(4, 2, 2, 3)
  p = np.asarray(pack(img, 2))
  assert p.shape == (2, 2, 2, 6)
  np.testing.assert_array_equal(p[1, :, :, :3], img[2])
  np.testing.assert_array_equal(p[1, :, :, 3:], img[3])
  with pytest.raises(ValueError, match="divisible by 3"):
    pack(np.zeros((4, 2)), 3)


@pytest.mark.parametrize("inner,shape", [(MLPDiscriminator(hidden=(8,)), (2,)),
                                         (DCGANDiscriminator(resolution=8, width=4), (8, 8, 3))])
def test_packed_d_is_the_inner_d_on_packs_with_the_same_variable_paths(inner, shape):
  packed = Packed(inner, 3)
  v = packed.init(jax.random.PRNGKey(0), jnp.zeros((2, *shape)), train=False)
  v_inner = inner.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape[:-1], 3 * shape[-1])),
                       train=False)
  assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, v_inner)
  x = jax.random.normal(jax.random.PRNGKey(1), (6, *shape))
  out, st = packed.apply(v, x, train=True, mutable=["intermediates"])
  ref, st_ref = inner.apply(v, pack(x, 3), train=True, mutable=["intermediates"])
  assert out.shape == (2,)
  np.testing.assert_allclose(out, ref, rtol=1e-6)
  np.testing.assert_allclose(st["intermediates"]["features"][0],
                             st_ref["intermediates"]["features"][0], rtol=1e-6)


def _config(packing=2):
  c = builders.base_config()
  c.model = {"name": "mlp", "g_hidden": (16,), "d_hidden": (16, 16), "packing": packing}
  c.latent.dim = 4
  c.d_penalty.r1 = 0.1  # a penalty through the packed D
  c.tricks.feature_matching.enabled = True  # reads the packed D's features
  c.tricks.feature_matching.adversarial_weight = 1.0
  return c


@pytest.fixture(scope="module")
def packed_run():
  c = _config()
  gan = builders.build_gan(c, SHAPE)
  state = builders.build_state(gan, c, SHAPE)
  batches = np.random.default_rng(0).normal(size=(3, 1, B, *SHAPE)).astype(np.float32)
  eager = state
  for b in batches:
    eager, metrics = train_step(gan, eager, b)
  return c, gan, state, batches, eager, metrics


def test_packed_d_sees_twice_the_width_and_trains(packed_run):
  _, _, state, _, eager, metrics = packed_run
  assert state.d.params["Dense_0"]["kernel"].shape == (2 * SHAPE[0], 16)
  assert np.isfinite([float(v) for v in metrics.values()]).all()
  assert "d_penalty_r1" in metrics
  assert not np.allclose(eager.d.params["Dense_0"]["kernel"], state.d.params["Dense_0"]["kernel"])


def test_packed_step_jit_and_pmap_match_eager(packed_run):
  c, gan, state, batches, eager, _ = packed_run
  close = lambda a, b: jax.tree.map(
      lambda x, y: np.testing.assert_allclose(x, y, atol=2e-5, rtol=1e-4), a, b)
  step = jax.jit(functools.partial(train_step, gan))
  s = state
  for b in batches:
    s, _ = step(s, b)
  close(s, eager)
  pstep = parallel.pmap_train_step(builders.build_gan(c, SHAPE, parallel.DEFAULT_AXIS))
  p = parallel.replicate(state)
  for b in batches:
    p, _ = pstep(p, parallel.shard_batch(b, N_DEV))
  close(parallel.unreplicate(p), eager)


def test_bad_packing_configs_are_clear_errors():
  for bad in (0, 1.5, True, "2"):
    with pytest.raises(ValueError, match="model.packing"):
      builders.build_gan(_config(bad), SHAPE)
  c = _config()
  c.model.update(num_classes=8, conditioning="concat")
  with pytest.raises(ValueError, match="packing"):
    builders.build_gan(c, SHAPE)


def test_penalties_take_the_norm_of_each_packs_gradient():
  # A linear packed critic D(pack) = <w, pack>: its gradient with respect to a pack is w, so
  # R1 is ||w||^2 and the WGAN-GP term (||w|| - 1)^2, whatever the batch (per example the
  # norms would be those of w's halves).
  from gax import penalties  # pylint: disable=g-import-not-at-top
  w = jnp.array([3.0, 0.0, 0.0, 4.0])
  d_apply = lambda x: pack(x, 2) @ w
  real = jax.random.normal(jax.random.PRNGKey(0), (6, 2))
  fake = jax.random.normal(jax.random.PRNGKey(1), (6, 2))
  assert penalties.input_gradients(d_apply, real).shape == (3, 4)
  np.testing.assert_allclose(penalties.r1_penalty(d_apply, real, fake, None), 25.0, rtol=1e-6)
  np.testing.assert_allclose(
      penalties.gradient_penalty(d_apply, real, fake, jax.random.PRNGKey(2)), 16.0, rtol=1e-6)
  with pytest.raises(ValueError, match="one per pack"):
    penalties.input_gradients(lambda x: jnp.concatenate([pack(x, 2) @ w] * 2)[:4], real)
