"""Class-conditional GANs: labelled data sources, cGAN (Mirza & Osindero 2014) and AC-GAN
(Odena et al. 2017) networks and steps against hand-written references, eager == jit == pmap,
the trainer end to end, and clear errors for inconsistent configs."""

import functools
import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import builders, data, losses, models, parallel, trainer, tricks
from gax.steps import (GAN, StepContext, d_features, d_step, g_step, generate, init_state,
                       train_step)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_DEV, LR = 4, 0.1


def _close(a, b, atol=2e-5):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4), a, b)


# --- Data with labels -----------------------------------------------------------------------


def test_digits_labels_are_the_digits_of_the_batch_images():
  images, digits = data.load_digits_images()
  src = data.DATASETS.build("digits", batch_size=16, n_critic=2, seed=3, image_size=8,
                            labels=True)
  assert src.num_classes == 10
  # The same sampler over images that spell their own index (uint8 base 256, 3 channels).
  n = len(images)
  code = np.stack([np.arange(n) // 256, np.arange(n) % 256, np.zeros(n)], -1)
  index = data.ArraySource(code.astype(np.uint8).reshape(n, 1, 1, 3), 16, 2, seed=3)
  for step in (0, 7, 200):  # 200 * 32 examples: several epochs in
    b = src.get(step)
    assert set(b) == {"x", "y"} and b["y"].dtype == np.int32
    assert b["x"].shape == (2, 16, 8, 8, 1) and b["y"].shape == (2, 16)
    c = index.get(step).reshape(-1, 3).astype(np.int64)
    idx = c[:, 0] * 256 + c[:, 1]
    np.testing.assert_array_equal(b["x"].reshape(-1, 8, 8, 1), images[idx])
    np.testing.assert_array_equal(b["y"].ravel(), digits[idx])
    np.testing.assert_array_equal(b["y"], src.get(step)["y"])  # deterministic
  # Labels off: the bare image array, the same images.
  plain = data.DATASETS.build("digits", batch_size=16, n_critic=2, seed=3, image_size=8)
  assert plain.num_classes == 0
  np.testing.assert_array_equal(plain.get(7), src.get(7)["x"])


@pytest.mark.parametrize("name, k", [("ring", 8), ("grid", 25)])
def test_mixture_labels_are_the_modes_of_the_points(name, k):
  src = data.DATASETS.build(name, batch_size=500, n_critic=2, seed=1, labels=True)
  plain = data.DATASETS.build(name, batch_size=500, n_critic=2, seed=1)
  assert src.num_classes == k and plain.num_classes == 0
  b = src.get(4)
  np.testing.assert_array_equal(b["x"], plain.get(4))
  x, y = b["x"].reshape(-1, 2), b["y"].ravel()
  nearest = np.argmin(((x[:, None] - src.centers[None]) ** 2).sum(-1), 1)
  np.testing.assert_array_equal(y, nearest)  # std 0.02 / 0.05: every point by its own mode
  assert b["y"].shape == (2, 500) and b["y"].dtype == np.int32
  np.testing.assert_array_equal(src.get(4)["y"], b["y"])


def test_array_labels_come_from_the_npz_key(tmp_path):
  y = np.arange(12) % 4
  imgs = np.broadcast_to((y * 60).astype(np.uint8)[:, None, None, None], (12, 4, 4, 1)).copy()
  np.savez(tmp_path / "d.npz", images=imgs, classes=y)
  src = data.DATASETS.build("array", batch_size=4, n_critic=1, path=str(tmp_path / "d.npz"),
                            key="images", labels=True, labels_key="classes")
  assert src.num_classes == 4
  for step in range(5):
    b = src.get(step)
    np.testing.assert_array_equal(b["x"][..., 0, 0, 0], b["y"] * 60)
  with pytest.raises(ValueError, match="data.labels_key is empty"):
    data.DATASETS.build("array", batch_size=4, path=str(tmp_path / "d.npz"), key="images",
                        labels=True)
  with pytest.raises(KeyError, match="no array 'labelz'"):
    data.DATASETS.build("array", batch_size=4, path=str(tmp_path / "d.npz"), key="images",
                        labels=True, labels_key="labelz")
  np.savez(tmp_path / "bad.npz", images=imgs, classes=y[:5])
  with pytest.raises(ValueError, match=r"one per image"):
    data.DATASETS.build("array", batch_size=4, path=str(tmp_path / "bad.npz"), key="images",
                        labels=True, labels_key="classes")
  with pytest.raises(ValueError, match="data.labels must be True or False"):
    data.DATASETS.build("ring", batch_size=4, labels="yes")


def test_shard_batch_splits_examples_and_labels_together():
  b = {"x": np.arange(2 * 8 * 3).reshape(2, 8, 3), "y": np.arange(16).reshape(2, 8)}
  s = parallel.shard_batch(b, N_DEV)
  assert s["x"].shape == (4, 2, 2, 3) and s["y"].shape == (4, 2, 2)
  np.testing.assert_array_equal(s["x"][..., 0] // 3, s["y"])


# --- Networks -------------------------------------------------------------------------------


def test_cgan_discriminator_sees_the_labels_as_extra_channels():
  g, d = models.MODELS.build("dcgan", data_shape=(8, 8, 1), width=4, num_classes=3,
                             conditioning="concat", d_class_dim=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 8, 8, 1))
  y = jnp.array([0, 1, 2, 0, 1])
  v = d.init(jax.random.PRNGKey(1), x, train=False, labels=y)
  assert v["params"]["class_map"]["embedding"].shape == (3, 4 * 4 * 2)
  assert v["params"]["Conv_0"]["kernel"].shape == (4, 4, 1 + 2, 4)  # image + 2 label channels
  out = d.apply(v, x, train=False, labels=y)
  assert out.shape == (5,)
  changed = d.apply(v, x, train=False, labels=(y + 1) % 3)
  assert np.all(np.abs(np.asarray(out - changed)) > 1e-6)
  # Example i depends on its own label only.
  one = d.apply(v, x, train=False, labels=y.at[0].set(2))
  assert abs(float(one[0] - out[0])) > 1e-6
  np.testing.assert_allclose(one[1:], out[1:], atol=1e-6)
  bilinear = models.MODELS.build("dcgan", data_shape=(8, 8, 1), width=4, num_classes=3,
                                 conditioning="concat", d_class_dim=2,
                                 class_map_resize="bilinear")[1]
  assert not np.allclose(bilinear.apply(v, x, train=False, labels=y), out)
  with pytest.raises(ValueError, match="needs labels"):
    d.apply(v, x, train=False)
  # G: one embedding row per class, appended to z.
  gv = g.init(jax.random.PRNGKey(2), jnp.zeros((5, 6)), train=False, labels=y)
  assert gv["params"]["class_embed"]["embedding"].shape == (3, 16)
  assert gv["params"]["Dense_0"]["kernel"].shape[0] == 6 + 16
  z = jnp.ones((5, 6))
  assert not np.allclose(g.apply(gv, z, train=False, labels=y),
                         g.apply(gv, z, train=False, labels=(y + 1) % 3))


def test_mlp_cgan_and_acgan_shapes_and_unconditional_refuses_labels():
  _, d = models.MODELS.build("mlp", data_shape=(2,), d_hidden=(8,), num_classes=4,
                             conditioning="concat", d_class_dim=3)
  v = d.init(jax.random.PRNGKey(0), jnp.zeros((3, 2)), labels=jnp.zeros(3, jnp.int32))
  assert v["params"]["Dense_0"]["kernel"].shape == (2 + 3, 8)
  _, d = models.MODELS.build("mlp", data_shape=(2,), d_hidden=(8,), num_classes=4,
                             conditioning="auxiliary")
  v = d.init(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
  logits, classes = d.apply(v, jnp.ones((3, 2)))
  assert logits.shape == (3,) and classes.shape == (3, 4)
  _, d = models.MODELS.build("dcgan", data_shape=(8, 8, 1), width=4, num_classes=4,
                             conditioning="auxiliary")
  v = d.init(jax.random.PRNGKey(0), jnp.zeros((3, 8, 8, 1)), train=False)
  logits, classes = d.apply(v, jnp.ones((3, 8, 8, 1)), train=False)
  assert logits.shape == (3,) and classes.shape == (3, 4)
  _, d = models.MODELS.build("mlp", data_shape=(2,), d_hidden=(8,))
  v = d.init(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match="unconditional"):
    d.apply(v, jnp.zeros((3, 2)), labels=jnp.zeros(3, jnp.int32))


# --- AC-GAN steps against the paper's losses --------------------------------------------------

K, W, B = 3, 0.7, 16


def _acgan_mlp():
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(8,), d_hidden=(8,),
                             num_classes=K, conditioning="auxiliary", g_class_dim=2)
  return GAN(g, d, losses.get_loss("non_saturating"), optax.sgd(LR), optax.sgd(LR),
             latent_dim=3, num_classes=K, conditioning="auxiliary", aux_weight=W)


def _ce(logits, y):
  return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])


