"""`step_throughput.py --compare_torch`: the PyTorch DCGAN (benchmarks/torch_dcgan.py) and
SNGAN ResNet (benchmarks/torch_resnet.py) are gax's (same parameters; D gives the same logits
from the same weights) and the benchmark reports both speeds and their ratio. Needs torch (CI
installs the CPU build)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import step_throughput, torch_dcgan, torch_resnet  # pylint: disable=g-import-not-at-top
from gax.state import param_count  # pylint: disable=g-import-not-at-top
from gax.steps import apply_model, init_state  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("model,resolution", [("dcgan", 16), ("dcgan", 64), ("resnet", 8),
                                              ("resnet", 32)])
def test_same_parameter_counts_as_the_gax_models(model, resolution):
  gan = step_throughput.build_gan(model, resolution, "float32", 1)
  state = jax.eval_shape(lambda: init_state(gan, jax.random.PRNGKey(0),
                                            (resolution, resolution, 3)))
  ours = {"dcgan": torch_dcgan, "resnet": torch_resnet}[model].param_counts(resolution)
  assert ours == {"g": param_count(state.g.params), "d": param_count(state.d.params)}


def test_discriminator_gives_the_gax_logits_from_the_same_weights():
  gan = step_throughput.build_gan("dcgan", 16, "float32", 1)
  state = init_state(gan, jax.random.PRNGKey(1), (16, 16, 3))
  p = jax.tree_util.tree_map(np.array, jax.device_get(state.d.params))  # writable copies
  d = torch_dcgan.Discriminator(16)
  convs = [m for m in d.body if isinstance(m, torch.nn.Conv2d)]
  norms = [m for m in d.body if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for i, conv in enumerate(convs):  # flax HWIO -> torch OIHW
      conv.weight.copy_(torch.from_numpy(
          np.ascontiguousarray(np.transpose(p[f"Conv_{i}"]["kernel"], (3, 2, 0, 1)))))
      if conv.bias is not None:
        conv.bias.copy_(torch.from_numpy(p[f"Conv_{i}"]["bias"]))
    for i, bn in enumerate(norms):
      bn.weight.copy_(torch.from_numpy(p[f"BatchNorm_{i}"]["scale"]))
      bn.bias.copy_(torch.from_numpy(p[f"BatchNorm_{i}"]["bias"]))
  x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
  want, _ = apply_model(gan.discriminator, state.d.params, state.d.model_state, x, True)
  got = d.train()(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-4)


def _torch_conv(conv, p):
  with torch.no_grad():  # flax HWIO -> torch OIHW
    conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(p["kernel"],
                                                                         (3, 2, 0, 1)))))
    conv.bias.copy_(torch.from_numpy(p["bias"]))


def test_resnet_discriminator_gives_the_gax_logits_from_the_same_weights():
  # Without spectral norm on either side (gax applies it to the parameters in the step, not
  # in the module): the blocks, their pooling and shortcuts, the sum pooling and the head.
  gan = step_throughput.build_gan("resnet", 16, "float32", 1)
  state = init_state(gan, jax.random.PRNGKey(1), (16, 16, 3))
  p = jax.tree_util.tree_map(np.array, jax.device_get(state.d.params))
  d = torch_resnet.Discriminator(16, 128, spectral_norm=False)
  for i, block in enumerate(d.blocks):
    convs = [block.conv1, block.conv2] + ([block.shortcut] if block.shortcut else [])
    for j, conv in enumerate(convs):
      _torch_conv(conv, p[f"_DBlock_{i}"][f"Conv_{j}"])
  with torch.no_grad():
    d.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(p["Dense_0"]["kernel"].T)))
    d.fc.bias.copy_(torch.from_numpy(p["Dense_0"]["bias"]))
  x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  want, _ = apply_model(gan.discriminator, state.d.params, state.d.model_state, x, True)
  got = d(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-3)
  r = torch_dcgan.measure(2, "float32", resolution=8, warmup=1, iters=1, repeats=1,
                          make_step=torch_resnet.ResNetStep)
  assert all(np.isfinite(v) for v in r["losses"].values())


def test_measure_runs_both_dtypes_and_rejects_others():
  for dtype in ("float32", "bfloat16"):
    r = torch_dcgan.measure(4, dtype, resolution=8, n_critic=2, warmup=1, iters=1, repeats=2)
    assert r["img_per_sec"] == pytest.approx(4 / (r["ms_per_step"] / 1e3))
    assert all(np.isfinite(v) for v in r["losses"].values())
    assert r["device"].startswith("torch-")
  with pytest.raises(ValueError, match="float32 or bfloat16"):
    torch_dcgan.measure(4, "float16", resolution=8)


def test_compare_torch_flag_adds_the_ratio_to_the_table(tmp_path):
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "step_throughput.py"),
       "--models=dcgan,resnet",
       "--batch_sizes=4", "--dtypes=float32", "--resolution=8", "--warmup=1", "--iters=1",
       "--repeats=1", "--compare_torch", f"--out_dir={tmp_path}"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  results = json.load(open(tmp_path / "step_throughput.json"))["results"]
  assert [r["model"] for r in results] == ["dcgan", "resnet"]
  table = (tmp_path / "step_throughput.md").read_text()
  assert "| PyTorch img/s | gax / PyTorch |" in table
  for res in results:
    assert res["torch_img_per_sec"] > 0
    assert res["torch_ratio"] == pytest.approx(res["img_per_sec"] / res["torch_img_per_sec"])
    assert f"{res['torch_ratio']:.2f}x |" in table
