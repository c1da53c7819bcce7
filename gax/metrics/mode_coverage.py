"""Mode coverage of samples from a Gaussian mixture (VEEGAN: Srivastava et al. 2017;
PacGAN: Lin et al. 2018).

Each sample is registered to its nearest mode. It is *high quality* when it lies within
`hq_sigmas` standard deviations (3 in both papers) of that mode's centre. A mode is
*covered* when at least `min_fraction` of its expected share of samples are high-quality
samples registered to it; 0.2 reproduces PacGAN's "fewer than 20 of 2500 samples on 25
modes" threshold. Reverse KL is KL(q || p) between the distribution q of high-quality
samples over modes and the uniform p of the data.
"""

from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _register(samples: jax.Array, centers: jax.Array):
  d2 = jnp.sum(jnp.square(samples[:, None, :] - centers[None, :, :]), -1)
  nearest = jnp.argmin(d2, axis=1)
  return nearest, jnp.sqrt(jnp.min(d2, axis=1))


def mode_coverage(samples: np.ndarray, centers: np.ndarray, std: float, hq_sigmas: float = 3.0,
                  min_fraction: float = 0.2) -> Dict[str, float]:
  """Coverage statistics of `samples [N, D]` against mixture `centers [K, D]` with `std`.

  Returns:
    dict with `modes` (K), `modes_covered`, `hq_fraction` (fraction of all samples that are
    high quality), `reverse_kl` (nats; 0 when high-quality samples spread evenly) and
    `counts` (high-quality samples per mode, a list).
  """
  samples = np.asarray(samples, np.float32)
  centers = np.asarray(centers, np.float32)
  if samples.ndim != 2 or samples.shape[1] != centers.shape[1]:
    raise ValueError(f"samples must be [N, {centers.shape[1]}], got {samples.shape}.")
  n, k = len(samples), len(centers)
  nearest, dist = (np.asarray(a) for a in _register(samples, centers))
  hq = dist <= hq_sigmas * std
  counts = np.bincount(nearest[hq], minlength=k)
  covered = counts >= min_fraction * n / k
  total = counts.sum()
  if total:
    q = counts / total
    nz = q > 0
    reverse_kl = float(np.sum(q[nz] * np.log(q[nz] * k)))
  else:
    reverse_kl = float("inf")
  return {
      "modes": int(k),
      "modes_covered": int(covered.sum()),
      "hq_fraction": float(hq.mean()),
      "reverse_kl": reverse_kl,
      "counts": counts.tolist(),
  }


__all__ = ["mode_coverage"]
