"""Each gradient transform against a NumPy loop or its formula, eagerly and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gax import transforms
from gax.transforms import (TRANSFORMS, add_gradient_noise, clip_params, ema_params,
                            find_ema_params, find_gradient_norm, historical_averaging,
                            track_gradient_norm)

MODES = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
RNG = np.random.default_rng(0)
PARAMS = {"w": RNG.normal(size=(3, 4)).astype(np.float32),
          "b": RNG.normal(size=(4,)).astype(np.float32)}
GRADS = [jax.tree.map(lambda p: RNG.normal(size=p.shape).astype(np.float32), PARAMS)
         for _ in range(4)]


def _run(tx, mode, params=PARAMS, grads=GRADS):
  """Applies `tx` to `grads` in turn; returns the list of (updates, params after, state)."""
  update = mode(tx.update)
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append((updates, params, state))
  return out


def _close(a, b, **kw):
  kw = {"rtol": 1e-5, "atol": 1e-6, **kw}
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def test_registry_names_and_build():
  assert TRANSFORMS.names() == sorted(
      ["clip_params", "historical_averaging", "gradient_noise", "track_gradient_norm", "ema",
       "orthogonal_regularization"])
  tx = transforms.build_transform("ema", decay=0.9, debias=True)
  assert isinstance(tx.init(PARAMS), transforms.EmaParamsState)
  with pytest.raises(KeyError, match="Known gradient transform names"):
    transforms.build_transform("emma")
  with pytest.raises(TypeError, match="clip_params"):
    transforms.build_transform("clip_params", bound=0.1)


@pytest.mark.parametrize("mode", MODES)
def test_clip_params_keeps_params_in_the_box(mode):
  c, lr = 0.5, 0.7
  tx = optax.chain(optax.sgd(lr), clip_params(c))
  params = PARAMS
  for g, (_, new_params, _) in zip(GRADS, _run(tx, mode)):
    # Reference: plain SGD step, then clip (Arjovsky et al. 2017, alg. 1 lines 6-7).
    ref = jax.tree.map(lambda p, g: np.clip(np.asarray(p) - lr * g, -c, c), params, g)
    _close(new_params, ref)
    for leaf in jax.tree.leaves(new_params):
      assert np.all(np.abs(leaf) <= c * (1 + 1e-6))
    params = new_params
  # Some elements were actually clipped (the box is binding), some not.
  assert np.any(np.abs(params["w"]) == c) and np.any(np.abs(params["w"]) < c)


def test_clip_params_needs_params():
  tx = clip_params(0.1)
  with pytest.raises(ValueError, match="needs the current params"):
    tx.update(PARAMS, tx.init(PARAMS))
  with pytest.raises(ValueError, match="c > 0"):
    clip_params(0.0)


@pytest.mark.parametrize("mode", MODES)
def test_historical_averaging_matches_a_numpy_loop_over_the_history(mode):
  weight, lr = 0.3, 0.1
  tx = optax.chain(historical_averaging(weight), optax.sgd(lr))
  out = _run(tx, mode)
  # Reference: keep every past theta; at step t the penalty gradient is
  # 2 w (1 - 1/t) (theta_t - mean(theta_1..theta_t)).
  theta = {k: v.astype(np.float64) for k, v in PARAMS.items()}
  history = []
  for t, (g, (_, got_params, got_state)) in enumerate(zip(GRADS, out), start=1):
    history.append(theta)
    new = {}
    for k in theta:
      mean = np.mean([h[k] for h in history], axis=0)
      pen = 2 * weight * (1 - 1 / t) * (theta[k] - mean)
      new[k] = theta[k] - lr * (g[k] + pen)
      np.testing.assert_allclose(got_state[0].mean[k], mean, rtol=1e-5, atol=1e-6)
    assert int(got_state[0].count) == t
    theta = new
    _close(got_params, theta)
  # The penalty is not a no-op: without it the params differ.
  plain = _run(optax.sgd(lr), mode)[-1][1]
  assert not np.allclose(plain["w"], out[-1][1]["w"], atol=1e-3)


def test_historical_averaging_is_the_gradient_of_the_papers_cost():
  # At step t the added term is d/dtheta_t of w ||theta_t - (1/t) sum_{i<=t} theta_i||^2,
  # with theta_1..theta_{t-1} fixed: autodiff of the cost over an explicit history.
  weight = 0.7
  tx = historical_averaging(weight)
  state = tx.init(PARAMS)
  history = []
  zero = jax.tree.map(jnp.zeros_like, PARAMS)
  for step in range(3):
    theta = jax.tree.map(lambda p, s=step: p + s * 0.25 + 0.1 * s * s * p, PARAMS)
    added, state = tx.update(zero, state, theta)

    def cost(th, history=tuple(history)):
      stack = history + (th,)
      mean = jax.tree.map(lambda *xs: sum(xs) / len(xs), *stack)
      return weight * optax.tree.norm(optax.tree.sub(th, mean), squared=True)

    _close(added, jax.grad(cost)(theta), atol=1e-5)
    history.append(theta)


def test_historical_averaging_weight_schedule():
  sched = optax.linear_schedule(0.0, 1.0, transition_steps=4)
  tx = historical_averaging(sched)
  state = tx.init(PARAMS)
  zero = jax.tree.map(jnp.zeros_like, PARAMS)
  _, state = tx.update(zero, state, PARAMS)
  p2 = jax.tree.map(lambda p: p + 1.0, PARAMS)
  added, _ = tx.update(zero, state, p2)
  # Second update (count 1): weight 0.25, t = 2, mean = p + 0.5 -> 2 * .25 * .5 * .5 = 0.125.
  _close(added, jax.tree.map(lambda p: np.full(p.shape, 0.125, np.float32), PARAMS))


@pytest.mark.parametrize("mode", MODES)
def test_gradient_noise_variance_follows_the_annealing_formula(mode):
  eta, gamma, n = 0.3, 0.55, 200_000
  params = {"a": jnp.zeros(n), "b": jnp.zeros((n // 2, 2))}
  zero = jax.tree.map(jnp.zeros_like, params)
  tx = add_gradient_noise(eta=eta, gamma=gamma, seed=1)
  update = mode(tx.update)
  state = tx.init(params)
  previous = None
  for t in range(3):
    noise, state = update(zero, state)
    var = eta / (1 + t) ** gamma
    for leaf in jax.tree.leaves(noise):
      leaf = np.asarray(leaf).ravel()
      # Sample variance of n normals has relative std sqrt(2 / n) ~ 0.3%.
      np.testing.assert_allclose(np.var(leaf), var, rtol=0.02)
      assert abs(np.mean(leaf)) < 5 * np.sqrt(var / n)
    a, b = np.asarray(noise["a"]), np.asarray(noise["b"]).ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02  # leaves draw independent noise
    if previous is not None:
      assert abs(np.corrcoef(a, previous)[0, 1]) < 0.02  # and steps do too
    previous = a
    assert int(state.count) == t + 1


def test_gradient_noise_is_added_to_the_gradients_and_eager_equals_jit():
  tx = add_gradient_noise(eta=0.01, seed=3)
  state = tx.init(PARAMS)
  eager, _ = tx.update(GRADS[0], state)
  jitted, _ = jax.jit(tx.update)(GRADS[0], state)
  _close(eager, jitted)
  diff = jax.tree.map(lambda a, b: np.asarray(a) - b, eager, GRADS[0])
  assert 0 < np.std(diff["w"]) < 0.5


@pytest.mark.parametrize("mode", MODES)
def test_track_gradient_norm_records_the_global_norm(mode):
  tx = optax.chain(track_gradient_norm(), optax.sgd(0.1))
  assert float(find_gradient_norm(tx.init(PARAMS))) == 0.0
  for g, (updates, _, state) in zip(GRADS, _run(tx, mode)):
    ref = np.sqrt(sum(np.sum(np.square(x.astype(np.float64))) for x in g.values()))
    np.testing.assert_allclose(find_gradient_norm(state), ref, rtol=1e-6)
    _close(updates, jax.tree.map(lambda x: -0.1 * x, g))  # identity on updates


def test_find_state_helpers_report_missing_and_ambiguous():
  with pytest.raises(ValueError, match="no track_gradient_norm"):
    find_gradient_norm(optax.adam(1e-3).init(PARAMS))
  twice = optax.chain(track_gradient_norm(), track_gradient_norm())
  with pytest.raises(ValueError, match="ambiguous"):
    find_gradient_norm(twice.init(PARAMS))
  with pytest.raises(ValueError, match="no ema_params"):
    find_ema_params(optax.sgd(1.0).init(PARAMS))


def _numpy_ema(decays, debias):
  """Reference EMA of the post-update params of SGD(0.1) on GRADS."""
  theta = {k: v.astype(np.float64) for k, v in PARAMS.items()}
  biased = {k: (np.zeros_like(v) if debias else v.copy()) for k, v in theta.items()}
  prod = 1.0
  out = []
  for d, g in zip(decays, GRADS):
    theta = {k: theta[k] - 0.1 * g[k] for k in theta}
    biased = {k: d * biased[k] + (1 - d) * theta[k] for k in theta}
    prod *= d
    out.append({k: v / (1 - prod) for k, v in biased.items()} if debias else dict(biased))
  return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("debias", [False, True])
def test_ema_params_matches_a_numpy_loop(mode, debias):
  decay = 0.8
  tx = optax.chain(optax.sgd(0.1), ema_params(decay, debias=debias))
  _close(find_ema_params(tx.init(PARAMS)), PARAMS)
  ref = _numpy_ema([decay] * len(GRADS), debias)
  for (updates, _, state), r, g in zip(_run(tx, mode), ref, GRADS):
    _close(find_ema_params(state), r)
    _close(updates, jax.tree.map(lambda x: -0.1 * x, g))  # updates unchanged


def test_ema_params_debiased_agrees_with_optax_ema():
  tx = optax.chain(optax.sgd(0.1), ema_params(0.9, debias=True))
  ref_tx = optax.ema(0.9, debias=True)
  ref_state = ref_tx.init(PARAMS)
  for _, params, state in _run(tx, jax.jit):
    ref, ref_state = ref_tx.update(params, ref_state)
    _close(find_ema_params(state), ref)


def test_ema_params_decay_schedule():
  sched = lambda count: jnp.where(count < 2, 0.5, 0.9)  # noqa: E731
  ref = _numpy_ema([0.5, 0.5, 0.9, 0.9], debias=True)
  tx = optax.chain(optax.sgd(0.1), ema_params(sched, debias=True))
  for (_, _, state), r in zip(_run(tx, jax.jit), ref):
    _close(find_ema_params(state), r)


def test_transforms_chain_and_jit_with_a_full_wgan_stack():
  tx = optax.chain(track_gradient_norm(), add_gradient_noise(0.01), historical_averaging(0.1),
                   optax.rmsprop(1e-2), clip_params(0.05), ema_params(0.99))
  eager = _run(tx, lambda f: f)[-1]
  jitted = _run(tx, jax.jit)[-1]
  _close(eager[1], jitted[1])
  _close(find_ema_params(eager[2]), find_ema_params(jitted[2]))
  assert all(np.all(np.abs(x) <= 0.05 * (1 + 1e-6)) for x in jax.tree.leaves(eager[1]))
  np.testing.assert_allclose(find_gradient_norm(eager[2]),
                             np.sqrt(sum(np.sum(x ** 2) for x in GRADS[-1].values())),
                             rtol=1e-6)


def test_orthogonal_regularization_is_the_gradient_of_biggans_penalty():
  """The added term is d/dW of (beta / 2) ||W W^T * (1 - I)||_F^2 with W the kernel's
  filters as rows (BigGAN's utils.ortho), by autodiff and by a NumPy loop over filters;
  1-D leaves are untouched and orthogonal filters feel nothing."""
  rng = np.random.default_rng(3)
  params = {"conv": rng.normal(size=(3, 3, 2, 5)).astype(np.float32),
            "dense": rng.normal(size=(6, 4)).astype(np.float32),
            "bias": rng.normal(size=(5,)).astype(np.float32)}
  beta = 0.3
  tx = transforms.orthogonal_regularization(beta)
  zero = jax.tree.map(jnp.zeros_like, params)
  added, _ = tx.update(zero, tx.init(params), params)

  def penalty(k):
    w = k.reshape(-1, k.shape[-1]).T
    gram = w @ w.T
    return beta / 2 * jnp.sum((gram * (1 - jnp.eye(w.shape[0]))) ** 2)

  for name in ("conv", "dense"):
    np.testing.assert_allclose(added[name], jax.grad(penalty)(jnp.asarray(params[name])),
                               rtol=1e-5, atol=1e-6)
    # The same from the filters by hand: for filter i, 2 beta sum_{j != i} <w_i, w_j> w_j.
    k = params[name].astype(np.float64)
    w = k.reshape(-1, k.shape[-1]).T
    want = np.stack([2 * beta * sum((w[i] @ w[j]) * w[j] for j in range(len(w)) if j != i)
                     for i in range(len(w))])
    np.testing.assert_allclose(added[name], want.T.reshape(k.shape), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(added["bias"], 0.0)
  q, _ = np.linalg.qr(rng.normal(size=(6, 4)))
  ortho = {"dense": q.astype(np.float32)}
  added, _ = tx.update({"dense": jnp.zeros((6, 4))}, tx.init(ortho), ortho)
  np.testing.assert_allclose(added["dense"], 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="strength >= 0"):
    transforms.orthogonal_regularization(-1.0)
