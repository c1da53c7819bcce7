"""gax.conv: every formulation and plan computes lax's convolution and its derivatives.

The reference is `lax.conv_general_dilated` / `lax.conv_transpose` differentiated by JAX,
and Flax's own `nn.Conv` / `nn.ConvTranspose` for the layers; checked eagerly, under `jit`,
under `pmap` over the 4 test CPU devices, in forward mode, and to second order (the R1 and
WGAN-GP penalties differentiate D's input gradient again).
"""

import functools
import itertools

import flax.linen as nn
import jax
import jax.extend.core  # pylint: disable=unused-import
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gax import conv as conv_lib
from gax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gax.models.resnet import ResNetDiscriminator, ResNetGenerator

DN = ("NHWC", "HWIO", "NHWC")

# (x shape, kernel shape, strides, padding): the DCGAN's layers, the ResNet's, and odd ones
# (uneven strides, a kernel not divisible by its stride, asymmetric explicit padding).
CONV_CASES = [
    ((2, 16, 16, 3), (4, 4, 3, 8), (2, 2), ((1, 1), (1, 1))),
    ((2, 8, 8, 16), (4, 4, 16, 24), (2, 2), ((1, 1), (1, 1))),
    ((2, 4, 4, 8), (4, 4, 8, 1), (1, 1), "VALID"),
    ((2, 9, 7, 5), (3, 3, 5, 6), (1, 1), "SAME"),
    ((2, 8, 8, 5), (1, 1, 5, 6), (1, 1), "SAME"),
    ((2, 9, 7, 5), (3, 2, 5, 6), (2, 3), "SAME"),
    ((2, 11, 10, 4), (5, 3, 4, 3), (3, 2), ((2, 1), (0, 2))),
]
TRANSPOSE_CASES = [
    ((2, 4, 4, 16), (4, 4, 16, 8), (2, 2), "SAME"),
    ((2, 8, 8, 8), (4, 4, 8, 3), (2, 2), "SAME"),
    ((2, 5, 6, 4), (3, 3, 4, 5), (2, 2), "SAME"),
    ((2, 5, 6, 4), (3, 3, 4, 5), (2, 2), "VALID"),
    ((2, 5, 6, 4), (3, 3, 4, 5), (1, 1), "SAME"),
    ((2, 5, 6, 4), (4, 4, 4, 5), (2, 2), ((1, 2), (2, 1))),
]
PLANS = [conv_lib.Plan(f, f, f) for f in conv_lib.FORMULATIONS] + [
    conv_lib.Plan("native", "s2d", "taps"), conv_lib.Plan("taps", "im2col", "native"),
    conv_lib.Plan("native", "s2d", "chunked")]
CHUNKED = conv_lib.Plan("native", "native", "chunked")


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
  # "chunked" splits a batch into chunks of CHUNK_POSITIONS output positions (1024 in use);
  # at 16, every batch of these small tests splits, so each test that runs it checks chunks.
  monkeypatch.setattr(conv_lib, "CHUNK_POSITIONS", 16)


def _arrays(x_shape, k_shape, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal(x_shape), jnp.float32),
          jnp.asarray(rng.standard_normal(k_shape), jnp.float32))


def _close(a, b, tol=2e-5):
  scale = float(jnp.max(jnp.abs(b))) + 1e-6
  np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=tol, rtol=0)


def _ref_conv(x, k, strides, padding):
  return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)


def _value_and_grads(f, x, k, g):
  y = f(x, k)
  return (y,) + jax.grad(lambda x, k: jnp.vdot(f(x, k), g), (0, 1))(x, k)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_plans_match_lax_values_and_gradients(case):
  x_shape, k_shape, strides, padding = case
  x, k = _arrays(x_shape, k_shape)
  pads = conv_lib.conv_pads(x_shape[1:3], k_shape[:2], strides, padding)
  ref = functools.partial(_ref_conv, strides=strides, padding=padding)
  g = jax.random.normal(jax.random.PRNGKey(1), ref(x, k).shape)
  want = _value_and_grads(ref, x, k, g)
  # Every plan in one compiled function (one compilation per geometry), and one plan eagerly.
  ours = [lambda x, k, plan=plan: conv_lib._conv(x, k, strides, pads, plan)  # pylint: disable=protected-access
          for plan in PLANS]
  got = jax.jit(lambda x, k, g: [_value_and_grads(f, x, k, g) for f in ours])(x, k, g)
  for got_plan in got + [_value_and_grads(ours[-1], x, k, g)]:
    for a, b in zip(got_plan, want):
      _close(a, b)


