"""Spectral normalisation against numpy.linalg.svd, finite differences and its rule."""

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax.spectral import (init_spectral_state, kernel_matrix, power_iteration,
                          spectral_normalize, spectral_norms)

MODES = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
KEY = jax.random.PRNGKey(0)
RNG = np.random.default_rng(0)


def _top_sv(kernel):
  return np.linalg.svd(np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1]),
                       compute_uv=False)[0]


def _params():
  """Hand-made params: a dense and a conv kernel, a bias, BN-like and list-nested leaves."""
  return {
      "Dense_0": {"kernel": RNG.normal(size=(6, 5)).astype(np.float32),
                  "bias": RNG.normal(size=(5,)).astype(np.float32)},
      "Conv_0": {"kernel": RNG.normal(size=(3, 3, 2, 4)).astype(np.float32)},
      "BatchNorm_0": {"scale": RNG.normal(size=(4,)).astype(np.float32),
                      "bias": RNG.normal(size=(4,)).astype(np.float32)},
      "blocks": [{"kernel": RNG.normal(size=(4, 3)).astype(np.float32)}],
  }


PARAMS = _params()
KERNELS = {"Dense_0/kernel": (6, 5), "Conv_0/kernel": (3, 3, 2, 4), "blocks/0/kernel": (4, 3)}


def test_state_has_one_unit_u_per_kernel_only():
  state = init_spectral_state(PARAMS, KEY)
  assert sorted(state) == sorted(KERNELS)
  for name, shape in KERNELS.items():
    assert state[name].shape == (shape[-1],) and state[name].dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(state[name]), 1.0, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_sigma_matches_svd_for_dense_and_conv_kernels(mode):
  state = init_spectral_state(PARAMS, KEY, n_power_iterations=0)
  sigmas = mode(lambda p, s: spectral_norms(p, s, n_power_iterations=200))(PARAMS, state)
  for name in KERNELS:
    leaf = PARAMS
    for part in name.split("/"):
      leaf = leaf[int(part)] if part.isdigit() else leaf[part]
    np.testing.assert_allclose(sigmas[name], _top_sv(leaf), rtol=1e-4)


def test_sigma_of_a_matrix_with_known_singular_values():
  # K = Q1 diag(s) Q2^T: the estimate converges to s[0] = 3 geometrically in (s1/s0)^2.
  q1, _ = np.linalg.qr(RNG.normal(size=(7, 7)))
  q2, _ = np.linalg.qr(RNG.normal(size=(4, 4)))
  s = np.array([3.0, 1.5, 1.0, 0.2])
  k = (q1[:, :4] * s) @ q2.T
  u0 = jnp.ones(4) / 2.0
  errors = [abs(float(power_iteration(jnp.asarray(k, jnp.float32), u0, n)[2]) - 3.0)
            for n in (1, 3, 30)]
  assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5
  u, v, _ = power_iteration(jnp.asarray(k, jnp.float32), u0, 30)
  np.testing.assert_allclose(np.abs(u @ q2[:, 0]), 1.0, atol=1e-5)   # top right sv of K
  np.testing.assert_allclose(np.abs(v @ q1[:, 0]), 1.0, atol=1e-5)   # top left sv of K


@pytest.mark.parametrize("mode", MODES)
def test_normalized_kernels_have_unit_spectral_norm_and_the_rest_is_untouched(mode):
  state = init_spectral_state(PARAMS, KEY, n_power_iterations=100)
  normed, new_state = mode(spectral_normalize)(PARAMS, state)
  for leaf in (normed["Dense_0"]["kernel"], normed["Conv_0"]["kernel"],
               normed["blocks"][0]["kernel"]):
    np.testing.assert_allclose(_top_sv(leaf), 1.0, rtol=1e-4)
  np.testing.assert_allclose(normed["Conv_0"]["kernel"] * _top_sv(PARAMS["Conv_0"]["kernel"]),
                             PARAMS["Conv_0"]["kernel"], rtol=1e-4, atol=1e-6)
  for path in [("Dense_0", "bias"), ("BatchNorm_0", "scale"), ("BatchNorm_0", "bias")]:
    np.testing.assert_array_equal(normed[path[0]][path[1]], PARAMS[path[0]][path[1]])
  assert jax.tree.structure(normed) == jax.tree.structure(PARAMS)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize("mode", MODES)
def test_one_iteration_per_call_converges_through_the_state(mode):
  step = mode(lambda p, s: spectral_normalize(p, s))
  state = init_spectral_state(PARAMS, KEY, n_power_iterations=0)
  conv = PARAMS["Conv_0"]["kernel"]
  frozen, same = mode(lambda p, s: spectral_normalize(p, s, 1, update_state=False))(PARAMS, state)
  assert all(np.array_equal(same[k], state[k]) for k in state)
  sigma_1 = power_iteration(kernel_matrix(conv), state["Conv_0/kernel"], 1)[2]
  np.testing.assert_allclose(frozen["Conv_0"]["kernel"], conv / sigma_1, rtol=1e-6)
  errors = []
  for _ in range(40):
    normed, state = step(PARAMS, state)
    errors.append(abs(_top_sv(normed["Conv_0"]["kernel"]) - 1.0))
  # The first estimate from a random u is poor (normalised norm above 1); the stored u
  # refines it call by call.
  assert errors[0] > 1e-2 and errors[-1] < 1e-4