def _d_by_hand(p, x):
  """The MLP D with one hidden layer, written out: (source logit, class logits)."""
  h = jax.nn.leaky_relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0.2)
  logit = (h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])[:, 0]
  return logit, h @ p["class_head"]["kernel"] + p["class_head"]["bias"]


def _fake_draws(key):
  """The step's latents and fake labels: z from the step key, labels from fold_in(key, 4000)."""
  z = jax.random.normal(key, (B, 3))
  return z, jax.random.randint(jax.random.fold_in(key, 4000), (B,), 0, K)


def test_acgan_d_step_is_a_gradient_step_on_source_plus_class_loss():
  gan = _acgan_mlp()
  state = init_state(gan, jax.random.PRNGKey(1), (2,))
  real = jax.random.normal(jax.random.PRNGKey(2), (B, 2))
  y_real = jax.random.randint(jax.random.PRNGKey(3), (B,), 0, K)
  key = jax.random.PRNGKey(4)
  z, y_fake = _fake_draws(key)
  fake = gan.generator.apply({"params": state.g.params}, z, labels=y_fake)

  def reference(p):  # Odena et al. 2017, sec. 3: D minimises -(L_S + L_C)
    (sr, cr), (sf, cf) = _d_by_hand(p, real), _d_by_hand(p, fake)
    l_s = -jnp.mean(jax.nn.log_sigmoid(sr)) - jnp.mean(jax.nn.log_sigmoid(-sf))
    return l_s + W * (_ce(cr, y_real) + _ce(cf, y_fake))

  expected = jax.tree_util.tree_map(lambda p, g: p - LR * g, state.d.params,
                                    jax.grad(reference)(state.d.params))
  new, m = d_step(gan, state, real, key, y_real)
  _close(new.d.params, expected, atol=1e-6)
  _close(new.g.params, state.g.params, atol=0)
  np.testing.assert_allclose(m["d_loss"], reference(state.d.params), rtol=1e-6)
  (_, cr), (_, cf) = _d_by_hand(state.d.params, real), _d_by_hand(state.d.params, fake)
  np.testing.assert_allclose(m["d_class_loss"], _ce(cr, y_real) + _ce(cf, y_fake), rtol=1e-6)
  np.testing.assert_allclose(m["d_class_accuracy_real"], np.mean(np.argmax(cr, -1) == y_real))
  np.testing.assert_allclose(m["d_class_accuracy_fake"], np.mean(np.argmax(cf, -1) == y_fake))


