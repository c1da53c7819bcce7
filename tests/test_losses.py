"""Each loss against its formula, written with probabilities in float64 NumPy; the losses with
batch means or random labels also under `jit` and under `pmap` against one device."""

import functools

import jax
import numpy as np
import pytest

from gax import losses

RNG = np.random.default_rng(0)
REAL = RNG.normal(0.5, 2.0, size=32).astype(np.float32)
FAKE = RNG.normal(-0.5, 2.0, size=32).astype(np.float32)
N_DEV = 4
AXIS = "i"


def _sig(x):
  return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _log_sig(x):
  return -np.logaddexp(0.0, -x.astype(np.float64))


def _ra(f1, f2):
  """A relativistic average pair (D loss, G loss) from the paper's f1, f2, in float64."""

  def d(r, f):
    r, f = r.astype(np.float64), f.astype(np.float64)
    return np.mean(f1(r - f.mean())) + np.mean(f2(f - r.mean()))

  def g(f, r):
    r, f = r.astype(np.float64), f.astype(np.float64)
    return np.mean(f1(f - r.mean())) + np.mean(f2(r - f.mean()))

  return d, g


RA_S = _ra(lambda y: -np.log(_sig(y)), lambda y: -np.log(1 - _sig(y)))
RA_LS = _ra(lambda y: (y - 1) ** 2, lambda y: (y + 1) ** 2)
RA_HINGE = _ra(lambda y: np.maximum(0, 1 - y), lambda y: np.maximum(0, 1 + y))
RELATIVISTIC = ["relativistic_average", "relativistic_average_least_squares",
                "relativistic_average_hinge"]

REFERENCE_D = {
    "minimax": lambda r, f: -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f))),
    "non_saturating": lambda r, f: -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f))),
    "wasserstein": lambda r, f: np.mean(f) - np.mean(r),
    "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    "least_squares": lambda r, f: 0.5 * np.mean((r - 1.0) ** 2) + 0.5 * np.mean(f ** 2),
    "relativistic_average": RA_S[0],
    "relativistic_average_least_squares": RA_LS[0],
    "relativistic_average_hinge": RA_HINGE[0],
}
REFERENCE_G = {
    "minimax": lambda f, r: np.mean(np.log(1 - _sig(f))),
    "non_saturating": lambda f, r: -np.mean(np.log(_sig(f))),
    "wasserstein": lambda f, r: -np.mean(f),
    "hinge": lambda f, r: -np.mean(f),
    "least_squares": lambda f, r: 0.5 * np.mean((f - 1.0) ** 2),
    "relativistic_average": RA_S[1],
    "relativistic_average_least_squares": RA_LS[1],
    "relativistic_average_hinge": RA_HINGE[1],
}


def _pmap(fn, *args):
  """`fn` under `pmap` over N_DEV devices, each argument split along its batch axis."""
  assert jax.device_count() >= N_DEV, "tests/conftest.py forces 4 CPU devices"
  split = [np.reshape(a, (N_DEV, -1, *np.shape(a)[1:])) for a in args]
  return jax.pmap(fn, axis_name=AXIS, devices=jax.devices()[:N_DEV])(*split)


def test_every_registered_loss_has_a_reference():
  assert set(losses.LOSSES.names()) == set(REFERENCE_D) == set(REFERENCE_G)


@pytest.mark.parametrize("name", sorted(REFERENCE_D))
def test_d_loss_matches_formula(name):
  got = losses.get_loss(name).d(REAL, FAKE)
  np.testing.assert_allclose(got, REFERENCE_D[name](REAL, FAKE), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCE_G))
def test_g_loss_matches_formula(name):
  loss = losses.get_loss(name)
  got = loss.g(FAKE, REAL if loss.g_needs_real else None)
  np.testing.assert_allclose(got, REFERENCE_G[name](FAKE, REAL), rtol=1e-5, atol=1e-6)


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
  with pytest.raises(KeyError,
                     match=r"Unknown loss 'hinj'.*Did you mean 'hinge'.*Known loss names"):
    losses.get_loss("hinj")


def test_logits_of_wrong_shape_are_rejected():
  with pytest.raises(AssertionError):
    losses.hinge_d_loss(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32))


# ----------------------------------------------------------------------------- get_loss