def test_gradient_treats_u_and_v_as_constants_and_matches_finite_differences():
  k = np.array([[1.0, 0.3], [-0.5, 2.0], [0.7, 0.1]], np.float32)
  c = np.array([[0.2, -1.0], [0.5, 0.3], [1.5, -0.4]], np.float64)
  state = {"kernel": jnp.array([0.6, 0.8])}
  f = lambda p: jnp.sum(c * spectral_normalize(p, state, 2)[0]["kernel"])  # noqa: E731
  got = jax.grad(f)({"kernel": k})["kernel"]
  # Reference: f(K) = sum(c * K / (v0^T K u0)) with the u0, v0 that the call computes at K,
  # held fixed, differentiated by central differences in float64.
  u0, v0, _ = power_iteration(jnp.asarray(k), state["kernel"], 2)
  u0, v0 = np.asarray(u0, np.float64), np.asarray(v0, np.float64)
  fixed = lambda kk: np.sum(c * kk / (v0 @ kk @ u0))  # noqa: E731
  h, fd = 1e-6, np.zeros_like(c)
  for i in np.ndindex(*k.shape):
    e = np.zeros_like(c)
    e[i] = h
    fd[i] = (fixed(k + e) - fixed(k - e)) / (2 * h)
  np.testing.assert_allclose(got, fd, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jax.jit(jax.grad(f))({"kernel": k})["kernel"], got, rtol=1e-5)
  # ... and the closed form d sigma / dK = v u^T (Miyato et al. 2018, eq. 12).
  sigma_grad = jax.grad(lambda kk: power_iteration(kk, state["kernel"], 2)[2])(jnp.asarray(k))
  np.testing.assert_allclose(sigma_grad, np.outer(v0, u0), rtol=1e-5, atol=1e-6)


class _D(nn.Module):
  @nn.compact
  def __call__(self, x, train=True):
    x = nn.leaky_relu(nn.Conv(4, (3, 3), strides=(2, 2))(x), 0.2)
    x = nn.LayerNorm()(x)
    x = nn.leaky_relu(nn.Dense(8)(x.reshape(x.shape[0], -1)), 0.2)
    return nn.Dense(1)(x)[:, 0]


def test_flax_discriminator_loss_under_jit_with_checkpointable_state():
  d = _D()
  x = jnp.asarray(RNG.normal(size=(2, 8, 8, 1)), jnp.float32)
  params = jax.jit(d.init)(KEY, x)["params"]
  state = init_spectral_state(params, jax.random.PRNGKey(1))
  assert sorted(state) == ["Conv_0/kernel", "Dense_0/kernel", "Dense_1/kernel"]

  def loss(params, state):
    normed, state = spectral_normalize(params, state)
    return jnp.mean(jax.nn.softplus(-d.apply({"params": normed}, x))), state

  # Eager == jit is checked on the hand-made params above; here jit only.
  (_, s_jit), g_jit = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, state)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(g_jit))
  for name in ("Conv_0", "Dense_0", "Dense_1"):
    assert np.any(np.abs(g_jit[name]["kernel"]) > 1e-6)
  restored = flax.serialization.from_bytes(state, flax.serialization.to_bytes(s_jit))
  jax.tree.map(np.testing.assert_array_equal, restored, s_jit)


def test_custom_rule_and_errors():
  state = init_spectral_state(PARAMS, KEY, include=lambda path, leaf: path == "Dense_0/kernel")
  normed, _ = spectral_normalize(PARAMS, state)
  np.testing.assert_array_equal(normed["Conv_0"]["kernel"], PARAMS["Conv_0"]["kernel"])
  assert not np.allclose(normed["Dense_0"]["kernel"], PARAMS["Dense_0"]["kernel"])
  np.testing.assert_array_equal(kernel_matrix(PARAMS["Conv_0"]["kernel"]),
                                PARAMS["Conv_0"]["kernel"].reshape(18, 4))
  with pytest.raises(KeyError, match="Other/kernel"):
    spectral_normalize(PARAMS, {**state, "Other/kernel": jnp.ones(3)})
  with pytest.raises(ValueError, match="u of shape"):
    spectral_normalize(PARAMS, {"Dense_0/kernel": jnp.ones(6)})
  with pytest.raises(ValueError, match="n_iterations must be an integer >= 1"):
    spectral_normalize(PARAMS, state, n_power_iterations=0)
  with pytest.raises(ValueError, match="needs a matrix"):
    init_spectral_state(PARAMS, KEY, include=lambda path, leaf: path.endswith("bias"))
  assert init_spectral_state({"bias": jnp.ones(3)}, KEY) == {}
