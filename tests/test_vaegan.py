"""The VAE-GAN step: each player's update against losses written from the formulas, eager ==
jit == pmap, the KL term's closed form, and a sanity check that reconstructions improve."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import models, parallel
from gax.vaegan import (VAEGAN, DCGANEncoder, init_vaegan_state, jit_vaegan_train_step,
                        pmap_vaegan_train_step, reconstruct, vaegan_train_step)

B, N_DEV, LATENT = 8, 4, 4
SHAPE = (8, 8, 1)
LR = 0.1


def _model(axis_name=None, tx=None, **weights):
  g, d = models.MODELS.build("dcgan", data_shape=SHAPE, width=4, axis_name=axis_name)
  e = DCGANEncoder(resolution=SHAPE[0], latent_dim=LATENT, width=4, axis_name=axis_name)
  tx = tx or optax.adam(1e-3, 0.5)
  return VAEGAN(e, g, d, tx, tx, tx, latent_dim=LATENT, axis_name=axis_name, **weights)


def _batch(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (B, *SHAPE), dtype=np.uint8)


def _close(a, b, atol=2e-5):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4), a, b)


# --- Updates against references written from the formulas -------------------------------


def _apply(module, params, model_state, x, sow=False):
  """Train-mode apply, with D's sown features when `sow`."""
  out, new = module.apply({"params": params, **model_state}, x, train=True,
                          mutable=["batch_stats", *(["intermediates"] if sow else [])])
  return (out, new["intermediates"]["features"][0]) if sow else out


def _focal(x_rec, x, gamma):  # Lin et al. 2017, expected over Bernoulli((x + 1) / 2) pixels
  q = jnp.clip((x_rec + 1) / 2, 1e-6, 1 - 1e-6)
  p = (x + 1) / 2
  per_pixel = -(p * (1 - q) ** gamma * jnp.log(q) + (1 - p) * q ** gamma * jnp.log(1 - q))
  return jnp.mean(jnp.sum(per_pixel, axis=(1, 2, 3)))


def test_each_player_takes_an_sgd_step_on_its_own_loss():
  # Larsen et al. 2016, alg. 1, with every term switched on and non-default weights. D's
  # features are small at init (N(0, 0.02) weights): a large feat_w makes that term's share
  # of E's update (~1e-4) well above the tolerance.
  kl_w, rec_w, feat_w, gamma, gan_w = 0.7, 1.3, 10.0, 2.0, 0.6
  model = _model(tx=optax.sgd(LR), kl_weight=kl_w, recon_weight=rec_w,
                 feature_recon_weight=feat_w, gamma=gamma, gan_weight=gan_w)
  state = init_vaegan_state(model, jax.random.PRNGKey(0), SHAPE)
  batch = _batch()
  x = batch.astype(np.float32) / 127.5 - 1.0
  _, eps_key, prior_key, _ = jax.random.split(state.key, 4)
  eps = jax.random.normal(eps_key, (B, LATENT))
  z_p = jax.random.normal(prior_key, (B, LATENT))
  e, g, d = state.e, state.g, state.d
  ls = jax.nn.log_sigmoid

  def parts(pe, pg, pd):
    mu, lv = _apply(model.encoder, pe, e.model_state, x)
    kl = jnp.mean(0.5 * jnp.sum(jnp.exp(lv) + mu ** 2 - 1 - lv, axis=1))
    x_rec = _apply(model.generator, pg, g.model_state, mu + jnp.exp(lv / 2) * eps)
    x_p = _apply(model.generator, pg, g.model_state, z_p)
    real_l, real_f = _apply(model.discriminator, pd, d.model_state, x, sow=True)
    rec_l, rec_f = _apply(model.discriminator, pd, d.model_state, x_rec, sow=True)
    prior_l = _apply(model.discriminator, pd, d.model_state, x_p)
    feat = jnp.mean(0.5 * jnp.sum((rec_f - real_f) ** 2, axis=1))
    l_rec = rec_w * _focal(x_rec, x, gamma) + feat_w * feat
    return dict(
        e=kl_w * kl + l_rec,
        g=l_rec - gan_w * (jnp.mean(ls(prior_l)) + jnp.mean(ls(rec_l))),
        d=-jnp.mean(ls(real_l)) - jnp.mean(ls(-prior_l)) - jnp.mean(ls(-rec_l)),
        kl=kl)

  @jax.jit
  def reference(p0):
    grads = [jax.grad(lambda p, i=i, n=n: parts(*p0[:i], p, *p0[i + 1:])[n])(p0[i])
             for i, n in enumerate("egd")]
    return parts(*p0), grads

  p0 = (e.params, g.params, d.params)
  ref, ref_grads = reference(p0)
  new, metrics = jax.jit(functools.partial(vaegan_train_step, model))(state, batch)
  for name, loss in (("e_loss", "e"), ("g_loss", "g"), ("d_loss", "d"), ("kl", "kl")):
    # atol: the reference's exp(lv) - 1 loses digits to cancellation at lv ~ 0 (KL ~ 1e-4).
    np.testing.assert_allclose(metrics[name], ref[loss], rtol=2e-5, atol=1e-7)
  for player, old, grad in zip((new.e, new.g, new.d), p0, ref_grads):
    _close(player.params, jax.tree_util.tree_map(lambda p, gr: p - LR * gr, old, grad), atol=1e-6)
  np.testing.assert_allclose(metrics["e_grad_norm"], optax.tree.norm(ref_grads[0]), rtol=1e-5)
  assert int(new.step) == 1
  assert not np.array_equal(new.key, state.key)