def test_acgan_g_step_is_a_gradient_step_on_source_plus_class_loss_of_its_fakes():
  gan = _acgan_mlp()
  state = init_state(gan, jax.random.PRNGKey(5), (2,))
  key = jax.random.PRNGKey(6)
  z, y_fake = _fake_draws(key)

  def reference(gp):  # G minimises -log D(G(z, c)) + w * CE(C(G(z, c)), c)
    s, c = _d_by_hand(state.d.params, gan.generator.apply({"params": gp}, z, labels=y_fake))
    return -jnp.mean(jax.nn.log_sigmoid(s)) + W * _ce(c, y_fake)

  expected = jax.tree_util.tree_map(lambda p, g: p - LR * g, state.g.params,
                                    jax.grad(reference)(state.g.params))
  y_real = jnp.zeros((B,), jnp.int32)
  new, m = g_step(gan, state, jnp.zeros((B, 2)), key, y_real)
  _close(new.g.params, expected, atol=1e-6)
  _close(new.d.params, state.d.params, atol=0)
  np.testing.assert_allclose(m["g_loss"], reference(state.g.params), rtol=1e-6)
  assert float(m["g_class_loss"]) > 0


def test_cgan_d_step_scores_reals_and_fakes_with_their_labels_and_r1_with_the_real_ones():
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(8,), d_hidden=(8,),
                             num_classes=K, conditioning="concat")
  from gax.penalties import r1_penalty, r2_penalty  # pylint: disable=g-import-not-at-top
  gan = GAN(g, d, losses.get_loss("non_saturating"), optax.sgd(LR), optax.sgd(LR),
            latent_dim=3, num_classes=K, conditioning="concat",
            d_penalties=(("r1", 0.5, r1_penalty), ("r2", 0.25, r2_penalty)))
  state = init_state(gan, jax.random.PRNGKey(1), (2,))
  real = jax.random.normal(jax.random.PRNGKey(2), (B, 2))
  y_real = jax.random.randint(jax.random.PRNGKey(3), (B,), 0, K)
  key = jax.random.PRNGKey(4)
  z, y_fake = _fake_draws(key)
  fake = g.apply({"params": state.g.params}, z, labels=y_fake)

  def reference(p):
    dr = lambda x: d.apply({"params": p}, x, labels=y_real)
    df = lambda x: d.apply({"params": p}, x, labels=y_fake)
    grad_sq = lambda f, x: jnp.mean(jnp.sum(jax.grad(lambda x: jnp.sum(f(x)))(x) ** 2, -1))
    return (losses.minimax_d_loss(dr(real), df(fake)) + 0.5 * grad_sq(dr, real)
            + 0.25 * grad_sq(df, fake))

  new, m = d_step(gan, state, real, key, y_real)
  np.testing.assert_allclose(m["d_loss"], reference(state.d.params), rtol=1e-6)
  expected = jax.tree_util.tree_map(lambda p, g: p - LR * g, state.d.params,
                                    jax.grad(reference)(state.d.params))
  _close(new.d.params, expected, atol=1e-6)


