"""The FID Inception-v3 of `gax.metrics.features` against a PyTorch reference.

The reference below is the network pytorch-fid (Seitzer 2020) builds for FID: torchvision's
`Inception3` with 1008 classes and no auxiliary head, its average pools excluding padding and
Mixed_7c max-pooling (`FIDInceptionA/C/E_1/E_2`), written out here in plain `torch.nn` so the
test needs neither torchvision nor a download. Its parameter names are those of the FID weight
file, so the same `state_dict` goes through `inception_variables_from_torch` as a user's file
would. No pretrained weights exist on this machine: the weights are random, with batch-norm
statistics calibrated on a batch so that activations stay O(1) through the 94 layers (with
raw random statistics they would blow up or vanish and hide differences). Needs torch.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gax.metrics import features  # pylint: disable=g-import-not-at-top


class BasicConv2d(torch.nn.Module):

  def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
    super().__init__()
    self.conv = torch.nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
    self.bn = torch.nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x):
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(torch.nn.Module):

  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, 1)
    self.branch5x5_1 = BasicConv2d(cin, 48, 1)
    self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, 1)

  def forward(self, x):
    return torch.cat([
        self.branch1x1(x),
        self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionB(torch.nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

  def forward(self, x):
    return torch.cat([
        self.branch3x3(x),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(torch.nn.Module):

  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192, 1)
    self.branch7x7_1 = BasicConv2d(cin, c7, 1)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192, 1)

  def forward(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
      bd = layer(bd)
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(torch.nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, 1)
    self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

  def forward(self, x):
    b7 = self.branch7x7x3_1(x)
    for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
      b7 = layer(b7)
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                      F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(torch.nn.Module):

  def __init__(self, cin, max_pool):
    super().__init__()
    self.max_pool = max_pool
    self.branch1x1 = BasicConv2d(cin, 320, 1)
    self.branch3x3_1 = BasicConv2d(cin, 384, 1)
    self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192, 1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    # pytorch-fid's FIDInceptionE_2 (Mixed_7c) max-pools, FIDInceptionE_1 average-pools.
    pool = (F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool
            else _tf_avg_pool(x))
    return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pool)], 1)


class FIDInception(torch.nn.Module):

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
    self.Mixed_5b = InceptionA(192, 32)
    self.Mixed_5c = InceptionA(256, 64)
    self.Mixed_5d = InceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = InceptionC(768, 128)
    self.Mixed_6c = InceptionC(768, 160)
    self.Mixed_6d = InceptionC(768, 160)
    self.Mixed_6e = InceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = InceptionE(1280, max_pool=False)
    self.Mixed_7c = InceptionE(2048, max_pool=True)
    self.fc = torch.nn.Linear(2048, 1008)

  def forward(self, x):
    """x: [B, 3, H, W] in [-1, 1], resized as pytorch-fid does -> (pool3, logits)."""
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
      x = getattr(self, f"Mixed_{name}")(x)
    pool3 = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return pool3, self.fc(pool3)


@pytest.fixture(scope="module")
def reference():
  """(torch network in eval mode, its state_dict as NumPy, test images NHWC in [-1, 1])."""
  torch.manual_seed(0)
  net = FIDInception()
  gen = torch.Generator().manual_seed(1)
  calibration = torch.rand(4, 3, 64, 64, generator=gen) * 2 - 1
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.momentum = 1.0  # running statistics := those of the calibration batch
        m.weight.uniform_(0.5, 1.5, generator=gen)
        m.bias.uniform_(-0.2, 0.2, generator=gen)
    net.train()(calibration)
  net.eval()
  images = np.random.default_rng(2).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
  return net, state, images


def test_pool3_features_and_logits_match_the_pytorch_fid_network(reference):
  net, state, images = reference
  with torch.no_grad():
    want_pool3, want_logits = (t.numpy() for t in net(torch.from_numpy(images).permute(0, 3, 1, 2)))
  extractor = features.inception_v3_from_variables(
      features.inception_variables_from_torch(state), image_size=299)
  got_pool3, got_logits = (np.asarray(a) for a in extractor(images))
  assert got_pool3.shape == (3, 2048) and got_logits.shape == (3, 1008)
  # Not a degenerate comparison: the features vary between images and across units.
  assert want_pool3.std(axis=0).mean() > 1e-2 * np.abs(want_pool3).mean()
  scale = np.abs(want_pool3).max()
  np.testing.assert_allclose(got_pool3, want_pool3, rtol=1e-3, atol=1e-4 * scale)
  np.testing.assert_allclose(got_logits, want_logits, rtol=1e-3,
                             atol=1e-4 * np.abs(want_logits).max())


def test_uint8_images_are_scaled_as_pytorch_fid_scales_them(reference):
  # pytorch-fid takes [0, 1] floats and maps them to 2x - 1; gax takes uint8 in [0, 255].
  net, state, _ = reference
  u8 = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
  x01 = torch.from_numpy(u8.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
  with torch.no_grad():
    want, _ = net(2 * x01 - 1)
  extractor = features.inception_v3_from_variables(
      features.inception_variables_from_torch(state), image_size=299)
  got, _ = extractor(u8)
  np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-3,
                             atol=1e-4 * float(want.abs().max()))


def test_a_state_dict_with_a_missing_or_extra_entry_is_refused(reference):
  _, state, _ = reference
  missing = dict(state)
  del missing["Mixed_6b.branch7x7_2.conv.weight"]
  with pytest.raises(ValueError):
    features.inception_variables_from_torch(missing)
  with pytest.raises(ValueError, match="Unexpected entry"):
    features.inception_variables_from_torch({**state, "Mixed_6b.extra.weight": np.zeros(3)})
