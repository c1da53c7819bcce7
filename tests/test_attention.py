"""SAGAN's self-attention block (Zhang et al. 2019, eqs. 1-3) against a NumPy reference
written from the paper, the identity at initialisation (gamma = 0), spectral normalisation
of its maps, and the DCGAN pair with the block at a chosen resolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import models, spectral
from gax.layers import SelfAttention


def _sagan_reference(x, p, gamma):
  """Eqs. 1-3 of the paper, position by position, in float64."""
  b, h, w, c = x.shape
  out = np.empty_like(x, dtype=np.float64)
  wf, wg, wh, wv = (np.asarray(p[n]["kernel"], np.float64) for n in ("f", "g", "h", "v"))
  for n in range(b):
    xs = x[n].reshape(h * w, c).astype(np.float64)
    f, g, hh = xs @ wf, xs @ wg, xs @ wh
    for j in range(h * w):
      s = np.array([f[i] @ g[j] for i in range(h * w)])  # s_ij for this j
      beta = np.exp(s - s.max())
      beta /= beta.sum()
      o = (beta[:, None] * hh).sum(0) @ wv
      out[n].reshape(h * w, c)[j] = gamma * o + xs[j]
  return out


def test_self_attention_matches_the_paper_s_equations():
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 16)))
  layer = SelfAttention()
  params = layer.init(jax.random.PRNGKey(1), x)["params"]
  assert {k: v["kernel"].shape for k, v in params.items() if k != "gamma"} == {
      "f": (16, 2), "g": (16, 2), "h": (16, 2), "v": (2, 16)}
  # gamma starts at 0: the block is the identity.
  np.testing.assert_array_equal(layer.apply({"params": params}, x), x)
  params = {**params, "gamma": jnp.float32(0.7)}
  got = layer.apply({"params": params}, x)
  np.testing.assert_allclose(got, _sagan_reference(x, params, 0.7), rtol=1e-4, atol=1e-5)
  # Each example attends within itself: changing example 1 leaves example 0 alone.
  other = layer.apply({"params": params}, np.concatenate([x[:1], np.zeros_like(x[1:])]))
  np.testing.assert_allclose(other[0], got[0], rtol=1e-6)


def test_spectral_norm_normalises_the_attention_maps():
  params = SelfAttention().init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 16)))["params"]
  sn = spectral.init_spectral_state(params, jax.random.PRNGKey(1), n_power_iterations=30)
  assert set(sn) == {"f/kernel", "g/kernel", "h/kernel", "v/kernel"}
  normed, _ = spectral.spectral_normalize(params, sn, 30)
  for n in "fghv":
    assert np.linalg.norm(np.asarray(normed[n]["kernel"]), 2) == pytest.approx(1.0, rel=1e-3)


def test_dcgan_pair_with_attention_at_a_hidden_resolution():
  g, d = models.MODELS.build("dcgan", data_shape=(16, 16, 1), width=8, attention=8)
  z = jnp.ones((2, 5))
  gv = g.init(jax.random.PRNGKey(0), z)
  dv = d.init(jax.random.PRNGKey(1), jnp.zeros((2, 16, 16, 1)))
  assert "SelfAttention_0" in gv["params"] and "SelfAttention_0" in dv["params"]
  # At 8x8: G's block after its first upsampling (16 -> 8 channels), D's after its first
  # layer (8 channels); none at 4x4.
  assert gv["params"]["SelfAttention_0"]["v"]["kernel"].shape[-1] == 8
  assert dv["params"]["SelfAttention_0"]["v"]["kernel"].shape[-1] == 8
  assert "SelfAttention_1" not in gv["params"] and "SelfAttention_1" not in dv["params"]
  plain_g, _ = models.MODELS.build("dcgan", data_shape=(16, 16, 1), width=8)
  pv = {**gv, "params": {k: v for k, v in gv["params"].items() if k != "SelfAttention_0"}}
  # gamma = 0 at init: the same images as the network without the block.
  np.testing.assert_allclose(g.apply(gv, z, mutable=["batch_stats"])[0],
                             plain_g.apply(pv, z, mutable=["batch_stats"])[0], atol=1e-6)
  with pytest.raises(ValueError, match="hidden resolution"):
    models.MODELS.build("dcgan", data_shape=(16, 16, 1), width=8, attention=16)
