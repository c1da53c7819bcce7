"""Base optimizers by name (`OPTIMIZERS`), built from a config section.

`config.optimizer.g` and `config.optimizer.d` each name one, so the players can differ in
optimizer and learning rate (ganhacks 9: Adam for G, SGD for D; Heusel et al. 2017: TTUR).

A section may also give the learning rate a schedule (`SCHEDULES`) over that player's own
updates (D takes `n_critic` updates per train step, G one):

  schedule      'constant' (default), 'linear' or 'cosine' decay from `learning_rate` to
                `final_scale * learning_rate` over `decay_steps` updates, held there after
  decay_steps   length of the decay, in the player's updates (required, > 0, unless constant)
  final_scale   the last learning rate as a fraction of the first (default 0)
  warmup_steps  linear warm-up from 0 before the decay starts (default 0)

Decaying the learning rates to 0 lets both players settle at the end of a run instead of
jittering around the equilibrium with a constant step, which sharpens the samples (e.g. the
high-quality fraction on the 2D mixtures, `docs/quality.md`).
"""

from __future__ import annotations

from typing import Any, Mapping

import optax

from gax import checks
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


SCHEDULES = ("constant", "linear", "cosine")
# The schedule keys of an optimizer section at their neutral values: a constant rate.
SCHEDULE_DEFAULTS = {"schedule": "constant", "decay_steps": 0, "final_scale": 0.0,
                     "warmup_steps": 0}
SCHEDULE_KEYS = tuple(SCHEDULE_DEFAULTS)


def learning_rate_schedule(learning_rate: float, schedule: str = "constant",
                           decay_steps: int = 0, final_scale: float = 0.0,
                           warmup_steps: int = 0) -> optax.Schedule:
  """The learning rate as a function of the update count (see the module docstring)."""
  if schedule not in SCHEDULES:
    raise ValueError(f"Unknown learning-rate schedule {schedule!r}; choose from {SCHEDULES}.")
  checks.integer(warmup_steps, "warmup_steps", 0)
  if schedule == "constant":
    if decay_steps or final_scale:
      raise ValueError("decay_steps and final_scale need schedule='linear' or 'cosine'; the "
                       "schedule is 'constant'.")
    main = optax.constant_schedule(learning_rate)
  else:
    checks.integer(decay_steps, "decay_steps", 1,
                   f" (the player's updates, which schedule={schedule!r} needs)")
    if not 0.0 <= final_scale <= 1.0:
      raise ValueError(f"final_scale must be in [0, 1], got {final_scale!r}.")
    if schedule == "linear":
      main = optax.linear_schedule(learning_rate, final_scale * learning_rate, decay_steps)
    else:
      main = optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=final_scale)
  if not warmup_steps:
    return main
  warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def build_optimizer(cfg: Mapping[str, Any]) -> optax.GradientTransformation:
  """`{'name': 'adam', 'learning_rate': 2e-4, ...}` -> the optax transformation; the keys
  `SCHEDULE_KEYS` give the learning rate a schedule."""
  cfg = dict(cfg)
  if "name" not in cfg:
    raise KeyError(f"Optimizer config {cfg} has no 'name'; known: {', '.join(OPTIMIZERS.names())}.")
  name = cfg.pop("name")
  lr = cfg.get("learning_rate")
  if lr is None or not lr > 0:
    raise ValueError(f"Optimizer {name!r} needs a positive learning_rate, got {lr!r}.")
  schedule = {k: cfg.pop(k) for k in SCHEDULE_KEYS if k in cfg}
  rate = learning_rate_schedule(lr, **schedule)  # also validates the schedule keys
  # A constant rate stays a float, so its optimizer state carries no schedule step count.
  if schedule.get("schedule", "constant") != "constant" or schedule.get("warmup_steps"):
    cfg["learning_rate"] = rate
  return OPTIMIZERS.build(name, **cfg)


__all__ = ["OPTIMIZERS", "adam", "sgd", "rmsprop", "SCHEDULES", "SCHEDULE_DEFAULTS",
           "SCHEDULE_KEYS", "learning_rate_schedule", "build_optimizer"]