def test_feature_matching_of_a_cgan_uses_each_side_s_labels():
  hook = tricks.FeatureMatching()
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(8,), d_hidden=(8,),
                             num_classes=K, conditioning="concat")
  gan = GAN(g, d, losses.get_loss("non_saturating"), optax.sgd(LR), optax.sgd(LR),
            latent_dim=3, num_classes=K, conditioning="concat", hooks=(hook,))
  state = init_state(gan, jax.random.PRNGKey(7), (2,))
  real = jax.random.normal(jax.random.PRNGKey(8), (B, 2))
  y_real = jax.random.randint(jax.random.PRNGKey(9), (B,), 0, K)
  key = jax.random.PRNGKey(10)
  z, y_fake = _fake_draws(key)
  f = lambda x, y: d_features(gan, state.d.params, {}, x, y)
  fake = g.apply({"params": state.g.params}, z, labels=y_fake)
  expected = jnp.sum((f(real, y_real).mean(0) - f(fake, y_fake).mean(0)) ** 2)
  _, m = g_step(gan, state, real, key, y_real)
  np.testing.assert_allclose(m["g_feature_matching"], expected, rtol=1e-5)


def test_experience_replay_returns_replayed_fakes_with_their_labels():
  hook = tricks.ExperienceReplay(size=8, prob=1.0, store_labels=True)
  st = hook.init(None, None, (1,))
  assert st["labels"].shape == (8,)
  ctx = StepContext(step=jnp.asarray(0), axis_name=None)
  for t in range(4):
    fake = jnp.full((4, 1), float(t + 1))
    labels = jnp.full((4,), t + 10, jnp.int32)
    _, mixed, _, mixed_labels, st = hook.d_inputs_with_labels(
        st, None, fake, None, labels, jax.random.PRNGKey(t), ctx)
    np.testing.assert_array_equal(np.asarray(mixed)[:, 0] + 9, mixed_labels)
  assert set(np.unique(mixed_labels)) <= {11, 12, 13}  # past steps' labels only
  with pytest.raises(ValueError, match="store_labels=True"):
    tricks.ExperienceReplay(size=8).d_inputs_with_labels(
        tricks.ExperienceReplay(size=8).init(None, None, (1,)), None, fake, None, labels,
        jax.random.PRNGKey(0), ctx)


