"""The throughput benchmarks (train step, input pipeline) run end to end on tiny shapes and
report what they promise."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import step_throughput as st


@pytest.fixture(scope="module")
def results():
  return [st.measure(m, 4, "float32", resolution=8, warmup=1, iters=1, repeats=2)
          for m in st.MODELS]


def test_measure_reports_speed_flops_and_no_mfu_without_a_known_peak(results):
  for r in results:
    assert r.img_per_sec > 0 and r.ms_per_step > 0 and r.compile_s > 0
    assert r.img_per_sec == pytest.approx(4 / (r.ms_per_step / 1e3))
    assert r.tflop_per_step is not None and r.tflop_per_step > 0
    assert r.mfu is None  # CPU: no peak in the table and none given
  # The ResNet step does more work than the DCGAN step at the same shape.
  assert results[1].tflop_per_step > results[0].tflop_per_step


def test_xla_flops_of_the_dcgan_step_are_of_the_order_of_the_hand_count():
  # At 8x8 the DCGAN is G: dense 100 -> 4x4x64, transposed conv (4x4, stride 2) to 8x8x3;
  # D: conv (4x4, stride 2) 8x8x3 -> 4x4x64, conv 4x4x64 -> 1. A stride-2 transposed conv
  # touches 2x2 of its 4x4 taps per output. Forward FLOPs = 2 x MACs per example; a backward
  # pass costs about twice its forward.
  r = st.measure("dcgan", 4, "float32", resolution=8, warmup=0, iters=1, repeats=1)
  b = 4
  g_fwd = 2 * b * (100 * 16 * 64 + 8 * 8 * 3 * 4 * 64)
  d_fwd = 2 * b * (4 * 4 * 64 * 4 * 4 * 3 + 4 * 4 * 64)
  # D step: G forward, D forward + backward on real and fake. G step: G and D forward and
  # backward on the fakes.
  hand = g_fwd + 2 * 3 * d_fwd + 3 * (g_fwd + d_fwd)
  assert 0.5 * hand < r.tflop_per_step * 1e12 < 2 * hand


def test_peak_table_and_override():
  assert st.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
  assert st.peak_tflops("cpu", "float32") is None
  assert st.peak_tflops("cpu", "float32", 1.5) == 1.5


def test_results_are_written_as_json_and_markdown(results, tmp_path):
  paths = st.write(results, str(tmp_path))
  data = json.load(open(paths["json"]))
  assert [r["model"] for r in data["results"]] == list(st.MODELS)
  table = open(paths["md"]).read()
  assert table.count("\n") == 2 + len(results) and "dcgan 8x8" in table


def test_input_pipeline_reports_rates_and_headroom_over_the_step(tmp_path):
  from benchmarks import input_pipeline  # pylint: disable=g-import-not-at-top
  step_json = tmp_path / "step.json"
  step_json.write_text(json.dumps({"results": [
      {"batch_size": 8, "img_per_sec": 100.0}, {"batch_size": 8, "img_per_sec": 250.0},
      {"batch_size": 16, "img_per_sec": 50.0}]}))
  assert input_pipeline.step_rates(str(step_json)) == {8: 250.0, 16: 50.0}  # fastest per batch
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  run = lambda *args: subprocess.run(
      [sys.executable, os.path.join(root, "benchmarks", "input_pipeline.py"), *args],
      capture_output=True, text=True, timeout=300, cwd=root)
  out = run("--batch_sizes=8,16", "--resolution=8", "--num_images=64", "--steps=3",
            f"--step_results={step_json}", f"--out_dir={tmp_path}")
  assert out.returncode == 0, out.stderr[-2000:]
  rows = json.loads((tmp_path / "input_pipeline.json").read_text())["results"]
  assert [r["batch_size"] for r in rows] == [8, 16]
  for r, step in zip(rows, (250.0, 50.0)):
    assert r["headroom"] == pytest.approx(r["examples_per_s"] / step)
  assert "| in-memory uint8 8x8x3 | 16 |" in (tmp_path / "input_pipeline.md").read_text()
  # A trainer config's own source; a batch larger than the images is a clear usage error.
  out = run("--config=experiments/configs/dcgan_digits.py", "--batch_sizes=32", "--steps=2",
            f"--out_dir={tmp_path}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "| digits (dcgan_digits.py) | 32 |" in out.stdout
  out = run("--batch_sizes=128", "--num_images=64", f"--out_dir={tmp_path}")
  assert out.returncode != 0 and "must be at least the batch size" in out.stderr
  # The two TFDS loaders, each in its own process, on random images written once.
  pytest.importorskip("grain")
  tfds_dir = tmp_path / "tfds"
  out = run("--compare_loaders", f"--tfds_dir={tfds_dir}", "--num_images=64", "--resolution=8",
            "--batch_sizes=16", "--steps=2", f"--out_dir={tmp_path}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tfds_dir / "gax_bench_64x8").is_dir()
  rows = json.loads((tmp_path / "input_pipeline.json").read_text())["results"]
  assert [r["loader"] for r in rows] == ["memory", "grain"]
  for r in rows:
    assert r["batch_size"] == 16 and r["examples_per_s"] > 0 and r["build_s"] > 0
    assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
  assert "| grain | 16 |" in (tmp_path / "input_pipeline.md").read_text()
  out = run("--compare_loaders", "--batch_sizes=16", f"--out_dir={tmp_path}")
  assert out.returncode != 0 and "needs --tfds_dir" in out.stderr


def test_conv_impl_rows_and_the_per_layer_profile():
  r = st.measure("dcgan", 4, "float32", resolution=8, warmup=0, iters=1, repeats=1,
                 conv_impl="xla")
  assert r.conv_impl == "xla" and "| xla |" in st.markdown([r])
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  rows = conv_layers.profile("dcgan", 8, 2, repeats=1)
  # 8x8 DCGAN: G's transposed conv 4x4x64 -> 8x8x3, D's conv 8x8x3 -> 4x4x64 and its last
  # 4x4 valid conv to one logit; a transposed conv is profiled as the conv it transposes.
  assert [(r["kind"], r["x"], r["k"]) for r in rows] == [
      ("ConvTranspose", (2, 8, 8, 3), (4, 4, 3, 64)),
      ("Conv", (2, 8, 8, 3), (4, 4, 3, 64)),
      ("Conv", (2, 4, 4, 64), (4, 4, 64, 1))]
  assert rows[1]["gflop"] == pytest.approx(2 * 2 * 4 * 4 * 4 * 4 * 3 * 64 / 1e9)
  assert all(v > 0 for row in rows for v in row["gflops"].values())
  table = conv_layers.markdown(rows)
  assert table.count("\n") == 1 + len(rows) and table.count("*") == 3 * len(rows)


def test_trainer_mode_times_the_same_config_through_the_training_loop(tmp_path):
  for model, bs in (("mlp", 16), ("dcgan", 4)):
    r = st.measure(model, bs, "float32", resolution=8, warmup=1, iters=2, repeats=2)
    r.trainer_steps_per_sec = st.measure_trainer(model, bs, "float32", 8, 1, "auto", steps=6,
                                                 log_every=2, workdir=str(tmp_path))
    assert r.trainer_steps_per_sec > 0
    assert r.trainer_ratio == pytest.approx(r.trainer_steps_per_sec * r.ms_per_step / 1e3)
    run = tmp_path / f"run_{model}_{bs}_float32_auto"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [2, 4, 6]
    assert not (run / "checkpoints").exists() or not os.listdir(run / "checkpoints")
    assert "| trainer steps/s | trainer / step |" in st.markdown([r])
  with pytest.raises(ValueError, match="at least 3 x"):
    st.measure_trainer("mlp", 16, "float32", 8, 1, "auto", steps=4, log_every=2,
                       workdir=str(tmp_path))
  with pytest.raises(ValueError, match="float32 only"):
    st.benchmark_config("mlp", 8, 16, "bfloat16")