@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose_matches_lax_values_and_gradients(case):
  x_shape, k_shape, strides, padding = case
  x, k = _arrays(x_shape, k_shape)
  ref = lambda x, k: lax.conv_transpose(x, k, strides, padding, dimension_numbers=DN)
  g = jax.random.normal(jax.random.PRNGKey(1), ref(x, k).shape)
  want = _value_and_grads(ref, x, k, g)
  ours = [lambda x, k, impl=impl: conv_lib.conv_transpose(x, k, strides, padding, impl)
          for impl in conv_lib.IMPLS]
  got = jax.jit(lambda x, k, g: [_value_and_grads(f, x, k, g) for f in ours])(x, k, g)
  for got_impl in got:
    for a, b in zip(got_impl, want):
      _close(a, b)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_conv_transpose_every_plan_on_the_dcgan_geometry(isa, monkeypatch):
  # Force each plan through `resolve` so a ConvTranspose runs every formulation as a, b and c
  # (on "avx512" a native c is the native kernel gradient of A, `_native_kernel_adjoint`).
  monkeypatch.setattr(conv_lib, "cpu_isa", lambda: isa)
  x, k = _arrays((2, 8, 8, 16), (4, 4, 16, 8))
  ref = lambda x, k: lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=DN)
  g = jax.random.normal(jax.random.PRNGKey(1), ref(x, k).shape)
  want = _value_and_grads(ref, x, k, g)
  for plan in PLANS:
    monkeypatch.setattr(conv_lib, "resolve", lambda *a, plan=plan: plan)
    got = jax.jit(functools.partial(_value_and_grads, lambda x, k: conv_lib.conv_transpose(
        x, k, (2, 2), "SAME", "auto")))(x, k, g)
    for a, b in zip(got, want):
      _close(a, b)