# --- eager == jit == pmap -------------------------------------------------------------------


def _dcgan_config(conditioning):
  c = builders.base_config()
  c.data = {"name": "digits", "batch_size": 8, "image_size": 8, "labels": True}
  c.model = {"name": "dcgan", "width": 4, "num_classes": 10, "conditioning": conditioning,
             "g_class_dim": 4}
  c.latent.dim = 8
  c.n_critic = 2
  c.tricks.experience_replay.update({"enabled": True, "size": 32, "prob": 0.5})
  c.tricks.feature_matching.update({"enabled": True, "adversarial_weight": 1.0})
  if conditioning == "projection":  # with SAGAN's attention block at 4x4 in G and D
    c.model.attention = 4
  if conditioning != "auxiliary":  # R1 runs D with the real labels (the AC-GAN D has none)
    c.d_penalty.r1 = 0.1
  return c


@pytest.mark.parametrize("conditioning", ["concat", "auxiliary", "projection"])
def test_eager_jit_and_pmap_on_4_devices_agree(conditioning):
  c = _dcgan_config(conditioning)
  source = builders.build_data(c)
  gan = builders.build_gan(c, source.element_shape)
  state = builders.build_state(gan, c, source.element_shape)
  batch = source.get(0)
  s_eager, m_eager = train_step(gan, state, batch)
  s_jit, m_jit = jax.jit(functools.partial(train_step, gan))(state, batch)
  _close(s_jit, s_eager)
  _close(m_jit, m_eager)
  pgan = builders.build_gan(c, source.element_shape, parallel.DEFAULT_AXIS)
  s_p, m_p = parallel.pmap_train_step(pgan)(parallel.replicate(state),
                                            parallel.shard_batch(batch, N_DEV))
  _close(parallel.unreplicate(s_p), s_eager)
  _close(parallel.unreplicate(m_p), m_eager)
  assert s_eager.tricks["experience_replay"]["labels"].shape == (32,)
  assert int(s_eager.tricks["experience_replay"]["filled"]) == 16
  if conditioning == "auxiliary":
    assert {"d_class_accuracy_real", "d_class_accuracy_fake", "g_class_loss"} <= set(m_eager)


# --- The trainer ----------------------------------------------------------------------------


def test_acgan_digits_trains_end_to_end_with_pmap_and_samples_by_class(tmp_path):
  c = importlib.import_module("experiments.configs.acgan_digits").get_config()
  c.data.image_size = 8
  c.data.batch_size = 8
  c.model.width = 4
  c.parallel = "pmap"
  c.train.update(steps=2, log_every=1, sample_every=2, checkpoint_every=2, num_samples=20)
  c.eval.every = -1  # FID evaluation is tested in test_evaluate.py
  workdir = str(tmp_path)
  state = trainer.train(c, workdir)
  assert int(state.step) == 2
  assert os.listdir(os.path.join(workdir, "samples")) == ["step_0000002.png"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(l) for l in f]
  assert {"d_class_accuracy_real", "d_class_accuracy_fake", "d_class_loss",
          "g_class_loss"} <= set(records[-1])
  # Grid row i (5 columns for 20 samples) shows class i.
  _, gan, restored = trainer.restore_run(workdir)
  np.testing.assert_array_equal(trainer.grid_labels(gan, 20), np.repeat(np.arange(4), 5))
  a = trainer.sample(gan, restored, jax.random.PRNGKey(0), 6, labels=3)
  b = trainer.sample(gan, restored, jax.random.PRNGKey(0), 6, labels=[3] * 6)
  default = trainer.sample(gan, restored, jax.random.PRNGKey(0), 6)
  assert a.shape == (6, 8, 8, 1)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, default)
  z = jnp.zeros((2, gan.latent_dim))
  with pytest.raises(ValueError, match="generate: .* needs labels, int"):
    generate(gan, restored.g, z)
  with pytest.raises(ValueError, match="needs the real batch's labels"):
    d_step(gan, restored, jnp.zeros((2, 8, 8, 1)), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"classes in \[0, 10\)"):
    trainer.sample(gan, restored, jax.random.PRNGKey(0), 2, labels=10)
  out = str(tmp_path / "threes.npy")
  r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "sample.py"),
                      f"--workdir={workdir}", "--num=3", "--label=3", f"--out={out}"],
                     capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  np.testing.assert_allclose(np.load(out), a[:3], atol=1e-5)


