"""Data-efficient GAN training: DiffAugment's and ADA's ops against NumPy references, ADA's
p controller on a scripted D, LeCam and CR/bCR/zCR against their formulas, and all of them
on one DCGAN step eagerly, under jit and under pmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import augment, builders, parallel, tricks
from gax.steps import DView, GView, StepContext, jit_train_step, train_step

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)


def _ctx(step=0):
  return StepContext(step=jnp.asarray(step, jnp.int32), axis_name=None)


# --- DiffAugment ops against the reference code, written in NumPy on NCHW ----------------------


def _np_translation(x_nchw, tx, ty):
  """DiffAugment_pytorch.rand_translation with given shifts: pad 1, clamp, gather."""
  b, c, h, w = x_nchw.shape
  pad = np.pad(x_nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
  gx = np.clip(np.arange(h)[None, :, None] + tx[:, None, None] + 1, 0, h + 1)
  gy = np.clip(np.arange(w)[None, None, :] + ty[:, None, None] + 1, 0, w + 1)
  gb = np.broadcast_to(np.arange(b)[:, None, None], (b, h, w))
  return pad.transpose(0, 2, 3, 1)[gb, np.broadcast_to(gx, (b, h, w)),
                                    np.broadcast_to(gy, (b, h, w))].transpose(0, 3, 1, 2)


def _np_cutout(x_nchw, ox, oy, ratio=0.5):
  """DiffAugment_pytorch.rand_cutout with given offsets."""
  b, c, h, w = x_nchw.shape
  sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  mask = np.ones((b, h, w), np.float32)
  for i in range(b):
    rows = np.clip(np.arange(sh) + ox[i] - sh // 2, 0, h - 1)
    cols = np.clip(np.arange(sw) + oy[i] - sw // 2, 0, w - 1)
    mask[i][np.ix_(rows, cols)] = 0
  return x_nchw * mask[:, None]


def test_color_ops_match_the_reference_formulas():
  b = np.array([-0.5, 0.1, 0.3, 0.49], np.float32)
  s = np.array([0.0, 0.5, 1.0, 1.9], np.float32)
  c = np.array([0.5, 0.8, 1.2, 1.5], np.float32)
  ref = X + b[:, None, None, None]
  np.testing.assert_allclose(augment.brightness(X, b), ref, atol=1e-6)
  m = ref.mean(-1, keepdims=True)
  ref = (ref - m) * s[:, None, None, None] + m
  np.testing.assert_allclose(augment.saturation(augment.brightness(X, b), s), ref, atol=1e-6)
  m = ref.mean((1, 2, 3), keepdims=True)
  ref = (ref - m) * c[:, None, None, None] + m
  got = augment.contrast(augment.saturation(augment.brightness(X, b), s), c)
  np.testing.assert_allclose(got, ref, atol=1e-5)


def test_translation_and_cutout_match_the_reference_code():
  tx, ty = np.array([-1, 0, 1, 1]), np.array([1, -1, 0, 1])
  ref = _np_translation(X.transpose(0, 3, 1, 2), tx, ty).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(augment.translate(X, jnp.asarray(tx), jnp.asarray(ty)), ref)
  for ox, oy in [([0, 3, 7, 8], [8, 0, 5, 2]), ([1, 2, 4, 6], [6, 4, 2, 1])]:
    ox, oy = np.array(ox), np.array(oy)
    ref = _np_cutout(X.transpose(0, 3, 1, 2), ox, oy).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(augment.cutout(X, jnp.asarray(ox), jnp.asarray(oy)), ref)
  assert augment.translation_range(X.shape) == (1, 1)  # int(8 * 0.125 + 0.5)
  assert augment.cutout_size(X.shape) == (4, 4)


def test_diff_augment_draws_stay_in_the_reference_ranges():
  x = jnp.zeros((512, 8, 8, 1))
  out = augment.diff_augment(x, jax.random.PRNGKey(0), ["color"])
  # On a constant image only brightness acts: x + U(-0.5, 0.5), one value per image.
  per_image = np.asarray(out[:, 0, 0, 0])
  assert np.all(np.abs(per_image) <= 0.5) and np.allclose(out, per_image[:, None, None, None])
  assert abs(per_image.mean()) < 0.05 and per_image.std() == pytest.approx(1 / math.sqrt(12),
                                                                           rel=0.1)
  ones = jnp.ones((512, 8, 8, 1))
  zeros = 64 - np.asarray(augment.diff_augment(ones, jax.random.PRNGKey(1), ["cutout"])).sum(
      (1, 2, 3))
  assert zeros.min() >= 4 and zeros.max() == 16  # a 4x4 square, cut where it leaves the image
  shifted = augment.diff_augment(ones, jax.random.PRNGKey(2), ["translation"])
  assert set(np.unique(64 - np.asarray(shifted).sum((1, 2, 3)))) == {0, 8, 15}


def test_gradients_flow_through_diff_augment_as_its_linear_transpose():
  key = jax.random.PRNGKey(3)
  policy = ("color", "translation", "cutout")
  f = lambda x: augment.diff_augment(x, key, policy)
  w = jnp.asarray(RNG.normal(size=X.shape), jnp.float32)
  grad = jax.grad(lambda x: jnp.sum(f(x) * w))(jnp.asarray(X))
  assert float(jnp.abs(grad).sum()) > 0
  # Finite differences along a random direction agree with the gradient.
  v = jnp.asarray(RNG.normal(size=X.shape), jnp.float32)
  eps = 1e-2
  fd = (jnp.sum(f(X + eps * v) * w) - jnp.sum(f(X - eps * v) * w)) / (2 * eps)
  np.testing.assert_allclose(fd, jnp.sum(grad * v), rtol=2e-3)


def test_bad_policies_are_refused():
  for bad in ([], ["colour"], ["color", "color"]):
    with pytest.raises(ValueError, match="policy"):
      augment.check_policy(bad)
  with pytest.raises(ValueError, match="images"):
    augment.diff_augment(jnp.zeros((4, 2)), jax.random.PRNGKey(0), ["color"])
  with pytest.raises(ValueError, match="policy"):
    tricks.DiffAugment(policy="color,blur")


# --- ADA's ops ---------------------------------------------------------------------------------


def _g(mats):
  return jnp.asarray(np.stack(mats).astype(np.float32))


def test_affine_is_exact_for_flips_quarter_turns_and_integer_shifts():
  x = X[:1].repeat(3, 0)
  flip = augment.scale2d(jnp.asarray([-1.0]), jnp.asarray([1.0]))[0]
  quarter = augment.rotate2d(jnp.asarray([math.pi / 2]))[0]
  shift = augment.translate2d(jnp.asarray([2.0]), jnp.asarray([-1.0]))[0]
  out = np.asarray(augment.affine(jnp.asarray(x), jnp.stack([flip, quarter, shift])))
  np.testing.assert_allclose(out[0], X[0, :, ::-1], atol=1e-5)
  # Output (x, y) reads input (-y, x): a quarter turn, as np.rot90 in the (row, col) plane.
  np.testing.assert_allclose(out[1], np.rot90(X[0], k=1, axes=(0, 1)), atol=1e-5)
  # Output column j reads input column j + 2 (reflected at the border), row i reads i - 1.
  cols = np.array([min(j + 2, 14 - (j + 2)) for j in range(8)])
  rows = np.array([abs(i - 1) for i in range(8)])
  np.testing.assert_allclose(out[2], X[0][rows][:, cols], atol=1e-5)


def test_affine_interpolates_bilinearly_between_pixels():
  half = augment.translate2d(jnp.asarray([0.5]), jnp.asarray([0.0]))
  out = np.asarray(augment.affine(jnp.asarray(X[:1]), half))[0]
  np.testing.assert_allclose(out[:, :7], (X[0, :, :7] + X[0, :, 1:]) / 2, atol=1e-5)


def test_color_matrices_match_their_definitions():
  n = 2
  v = np.ones(3) / math.sqrt(3)
  rgb = X[:n]
  b = np.array([0.1, -0.2], np.float32)
  got = augment.color_matrix(rgb, augment.translate3d(jnp.asarray(b)))
  np.testing.assert_allclose(got, rgb + b[:, None, None, None], atol=1e-6)
  got = augment.color_matrix(rgb, augment.luma_flip3d(jnp.asarray([1.0, 0.0])))
  flipped = rgb[0] - 2 * (rgb[0] @ v)[..., None] * v
  np.testing.assert_allclose(got[0], flipped, atol=1e-5)
  np.testing.assert_allclose(got[1], rgb[1], atol=1e-6)
  # Hue rotation keeps the luma and the distance to the grey axis.
  got = np.asarray(augment.color_matrix(rgb, augment.hue_rotate3d(jnp.asarray([1.0, 2.5]))))
  np.testing.assert_allclose(got @ v, rgb @ v, atol=1e-5)
  grey = lambda a: np.linalg.norm(a - (a @ v)[..., None] * v, axis=-1)
  np.testing.assert_allclose(grey(got), grey(rgb), atol=1e-5)
  got = augment.color_matrix(rgb, augment.saturation3d(jnp.asarray([0.0, 2.0])))
  np.testing.assert_allclose(got[0], np.broadcast_to((rgb[0] @ v)[..., None] * v, rgb[0].shape),
                             atol=1e-5)
  # Grey images: the mean of the first three rows, as ADA's code applies it.
  m = augment.scale3d(jnp.asarray([2.0, 0.5])) @ augment.translate3d(jnp.asarray([0.1, 0.0]))
  got = augment.color_matrix(X[:n, ..., :1], m)
  np.testing.assert_allclose(got, X[:n, ..., :1] * np.array([2.0, 0.5])[:, None, None, None]
                             + np.array([0.2, 0.0])[:, None, None, None], atol=1e-6)


def test_ada_is_the_identity_at_p_0_and_augments_most_images_at_p_1():
  x = jnp.asarray(X.repeat(16, 0))
  ada = jax.jit(augment.ada_augment)
  np.testing.assert_allclose(ada(x, jax.random.PRNGKey(0), 0.0), x, atol=1e-5)
  out = ada(x, jax.random.PRNGKey(0), 1.0)
  changed = np.abs(np.asarray(out - x)).max((1, 2, 3)) > 1e-3
  assert changed.mean() > 0.95
  # At p = 0.5 an image is mirrored with probability p / 2 (x-flip applied, then flip or
  # not): the only transformation that makes the map's determinant negative.
  params = jax.jit(augment.ada_params, static_argnums=1)(jax.random.PRNGKey(1),
                                                         (4000, 8, 8, 3), 0.5)
  flipped = np.linalg.det(np.asarray(params["g_inv"][:, :2, :2])) < 0
  assert abs(flipped.mean() - 0.25) < 0.03


# --- ADA's controller on a scripted D ------------------------------------------------------------


def _scripted_d_view(real_logits, batch=8):
  x = jnp.zeros((batch, 8, 8, 1))
  return DView(real=x, fake=x, real_logits=real_logits, fake_logits=-real_logits, d=None,
               z=jnp.zeros((batch, 2)), generate=None, key=jax.random.PRNGKey(0))


class _Step:
  def __init__(self, step):
    self.step = jnp.asarray(step, jnp.int32)


def _run_ada(hook, sign, steps, batch=8):
  st = hook.init(None, None, (8, 8, 1))
  ps = []
  for step in range(steps):
    _, metrics, st = hook.d_objective(st, 0.0, _scripted_d_view(sign * jnp.ones(batch)), _ctx())
    st = hook.after_step(st, _Step(step), _ctx(step))
    ps.append(float(st["p"]))
  return ps, metrics


def test_ada_p_rises_when_d_overfits_and_falls_when_it_does_not():
  hook = tricks.AdaptiveAugment(interval=4, kimg=0.1)  # 1 unit of p per 100 images
  ps, metrics = _run_ada(hook, +1.0, 12)  # r_t = 1 > 0.6: D is sure of the reals
  step = 4 * 8 / 100
  np.testing.assert_allclose(ps, [0, 0, 0, step, step, step, step, 2 * step,
                                  2 * step, 2 * step, 2 * step, 3 * step], atol=1e-6)
  assert float(metrics["ada_rt"]) == 1.0
  hook = tricks.AdaptiveAugment(p=0.5, interval=4, kimg=0.1)
  ps, _ = _run_ada(hook, -1.0, 24)  # r_t = -1 < 0.6
  assert ps[3] == pytest.approx(0.5 - step) and ps[-1] == 0.0  # clipped at 0
  fixed = tricks.AdaptiveAugment(p=0.3, adjust=False)
  np.testing.assert_allclose(_run_ada(fixed, +1.0, 8)[0], 0.3, rtol=1e-6)


# --- LeCam and consistency against their formulas --------------------------------------------


def test_lecam_penalty_and_anchors_follow_the_authors_code():
  hook = tricks.LeCam(weight=0.3, decay=0.9, start_step=2)
  real, fake = jnp.asarray([1.0, 3.0]), jnp.asarray([-2.0, 0.5])
  st = hook.init(None, None, (2,))
  view = _scripted_d_view(real, 2)
  view = DView(**{**view.__dict__, "fake_logits": fake})
  # Before start_step: the anchors are the current means and nothing is added.
  loss, m, st = hook.d_objective(st, 1.0, view, _ctx(step=0))
  assert float(loss) == 1.0 and float(st["real"]) == 2.0 and float(st["fake"]) == -0.75
  loss, m, st = hook.d_objective(st, 1.0, view, _ctx(step=2))
  a_r = 0.9 * 2.0 + 0.1 * 2.0
  a_f = 0.9 * -0.75 + 0.1 * -0.75
  reg = (np.mean(np.maximum(np.array([1.0, 3.0]) - a_f, 0) ** 2)
         + np.mean(np.maximum(a_r - np.array([-2.0, 0.5]), 0) ** 2))
  assert float(m["d_lecam"]) == pytest.approx(reg) and float(loss) == pytest.approx(1 + 0.3 * reg)
  # The paper's form without the hinges, and the gradient of the hinged one in the logits.
  plain = tricks.LeCam(relu=False).penalty(real, fake, 0.0, 5.0)
  assert float(plain) == pytest.approx(np.mean((np.array([1.0, 3.0]) - 5) ** 2)
                                       + np.mean((0 - np.array([-2.0, 0.5])) ** 2))
  g = jax.grad(lambda r: hook.penalty(r, fake, 0.0, 2.0))(real)
  np.testing.assert_allclose(g, [0.0, 2 * (3.0 - 2.0) / 2])


def test_consistency_terms_match_their_formulas():
  d = lambda x, labels=None: jnp.sum(x, axis=(1, 2, 3))  # a scripted D: the pixel sum
  gen = lambda z: jnp.broadcast_to(z[:, :1, None, None], (z.shape[0], 8, 8, 1)) * 0.1
  real = jnp.asarray(RNG.uniform(-1, 1, (4, 8, 8, 1)), jnp.float32)
  z = jnp.asarray(RNG.normal(size=(4, 2)), jnp.float32)
  fake = gen(z)
  key = jax.random.PRNGKey(5)
  view = DView(real=real, fake=fake, real_logits=d(real), fake_logits=d(fake), d=d, z=z,
               generate=gen, key=key)
  hook = tricks.Consistency(real_weight=10.0, fake_weight=10.0, z_weight=5.0, z_std=0.03)
  loss, m, _ = hook.d_objective(None, 0.0, view, _ctx())
  k_real, k_fake, k_z = jax.random.split(key, 3)
  cr_real = float(jnp.mean((d(real) - d(augment.flip_translate(real, k_real, None))) ** 2))
  cr_fake = float(jnp.mean((d(fake) - d(augment.flip_translate(fake, k_fake, None))) ** 2))
  zcr = float(jnp.mean((d(fake) - d(gen(z + 0.03 * jax.random.normal(k_z, z.shape)))) ** 2))
  assert float(m["d_cr_real"]) == pytest.approx(cr_real, rel=1e-5) and cr_real > 0
  assert float(m["d_cr_fake"]) == pytest.approx(cr_fake, rel=1e-5)
  assert float(m["d_zcr"]) == pytest.approx(zcr, rel=1e-5) and zcr > 0
  assert float(loss) == pytest.approx(10 * cr_real + 10 * cr_fake + 5 * zcr, rel=1e-5)
  g_hook = tricks.Consistency(real_weight=0.0, g_weight=0.5)
  gview = GView(z=z, generated=fake, fake=fake, fake_logits=d(fake), real_logits=None,
                generate=gen, d=d, key=key)
  loss, m = g_hook.g_objective(None, 1.0, gview, _ctx())
  moved = gen(z + 0.03 * jax.random.normal(key, z.shape))
  assert float(m["g_zcr"]) == pytest.approx(float(jnp.mean((fake - moved) ** 2)), rel=1e-5)
  assert float(loss) == pytest.approx(1.0 - 0.5 * float(m["g_zcr"]), rel=1e-5)
  # flip_translate flips about half the images and shifts by at most one pixel at 8x8.
  t = augment.flip_translate(jnp.ones((256, 8, 8, 1)), key, None)
  assert set(np.unique(64 - np.asarray(t).sum((1, 2, 3)))) <= {0, 8, 15}


def test_consistency_configs_carry_the_papers_weights():
  section = tricks.default_config()
  assert section["cr"]["real_weight"] == 10.0 and section["cr"]["fake_weight"] == 0.0
  assert section["bcr"]["real_weight"] == section["bcr"]["fake_weight"] == 10.0
  assert (section["zcr"]["z_weight"], section["zcr"]["g_weight"]) == (5.0, 0.5)
  assert section["lecam"] == {"enabled": False, "weight": 0.3, "decay": 0.9, "start_step": 1000,
                              "relu": True}
  assert section["ada"]["target"] == 0.6 and section["ada"]["kimg"] == 500.0
  with pytest.raises(ValueError, match="weights"):
    tricks.Consistency(real_weight=0.0)


# --- All of them in one DCGAN step: eager == jit == pmap ---------------------------------------

SHAPE, B, N_DEV = (8, 8, 1), 8, 4
ALL = dict(diffaugment={}, ada={"p": 0.5, "interval": 1, "kimg": 1.0},
           lecam={"start_step": 1}, bcr={}, zcr={})


@pytest.fixture(scope="module")
def data_efficient():
  c = builders.base_config()
  c.model = {"name": "dcgan", "width": 4, "conv_impl": "xla"}  # the smaller program
  c.latent.dim = 4
  for name, options in ALL.items():
    c.tricks[name].enabled = True
    c.tricks[name].update(options)
  gan = builders.build_gan(c, SHAPE)
  state = builders.build_state(gan, c, SHAPE)
  batches = np.random.default_rng(0).integers(0, 256, (2, 1, B, *SHAPE), dtype=np.uint8)
  eager, metrics = [state], []
  for b in batches:
    s, m = train_step(gan, eager[-1], b)
    eager.append(s)
    metrics.append(m)
  return c, gan, state, batches, eager, metrics


def test_data_efficient_tricks_run_and_log(data_efficient):
  _, gan, state, _, eager, metrics = data_efficient
  assert [h.name for h in gan.hooks] == ["diffaugment", "ada", "lecam", "bcr", "zcr"]
  assert set(state.tricks) == {"ada", "lecam"}
  for key in ("ada_p", "ada_rt", "d_lecam", "d_cr_real", "d_cr_fake", "d_zcr", "g_zcr"):
    assert all(np.isfinite(float(m[key])) for m in metrics), key
  # p moved by 8 images / 1000 once per step, up or down with r_t.
  p = [float(s.tricks["ada"]["p"]) for s in eager]
  np.testing.assert_allclose(np.abs(np.diff(p)), 8 / 1000, atol=1e-6)


def test_data_efficient_tricks_jit_and_pmap_match_eager(data_efficient):
  c, gan, state, batches, eager, _ = data_efficient
  # The trainer's jitted step donates the state: a freshly built one (equal to `state`) must
  # have no buffer shared between leaves.
  step = jit_train_step(gan)
  s = builders.build_state(gan, c, SHAPE)
  for b in batches:
    s, _ = step(s, b)
  close = lambda a, b: jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(x, y, atol=5e-5, rtol=1e-4), a, b)
  close(s, eager[-1])
  pgan = builders.build_gan(c, SHAPE, parallel.DEFAULT_AXIS)
  pstep = parallel.pmap_train_step(pgan)
  s = parallel.replicate(state)
  for b in batches:
    s, _ = pstep(s, parallel.shard_batch(b, N_DEV))
  close(parallel.unreplicate(s), eager[-1])


def test_augmentation_tricks_refuse_vector_data():
  c = builders.base_config()
  c.tricks.diffaugment.enabled = True
  gan = builders.build_gan(c, (2,))
  with pytest.raises(ValueError, match="diffaugment augments images"):
    builders.build_state(gan, c, (2,))
