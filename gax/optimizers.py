"""Base optimizers by name (`OPTIMIZERS`), built from a config section.

`config.optimizer.g` and `config.optimizer.d` each name one, so the players can differ in
optimizer and learning rate (ganhacks 9: Adam for G, SGD for D; Heusel et al. 2017: TTUR).
"""

from __future__ import annotations

from typing import Any, Mapping

import optax

from gax.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("adam")
def adam(learning_rate: float, b1: float = 0.5, b2: float = 0.999, eps: float = 1e-8):
  """Adam; b1 = 0.5 is the DCGAN setting (Radford et al. 2016, sec. 4)."""
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@OPTIMIZERS.register("sgd")
def sgd(learning_rate: float, momentum: float = 0.0, nesterov: bool = False):
  return optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)


@OPTIMIZERS.register("rmsprop")
def rmsprop(learning_rate: float, decay: float = 0.9, eps: float = 1e-8):
  """RMSProp, the WGAN optimizer (Arjovsky et al. 2017, alg. 1)."""
  return optax.rmsprop(learning_rate, decay=decay, eps=eps)


def build_optimizer(cfg: Mapping[str, Any]) -> optax.GradientTransformation:
  """`{'name': 'adam', 'learning_rate': 2e-4, ...}` -> the optax transformation."""
  cfg = dict(cfg)
  if "name" not in cfg:
    raise KeyError(f"Optimizer config {cfg} has no 'name'; known: {', '.join(OPTIMIZERS.names())}.")
  name = cfg.pop("name")
  lr = cfg.get("learning_rate")
  if lr is None or not lr > 0:
    raise ValueError(f"Optimizer {name!r} needs a positive learning_rate, got {lr!r}.")
  return OPTIMIZERS.build(name, **cfg)