def test_get_loss_returns_plain_entries_unchanged_whatever_the_axis():
  for name in ["minimax", "non_saturating", "wasserstein", "hinge", "least_squares"]:
    assert isinstance(losses.LOSSES.get(name), losses.GANLoss)
    assert losses.get_loss(name) is losses.get_loss(name, axis_name=AXIS)


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_entries_are_factories_of_the_axis(name):
  entry = losses.LOSSES.get(name)  # what config validation calls
  assert callable(entry) and not isinstance(entry, losses.GANLoss)
  loss = losses.get_loss(name, axis_name=AXIS)
  assert isinstance(loss, losses.GANLoss)
  assert loss.g_needs_real and not loss.d_needs_key


# --------------------------------------------------------------------------- relativistic


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_g_loss_without_real_logits_is_a_clear_error(name):
  with pytest.raises(ValueError, match=r"needs real_logits.*g_needs_real"):
    losses.get_loss(name).g(FAKE, None)


def test_relativistic_average_is_exact_where_sigmoid_saturates():
  real = np.array([300.0, 100.0], np.float32)  # mean 200
  fake = np.array([-300.0, -100.0], np.float32)  # mean -200
  loss = losses.get_loss("relativistic_average")
  # All relative logits are +-100 or more: D's loss is ~0 and G's is the sum of the margins.
  np.testing.assert_allclose(loss.d(real, fake), 0.0, atol=1e-6)
  np.testing.assert_allclose(loss.g(fake, real), 400.0 + 400.0, rtol=1e-6)
  assert np.all(np.isfinite(jax.grad(loss.g)(fake, real)))


