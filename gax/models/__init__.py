"""Generator/discriminator pairs, registered by name in `MODELS`.

A model factory takes the data's per-example shape (`data_shape`), the mapped axis name for
cross-device batch statistics (`axis_name`, `None` outside `pmap`) and its own keyword
arguments from the config, and returns `(generator, discriminator)` Flax modules. Both
modules take `(inputs, train: bool)`; D returns logits of shape `[B]`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from gax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gax.models.mlp import MLPDiscriminator, MLPGenerator
from gax.registry import Registry

MODELS: Registry = Registry("model")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype(name: str) -> Any:
  if name not in _DTYPES:
    raise ValueError(f"Unknown compute dtype {name!r}; known: {', '.join(_DTYPES)}.")
  return _DTYPES[name]


@MODELS.register("dcgan")
def dcgan(data_shape: Sequence[int], axis_name: Optional[str] = None, width: int = 64,
          dtype: str = "float32") -> Tuple[nn.Module, nn.Module]:
  """DCGAN pair for square images of shape `(R, R, C)`, R = 4 * 2^k."""
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    raise ValueError(f"DCGAN needs square images (H, W, C) with H == W; data has {tuple(data_shape)}.")
  r, _, c = data_shape
  dt = _dtype(dtype)
  return (DCGANGenerator(resolution=r, width=width, channels=c, axis_name=axis_name, dtype=dt),
          DCGANDiscriminator(resolution=r, width=width, axis_name=axis_name, dtype=dt))


@MODELS.register("mlp")
def mlp(data_shape: Sequence[int], axis_name: Optional[str] = None,
        g_hidden: Sequence[int] = (256, 256, 256),
        d_hidden: Sequence[int] = (256, 256, 256)) -> Tuple[nn.Module, nn.Module]:
  """MLP pair for vector data of shape `(dim,)`."""
  if len(data_shape) != 1:
    raise ValueError(f"The MLP model needs vector data of shape (dim,); data has {tuple(data_shape)}.")
  return (MLPGenerator(hidden=tuple(g_hidden), out_dim=data_shape[0]),
          MLPDiscriminator(hidden=tuple(d_hidden), axis_name=axis_name))


__all__ = ["MODELS", "DCGANGenerator", "DCGANDiscriminator", "MLPGenerator", "MLPDiscriminator"]