# --- eager == jit == pmap ----------------------------------------------------------------


@pytest.fixture(scope="module")
def setup():
  model = _model(feature_recon_weight=0.5)
  state = init_vaegan_state(model, jax.random.PRNGKey(1), SHAPE)
  batch = _batch(1)
  return model, state, batch, vaegan_train_step(model, state, batch)


def test_jit_matches_eager_and_donates_the_state(setup):
  model, state, batch, (s_eager, m_eager) = setup
  fresh = jax.tree_util.tree_map(jnp.copy, state)
  s_jit, m_jit = jit_vaegan_train_step(model)(fresh, batch)
  _close(s_jit, s_eager)
  _close(m_jit, m_eager)
  assert all(x.is_deleted() for x in jax.tree_util.tree_leaves(fresh.e.params))


def test_pmap_on_4_devices_matches_one_device_on_the_global_batch(setup):
  model, state, batch, (s_eager, m_eager) = setup
  assert jax.local_device_count() == N_DEV
  pmodel = _model(parallel.DEFAULT_AXIS, feature_recon_weight=0.5)
  s_p, m_p = pmap_vaegan_train_step(pmodel)(parallel.replicate(state),
                                            batch.reshape(N_DEV, B // N_DEV, *SHAPE))
  for leaf in jax.tree_util.tree_leaves(s_p):  # every replica took the same step
    np.testing.assert_allclose(leaf, np.broadcast_to(leaf[0], leaf.shape), atol=1e-6)
  _close(parallel.unreplicate(s_p), s_eager)
  _close(parallel.unreplicate(m_p), m_eager)


# --- The KL term --------------------------------------------------------------------------


def _with_heads(state, mean_bias, log_var_bias):
  """The state with the encoder's output kernels zeroed: mean and log_var are constants."""
  p = dict(state.e.params)
  p["mean"] = {"kernel": jnp.zeros_like(p["mean"]["kernel"]),
               "bias": jnp.full_like(p["mean"]["bias"], mean_bias)}
  p["log_var"] = {"kernel": jnp.zeros_like(p["log_var"]["kernel"]),
                  "bias": jnp.full_like(p["log_var"]["bias"], log_var_bias)}
  return state.replace(e=state.e.replace(params=p))


def test_kl_is_zero_at_the_prior_and_its_closed_form_elsewhere():
  # KL(N(mu, s^2) || N(0, 1)) = 1/2 (s^2 + mu^2 - 1 - log s^2) per dim (Kingma & Welling 2014).
  model = _model(tx=optax.sgd(LR), recon_weight=0.0, gan_weight=0.0)
  step = jax.jit(functools.partial(vaegan_train_step, model))
  state = init_vaegan_state(model, jax.random.PRNGKey(2), SHAPE)
  at_prior = _with_heads(state, 0.0, 0.0)
  new, m = step(at_prior, _batch())
  assert float(m["kl"]) == 0.0
  # With only the KL in its loss, the encoder sits at the minimum: no gradient, no update.
  assert float(m["e_grad_norm"]) == 0.0
  _close(new.e.params, at_prior.e.params, atol=0)
  mu, lv = 0.5, -0.3
  _, m = step(_with_heads(state, mu, lv), _batch())
  np.testing.assert_allclose(m["kl"], LATENT * 0.5 * (np.exp(lv) + mu ** 2 - 1 - lv), rtol=1e-5)


# --- Sanity -------------------------------------------------------------------------------


def test_a_few_steps_reduce_the_reconstruction_loss_on_a_fixed_batch():
  model = _model(tx=optax.adam(1e-2), kl_weight=0.1, gan_weight=0.1)
  state = init_vaegan_state(model, jax.random.PRNGKey(3), SHAPE)
  # A smooth image batch (horizontal gradients of random sign) the tiny net can fit.
  ramp = np.linspace(-1, 1, SHAPE[0], dtype=np.float32)
  sign = np.where(np.arange(B) % 2, 1.0, -1.0).astype(np.float32)
  batch = np.broadcast_to(sign[:, None, None, None] * ramp[None, None, :, None], (B, *SHAPE))
  step = jit_vaegan_train_step(model)
  recon = []
  for _ in range(30):
    state, m = step(state, batch)
    recon.append(float(m["recon"]))
  assert np.all(np.isfinite(recon))
  assert np.mean(recon[-5:]) < 0.8 * recon[0], recon
  x_rec = reconstruct(model, state, batch)
  assert x_rec.shape == batch.shape


# --- Bad input ---------------------------------------------------------------------------


def test_bad_configuration_is_rejected():
  g, d = models.MODELS.build("dcgan", data_shape=SHAPE, width=4)
  e = DCGANEncoder(resolution=8, latent_dim=LATENT, width=4)
  tx = optax.sgd(LR)
  with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
    VAEGAN(e, g, d, tx, tx, tx, latent_dim=LATENT, gamma=-1.0)
  with pytest.raises(ValueError, match="latent_dim must be an integer >= 1"):
    VAEGAN(e, g, d, tx, tx, tx, latent_dim=0)
  with pytest.raises(ValueError, match=r"encoder must return \(mean, log_var\)"):
    init_vaegan_state(VAEGAN(e.clone(latent_dim=3), g, d, tx, tx, tx, latent_dim=LATENT),
                      jax.random.PRNGKey(0), SHAPE)
  with pytest.raises(ValueError, match=r"makes examples of shape \(8, 8, 1\).*\(8, 8, 3\)"):
    init_vaegan_state(VAEGAN(e, g, d, tx, tx, tx, latent_dim=LATENT), jax.random.PRNGKey(0),
                      (8, 8, 3))
  with pytest.raises(ValueError, match="axis_name"):
    pmap_vaegan_train_step(VAEGAN(e, g, d, tx, tx, tx, latent_dim=LATENT))


def test_real_batch_of_another_shape_is_rejected(setup):
  model, state, _, _ = setup
  with pytest.raises(ValueError, match="does not match the real batch"):
    vaegan_train_step(model, state, np.zeros((B, 8, 8, 3), np.uint8))