def _linear_critic(w, x):
  return x @ w[:-1] + w[-1]


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_under_pmap_equals_one_device(name):
  # Value and gradient of both players' losses: N devices with batch B, averaging gradients
  # across devices as the train step does, must match one device with batch N * B.
  x_real = RNG.normal(1.0, 1.0, size=(16, 3)).astype(np.float32)
  x_fake = RNG.normal(-1.0, 1.5, size=(16, 3)).astype(np.float32)
  w = np.array([0.5, -0.3, 0.8, 0.1], np.float32)

  def losses_and_grads(w, xr, xf, axis_name):
    loss = losses.get_loss(name, axis_name)
    d = lambda w: loss.d(_linear_critic(w, xr), _linear_critic(w, xf))
    g = lambda xf: loss.g(_linear_critic(w, xf), _linear_critic(w, xr))
    out = (d(w), g(xf), jax.grad(d)(w), jax.grad(g)(xf))
    if axis_name is None:
      return out
    # The step averages D's parameter gradients; the G gradient w.r.t. each device's own
    # fakes is per-example and is compared concatenated.
    return (*out[:2], jax.lax.pmean(out[2], axis_name), out[3])

  one = jax.jit(functools.partial(losses_and_grads, axis_name=None))(w, x_real, x_fake)
  w_rep = np.broadcast_to(w, (N_DEV, *w.shape))
  many = jax.pmap(functools.partial(losses_and_grads, axis_name=AXIS), axis_name=AXIS,
                  devices=jax.devices()[:N_DEV])(w_rep, x_real.reshape(N_DEV, -1, 3),
                                                 x_fake.reshape(N_DEV, -1, 3))
  d_ref = REFERENCE_D[name](_linear_critic(w, x_real), _linear_critic(w, x_fake))
  np.testing.assert_allclose(one[0], d_ref, rtol=1e-5)
  for dev in range(N_DEV):  # every device holds the global loss
    np.testing.assert_allclose(many[0][dev], one[0], rtol=1e-5)
    np.testing.assert_allclose(many[1][dev], one[1], rtol=1e-5)
    np.testing.assert_allclose(many[2][dev], one[2], rtol=1e-5, atol=1e-6)
  # Per-example G gradients: under pmap, autodiff differentiates the sum of the N device
  # losses (psum's transpose is a psum), which the step's pmean turns into their mean.
  np.testing.assert_allclose(many[3].reshape(-1, 3) / N_DEV, one[3], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------- label tricks


def _bce(logits, t):
  """Mean binary cross-entropy with soft targets, float64: -t log s(l) - (1-t) log(1-s(l))."""
  l = logits.astype(np.float64)
  return np.mean(-t * _log_sig(l) - (1 - t) * _log_sig(-l))


def test_bce_with_soft_targets_matches_formula_and_is_exact_at_hard_targets():
  t = RNG.uniform(0.0, 1.2, size=32)
  np.testing.assert_allclose(losses.binary_cross_entropy_with_logits(REAL, t), _bce(REAL, t),
                             rtol=1e-5)
  # softplus(l) - l would round to 0 for l = 20; the loss is softplus(-20) = 2.06e-9.
  np.testing.assert_allclose(
      losses.binary_cross_entropy_with_logits(np.array([20.0], np.float32), 1.0),
      np.log1p(np.exp(-20.0)), rtol=1e-5)


def test_with_no_label_trick_is_the_plain_cross_entropy():
  loss = losses.with_labels(losses.get_loss("minimax"))
  assert not loss.d_needs_key and loss.g is losses.minimax_g_loss
  np.testing.assert_allclose(loss.d(REAL, FAKE), losses.minimax_d_loss(REAL, FAKE), rtol=1e-6)


def test_one_sided_label_smoothing_matches_formula():
  base = losses.get_loss("non_saturating")
  loss = losses.one_sided_label_smoothing(base)
  assert not loss.d_needs_key and not loss.g_needs_real
  assert loss.g is base.g  # G's loss is unchanged
  want = (-np.mean(0.9 * np.log(_sig(REAL)) + 0.1 * np.log(1 - _sig(REAL))) -
          np.mean(np.log(1 - _sig(FAKE))))
  np.testing.assert_allclose(loss.d(REAL, FAKE), want, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(loss.d)(REAL[:, None], FAKE[:, None]), want, rtol=1e-5)
  # Exact and finite at saturated logits; the gradient is (sigmoid(l) - t) / B.
  real = np.array([200.0, -200.0], np.float32)
  # Real term (0.1 * 200 + 0.9 * 200) / 2, fake term (0 + 200) / 2.
  np.testing.assert_allclose(loss.d(real, -real), 200.0, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(loss.d)(real, -real), [(1 - 0.9) / 2, (0 - 0.9) / 2],
                             atol=1e-6)


def test_soft_labels_draw_targets_in_their_ranges_and_the_loss_uses_them():
  loss = losses.soft_labels(losses.get_loss("minimax"))
  assert loss.d_needs_key and loss.g is losses.minimax_g_loss
  key = jax.random.PRNGKey(3)
  t_real, t_fake = map(np.asarray, loss.d.targets(key, 4096, 2048))
  assert t_real.shape == (4096,) and t_fake.shape == (2048,)
  assert 0.7 <= t_real.min() and t_real.max() <= 1.2 and 0.0 <= t_fake.min() <= t_fake.max() <= 0.3
  # Uniform: mean (low + high) / 2 within 5 standard errors.
  assert abs(t_real.mean() - 0.95) < 5 * 0.5 / np.sqrt(12 * 4096)
  assert abs(t_fake.mean() - 0.15) < 5 * 0.3 / np.sqrt(12 * 2048)
  t_real, t_fake = map(np.asarray, loss.d.targets(key, 32, 32))
  want = _bce(REAL, t_real) + _bce(FAKE, t_fake)
  np.testing.assert_allclose(loss.d(REAL, FAKE, key), want, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(loss.d)(REAL, FAKE, key), want, rtol=1e-5)
  # A fresh key draws fresh targets; the gradient is (sigmoid(l) - t) / B per example.
  assert not np.allclose(loss.d(REAL, FAKE, jax.random.PRNGKey(4)), want)
  np.testing.assert_allclose(jax.grad(loss.d)(REAL, FAKE, key), (_sig(REAL) - t_real) / 32,
                             atol=1e-6)


def test_noisy_labels_flip_each_label_with_the_given_probability():
  loss = losses.noisy_labels(losses.get_loss("non_saturating"), flip_prob=0.2)
  assert loss.d_needs_key
  n = 8192
  t_real, t_fake = map(np.asarray, loss.d.targets(jax.random.PRNGKey(0), n, n))
  assert set(np.unique(t_real)) <= {0.0, 1.0} and set(np.unique(t_fake)) <= {0.0, 1.0}
  tol = 5 * np.sqrt(0.2 * 0.8 / n)
  assert abs(np.mean(t_real == 0.0) - 0.2) < tol and abs(np.mean(t_fake == 1.0) - 0.2) < tol
  # Flips of the real and the fake batch are independent draws.
  assert not np.array_equal(t_real == 0.0, t_fake == 1.0)


def test_label_tricks_compose():
  base = losses.get_loss("non_saturating")
  smooth_noisy = losses.noisy_labels(losses.one_sided_label_smoothing(base), 0.25)
  assert smooth_noisy.d_needs_key and smooth_noisy.g is base.g
  t_real, t_fake = map(np.asarray, smooth_noisy.d.targets(jax.random.PRNGKey(1), 4096, 4096))
  # A flipped real example gets the fake target 0, a flipped fake the smoothed real target.
  assert set(np.unique(t_real)) == {0.0, np.float32(0.9)}
  assert set(np.unique(t_fake)) == {0.0, np.float32(0.9)}
  assert abs(np.mean(t_real == 0.0) - 0.25) < 0.04
  # The same composition in one call, in either order, is the same loss.
  assert smooth_noisy.d == losses.with_labels(base, real=0.9, flip_prob=0.25).d
  assert smooth_noisy.d == losses.one_sided_label_smoothing(losses.noisy_labels(base, 0.25)).d
  soft_noisy = losses.noisy_labels(losses.soft_labels(base), 0.25)
  t_real, _ = map(np.asarray, soft_noisy.d.targets(jax.random.PRNGKey(2), 4096, 4096))
  in_fake = (t_real >= 0.0) & (t_real <= 0.3)
  assert np.all(in_fake | ((t_real >= 0.7) & (t_real <= 1.2)))
  assert abs(np.mean(in_fake) - 0.25) < 0.04


def test_random_labels_under_pmap_equal_one_device():
  loss_1 = losses.noisy_labels(losses.soft_labels(losses.get_loss("minimax")), 0.1)
  loss_n = losses.noisy_labels(
      losses.soft_labels(losses.get_loss("minimax"), axis_name=AXIS), 0.1)
  assert loss_n.d.axis_name == AXIS
  key = jax.random.PRNGKey(7)
  one = jax.jit(loss_1.d)(REAL, FAKE, key)
  t_one = loss_1.d.targets(key, 32, 32)

  def per_device(r, f):
    return loss_n.d(r, f, key), loss_n.d.targets(key, r.shape[0], f.shape[0])

  many, t_many = _pmap(per_device, REAL, FAKE)
  # The step averages per-device losses (and gradients) across devices.
  np.testing.assert_allclose(np.mean(many), one, rtol=1e-5)
  np.testing.assert_array_equal(np.reshape(t_many[0], -1), t_one[0])
  np.testing.assert_array_equal(np.reshape(t_many[1], -1), t_one[1])


@pytest.mark.parametrize("name", ["wasserstein", "hinge", "least_squares", *RELATIVISTIC])
def test_label_tricks_reject_losses_that_are_not_cross_entropy(name):
  with pytest.raises(ValueError, match=r"apply only to the cross-entropy.*'minimax', "
                                       r"'non_saturating'; this loss's discriminator loss is"):
    losses.with_labels(losses.get_loss(name), real=0.9)


def test_random_labels_without_a_key_are_a_clear_error():
  loss = losses.noisy_labels(losses.get_loss("minimax"), 0.1)
  with pytest.raises(ValueError, match=r"random.*need a PRNG key.*d_needs_key"):
    loss.d(REAL, FAKE)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(flip_prob=0.5), ValueError, r"0 <= flip_prob < 0.5"),
    (dict(flip_prob=-0.1), ValueError, r"0 <= flip_prob < 0.5"),
    (dict(flip_prob=True), ValueError, r"0 <= flip_prob < 0.5"),
    (dict(real=(1.2, 0.7)), ValueError, r"low < high"),
    (dict(real=(0.7, float("inf"))), ValueError, r"finite"),
    (dict(real=float("nan")), ValueError, r"finite"),
    (dict(real=0.2, fake=(0.0, 0.3)), ValueError, r"real target must exceed every fake"),
    (dict(fake=1.0), ValueError, r"real target must exceed every fake"),
    (dict(real="0.9"), TypeError, r"a number or a \(low, high\) pair"),
    (dict(real=(0.7, 0.8, 0.9)), TypeError, r"a number or a \(low, high\) pair"),
])
def test_bad_label_settings_are_rejected(kwargs, error, match):
  with pytest.raises(error, match=match):
    losses.with_labels(losses.get_loss("minimax"), **kwargs)


