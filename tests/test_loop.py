"""`gax.fit`, the one training loop: own modules, any data, callbacks, averaged metrics,
exact resume, pmap == one device; and the public API."""

import dataclasses
import importlib
import json
import os
import pkgutil
import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gax
from gax import data, losses, parallel
from gax.steps import GAN, init_state, jit_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, Z = 16, 4


class G(nn.Module):
  @nn.compact
  def __call__(self, z, train: bool = True):
    return nn.Dense(2)(nn.relu(nn.Dense(16)(z)))


class D(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = True):
    return nn.Dense(1)(nn.leaky_relu(nn.Dense(16)(x), 0.2))[:, 0]


@dataclasses.dataclass(frozen=True)
class StepProbe(gax.Hook):
  """Emits the step as a state snapshot (`probe_step`) and as a plain metric (`probe_mean`),
  from the D side."""
  name: str = "probe"
  state_metrics = ("probe_step",)

  def d_objective(self, st, loss, view, ctx):
    s = jnp.asarray(ctx.step, jnp.float32)
    return loss, {"probe_step": s, "probe_mean": s, "probe_real": jnp.mean(view.real_logits)}, st


def _gan(axis_name=None):
  return GAN(G(), D(), losses.get_loss("non_saturating"), optax.adam(1e-3, 0.5),
             optax.adam(1e-3, 0.5), latent_dim=Z, hooks=(StepProbe(),), axis_name=axis_name)


def _state(gan):
  return init_state(gan, jax.random.PRNGKey(0), (2,))


def _records(workdir, name="metrics.jsonl", drop=("steps_per_sec", "elapsed_sec")):
  with open(os.path.join(workdir, name)) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in f]


SOURCE = data.ring(B)


class Recorder(gax.Callback):
  every = 2

  def __init__(self):
    self.calls = []

  def on_start(self, step, state):
    self.calls.append(("start", step, int(state.step)))

  def on_step(self, step, state):
    self.calls.append(("step", step, int(state.step)))

  def on_log(self, step, record):
    self.calls.append(("log", step, record["step"]))

  def on_evaluate(self, step, result):
    self.calls.append(("evaluate", step, result["modes"]))

  def on_end(self, step, state):
    self.calls.append(("end", step, int(state.step)))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fit"))
  gan = _gan()
  recorder = Recorder()
  evaluator = gax.ModeCoverageEvaluator(gax.EvalSettings(best_metric="modes_covered"), SOURCE)
  state = gax.fit(gan, _state(gan), SOURCE, 6, workdir=workdir, log_every=3,
                  checkpoint_every=3, evaluator=evaluator, eval_every=6,
                  callbacks=[recorder, gax.SampleGrid(gan, os.path.join(workdir, "s"), 3, 8)])
  return workdir, state, recorder


def test_fit_trains_own_modules_and_writes_the_run(straight):
  workdir, state, recorder = straight
  assert int(state.step) == 6
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  assert [r["step"] for r in _records(workdir)] == [3, 6]
  assert [r["step"] for r in _records(workdir, "eval.jsonl")] == [6]
  assert os.listdir(os.path.join(workdir, "best")) == ["6"]
  assert sorted(os.listdir(os.path.join(workdir, "s"))) == ["step_0000003.png",
                                                           "step_0000006.png"]
  assert recorder.calls == [("start", 0, 0), ("step", 2, 2), ("log", 3, 3), ("step", 4, 4),
                            ("log", 6, 6), ("step", 6, 6), ("evaluate", 6, 8), ("end", 6, 6)]


