"""DCGAN and MLP architectures against the DCGAN paper's guidelines, and their GAN-trick
options (gax.layers)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import losses, models
from gax.models.dcgan import num_stages
from gax.state import split_variables
from gax.steps import GAN, apply_model, init_state, train_step


def _init(module, x):
  return module.init(jax.random.PRNGKey(0), x, train=False)


@pytest.mark.parametrize("resolution,channels", [(8, 1), (16, 3), (32, 1)])
def test_dcgan_shapes(resolution, channels):
  g, d = models.MODELS.build("dcgan", data_shape=(resolution, resolution, channels), width=8)
  z = jnp.ones((3, 10))
  gv = _init(g, z)
  x = g.apply(gv, z, train=False)
  assert x.shape == (3, resolution, resolution, channels)
  assert float(jnp.max(jnp.abs(x))) <= 1.0  # tanh output
  dv = _init(d, x)
  assert d.apply(dv, x, train=False).shape == (3,)


def test_dcgan_64_has_the_papers_channel_progression():
  g, d = models.MODELS.build("dcgan", data_shape=(64, 64, 3), width=64)
  gv = jax.eval_shape(lambda: _init(g, jnp.ones((2, 100))))
  dv = jax.eval_shape(lambda: _init(d, jnp.ones((2, 64, 64, 3))))
  gp, dp = gv["params"], dv["params"]
  assert gp["Dense_0"]["kernel"].shape == (100, 4 * 4 * 512)  # project and reshape
  assert [gp[f"ConvTranspose_{i}"]["kernel"].shape[-1] for i in range(4)] == [256, 128, 64, 3]
  assert [dp[f"Conv_{i}"]["kernel"].shape[-1] for i in range(5)] == [64, 128, 256, 512, 1]
  assert all(dp[f"Conv_{i}"]["kernel"].shape[:2] == (4, 4) for i in range(5))
  # Batch norm everywhere except G's output and D's input layer: 4 in G, 3 in D.
  assert len([k for k in gp if k.startswith("BatchNorm")]) == 4
  assert len([k for k in dp if k.startswith("BatchNorm")]) == 3
  assert "batch_stats" in gv and "batch_stats" in dv


def test_dcgan_weights_are_drawn_from_n0_002():
  g, d = models.MODELS.build("dcgan", data_shape=(32, 32, 3), width=64)
  dv = _init(d, jnp.ones((2, 32, 32, 3)))
  k = np.asarray(dv["params"]["Conv_1"]["kernel"]).ravel()
  assert abs(k.mean()) < 2e-3 and abs(k.std() - 0.02) < 1e-3


def test_dcgan_batch_norm_updates_batch_stats_in_train_mode():
  _, d = models.MODELS.build("dcgan", data_shape=(16, 16, 1), width=4)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1)) + 3.0
  v = _init(d, x)
  _, new = d.apply(v, x, train=True, mutable=["batch_stats"])
  before = jax.tree_util.tree_leaves(v["batch_stats"])
  after = jax.tree_util.tree_leaves(new["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("resolution", [4, 12, 48, 0])
def test_bad_dcgan_resolution_is_rejected(resolution):
  with pytest.raises(ValueError, match="4 \\* 2\\^k"):
    num_stages(resolution)


def test_dcgan_needs_square_images_and_mlp_needs_vectors():
  with pytest.raises(ValueError, match="square"):
    models.MODELS.build("dcgan", data_shape=(16, 8, 1))
  with pytest.raises(ValueError, match="vector data"):
    models.MODELS.build("mlp", data_shape=(8, 8, 1))


def test_unknown_model_option_names_the_option():
  with pytest.raises(TypeError, match="Bad arguments for model 'dcgan'.*depth"):
    models.MODELS.build("dcgan", data_shape=(16, 16, 1), depth=3)


def test_mlp_shapes():
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(16,), d_hidden=(16, 16))
  z = jnp.ones((5, 4))
  x = g.apply(_init(g, z), z)
  assert x.shape == (5, 2)
  assert d.apply(_init(d, x), x).shape == (5,)


# --- GAN-trick options (gax.layers) ------------------------------------------------------

SHAPE16 = (16, 16, 1)  # two stages: D has one normalised hidden layer, G two


def _needs_key(options):
  return options.get("g_dropout", 0) > 0 or options.get("g_noise_std", 0) > 0


def _check_pair(name, data_shape, options, batch=3, latent=6):
  g, d = models.MODELS.build(name, data_shape=data_shape, **options)
  z = jax.random.normal(jax.random.PRNGKey(2), (batch, latent))
  g_params, g_ms = split_variables(_init(g, z))
  key = jax.random.PRNGKey(3) if _needs_key(options) else None
  for train in (True, False):
    x, new_ms = apply_model(g, g_params, g_ms, z, train, key)
    assert x.shape == (batch, *data_shape) and x.dtype == jnp.float32
    assert np.all(np.isfinite(x))
    assert jax.tree_util.tree_structure(new_ms) == jax.tree_util.tree_structure(g_ms)
  dv = _init(d, x)
  d_params, d_ms = split_variables(dv)
  for train in (True, False):
    logits, _ = apply_model(d, d_params, d_ms, x, train)
    assert logits.shape == (batch,) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
  _, sown = d.apply(dv, x, train=False, mutable=["intermediates"])
  (features,) = sown["intermediates"]["features"]
  assert features.ndim == 2 and features.shape[0] == batch and features.dtype == jnp.float32
  return g, d, g_params, g_ms, dv


def _option_id(options):
  return ",".join(f"{k}={v}" for k, v in options.items()) or "default"


DCGAN_OPTIONS = [
    {},
    {"g_norm": "instance"},
    {"g_norm": "virtual_batch", "vbn_reference_size": 4},
    {"g_norm": "none", "d_norm": "none"},
    {"d_norm": "instance"},
    {"d_norm": "layer"},
    {"minibatch": "stddev"},
    {"minibatch": "stddev", "minibatch_group_size": 3},
    {"minibatch": "discrimination", "minibatch_kernels": 7, "minibatch_kernel_dim": 3},
    {"upsample": "pixel_shuffle"},
    {"downsample": "avg_pool"},
    {"g_noise_std": 0.1},
    {"g_dropout": 0.5},
    {"g_norm": "virtual_batch", "vbn_reference_size": 2, "g_dropout": 0.5, "g_noise_std": 0.1,
     "upsample": "pixel_shuffle", "d_norm": "layer", "downsample": "avg_pool",
     "minibatch": "discrimination", "minibatch_kernels": 4},
    {"g_norm": "instance", "d_norm": "instance", "minibatch": "stddev", "g_dropout": 0.2,
     "upsample": "pixel_shuffle", "downsample": "avg_pool"},
    {"dtype": "bfloat16", "g_norm": "virtual_batch", "vbn_reference_size": 2,
     "minibatch": "discrimination", "minibatch_kernels": 4, "g_noise_std": 0.1},
]


@pytest.mark.parametrize("options", DCGAN_OPTIONS, ids=_option_id)
def test_dcgan_options_build_and_run_in_train_and_eval_mode(options):
  _check_pair("dcgan", SHAPE16, {"width": 4, **options})


MLP_OPTIONS = [
    {},
    {"g_norm": "batch"},
    {"g_norm": "virtual_batch", "vbn_reference_size": 4},
    {"minibatch": "stddev"},
    {"minibatch": "discrimination", "minibatch_kernels": 5},
    {"g_noise_std": 0.1, "g_dropout": 0.5},
    {"g_norm": "virtual_batch", "vbn_reference_size": 2, "g_noise_std": 0.1, "g_dropout": 0.5,
     "minibatch": "discrimination"},
    {"d_activation": "maxout", "maxout_pieces": 3, "init_std": 0.02, "g_norm": "batch"},
]


@pytest.mark.parametrize("options", MLP_OPTIONS, ids=_option_id)
def test_mlp_options_build_and_run_in_train_and_eval_mode(options):
  _check_pair("mlp", (2,), {"g_hidden": (8, 8), "d_hidden": (8,), **options})


TINY_GENERATORS = [("dcgan", SHAPE16, {"width": 4}), ("mlp", (2,), {"g_hidden": (8,)})]


@pytest.mark.parametrize("name,shape,extra", TINY_GENERATORS)
def test_generator_dropout_is_on_at_sample_time_and_needs_a_key(name, shape, extra):
  g, _ = models.MODELS.build(name, data_shape=shape, g_dropout=0.5, **extra)
  z = jnp.ones((2, 6))
  params, ms = split_variables(_init(g, z))
  a = apply_model(g, params, ms, z, False, jax.random.PRNGKey(1))[0]
  b = apply_model(g, params, ms, z, False, jax.random.PRNGKey(2))[0]
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(apply_model(g, params, ms, z, False, jax.random.PRNGKey(1))[0], a)
  with pytest.raises(ValueError, match="'dropout' RNG"):
    apply_model(g, params, ms, z, False)


@pytest.mark.parametrize("name,shape,extra", TINY_GENERATORS)
def test_generator_noise_is_train_mode_only(name, shape, extra):
  g, _ = models.MODELS.build(name, data_shape=shape, g_noise_std=0.5, **extra)
  z = jnp.ones((2, 6))
  params, ms = split_variables(_init(g, z))
  e1 = apply_model(g, params, ms, z, False, jax.random.PRNGKey(1))[0]
  e2 = apply_model(g, params, ms, z, False, jax.random.PRNGKey(2))[0]
  np.testing.assert_array_equal(e1, e2)
  np.testing.assert_array_equal(apply_model(g, params, ms, z, False)[0], e1)  # no key needed
  t1 = apply_model(g, params, ms, z, True, jax.random.PRNGKey(1))[0]
  t2 = apply_model(g, params, ms, z, True, jax.random.PRNGKey(2))[0]
  assert not np.allclose(t1, t2)
  with pytest.raises(ValueError, match="'noise' RNG"):
    apply_model(g, params, ms, z, True)


@pytest.mark.parametrize("name,shape,extra", [("dcgan", SHAPE16, {"width": 4}),
                                              ("mlp", (2,), {"g_hidden": (8, 8)})])
def test_virtual_batch_norm_generator_keeps_a_fixed_reference_and_samples_independently(
    name, shape, extra):
  g, _ = models.MODELS.build(name, data_shape=shape, g_norm="virtual_batch",
                             vbn_reference_size=5, **extra)
  z = jax.random.normal(jax.random.PRNGKey(4), (3, 6))
  v = _init(g, z)
  params, ms = split_variables(v)
  z_ref = ms["vbn_reference"]["z"]
  assert z_ref.shape == (5, 6)
  assert not np.allclose(g.init(jax.random.PRNGKey(1), z, train=False)["vbn_reference"]["z"],
                         z_ref)  # drawn from the init RNG
  for train in (True, False):
    x, new_ms = apply_model(g, params, ms, z, train)
    np.testing.assert_array_equal(new_ms["vbn_reference"]["z"], z_ref)  # never changed
    # A sample depends on its own z only: alone, or with other z's beside it.
    alone = apply_model(g, params, ms, z[:1], train)[0]
    others = jnp.concatenate([z[:1], 3.0 * z[1:] + 1.0])
    np.testing.assert_allclose(alone[0], x[0], atol=1e-5)
    np.testing.assert_allclose(apply_model(g, params, ms, others, train)[0][0], x[0], atol=1e-5)
  with pytest.raises(ValueError, match="vbn_reference_latent"):
    models.MODELS.build(name, data_shape=shape, g_norm="virtual_batch",
                        vbn_reference_latent="cauchy", **extra)


def test_default_models_have_no_new_collections_or_parameters():
  g, d = models.MODELS.build("dcgan", data_shape=SHAPE16, width=4)
  gv, dv = _init(g, jnp.ones((2, 6))), _init(d, jnp.ones((2, *SHAPE16)))
  assert sorted(gv["params"]) == ["BatchNorm_0", "BatchNorm_1", "ConvTranspose_0",
                                  "ConvTranspose_1", "Dense_0"]
  assert sorted(dv["params"]) == ["BatchNorm_0", "Conv_0", "Conv_1", "Conv_2"]
  assert set(gv) == set(dv) == {"params", "batch_stats"}
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(8,), d_hidden=(8,))
  assert set(_init(g, jnp.ones((2, 6)))) == {"params"}
  assert sorted(_init(d, jnp.ones((2, 2)))["params"]) == ["Dense_0", "Dense_1"]


def test_up_and_downsampling_kernels_are_divisible_by_their_stride():
  g, d = models.MODELS.build("dcgan", data_shape=SHAPE16, width=4, upsample="pixel_shuffle",
                             downsample="avg_pool")
  gp = _init(g, jnp.ones((2, 6)))["params"]
  dp = _init(d, jnp.ones((2, *SHAPE16)))["params"]
  # Pixel shuffle: 3x3 stride-1 convs to C * 2 * 2 channels (C = 4, then 1 output channel).
  assert [gp[f"PixelShuffle_{i}"]["Conv_0"]["kernel"].shape for i in range(2)] == [
      (3, 3, 8, 16), (3, 3, 4, 4)]
  # Average pooling: 3x3 stride-1 convs, then the 4x4 valid output conv.
  assert [dp[f"Conv_{i}"]["kernel"].shape[:2] for i in range(3)] == [(3, 3), (3, 3), (4, 4)]
  g, _ = models.MODELS.build("dcgan", data_shape=SHAPE16, width=4)
  gp = _init(g, jnp.ones((2, 6)))["params"]
  assert all(gp[f"ConvTranspose_{i}"]["kernel"].shape[:2] == (4, 4) for i in range(2))  # stride 2


def test_minibatch_layers_feed_the_last_layer():
  _, d = models.MODELS.build("dcgan", data_shape=SHAPE16, width=4, minibatch="stddev")
  dp = _init(d, jnp.ones((2, *SHAPE16)))["params"]
  assert dp["Conv_2"]["kernel"].shape == (4, 4, 8 + 1, 1)  # one extra channel
  _, d = models.MODELS.build("dcgan", data_shape=SHAPE16, width=4, minibatch="discrimination",
                             minibatch_kernels=7)
  dp = _init(d, jnp.ones((2, *SHAPE16)))["params"]
  assert dp["MinibatchDiscrimination_0"]["kernel"].shape == (4 * 4 * 8, 7 * 5)
  assert dp["Dense_0"]["kernel"].shape == (4 * 4 * 8 + 7, 1)
  # The logits see the other examples of the batch; the sown features do not.
  x = jax.random.normal(jax.random.PRNGKey(0), (3, *SHAPE16))
  v = _init(d, x)
  y = x.at[1:].set(-x[1:])
  (lx, fx), (ly, fy) = [
      (out, s["intermediates"]["features"][0])
      for out, s in (d.apply(v, a, train=False, mutable=["intermediates"]) for a in (x, y))]
  np.testing.assert_allclose(fx[0], fy[0], atol=1e-6)
  assert not np.allclose(lx[0], ly[0])


@pytest.mark.parametrize("name,shape,option,value,allowed", [
    ("dcgan", SHAPE16, "g_norm", "layer", "'batch', 'instance', 'virtual_batch', 'none'"),
    ("dcgan", SHAPE16, "d_norm", "virtual_batch", "'batch', 'instance', 'layer', 'none'"),
    ("dcgan", SHAPE16, "minibatch", "std", "'none', 'stddev', 'discrimination'"),
    ("dcgan", SHAPE16, "upsample", "nearest", "'transpose', 'pixel_shuffle'"),
    ("dcgan", SHAPE16, "downsample", "max_pool", "'stride', 'avg_pool'"),
    ("mlp", (2,), "g_norm", "instance", "'none', 'batch', 'virtual_batch'"),
    ("mlp", (2,), "minibatch", "stdev", "'none', 'stddev', 'discrimination'"),
    ("mlp", (2,), "d_activation", "tanh", "'leaky_relu', 'relu', 'maxout'"),
])
def test_bad_trick_options_name_the_option_and_the_allowed_values(name, shape, option, value,
                                                                  allowed):
  with pytest.raises(ValueError, match=f"Unknown {option} '{value}'; allowed: {allowed}"):
    models.MODELS.build(name, data_shape=shape, **{option: value})


def test_mlp_maxout_d_and_init_std_follow_the_pacgan_layout():
  # PacGAN's mixture D: maxout layers of `hidden` units with `pieces` pieces each, then a
  # linear output; every kernel N(0, init_std^2) in both networks.
  g, d = models.MODELS.build("mlp", data_shape=(2,), g_hidden=(300, 300), d_hidden=(200, 200),
                             d_activation="maxout", maxout_pieces=5, init_std=0.02)
  dp = _init(d, jnp.ones((2, 2)))["params"]
  assert [dp[f"Maxout_{i}"]["Dense_0"]["kernel"].shape for i in range(2)] == [(2, 1000),
                                                                            (200, 1000)]
  assert dp["Dense_0"]["kernel"].shape == (200, 1)
  gp = _init(g, jnp.ones((2, 6)))["params"]
  kernels = [dp["Maxout_1"]["Dense_0"]["kernel"], gp["Dense_1"]["kernel"]]
  for k in kernels:
    assert abs(float(jnp.std(k)) - 0.02) < 0.001 and abs(float(jnp.mean(k))) < 0.001
  with pytest.raises(ValueError, match="maxout_pieces must be an integer >= 1"):
    models.MODELS.build("mlp", data_shape=(2,), d_activation="maxout", maxout_pieces=0)
  with pytest.raises(ValueError, match="init_std must be >= 0"):
    models.MODELS.build("mlp", data_shape=(2,), init_std=-0.1)


@pytest.mark.parametrize("activation,f", [
    ("leaky_relu", lambda v: np.where(v > 0, v, 0.2 * v)),
    ("relu", lambda v: np.maximum(v, 0.0)),  # ganhacks tip 5 switched off: sparse gradients
])
def test_mlp_d_activation_matches_a_numpy_forward(activation, f):
  _, d = models.MODELS.build("mlp", data_shape=(2,), d_hidden=(8, 8), d_activation=activation)
  x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
  variables = _init(d, jnp.asarray(x))
  p = jax.tree_util.tree_map(np.asarray, variables["params"])
  h = x
  for i in range(2):
    h = f(h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"])
  want = (h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"])[:, 0]
  np.testing.assert_allclose(d.apply(variables, jnp.asarray(x), train=False), want,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("option,value,match", [("g_dropout", 1.0, "g_dropout must be"),
                                                ("g_dropout", -0.1, "g_dropout must be"),
                                                ("g_noise_std", -1.0, "g_noise_std must be"),
                                                ("vbn_reference_size", 0, "vbn_reference_size")])
def test_bad_trick_values_are_rejected(option, value, match):
  for name, shape in (("dcgan", SHAPE16), ("mlp", (2,))):
    with pytest.raises(ValueError, match=match):
      models.MODELS.build(name, data_shape=shape, **{option: value})


def test_train_step_runs_with_the_layer_tricks():
  shape, batch = (8, 8, 1), 4
  g, d = models.MODELS.build("dcgan", data_shape=shape, width=4, g_norm="virtual_batch",
                             vbn_reference_size=4, minibatch="discrimination",
                             minibatch_kernels=8, g_dropout=0.5, upsample="pixel_shuffle",
                             downsample="avg_pool")
  gan = GAN(g, d, losses.get_loss("non_saturating"), optax.adam(1e-3, 0.5), optax.adam(1e-3, 0.5),
            latent_dim=6, n_critic=1)
  state = init_state(gan, jax.random.PRNGKey(0), shape)
  real = np.random.default_rng(0).integers(0, 256, (1, batch, *shape), dtype=np.uint8)
  new, metrics = jax.jit(functools.partial(train_step, gan))(state, real)
  assert int(new.step) == 1
  assert all(np.isfinite(v) for v in jax.tree_util.tree_leaves(metrics))
  np.testing.assert_array_equal(new.g.model_state["vbn_reference"]["z"],
                                state.g.model_state["vbn_reference"]["z"])