def test_a_label_set_twice_or_on_two_axes_is_rejected():
  smoothed = losses.one_sided_label_smoothing(losses.get_loss("minimax"))
  with pytest.raises(ValueError, match=r"real label is already set to 0.9"):
    losses.soft_labels(smoothed)
  with pytest.raises(ValueError, match=r"axis_name='i'.*axis_name='j'"):
    losses.noisy_labels(losses.soft_labels(losses.get_loss("minimax"), axis_name="i"), 0.1,
                        axis_name="j")
  with pytest.raises(ValueError, match=r"smoothed real target must be a number in \(0, 1\]"):
    losses.one_sided_label_smoothing(losses.get_loss("minimax"), real=1.1)
  with pytest.raises(TypeError, match=r"wraps a GANLoss"):
    losses.with_labels("minimax", real=0.9)


# ------------------------------------------------------------------------ feature matching


def test_feature_matching_matches_formula_and_pmap():
  real = RNG.normal(size=(16, 5)).astype(np.float32)
  fake = RNG.normal(0.3, 2.0, size=(16, 5)).astype(np.float32)
  want = np.sum((real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)) ** 2)
  np.testing.assert_allclose(losses.feature_matching_loss(real, fake), want, rtol=1e-5)
  # Trailing axes are flattened; a different fake batch size is fine.
  np.testing.assert_allclose(
      losses.feature_matching_loss(real.reshape(16, 5, 1), fake[:8].reshape(8, 5, 1)),
      np.sum((real.mean(0) - fake[:8].mean(0)) ** 2), rtol=1e-5)

  def value_and_grad(r, f, axis_name):
    return jax.value_and_grad(losses.feature_matching_loss, argnums=1)(r, f, axis_name)

  one, g_one = jax.jit(functools.partial(value_and_grad, axis_name=None))(real, fake)
  many, g_many = _pmap(functools.partial(value_and_grad, axis_name=AXIS), real, fake)
  np.testing.assert_allclose(many, np.full(N_DEV, one), rtol=1e-5)
  # Per-example gradients 2 (mean_f - mean_r) / B with B the global batch; under pmap the
  # gradient is that of the sum of the N per-device losses, which the step averages.
  np.testing.assert_allclose(g_many.reshape(16, 5) / N_DEV, g_one, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(g_one, np.broadcast_to(2 * (fake.mean(0) - real.mean(0)) / 16,
                                                    (16, 5)), rtol=1e-4, atol=1e-7)


def test_feature_matching_rejects_mismatched_features():
  with pytest.raises(ValueError, match=r"features differ in size"):
    losses.feature_matching_loss(np.zeros((4, 5), np.float32), np.zeros((4, 6), np.float32))
  with pytest.raises(ValueError, match=r"rank >= 2"):
    losses.feature_matching_loss(np.zeros((4,), np.float32), np.zeros((4,), np.float32))


# ------------------------------------------------------------------------------- AC-GAN


def test_auxiliary_classifier_loss_matches_a_loop():
  logits = RNG.normal(0.0, 3.0, size=(10, 4)).astype(np.float32)
  labels = RNG.integers(0, 4, size=10)
  want = 0.0
  for row, c in zip(logits.astype(np.float64), labels):
    want -= row[c] - np.log(np.sum(np.exp(row)))
  want /= len(labels)
  got = losses.auxiliary_classifier_loss(logits, labels)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(losses.auxiliary_classifier_loss)(logits, labels), want,
                             rtol=1e-5)
  # The gradient is (softmax - one_hot) / B.
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  np.testing.assert_allclose(
      jax.grad(losses.auxiliary_classifier_loss)(logits, labels),
      (p - np.eye(4)[labels]) / 10, atol=1e-6)


