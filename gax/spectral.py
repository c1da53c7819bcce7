"""Spectral normalisation (Miyato et al. 2018, "Spectral normalization for generative
adversarial networks") as a pure transform over any parameter PyTree.

Instead of a layer wrapper, D's params are normalised before D is applied:

  sn_state = init_spectral_state(params, key)                     # once, kept in the state

  def d_loss(params, sn_state):
    params_sn, sn_state = spectral_normalize(params, sn_state)    # differentiable in params
    logits = D.apply({'params': params_sn}, x)
    ...

Which leaves are normalised (the default rule, `is_kernel`): every leaf whose last path
entry is named `kernel` and that has ndim >= 2 -- Flax `Dense`, `Conv`, `ConvTranspose`,
`DenseGeneral` kernels. Biases, batch/layer norm scales and offsets, embeddings and
anything else are left as they are. A kernel `[..., c_out]` is treated as the matrix
`K = kernel.reshape(-1, c_out)` of shape `[fan_in, c_out]` (a conv kernel `[kh, kw, c_in,
c_out]` as `[kh * kw * c_in, c_out]`); the paper's weight matrix is `W = K^T`
(`[c_out, fan_in]`), with the same singular values.

The state (`SpectralState`) is a flat dict `{path: u}` with one entry per normalised leaf
only: `path` is the leaf's '/'-joined tree path (e.g. `'Conv_0/kernel'`, list indices as
numbers) and `u` the float32 `[c_out]` estimate of W's first left singular vector (the
paper's u; K's first right singular vector). It is a plain dict of arrays: valid under
`jit`/`pmap`, and it checkpoints with Orbax (which refuses zero-size placeholder arrays,
hence no entries for skipped leaves). The state, not the rule, decides what
`spectral_normalize` normalises: every leaf with an entry, and only those.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp

from gax import checks

Array = jax.Array
PyTree = Any
SpectralState = Dict[str, Array]
Include = Callable[[str, Array], bool]

_EPS = 1e-12


def path_name(path: Tuple[Any, ...]) -> str:
  """A `jax.tree_util` key path as a '/'-joined string: `('Dense_0', 'kernel')` style."""
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      parts.append(k.name)
    elif isinstance(k, jax.tree_util.FlattenedIndexKey):
      parts.append(str(k.key))
    else:
      parts.append(str(k))
  return "/".join(parts)


def is_kernel(path: str, leaf: Array) -> bool:
  """The default rule: a leaf named `kernel` with ndim >= 2."""
  return path.rsplit("/", 1)[-1] == "kernel" and jnp.ndim(leaf) >= 2


def kernel_matrix(kernel: Array) -> Array:
  """`[..., c_out] -> [fan_in, c_out]` (the transpose of the paper's W)."""
  return jnp.reshape(kernel, (-1, kernel.shape[-1]))


def _l2_normalize(x: Array) -> Array:
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x)) + _EPS)


def power_iteration(k: Array, u: Array, n_iterations: int = 1) -> Tuple[Array, Array, Array]:
  """Estimates the largest singular value of `k` (Miyato et al. 2018, alg. 1).

  With `W = k^T`, repeats `n_iterations` times `v <- W^T u / ||W^T u||`,
  `u <- W v / ||W v||`, then `sigma = u^T W v`.

  Args:
    k: matrix `[m, n]` (`[fan_in, c_out]`).
    u: `[n]`, the current estimate of W's first left singular vector.
    n_iterations: >= 1.

  Returns:
    `(u [n], v [m], sigma)`: `u` and `v` are stop-gradiented, as in the paper; `sigma` is
    float32 and differentiable w.r.t. `k` (d sigma / d k = v u^T).
  """
  checks.integer(n_iterations, "power_iteration n_iterations")
  if k.ndim != 2 or u.shape != (k.shape[1],):
    raise ValueError(f"power_iteration needs k [m, n] and u [n]; got {k.shape} and {u.shape}.")
  k = k.astype(jnp.float32)
  u, v = _power_loop(k, u, n_iterations)
  u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
  return u, v, v @ k @ u


def _power_loop(k: Array, u: Array, n_iterations) -> Tuple[Array, Array]:
  """`n_iterations` (an int, or a traced int where no reverse-mode gradient is needed)
  power iterations on the constant `k`; returns `(u, v)` (u unchanged, v zeros for 0)."""
  carry = (jax.lax.stop_gradient(k), jax.lax.stop_gradient(u.astype(jnp.float32)),
           jnp.zeros(k.shape[0], jnp.float32))
  _, u, v = jax.lax.fori_loop(0, n_iterations, _power_step, carry)
  return u, v


def _power_step(_, carry):
  # Module-level (no closure), so eager calls reuse one compiled loop per shape.
  k, u, _ = carry
  v = _l2_normalize(k @ u)
  return k, _l2_normalize(k.T @ v), v


