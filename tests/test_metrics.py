"""Mode coverage against closed forms."""

import numpy as np
import pytest

from gax import data
from gax.metrics import mode_coverage


def test_samples_from_the_data_cover_every_mode_with_the_2d_gaussian_hq_rate():
  src = data.DATASETS.build("grid", batch_size=100_000, seed=0)
  r = mode_coverage(src.get(0)[0], src.centers, src.std)
  assert r["modes"] == r["modes_covered"] == 25
  # P(|x - mu| <= 3 sigma) for an isotropic 2D Gaussian: 1 - exp(-9/2).
  np.testing.assert_allclose(r["hq_fraction"], 1 - np.exp(-4.5), atol=2e-3)
  assert r["reverse_kl"] < 1e-3


def test_a_collapsed_generator_covers_one_mode_with_reverse_kl_log_k():
  centers = data.ring_centers(8)
  samples = np.repeat(centers[3:4], 2500, 0)
  r = mode_coverage(samples, centers, 0.02)
  assert r["modes_covered"] == 1 and r["counts"][3] == 2500
  np.testing.assert_allclose(r["reverse_kl"], np.log(8), rtol=1e-6)


def test_the_coverage_threshold_is_a_fifth_of_the_expected_count():
  centers = data.grid_centers(5)
  # 2500 samples on 25 modes: 100 expected per mode, a mode counts from 20 (PacGAN).
  samples = np.concatenate([np.repeat(centers[:1], 2481, 0), np.repeat(centers[1:2], 19, 0)])
  assert mode_coverage(samples, centers, 0.05)["modes_covered"] == 1
  samples = np.concatenate([np.repeat(centers[:1], 2480, 0), np.repeat(centers[1:2], 20, 0)])
  assert mode_coverage(samples, centers, 0.05)["modes_covered"] == 2


def test_samples_off_the_modes_are_not_high_quality():
  centers = data.ring_centers(8)
  r = mode_coverage(np.zeros((100, 2)), centers, 0.02)
  assert r["hq_fraction"] == 0 and r["modes_covered"] == 0 and r["reverse_kl"] == float("inf")


def test_wrong_sample_dimension_is_rejected():
  with pytest.raises(ValueError, match=r"samples must be \[N, 2\]"):
    mode_coverage(np.zeros((10, 3)), data.ring_centers(8), 0.02)
