"""Penalties against closed forms (linear and quadratic D) and a per-example loop reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import penalties
from gax.penalties import (PENALTIES, dragan_penalty, get_penalty, gradient_penalty,
                           r1_penalty, r2_penalty)

MODES = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
B, SHAPE = 5, (3, 2, 2)
RNG = np.random.default_rng(0)
REAL = RNG.normal(0.5, 1.0, size=(B, *SHAPE)).astype(np.float32)
FAKE = RNG.normal(-0.5, 2.0, size=(B, *SHAPE)).astype(np.float32)
W = RNG.normal(size=SHAPE).astype(np.float32)
KEY = jax.random.PRNGKey(42)
NAMES = ["gradient_penalty", "r1", "r2", "dragan"]


def linear_d(w):
  """D(x) = <w, x>: input gradient w everywhere."""
  return lambda x: jnp.sum((x * w).reshape(x.shape[0], -1), axis=1)


def quadratic_d(x):
  """D(x) = ||x||^2 / 2: input gradient x."""
  return 0.5 * jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)


def mlp_d(x, w1=RNG.normal(size=(12, 7)).astype(np.float32),
          w2=RNG.normal(size=(7, 1)).astype(np.float32)):
  """A small nonlinear D with per-example gradients, returning [B, 1] logits."""
  return jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def _call(mode, fn, d, real=REAL, fake=FAKE, key=KEY):
  return mode(lambda r, f, k: fn(d, r, f, k))(real, fake, key)


def test_registry():
  assert PENALTIES.names() == sorted(NAMES)
  assert get_penalty("r1") is r1_penalty
  assert get_penalty("dragan", c=1.0).keywords == {"c": 1.0}
  with pytest.raises(TypeError, match="Bad arguments for penalty 'r1'"):
    get_penalty("r1", c=1.0)
  with pytest.raises(KeyError, match="Known penalty names"):
    get_penalty("wgan_gp")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["gradient_penalty", "dragan"])
def test_unit_norm_penalties_of_a_linear_d(mode, name):
  # ||grad D|| = ||w|| wherever the penalty is evaluated.
  got = _call(mode, PENALTIES.get(name), linear_d(W))
  np.testing.assert_allclose(got, (np.linalg.norm(W.astype(np.float64)) - 1) ** 2, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_r1_r2_of_linear_and_quadratic_d(mode):
  w2 = np.sum(W.astype(np.float64) ** 2)
  np.testing.assert_allclose(_call(mode, r1_penalty, linear_d(W)), w2, rtol=1e-5)
  np.testing.assert_allclose(_call(mode, r2_penalty, linear_d(W)), w2, rtol=1e-5)
  # grad of ||x||^2 / 2 is x: R1 = mean ||real||^2, R2 = mean ||fake||^2.
  sq = lambda x: np.mean(np.sum(x.astype(np.float64).reshape(B, -1) ** 2, axis=1))  # noqa: E731
  np.testing.assert_allclose(_call(mode, r1_penalty, quadratic_d), sq(REAL), rtol=1e-5)
  np.testing.assert_allclose(_call(mode, r2_penalty, quadratic_d), sq(FAKE), rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_penalty_interpolates_per_example(mode):
  # With D = ||x||^2 / 2 the gradient is x_hat itself, so the penalty reads off the points:
  # NumPy reference with the documented eps draw, one eps per example.
  eps = np.asarray(jax.random.uniform(KEY, (B, 1, 1, 1)), np.float64)
  x_hat = eps * REAL + (1 - eps) * FAKE
  ref = np.mean([(np.linalg.norm(x_hat[b]) - 1) ** 2 for b in range(B)])
  np.testing.assert_allclose(_call(mode, gradient_penalty, quadratic_d), ref, rtol=1e-5)
  # The points lie on the segments: real == fake makes the penalty independent of the key.
  at_real = [gradient_penalty(quadratic_d, REAL, REAL, jax.random.PRNGKey(s)) for s in (0, 1)]
  ref_real = np.mean([(np.linalg.norm(REAL[b].astype(np.float64)) - 1) ** 2 for b in range(B)])
  np.testing.assert_allclose(at_real, [ref_real] * 2, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_dragan_perturbs_the_real_batch_as_the_reference_implementation(mode):
  k_alpha, k_u = jax.random.split(KEY)
  alpha = np.asarray(jax.random.uniform(k_alpha, (B, 1, 1, 1)), np.float64)
  u = np.asarray(jax.random.uniform(k_u, REAL.shape), np.float64)
  real = REAL.astype(np.float64)
  x_p = real + 0.5 * real.std() * u   # get_perturbed_batch of github.com/kodalinaveen3/DRAGAN
  x_hat = real + alpha * (x_p - real)
  ref = np.mean([(np.linalg.norm(x_hat[b]) - 1) ** 2 for b in range(B)])
  # fake is unused: NaNs there cannot leak in.
  nan_fake = np.full_like(FAKE, np.nan)
  got = _call(mode, dragan_penalty, quadratic_d, fake=nan_fake)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  wider = get_penalty("dragan", c=2.0)(quadratic_d, REAL, FAKE, KEY)
  assert not np.isclose(wider, got)


def _loop_reference(d, x):
  """Per-example input gradients one at a time: grad of D(x_b[None])."""
  return np.stack([np.asarray(jax.grad(lambda xb: jnp.sum(d(xb[None])))(x[b]), np.float64)
                   for b in range(x.shape[0])])


@pytest.mark.parametrize("mode", MODES)
def test_penalties_of_a_nonlinear_d_match_a_per_example_loop(mode):
  sq = lambda g: np.sum(g.reshape(B, -1) ** 2, axis=1)  # noqa: E731
  np.testing.assert_allclose(mode(lambda x: penalties.input_gradients(mlp_d, x))(REAL),
                             _loop_reference(mlp_d, REAL), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(_call(mode, r1_penalty, mlp_d),
                             np.mean(sq(_loop_reference(mlp_d, REAL))), rtol=1e-5)
  np.testing.assert_allclose(_call(mode, r2_penalty, mlp_d),
                             np.mean(sq(_loop_reference(mlp_d, FAKE))), rtol=1e-5)
  eps = np.asarray(jax.random.uniform(KEY, (B, 1, 1, 1)))
  x_hat = (eps * REAL + (1 - eps) * FAKE).astype(np.float32)
  ref = np.mean((np.sqrt(sq(_loop_reference(mlp_d, x_hat))) - 1) ** 2)
  np.testing.assert_allclose(_call(mode, gradient_penalty, mlp_d), ref, rtol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_penalties_differentiate_through_d_params(mode):
  # Double backprop for D(x) = <w, x>: GP = (||w|| - 1)^2 -> 2 (||w|| - 1) w / ||w||;
  # R1 = ||w||^2 -> 2 w.
  w64 = W.astype(np.float64)
  n = np.linalg.norm(w64)
  grad = lambda fn: mode(jax.grad(lambda w: fn(linear_d(w), REAL, FAKE, KEY)))(W)  # noqa: E731
  np.testing.assert_allclose(grad(gradient_penalty), 2 * (n - 1) * w64 / n, rtol=1e-4)
  np.testing.assert_allclose(grad(dragan_penalty), 2 * (n - 1) * w64 / n, rtol=1e-4)
  np.testing.assert_allclose(grad(r1_penalty), 2 * w64, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_zero_input_gradient_gives_finite_gradients(name):
  # ||grad D|| = 0 must not produce NaN through the square root.
  fn = PENALTIES.get(name)
  value, g = jax.value_and_grad(lambda w: fn(linear_d(w), REAL, FAKE, KEY))(jnp.zeros(SHAPE))
  assert np.isfinite(value) and np.all(np.isfinite(g))
  expected = 1.0 if name in ("gradient_penalty", "dragan") else 0.0
  np.testing.assert_allclose(value, expected)


def test_input_validation():
  with pytest.raises(AssertionError):
    r1_penalty(quadratic_d, REAL, FAKE[:2], KEY)
  with pytest.raises(TypeError, match="float inputs"):
    r1_penalty(quadratic_d, REAL.astype(np.uint8), FAKE.astype(np.uint8), KEY)
  with pytest.raises(ValueError, match="one logit per example"):
    r1_penalty(lambda x: x.reshape(x.shape[0], -1), REAL, FAKE, KEY)


def test_penalty_in_a_flax_critic_loss_under_jit():
  import flax.linen as nn

  class Critic(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.tanh(nn.Dense(8)(x.reshape(x.shape[0], -1)))
      return nn.Dense(1)(x)[:, 0]

  critic = Critic()
  params = jax.jit(critic.init)(jax.random.PRNGKey(0), REAL)["params"]

  def loss(params, key):
    d = functools.partial(critic.apply, {"params": params})
    return jnp.mean(d(FAKE)) - jnp.mean(d(REAL)) + 10.0 * gradient_penalty(d, REAL, FAKE, key)

  # Eager == jit for double backprop is checked on small D above; here jit only.
  g = jax.jit(jax.grad(loss))(params, KEY)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
  # The output bias shifts D(real) and D(fake) alike and leaves grad_x D alone: zero gradient.
  np.testing.assert_allclose(g["Dense_1"]["bias"], 0.0, atol=1e-6)
  for path in [("Dense_0", "kernel"), ("Dense_0", "bias"), ("Dense_1", "kernel")]:
    assert np.any(np.abs(g[path[0]][path[1]]) > 1e-4)