def init_spectral_state(params: PyTree, key: Array, n_power_iterations: int = 1,
                        include: Include = is_kernel) -> SpectralState:
  """One `u` per normalised leaf of `params` (see the module docstring).

  Each `u` starts as a random unit vector (the paper's isotropic draw, one key per leaf
  split from `key` in leaf order) refined by `n_power_iterations` >= 0 iterations on the
  current params.

  Args:
    params: any PyTree of arrays, e.g. a Flax `params` collection.
    key: PRNG key.
    n_power_iterations: warm-up iterations (0: the random draw as is).
    include: `(path, leaf) -> bool`, which leaves to normalise; `is_kernel` by default.

  Returns:
    `{path: u [c_out] float32}`; `{}` when no leaf is included.
  """
  if n_power_iterations < 0:
    raise ValueError(f"n_power_iterations must be >= 0, got {n_power_iterations}.")
  chosen = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = path_name(path)
    if include(name, leaf):
      if jnp.ndim(leaf) < 2:
        raise ValueError(f"Spectral normalisation needs a matrix; leaf {name!r} has shape "
                         f"{jnp.shape(leaf)}.")
      chosen.append((name, leaf))
  names = [n for n, _ in chosen]
  if len(set(names)) != len(names):
    raise ValueError(f"Leaf paths are not unique as strings: {names}.")
  if not chosen:
    return {}
  us = _initial_us([leaf for _, leaf in chosen], key, n_power_iterations)
  return dict(zip(names, us))


@jax.jit
def _initial_us(kernels, key, n_power_iterations):
  # One compiled program for all leaves and any number of iterations (init usually runs
  # eagerly, where per-leaf dispatch would compile many small programs).
  us = []
  for kernel, k in zip(kernels, jax.random.split(key, len(kernels))):
    u = _l2_normalize(jax.random.normal(k, (kernel.shape[-1],), jnp.float32))
    us.append(_power_loop(kernel_matrix(kernel).astype(jnp.float32), u, n_power_iterations)[0])
  return us


def _normalize_leaves(params: PyTree, sn_state: SpectralState, n_power_iterations: int):
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
  by_name = {path_name(p): i for i, (p, _) in enumerate(leaves_with_path)}
  missing = sorted(set(sn_state) - set(by_name))
  if missing:
    raise KeyError(f"The spectral state has entries for {missing}, which the params do not "
                   f"have; params leaves: {sorted(by_name)}. Was the state built for other "
                   "params?")
  leaves = [leaf for _, leaf in leaves_with_path]
  results = {}
  for name, u in sn_state.items():
    leaf = leaves[by_name[name]]
    if jnp.ndim(leaf) < 2 or jnp.shape(u) != (leaf.shape[-1],):
      raise ValueError(f"Spectral state for {name!r} has u of shape {jnp.shape(u)}, but the "
                       f"leaf has shape {jnp.shape(leaf)} (u must be [c_out = last dim]).")
    results[name] = power_iteration(kernel_matrix(leaf), u, n_power_iterations)
  return leaves, by_name, treedef, results


def spectral_normalize(params: PyTree, sn_state: SpectralState, n_power_iterations: int = 1,
                       update_state: bool = True) -> Tuple[PyTree, SpectralState]:
  """`W -> W / sigma(W)` for every leaf with an entry in `sn_state`; other leaves unchanged.

  sigma is estimated by `n_power_iterations` power iterations from the stored `u`
  (Miyato et al. 2018, alg. 1: one iteration per training step suffices since W changes
  slowly); u and v are constants for differentiation, so the gradient w.r.t. the params is
  that of `W / (v^T K u)` with fixed u, v (Miyato et al. 2018, sec. 2.2).

  Args:
    params: the PyTree `sn_state` was built for.
    sn_state: from `init_spectral_state` (or a previous call).
    n_power_iterations: >= 1, a Python int (static under `jit`).
    update_state: return the refined `u`s; with False `sn_state` is returned as is (e.g.
      for D inside the generator's step, or evaluation).

  Returns:
    `(normalized_params, new_sn_state)`: normalised leaves keep their dtype.
  """
  leaves, by_name, treedef, results = _normalize_leaves(params, sn_state, n_power_iterations)
  new_leaves = list(leaves)
  for name, (_, _, sigma) in results.items():
    leaf = leaves[by_name[name]]
    new_leaves[by_name[name]] = (leaf.astype(jnp.float32) / sigma).astype(leaf.dtype)
  new_state = {name: u for name, (u, _, _) in results.items()} if update_state else sn_state
  return jax.tree_util.tree_unflatten(treedef, new_leaves), new_state


def spectral_norms(params: PyTree, sn_state: SpectralState,
                   n_power_iterations: int = 1) -> Dict[str, Array]:
  """`{path: sigma}`: the power-iteration estimate of each normalised leaf's spectral norm
  (for monitoring; `sn_state` is not updated)."""
  return {name: sigma for name, (_, _, sigma) in
          _normalize_leaves(params, sn_state, n_power_iterations)[3].items()}


__all__ = ["path_name", "is_kernel", "kernel_matrix", "power_iteration", "init_spectral_state",
           "spectral_normalize", "spectral_norms"]
