"""End to end: the trainer and the absl launchers on tiny configs."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gax import trainer
from gax.builders import base_config
from gax.checkpoint import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ring_config(**train):
  c = base_config()
  c.data = {"name": "ring", "batch_size": 32}
  c.model = {"name": "mlp", "g_hidden": (16,), "d_hidden": (16,)}
  c.latent.dim = 4
  c.train.update({**dict(steps=12, log_every=1, sample_every=6, checkpoint_every=6,
                         num_samples=16), **train})
  return c


def read_jsonl(path, drop=("steps_per_sec", "elapsed_sec")):
  with open(path) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in f]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  state = trainer.train(ring_config(), workdir)
  return workdir, state


def test_a_run_writes_checkpoints_metrics_samples_and_evaluations(straight_run):
  workdir, state = straight_run
  assert int(state.step) == 12
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6"]
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == list(range(1, 13))
  assert {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm"} <= set(records[0])
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_0000006.png",
                                                                  "step_0000012.png"]
  evals = read_jsonl(os.path.join(workdir, "eval.jsonl"))
  assert [e["step"] for e in evals] == [6, 12] and evals[0]["modes"] == 8
  assert all(e["num_samples"] == 2500 for e in evals)
  # The best checkpoint by modes covered (higher is better; a tie keeps the earlier step).
  covered = [e["modes_covered"] for e in evals]
  with open(os.path.join(workdir, "best.json")) as f:
    best = json.load(f)
  assert (best["metric"], best["direction"]) == ("modes_covered", "max")
  assert (best["step"], best["value"]) == (evals[int(np.argmax(covered))]["step"], max(covered))
  assert os.listdir(os.path.join(workdir, "best")) == [str(best["step"])]


def test_resuming_gives_exactly_the_losses_of_an_uninterrupted_run(straight_run, tmp_path):
  workdir = str(tmp_path)
  trainer.train(ring_config(steps=6), workdir)
  # A crash after step 6's checkpoint may have logged steps 7-8: they are redone.
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"step": 7, "d_loss": -1.0}) + "\n")
  # ... and to TensorBoard: the resumed file's purge drops them.
  import tensorboardX  # pylint: disable=g-import-not-at-top
  with tensorboardX.SummaryWriter(workdir, filename_suffix=".crashed") as w:
    w.add_scalar("train/d_loss", -1.0, 7)
  state = trainer.train(ring_config(steps=12), workdir)
  assert int(state.step) == 12
  events = _tensorboard(workdir).Scalars("train/d_loss")
  straight = _tensorboard(straight_run[0]).Scalars("train/d_loss")
  assert [(e.step, e.value) for e in events] == [(e.step, e.value) for e in straight]
  for name in ("metrics.jsonl", "eval.jsonl"):
    assert read_jsonl(os.path.join(workdir, name)) == read_jsonl(
        os.path.join(straight_run[0], name)), name
  with open(os.path.join(workdir, "best.json")) as f, open(
      os.path.join(straight_run[0], "best.json")) as g:
    assert json.load(f) == json.load(g)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state, straight_run[1])


def _tensorboard(workdir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"images": 0, "scalars": 0,
                                                                   "tensors": 0})
  acc.Reload()
  return acc


def test_tensorboard_files_hold_every_metric_evaluation_and_grid(straight_run):
  workdir = straight_run[0]
  acc = _tensorboard(workdir)
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  for key in ("d_loss", "g_loss", "d_grad_norm"):
    events = acc.Scalars(f"train/{key}")
    assert [e.step for e in events] == [r["step"] for r in records]
    np.testing.assert_allclose([e.value for e in events], [r[key] for r in records], rtol=1e-6)
  evals = read_jsonl(os.path.join(workdir, "eval.jsonl"))
  assert [(e.step, e.value) for e in acc.Scalars("eval/modes_covered")] == [
      (r["step"], r["modes_covered"]) for r in evals]
  assert [e.step for e in acc.Images("samples")] == [6, 12]
  assert "config" in " ".join(acc.Tags()["tensors"])


@pytest.mark.parametrize("mode", ["pmap", "mesh"])
def test_data_parallel_training_matches_single_device_training(straight_run, tmp_path, mode):
  c = ring_config(steps=4)
  c.parallel = mode
  trainer.train(c, str(tmp_path))
  mapped = read_jsonl(os.path.join(tmp_path, "metrics.jsonl"))
  single = read_jsonl(os.path.join(straight_run[0], "metrics.jsonl"))[:4]
  for a, b in zip(mapped, single):
    for k in a:
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_a_workdir_of_another_config_is_refused(straight_run):
  c = ring_config()
  c.loss = "hinge"
  with pytest.raises(trainer.WorkdirConfigMismatch, match="loss: 'non_saturating' -> 'hinge'"):
    trainer.train(c, straight_run[0])


def test_a_corrupt_checkpoint_is_an_error_that_names_it(tmp_path):
  workdir = str(tmp_path)
  trainer.train(ring_config(steps=6, checkpoint_every=3), workdir)
  step_dir = os.path.join(workdir, "checkpoints", "6")
  for root, _, files in os.walk(step_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  with pytest.raises(CheckpointError, match=r"step 6.*corrupt.*resume from step 3"):
    trainer.train(ring_config(steps=12), workdir)


def test_a_monitor_alarm_is_logged_and_can_stop_the_run(tmp_path):
  from gax.monitor import MonitorStop  # pylint: disable=g-import-not-at-top
  c = ring_config(steps=4)
  c.monitor.grad_norm_max = 1e-9  # every gradient "explodes"
  c.monitor.stop_on = ("exploding_gradients",)
  with pytest.raises(MonitorStop, match="exploding_gradients"):
    trainer.train(c, str(tmp_path))
  alarms = read_jsonl(tmp_path / "alarms.jsonl")
  assert [(a["kind"], a["step"]) for a in alarms] == [("exploding_gradients", 1)]
  assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1]


def test_an_evaluation_with_few_modes_raises_the_mode_collapse_alarm(tmp_path):
  from gax.monitor import MonitorStop  # pylint: disable=g-import-not-at-top
  c = ring_config(steps=4, sample_every=2)
  c.monitor.mode_collapse_fraction = 1.0  # fewer than all 8 modes counts as collapse
  c.monitor.stop_on = ("mode_collapse",)
  with pytest.raises(MonitorStop, match="mode_collapse"):
    trainer.train(c, str(tmp_path))
  [record] = read_jsonl(tmp_path / "eval.jsonl")
  assert record["step"] == 2 and record["modes_covered"] < 8  # 2 steps cover few modes
  [alarm] = read_jsonl(tmp_path / "alarms.jsonl")
  assert (alarm["kind"], alarm["step"]) == ("mode_collapse", 2)
  assert alarm["values"]["modes_covered"] == record["modes_covered"]


def test_bad_config_values_are_clear_errors(tmp_path):
  c = ring_config()
  c.parallel = "tpu_magic"
  with pytest.raises(ValueError, match="config.parallel"):
    trainer.train(c, str(tmp_path))
  c = ring_config()
  c.loss = "wgan"
  with pytest.raises(KeyError, match="Unknown loss 'wgan'"):
    trainer.train(c, str(tmp_path))
  c = ring_config()
  c.optimizer.d.learning_rate = -1.0
  with pytest.raises(ValueError, match="positive learning_rate"):
    trainer.train(c, str(tmp_path))


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_a_warm_start_takes_every_array_of_the_source_but_the_step(straight_run):
  c = ring_config()
  fresh = jax.eval_shape(lambda: trainer.builders.build_state(
      trainer.builders.build_gan(c, (2,)), c, (2,)))
  fresh = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), fresh)
  state, summary = trainer.warm_start(fresh, c, straight_run[0], step=6)
  source = _flat(trainer.restore_run(straight_run[0], step=6)[2])
  got = _flat(state)
  assert set(got) == set(source) and summary["fresh"] == [".step"]
  assert summary["step"] == 6 and summary["taken"] == len(source) - 1
  assert int(got[".step"]) == 0 and int(source[".step"]) == 6
  for k in source:
    if k != ".step":
      np.testing.assert_array_equal(got[k], source[k], err_msg=k)


def test_a_warm_start_into_a_learning_rate_schedule_continues_adam(straight_run, tmp_path):
  """The constant-rate run's Adam moments and count carry over; the schedule's own count is
  new, so the decay starts with the warm-started run."""
  c = ring_config(steps=6, init_from=straight_run[0], init_from_step=12)
  for player in ("g", "d"):
    c.optimizer[player].update(schedule="linear", decay_steps=6)
  warnings = []
  with pytest.MonkeyPatch.context() as m:
    m.setattr(trainer.logging, "warning", lambda msg, *a: warnings.append(msg % a))
    state = trainer.train(c, str(tmp_path))
  assert not [w for w in warnings if "no matching state" in w]  # a schedule count may start fresh
  with open(tmp_path / trainer.INIT_FROM_FILE) as f:
    summary = json.load(f)
  assert summary["step"] == 12 and summary["workdir"] == os.path.abspath(straight_run[0])
  assert sorted(summary["fresh"]) == [".d.opt_state[1].count", ".g.opt_state[1].count",
                                      ".step"]
  got = _flat(state)
  assert int(got[".step"]) == 6
  for player in ("g", "d"):
    assert int(got[f".{player}.opt_state[0].count"]) == 18  # 12 updates before, 6 now
    assert int(got[f".{player}.opt_state[1].count"]) == 6
  # The warm-started run resumes from its own checkpoints, not from the source again.
  assert int(trainer.train(c.copy_and_resolve_references(), str(tmp_path)).step) == 6


def test_a_warm_start_from_other_networks_or_nowhere_is_refused(straight_run, tmp_path):
  c = ring_config(init_from=straight_run[0])
  c.model.g_hidden = (8,)
  with pytest.raises(ValueError, match=r"networks differ .* \.g\.params.*\(16,\) -> "):
    trainer.train(c, str(tmp_path / "wider"))
  c = ring_config(init_from=str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match="No work directory"):
    trainer.train(c, str(tmp_path / "nowhere"))
  for key, value, match in (("init_from", None, "init_from must be a work directory"),
                            ("init_from_step", -2, "init_from_step must be an integer >= -1")):
    c = ring_config(**{key: value})
    with pytest.raises(ValueError, match=match):
      trainer.train(c, str(tmp_path / "bad"))


def test_a_warm_start_into_a_trick_the_source_lacks_warns(straight_run, tmp_path,
                                                            monkeypatch):
  warnings = []
  monkeypatch.setattr(trainer.logging, "warning", lambda msg, *a: warnings.append(msg % a))
  c = ring_config(steps=1, sample_every=0, init_from=straight_run[0])
  c.tricks.g_ema.enabled = True
  trainer.train(c, str(tmp_path))
  with open(tmp_path / trainer.INIT_FROM_FILE) as f:
    fresh = json.load(f)["fresh"]
  assert ".g.opt_state[1].ema['Dense_0']['kernel']" in fresh  # the EMA is G's optimizer's
  assert any("no matching state" in w and "EMA of G" in w for w in warnings)


def test_a_warm_start_with_another_optimizer_keeps_its_state_fresh(straight_run):
  c = ring_config()
  c.optimizer.d = {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}
  gan = trainer.builders.build_gan(c, (2,))
  state, summary = trainer.warm_start(trainer.builders.build_state(gan, c, (2,)), c,
                                      straight_run[0])
  assert summary["step"] == 12
  assert summary["fresh"] == [".step"] + [k for k in _flat(state) if k.startswith(
      ".d.opt_state")]
  assert summary["fresh"][1:]  # SGD with momentum has a trace to keep fresh
  np.testing.assert_array_equal(_flat(state)[".key"], _flat(
      trainer.restore_run(straight_run[0])[2])[".key"])


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_launchers_train_digits_dcgan_and_sample_it(tmp_path):
  workdir = str(tmp_path / "digits")
  r = _run("train.py", "--config=experiments/configs/dcgan_digits.py", f"--workdir={workdir}",
           "--config.train.steps=2", "--config.train.log_every=1", "--config.model.width=4",
           "--config.data.batch_size=8", "--config.data.image_size=8",
           "--config.eval.every=-1")  # no FID here (tests/test_evaluate.py)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "step 2/2 (100%)" in r.stderr and "ETA" in r.stderr
  assert os.path.exists(os.path.join(workdir, "samples", "step_0000002.png"))
  out = str(tmp_path / "s.npy")
  r = _run("sample.py", f"--workdir={workdir}", "--num=10", f"--out={out}", "--seed=1")
  assert r.returncode == 0, r.stderr[-3000:]
  x = np.load(out)
  assert x.shape == (10, 8, 8, 1) and x.dtype == np.float32
  assert np.all(np.abs(x) <= 1.0)


def test_sample_writes_2d_points(straight_run, tmp_path):
  out = str(tmp_path / "p.npy")
  r = _run("sample.py", f"--workdir={straight_run[0]}", "--num=7", f"--out={out}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert np.load(out).shape == (7, 2)
  # --drs: the points gax.rejection keeps with the same key and settings.
  from gax import rejection  # pylint: disable=g-import-not-at-top
  r = _run("sample.py", f"--workdir={straight_run[0]}", "--num=50", f"--out={out}", "--drs",
           "--drs_percentile=50", "--seed=3")
  assert r.returncode == 0, r.stderr[-3000:]
  _, gan, state = trainer.restore_run(straight_run[0])
  want = rejection.rejection_sample(gan, state, jax.random.PRNGKey(3), 50, percentile=50.0)
  np.testing.assert_array_equal(np.load(out), want.samples)
  assert "DRS kept" in r.stderr


def test_unknown_config_key_on_the_command_line_fails(tmp_path):
  r = _run("train.py", "--config=experiments/configs/ring.py", f"--workdir={tmp_path}",
           "--config.train.stepz=5")
  assert r.returncode != 0
  assert "stepz" in r.stderr


@pytest.mark.parametrize("name", ["ring", "grid", "dcgan_digits", "dcgan_digits_sn", "acgan_digits",
                                  "cgan_digits", "dcgan_stacked_digits", "dcgan_mnist",
                                  "dcgan_stacked_mnist"])
def test_shipped_configs_build(name):
  import importlib  # pylint: disable=g-import-not-at-top
  from gax import builders  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  builders.validate_config(config)
  source = builders.build_data(config)
  gan = builders.build_gan(config, source.element_shape)
  state = jax.eval_shape(lambda: builders.build_state(gan, config, source.element_shape))
  assert state.step.shape == ()
  batch = source.get(0)
  if source.num_classes:  # a labelled source: {"x": examples, "y": labels}
    assert batch["y"].shape == (config.n_critic, config.data.batch_size)
    assert gan.num_classes == source.num_classes
    batch = batch["x"]
  assert batch.shape == (config.n_critic, config.data.batch_size, *source.element_shape)


def test_evaluating_a_ring_run_with_discriminator_rejection_sampling(straight_run):
  from experiments import evaluate as evaluate_script  # pylint: disable=g-import-not-at-top
  from gax import builders, evaluation, rejection  # pylint: disable=g-import-not-at-top
  from gax.metrics import mode_coverage  # pylint: disable=g-import-not-at-top
  workdir, state = straight_run
  [rec] = evaluate_script.evaluate_run(workdir, drs=True, drs_percentile=80.0,
                                       out_file="eval_drs.jsonl")
  # The same draws, made independently of the evaluator, score the same.
  _, gan, _ = trainer.load_run(workdir)
  key = jax.random.fold_in(jax.random.PRNGKey(0), 1)
  drs = rejection.rejection_sample(gan, state, key, 2500, burn_in=10000, percentile=80.0)
  source = builders.build_data(trainer.load_config(workdir))
  want = mode_coverage(drs.samples, source.centers, source.std)
  assert rec["drs_counts"] == want["counts"]
  assert rec["drs_hq_fraction"] == pytest.approx(want["hq_fraction"])
  assert rec["drs_acceptance"] == pytest.approx(drs.acceptance)
  assert 0.0 < rec["drs_acceptance"] < 1.0
  # Without DRS the record is the trainer's own.
  with open(os.path.join(workdir, "eval.jsonl")) as f:
    last = json.loads(f.readlines()[-1])
  assert rec["hq_fraction"] == last["hq_fraction"] and rec["counts"] == last["counts"]
  # Too few samples accepted: the evaluation records the error instead of stopping a run.
  evaluator = evaluation.Evaluator.from_config(
      trainer.load_config(workdir), source, workdir, drs=True, drs_gamma=60.0,
      drs_max_draws=3000, drs_burn_in=100)
  failed = evaluator.evaluate(gan, state)
  assert "accepted 0 of 2500" in failed["drs_error"] and np.isnan(failed["drs_hq_fraction"])
  assert "DRS failed: Rejection sampling accepted 0" in evaluator.describe(failed)
  assert "DRS (acceptance" in evaluator.describe(rec)
  assert failed["hq_fraction"] == last["hq_fraction"]
  # DRS needs a log-ratio discriminator, and gamma and the percentile exclude each other.
  c = ring_config()
  c.loss = "hinge"
  c.eval.drs = True
  with pytest.raises(ValueError, match="log p_data / p_g"):
    evaluation.Evaluator.from_config(c, source, workdir)
  with pytest.raises(ValueError, match="set one of them"):
    evaluation.EvalSettings.from_config({"drs": True, "drs_gamma": 1.0, "drs_percentile": 5})
  with pytest.raises(ValueError, match="not computed"):
    evaluation.Evaluator.from_config(ring_config(), source, workdir,
                                     best_metric="drs_hq_fraction")


def test_drs_with_a_calibrated_discriminator_is_reproduced_independently(straight_run):
  from gax import builders, evaluation, rejection  # pylint: disable=g-import-not-at-top
  from gax.metrics import mode_coverage  # pylint: disable=g-import-not-at-top
  workdir, state = straight_run
  [rec] = trainer.evaluate_run(workdir, drs=True, drs_percentile=50.0, drs_calibrate_steps=30,
                               drs_calibrate_lr=1e-3, out_file="eval_drs_c30.jsonl")
  _, gan, _ = trainer.load_run(workdir)
  source = builders.build_data(trainer.load_config(workdir))
  key = jax.random.PRNGKey(0)  # config.eval.seed
  real = lambda i: source.sample(np.random.default_rng([0, 1, i]), 500)
  calibrated, loss = rejection.calibrate_discriminator(
      gan, state, real, jax.random.fold_in(key, 2), steps=30, batch_size=500,
      learning_rate=1e-3)
  drs = rejection.rejection_sample(gan, calibrated, jax.random.fold_in(key, 1), 2500,
                                   percentile=50.0)
  assert rec["drs_counts"] == mode_coverage(drs.samples, source.centers, source.std)["counts"]
  assert rec["drs_acceptance"] == pytest.approx(drs.acceptance)
  assert rec["drs_calibration_loss_start"] == pytest.approx(loss.mean(), rel=1e-6)
  assert rec["drs_calibration_loss_end"] == pytest.approx(loss.mean(), rel=1e-6)
  # The calibrated D is not the run's: DRS without calibration keeps other samples.
  plain = rejection.rejection_sample(gan, state, jax.random.fold_in(key, 1), 2500,
                                     percentile=50.0)
  assert not np.array_equal(plain.samples, drs.samples)
  evaluator = evaluation.Evaluator.from_config(trainer.load_config(workdir), source, workdir,
                                               drs=True)
  assert "D calibrated (loss " in evaluator.describe(rec)
  with pytest.raises(ValueError, match="needs config.eval.drs=True"):
    evaluation.EvalSettings.from_config({"drs_calibrate_steps": 10})
  with pytest.raises(ValueError, match="drs_calibrate_lr must be a positive"):
    evaluation.EvalSettings.from_config({"drs": True, "drs_calibrate_lr": -1.0})
