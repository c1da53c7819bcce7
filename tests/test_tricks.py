"""The trick registry and the step hooks: config wiring, each hook against its definition,
and the full set of tricks giving the same step eagerly, under jit and under pmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import builders, losses, models, parallel, spectral, tricks
from gax.steps import (GAN, StepContext, d_features, d_step, g_step, init_state, sampling_params,
                       train_step)
from gax.transforms import find_ema_params

B, N_DEV, SHAPE = 8, 4, (2,)


def _close(a, b, atol=2e-5):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4), a, b)


def _config(**enabled):
  c = builders.base_config()
  c.model = {"name": "mlp", "g_hidden": (16,), "d_hidden": (16, 16)}
  c.latent.dim = 4
  c.n_critic = 2
  for name, options in enabled.items():
    c.tricks[name].enabled = True
    c.tricks[name].update(options)
  return c


def _mlp_gan(hooks=(), loss="non_saturating", lr=0.1):
  g, d = models.MODELS.build("mlp", data_shape=SHAPE, g_hidden=(8,), d_hidden=(8, 8))
  return GAN(g, d, losses.get_loss(loss), optax.sgd(lr), optax.sgd(lr), latent_dim=3,
             hooks=tuple(hooks))


def _real(seed=0, n=B):
  return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


# --- Config ---------------------------------------------------------------------------------


def test_every_trick_has_a_default_config_section_that_is_off():
  section = tricks.default_config()
  assert set(section) == set(tricks.TRICKS.names())
  assert all(s["enabled"] is False for s in section.values())
  gan = builders.build_gan(builders.base_config(), SHAPE)
  assert gan.hooks == ()


def test_configs_saved_before_a_trick_existed_still_match_with_it_off():
  new = builders.base_config().to_dict()
  old = builders.base_config().to_dict()
  del old["tricks"]["top_k"], old["tricks"]["feature_matching"]
  new["tricks"]["top_k"]["gamma"] = 0.9  # options of a trick that is off change nothing
  assert builders.compatibility_diff(old, new) == []
  new["tricks"]["feature_matching"]["enabled"] = True
  assert [d.split(":")[0] for d in builders.compatibility_diff(old, new)] == [
      "tricks.feature_matching"]
  # A trick the saved run had is compared option by option, as before.
  old = builders.base_config().to_dict()
  assert builders.compatibility_diff(old, new) == [
      "tricks.feature_matching.enabled: False -> True", "tricks.top_k.gamma: 0.99 -> 0.9"]


def test_hook_tricks_take_their_options_and_defaults_from_the_hook_class():
  section = tricks.default_config()
  assert section["top_k"] == {"enabled": False, "gamma": 0.99, "nu": 0.5, "decay_every": 1000}
  assert section["spectral_norm"] == {"enabled": False, "n_power_iterations": 1}
  # The builder sets store_labels from the GAN (conditional or not); it is no option.
  assert section["experience_replay"] == {"enabled": False, "size": 1024, "prob": 0.5}
  for name, cls in [("spectral_norm", tricks.SpectralNorm), ("instance_noise", tricks.InstanceNoise),
                    ("checkpoint_swap", tricks.CheckpointSwap),
                    ("feature_matching", tricks.FeatureMatching), ("top_k", tricks.TopK)]:
    parts = tricks.Parts(loss=losses.LOSSES.get("non_saturating"), axis_name=None)
    tricks.apply_tricks(parts, {name: {"enabled": True}})
    assert parts.hooks == [cls()]


@pytest.mark.parametrize("section, error", [
    ({"spectral_nrom": {"enabled": True}}, "Did you mean 'spectral_norm'"),
    ({"spectral_norm": {"enabled": True, "iterations": 2}}, "unknown options"),
    ({"spectral_norm": {"enabled": 1}}, "True or False"),
    ({"spectral_norm": {"n_power_iterations": 1}}, "no 'enabled'"),
])
def test_bad_trick_sections_are_refused_with_the_key_named(section, error):
  with pytest.raises((KeyError, ValueError), match=error):
    tricks.validate(section)


def test_bad_trick_option_values_name_the_trick():
  c = _config(instance_noise={"std": -1.0})
  with pytest.raises(ValueError, match="config.tricks.instance_noise"):
    builders.build_gan(c, SHAPE)


def test_transform_tricks_are_chained_in_the_documented_order():
  # Historical averaging before the optimizer; clipping then EMA after it: after one D update
  # every D param is inside the clip box, and G's EMA is (1 - decay) of the way to the update.
  c = _config(d_clip_params={"c": 0.05}, d_historical_averaging={"weight": 0.1},
              g_ema={"decay": 0.9})
  gan = builders.build_gan(c, SHAPE)
  state = builders.build_state(gan, c, SHAPE)
  new, _ = jax.jit(functools.partial(train_step, gan))(state, np.stack([_real(0), _real(1)]))
  for leaf in jax.tree_util.tree_leaves(new.d.params):
    assert np.abs(leaf).max() <= 0.05 + 1e-7
  expected = jax.tree_util.tree_map(lambda p0, p1: 0.9 * p0 + 0.1 * p1, state.g.params,
                                    new.g.params)
  _close(find_ema_params(new.g.opt_state), expected, atol=1e-6)
  _close(sampling_params(new.g), expected, atol=1e-6)
  assert sampling_params(state.d) is state.d.params  # no EMA: the trained params


def test_label_tricks_wrap_the_cross_entropy_d_loss():
  gan = builders.build_gan(_config(label_smoothing={}), SHAPE)
  real, fake = jnp.array([0.3, -1.2]), jnp.array([2.0, -0.5])
  # One-sided smoothing: targets 0.9 for real, 0 for fake (Salimans et al. 2016, sec. 3.4).
  bce = lambda l, t: np.mean(t * np.logaddexp(0, -l) + (1 - t) * np.logaddexp(0, l))
  np.testing.assert_allclose(gan.loss.d(real, fake), bce(real, 0.9) + bce(fake, 0.0), rtol=1e-6)
  noisy = builders.build_gan(_config(soft_labels={}, noisy_labels={"flip_prob": 0.1}), SHAPE)
  assert noisy.loss.d_needs_key
  c = _config(label_smoothing={})
  c.loss = "hinge"
  with pytest.raises(ValueError, match="config.tricks.label_smoothing"):
    builders.build_gan(c, SHAPE)
  with pytest.raises(ValueError, match="config.tricks.soft_labels"):
    builders.build_gan(_config(label_smoothing={}, soft_labels={}), SHAPE)


# --- Spectral normalisation -----------------------------------------------------------------


def test_spectral_norm_d_step_is_a_gradient_step_through_the_normalised_params():
  hook = tricks.SpectralNorm(n_power_iterations=2)
  gan = _mlp_gan([hook])
  state = init_state(gan, jax.random.PRNGKey(0), SHAPE)
  u0 = state.tricks["spectral_norm"]
  assert set(u0) == {"Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"}
  real, key = _real(), jax.random.PRNGKey(3)
  new, metrics = d_step(gan, state, real, key)

  # Reference: W / sigma(W) with two power iterations from the stored u, then SGD.
  from gax.steps import generate, sample_latent  # pylint: disable=g-import-not-at-top
  fake = generate(gan, state.g, sample_latent(gan, key, B), train=True,
                  key=jax.random.fold_in(key, 1000))

  def ref_loss(params):
    p, _ = spectral.spectral_normalize(params, u0, 2)
    apply = lambda x: gan.discriminator.apply({"params": p}, x)
    return losses.minimax_d_loss(apply(real), apply(fake))

  loss, grads = jax.value_and_grad(ref_loss)(state.d.params)
  np.testing.assert_allclose(metrics["d_loss"], loss, rtol=1e-5)
  _close(new.d.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.d.params, grads))
  expected_u = spectral.spectral_normalize(state.d.params, u0, 2)[1]
  _close(new.tricks["spectral_norm"], expected_u, atol=1e-6)


def test_spectral_norm_g_step_scores_with_normalised_d_and_keeps_u():
  hook = tricks.SpectralNorm()
  gan = _mlp_gan([hook])
  state = init_state(gan, jax.random.PRNGKey(1), SHAPE)
  new, metrics = g_step(gan, state, _real(), jax.random.PRNGKey(4))
  from gax.steps import generate, sample_latent  # pylint: disable=g-import-not-at-top
  z = sample_latent(gan, jax.random.PRNGKey(4), B)
  d_sn, _ = spectral.spectral_normalize(state.d.params, state.tricks["spectral_norm"])
  fake = generate(gan, state.g, z, train=True)
  expected = losses.non_saturating_g_loss(gan.discriminator.apply({"params": d_sn}, fake))
  np.testing.assert_allclose(metrics["g_loss"], expected, rtol=1e-5)
  _close(new.tricks, state.tricks, atol=0)


# --- Instance noise -------------------------------------------------------------------------


def test_instance_noise_schedule_decays_linearly_to_zero():
  hook = tricks.InstanceNoise(std=0.4, decay_steps=100)
  np.testing.assert_allclose([hook.schedule(s) for s in (0, 25, 50, 100, 1000)],
                             [0.4, 0.3, 0.2, 0.0, 0.0], atol=1e-7)
  np.testing.assert_allclose(tricks.InstanceNoise(std=0.3).schedule(10 ** 6), 0.3)


def test_instance_noise_adds_gaussian_noise_of_the_scheduled_std_to_both_inputs():
  hook = tricks.InstanceNoise(std=0.5, decay_steps=100)
  real = jnp.zeros((4000, 3))
  fake = jnp.ones((4000, 3))
  ctx = StepContext(step=jnp.asarray(50), axis_name=None)
  r, f, st = hook.d_inputs(None, real, fake, jax.random.PRNGKey(0), ctx)
  assert st is None
  for noisy, clean in ((r, real), (f, fake)):
    eps = np.asarray(noisy - clean).ravel()
    assert abs(eps.std() - 0.25) < 0.01 and abs(eps.mean()) < 0.01
  assert np.corrcoef(np.asarray(r).ravel(), np.asarray(f).ravel())[0, 1] < 0.05
  r2, f2 = hook.g_inputs(None, real, fake, jax.random.PRNGKey(1), ctx)
  assert abs(float(jnp.std(f2 - fake)) - 0.25) < 0.01


# --- Experience replay ----------------------------------------------------------------------


def _replay(size, prob, fakes_per_step, steps, seed=0):
  hook = tricks.ExperienceReplay(size=size, prob=prob)
  st = hook.init(None, None, (1,))
  ctx = StepContext(step=jnp.asarray(0), axis_name=None)
  out = []
  for t in range(steps):
    fake = jnp.full((fakes_per_step, 1), float(t + 1))
    _, mixed, st = hook.d_inputs(st, None, fake, jax.random.PRNGKey(seed + t), ctx)
    out.append(np.asarray(mixed))
  return st, out


def test_replay_buffer_is_a_ring_of_the_last_fakes():
  st, out = _replay(size=6, prob=0.0, fakes_per_step=4, steps=3)
  assert all((o == t + 1).all() for t, o in enumerate(out))  # prob 0: fakes unchanged
  # Writes: step 1 -> rows 0-3, step 2 -> rows 4,5,0,1, step 3 -> rows 2-5.
  np.testing.assert_array_equal(st["buffer"][:, 0], [2, 2, 3, 3, 3, 3])
  assert int(st["position"]) == 0 and int(st["filled"]) == 6


def test_replay_with_prob_one_shows_only_past_fakes_once_there_are_some():
  _, out = _replay(size=8, prob=1.0, fakes_per_step=4, steps=4)
  assert (out[0] == 1).all()  # empty buffer: nothing to replay yet
  assert (out[1] == 1).all()  # the buffer holds step 1's fakes only
  assert set(np.unique(out[3])) <= {1.0, 2.0, 3.0}  # never the current step's fakes
  _, half = _replay(size=2000, prob=0.5, fakes_per_step=2000, steps=2)
  assert abs((half[1] == 1).mean() - 0.5) < 0.05


def test_replay_refuses_a_buffer_smaller_than_the_batch():
  with pytest.raises(ValueError, match="smaller than the global batch"):
    _replay(size=2, prob=0.5, fakes_per_step=4, steps=1)


# --- Checkpoint swapping --------------------------------------------------------------------


def test_checkpoint_swap_trains_against_the_snapshot_in_the_last_steps_of_each_period():
  hook = tricks.CheckpointSwap(every=4, duration=2)
  assert [bool(hook.swapping(s)) for s in range(8)] == [False, False, True, True] * 2
  gan = _mlp_gan([hook])
  plain = _mlp_gan()
  state = init_state(gan, jax.random.PRNGKey(0), SHAPE)
  step = jax.jit(functools.partial(train_step, gan))
  batch = _real(0)[None]
  history = [state]
  for _ in range(6):
    state, _ = step(state, batch)
    history.append(state)
  # Snapshots are taken when the step count reaches a multiple of `every`.
  _close(history[3].tricks["checkpoint_swap"]["g"], history[0].g.params, atol=0)
  _close(history[4].tricks["checkpoint_swap"]["g"], history[4].g.params, atol=0)
  _close(history[6].tricks["checkpoint_swap"]["d"], history[4].d.params, atol=0)
  # Step 6 (state.step == 6 -> 6 % 4 = 2) swaps: its D update equals one against the snapshot G.
  s6 = history[6]
  key = jax.random.PRNGKey(9)
  swapped, m = d_step(gan, s6, batch[0], key)
  against_old, m_old = d_step(plain, s6.replace(g=s6.g.replace(
      params=s6.tricks["checkpoint_swap"]["g"])), batch[0], key)
  _close(swapped.d, against_old.d)
  np.testing.assert_allclose(m["d_loss"], m_old["d_loss"], rtol=1e-6)
  # Step 5 (5 % 4 = 1) does not swap.
  s5 = history[5]
  _close(d_step(gan, s5, batch[0], key)[0].d, d_step(plain, s5, batch[0], key)[0].d)


# --- Feature matching -----------------------------------------------------------------------


def test_feature_matching_g_loss_matches_the_formula_and_its_gradient():
  hook = tricks.FeatureMatching(weight=2.0, adversarial_weight=0.5)
  gan = _mlp_gan([hook])
  state = init_state(gan, jax.random.PRNGKey(2), SHAPE)
  real, key = _real(3), jax.random.PRNGKey(5)
  new, metrics = g_step(gan, state, real, key)
  from gax.steps import sample_latent  # pylint: disable=g-import-not-at-top
  z = sample_latent(gan, key, B)
  d_vars = {"params": state.d.params}

  def features(x):  # D's last hidden layer, recomputed by hand from the Dense kernels
    h = x
    for i in range(2):
      layer = state.d.params[f"Dense_{i}"]
      h = jax.nn.leaky_relu(h @ layer["kernel"] + layer["bias"], 0.2)
    return h

  def ref(g_params):
    fake = gan.generator.apply({"params": g_params}, z)
    fm = jnp.sum((features(real).mean(0) - features(fake).mean(0)) ** 2)
    adv = losses.non_saturating_g_loss(gan.discriminator.apply(d_vars, fake))
    return 0.5 * adv + 2.0 * fm, fm

  (loss, fm), grads = jax.value_and_grad(ref, has_aux=True)(state.g.params)
  np.testing.assert_allclose(d_features(gan, state.d.params, {}, real), features(real), rtol=1e-5)
  np.testing.assert_allclose(metrics["g_loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["g_feature_matching"], fm, rtol=1e-5)
  _close(new.g.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.g.params, grads))


# --- Top-k training -------------------------------------------------------------------------


def test_top_k_schedule_decays_by_gamma_per_epoch_to_the_floor():
  hook = tricks.TopK(gamma=0.5, nu=0.3, decay_every=10)
  # k = max(floor(0.5 ** (step // 10) * 20), ceil(0.3 * 20) = 6)
  for step, k in [(0, 20), (9, 20), (10, 10), (19, 10), (20, 6), (1000, 6)]:
    assert int(hook.k(step, 20)) == k, step
  assert int(tricks.TopK(gamma=1.0, nu=0.5).k(10 ** 6, 7)) == 7
  assert int(tricks.TopK(gamma=0.9, nu=0.7).k(10 ** 6, 10)) == 7  # 0.7 * 10 is not 8
  assert int(tricks.TopK(gamma=0.5, nu=0.01).k(10 ** 6, 10)) == 1
  for bad in [dict(gamma=0.0), dict(gamma=1.5), dict(nu=0.0), dict(nu=2.0),
              dict(decay_every=0), dict(decay_every=True), dict(decay_every=2.5)]:
    with pytest.raises(ValueError, match="top_k"):
      tricks.TopK(**bad)


def test_top_k_g_loss_is_the_mean_over_the_fakes_d_scores_highest():
  hook = tricks.TopK(gamma=0.5, nu=0.25, decay_every=3)
  gan = _mlp_gan([hook])
  state = init_state(gan, jax.random.PRNGKey(2), SHAPE)
  real, key = _real(3), jax.random.PRNGKey(5)
  from gax.steps import sample_latent  # pylint: disable=g-import-not-at-top
  z = sample_latent(gan, key, B)
  for step, k in [(0, 8), (3, 4), (7, 2)]:  # k = max(floor(0.5 ** (step // 3) * 8), 2)
    s = state.replace(step=jnp.asarray(step, jnp.int32))
    new, metrics = g_step(gan, s, real, key)
    logits = np.asarray(gan.discriminator.apply(
        {"params": s.d.params}, gan.generator.apply({"params": s.g.params}, z)))
    top = np.argsort(-logits)[:k]  # independent of the hook's threshold

    def ref(g_params, top=top):
      fake_logits = gan.discriminator.apply({"params": s.d.params},
                                            gan.generator.apply({"params": g_params}, z))
      return jnp.mean(jax.nn.softplus(-fake_logits[top]))

    loss, grads = jax.value_and_grad(ref)(s.g.params)
    np.testing.assert_allclose(metrics["g_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(loss, np.mean(np.log1p(np.exp(-logits[top]))), rtol=1e-5)
    _close(new.g.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, s.g.params, grads))
  # k = n is the plain loss.
  _close(g_step(gan, state, real, key)[0].g, g_step(_mlp_gan(), state, real, key)[0].g)


def test_top_k_refuses_a_loss_without_per_example_terms():
  gan = _mlp_gan([tricks.TopK()], loss="relativistic_average")
  state = init_state(gan, jax.random.PRNGKey(0), SHAPE)
  with pytest.raises(ValueError, match="per-example"):
    g_step(gan, state, _real(), jax.random.PRNGKey(1))


# --- Everything at once: eager == jit == pmap ------------------------------------------------

ALL = dict(spectral_norm={}, instance_noise={"std": 0.2, "decay_steps": 10},
           experience_replay={"size": 64, "prob": 0.5},
           checkpoint_swap={"every": 2, "duration": 1},
           feature_matching={"adversarial_weight": 1.0},
           d_clip_params={"c": 0.5}, g_ema={"decay": 0.9}, d_historical_averaging={},
           g_gradient_noise={"eta": 0.01}, soft_labels={}, noisy_labels={"flip_prob": 0.1},
           top_k={"gamma": 0.5, "decay_every": 1})  # k: all 8 fakes, then 4 of 8


@pytest.fixture(scope="module")
def all_tricks():
  c = _config(**ALL)
  gan = builders.build_gan(c, SHAPE)
  state = builders.build_state(gan, c, SHAPE)
  batches = np.random.default_rng(0).normal(size=(3, 2, B, *SHAPE)).astype(np.float32)
  eager = [state]
  for b in batches:
    eager.append(train_step(gan, eager[-1], b))
    eager[-1] = eager[-1][0]
  return c, gan, state, batches, eager


def test_all_tricks_have_state_and_run_eagerly(all_tricks):
  _, gan, state, _, eager = all_tricks
  assert [h.name for h in gan.hooks] == ["spectral_norm", "instance_noise", "experience_replay",
                                         "checkpoint_swap", "feature_matching", "top_k"]
  assert set(state.tricks) == {"spectral_norm", "experience_replay", "checkpoint_swap"}
  assert int(eager[-1].tricks["experience_replay"]["filled"]) == 3 * 2 * B
  for leaf in jax.tree_util.tree_leaves(eager[-1]):
    assert np.isfinite(np.asarray(leaf, np.float64)).all()


def test_all_tricks_jit_matches_eager(all_tricks):
  _, gan, state, batches, eager = all_tricks
  step = jax.jit(functools.partial(train_step, gan))
  s = state
  for b in batches:
    s, _ = step(s, b)
  _close(s, eager[-1])


def test_all_tricks_pmap_on_4_devices_matches_one_device(all_tricks):
  c, _, state, batches, eager = all_tricks
  pgan = builders.build_gan(c, SHAPE, parallel.DEFAULT_AXIS)
  step = parallel.pmap_train_step(pgan)
  s = parallel.replicate(state)
  for b in batches:
    s, _ = step(s, parallel.shard_batch(b, N_DEV))
  for leaf in jax.tree_util.tree_leaves(s):
    np.testing.assert_allclose(leaf, np.broadcast_to(leaf[0], leaf.shape), atol=1e-6)
  _close(parallel.unreplicate(s), eager[-1])
