"""gax.layers against closed forms and slow NumPy references."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import layers

RNG = np.random.default_rng(0)


def _randn(*shape):
  return RNG.normal(size=shape).astype(np.float32)


def _init_and_apply(module, x, **kwargs):
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(x), **kwargs)
  return variables, np.asarray(module.apply(variables, jnp.asarray(x), **kwargs))


def _with_random_affine(variables, name_scale="scale", name_bias="bias"):
  params = flax.core.unfreeze(variables["params"])
  params[name_scale] = _randn(*params[name_scale].shape)
  params[name_bias] = _randn(*params[name_bias].shape)
  return {"params": params}


# --- InstanceNorm ------------------------------------------------------------------------


def test_instance_norm_matches_numpy_per_example_per_channel():
  x = _randn(3, 4, 5, 2) * 3.0 + 1.0
  m = layers.InstanceNorm(epsilon=1e-5)
  v = _with_random_affine(m.init(jax.random.PRNGKey(0), x))
  out = np.asarray(m.apply(v, x))
  scale, bias = v["params"]["scale"], v["params"]["bias"]
  expected = np.empty_like(x)
  for b in range(3):
    for c in range(2):
      xs = x[b, :, :, c].astype(np.float64)
      expected[b, :, :, c] = (xs - xs.mean()) / np.sqrt(xs.var() + 1e-5) * scale[c] + bias[c]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_instance_norm_defaults_give_zero_mean_unit_variance_and_ignore_the_batch():
  x = _randn(2, 6, 6, 3) + 5.0
  _, out = _init_and_apply(layers.InstanceNorm(), x)
  np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.var(axis=(1, 2)), 1.0, atol=1e-3)
  _, alone = _init_and_apply(layers.InstanceNorm(), x[:1])
  np.testing.assert_allclose(alone, out[:1], atol=1e-6)


def test_instance_norm_needs_a_spatial_axis():
  with pytest.raises(ValueError, match="spatial"):
    _init_and_apply(layers.InstanceNorm(), _randn(4, 3))


# --- VirtualBatchNorm --------------------------------------------------------------------

N_REF = 3


def _vbn_numpy(x, n, scale, bias, eps=1e-5):
  """Normalises each non-reference row i with the plain mean / variance of the set
  {reference rows, row i} over batch and spatial axes; reference rows with their own."""
  x = x.astype(np.float64)
  axes = tuple(range(x.ndim - 1))
  out = np.empty_like(x)
  ref = x[:n]
  out[:n] = (ref - ref.mean(axes)) / np.sqrt(ref.var(axes) + eps)
  for i in range(n, x.shape[0]):
    pooled = np.concatenate([ref, x[i:i + 1]])
    out[i] = (x[i] - pooled.mean(axes)) / np.sqrt(pooled.var(axes) + eps)
  return out * scale + bias


@pytest.mark.parametrize("shape", [(N_REF + 4, 3, 2, 5), (N_REF + 2, 6)])
def test_virtual_batch_norm_matches_numpy_reference_plus_example(shape):
  x = _randn(*shape) * 2.0 + 0.5
  m = layers.VirtualBatchNorm(reference_size=N_REF)
  v = _with_random_affine(m.init(jax.random.PRNGKey(0), x))
  out = np.asarray(m.apply(v, x))
  expected = _vbn_numpy(x, N_REF, v["params"]["scale"], v["params"]["bias"])
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_virtual_batch_norm_weights_the_example_by_one_over_n_plus_one():
  # Closed form with no spatial axes: 1 channel, reference {0, 2} (mean 1, E[x^2] 2) and an
  # example 4: mean = 2/3 * 1 + 1/3 * 4 = 2, E[x^2] = 2/3 * 2 + 1/3 * 16 = 20/3, var = 8/3.
  x = np.array([[0.0], [2.0], [4.0]], np.float32)
  _, out = _init_and_apply(layers.VirtualBatchNorm(reference_size=2, epsilon=0.0), x)
  np.testing.assert_allclose(out[2, 0], (4.0 - 2.0) / np.sqrt(8.0 / 3.0), rtol=1e-6)
  np.testing.assert_allclose(out[:2, 0], [-1.0, 1.0], rtol=1e-6)  # reference: its own stats


def test_virtual_batch_norm_output_does_not_depend_on_the_other_examples():
  x = _randn(N_REF + 4, 2, 2, 3)
  m = layers.VirtualBatchNorm(reference_size=N_REF)
  v, out = _init_and_apply(m, x)
  y = x.copy()
  y[N_REF + 1:] = _randn(3, 2, 2, 3) * 10.0 - 4.0  # replace every example but the first
  out_y = np.asarray(m.apply(v, y))
  np.testing.assert_allclose(out_y[:N_REF + 1], out[:N_REF + 1], rtol=1e-6, atol=1e-6)
  alone = np.asarray(m.apply(v, x[:N_REF + 1]))  # batch of one example
  np.testing.assert_allclose(alone, out[:N_REF + 1], rtol=1e-6, atol=1e-6)


def test_virtual_batch_norm_needs_reference_rows_and_one_example():
  with pytest.raises(ValueError, match="at least 4 rows"):
    _init_and_apply(layers.VirtualBatchNorm(reference_size=3), _randn(3, 5))
  with pytest.raises(ValueError, match="reference_size must be an integer >= 1"):
    _init_and_apply(layers.VirtualBatchNorm(reference_size=0), _randn(3, 5))


# --- MinibatchDiscrimination -------------------------------------------------------------


@pytest.mark.parametrize("include_self", [True, False])
def test_minibatch_discrimination_matches_a_double_loop(include_self):
  n, a, nb, c = 5, 6, 4, 3
  f = _randn(n, a)
  m = layers.MinibatchDiscrimination(num_kernels=nb, kernel_dim=c, include_self=include_self,
                                     kernel_init=jax.nn.initializers.normal(0.3))
  v, out = _init_and_apply(m, f)
  t = np.asarray(v["params"]["kernel"], np.float64)
  assert t.shape == (a, nb * c)
  mats = [(f[i].astype(np.float64) @ t).reshape(nb, c) for i in range(n)]
  o = np.zeros((n, nb))
  for i in range(n):
    for j in range(n):
      if j == i and not include_self:
        continue
      for b in range(nb):
        o[i, b] += np.exp(-np.sum(np.abs(mats[i][b] - mats[j][b])))
  assert out.shape == (n, a + nb)
  np.testing.assert_array_equal(out[:, :a], f)
  np.testing.assert_allclose(out[:, a:], o, rtol=1e-5, atol=1e-6)


def test_minibatch_discrimination_self_term_is_one():
  # A batch of identical examples: every c_b is exp(0) = 1, so o = n (or n - 1 without j = i).
  f = np.tile(_randn(1, 4), (3, 1))
  _, out = _init_and_apply(layers.MinibatchDiscrimination(num_kernels=2, kernel_dim=2), f)
  np.testing.assert_allclose(out[:, 4:], 3.0, rtol=1e-6)
  _, out = _init_and_apply(
      layers.MinibatchDiscrimination(num_kernels=2, kernel_dim=2, include_self=False), f)
  np.testing.assert_allclose(out[:, 4:], 2.0, rtol=1e-6)


# --- MinibatchStdDev ---------------------------------------------------------------------


def _mbstd_numpy(x, group_size):
  b = x.shape[0]
  g = b if group_size is None else min(group_size, b)
  m = b // g
  x = x.astype(np.float64)
  out_feature = np.empty(b)
  for grp in range(m):
    members = [i for i in range(b) if i % m == grp]  # ProGAN's layout: [G, B / G, ...]
    std = np.sqrt(x[members].var(axis=0) + 1e-8)
    out_feature[members] = std.mean()
  feature = np.broadcast_to(out_feature.reshape((b,) + (1,) * (x.ndim - 1)), x.shape[:-1] + (1,))
  return np.concatenate([x, feature], axis=-1)


@pytest.mark.parametrize("shape,group_size", [((6, 3, 3, 2), None), ((6, 3, 3, 2), 2),
                                              ((6, 3, 3, 2), 3), ((4, 5), None), ((4, 5), 2),
                                              ((2, 5), 4)])
def test_minibatch_stddev_matches_numpy(shape, group_size):
  x = _randn(*shape) * 1.5
  _, out = _init_and_apply(layers.MinibatchStdDev(group_size=group_size), x)
  assert out.shape == shape[:-1] + (shape[-1] + 1,)
  np.testing.assert_allclose(out, _mbstd_numpy(x, group_size), rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_of_a_constant_batch_is_zero_and_bad_groups_are_rejected():
  _, out = _init_and_apply(layers.MinibatchStdDev(), np.ones((4, 3), np.float32))
  np.testing.assert_allclose(out[:, -1], 1e-4, rtol=1e-3)  # sqrt(0 + 1e-8)
  with pytest.raises(ValueError, match="not divisible by group_size 4"):
    _init_and_apply(layers.MinibatchStdDev(group_size=4), _randn(6, 3))


# --- GaussianNoise -----------------------------------------------------------------------


def test_gaussian_noise_is_the_identity_when_deterministic_and_n0_std2_otherwise():
  x = np.zeros((100, 100), np.float32)
  m = layers.GaussianNoise(stddev=0.3)
  np.testing.assert_array_equal(m.apply({}, x, deterministic=True), x)
  rngs = {"noise": jax.random.PRNGKey(1)}
  a = np.asarray(m.apply({}, x, deterministic=False, rngs=rngs))
  assert abs(a.mean()) < 0.01 and abs(a.std() - 0.3) < 0.01
  np.testing.assert_array_equal(m.apply({}, x, deterministic=False, rngs=rngs), a)
  b = m.apply({}, x, deterministic=False, rngs={"noise": jax.random.PRNGKey(2)})
  assert not np.allclose(a, b)
  with pytest.raises(flax.errors.InvalidRngError):
    m.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
  np.testing.assert_array_equal(
      layers.GaussianNoise(stddev=0.0).apply({}, x + 1, deterministic=False), x + 1)


# --- depth_to_space / PixelShuffle -------------------------------------------------------


def test_depth_to_space_known_layout():
  # One pixel, r = 2, C = 1: channels (i, j) = (0,0), (0,1), (1,0), (1,1) -> a 2x2 block.
  x = jnp.arange(4.0).reshape(1, 1, 1, 4)
  np.testing.assert_array_equal(layers.depth_to_space(x, 2)[0, :, :, 0], [[0, 1], [2, 3]])
  # C = 2: channel (i * r + j) * C + c, so channels 0, 2, 4, 6 form the block of c = 0.
  x = jnp.arange(8.0).reshape(1, 1, 1, 8)
  y = layers.depth_to_space(x, 2)[0]
  np.testing.assert_array_equal(y[:, :, 0], [[0, 2], [4, 6]])
  np.testing.assert_array_equal(y[:, :, 1], [[1, 3], [5, 7]])


@pytest.mark.parametrize("r", [2, 3])
def test_depth_to_space_matches_a_numpy_loop(r):
  b, h, w, c = 2, 3, 2, 2
  x = _randn(b, h, w, r * r * c)
  expected = np.empty((b, h * r, w * r, c), np.float32)
  for hh in range(h):
    for ww in range(w):
      for i in range(r):
        for j in range(r):
          for cc in range(c):
            expected[:, hh * r + i, ww * r + j, cc] = x[:, hh, ww, (i * r + j) * c + cc]
  np.testing.assert_array_equal(layers.depth_to_space(jnp.asarray(x), r), expected)
  with pytest.raises(ValueError, match="divisible"):
    layers.depth_to_space(jnp.asarray(x[..., :-1]), r)


def test_pixel_shuffle_doubles_resolution_and_starts_free_of_checkerboard():
  x = _randn(2, 4, 4, 3)
  m = layers.PixelShuffle(features=5, scale=2)
  v, out = _init_and_apply(m, x)
  assert out.shape == (2, 8, 8, 5)
  assert v["params"]["Conv_0"]["kernel"].shape == (3, 3, 3, 20)
  # ICNR: every 2x2 output block is constant, i.e. nearest-neighbour upsampling of a conv.
  blocks = out.reshape(2, 4, 2, 4, 2, 5)
  np.testing.assert_allclose(blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape),
                             atol=1e-6)
  _, plain = _init_and_apply(layers.PixelShuffle(features=5, scale=2, icnr=False), x)
  assert not np.allclose(plain.reshape(2, 4, 2, 4, 2, 5)[:, :, 0], plain.reshape(
      2, 4, 2, 4, 2, 5)[:, :, 1])


def test_check_option_names_the_option_and_the_allowed_values():
  with pytest.raises(ValueError, match="Unknown g_norm 'bn'; allowed: 'batch', 'none'"):
    layers.check_option("g_norm", "bn", ("batch", "none"))
  layers.check_option("g_norm", "none", ("batch", "none"))


# --- Maxout ------------------------------------------------------------------------------


def test_maxout_is_the_max_of_its_affine_pieces():
  x = _randn(5, 3)
  m = layers.Maxout(features=4, pieces=3)
  v = m.init(jax.random.PRNGKey(0), x)
  params = flax.core.unfreeze(v["params"])
  params["Dense_0"]["bias"] = _randn(12)
  out = np.asarray(m.apply({"params": params}, x))
  w = np.asarray(params["Dense_0"]["kernel"], np.float64)
  b = np.asarray(params["Dense_0"]["bias"], np.float64)
  expected = np.empty((5, 4))
  for n in range(5):
    for j in range(4):  # unit j owns the columns j * pieces ... j * pieces + pieces - 1
      expected[n, j] = max(x[n] @ w[:, j * 3 + k] + b[j * 3 + k] for k in range(3))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="Maxout pieces must be an integer >= 1"):
    layers.Maxout(features=4, pieces=0).init(jax.random.PRNGKey(0), x)
