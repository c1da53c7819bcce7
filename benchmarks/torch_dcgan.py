"""The PyTorch side of `step_throughput.py --compare_torch`: the same DCGAN and the same
update as `gax.steps.train_step`, in eager PyTorch, channels-last, optionally under bf16
autocast.

Architecture, mirroring `gax.models.dcgan` at width 64 (Radford et al. 2016): G maps z
`[B, 100]` with a bias-free linear layer to 4x4x(8 * width), then batch norm + ReLU and
transposed convolutions (kernel 4, stride 2, padding 1) halving the channels up to the
output resolution, tanh at the end; D mirrors it with stride-2 convolutions, LeakyReLU(0.2),
batch norm on every hidden layer but the first, and a 4x4 valid convolution to one logit.
Same parameter counts as the gax models (checked in tests/test_benchmarks.py).

Update (one call of `step`): `n_critic` times: fresh z, D loss `softplus(-D(x)) +
softplus(D(G(z)))` (non-saturating GAN), Adam(2e-4, 0.5, 0.999) on D; then fresh z, G loss
`softplus(-D(G(z)))`, Adam on G. Real images arrive as uint8 on the device and are scaled to
[-1, 1] inside the step, as gax does.

This module imports torch; `step_throughput.py` imports it only with `--compare_torch`.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LATENT_DIM = 100


def _stages(resolution: int) -> int:
  """Doublings from 4x4 to `resolution` (as `gax.models.dcgan.num_stages`)."""
  k = int(round(np.log2(max(resolution, 1) / 4)))
  if k < 1 or 4 * 2 ** k != resolution:
    raise ValueError(f"resolution must be 4 * 2^k >= 8, got {resolution}.")
  return k


class Generator(nn.Module):

  def __init__(self, resolution: int = 64, width: int = 64, channels: int = 3):
    super().__init__()
    k = _stages(resolution)
    c = width * 2 ** (k - 1)
    self.c0 = c
    self.fc = nn.Linear(LATENT_DIM, 4 * 4 * c, bias=False)
    self.bn0 = nn.BatchNorm2d(c)
    layers = []
    for _ in range(k - 1):
      layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2),
                 nn.ReLU(inplace=True)]
      c //= 2
    layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=True), nn.Tanh()]
    self.body = nn.Sequential(*layers)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = self.fc(z).view(z.shape[0], 4, 4, self.c0).permute(0, 3, 1, 2)
    x = F.relu(self.bn0(x.contiguous(memory_format=torch.channels_last)))
    return self.body(x)


class Discriminator(nn.Module):

  def __init__(self, resolution: int = 64, width: int = 64, channels: int = 3):
    super().__init__()
    k = _stages(resolution)
    c = width
    layers = [nn.Conv2d(channels, c, 4, 2, 1, bias=True), nn.LeakyReLU(0.2, inplace=True)]
    for _ in range(k - 1):
      layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c),
                 nn.LeakyReLU(0.2, inplace=True)]
      c *= 2
    layers += [nn.Conv2d(c, 1, 4, 1, 0, bias=True)]
    self.body = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.body(x).view(x.shape[0])


def param_counts(resolution: int = 64, width: int = 64) -> Dict[str, int]:
  """Trainable parameters of G and D."""
  count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)
  return {"g": count(Generator(resolution, width)), "d": count(Discriminator(resolution, width))}


class GANStep:
  """Models, optimizers and the fused update of `g` and `d` on `device`: the non-saturating
  loss (`loss="non_saturating"`, the DCGAN) or the hinge loss (`"hinge"`, SNGAN), Adam(2e-4,
  `betas`) for both players (see the module docstring)."""

  def __init__(self, g: nn.Module, d: nn.Module, latent_dim: int, n_critic: int = 1,
               bf16: bool = False, device: str = "cpu", betas=(0.5, 0.999),
               loss: str = "non_saturating"):
    if loss not in ("non_saturating", "hinge"):
      raise ValueError(f"loss must be non_saturating or hinge, got {loss!r}.")
    self.device = torch.device(device)
    self.g = g.to(self.device, memory_format=torch.channels_last)
    self.d = d.to(self.device, memory_format=torch.channels_last)
    self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=betas)
    self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=betas)
    self.latent_dim, self.n_critic, self.bf16, self.loss = latent_dim, n_critic, bf16, loss

  def _autocast(self):
    return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

  def _d_loss(self, real_logits, fake_logits):
    if self.loss == "hinge":
      return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return (F.softplus(-real_logits) + F.softplus(fake_logits)).mean()

  def _g_loss(self, fake_logits):
    return -fake_logits.mean() if self.loss == "hinge" else F.softplus(-fake_logits).mean()

  def step(self, real_uint8: torch.Tensor) -> Dict[str, torch.Tensor]:
    """One update on `real_uint8` `[n_critic, B, C, H, W]` (channels-last strides)."""
    b = real_uint8.shape[1]
    for i in range(self.n_critic):
      real = real_uint8[i].float().div_(127.5).sub_(1.0)
      z = torch.randn(b, self.latent_dim, device=self.device)
      with self._autocast():
        fake = self.g(z).detach()
        d_loss = self._d_loss(self.d(real).float(), self.d(fake).float())
      self.opt_d.zero_grad(set_to_none=True)
      d_loss.backward()
      self.opt_d.step()
    z = torch.randn(b, self.latent_dim, device=self.device)
    with self._autocast():
      g_loss = self._g_loss(self.d(self.g(z)).float())
    self.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    self.opt_g.step()
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class DCGANStep(GANStep):
  """The DCGAN pair (`Generator`, `Discriminator`) and its update, seeded."""

  def __init__(self, resolution: int = 64, width: int = 64, n_critic: int = 1,
               bf16: bool = False, device: str = "cpu", seed: int = 0):
    torch.manual_seed(seed)
    super().__init__(Generator(resolution, width), Discriminator(resolution, width), LATENT_DIM,
                     n_critic, bf16, device)


def _sync(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize(device)


class Timer:
  """The timing half of `measure`: builds the step on `device` and runs its warm-up steps;
  each `repeat(iters)` then times `iters` steps, synchronised on the device, and returns
  seconds per step; `result(times)` summarises the repeats. `step_throughput.py` calls
  `repeat` alternately with gax's own repeats, so that both see the same machine."""

  def __init__(self, batch_size: int, dtype: str, resolution: int = 64, n_critic: int = 1,
               warmup: int = 3, device: Optional[str] = None,
               make_step: Callable[..., GANStep] = DCGANStep):
    if dtype not in ("float32", "bfloat16"):
      raise ValueError(f"dtype must be float32 or bfloat16, got {dtype!r}.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    self.batch_size = batch_size
    self.runner = make_step(resolution, n_critic=n_critic, bf16=dtype == "bfloat16",
                            device=device)
    data = torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (n_critic, batch_size, resolution, resolution, 3), dtype=np.uint8))
    # NHWC bytes viewed as NCHW with channels-last strides: no copy, the layout cuDNN wants.
    self.real = data.permute(0, 1, 4, 2, 3).to(self.runner.device)
    if self.runner.device.type == "cuda":
      torch.cuda.reset_peak_memory_stats(self.runner.device)
    self.out = None
    for _ in range(warmup):
      self.out = self.runner.step(self.real)
    _sync(self.runner.device)

  def repeat(self, iters: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
      self.out = self.runner.step(self.real)
    _sync(self.runner.device)
    return (time.perf_counter() - t0) / iters

  def result(self, times) -> Dict[str, Any]:
    losses = {k: float(v) for k, v in self.out.items()}
    if not all(np.isfinite(v) for v in losses.values()):
      raise FloatingPointError(f"Non-finite losses in the PyTorch step: {losses}")
    t = statistics.median(times)
    device = self.runner.device
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"img_per_sec": self.batch_size / t, "ms_per_step": 1e3 * t,
            "ms_per_step_spread": 1e3 * (max(times) - min(times)), "peak_mem_gib": peak,
            "device": f"torch-{torch.__version__}:{name}", "losses": losses}


def measure(batch_size: int, dtype: str, resolution: int = 64, n_critic: int = 1,
            warmup: int = 3, iters: int = 10, repeats: int = 5,
            device: Optional[str] = None,
            make_step: Callable[..., GANStep] = DCGANStep) -> Dict[str, Any]:
  """Times `make_step(...).step` (default the DCGAN's) like `step_throughput.measure` times
  the jitted step: warm-up steps untimed, then the median over `repeats` of `iters` steps,
  synchronised on the device at the end of each repeat. Returns img/s, ms/step (and its
  spread), peak memory (CUDA)."""
  timer = Timer(batch_size, dtype, resolution, n_critic, warmup, device, make_step)
  return timer.result([timer.repeat(iters) for _ in range(repeats)])
