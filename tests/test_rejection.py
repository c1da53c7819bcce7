"""Discriminator rejection sampling against closed forms.

G is the identity on z ~ N(0, 1) and D returns the exact log density ratio of the target
N(0, S^2) to N(0, 1), log(1 / S) - x^2 (1 / S^2 - 1) / 2, which is at most log(1 / S) (at 0).
Exact rejection sampling then returns N(0, S^2) samples and accepts 1 / M = S of the draws
(S^m of the packs of m for a packed D, whose logit is the sum over the pack).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import losses, rejection
from gax.models.packing import Packed
from gax.steps import GAN, discriminator_logits, init_state

S = 0.5
N = 20000


class _Identity(nn.Module):

  @nn.compact
  def __call__(self, z, train=True):
    return z + 0.0 * self.param("unused", nn.initializers.zeros, (1,))


class _LogRatio(nn.Module):
  """Sum over the last axis of log N(x; 0, S^2) / N(x; 0, 1)."""

  @nn.compact
  def __call__(self, x, train=True):
    x = x + 0.0 * self.param("unused", nn.initializers.zeros, (1,))
    return jnp.sum(-math.log(S) - 0.5 * jnp.square(x) * (1.0 / S**2 - 1.0), axis=-1)


def _gan(degree=1):
  d = _LogRatio() if degree == 1 else Packed(_LogRatio(), degree)
  return GAN(_Identity(), d, losses.get_loss("non_saturating"), optax.sgd(0.1),
             optax.sgd(0.1), latent_dim=1)


@pytest.fixture(scope="module", params=[1, 2], ids=["unpacked", "packed2"])
def drawn(request):
  gan = _gan(request.param)
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  return request.param, rejection.rejection_sample(gan, state, jax.random.PRNGKey(1), N,
                                                   batch_size=4000)


def test_sigmoid_of_acceptance_logit_is_the_ratio_to_the_maximum():
  delta = jnp.array([-30.0, -5.0, -1.0, -1e-2, -1e-4])
  p = jax.nn.sigmoid(rejection.acceptance_logit(delta, 0.0, eps=0.0))
  np.testing.assert_allclose(p, np.exp(delta), rtol=1e-4)
  # A shift gamma multiplies the odds by exp(-gamma).
  f0 = rejection.acceptance_logit(delta, 0.0)
  np.testing.assert_allclose(rejection.acceptance_logit(delta, 0.0, gamma=2.0), f0 - 2.0)


def test_exact_drs_samples_the_target_and_accepts_one_in_m(drawn):
  degree, result = drawn
  x = result.samples[:, 0]
  assert result.samples.shape == (N, 1)
  # Sample-variance SE 2 S^4 / N ~ 0.0025; mean SE S / sqrt(N) ~ 0.0035.
  assert abs(np.mean(x)) < 0.015
  assert abs(np.var(x) - S**2) < 0.012
  # P(|x| < S) = erf(1 / sqrt 2) for N(0, S^2).
  assert abs(np.mean(np.abs(x) < S) - math.erf(1 / math.sqrt(2))) < 0.012
  # M = max logit = log(1 / S^degree) up to the burn-in's smallest |x|.
  np.testing.assert_allclose(result.max_logit, -degree * math.log(S), atol=1e-3)
  assert abs(result.acceptance - S**degree) < 0.015
  assert result.drawn >= N / S**degree * 0.9


def test_consecutive_samples_are_independent_within_and_across_packs(drawn):
  _, result = drawn
  pairs = result.samples[:, 0].reshape(-1, 2)  # pack mates when packed
  assert abs(np.corrcoef(pairs.T)[0, 1]) < 0.03  # SE 1 / sqrt(N / 2) ~ 0.01


def test_a_higher_percentile_rejects_more_and_concentrates_the_samples():
  gan = _gan()
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  res = [rejection.rejection_sample(gan, state, jax.random.PRNGKey(2), 4000, batch_size=2000,
                                    percentile=q) for q in (50.0, 90.0)]
  assert res[1].acceptance < res[0].acceptance
  assert np.var(res[1].samples) < np.var(res[0].samples)
  assert np.var(res[1].samples) < 0.8 * S**2  # sharper than the target itself


def test_the_sample_is_a_function_of_the_key():
  gan = _gan()
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  a, b, c = (rejection.rejection_sample(gan, state, jax.random.PRNGKey(k), 100, burn_in=100)
             for k in (3, 3, 4))
  np.testing.assert_array_equal(a.samples, b.samples)
  assert not np.array_equal(a.samples, c.samples)


def test_discriminator_logits_eager_equals_jit_and_the_module():
  gan = _gan(2)
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  x = jax.random.normal(jax.random.PRNGKey(5), (8, 1))
  eager = discriminator_logits(gan, state, x)
  jitted = jax.jit(lambda s, x: discriminator_logits(gan, s, x))(state, x)
  pairs = np.asarray(x).reshape(4, 2)
  want = np.sum(-math.log(S) - 0.5 * pairs**2 * (1 / S**2 - 1), axis=1)
  np.testing.assert_allclose(eager, want, rtol=1e-6)
  np.testing.assert_allclose(jitted, want, rtol=1e-6)


def test_bad_settings_and_exhausted_draws_are_errors():
  gan = _gan()
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="not both"):
    rejection.rejection_sample(gan, state, key, 10, gamma=1.0, percentile=50.0)
  with pytest.raises(ValueError, match="percentile"):
    rejection.rejection_sample(gan, state, key, 10, percentile=120.0)
  with pytest.raises(RuntimeError, match="accepted 0 of 10"):
    rejection.rejection_sample(gan, state, key, 10, gamma=60.0, burn_in=100, max_draws=3000,
                               batch_size=1000)


def test_long_draws_log_their_progress(monkeypatch):
  from absl import logging  # pylint: disable=g-import-not-at-top
  lines = []
  monkeypatch.setattr(rejection, "LOG_SECONDS", 0.0)
  monkeypatch.setattr(logging, "info", lambda msg, *args: lines.append(msg % args))
  gan = _gan()
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  rejection.rejection_sample(gan, state, jax.random.PRNGKey(6), 1500, batch_size=1000,
                             burn_in=100)
  # Before the first batch nothing is kept; before the second and third about S of 1000 each.
  assert lines[0] == ("Rejection sampling: 0 of 1500 samples kept from 0 draws (acceptance "
                      "0.00e+00, max logit 0.693)")
  assert lines[1].startswith("Rejection sampling: 5") and "from 1000 draws" in lines[1]
  assert "min left at this acceptance" in lines[1] and len(lines) == 3


class _Quadratic(nn.Module):
  """a + sum_j (b_j x_j + c_j x_j^2) over the last axis, all coefficients from 0."""

  @nn.compact
  def __call__(self, x, train=True):
    a = self.param("a", nn.initializers.zeros, ())
    b = self.param("b", nn.initializers.zeros, (x.shape[-1],))
    c = self.param("c", nn.initializers.zeros, (x.shape[-1],))
    return a + jnp.sum(b * x + c * jnp.square(x), axis=-1)


@pytest.mark.parametrize("degree", [1, 2], ids=["unpacked", "packed2"])
def test_calibration_fits_the_log_ratio_of_g_to_the_real_data(degree):
  # G: z ~ N(0, 1); data: N(0, S^2). The minimiser of D's cross-entropy has logit
  # log(1 / S) - x^2 (1 / S^2 - 1) / 2 per sample, summed over a pack: a quadratic D can
  # reach it exactly, (a, b, c) = (degree log(1 / S), 0, -(1 / S^2 - 1) / 2).
  d = _Quadratic() if degree == 1 else Packed(_Quadratic(), degree)
  gan = GAN(_Identity(), d, losses.get_loss("non_saturating"), optax.sgd(0.1), optax.sgd(0.1),
            latent_dim=1)
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  real = lambda i: S * np.random.default_rng([7, i]).standard_normal((2000, 1))
  new, loss = rejection.calibrate_discriminator(gan, state, real, jax.random.PRNGKey(8),
                                                steps=1500, batch_size=2000,
                                                learning_rate=0.03, b1=0.9)
  p = new.d.params
  np.testing.assert_allclose(p["a"], -degree * math.log(S), atol=0.06 * degree)
  np.testing.assert_allclose(p["b"], 0.0, atol=0.06)
  np.testing.assert_allclose(p["c"], -0.5 * (1 / S**2 - 1), atol=0.08)
  # The loss falls from 2 log 2 (D = 0) to the minimum, 2 log 2 - 2 JSD(p_data, p_g).
  assert loss[0] == pytest.approx(2 * math.log(2), rel=1e-5)
  assert loss[-100:].mean() < loss[0] - 0.05
  # Only D's params change; G's samples (and so DRS's draws) are those of `state`.
  assert new.g is state.g and new.d.opt_state is state.d.opt_state
  # DRS with the calibrated D samples the target.
  res = rejection.rejection_sample(gan, new, jax.random.PRNGKey(1), 10000, batch_size=4000)
  assert abs(np.var(res.samples) - S**2) < 0.02


def test_calibration_refuses_bad_input():
  gan = _gan()
  state = init_state(gan, jax.random.PRNGKey(0), (1,))
  key = jax.random.PRNGKey(0)
  ok = lambda i: np.zeros((10, 1))
  with pytest.raises(ValueError, match="shape"):
    rejection.calibrate_discriminator(gan, state, lambda i: np.zeros((10, 2)), key, steps=1,
                                      batch_size=10)
  with pytest.raises(ValueError, match="learning_rate"):
    rejection.calibrate_discriminator(gan, state, ok, key, steps=1, batch_size=10,
                                      learning_rate=0.0)
  with pytest.raises(ValueError, match="steps"):
    rejection.calibrate_discriminator(gan, state, ok, key, steps=0, batch_size=10)
  for log_every, calls in ((0, 3), (1, 1)):  # found at the end, or at the first report
    seen = []
    with pytest.raises(FloatingPointError, match="step 0"):
      rejection.calibrate_discriminator(
          gan, state, lambda i: seen.append(i) or np.full((10, 1), np.inf), key, steps=3,
          batch_size=10, log_every=log_every)
    assert len(seen) == calls
  packed = _gan(2)
  assert [rejection.whole_packs(packed, n) for n in (9, 10)] == [10, 10]
  assert rejection.whole_packs(gan, 9) == 9
  with pytest.raises(ValueError, match="multiple"):
    rejection.calibrate_discriminator(packed, init_state(packed, key, (1,)), ok, key, steps=1,
                                      batch_size=9)
