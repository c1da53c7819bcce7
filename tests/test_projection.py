"""The projection discriminator (Miyato & Koyama 2018) and G's conditional batch norm: the
class term against a hand-computed inner product, the whole D against the unconditional D
plus that term, conditional batch norm against batch norm followed by each class's affine
map (NumPy, train and eval mode), spectral normalisation of the class matrix, and clear
errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import models, spectral
from gax.models import conditioning as cond
from gax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gax.models.mlp import MLPDiscriminator, MLPGenerator

K = 3


def test_class_projection_is_the_inner_product_with_the_label_s_row():
  f = jax.random.normal(jax.random.PRNGKey(0), (5, 7))
  y = jnp.array([0, 2, 1, 2, 0])
  layer = cond.ClassProjection(K)
  params = layer.init(jax.random.PRNGKey(1), f, y)
  v = np.asarray(params["params"]["kernel"])
  assert v.shape == (K, 7)
  want = [float(np.dot(v[c], np.asarray(f)[i])) for i, c in enumerate(np.asarray(y))]
  np.testing.assert_allclose(layer.apply(params, f, y), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda c: DCGANDiscriminator(resolution=8, width=4, num_classes=K if c != "none" else 0,
                                 conditioning=c),
    lambda c: MLPDiscriminator(hidden=(6, 5), num_classes=K if c != "none" else 0,
                               conditioning=c),
])
def test_projection_d_is_the_unconditional_d_plus_the_class_term(make):
  # Miyato & Koyama 2018, eq. 3: f(x, y) = psi(phi(x)) + y^T V phi(x).
  is_mlp = isinstance(make("none"), MLPDiscriminator)
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 2) if is_mlp else (6, 8, 8, 1))
  y = jnp.array([0, 1, 2, 2, 1, 0])
  d = make("projection")
  variables = d.init(jax.random.PRNGKey(1), x, True, y)
  assert "class_projection" in variables["params"]
  (logits, out) = d.apply(variables, x, True, y, mutable=["batch_stats", "intermediates"])
  features = np.asarray(out["intermediates"]["features"][0])
  plain = make("none")
  plain_vars = {**variables, "params": {k: v for k, v in variables["params"].items()
                                        if k != "class_projection"}}
  base, _ = plain.apply(plain_vars, x, True, mutable=["batch_stats", "intermediates"])
  v = np.asarray(variables["params"]["class_projection"]["kernel"])
  term = np.sum(v[np.asarray(y)] * features, axis=-1)
  np.testing.assert_allclose(logits, np.asarray(base) + term, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="needs labels"):
    d.apply(variables, x, True, mutable=["batch_stats", "intermediates"])


def _bn_reference(x, gamma, beta, y, eps=1e-5):
  axes = tuple(range(x.ndim - 1))
  mean, var = x.mean(axes), x.var(axes)
  shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
  return ((x - mean) / np.sqrt(var + eps) * gamma[y].reshape(shape)
          + beta[y].reshape(shape)), mean, var


@pytest.mark.parametrize("shape", [(8, 5), (8, 3, 3, 4)])
def test_conditional_batch_norm_is_batch_norm_then_the_class_affine_map(shape):
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), shape)) * 2 + 1
  y = np.array([0, 1, 2, 0, 1, 2, 2, 2])
  layer = cond.ConditionalBatchNorm(K, scale_init=nn_normal_around_one)
  variables = layer.init(jax.random.PRNGKey(1), x, y)
  gamma = np.asarray(variables["params"]["scale"])
  beta = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (K, shape[-1])))
  variables = {"params": {"scale": gamma, "bias": beta}, "batch_stats":
               variables["batch_stats"]}
  out, new = layer.apply(variables, x, y, mutable=["batch_stats"])
  want, mean, var = _bn_reference(x.astype(np.float64), gamma, beta, y)
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
  # Running averages as nn.BatchNorm keeps them: momentum 0.9 of (0, 1), the unbiased var.
  stats = new["batch_stats"]["norm"]
  n = x.size // shape[-1]
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-5)
  assert n > 1
  # Eval mode normalises with the running averages instead of the batch's.
  ev = cond.ConditionalBatchNorm(K, use_running_average=True)
  got = ev.apply({"params": variables["params"], "batch_stats": new["batch_stats"]}, x, y)
  m, v = np.asarray(stats["mean"]), np.asarray(stats["var"])
  bshape = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
  want_eval = ((x - m) / np.sqrt(v + 1e-5) * gamma[y].reshape(bshape) + beta[y].reshape(bshape))
  np.testing.assert_allclose(got, want_eval, rtol=1e-4, atol=1e-4)


def nn_normal_around_one(key, shape, dtype=jnp.float32):
  return 1.0 + 0.3 * jax.random.normal(key, shape, dtype)


def test_projection_generator_uses_conditional_batch_norm_and_no_latent_embedding():
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
  y = jnp.array([0, 1, 2, 1])
  for g in (DCGANGenerator(resolution=8, width=4, channels=1, num_classes=K,
                           conditioning="projection"),
            MLPGenerator(hidden=(32,), norm="batch", num_classes=K, conditioning="projection")):
    variables = g.init(jax.random.PRNGKey(1), z, True, y)
    flat = {spectral.path_name(p) for p, _ in
            jax.tree_util.tree_flatten_with_path(variables["params"])[0]}
    assert not any("class_embed" in n for n in flat), flat
    cbn = [n for n in flat if n.startswith("ConditionalBatchNorm_") and n.endswith("scale")]
    assert cbn and all(variables["params"][n.split("/")[0]]["scale"].shape[0] == K for n in cbn)
    out, _ = g.apply(variables, z, True, y, mutable=["batch_stats"])
    # Changing one example's class changes that example only (shared batch statistics).
    other, _ = g.apply(variables, z, True, y.at[0].set(2), mutable=["batch_stats"])
    assert not np.allclose(out[0], other[0])
    np.testing.assert_allclose(out[1:], other[1:], rtol=1e-5, atol=1e-6)


def test_spectral_norm_normalises_the_class_matrix():
  d = DCGANDiscriminator(resolution=8, width=4, num_classes=K, conditioning="projection")
  x = jnp.zeros((2, 8, 8, 1))
  params = d.init(jax.random.PRNGKey(0), x, True, jnp.array([0, 1]))["params"]
  sn = spectral.init_spectral_state(params, jax.random.PRNGKey(1), n_power_iterations=30)
  normed, _ = spectral.spectral_normalize(params, sn, 30)
  v = np.asarray(normed["class_projection"]["kernel"])
  assert np.linalg.norm(v, 2) == pytest.approx(1.0, rel=1e-3)


def test_projection_misuse_is_refused():
  with pytest.raises(ValueError, match="g_norm='batch'"):
    models.MODELS.build("dcgan", data_shape=(8, 8, 1), width=4, num_classes=K,
                        conditioning="projection", g_norm="instance")[0].init(
                            jax.random.PRNGKey(0), jnp.zeros((2, 4)), True, jnp.array([0, 1]))
  with pytest.raises(ValueError, match="g_norm='batch'"):
    MLPGenerator(hidden=(5,), num_classes=K, conditioning="projection").init(
        jax.random.PRNGKey(0), jnp.zeros((2, 4)), True, jnp.array([0, 1]))
  with pytest.raises(ValueError, match="'concat', 'auxiliary' or 'projection'"):
    cond.check_conditioning(K, "none")