# --- Clear errors ---------------------------------------------------------------------------


def _acgan_config(**model):
  c = importlib.import_module("experiments.configs.acgan_digits").get_config()
  c.data.image_size = 8
  c.model.update(model)
  return c


def test_projection_digits_config_trains(tmp_path):
  # The SNGAN-projection config end to end: spectral norm reaches the class matrix, G has
  # a gain per class in its batch norms and no class embedding on z.
  c = importlib.import_module("experiments.configs.projection_digits").get_config()
  c.data.image_size = 8
  c.data.batch_size = 8
  c.model.width = 4
  c.train.update(steps=2, log_every=1, sample_every=2, checkpoint_every=2, num_samples=20)
  c.eval.every = -1
  state = trainer.train(c, str(tmp_path))
  assert int(state.step) == 2
  assert "class_projection/kernel" in state.tricks["spectral_norm"]  # its power-iteration u
  g_params = state.g.params
  assert g_params["ConditionalBatchNorm_0"]["scale"].shape[0] == 10
  assert "class_embed" not in g_params


def test_inconsistent_conditioning_configs_are_clear_errors(tmp_path):
  c = _acgan_config(num_classes=7)
  with pytest.raises(ValueError, match=r"config.model.num_classes=7 .* has 10 classes"):
    builders.build_data(c)
  c = _acgan_config()
  c.data.labels = False
  with pytest.raises(ValueError, match="set config.data.labels=True"):
    trainer.train(c, str(tmp_path))
  c = _acgan_config(conditioning="none")
  del c.model["aux_weight"]
  with pytest.raises(ValueError, match="num_classes=10 but model.conditioning is 'none'"):
    builders.validate_config(c)
  with pytest.raises(ValueError, match="Unknown conditioning 'film'"):
    builders.validate_config(_acgan_config(conditioning="film"))
  with pytest.raises(ValueError, match="aux_weight is AC-GAN's"):
    builders.build_gan(_acgan_config(conditioning="concat"), (8, 8, 1))
  c = _acgan_config(num_classes=0)
  with pytest.raises(ValueError, match="needs model.num_classes >= 1"):
    builders.validate_config(c)


def test_conditional_gan_misuse_is_refused():
  gan = _acgan_mlp()
  state = init_state(gan, jax.random.PRNGKey(0), (2,))
  with pytest.raises(ValueError, match="set data.labels=True"):
    train_step(gan, state, np.zeros((1, B, 2), np.float32))
  with pytest.raises(ValueError, match=r"Labels of shape \(1, 4\)"):
    train_step(gan, state, {"x": np.zeros((1, B, 2), np.float32),
                            "y": np.zeros((1, 4), np.int32)})
  g, d = models.MODELS.build("mlp", data_shape=(2,), num_classes=3, conditioning="concat")
  with pytest.raises(ValueError, match="discriminator was built with conditioning='concat'"):
    GAN(_acgan_mlp().generator, d, losses.get_loss("hinge"), optax.sgd(LR), optax.sgd(LR),
        latent_dim=3, num_classes=K, conditioning="auxiliary")
  with pytest.raises(ValueError, match="keeps no labels"):
    bad = GAN(g, d, losses.get_loss("hinge"), optax.sgd(LR), optax.sgd(LR), latent_dim=3,
              num_classes=3, conditioning="concat", hooks=(tricks.ExperienceReplay(size=32),))
    s = init_state(bad, jax.random.PRNGKey(0), (2,))
    train_step(bad, s, {"x": np.zeros((1, B, 2), np.float32), "y": np.zeros((1, B), np.int32)})