def test_auxiliary_classifier_loss_rejects_bad_labels():
  logits = np.zeros((3, 4), np.float32)
  assert np.isnan(losses.auxiliary_classifier_loss(logits, np.array([0, 4, 1])))
  assert np.isnan(losses.auxiliary_classifier_loss(logits, np.array([0, -1, 1])))
  with pytest.raises(TypeError, match=r"integer class indices"):
    losses.auxiliary_classifier_loss(logits, np.array([0.0, 1.0, 2.0]))
  with pytest.raises(ValueError, match=r"shape of class_logits"):
    losses.auxiliary_classifier_loss(logits, np.array([0, 1]))


# ------------------------------------------------------------------------------- VAE-GAN


def _focal_reference(q, x, gamma):
  """A direct loop over examples and pixels, float64."""
  total = 0.0
  for qb, xb in zip(q.reshape(len(q), -1), x.reshape(len(x), -1)):
    for qi, xi in zip(qb.astype(np.float64), xb.astype(np.float64)):
      p = (xi + 1) / 2
      total -= p * (1 - qi) ** gamma * np.log(qi) + (1 - p) * qi ** gamma * np.log(1 - qi)
  return total / len(q)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_reconstruction_loss_matches_a_loop(gamma):
  x = RNG.uniform(-1, 1, size=(3, 4, 4, 1)).astype(np.float32)
  x_recon = RNG.uniform(-0.95, 0.95, size=(3, 4, 4, 1)).astype(np.float32)
  want = _focal_reference((x_recon + 1) / 2, x, gamma)
  np.testing.assert_allclose(losses.focal_reconstruction_loss(x_recon, x, gamma), want,
                             rtol=1e-5)
  # Logits of the same q give the same loss.
  logits = np.log((1 + x_recon) / (1 - x_recon))
  np.testing.assert_allclose(
      losses.focal_reconstruction_loss(logits, x, gamma, from_logits=True), want, rtol=1e-4)


