"""gax.noise.slerp and the interpolation launcher experiments/interpolate.py."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import interpolate as interp
from experiments.configs import dcgan_digits
from gax import builders, noise, trainer
from gax.steps import generate, sampling_player
from gax.builders import base_config
from gax.noise import slerp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One compilation per shape instead of one per operation: keeps the tests fast on CPU.
jslerp = jax.jit(slerp)


def slerp_reference(z0, z1, t):
  """White's (2016) NumPy slerp of two vectors, in float64."""
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  omega = np.arccos(np.clip(np.dot(z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)), -1, 1))
  so = np.sin(omega)
  if so == 0:
    return (1.0 - t) * z0 + t * z1
  return np.sin((1.0 - t) * omega) / so * z0 + np.sin(t * omega) / so * z1


def angle(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  return np.arccos(np.clip(cos, -1.0, 1.0))


@pytest.fixture
def pairs():
  k0, k1 = jax.random.split(jax.random.PRNGKey(0))
  return jax.random.normal(k0, (6, 16)), jax.random.normal(k1, (6, 16))


def test_slerp_endpoints_are_exact(pairs):
  z0, z1 = pairs
  np.testing.assert_array_equal(slerp(z0, z1, 0.0), z0)
  np.testing.assert_allclose(slerp(z0, z1, 1.0), z1, rtol=1e-5, atol=1e-6)


def test_slerp_matches_a_numpy_reference(pairs):
  z0, z1 = pairs
  t = np.linspace(0.0, 1.0, 7)
  got = jslerp(z0[:, None], z1[:, None], t)
  assert got.shape == (6, 7, 16)
  want = np.stack([np.stack([slerp_reference(a, b, s) for s in t]) for a, b in zip(
      np.asarray(z0), np.asarray(z1))])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_slerp_keeps_unit_vectors_on_the_sphere_and_moves_at_constant_angle(pairs):
  z0, z1 = pairs
  u0 = z0 / jnp.linalg.norm(z0, axis=-1, keepdims=True)
  u1 = z1 / jnp.linalg.norm(z1, axis=-1, keepdims=True)
  t = jnp.linspace(0.0, 1.0, 11)
  path = jslerp(u0[:, None], u1[:, None], t)
  np.testing.assert_allclose(jnp.linalg.norm(path, axis=-1), 1.0, rtol=1e-5)
  omega = angle(u0, u1)[:, None]
  np.testing.assert_allclose(angle(u0[:, None], path), np.asarray(t) * omega, atol=1e-3)
  # Equal norms (not 1) are kept too; a straight line cuts inside the sphere.
  mid = jslerp(3.0 * u0, 3.0 * u1, 0.5)
  np.testing.assert_allclose(jnp.linalg.norm(mid, axis=-1), 3.0, rtol=1e-5)
  assert np.all(np.linalg.norm(1.5 * (u0 + u1), axis=-1) < 3.0)


def test_slerp_t_broadcasts_against_the_batch(pairs):
  z0, z1 = pairs
  t = jnp.linspace(0.0, 1.0, 6)  # one t per pair
  got = jslerp(z0, z1, t)
  for i in range(6):
    np.testing.assert_allclose(got[i], jslerp(z0[i], z1[i], t[i]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["parallel", "antiparallel", "zero", "nearly_parallel"])
def test_slerp_degenerate_pairs_fall_back_to_linear_without_nan(case):
  z0 = jnp.array([1.0, 2.0, -0.5])
  z1 = {"parallel": 2.0 * z0, "antiparallel": -z0, "zero": jnp.zeros(3),
        "nearly_parallel": z0 + jnp.array([0.0, 0.0, 1e-6])}[case]
  t = jnp.linspace(0.0, 1.0, 5)
  got = jslerp(z0[None], z1[None], t)
  np.testing.assert_allclose(got, (1.0 - t)[:, None] * z0 + t[:, None] * z1, rtol=1e-5,
                             atol=1e-6)
  grads = jax.jit(jax.grad(lambda a, b: jnp.sum(slerp(a, b, 0.3) ** 2), argnums=(0, 1)))(z0, z1)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_interpolate_latents_methods():
  z0, z1 = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
  paths = jax.jit(interp.interpolate_latents, static_argnums=(2, 3))
  lin = paths(z0, z1, 3, "linear")
  np.testing.assert_allclose(lin[0], [[1, 0], [0.5, 0.5], [0, 1]], atol=1e-6)
  sl = paths(z0, z1, 3, "slerp")
  np.testing.assert_allclose(sl[0, 1], [np.sqrt(0.5)] * 2, atol=1e-6)
  with pytest.raises(ValueError, match="Unknown interpolation method 'cubic'"):
    interp.interpolate_latents(z0, z1, 3, "cubic")
  with pytest.raises(ValueError, match="num_steps must be >= 2"):
    interp.interpolate_latents(z0, z1, 1)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  c = dcgan_digits.get_config()
  c.data.image_size = 8
  c.data.batch_size = 8
  c.model.width = 4
  c.train.update(steps=2, log_every=1, sample_every=0, checkpoint_every=2, num_samples=4)
  c.eval.every = -1
  workdir = str(tmp_path_factory.mktemp("digits"))
  trainer.train(c, workdir)
  return workdir


def test_interpolate_writes_an_image_strip_grid(digits_run, tmp_path):
  out = str(tmp_path / "sub" / "interp.png")
  x = interp.interpolate(digits_run, out, num_rows=3, num_steps=4, seed=1, method="slerp")
  assert x.shape == (3, 4, 8, 8, 1) and np.all(np.abs(x) <= 1.0)
  # 8x8 images with 1-pixel padding, enlarged 16x by gax.visualize.save_image_grid.
  with Image.open(out) as im:
    assert im.size == ((4 * 9 + 1) * 16, (3 * 9 + 1) * 16)
  # Rows differ (different latent pairs), and so do the steps along a row.
  assert not np.allclose(x[0], x[1]) and not np.allclose(x[:, 0], x[:, -1])


def test_interpolate_with_truncation_starts_and_ends_at_truncated_latents(digits_run, tmp_path):
  x = interp.interpolate(digits_run, str(tmp_path / "t.png"), num_rows=3, num_steps=4, seed=1,
                         method="linear", truncation=0.5)
  _, gan, state = trainer.restore_run(digits_run)
  k0, k1, g_key = jax.random.split(jax.random.PRNGKey(1), 3)
  draw = noise.truncated_gaussian(0.5)
  for col, k in ((0, k0), (-1, k1)):
    z = draw(k, (3, gan.latent_dim))
    assert float(jnp.max(jnp.abs(z))) <= 0.5
    want = generate(gan, sampling_player(state.g), z, key=g_key)
    np.testing.assert_allclose(x[:, col], want, rtol=1e-5, atol=1e-5)
  plain = interp.interpolate(digits_run, str(tmp_path / "p.png"), num_rows=3, num_steps=4,
                             seed=1, method="linear")
  assert not np.allclose(plain[:, 0], x[:, 0])


def test_interpolate_clear_errors(digits_run, tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    interp.interpolate(str(tmp_path / "nope"), str(tmp_path / "a.png"))
  with pytest.raises(FileNotFoundError, match="not a gax work directory"):
    interp.interpolate(str(tmp_path), str(tmp_path / "a.png"))
  with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 5; it has steps \[2\]"):
    interp.interpolate(digits_run, str(tmp_path / "a.png"), step=5)
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="has no checkpoint yet"):
    interp.interpolate(str(empty), str(tmp_path / "a.png"))
  with pytest.raises(ValueError, match="must be a .png path"):
    interp.interpolate(digits_run, str(tmp_path / "a.npy"))


def test_interpolate_draws_paths_for_2d_points(tmp_path, monkeypatch):
  c = base_config()
  c.data = {"name": "ring", "batch_size": 16}
  c.model = {"name": "mlp", "g_hidden": (8,), "d_hidden": (8,)}
  c.latent.dim = 4
  gan = builders.build_gan(c, (2,))
  state = jax.jit(lambda: builders.build_state(gan, c, (2,)))()
  workdir = str(tmp_path / "ring")
  monkeypatch.setattr(interp, "_check_step", lambda workdir, step: None)
  monkeypatch.setattr(trainer, "restore_run", lambda workdir, step: (c, gan, state))
  out = str(tmp_path / "paths.png")
  x = interp.interpolate(workdir, out, num_rows=5, num_steps=6)
  assert x.shape == (5, 6, 2)
  with Image.open(out) as im:
    assert im.size == (512, 512)
    pixels = np.asarray(im.convert("RGB"))
  reds = (pixels[..., 0] == 200) & (pixels[..., 1] == 30)  # the 8 ring modes' circles
  assert reds.sum() > 8 * 20 and (pixels != 255).any(-1).sum() > reds.sum() + 100


def test_save_paths_draws_each_path_in_its_own_colour(tmp_path):
  paths = np.stack([np.linspace([-1, -1], [1, 1], 5), np.linspace([-1, 1], [1, -1], 5)])
  out = str(tmp_path / "p.png")
  interp.save_paths(out, paths, size=64)
  pixels = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3)
  colours = {tuple(p) for p in pixels} - {(255, 255, 255)}
  assert set(interp._row_colours(2)) <= colours  # pylint: disable=protected-access


def _run(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "interpolate.py"),
                         *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_launcher_command_line(digits_run, tmp_path):
  out = str(tmp_path / "cli.png")
  r = _run(f"--workdir={digits_run}", f"--out={out}", "--num_rows=2", "--num_steps=3",
           "--method=linear", "--step=2")
  assert r.returncode == 0, r.stderr[-3000:]
  with Image.open(out) as im:
    assert im.size == ((3 * 9 + 1) * 16, (2 * 9 + 1) * 16)
