"""benchmarks/stacked_mnist.py: the protocol's config, the jobs, and a tiny end-to-end run
whose table sets the measured rows beside PacGAN's Table 2."""

import json
import os

import pytest

from benchmarks import stacked_mnist as bench
from gax import builders


def test_the_protocol_config_and_jobs():
  base = bench.base_config(100)
  builders.validate_config(base)
  assert (base.data.name, base.data.image_size, base.latent.dim) == ("stacked_mnist", 32, 100)
  assert base.eval.num_samples == 26000 and base.eval.every == 100
  assert (base.optimizer.d.learning_rate, base.optimizer.d.b1) == (2e-4, 0.5)
  jobs = bench.make_jobs(["dcgan", "pacdcgan3"], 2, base)
  assert [(j.variant.name, j.seed) for j in jobs] == [("dcgan", 0), ("dcgan", 1),
                                                      ("pacdcgan3", 0), ("pacdcgan3", 1)]
  assert jobs[2].variant.overrides == {"model.packing": 3, "data.batch_size": 192}
  with pytest.raises(ValueError, match="Unknown methods"):
    bench.make_jobs(["veegan"], 1, base)
  every = bench.base_config(1000, evals=4)
  assert (every.eval.every, every.train.checkpoint_every, every.train.steps) == (250, 250, 1000)
  for steps, evals in ((100, 0), (3, 4)):
    with pytest.raises(ValueError, match="evals"):
      bench.base_config(steps, evals=evals)
  decay = bench.decaying(bench.base_config(300), "cosine")
  builders.validate_config(decay)
  assert (decay.optimizer.g.schedule, decay.optimizer.g.decay_steps) == ("cosine", 300)
  assert (decay.optimizer.d.schedule, decay.optimizer.d.decay_steps) == ("cosine", 300)
  assert bench.decaying(base, "constant") is base
  with pytest.raises(ValueError, match="no checkpoints of dcgan, seed 0"):
    bench.make_jobs(["dcgan"], 1, base, init_from="/nonexistent/root")
  assert not base.tricks.g_ema.enabled  # the papers' protocol samples the trained G
  ema = bench.base_config(100, g_ema=0.999)
  builders.validate_config(ema)
  assert ema.tricks.g_ema.enabled and ema.tricks.g_ema.decay == 0.999
  assert ema.eval.standing_stats == 16 and base.eval.standing_stats == 0
  assert bench.base_config(100, g_ema=0.99, standing_stats=0).eval.standing_stats == 0
  assert "samples from G's EMA, decay 0.999, with standing" in bench.report([], 0.999)
  for bad in (-0.1, 1.0):
    with pytest.raises(ValueError, match="g_ema"):
      bench.base_config(100, g_ema=bad)


def test_standard_error_is_the_closed_form():
  assert bench.mean_se([1.0, 2.0, 3.0, 6.0]) == pytest.approx((3.0, (14 / 3 / 4) ** 0.5))
  assert bench.mean_se([5.0]) == (5.0, 0.0)


def test_a_tiny_sweep_writes_the_table_beside_the_published_one(tmp_path):
  from gax import sweep  # pylint: disable=g-import-not-at-top
  base = bench.base_config(2, width=4, num_examples=64, num_samples=200,
                           classifier_path=str(tmp_path / "clf.npz"), classifier_steps=20)
  base.data.batch_size = 8
  jobs = bench.make_jobs(["dcgan", "pacdcgan2"], 1, base)
  records = sweep.run_many(jobs, str(tmp_path))
  assert [r["status"] for r in records] == ["ok", "ok"]
  assert all(0 < r["final"]["modes_covered"] <= 200 and r["final"]["reverse_kl"] >= 0
             for r in records)
  text = bench.write_outputs(str(tmp_path), records)
  assert "| dcgan | 1 |" in text and "| pacdcgan2 | 1 |" in text
  assert "| PacDCGAN2 | PacGAN | 1000.0 ± 0.00 | 0.06 ± 0.003 |" in text
  assert os.path.isfile(tmp_path / bench.TABLE_FILE)
  assert os.path.isfile(tmp_path / "clf.npz")  # one classifier, shared by the runs
  # Those runs continued, warm-started from their checkpoints, with decaying learning rates.
  more = bench.make_jobs(["pacdcgan2"], 1, bench.decaying(base, "linear"), 0, str(tmp_path))
  [record] = sweep.run_many(more, str(tmp_path / "more"))
  assert record["status"] == "ok"
  with open(os.path.join(more[0].workdir(str(tmp_path / "more")), "init_from.json")) as f:
    source = json.load(f)
  assert (source["workdir"], source["step"]) == (jobs[1].workdir(str(tmp_path)), 2)


def test_the_data_floor_is_sampling_noise_and_the_classifier_is_plugged_in():
  """Real triples' true labels read the reverse KL of N uniform draws, about 999 / 2N (the
  second-order expansion of KL(q || u) for a multinomial q); an oracle classifier of the
  held-out digits reads exactly their labels, so `mode_ids` orders the channels right."""
  from gax.data import load_mnist  # pylint: disable=g-import-not-at-top
  images, labels = load_mnist("test", 32)
  digit_of = {im.tobytes(): int(d) for im, d in zip(images, labels)}
  oracle = lambda channels: [digit_of[c.tobytes()] for c in channels]
  n = 26000
  floor = bench.data_floor(oracle, n, 32, seeds=3)
  assert floor["classified"] == floor["labels"]
  kls = [r["reverse_kl"] for r in floor["labels"]]
  assert abs(sum(kls) / 3 - 999 / (2 * n)) < 0.002
  assert all(r["modes"] == 1000 and r["num_samples"] == n for r in floor["labels"])
  assert len(set(kls)) == 3  # three different draws
  text = bench.report([], floor=floor)
  assert "| real triples, true labels (sampling floor) | 3 | 1000.0 ± 0.0 |" in text
  assert "| real held-out triples, classified (floor with the classifier) | 3 |" in text
