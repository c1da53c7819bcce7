"""Each loss against its formula, written with probabilities in float64 NumPy."""

import jax
import numpy as np
import pytest

from gax import losses

RNG = np.random.default_rng(0)
REAL = RNG.normal(0.5, 2.0, size=32).astype(np.float32)
FAKE = RNG.normal(-0.5, 2.0, size=32).astype(np.float32)


def _sig(x):
  return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


REFERENCE_D = {
    "minimax": lambda r, f: -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f))),
    "non_saturating": lambda r, f: -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f))),
    "wasserstein": lambda r, f: np.mean(f) - np.mean(r),
    "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    "least_squares": lambda r, f: 0.5 * np.mean((r - 1.0) ** 2) + 0.5 * np.mean(f ** 2),
}
REFERENCE_G = {
    "minimax": lambda f: np.mean(np.log(1 - _sig(f))),
    "non_saturating": lambda f: -np.mean(np.log(_sig(f))),
    "wasserstein": lambda f: -np.mean(f),
    "hinge": lambda f: -np.mean(f),
    "least_squares": lambda f: 0.5 * np.mean((f - 1.0) ** 2),
}


def test_every_registered_loss_has_a_reference():
  assert set(losses.LOSSES.names()) == set(REFERENCE_D) == set(REFERENCE_G)


@pytest.mark.parametrize("name", sorted(REFERENCE_D))
def test_d_loss_matches_formula(name):
  got = losses.get_loss(name).d(REAL, FAKE)
  np.testing.assert_allclose(got, REFERENCE_D[name](REAL, FAKE), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCE_G))
def test_g_loss_matches_formula(name):
  got = losses.get_loss(name).g(FAKE, None)
  np.testing.assert_allclose(got, REFERENCE_G[name](FAKE), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCE_D))
def test_losses_accept_b1_logits_and_jit(name):
  loss = losses.get_loss(name)
  eager = loss.d(REAL, FAKE)
  jitted = jax.jit(loss.d)(REAL[:, None], FAKE[:, None])
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)


@pytest.mark.parametrize("name", ["minimax", "non_saturating"])
def test_saturated_logits_stay_finite_with_the_right_gradient(name):
  # Where sigmoid rounds to 0 or 1 in float32, the log-probabilities must still be exact.
  loss = losses.get_loss(name)
  real = np.array([-200.0, 200.0], np.float32)
  fake = np.array([200.0, -200.0], np.float32)
  d = loss.d(real, fake)
  np.testing.assert_allclose(d, (200.0 + 0.0 + 200.0 + 0.0) / 2, rtol=1e-6)
  gr = jax.grad(lambda f: loss.g(f, None))(fake)
  assert np.all(np.isfinite(gr))
  # d/dl softplus(-l) = -sigmoid(-l): -1/2 for the confidently-rejected fake (mean over 2).
  if name == "non_saturating":
    np.testing.assert_allclose(gr, [0.0, -0.5], atol=1e-6)


def test_non_saturating_gradient_is_strong_where_minimax_saturates():
  # Goodfellow et al. 2014, sec. 3: early on D rejects fakes confidently (D(G(z)) ~ 0), where
  # log(1 - D) has vanishing gradient and -log D does not.
  fake = np.array([-8.0], np.float32)
  g_minimax = jax.grad(lambda f: losses.minimax_g_loss(f))(fake)
  g_ns = jax.grad(lambda f: losses.non_saturating_g_loss(f))(fake)
  assert abs(g_minimax[0]) < 1e-3 < 0.9 < abs(g_ns[0])


def test_unknown_loss_is_a_clear_error():
  with pytest.raises(KeyError, match=r"Unknown loss 'hinj'.*Did you mean 'hinge'.*Known loss names"):
    losses.get_loss("hinj")


def test_logits_of_wrong_shape_are_rejected():
  with pytest.raises(AssertionError):
    losses.hinge_d_loss(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32))
