"""gax: GAN training in JAX, as pure, jit- and pmap-compiled train steps and tricks.

The public surface, for use by import (README, "Using gax as a library"):

  gax.GAN, gax.init_state, gax.train_step, gax.jit_train_step   the model and its step
  gax.fit, gax.Callback, gax.SampleGrid                          the training loop
  gax.generate, gax.sampling_player, gax.sample                  sampling (EMA weights too)
  gax.Hook, gax.StepContext, gax.DView, gax.GView                tricks inside the step
  gax.GANState, gax.PlayerState                                  the state PyTree
  gax.Evaluator, gax.ImageEvaluator, gax.EvalSettings, gax.Monitor   evaluation, alarms
  gax.train                                                      config -> run

and the modules `gax.steps` (the step and its parts), `gax.loop`, `gax.trainer`,
`gax.state`, `gax.losses`, `gax.penalties`, `gax.transforms` (Optax transforms),
`gax.tricks`, `gax.augment`, `gax.spectral`, `gax.layers`, `gax.conv`, `gax.models`,
`gax.data`, `gax.noise`, `gax.optimizers`, `gax.parallel`, `gax.metrics`,
`gax.evaluation`, `gax.rejection`, `gax.visualize`, `gax.checkpoint`, `gax.host` (the
allocator setting of gax's launchers). Each module lists its public names in `__all__`.

Importing gax creates no JAX array, so `jax.distributed.initialize` can still run after it.
"""

from gax import (augment, checkpoint, conv, data, evaluation, host, layers, loop, losses,
                 metrics, models, monitor, noise, optimizers, parallel, penalties, rejection,
                 spectral, state, steps, trainer, transforms, tricks, visualize)
from gax.evaluation import EvalSettings, Evaluator, ImageEvaluator, ModeCoverageEvaluator
from gax.loop import Callback, SampleGrid, fit
from gax.monitor import Monitor
from gax.state import GANState, PlayerState
from gax.steps import (GAN, DView, GView, Hook, StepContext, generate, init_state,
                       jit_train_step, sampling_player, train_step)
from gax.trainer import sample, train

__version__ = "0.1.0"

__all__ = [
    # Modules.
    "augment", "checkpoint", "conv", "data", "evaluation", "host", "layers", "loop", "losses",
    "metrics", "models", "monitor", "noise", "optimizers", "parallel", "penalties",
    "rejection", "spectral", "state", "steps", "trainer", "transforms", "tricks", "visualize",
    # The model, its state and its step.
    "GAN", "GANState", "PlayerState", "init_state", "train_step", "jit_train_step",
    "Hook", "StepContext", "DView", "GView",
    # Training, sampling, evaluation.
    "fit", "Callback", "SampleGrid", "train", "generate", "sampling_player", "sample",
    "Evaluator", "ImageEvaluator", "ModeCoverageEvaluator", "EvalSettings", "Monitor",
]
