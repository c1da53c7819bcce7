"""Evaluation during training and from checkpoints (gax.evaluation, experiments/evaluate.py):
FID records and the best checkpoint of a tiny digits run, reproduced offline; the best record
across a resume; clear errors. (Mode coverage and the best checkpoint by modes_covered of a ring
run: tests/test_train.py, on its existing run.)"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import evaluate as evaluate_script
from experiments.configs import dcgan_digits
from gax import builders, evaluation, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def digits_config(steps=6, **eval_options):
  c = dcgan_digits.get_config()
  c.data.image_size = 8
  c.data.batch_size = 8
  c.model.width = 4
  c.train.update(steps=steps, log_every=steps, sample_every=0, checkpoint_every=2,
                 keep_checkpoints=10, num_samples=4)
  c.eval.update({**dict(every=2, num_samples=100, classifier_steps=20,
                       metrics=("fid", "kid", "is", "pr", "dc")), **eval_options})
  return c


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("digits"))
  trainer.train(digits_config(), workdir)
  return workdir


def test_training_evaluates_fid_and_keeps_the_best_checkpoint(digits_run):
  records = read_jsonl(os.path.join(digits_run, "eval.jsonl"))
  assert [r["step"] for r in records] == [2, 4, 6]
  for r in records:
    assert {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density",
            "coverage"} <= set(r)
    assert 0 <= r["coverage"] <= 1 and r["density"] >= 0
    assert r["num_samples"] == 100 and r["features"] == "classifier:digits8"
    assert np.isfinite(r["fid"]) and r["fid"] > 0 and 1.0 <= r["is"] <= 10.0
  for name in ("eval_classifier.npz", "eval_reference_classifier.npz"):
    assert os.path.isfile(os.path.join(digits_run, name)), name
  fids = [r["fid"] for r in records]
  best = evaluation.read_best(digits_run)
  want = records[int(np.argmin(fids))]["step"]
  assert (best["metric"], best["step"], best["direction"]) == ("fid", want, "min")
  assert best["value"] == min(fids)
  assert os.listdir(os.path.join(digits_run, "best")) == [str(want)]
  _, _, from_best = trainer.restore_run(digits_run, best=True)
  _, _, regular = trainer.restore_run(digits_run, step=want)
  assert int(from_best.step) == want
  jax.tree_util.tree_map(np.testing.assert_array_equal, from_best, regular)


def test_evaluate_script_reproduces_the_trainers_records(digits_run):
  r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "evaluate.py"),
                      f"--workdir={digits_run}", "--all_steps"],
                     capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "fid" in r.stdout and "precision" in r.stdout  # the table
  online = read_jsonl(os.path.join(digits_run, "eval.jsonl"))
  offline = read_jsonl(os.path.join(digits_run, "eval_offline.jsonl"))
  assert [o["step"] for o in offline] == [2, 4, 6]
  for a, b in zip(online, offline):
    for k in ("fid", "kid", "is", "precision", "recall"):
      np.testing.assert_allclose(b[k], a[k], rtol=1e-6, err_msg=k)
    assert b["checkpoint"] == "checkpoints" and b["num_samples"] == a["num_samples"]


def test_evaluating_the_best_checkpoint_in_process_with_other_settings(digits_run):
  best = evaluation.read_best(digits_run)
  [rec] = evaluate_script.evaluate_run(digits_run, best=True, out_file="eval_test.jsonl")
  assert (rec["step"], rec["checkpoint"]) == (best["step"], "best")
  assert rec["fid"] == pytest.approx(best["value"], rel=1e-6)
  [other] = evaluate_script.evaluate_run(digits_run, step=2, num_samples=50, metrics=["fid"],
                                         seed=1, out_file="eval_test.jsonl")
  assert other["num_samples"] == 50 and "kid" not in other
  assert len(read_jsonl(os.path.join(digits_run, "eval_test.jsonl"))) == 2
  table = evaluate_script.format_table([rec, other])
  assert table.splitlines()[0].split()[:3] == ["step", "checkpoint", "fid"]


def test_evaluating_at_truncation_thresholds_for_the_curve(digits_run):
  records = evaluate_script.evaluate_run(digits_run, step=6, num_samples=50, metrics=["fid"],
                                         truncations=(None, 1.0, 0.25),
                                         out_file="eval_trunc.jsonl")
  assert [r.get("truncation") for r in records] == [None, 1.0, 0.25]
  # Untruncated: the same FID as without the option.
  [again] = evaluate_script.evaluate_run(digits_run, step=6, num_samples=50, metrics=["fid"],
                                         out_file="eval_trunc.jsonl")
  assert records[0]["fid"] == pytest.approx(again["fid"], rel=1e-6)
  # Different latents, different scores.
  assert len({round(r["fid"], 6) for r in records}) == 3
  assert "truncation" in evaluate_script.format_table(records).splitlines()[0]


def test_a_resumed_run_chooses_the_best_as_the_uninterrupted_run_did(digits_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(digits_run, workdir)
  for name in ("eval_offline.jsonl", "eval_test.jsonl"):
    if os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))
  # A crash after step 6's evaluation, before the checkpoints of steps 4 and 6 were written:
  # the run resumes from step 2, drops the later records and redoes them; best.json (of step
  # 4 or 6, probably) stays until the redone evaluation rewrites it. Evaluation settings may
  # change on resume: here the classifier file moves.
  for step in ("4", "6"):
    shutil.rmtree(os.path.join(workdir, "checkpoints", step))
  shared = str(tmp_path / "shared_classifier.npz")
  shutil.move(os.path.join(workdir, "eval_classifier.npz"), shared)
  trainer.train(digits_config(classifier_path=shared), workdir)
  online = read_jsonl(os.path.join(digits_run, "eval.jsonl"))
  resumed = read_jsonl(os.path.join(workdir, "eval.jsonl"))
  assert [r["step"] for r in resumed] == [2, 4, 6]
  np.testing.assert_allclose([r["fid"] for r in resumed], [r["fid"] for r in online],
                             rtol=1e-6)
  a, b = evaluation.read_best(digits_run), evaluation.read_best(workdir)
  assert b["step"] == a["step"] and b["value"] == pytest.approx(a["value"], rel=1e-6)
  assert os.listdir(os.path.join(workdir, "best")) == [str(a["step"])]


def test_best_checkpoint_compares_like_records_and_replaces_a_redone_step(tmp_path):
  workdir = str(tmp_path)
  state = {"w": np.arange(3, dtype=np.float32)}
  rec = lambda fid, n=10: {"fid": fid, "num_samples": n, "features": "f"}
  keeper = evaluation.BestCheckpoint(workdir, "fid", [{"step": 2, **rec(5.0)}])
  assert not keeper.update(4, rec(6.0), state)  # worse than the kept record of step 2
  assert not os.path.exists(os.path.join(workdir, "best.json"))
  assert keeper.update(6, rec(4.0), state)
  assert not keeper.update(8, rec(4.0), state)  # a tie keeps the earlier step
  assert keeper.update(10, rec(9.0, n=20), state)  # first at another sample count
  assert not keeper.update(12, rec(float("nan")), state)
  keeper.close()
  assert evaluation.read_best(workdir)["step"] == 10
  # Resumed from step 6 with the records up to 6: step 10 is redone and saved again.
  keeper = evaluation.BestCheckpoint(workdir, "fid", [{"step": 2, **rec(5.0)},
                                                      {"step": 6, **rec(4.0)}])
  assert keeper.update(10, rec(8.0, n=20), {"w": np.ones(3, np.float32)})
  keeper.close()
  assert evaluation.read_best(workdir)["value"] == 8.0
  restored = trainer.restore_checkpoint(workdir, {"w": np.zeros(3, np.float32)}, best=True)
  np.testing.assert_array_equal(restored["w"], np.ones(3))
  assert evaluation.is_better("modes_covered", 8, 7)
  assert evaluation.is_better("reverse_kl", 0.1, 0.2)
  assert not evaluation.is_better("fid", 2.0, 1.0)


# --- Clear errors ---------------------------------------------------------------------------


def test_inception_without_weights_is_an_error_naming_the_flag(digits_run):
  c = digits_config(features="inception_v3")
  source = builders.build_data(c)
  with pytest.raises(FileNotFoundError, match=r"eval.inception_path.*--inception_path"):
    evaluation.Evaluator.from_config(c, source, digits_run)
  with pytest.raises(FileNotFoundError, match="--inception_path"):
    evaluate_script.evaluate_run(digits_run, features="inception_v3")
  with pytest.raises(FileNotFoundError, match="No Inception-v3 weight file at '/nowhere.npz'"):
    evaluate_script.evaluate_run(digits_run, features="inception_v3",
                                 inception_path="/nowhere.npz")


def test_a_classifier_needs_labelled_data(tmp_path):
  path = str(tmp_path / "images.npy")
  np.save(path, np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8))
  c = digits_config()
  c.data = {"name": "array", "batch_size": 8, "path": path}
  with pytest.raises(ValueError, match=r"has no labels.*eval.features='inception_v3'"):
    evaluation.Evaluator.from_config(c, builders.build_data(c), str(tmp_path))


def test_unlabelled_data_trains_with_evaluation_off_by_default(tmp_path, caplog):
  """The default evaluation (every sample grid, classifier features) cannot score data
  without labels: the run says so once and trains on; asked for explicitly it is an error."""
  path = str(tmp_path / "images.npy")
  np.save(path, np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8))
  c = digits_config(steps=2, every=0)
  c.data = {"name": "array", "batch_size": 8, "path": path}
  c.train.sample_every = 2
  workdir = str(tmp_path / "run")
  with caplog.at_level("WARNING"):
    state = trainer.train(c, workdir)
  assert int(state.step) == 2
  notices = [r.getMessage() for r in caplog.records if "Evaluation is off" in r.getMessage()]
  assert len(notices) == 1 and "has no labels" in notices[0]
  assert "eval.features='inception_v3'" in notices[0]
  assert read_jsonl(os.path.join(workdir, "eval.jsonl")) == []
  assert os.listdir(os.path.join(workdir, "samples")) == ["step_0000002.png"]
  c.eval.every = 2
  with pytest.raises(ValueError, match="has no labels"):
    trainer.train(c, str(tmp_path / "explicit"))


def test_missing_workdir_checkpoint_and_bad_settings_are_clear_errors(digits_run, tmp_path):
  with pytest.raises(FileNotFoundError, match="No work directory"):
    evaluate_script.evaluate_run(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 3; it has steps \[2, 4, 6\]"):
    evaluate_script.evaluate_run(digits_run, step=3)
  with pytest.raises(FileNotFoundError, match="has no best checkpoint"):
    trainer.restore_checkpoint(str(tmp_path), None, best=True)
  c = digits_config(best_metric="kid", metrics=("fid",))
  with pytest.raises(ValueError, match="best_metric='kid' is not computed.*add 'kid'"):
    evaluation.Evaluator.from_config(c, builders.build_data(c), digits_run)
  c = digits_config()
  c.eval.metrics = ("fid", "lpips")
  with pytest.raises(ValueError, match="unknown \\['lpips'\\]"):
    builders.validate_config(c)
  c = digits_config()
  c.eval.num_sample = 5
  with pytest.raises(KeyError, match="did you mean 'num_samples'"):
    builders.validate_config(c)
  old, new = digits_config().to_dict(), digits_config(num_samples=500).to_dict()
  assert builders.compatibility_diff(old, new) == []
