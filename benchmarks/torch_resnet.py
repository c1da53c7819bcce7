"""The PyTorch side of `step_throughput.py --models=resnet --compare_torch`: the SNGAN-style
ResNet pair of `gax.models.resnet` and its update in eager PyTorch, channels-last.

Architecture, mirroring `gax.models.resnet` (Miyato et al. 2018, appendix B; G width 256,
D width 128 at 32x32): G maps z `[B, 128]` with a linear layer to 4x4 x width, then up-blocks
(batch norm, ReLU, nearest 2x upsampling, 3x3 conv, batch norm, ReLU, 3x3 conv; shortcut:
upsampling and a 1x1 conv) to the output resolution, then batch norm, ReLU, a 3x3 conv to RGB
and tanh; D is an optimised first down-block (3x3 conv, ReLU, 3x3 conv, 2x2 average pooling;
shortcut: pooling and a 1x1 conv), down-blocks to 8x8 (ReLU, conv, ReLU, conv, pooling;
shortcut: 1x1 conv and pooling), two blocks without pooling, ReLU, global sum pooling and a
linear layer to the logit, with spectral normalisation of every weight
(`torch.nn.utils.parametrizations.spectral_norm`, one power iteration per forward pass).
Same parameter counts as the gax models (checked in tests/test_torch_compare.py).

Update (`benchmarks.torch_dcgan.GANStep` with the hinge loss and Adam(2e-4, 0.0, 0.9), as
`step_throughput.benchmark_config("resnet", ...)`). PyTorch convolves the upsampled maps and
pools the convolved ones as written; gax computes the same layers as single convolutions
(`gax.conv.UpsampleConv`, `gax.conv.ConvAvgPool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch_dcgan import GANStep, _stages

LATENT_DIM = 128


def _up(x: torch.Tensor) -> torch.Tensor:
  return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):

  def __init__(self, c: int):
    super().__init__()
    self.bn1, self.bn2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)
    self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
    self.shortcut = nn.Conv2d(c, c, 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.conv1(_up(F.relu(self.bn1(x))))
    h = self.conv2(F.relu(self.bn2(h)))
    return h + self.shortcut(_up(x))


class Generator(nn.Module):

  def __init__(self, resolution: int = 32, width: int = 256, channels: int = 3):
    super().__init__()
    self.width = width
    self.fc = nn.Linear(LATENT_DIM, 4 * 4 * width)
    self.blocks = nn.Sequential(*[GBlock(width) for _ in range(_stages(resolution))])
    self.bn = nn.BatchNorm2d(width)
    self.out = nn.Conv2d(width, channels, 3, padding=1)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = self.fc(z).view(z.shape[0], 4, 4, self.width).permute(0, 3, 1, 2)
    x = self.blocks(x.contiguous(memory_format=torch.channels_last))
    return torch.tanh(self.out(F.relu(self.bn(x))))


class DBlock(nn.Module):

  def __init__(self, c_in: int, c: int, downsample: bool, first: bool, sn=lambda m: m):
    super().__init__()
    self.downsample, self.first = downsample, first
    self.conv1 = sn(nn.Conv2d(c_in, c, 3, padding=1))
    self.conv2 = sn(nn.Conv2d(c, c, 3, padding=1))
    self.shortcut = sn(nn.Conv2d(c_in, c, 1)) if first or downsample or c_in != c else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
    if self.downsample:
      h = F.avg_pool2d(h, 2)
    if self.first:
      s = self.shortcut(F.avg_pool2d(x, 2))
    elif self.shortcut is not None:
      s = self.shortcut(x)
      s = F.avg_pool2d(s, 2) if self.downsample else s
    else:
      s = x
    return h + s


class Discriminator(nn.Module):

  def __init__(self, resolution: int = 32, width: int = 128, channels: int = 3,
               spectral_norm: bool = True):
    super().__init__()
    sn = torch.nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
    k = _stages(resolution)
    blocks = [DBlock(channels if i == 0 else width, width, True, i == 0, sn)
              for i in range(max(k - 1, 1))]
    blocks += [DBlock(width, width, False, False, sn) for _ in range(2)]
    self.blocks = nn.Sequential(*blocks)
    self.fc = sn(nn.Linear(width, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    features = F.relu(self.blocks(x)).sum(dim=(2, 3))
    return self.fc(features).view(x.shape[0])


def param_counts(resolution: int = 32, g_width: int = 256, d_width: int = 128):
  """Trainable parameters of G and D."""
  count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)
  return {"g": count(Generator(resolution, g_width)),
          "d": count(Discriminator(resolution, d_width))}


class ResNetStep(GANStep):
  """The SNGAN pair at G width 256, D width 128, hinge loss, Adam(2e-4, 0.0, 0.9), seeded."""

  def __init__(self, resolution: int = 32, n_critic: int = 1, bf16: bool = False,
               device: str = "cpu", seed: int = 0):
    torch.manual_seed(seed)
    super().__init__(Generator(resolution, 256), Discriminator(resolution, 128), LATENT_DIM,
                     n_critic, bf16, device, betas=(0.0, 0.9), loss="hinge")