def test_logged_metrics_are_means_over_the_steps_since_the_last_log(straight):
  """Against the bare jitted step run by hand: every metric is the mean of its 3 steps,
  but a hook's `state_metrics` are the newest step's."""
  workdir, _, _ = straight
  gan = _gan()
  step = jit_train_step(gan)
  state = _state(gan)
  per_step = []
  for i in range(6):
    state, m = step(state, SOURCE.get(i))
    per_step.append({k: float(v) for k, v in m.items()})
  for record, window in zip(_records(workdir), (per_step[:3], per_step[3:])):
    for k, v in record.items():
      if k == "step":
        continue
      want = window[-1][k] if k == "probe_step" else np.mean([w[k] for w in window])
      np.testing.assert_allclose(v, want, rtol=1e-5, atol=1e-6, err_msg=k)
  assert [r["probe_step"] for r in _records(workdir)] == [2.0, 5.0]
  assert [r["probe_mean"] for r in _records(workdir)] == [1.0, 4.0]


def test_fit_resumes_exactly_from_its_checkpoint(straight, tmp_path):
  workdir, state, _ = straight
  gan = _gan()
  evaluator = gax.ModeCoverageEvaluator(gax.EvalSettings(best_metric="modes_covered"), SOURCE)
  kw = dict(workdir=str(tmp_path), log_every=3, checkpoint_every=3, evaluator=evaluator,
            eval_every=6)
  class Crash(gax.Callback):
    every = 4

    def on_step(self, step, state):
      raise RuntimeError("crash")

  with pytest.raises(RuntimeError, match="crash"):
    gax.fit(gan, _state(gan), SOURCE, 6, callbacks=[Crash()], **kw)
  assert [r["step"] for r in _records(str(tmp_path))] == [3]
  # A fresh template: the state comes from the checkpoint of step 3.
  resumed = gax.fit(gan, _state(gan), SOURCE, 6, **kw)
  assert int(resumed.step) == 6
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed, state)
  assert _records(str(tmp_path)) == _records(workdir)
  assert _records(str(tmp_path), "eval.jsonl") == _records(workdir, "eval.jsonl")


def test_fit_takes_a_callable_or_an_iterator_of_batches(straight):
  _, state, _ = straight
  gan = _gan()
  by_call = gax.fit(gan, _state(gan), SOURCE.get, 6, log_every=0)
  by_iter = gax.fit(gan, _state(gan), (SOURCE.get(i) for i in range(6)), 6, log_every=0)
  for s in (by_call, by_iter):
    jax.tree_util.tree_map(np.testing.assert_array_equal, s, state)
  with pytest.raises(ValueError, match="ran out before step 3"):
    gax.fit(gan, _state(gan), [SOURCE.get(0), SOURCE.get(1)], 6)


def test_fit_under_pmap_equals_one_device(straight):
  _, state, _ = straight
  assert jax.local_device_count() == 4
  pgan = _gan(axis_name=parallel.DEFAULT_AXIS)
  out = gax.fit(pgan, _state(_gan()), SOURCE, 6, log_every=0, parallel_mode="pmap")
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         out, state)


@flax.struct.dataclass
class _Running:
  """A model that is not a GAN: the running sum of its batches' means."""
  step: jax.Array
  total: jax.Array


@jax.jit
def _running_step(state, batch):
  mean = jnp.mean(batch)
  return state.replace(step=state.step + 1, total=state.total + mean), {"mean": mean}