def test_focal_reconstruction_loss_at_gamma_0_is_binary_cross_entropy():
  x = RNG.uniform(-1, 1, size=(5, 6)).astype(np.float32)
  x_recon = RNG.uniform(-0.99, 0.99, size=(5, 6)).astype(np.float32)
  p, q = (x.astype(np.float64) + 1) / 2, (x_recon.astype(np.float64) + 1) / 2
  bce = np.mean(np.sum(-(p * np.log(q) + (1 - p) * np.log(1 - q)), axis=1))
  np.testing.assert_allclose(losses.focal_reconstruction_loss(x_recon, x, gamma=0.0), bce,
                             rtol=1e-5)
  # Focusing only down-weights: the loss is smaller for gamma > 0.
  assert losses.focal_reconstruction_loss(x_recon, x, gamma=2.0) < bce


def test_focal_reconstruction_loss_is_finite_at_saturated_outputs():
  x = np.array([[-1.0, 1.0, 0.0]], np.float32)
  x_recon = np.array([[-1.0, 1.0, 1.0]], np.float32)  # tanh outputs that reached +-1
  for gamma in [0.0, 0.5, 2.0]:
    value, grad = jax.value_and_grad(losses.focal_reconstruction_loss)(x_recon, x, gamma)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    logits = np.array([[-300.0, 300.0, 300.0]], np.float32)
    value, grad = jax.value_and_grad(
        functools.partial(losses.focal_reconstruction_loss, gamma=gamma, from_logits=True))(
            logits, x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_focal_reconstruction_loss_rejects_bad_arguments():
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=r"gamma must be a finite number >= 0"):
    losses.focal_reconstruction_loss(x, x, gamma=-1.0)
  with pytest.raises(ValueError, match=r"same shape"):
    losses.focal_reconstruction_loss(x, np.zeros((2, 4), np.float32))


def test_gaussian_kl_matches_formula_and_vanishes_at_the_prior():
  mean = RNG.normal(size=(6, 8)).astype(np.float32)
  log_var = RNG.normal(0.0, 0.7, size=(6, 8)).astype(np.float32)
  m, lv = mean.astype(np.float64), log_var.astype(np.float64)
  want = np.mean(np.sum(0.5 * (np.exp(lv) + m ** 2 - 1 - lv), axis=1))
  np.testing.assert_allclose(losses.gaussian_kl(mean, log_var), want, rtol=1e-5)
  zeros = np.zeros((6, 8), np.float32)
  assert losses.gaussian_kl(zeros, zeros) == 0.0
  np.testing.assert_allclose(jax.grad(losses.gaussian_kl, argnums=(0, 1))(zeros, zeros),
                             [zeros, zeros])
  assert losses.gaussian_kl(zeros, np.full((6, 8), 1e-3, np.float32)) > 0.0
  with pytest.raises(ValueError, match=r"same shape"):
    losses.gaussian_kl(zeros, zeros[:, :4])