def _convolutions(jaxpr):
  """Every conv_general_dilated equation of a jaxpr, nested jaxprs included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      yield eqn
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _convolutions(sub)


def test_native_conv_transpose_kernel_gradient_is_a_kernel_gradient_of_a(monkeypatch):
  # A ConvTranspose's native kernel gradient is XLA's kernel gradient of the strided
  # convolution A (a dilated *kernel*), never the transpose of B's dilated-input convolution
  # in its kernel (a convolution whose input is dilated by the stride and whose output is the
  # kernel: the 5 GFLOP/s case). The ConvTranspose's own kernel is only flipped, not
  # transposed (A reads it as "HWOI").
  monkeypatch.setattr(conv_lib, "cpu_isa", lambda: "avx512")
  monkeypatch.setattr(conv_lib, "resolve",
                      lambda *a: conv_lib.Plan("native", "native", "native"))
  x, k = _arrays((2, 8, 8, 16), (4, 4, 16, 8))
  g = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 8))
  grad_k = lambda k: jax.grad(lambda k: jnp.vdot(
      conv_lib.conv_transpose(x, k, (2, 2), "SAME", "auto"), g))(k)
  convs = list(_convolutions(jax.make_jaxpr(grad_k)(k).jaxpr))
  assert convs
  for eqn in convs:
    dilated_input = any(d > 1 for d in eqn.params["lhs_dilation"])
    assert not (dilated_input and eqn.outvars[0].aval.size == k.size), eqn
  assert any(any(d > 1 for d in eqn.params["rhs_dilation"]) for eqn in convs)
  ref = jax.grad(lambda k: jnp.vdot(
      lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=DN), g))(k)
  _close(grad_k(k), ref)


def test_chunked_kernel_gradient_is_a_sum_over_uneven_chunks(monkeypatch):
  # 5 images with 4x4 outputs in chunks of 2 (2, 2, 1): a Conv's and a ConvTranspose's kernel
  # gradients are one XLA kernel gradient per chunk, summed, and equal lax's, eagerly and
  # under jit; the values and input gradients are untouched.
  monkeypatch.setattr(conv_lib, "CHUNK_POSITIONS", 2 * 16)
  monkeypatch.setattr(conv_lib, "cpu_isa", lambda: "avx512")
  monkeypatch.setattr(conv_lib, "resolve", lambda *a: CHUNKED)
  assert conv_lib.batch_chunk(5, (4, 4)) == 2
  assert conv_lib.batch_chunk(5, (64, 64)) == 1 and conv_lib.batch_chunk(5, (1, 1)) == 5
  pads = ((1, 1), (1, 1))
  x, k = _arrays((5, 8, 8, 6), (4, 4, 6, 7))
  y, kt = _arrays((5, 4, 4, 6), (4, 4, 6, 7), seed=2)
  cases = [
      (lambda x, k: conv_lib._conv(x, k, (2, 2), pads, CHUNKED), x, k,  # pylint: disable=protected-access
       lambda x, k: _ref_conv(x, k, (2, 2), pads)),
      (lambda y, k: conv_lib.conv_transpose(y, k, (2, 2), "SAME", "auto"), y, kt,
       lambda y, k: lax.conv_transpose(y, k, (2, 2), "SAME", dimension_numbers=DN)),
  ]
  for f, a, kernel, ref in cases:
    g = jax.random.normal(jax.random.PRNGKey(1), ref(a, kernel).shape)
    grad_k = lambda k, f=f, a=a, g=g: jax.grad(lambda k: jnp.vdot(f(a, k), g))(k)
    kernel_convs = [eqn for eqn in _convolutions(jax.make_jaxpr(grad_k)(kernel).jaxpr)
                    if eqn.outvars[0].aval.size == kernel.size]
    assert sorted(eqn.invars[0].aval.shape[0] for eqn in kernel_convs) == [1, 2, 2]
    want = _value_and_grads(ref, a, kernel, g)
    for got in (_value_and_grads(f, a, kernel, g), jax.jit(
        functools.partial(_value_and_grads, f))(a, kernel, g)):
      for u, v in zip(got, want):
        _close(u, v)


def test_forward_mode_matches_lax():
  x, k = _arrays((2, 8, 8, 16), (4, 4, 16, 24))
  dx, dk = _arrays((2, 8, 8, 16), (4, 4, 16, 24), seed=3)
  pads = ((1, 1), (1, 1))
  want = jax.jvp(lambda x, k: _ref_conv(x, k, (2, 2), pads), (x, k), (dx, dk))
  for plan in PLANS:
    got = jax.jvp(lambda x, k, plan=plan: conv_lib._conv(x, k, (2, 2), pads, plan),  # pylint: disable=protected-access
                  (x, k), (dx, dk))
    for a, b in zip(got, want):
      _close(a, b)
  y, kt = _arrays((2, 4, 4, 16), (4, 4, 16, 8))
  dy, dkt = _arrays((2, 4, 4, 16), (4, 4, 16, 8), seed=4)
  ref_t = lambda y, k: lax.conv_transpose(y, k, (2, 2), "SAME", dimension_numbers=DN)
  want_t = jax.jvp(ref_t, (y, kt), (dy, dkt))
  got = jax.jvp(lambda y, k: conv_lib.conv_transpose(y, k, (2, 2), "SAME", "matmul"),
                (y, kt), (dy, dkt))
  for a, b in zip(got, want_t):
    _close(a, b)
  # The native plan's kernel tangent (`_native_kernel_adjoint`) in forward mode.
  native = conv_lib.Plan("native", "native", "native")
  hi_shape, _, tpads_conv, _ = conv_lib.transpose_geometry(y.shape, kt.shape, (2, 2), "SAME")
  got = jax.jvp(lambda y, k: conv_lib._conv_t(  # pylint: disable=protected-access
      y, jnp.flip(k, (0, 1)), (2, 2), tpads_conv, hi_shape, native, "HWOI"), (y, kt), (dy, dkt))
  for a, b in zip(got, want_t):
    _close(a, b)


def test_second_order_gradient_penalty_matches_lax():
  # d/dk of ||d/dx sum(tanh(conv(x, k)))||^2: the R1 penalty's shape of computation.
  x, k = _arrays((2, 8, 8, 4), (4, 4, 4, 8))
  pads = ((1, 1), (1, 1))

  def penalty(conv_fn, k):
    grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(conv_fn(x, k))))(x)
    return jnp.sum(jnp.square(grad_x))

  want = jax.grad(functools.partial(penalty, lambda x, k: _ref_conv(x, k, (2, 2), pads)))(k)
  for plan in PLANS:
    ours = lambda x, k, plan=plan: conv_lib._conv(x, k, (2, 2), pads, plan)  # pylint: disable=protected-access
    _close(jax.jit(jax.grad(functools.partial(penalty, ours)))(k), want, tol=1e-4)


def test_pmap_matches_one_device():
  n = jax.local_device_count()
  assert n == 4, "conftest sets 4 CPU devices"
  x, k = _arrays((n, 2, 8, 8, 16), (4, 4, 16, 8))
  f = lambda x, k: jax.grad(
      lambda x, k: jnp.sum(jnp.sin(conv_lib.conv(x, k, (2, 2), ((1, 1), (1, 1)), "auto"))),
      (0, 1))(x, k)
  chunked = lambda x, k: jax.grad(lambda x, k: jnp.sum(jnp.sin(conv_lib._conv(  # pylint: disable=protected-access
      x, k, (2, 2), ((1, 1), (1, 1)), CHUNKED))), (0, 1))(x, k)
  ref = lambda x, k: jax.grad(
      lambda x, k: jnp.sum(jnp.sin(_ref_conv(x, k, (2, 2), ((1, 1), (1, 1))))), (0, 1))(x, k)
  for fn in (f, chunked):
    got_x, got_k = jax.pmap(fn, in_axes=(0, None))(x, k)
    for i in range(n):
      want_x, want_k = ref(x[i], k)
      _close(got_x[i], want_x)
      _close(got_k[i], want_k)


@pytest.mark.parametrize("impl", ["auto", "matmul"])
def test_flax_layers_match_flax_parameters_and_outputs(impl):
  x, _ = _arrays((2, 8, 8, 6), (1, 1, 1, 1))
  key = jax.random.PRNGKey(0)
  pairs = [
      (nn.Conv(5, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1))),
       conv_lib.Conv(5, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), impl=impl)),
      (nn.Conv(5, (3, 3), padding="SAME", use_bias=False),
       conv_lib.Conv(5, (3, 3), padding="SAME", use_bias=False, impl=impl)),
      (nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding="SAME"),
       conv_lib.ConvTranspose(5, (4, 4), strides=(2, 2), padding="SAME", impl=impl)),
      (nn.ConvTranspose(5, (3, 3), strides=(2, 2), padding="VALID", use_bias=False),
       conv_lib.ConvTranspose(5, (3, 3), strides=(2, 2), padding="VALID", use_bias=False,
                              impl=impl)),
  ]
  for theirs, ours in pairs:
    p_theirs, p_ours = theirs.init(key, x), ours.init(key, x)
    assert jax.tree.structure(p_theirs) == jax.tree.structure(p_ours)
    for a, b in zip(jax.tree.leaves(p_theirs), jax.tree.leaves(p_ours)):
      np.testing.assert_array_equal(a, b)
    loss = lambda m, p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    both = jax.jit(lambda p, x: [(m.apply(p, x), jax.grad(functools.partial(loss, m), (0, 1))(
        p, x)) for m in (ours, theirs)])
    got, want = both(p_theirs, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      _close(a, b)


def test_flax_layer_names_are_flax_names():
  class Net(nn.Module):

    @nn.compact
    def __call__(self, x):
      x = conv_lib.Conv(4, (3, 3))(x)
      return conv_lib.ConvTranspose(4, (4, 4), strides=(2, 2))(x)

  params = Net().init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))["params"]
  assert set(params) == {"Conv_0", "ConvTranspose_0"}


@pytest.mark.parametrize("model", ["dcgan", "resnet"])
def test_models_same_parameters_and_close_outputs_for_every_impl(model):
  if model == "dcgan":
    make_g = lambda impl: DCGANGenerator(resolution=16, width=8, channels=3, conv_impl=impl)
    make_d = lambda impl: DCGANDiscriminator(resolution=16, width=8, conv_impl=impl)
  else:
    make_g = lambda impl: ResNetGenerator(resolution=8, width=16, channels=3, conv_impl=impl)
    make_d = lambda impl: ResNetDiscriminator(resolution=8, width=16, conv_impl=impl)
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 100))
  x = jax.random.uniform(jax.random.PRNGKey(2), (4, 16 if model == "dcgan" else 8,
                                                  16 if model == "dcgan" else 8, 3), minval=-1)
  ref_g, ref_d = make_g("xla"), make_d("xla")
  vg, vd = ref_g.init(jax.random.PRNGKey(0), z), ref_d.init(jax.random.PRNGKey(0), x)

  def losses(g, d, vg, vd):
    def f(vg, vd, x):
      fake, _ = g.apply(vg, z, mutable=["batch_stats"])
      out, _ = d.apply(vd, jnp.concatenate([fake, x]), mutable=["batch_stats"])
      return jnp.sum(jax.nn.softplus(out))
    return jax.value_and_grad(f, (0, 1, 2))(vg, vd, x)

  want = jax.jit(functools.partial(losses, ref_g, ref_d))(vg, vd)
  for impl in ("auto",):
    g, d = make_g(impl), make_d(impl)
    for m, inputs, v in ((g, z, vg), (d, x, vd)):
      shapes = jax.eval_shape(m.init, jax.random.PRNGKey(0), inputs)
      assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape, v)
    got = jax.jit(functools.partial(losses, g, d))(vg, vd)
    # Absolute tolerance: the gradient of a conv bias in front of batch norm is zero up to
    # rounding, so a per-leaf relative comparison would compare rounding noise.
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_auto_uses_the_plan_on_cpu_and_xla_uses_lax():
  x, k = _arrays((2, 8, 8, 16), (4, 4, 16, 8))
  f = lambda impl: jax.make_jaxpr(
      lambda x, k: conv_lib.conv(x, k, (2, 2), ((1, 1), (1, 1)), impl))(x, k)
  assert "custom_jvp_call" in str(f("auto"))
  assert "custom_jvp_call" not in str(f("xla"))
  assert conv_lib.resolve("xla", x.shape, k.shape, (2, 2), (4, 4)) is None


@pytest.mark.parametrize("isa,library", [("avx2", "ynnpack"), ("avx512", "ynnpack"),
                                         ("avx512", "eigen")])
def test_cpu_plans_of_every_table(isa, library, monkeypatch):
  # Each table's plans for the DCGAN's geometries give lax's values and gradients (the
  # machine running the test picks one table; the others are forced here); on AVX2 a
  # ConvTranspose's kernel gradient is a matrix form, on AVX-512 it may be native: chunked
  # for YNNPACK, over the whole batch for Eigen.
  monkeypatch.setattr(conv_lib, "cpu_isa", lambda: isa)
  monkeypatch.setattr(conv_lib, "cpu_conv_library", lambda: library)
  for x_shape, k_shape in [((2, 8, 8, 16), (4, 4, 16, 24)), ((2, 32, 32, 24), (4, 4, 24, 32))]:
    out_hw = (x_shape[1] // 2,) * 2
    plan = conv_lib.cpu_plan(x_shape, k_shape, (2, 2), out_hw)
    assert plan == conv_lib.resolve("auto", x_shape, k_shape, (2, 2), out_hw)
    assert (conv_lib.transpose_plan(plan).c not in ("native", "chunked")) == (isa == "avx2")
    if isa == "avx512":
      assert plan.c == {"ynnpack": "chunked", "eigen": "native"}[library]
    x, k = _arrays(x_shape, k_shape)
    ref = lambda x, k: lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                                dimension_numbers=DN)
    g = jax.random.normal(jax.random.PRNGKey(1), ref(x, k).shape)
    want = _value_and_grads(ref, x, k, g)
    got = _value_and_grads(lambda x, k: conv_lib.conv(x, k, (2, 2), ((1, 1), (1, 1))), x, k, g)
    for a, b in zip(got, want):
      _close(a, b)
  with pytest.raises(ValueError, match="isa"):
    conv_lib.cpu_plan((2, 8, 8, 16), (4, 4, 16, 24), (2, 2), (4, 4), isa="neon")
  with pytest.raises(ValueError, match="library"):
    conv_lib.cpu_plan((2, 8, 8, 16), (4, 4, 16, 24), (2, 2), (4, 4), library="onednn")


@pytest.fixture
def _fresh_library_choice():
  conv_lib.cpu_conv_library.cache_clear()
  conv_lib._options_compile.cache_clear()  # pylint: disable=protected-access
  yield
  conv_lib.cpu_conv_library.cache_clear()
  conv_lib._options_compile.cache_clear()  # pylint: disable=protected-access


@pytest.mark.parametrize("isa,vendor,env,want", [
    ("avx512", "GenuineIntel", "", "eigen"),
    ("avx512", "AuthenticAMD", "", "ynnpack"),
    ("avx2", "GenuineIntel", "", "ynnpack"),
    ("avx512", "", "", "ynnpack"),
    ("avx512", "GenuineIntel", "ynnpack", "ynnpack"),
    ("avx2", "AuthenticAMD", "eigen", "eigen"),
])
def test_cpu_conv_library_by_machine_and_environment(isa, vendor, env, want, monkeypatch,
                                                    _fresh_library_choice):
  monkeypatch.setattr(conv_lib, "cpu_isa", lambda: isa)
  monkeypatch.setattr(conv_lib, "cpu_vendor", lambda: vendor)
  monkeypatch.setenv(conv_lib.CONV_LIBRARY_ENV, env)
  assert conv_lib.cpu_conv_library() == want
  assert conv_lib.compiler_options("cpu") == conv_lib.CPU_COMPILER_OPTIONS[want]
  assert conv_lib.compiler_options("gpu") == {} and conv_lib.compiler_options("tpu") == {}


def test_bad_conv_library_in_the_environment_is_refused(monkeypatch, _fresh_library_choice):
  monkeypatch.setenv(conv_lib.CONV_LIBRARY_ENV, "onednn")
  with pytest.raises(ValueError, match="GAX_CPU_CONV_LIBRARY.*onednn"):
    conv_lib.cpu_conv_library()


def test_options_this_jaxlib_refuses_keep_the_ynnpack_table(monkeypatch, _fresh_library_choice):
  # A jaxlib without the option (or without that enum value): the default falls back to
  # "ynnpack" (with a warning), and asking for "eigen" explicitly is an error.
  monkeypatch.setattr(conv_lib, "cpu_isa", lambda: "avx512")
  monkeypatch.setattr(conv_lib, "cpu_vendor", lambda: "GenuineIntel")
  monkeypatch.setitem(conv_lib.CPU_COMPILER_OPTIONS, "eigen",
                      {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_NO_SUCH"})
  monkeypatch.delenv(conv_lib.CONV_LIBRARY_ENV, raising=False)
  assert conv_lib.cpu_conv_library() == "ynnpack"
  assert conv_lib.compiler_options("cpu") == {}
  conv_lib.cpu_conv_library.cache_clear()
  monkeypatch.setenv(conv_lib.CONV_LIBRARY_ENV, "eigen")
  with pytest.raises(ValueError, match="refuses"):
    conv_lib.cpu_conv_library()


def test_eigen_options_move_convolutions_out_of_ynnpack():
  # With the "eigen" options XLA:CPU runs the convolution itself, outside any YNNPACK fusion,
  # while keeping YNNPACK's reductions (the batch norm statistics' kernels), and the values
  # are those of the default compilation.
  if jax.default_backend() != "cpu":
    pytest.skip("XLA:CPU compiler options")
  x, k = _arrays((8, 16, 16, 32), (3, 3, 32, 32))
  f = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DN)
  options = conv_lib.CPU_COMPILER_OPTIONS["eigen"]
  eigen = jax.jit(lambda x, k: (f(x, k), jnp.sum(x * x, axis=(0, 1, 2))),
                  compiler_options=options)
  hlo = eigen.lower(x, k).compile().as_text()
  # The default compilation puts the convolution inside a fusion computation called from
  # ENTRY as `kind=kCustom ... "__ynn_fusion"`; here the ENTRY computation runs it itself.
  entry = hlo[hlo.index("ENTRY"):]
  assert "convolution(" in entry and '"__ynn_fusion"' in entry
  np.testing.assert_allclose(eigen(x, k)[0], jax.jit(f)(x, k), rtol=1e-5, atol=1e-3)


def test_bad_input_is_refused():
  x, k = _arrays((2, 8, 8, 4), (3, 3, 4, 4))
  with pytest.raises(ValueError, match="conv_impl"):
    conv_lib.conv(x, k, impl="fast")
  with pytest.raises(ValueError, match="conv_impl"):
    DCGANGenerator(resolution=8, width=4, conv_impl="fast").init(
        jax.random.PRNGKey(0), jnp.zeros((1, 10)))
  with pytest.raises(ValueError, match="2D convolutions"):
    conv_lib.conv(x[0], k)
  with pytest.raises(ValueError, match="no output positions"):
    conv_lib.conv(x, jnp.zeros((9, 9, 4, 4)), padding="VALID")
  with pytest.raises(ValueError, match="formulation"):
    conv_lib.Plan("native", "fft", "taps")
  with pytest.raises(ValueError, match="padding"):
    conv_lib.conv(x, k, padding="CIRCLE")


def test_bfloat16_compute_keeps_its_dtype_and_matches_lax():
  x, k = (a.astype(jnp.bfloat16) for a in _arrays((2, 8, 8, 16), (4, 4, 16, 8)))
  pads = ((1, 1), (1, 1))
  f = lambda x, k: jnp.sum(jnp.square(conv_lib.conv(x, k, (2, 2), pads, "auto").astype(
      jnp.float32)))
  ref = lambda x, k: jnp.sum(jnp.square(_ref_conv(x, k, (2, 2), pads).astype(jnp.float32)))
  y = conv_lib.conv(x, k, (2, 2), pads, "auto")
  assert y.dtype == jnp.bfloat16
  _close(y.astype(jnp.float32), _ref_conv(x, k, (2, 2), pads).astype(jnp.float32), tol=2e-2)
  for a, b in zip(jax.jit(jax.grad(f, (0, 1)))(x, k), jax.grad(ref, (0, 1))(x, k)):
    assert a.dtype == jnp.bfloat16
    _close(a.astype(jnp.float32), b.astype(jnp.float32), tol=3e-2)


def _upsampled(x):
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")


def _pooled(y):
  return nn.avg_pool(y, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("fused", ["upsample_conv", "conv_avg_pool"])
def test_resampling_convolutions_match_convolving_as_written(fused, k):
  # upsample_conv: sub-pixel phases on the low-resolution input == a SAME convolution of the
  # nearest 2x upsampled input (the ResNet G's up-blocks); conv_avg_pool: one stride-2
  # convolution by the box-filtered kernel == Flax's 2x2 average pooling of a SAME
  # convolution (the ResNet D's down-blocks). Values and both gradients, for every impl,
  # eagerly, under jit and under pmap.
  if fused == "upsample_conv":
    x, kernel = _arrays((2, 5, 6, 4), (k, k, 4, 7))
    ref = lambda x, k: _ref_conv(_upsampled(x), k, (1, 1), "SAME")
  else:
    x, kernel = _arrays((2, 8, 6, 4), (k, k, 4, 7))
    ref = lambda x, k: _pooled(_ref_conv(x, k, (1, 1), "SAME"))
  fn = getattr(conv_lib, fused)
  g = jax.random.normal(jax.random.PRNGKey(1), ref(x, kernel).shape)
  want = _value_and_grads(ref, x, kernel, g)
  for impl in conv_lib.IMPLS:
    f = lambda x, k, impl=impl: fn(x, k, impl)
    for got in (_value_and_grads(f, x, kernel, g),
                jax.jit(functools.partial(_value_and_grads, f))(x, kernel, g)):
      for a, b in zip(got, want):
        _close(a, b)
  n = jax.local_device_count()
  xs = jnp.stack([x * (i + 1) for i in range(n)])
  got = jax.pmap(functools.partial(_value_and_grads, fn), in_axes=(0, None, 0))(
      xs, kernel, jnp.stack([g] * n))
  for i in range(n):
    for a, b in zip(got, _value_and_grads(ref, xs[i], kernel, g)):
      _close(a[i], b)


def test_resampling_convolutions_do_less_work(monkeypatch):
  # The 3x3 phases are 2x2 kernels on the low-resolution input: 16/36 of the multiply-adds
  # (up to the one-pixel border), and a 1x1 is convolved before upsampling (1/4).
  monkeypatch.setattr(conv_lib, "resolve", lambda *a: conv_lib.Plan("native", "native",
                                                                     "native"))
  def flops(f, *args):
    return sum(2 * np.prod(e.outvars[0].aval.shape) * np.prod(e.invars[1].aval.shape[:3])
               for e in _convolutions(jax.make_jaxpr(f)(*args).jaxpr))
  x = jnp.zeros((2, 16, 16, 8))
  for k, ratio in ((3, 16 / 36 * (17 / 16) ** 2), (1, 1 / 4)):
    kernel = jnp.zeros((k, k, 8, 8))
    ours = flops(lambda x, k: conv_lib.upsample_conv(x, k, "auto"), x, kernel)
    theirs = flops(lambda x, k: _ref_conv(_upsampled(x), k, (1, 1), "SAME"), x, kernel)
    assert ours == pytest.approx(ratio * theirs)
  # A pooled 3x3 is one 4x4 stride-2 convolution: 16/36 of the convolution before pooling.
  (eqn,) = _convolutions(jax.make_jaxpr(lambda x, k: conv_lib.conv_avg_pool(x, k))(
      x, jnp.zeros((3, 3, 8, 5))).jaxpr)
  assert eqn.invars[1].aval.shape[:2] == (4, 4) and eqn.params["window_strides"] == (2, 2)


@pytest.mark.parametrize("fused", ["upsample_conv", "conv_avg_pool"])
def test_resampling_layers_are_flax_convs_and_check_their_input(fused):
  # UpsampleConv is nn.Conv of the upsampled input, ConvAvgPool nn.Conv then pooling: the
  # same parameters and outputs; settings other than SAME odd-square kernels are computed
  # as written (the 2x2 VALID case).
  layer, before, after = {"upsample_conv": (conv_lib.UpsampleConv, _upsampled, lambda y: y),
                          "conv_avg_pool": (conv_lib.ConvAvgPool, lambda x: x, _pooled)}[fused]
  x, _ = _arrays((2, 4, 4, 6), (1, 1, 1, 1))
  key = jax.random.PRNGKey(0)
  for kwargs in (dict(features=5, kernel_size=(3, 3), padding="SAME"),
                 dict(features=5, kernel_size=(1, 1), use_bias=False),
                 dict(features=5, kernel_size=(2, 2), padding="VALID")):
    theirs, ours = nn.Conv(**kwargs), layer(**kwargs)
    params = theirs.init(key, before(x))
    assert jax.tree.map(jnp.shape, ours.init(key, x)) == jax.tree.map(jnp.shape, params)
    _close(jax.jit(ours.apply)(params, x), after(theirs.apply(params, before(x))))
  with pytest.raises(ValueError, match="odd square"):
    getattr(conv_lib, fused)(x, jnp.zeros((2, 2, 6, 5)))
  with pytest.raises(ValueError, match="inputs"):
    getattr(conv_lib, fused)(x, jnp.zeros((3, 3, 4, 5)))
  if fused == "conv_avg_pool":
    with pytest.raises(ValueError, match="even"):
      conv_lib.conv_avg_pool(x[:, :3], jnp.zeros((3, 3, 6, 5)))