def test_fit_runs_a_given_train_step_on_any_state(tmp_path):
  # fit(train_step=...) (the VAE-GAN launcher's path): logging, checkpoints and the exact
  # resume of a state that is not a GANState; the sum is checked against NumPy's.
  start = _Running(step=jnp.zeros((), jnp.int32), total=jnp.zeros(()))
  kw = dict(workdir=str(tmp_path), log_every=2, checkpoint_every=2, train_step=_running_step)
  half = gax.fit(None, start, SOURCE, 4, **kw)
  assert int(half.step) == 4
  full = gax.fit(None, start, SOURCE, 6, **kw)  # resumes from step 4's checkpoint
  want = [np.mean(np.asarray(SOURCE.get(i))) for i in range(6)]
  np.testing.assert_allclose(float(full.total), np.sum(want), rtol=1e-5)
  recs = _records(str(tmp_path))
  assert [r["step"] for r in recs] == [2, 4, 6]
  np.testing.assert_allclose([r["mean"] for r in recs],
                             [np.mean(want[i:i + 2]) for i in (0, 2, 4)], rtol=1e-5)
  for bad in (dict(parallel_mode="pmap"), dict(evaluator=object())):
    with pytest.raises(ValueError, match="train_step runs on one device"):
      gax.fit(None, start, SOURCE, 2, train_step=_running_step, **bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(parallel_mode="gpu"), "parallel_mode must be one of"),
    (dict(checkpoint_every=2), "needs a workdir"),
    (dict(eval_every=2), "needs an evaluator"),
    (dict(log_every=-1), "log_every must be an integer >= 0"),
    (dict(on_corrupt_checkpoint="skip"), "on_corrupt_checkpoint must be one of"),
    (dict(parallel_mode="pmap"), "axis_name"),
])
def test_fit_refuses_bad_arguments(kwargs, match):
  gan = _gan()
  with pytest.raises(ValueError, match=match):
    gax.fit(gan, _state(gan), SOURCE, 2, **kwargs)
  with pytest.raises(TypeError, match="data must be"):
    gax.fit(gan, _state(gan), 3, 2)


def test_the_public_names_import_and_every_module_declares_all():
  for name in gax.__all__:
    assert getattr(gax, name) is not None, name
  for m in pkgutil.walk_packages(gax.__path__, "gax."):
    mod = importlib.import_module(m.name)
    assert hasattr(mod, "__all__"), m.name
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, (m.name, missing)
    # Nothing private, and no re-exported typing or JAX names.
    assert not [n for n in mod.__all__ if n.startswith("_") or n in ("Array", "Any", "jax")]


def test_readme_library_names_are_public():
  """Every `gax.<name>` the README's library section uses is in `gax.__all__` or a module's
  `__all__`."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  section = text[text.index("## Using gax as a library"):]
  section = section[:section.index("\n## ", 3)]
  used = set(re.findall(r"\bgax\.([a-z_]+)\.([A-Za-z_]+)", section))
  for module, name in used:
    mod = importlib.import_module(f"gax.{module}")
    assert name in mod.__all__, f"gax.{module}.{name}"
  top = set(re.findall(r"\bgax\.([A-Za-z][A-Za-z_]*)\b(?!\.)", section))
  assert top and top <= set(gax.__all__), top - set(gax.__all__)


def _readme_library_block():
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  section = text[text.index("## Using gax as a library"):]
  start = section.index("```python\n") + len("```python\n")
  return section[start:section.index("\n```", start)]


def test_the_readme_library_run_trains_samples_and_evaluates(tmp_path, monkeypatch, capsys):
  """README's complete custom-model run, as written: own modules, `gax.fit` with checkpoints,
  evaluation, monitor and sample grids, sampling from the EMA, evaluation."""
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(_readme_library_block(), "README.md", "exec"), namespace)  # pylint: disable=exec-used
  run = tmp_path / "runs" / "library"
  assert [r["step"] for r in _records(str(run))] == list(range(200, 2001, 200))
  assert sorted(os.listdir(run / "checkpoints")) == ["1000", "2000"]
  assert sorted(os.listdir(run / "samples")) == ["step_0001000.png", "step_0002000.png"]
  evals = _records(str(run), "eval.jsonl")
  assert [e["step"] for e in evals] == [1000, 2000]
  assert namespace["points"].shape == (2500, 2)
  state, gan = namespace["state"], namespace["gan"]
  # The samples come from the EMA weights, not the raw ones.
  ema = gax.transforms.find_ema_params(state.g.opt_state)
  assert not np.allclose(jax.tree_util.tree_leaves(ema)[0],
                         jax.tree_util.tree_leaves(state.g.params)[0])
  want = gax.sample(gan, state.replace(g=state.g.replace(params=ema)), jax.random.PRNGKey(1),
                    2500)
  np.testing.assert_allclose(namespace["points"], want, rtol=1e-6)
  covered = int(capsys.readouterr().out.split()[0])
  assert covered == evals[-1]["modes_covered"] and covered >= 4  # 6 on the dev machine
