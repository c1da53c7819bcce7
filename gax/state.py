"""Training state: everything that changes during GAN training, as one PyTree.

`GANState` holds both players and the PRNG key, so a train step is the pure function
`(state, batch) -> (state, metrics)` and a checkpoint of the state is a complete record of
the run: restoring it continues exactly where training stopped.
"""

from __future__ import annotations

import math
from typing import Any

import flax.struct
import jax
import optax

PyTree = Any


@flax.struct.dataclass
class PlayerState:
  """One player's (G's or D's) trainable state.

  Attributes:
    params: the Flax `params` collection.
    model_state: every other Flax collection the model mutates in training, e.g.
      `{'batch_stats': ...}`; `{}` for models without one.
    opt_state: the state of the player's `optax.GradientTransformation`.
  """

  params: PyTree
  model_state: PyTree
  opt_state: optax.OptState

  @property
  def variables(self) -> dict:
    """The Flax variables dict, `{'params': ..., **model_state}`, for `module.apply`."""
    return {"params": self.params, **self.model_state}


@flax.struct.dataclass
class GANState:
  """The complete state of a GAN run.

  Attributes:
    step: int32 scalar, the number of completed train steps (each is `n_critic` D updates
      and one G update).
    g: the generator's `PlayerState`.
    d: the discriminator's `PlayerState`.
    tricks: state of tricks that act outside the optimizers (replay buffers, EMA of G,
      ...); `{}` when none is enabled.
    key: the run's PRNG key (a raw `uint32[2]` key, which checkpoints as a plain array).
  """

  step: jax.Array
  g: PlayerState
  d: PlayerState
  tricks: PyTree
  key: jax.Array


def split_variables(variables: dict) -> tuple[PyTree, PyTree]:
  """Splits a Flax variables dict into `(params, model_state)`."""
  variables = dict(variables)
  params = variables.pop("params")
  return params, variables


def init_player(variables: dict, tx: optax.GradientTransformation) -> PlayerState:
  """Builds a `PlayerState` from freshly initialised Flax variables and an optimizer."""
  params, model_state = split_variables(variables)
  return PlayerState(params=params, model_state=model_state, opt_state=tx.init(params))


def param_count(tree: PyTree) -> int:
  """Number of scalars in a PyTree of arrays (or of `jax.ShapeDtypeStruct`s)."""
  return sum(math.prod(getattr(x, "shape", ())) for x in jax.tree_util.tree_leaves(tree))


__all__ = ["PlayerState", "GANState", "split_variables", "init_player", "param_count"]
