"""Intra-class FID and sample accuracy (gax.metrics.conditional) against brute-force NumPy /
SciPy references, and in the image evaluator on an oracle generator that returns real digits:
drawn from the right class it scores intra-FID near the real-vs-real value and the
classifier's accuracy, drawn from the next class it keeps the same FID (the same images
overall) while intra-FID rises and accuracy falls to chance or below."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from experiments.configs import cgan_digits
from gax import builders, evaluation, losses
from gax.metrics import conditional
from gax.models.dcgan import DCGANDiscriminator
from gax.steps import GAN, init_state


def _fid_brute(a, b):
  mu1, mu2 = a.mean(0), b.mean(0)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_intra_class_fid_is_the_mean_of_per_class_fids():
  rng = np.random.default_rng(0)
  k, f = 3, 4
  real = rng.normal(size=(300, f))
  real_y = rng.integers(0, k, 300)
  fake = rng.normal(size=(150, f)) * 1.3 + 0.2
  fake_y = np.arange(150) % k
  stats = conditional.class_feature_stats(real, real_y, k)
  mean, per_class = conditional.intra_class_fid(stats, fake, fake_y)
  want = [_fid_brute(real[real_y == c], fake[fake_y == c]) for c in range(k)]
  np.testing.assert_allclose(per_class, want, rtol=1e-6, atol=1e-8)
  assert mean == pytest.approx(np.mean(want), rel=1e-6)
  with pytest.raises(ValueError, match="classes \\[2\\]"):
    conditional.intra_class_fid(stats, fake[:5], np.array([0, 0, 1, 1, 2]))
  with pytest.raises(ValueError, match="lie in"):
    conditional.class_feature_stats(real, real_y + 1, k)


def test_sample_accuracy_counts_argmax_hits():
  logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
  assert conditional.sample_accuracy(logits, np.array([0, 1, 0, 0])) == 0.75
  with pytest.raises(ValueError, match="shape"):
    conditional.sample_accuracy(logits, np.array([0, 1]))


class _Oracle(nn.Module):
  """A conditional "generator" returning real digits: for label y, one of the first M
  digits of class y (or of class y + shift), chosen by the latent's first coordinate."""

  table: np.ndarray  # uint8 [K, M, H, W, C]
  shift: int = 0
  num_classes: int = 10
  conditioning: str = "concat"

  @nn.compact
  def __call__(self, z, train=True, labels=None):
    self.param("unused", nn.initializers.zeros, (1,))
    m = self.table.shape[1]
    idx = jnp.clip(jnp.floor(jax.scipy.stats.norm.cdf(z[:, 0]) * m), 0, m - 1).astype(jnp.int32)
    x = jnp.asarray(self.table)[(labels + self.shift) % self.num_classes, idx]
    return x.astype(jnp.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def evaluator_and_table(tmp_path_factory):
  c = cgan_digits.get_config()
  c.data.image_size = 8
  c.eval.update(num_samples=1000, classifier_steps=300,
                metrics=("fid", "intra_fid", "accuracy"))
  source = builders.build_data(c)
  ev = evaluation.Evaluator.from_config(c, source, str(tmp_path_factory.mktemp("eval")))
  labels = np.asarray(source.labels)
  m = min(np.bincount(labels))
  table = np.stack([source.images[labels == k][:m] for k in range(10)])
  return ev, table


def _score(ev, table, shift):
  g = _Oracle(table, shift)
  d = DCGANDiscriminator(resolution=8, width=4, num_classes=10, conditioning="concat")
  gan = GAN(g, d, losses.get_loss("non_saturating"), optax.sgd(0.1), optax.sgd(0.1),
            latent_dim=4, num_classes=10, conditioning="concat")
  return ev.evaluate(gan, init_state(gan, jax.random.PRNGKey(0), table.shape[2:]))


def test_oracle_generator_right_and_wrong_classes(evaluator_and_table):
  ev, table = evaluator_and_table
  right, wrong = _score(ev, table, 0), _score(ev, table, 1)
  # The same images overall (balanced classes), so the unconditional FID cannot tell them
  # apart; intra-FID and accuracy can.
  assert abs(right["fid"] - wrong["fid"]) < 0.1 * max(right["fid"], 1.0)
  assert right["class_accuracy"] > 0.85
  assert wrong["class_accuracy"] < 0.2
  assert wrong["intra_fid"] > 3 * right["intra_fid"]
  assert "intra-FID" in ev.describe(right) and "accuracy" in ev.describe(right)


def test_class_metrics_need_labels_and_a_conditional_gan(evaluator_and_table, tmp_path):
  ev, table = evaluator_and_table
  from gax.models.dcgan import DCGANGenerator
  g = DCGANGenerator(resolution=8, width=4, channels=1)
  d = DCGANDiscriminator(resolution=8, width=4)
  gan = GAN(g, d, losses.get_loss("non_saturating"), optax.sgd(0.1), optax.sgd(0.1),
            latent_dim=4)
  with pytest.raises(ValueError, match="score a conditional GAN"):
    ev.evaluate(gan, init_state(gan, jax.random.PRNGKey(0), (8, 8, 1)))
  c = cgan_digits.get_config()
  c.data.image_size = 8
  c.data.labels = False
  c.eval.update(classifier_steps=20, metrics=("fid", "intra_fid"))
  with pytest.raises(ValueError, match="labels"):
    evaluation.Evaluator.from_config(c, builders.build_data(c), str(tmp_path))


def test_evaluate_script_prints_the_class_metrics():
  from experiments import evaluate as evaluate_script
  header = evaluate_script.format_table([{
      "step": 1, "checkpoint": "checkpoints", "fid": 1.0, "intra_fid": 2.0,
      "class_accuracy": 0.5, "num_samples": 10}]).splitlines()[0].split()
  assert header == ["step", "checkpoint", "fid", "intra_fid", "class_accuracy", "num_samples"]
