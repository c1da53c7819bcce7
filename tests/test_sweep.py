"""The sweep engine (gax.sweep) and the quality benchmarks built on it
(benchmarks/ablate.py, benchmarks/mode_coverage.py, benchmarks/variants.py)."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from benchmarks import ablate, mode_coverage, variants
from benchmarks import conditional as conditional_bench
from gax import builders, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_ring(steps=4):
  c = variants.mixture_config("ring", steps, hidden=(8,), evals=2)
  c.latent.dim = 4
  return c


def test_overrides_set_nested_keys_and_refuse_unknown_ones():
  c = tiny_ring()
  d = sweep.apply_overrides(c, {"tricks.label_smoothing.enabled": True, "n_critic": 3,
                                "model.minibatch": "discrimination", "model.g_hidden": [4]})
  assert d.tricks.label_smoothing.enabled and d.n_critic == 3
  assert d.model.minibatch == "discrimination" and d.model.g_hidden == (4,)
  assert not c.tricks.label_smoothing.enabled and c.n_critic == 1  # the base is unchanged
  with pytest.raises(KeyError, match="label_smothing"):
    sweep.apply_overrides(c, {"tricks.label_smothing.enabled": True})
  with pytest.raises(KeyError, match="n_critics"):
    sweep.apply_overrides(c, {"n_critics": 2})


def test_variants_combine_and_clash():
  a = sweep.Variant("a", {"x": 1, "y": 2})
  b = sweep.Variant("b", {"y": 2, "z": 3})
  assert (a + b) == sweep.Variant("a+b", {"x": 1, "y": 2, "z": 3})
  with pytest.raises(ValueError, match="differently"):
    a + sweep.Variant("c", {"x": 5})
  v = variants.variant("instance_noise+r1", "ring", 700)
  assert v.overrides["tricks.instance_noise.decay_steps"] == 700
  assert v.overrides["d_penalty.r1"] == 0.01
  with pytest.raises(ValueError, match="Unknown variants"):
    variants.variant("r2d2", "ring", 10)
  with pytest.raises(ValueError, match="do not apply"):
    variants.variant("g_batch_norm", "digits", 10)
  # PacGAN's code feeds D a batch of 100 packs: 100 m samples of the mixture a step.
  for m in (2, 4):
    c = sweep.apply_overrides(variants.mixture_config("grid", 10, arch="pacgan"),
                              variants.variant(f"pacgan{m}_paper", "grid", 10).overrides)
    assert (c.model.packing, c.data.batch_size // c.model.packing) == (m, 100)


@pytest.mark.parametrize("dataset, options", [("ring", {}), ("ring", {"arch": "pacgan"}),
                                              ("digits", {})])
def test_every_variant_builds_a_valid_run(dataset, options):
  base = variants.base_for(dataset, 10, **options)
  for name in variants.VARIANTS:
    if name in variants.NOT_FOR.get(dataset, ()):
      continue
    c = sweep.apply_overrides(base, variants.variant(name, dataset, 10).overrides)
    builders.validate_config(c)
    shape = (2,) if dataset == "ring" else (16, 16, 1)
    gan = builders.build_gan(c, shape)
    state = jax.eval_shape(lambda gan=gan, c=c: builders.build_state(gan, c, shape))
    assert state.step.shape == (), name
  assert set(variants.SOURCES) == set(variants.VARIANTS) - {"baseline"}


def test_pacgan_arch_has_the_papers_networks_and_optimiser():
  c = variants.mixture_config("grid", 10, arch="pacgan")
  assert c.latent.dim == 2
  for player in ("g", "d"):
    assert (c.optimizer[player].learning_rate, c.optimizer[player].b1) == (1e-4, 0.8)
  gan = builders.build_gan(c, (2,))
  state = jax.eval_shape(lambda: builders.build_state(gan, c, (2,)))
  size = lambda tree: sum(x.size for x in jax.tree_util.tree_leaves(tree))
  # G: 2 -> 4 x 400 (no biases, batch norm scale and offset) -> 2 (with bias).
  assert size(state.g.params) == 2 * 400 + 3 * 400 * 400 + 4 * 2 * 400 + 400 * 2 + 2
  # D: 3 maxout layers of 200 units x 5 pieces (with biases) -> 1.
  assert size(state.d.params) == (2 * 1000 + 1000) + 2 * (200 * 1000 + 1000) + 200 + 1
  with pytest.raises(ValueError, match="Unknown architecture"):
    variants.mixture_config("ring", 10, arch="veegan")


def test_lr_decay_reaches_zero_at_the_end_of_the_run_for_both_players():
  v = variants.variant("train_d_more+lr_decay", "ring", 100)
  assert v.overrides["optimizer.g.decay_steps"] == 100
  assert v.overrides["optimizer.d.decay_steps"] == 500  # n_critic = 5 D updates per step
  c = sweep.apply_overrides(variants.mixture_config("ring", 100), v.overrides)
  assert c.optimizer.d.schedule == c.optimizer.g.schedule == "linear"
  assert c.optimizer.d.final_scale == 0.0


def test_a_section_override_applies_before_the_keys_inside_it():
  c = tiny_ring()
  swap = {"optimizer.d": {"name": "sgd", "learning_rate": 0.5}}
  for overrides in ({**swap, "optimizer.d.learning_rate": 0.1},
                    {"optimizer.d.learning_rate": 0.1, **swap}):
    assert sweep.apply_overrides(c, overrides).optimizer.d.to_dict() == {
        "name": "sgd", "learning_rate": 0.1}


def test_sgd_d_gives_d_plain_sgd_and_keeps_a_combinations_schedule():
  # ganhacks 9: SGD for D, Adam for G, in either order of a combination with lr_decay.
  for name in ("sgd_d+lr_decay", "lr_decay+sgd_d"):
    c = sweep.apply_overrides(variants.mixture_config("ring", 100, arch="pacgan"),
                              variants.variant(name, "ring", 100).overrides)
    assert c.optimizer.d.to_dict() == {"name": "sgd", "learning_rate": 0.01,
                                       "schedule": "linear", "decay_steps": 100,
                                       "final_scale": 0.0, "warmup_steps": 0}
    assert (c.optimizer.g.name, c.optimizer.g.b1) == ("adam", 0.8)
  c = sweep.apply_overrides(variants.mixture_config("ring", 100, arch="pacgan"),
                            variants.variant("sgd_d", "ring", 100).overrides)
  gan = builders.build_gan(c, (2,))
  grads, params = {"w": jnp.array([0.5, -2.0])}, {"w": jnp.zeros(2)}
  updates, _ = gan.d_tx.update(grads, gan.d_tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.01 * grads["w"])


def test_top_k_reaches_its_floor_about_half_way():
  from gax import tricks  # pylint: disable=g-import-not-at-top
  for steps in (1000, 20000):
    v = variants.variant("pacgan2+top_k", "ring", steps)
    c = sweep.apply_overrides(variants.mixture_config("ring", steps, arch="pacgan"), v.overrides)
    options = {k: v for k, v in c.tricks.top_k.items() if k != "enabled"}
    hook, n = tricks.TopK(**options), 50  # 100 examples in packs of 2
    assert int(hook.k(2 * steps // 5, n)) > 25
    assert int(hook.k(steps // 2 + hook.decay_every, n)) == 25


def _record(group, variant, seed, status="ok", alarm_steps=None, **final):
  return {"group": group, "variant": variant, "seed": seed, "status": status, "steps": 100,
          "final": final, "alarm_steps": alarm_steps or {}}


def test_summary_statistics_and_deltas_match_closed_forms():
  records = [
      _record("ring", "baseline", 0, modes_covered=2, hq_fraction=0.5),
      _record("ring", "baseline", 1, modes_covered=4, hq_fraction=0.7),
      # An early alarm (step 50 of 100) is not a failure; a late one (60) is.
      _record("ring", "r1", 0, modes_covered=8, hq_fraction=0.9,
              alarm_steps={"mode_collapse": [50], "exploding_gradients": [60]}),
      _record("ring", "r1", 1, modes_covered=6, hq_fraction=0.8),
      _record("ring", "r1", 2, "diverged", alarm_steps={"non_finite": [80]}),
  ]
  rows = sweep.summarise(records, ["modes_covered", "hq_fraction"], baseline="baseline")
  base, r1 = rows
  assert (base.variant, base.runs, r1.runs) == ("baseline", 2, 3)
  assert base.stats["modes_covered"] == (3.0, pytest.approx(math.sqrt(2)), 2)
  assert r1.stats["modes_covered"] == (7.0, pytest.approx(math.sqrt(2)), 2)  # NaN excluded
  d, se = r1.deltas["modes_covered"]
  assert d == 4.0 and se == pytest.approx(math.sqrt(2 / 2 + 2 / 2))
  assert r1.deltas["hq_fraction"][0] == pytest.approx(0.25)
  assert r1.failures == {"diverged": 1, "exploding_gradients": 1, "non_finite": 1}
  assert base.deltas == {} and base.failures == {}
  assert np.isnan(r1.all_seeds["modes_covered"][2])
  # Still collapsed at the final evaluation: a failure whenever the alarm fired.
  stuck = _record("ring", "v", 0, modes_covered=3, modes=8, alarm_steps={"mode_collapse": [10]})
  assert sweep.late_failures(stuck) == ["mode_collapse"]
  assert sweep.late_failures({**stuck, "final": {"modes_covered": 4, "modes": 8}}) == []
  table = sweep.markdown_table(rows, ["modes_covered", "hq_fraction"], deltas=True)
  lines = table.splitlines()
  assert lines[0].startswith("| data | variant | runs | modes | Δ modes | % HQ | Δ % HQ |")
  assert "| ring | r1 | 3 | 7.0 ± 1.4 (2 runs) | +4.0 ± 1.4 | 85.0 ± 7.1 (2 runs) |" in table
  assert lines[-1].endswith("diverged 1/3, exploding_gradients 1/3, non_finite 1/3 |")
  assert lines[2].endswith("| none |")
  # A metric no run has a value of (every run diverged) says so instead of "nan ± nan".
  dead = sweep.summarise([_record("ring", "v", 0, "diverged")], ["modes_covered"])
  assert "| ring | v | 1 | n/a (0 runs) |" in sweep.markdown_table(dead, ["modes_covered"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  return workdir, sweep.run(tiny_ring(), workdir, variant="baseline", seed=3, group="ring")


def test_a_run_records_its_final_evaluation_and_is_not_trained_twice(tiny_run, monkeypatch):
  workdir, record = tiny_run
  assert (record["status"], record["seed"], record["group"]) == ("ok", 3, "ring")
  evals = [json.loads(l) for l in open(os.path.join(workdir, "eval.jsonl"))]
  assert [e["step"] for e in evals] == [2, 4]
  final = record["final"]
  assert final["step"] == 4 and final["hq_fraction"] == evals[-1]["hq_fraction"]
  assert final["modes_any"] == sum(c >= 1 for c in evals[-1]["counts"])
  assert "counts" not in final and final["modes_any"] >= final["modes_covered"]
  assert record["config"]["seed"] == 3
  monkeypatch.setattr(sweep.trainer, "train", lambda *a: pytest.fail("trained again"))
  again = sweep.run(tiny_ring(), workdir, variant="baseline", seed=3, group="ring")
  assert again == record


def test_a_run_the_monitor_stops_is_a_record_with_its_alarms(tmp_path):
  c = tiny_ring()
  c.monitor.grad_norm_max = 1e-9
  c.monitor.stop_on = ("exploding_gradients",)
  record = sweep.run(c, str(tmp_path), variant="v", seed=0)
  assert record["status"] == "stopped" and "exploding_gradients" in record["error"]
  assert record["alarms"] == {"exploding_gradients": 1} and record["final"] == {}
  assert record["alarm_steps"] == {"exploding_gradients": [1]} and record["steps"] == 4
  assert sweep.late_failures(record) == ["stopped"]  # step 1 of 4 is early


def test_ablate_command_writes_the_table_and_resumes(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "ablate.py"), "--datasets=ring",
         "--variants=label_smoothing", "--combos=label_smoothing+r1", "--seeds=2",
         "--mixture_steps=4", "--hidden=8", f"--workdir={tmp_path}"]
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  table = (tmp_path / "ablation.md").read_text()
  assert [l.split(" | ")[1] for l in table.splitlines()[2:]] == [
      "baseline", "label_smoothing", "label_smoothing+r1"]
  records = [json.loads(l) for l in (tmp_path / "ablation.jsonl").read_text().splitlines()]
  assert len(records) == 6 and {r["seed"] for r in records} == {0, 1}
  for rec in records:
    assert (tmp_path / "ring" / rec["variant"] / f"seed_{rec['seed']}" / "result.json").exists()
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert again.returncode == 0 and (tmp_path / "ablation.md").read_text() == table
  assert "Training" not in again.stderr and "Evaluation every" not in again.stderr
  bad = subprocess.run(cmd[:2] + ["--datasets=moon", f"--workdir={tmp_path}"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert bad.returncode != 0 and "Unknown datasets ['moon']" in bad.stderr


def test_mode_coverage_report_puts_published_numbers_beside_the_measured(tiny_run):
  _, record = tiny_run
  text = mode_coverage.report([record], ["ring", "grid"])
  assert "### ring (8 modes)" in text and "### grid" not in text
  assert "| GAN | VEEGAN Table 1 | 1.0 | 99.3 | - |" in text
  assert "| baseline | " in text
  jobs = mode_coverage.make_jobs(["ring", "grid"], ["baseline", "r1"], 2, 10, (8,))
  assert [(j.group, j.variant.name, j.seed) for j in jobs][:3] == [
      ("ring", "baseline", 0), ("ring", "baseline", 1), ("ring", "r1", 0)]
  assert jobs[-1].base.data.name == "grid" and jobs[-1].base.data.std == 0.05
  with pytest.raises(ValueError, match="Unknown mixtures"):
    mode_coverage.make_jobs(["digits"], ["baseline"], 1, 10, (8,))
  # PacGAN's G already has batch norm: g_batch_norm would rerun the baseline under its name.
  with pytest.raises(ValueError, match="'g_batch_norm' does not change the pacgan base"):
    mode_coverage.make_jobs(["ring"], ["g_batch_norm"], 1, 10, (8,), arch="pacgan")
  assert len(mode_coverage.make_jobs(["ring"], ["g_batch_norm"], 1, 10, (8,))) == 1


def test_mode_coverage_drs_rows_score_the_same_runs_and_are_read_back(tiny_run, monkeypatch):
  workdir, record = tiny_run
  drs = mode_coverage.drs_record(record, workdir, percentile=50.0)
  [saved] = [json.loads(l) for l in open(os.path.join(workdir, "eval_drs_p50.jsonl"))]
  assert drs["variant"] == "baseline + DRS p50" and drs["seed"] == record["seed"]
  assert saved["step"] == record["steps"] == drs["final"]["step"]
  assert drs["final"]["hq_fraction"] == saved["drs_hq_fraction"]
  assert drs["final"]["modes_any"] == sum(c >= 1 for c in saved["drs_counts"])
  assert 0 < drs["final"]["acceptance"] <= 1
  # The unfiltered record is untouched, and a second call reads the file back.
  assert record["variant"] == "baseline" and "acceptance" not in record["final"]
  # With D calibrated first: another row and file, which record the calibration.
  calibrated = mode_coverage.drs_record(record, workdir, percentile=50.0, calibrate_steps=20,
                                        calibrate_lr=1e-3)
  assert calibrated["variant"] == "baseline + DRS p50 c20 lr0.001"
  assert os.path.exists(os.path.join(workdir, "eval_drs_p50_c20_lr0.001.jsonl"))
  assert calibrated["final"]["calibration_loss_end"] > 0
  assert "calibration_loss_end" not in drs["final"]
  monkeypatch.setattr(mode_coverage.trainer, "evaluate_run",
                      lambda *a, **k: pytest.fail("scored again"))
  assert mode_coverage.drs_record(record, workdir, percentile=50.0) == drs
  text = mode_coverage.report([record, drs], ["ring"])
  assert "| baseline + DRS p50 | " in text and "DRS acceptance" in text
  assert mode_coverage.drs_label() == "DRS" and mode_coverage.drs_label(1.5) == "DRS g1.5"
  assert mode_coverage.drs_label(calibrate_steps=5000) == "DRS c5000"
  with pytest.raises(ValueError, match="not both"):
    mode_coverage.drs_label(1.0, 80.0)
  with pytest.raises(ValueError, match="drs_calibrate_lr"):
    mode_coverage.drs_label(calibrate_steps=10, calibrate_lr=0.0)


def test_mode_coverage_command_with_drs_writes_both_rows(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "mode_coverage.py"),
         "--datasets=ring", "--methods=baseline", "--seeds=1", "--steps=4", "--hidden=8",
         "--drs", "--drs_percentile=50", "--drs_calibrate_steps=3", "--drs_max_draws=2500",
         f"--workdir={tmp_path}"]
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  table = (tmp_path / "mode_coverage.md").read_text()
  assert "| baseline | " in table and "| baseline + DRS p50 c3 | " in table
  saved = (tmp_path / "ring" / "baseline" / "seed_0" / "eval_drs_p50_c3.jsonl").read_text()
  # 2500 draws at most, half of them kept: DRS gives up, and the row records why.
  assert "accepted" in json.loads(saved)["drs_error"]
  bad = subprocess.run(cmd[:-2] + ["--drs_gamma=1", "--drs_percentile=50",
                                   f"--workdir={tmp_path}"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert bad.returncode != 0 and "not both" in bad.stderr


def test_first_seed_splits_a_sweep_into_disjoint_seed_ranges():
  whole = mode_coverage.make_jobs(["ring"], ["baseline"], 3, 10, (8,))
  parts = (mode_coverage.make_jobs(["ring"], ["baseline"], 2, 10, (8,)) +
           mode_coverage.make_jobs(["ring"], ["baseline"], 1, 10, (8,), first_seed=2))
  assert [j.seed for j in whole] == [j.seed for j in parts] == [0, 1, 2]
  assert [j.workdir("r") for j in whole] == [j.workdir("r") for j in parts]
  assert list(sweep.seed_range(2, first_seed=5)) == [5, 6]
  for seeds, first, match in [(0, 0, "--seeds must be an integer >= 1, got 0"),
                              (True, 0, "--seeds must be an integer >= 1, got True"),
                              (2, -1, "--first_seed must be an integer >= 0, got -1")]:
    with pytest.raises(ValueError, match=match):
      sweep.seed_range(seeds, first)
  with pytest.raises(ValueError, match="--first_seed must be"):
    ablate.make_jobs(["ring"], ["r1"], 1, 10, 10, (8,), "r", first_seed=-3)


def test_conditional_benchmark_compares_the_conditionings_on_one_base(tmp_path):
  jobs = conditional_bench.make_jobs(["cgan", "acgan", "projection"], 1, 2, "sn", str(tmp_path))
  assert [j.variant.name for j in jobs] == ["cgan", "acgan", "projection"]
  configs = [sweep.apply_overrides(j.base, j.variant.overrides) for j in jobs]
  assert [c.model.conditioning for c in configs] == ["concat", "auxiliary", "projection"]
  for c in configs:  # the SNGAN base for all: only the conditioning differs
    assert c.loss == "hinge" and c.tricks.spectral_norm.enabled and c.data.labels
  tiny = {"data.image_size": 8, "data.batch_size": 8, "model.width": 4,
          "eval.classifier_steps": 20, "eval.num_samples": 100}
  jobs = [sweep.Job(j.group, j.variant, j.seed, sweep.apply_overrides(j.base, tiny))
          for j in jobs]
  records = sweep.run_many(jobs, str(tmp_path))
  assert [r["status"] for r in records] == ["ok"] * 3
  table = conditional_bench.write_outputs(str(tmp_path), records)
  assert "| intra-FID |" in table and "| accuracy |" in table
  assert [l.split(" | ")[1] for l in table.splitlines()[2:]] == ["cgan", "acgan", "projection"]
  for r in records:
    assert 0 <= r["final"]["class_accuracy"] <= 1 and r["final"]["intra_fid"] > 0
  with pytest.raises(ValueError, match="Unknown conditionings"):
    conditional_bench.make_jobs(["film"], 1, 2, "sn", str(tmp_path))


def test_ablate_jobs_share_one_digits_classifier(tmp_path):
  jobs = ablate.make_jobs(["digits"], ["label_smoothing", "g_batch_norm"], 1, 10, 10, (8,),
                          str(tmp_path))
  assert [j.variant.name for j in jobs] == ["baseline", "label_smoothing"]  # g_batch_norm n/a
  names = lambda arch: [j.variant.name for j in ablate.make_jobs(
      ["ring"], ["g_batch_norm", "r1"], 1, 10, 10, (8,), str(tmp_path), arch=arch)]
  assert names("gax") == ["baseline", "g_batch_norm", "r1"]
  assert names("pacgan") == ["baseline", "r1"]  # its G has batch norm already
  assert {j.base.eval.classifier_path for j in jobs} == {
      os.path.abspath(str(tmp_path / "digits_classifier.npz"))}
  assert isinstance(jobs[0].base, ml_collections.ConfigDict)
  # Evaluations and checkpoints coincide, evenly spaced: 2 by default, --digits_evals more.
  assert (jobs[0].base.eval.every, jobs[0].base.train.checkpoint_every) == (5, 5)
  four = ablate.make_jobs(["digits"], [], 1, 10, 12, (8,), str(tmp_path), digits_evals=4)
  assert (four[0].base.eval.every, four[0].base.train.checkpoint_every) == (3, 3)
