"""Discriminator rejection sampling (DRS; Azadi et al. 2019, "Discriminator Rejection
Sampling", ICLR): the trained D corrects G's samples after training.

D trained with the sigmoid cross-entropy of the minimax and non-saturating GANs is optimal at
D(x) = p_data(x) / (p_data(x) + p_g(x)) (Goodfellow et al. 2014, Prop. 1), so its logit is the
log density ratio, logit(x) = log p_data(x) / p_g(x). Drawing x ~ p_g and keeping it with
probability exp(logit(x) - M), M >= max logit, is then rejection sampling of p_data. DRS
estimates M as the largest logit of a burn-in draw, raises it whenever a later logit is
larger, and writes the acceptance probability as `sigmoid(F(x))` with

    F(x) = logit(x) - M - log(1 - exp(logit(x) - M - eps)) - gamma

(the paper's Algorithm 1). For eps = gamma = 0 this is exactly exp(logit(x) - M), because
sigmoid(a - log(1 - e^a)) = e^a. A small eps keeps F finite at the maximum; gamma > 0 rejects
more and trades diversity for quality. The paper sets gamma per batch to a percentile of the
batch's F values (`percentile` here); the default gamma = 0 is plain rejection sampling.

Packed discriminators (PacGAN, `gax.models.packing`): a pack of m samples has density
prod_i p(x_i) under both the data and G, so the optimal packed D's logit is
sum_i log p_data(x_i) / p_g(x_i). Accepting a whole pack with exp(logit(pack) - M) therefore
gives packs of m independent p_data samples: `rejection_sample` draws packs, scores each with
D, and keeps every sample of an accepted pack.

DRS only corrects G as far as D's logit is the log ratio: D must be trained by the sigmoid
cross-entropy (losses "minimax" and "non_saturating"; `DRS_LOSSES`), and label smoothing or
noisy labels move its optimum. It cannot bring back a mode G never samples.

The theory also needs D to be optimal for the *final* G, as DRS samples it: in eval mode (a
G with batch norm then uses its running statistics, not the batch statistics D was trained
against) and with its sampling (EMA) params. `calibrate_discriminator` trains D further, G
frozen, on exactly those samples and exactly the logit DRS reads (`discriminator_logits`),
with the cross-entropy whose optimum is the log ratio; this also removes what label
smoothing did to D's optimum. (The MH-GAN paper, Turner et al. 2019, likewise calibrates D on
held-out data before using it as a density ratio; its calibrator is a separate regression on
D's output, this one fine-tunes D itself.)
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from gax import checks
from gax.models.packing import Packed
from gax.steps import GAN, discriminator_logits, generate_indexed
from gax.state import GANState

# The losses whose optimal discriminator logit is log p_data / p_g.
DRS_LOSSES = ("minimax", "non_saturating")
DEFAULT_EPS = 1e-6
LOG_SECONDS = 30.0  # rejection sampling logs its progress this often


def check_loss(loss: str, what: str = "Discriminator rejection sampling") -> None:
  """ValueError unless `loss` (a `gax.losses.LOSSES` name) is one of `DRS_LOSSES`."""
  if loss not in DRS_LOSSES:
    raise ValueError(f"{what} needs a discriminator whose logit estimates log p_data / p_g, "
                     f"trained by the losses {DRS_LOSSES}; this run's loss is {loss!r}.")


def acceptance_logit(logits: jax.Array, max_logit: float, gamma: float = 0.0,
                     eps: float = DEFAULT_EPS) -> jax.Array:
  """F(x) of DRS for D's `logits`, all <= `max_logit`: the acceptance probability is
  `sigmoid(F)`, which is `exp(logits - max_logit)` for `eps = gamma = 0`."""
  delta = jnp.asarray(logits, jnp.float32) - max_logit
  return delta - jnp.log1p(-jnp.exp(delta - eps)) - gamma


def packing_degree(gan: GAN) -> int:
  """How many samples D scores at once (PacGAN's packing degree; 1 for an unpacked D)."""
  return int(gan.discriminator.degree) if isinstance(gan.discriminator, Packed) else 1


def whole_packs(gan: GAN, n: int) -> int:
  """`n` rounded up to a multiple of `packing_degree(gan)`."""
  degree = packing_degree(gan)
  return -(-n // degree) * degree


def _check_unconditional(gan: GAN, what: str) -> None:
  if gan.conditional:
    raise ValueError(f"{what} supports unconditional GANs only (this one has "
                     f"conditioning={gan.conditioning!r}).")


@dataclasses.dataclass(frozen=True)
class RejectionResult:
  """What `rejection_sample` returns.

  Attributes:
    samples: `[num, *data_shape]` float32 accepted samples, in the order they were drawn.
    drawn: samples drawn from G after the burn-in (burn-in draws are not reused).
    acceptance: fraction of the packs drawn after the burn-in that were accepted.
    max_logit: the final estimate of M.
  """

  samples: np.ndarray
  drawn: int
  acceptance: float
  max_logit: float


_DRAWS = {}


def _draw_fn(gan: GAN, batch_size: int):
  """jit `(state, key, start) -> (x [batch_size, ...], logits [batch_size / degree])`: G's
  samples `start ... start + batch_size - 1` (`gax.steps.generate_indexed`, as
  `gax.evaluation.generate_samples` draws them) and D's logits of them."""
  cache_key = (id(gan), batch_size)
  if cache_key in _DRAWS and _DRAWS[cache_key][0] is gan:
    return _DRAWS[cache_key][1]

  @jax.jit
  def draw(state, key, start):
    x = generate_indexed(gan, state.g, key, start, batch_size)
    return x, discriminator_logits(gan, state, x)

  if len(_DRAWS) > 16:
    _DRAWS.clear()
  _DRAWS[cache_key] = (gan, draw)
  return draw


def rejection_sample(gan: GAN, state: GANState, key: jax.Array, num: int, *,
                     batch_size: int = 1000, burn_in: int = 10000, gamma: float = 0.0,
                     percentile: Optional[float] = None, eps: float = DEFAULT_EPS,
                     max_draws: int = 10_000_000) -> RejectionResult:
  """`num` samples of G (eval mode, EMA weights when kept) filtered by D's rejection
  sampling (see the module docstring).

  Args:
    gan, state: an unconditional GAN and its state.
    key: the draws' randomness; the result is a function of it and the settings.
    num: samples to return.
    batch_size: samples drawn and scored per call (rounded up to a multiple of D's packing
      degree).
    burn_in: samples drawn first only to estimate M, the largest logit.
    gamma: the fixed shift of F; exclusive with `percentile`.
    percentile: when given, gamma is this percentile (0-100) of each batch's F values.
    eps: F's epsilon.
    max_draws: samples drawn after the burn-in before giving up.

  Raises:
    ValueError: a conditional GAN, or bad settings.
    RuntimeError: fewer than `num` samples accepted within `max_draws` draws.
  """
  _check_unconditional(gan, "rejection_sample")
  num = checks.integer(num, "num", 1)
  burn_in = checks.integer(burn_in, "burn_in", 1)
  max_draws = checks.integer(max_draws, "max_draws", 1)
  degree = packing_degree(gan)
  batch_size = whole_packs(gan, checks.integer(batch_size, "batch_size", 1))
  if percentile is not None:
    if gamma:
      raise ValueError(f"Give gamma ({gamma}) or percentile ({percentile}), not both.")
    if not 0.0 <= float(percentile) <= 100.0:
      raise ValueError(f"percentile must be in [0, 100], got {percentile!r}.")
  if not (math.isfinite(gamma) and eps >= 0.0):
    raise ValueError(f"gamma must be finite and eps >= 0, got gamma={gamma!r}, eps={eps!r}.")
  draw = _draw_fn(gan, batch_size)
  key_g, key_u = jax.random.split(key)
  start = 0
  max_logit = -np.inf
  while start < burn_in:
    _, logits = draw(state, key_g, jnp.int32(start))
    max_logit = max(max_logit, float(jnp.max(logits)))
    start += batch_size
  if not np.isfinite(max_logit):
    raise RuntimeError(f"D's burn-in logits are not finite (max {max_logit}).")
  kept, count, drawn, packs, accepted = [], 0, 0, 0, 0
  t0 = last_log = time.time()
  while count < num:
    if time.time() - last_log >= LOG_SECONDS:  # long draws show their progress
      last_log = time.time()
      rate = accepted / max(packs, 1)
      logging.info("Rejection sampling: %d of %d samples kept from %d draws (acceptance %.2e, "
                   "max logit %.3g)%s", count, num, drawn, rate, max_logit,
                   f"; about {(num - count) * (last_log - t0) / count / 60:.1f} min left at "
                   "this acceptance" if count else "")
    if drawn >= max_draws:
      raise RuntimeError(
          f"Rejection sampling accepted {count} of {num} samples in {drawn} draws "
          f"(acceptance {accepted / max(packs, 1):.2e}, max logit {max_logit:.3g}); raise "
          "max_draws, or lower gamma / percentile.")
    x, logits = draw(state, key_g, jnp.int32(start))
    logits = np.asarray(logits, np.float64)
    max_logit = max(max_logit, float(logits.max()))  # Algorithm 1: M follows the largest
    f = np.asarray(acceptance_logit(logits, max_logit, 0.0, eps), np.float64)
    shift = np.percentile(f, percentile) if percentile is not None else gamma
    p = 1.0 / (1.0 + np.exp(-(f - shift)))
    u = np.asarray(jax.random.uniform(jax.random.fold_in(key_u, start), p.shape))
    accept = u < p
    x = np.asarray(x, np.float32).reshape(len(p), degree, *x.shape[1:])[accept]
    kept.append(x.reshape(-1, *x.shape[2:]))
    count += len(kept[-1])
    packs += len(p)
    accepted += int(accept.sum())
    drawn += batch_size
    start += batch_size
  return RejectionResult(samples=np.concatenate(kept)[:num], drawn=drawn,
                         acceptance=accepted / packs, max_logit=max_logit)


def calibrate_discriminator(gan: GAN, state: GANState, real: Callable[[int], np.ndarray],
                            key: jax.Array, *, steps: int, batch_size: int,
                            learning_rate: float = 1e-4, b1: float = 0.5,
                            log_every: int = 1000) -> Tuple[GANState, np.ndarray]:
  """D trained `steps` more Adam steps with G frozen, towards the log ratio DRS needs.

  Each step takes the real batch `real(i)` (`[batch_size, *data_shape]`) and `batch_size` of
  G's samples as DRS draws them (`generate_indexed`: eval mode, sampling params; samples
  `i * batch_size ...` of `key`'s stream, so pass a key DRS does not use), and lowers
  `mean softplus(-logit(real)) + mean softplus(logit(fake))` over D's params, the logits
  being `discriminator_logits` (eval mode, the hooks' d_params). The minimiser's logit is
  log p_data / p_g (Goodfellow et al. 2014, Prop. 1), per pack for a packed D. The optimizer
  is a fresh Adam (`learning_rate`, `b1`, b2 = 0.999): a run's own D optimizer may have
  decayed its rate to 0. Every `log_every` steps (0: never) the mean loss since the last
  report is logged, and a non-finite one stops the calibration there.

  Returns:
    `(state with only d.params changed, the losses of the steps [steps])`.

  Raises:
    ValueError: a conditional GAN, bad settings, or a real batch of the wrong shape.
    FloatingPointError: a non-finite loss.
  """
  _check_unconditional(gan, "calibrate_discriminator")
  steps = checks.integer(steps, "steps", 1)
  batch_size = checks.integer(batch_size, "batch_size", 1)
  log_every = checks.integer(log_every, "log_every", 0)
  degree = packing_degree(gan)
  if batch_size % degree:
    raise ValueError(f"batch_size={batch_size} must be a multiple of D's packing degree "
                     f"{degree}.")
  if not (math.isfinite(learning_rate) and learning_rate > 0 and 0 <= b1 < 1):
    raise ValueError(f"Need learning_rate > 0 and 0 <= b1 < 1, got {learning_rate!r}, {b1!r}.")
  tx = optax.adam(learning_rate, b1=b1)

  @jax.jit
  def step(params, opt_state, x_real, start):
    fake = jax.lax.stop_gradient(generate_indexed(gan, state.g, key, start, batch_size))

    def loss_fn(p):
      s = state.replace(d=state.d.replace(params=p))
      return (jnp.mean(jax.nn.softplus(-discriminator_logits(gan, s, x_real)))
              + jnp.mean(jax.nn.softplus(discriminator_logits(gan, s, fake))))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  want = jax.eval_shape(lambda: generate_indexed(gan, state.g, key, jnp.int32(0),
                                                 batch_size)).shape
  params = state.d.params
  opt_state = tx.init(params)
  losses = []

  def fetch(lo, hi):  # losses[lo:hi] on the host, with an error at the first non-finite one
    done = np.asarray(jax.device_get(losses[lo:hi]), np.float64)
    if not np.all(np.isfinite(done)):
      bad = int(np.argmin(np.isfinite(done)))
      raise FloatingPointError(f"D's calibration loss is not finite from step {lo + bad} "
                               f"({done[bad]}); lower learning_rate.")
    return done

  for i in range(steps):
    x_real = np.asarray(real(i), np.float32)
    if x_real.shape != want:
      raise ValueError(f"real({i}) returned a batch of shape {x_real.shape}; calibration "
                       f"needs G's sample shape {want}.")
    params, opt_state, loss = step(params, opt_state, x_real, jnp.int32(i * batch_size))
    losses.append(loss)
    if log_every and (i + 1) % log_every == 0 and i + 1 < steps:
      logging.info("D calibration step %d/%d: loss %.4f", i + 1, steps,
                   fetch(i + 1 - log_every, i + 1).mean())
  return state.replace(d=state.d.replace(params=params)), fetch(0, steps)


__all__ = ["DRS_LOSSES", "DEFAULT_EPS", "check_loss", "acceptance_logit", "packing_degree",
           "whole_packs", "RejectionResult", "rejection_sample", "calibrate_discriminator"]
