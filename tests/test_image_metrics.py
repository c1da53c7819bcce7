"""Image metrics (FID, KID, IS, precision/recall) against NumPy references and closed forms;
the feature networks (Inception-v3 with random weights, the digits classifier)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gax import data
from gax.metrics import classifier as classifier_lib
from gax.metrics import density_coverage as dc_lib
from gax.metrics import features as features_lib
from gax.metrics import fid as fid_lib
from gax.metrics import inception_score as is_lib
from gax.metrics import kid as kid_lib
from gax.metrics import precision_recall as pr_lib


def _random_cov(rng, d, rank=None):
  a = rng.standard_normal((d, rank or d))
  return a @ a.T / (rank or d) + (0 if rank else 0.1 * np.eye(d))


def _np_fid(mu1, s1, mu2, s2):
  """Reference: ||mu1 - mu2||^2 + Tr(S1 + S2) - 2 Tr(sqrtm(S1 S2)), float64."""
  try:
    from scipy import linalg  # pylint: disable=g-import-not-at-top
    covmean = linalg.sqrtm(s1 @ s2)
    tr = np.trace(covmean).real
  except ImportError:  # eigenvalues of S1 S2 are real and >= 0
    tr = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
  return float(np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2) - 2 * tr)


# ------------------------------------------------------------------------------------- FID


def test_frechet_distance_matches_the_scipy_sqrtm_reference():
  rng = np.random.default_rng(0)
  for d in (3, 24):
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    got = fid_lib.frechet_distance_float64(mu1, s1, mu2, s2)
    np.testing.assert_allclose(got, _np_fid(mu1, s1, mu2, s2), rtol=1e-9)
    # The traceable float32 function agrees to float32 accuracy.
    f32 = float(jax.jit(fid_lib.frechet_distance)(*(jnp.asarray(a, jnp.float32)
                                                    for a in (mu1, s1, mu2, s2))))
    np.testing.assert_allclose(f32, got, rtol=1e-4)


def test_frechet_distance_of_singular_covariances_matches_the_eigenvalue_reference():
  rng = np.random.default_rng(1)
  d = 20
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  s1, s2 = _random_cov(rng, d, rank=5), _random_cov(rng, d, rank=8)
  tr = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
  want = np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2) - 2 * tr
  np.testing.assert_allclose(fid_lib.frechet_distance_float64(mu1, s1, mu2, s2), want,
                             rtol=1e-7)


def test_frechet_distance_of_diagonal_covariances_has_the_closed_form():
  rng = np.random.default_rng(2)
  a, b = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
  mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
  want = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(a) - np.sqrt(b))**2)
  got = fid_lib.frechet_distance_float64(mu1, np.diag(a), mu2, np.diag(b))
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_streamed_statistics_equal_numpy_mean_and_cov_despite_a_large_offset():
  rng = np.random.default_rng(3)
  x = (1000.0 + rng.standard_normal((103, 6)) @ rng.standard_normal((6, 6))).astype(np.float32)
  stats = fid_lib.FeatureStats()
  for lo, hi in ((0, 10), (10, 11), (11, 60), (60, 103)):
    stats.update(x[lo:hi])
  x64 = x.astype(np.float64)
  assert stats.count == 103
  np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-7)
  cov = np.cov(x64, rowvar=False)
  np.testing.assert_allclose(stats.covariance(), cov, rtol=1e-5, atol=1e-5 * np.abs(cov).max())
  merged = fid_lib.FeatureStats.from_features(x[:50]).merge(
      fid_lib.FeatureStats.from_features(x[50:]))
  np.testing.assert_allclose(merged.covariance(), cov, rtol=1e-5, atol=1e-5 * np.abs(cov).max())


def test_feature_stats_save_and_load_round_trip(tmp_path):
  x = np.random.default_rng(4).standard_normal((20, 3)).astype(np.float32)
  stats = fid_lib.FeatureStats.from_features(x)
  stats.save(str(tmp_path / "ref.npz"))
  back = fid_lib.FeatureStats.load(str(tmp_path / "ref.npz"))
  assert back.count == 20
  np.testing.assert_array_equal(back.scatter, stats.scatter)
  with pytest.raises(FileNotFoundError):
    fid_lib.FeatureStats.load(str(tmp_path / "missing.npz"))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
  rng = np.random.default_rng(5)
  x = rng.standard_normal((400, 16)).astype(np.float32)
  assert abs(fid_lib.fid_from_features(x, x)) < 1e-8
  y = rng.standard_normal((400, 16)).astype(np.float32)
  same = fid_lib.fid_from_features(x, y)
  shifted = fid_lib.fid_from_features(x, y + 1.0)
  assert 0 < same < 1.0 and shifted > 16 * 0.9
  on_device = fid_lib.fid_from_stats(fid_lib.FeatureStats.from_features(x),
                                     fid_lib.FeatureStats.from_features(y + 1.0), float64=False)
  np.testing.assert_allclose(on_device, shifted, rtol=1e-4)


def test_fid_rejects_mismatched_features():
  a = fid_lib.FeatureStats.from_features(np.zeros((4, 3), np.float32) + np.arange(4)[:, None])
  b = fid_lib.FeatureStats.from_features(np.ones((4, 2), np.float32) * np.arange(4)[:, None])
  with pytest.raises(ValueError, match="dimensions differ"):
    fid_lib.fid_from_stats(a, b)
  with pytest.raises(ValueError, match="at least 2"):
    fid_lib.FeatureStats.from_features(np.zeros((1, 3))).covariance()


# ------------------------------------------------------------------------------------- KID


def _np_mmd2_unbiased(x, y):
  d = x.shape[1]

  def k(a, b):
    return (a @ b / d + 1.0)**3

  m, n = len(x), len(y)
  sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
  sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
  return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def test_unbiased_mmd_matches_a_double_loop():
  rng = np.random.default_rng(6)
  x, y = rng.standard_normal((7, 5)), rng.standard_normal((9, 5)) + 0.5
  got = float(kid_lib.polynomial_mmd2_unbiased(jnp.asarray(x, jnp.float32),
                                               jnp.asarray(y, jnp.float32)))
  np.testing.assert_allclose(got, _np_mmd2_unbiased(x, y), rtol=1e-4)


def test_kid_averages_the_double_loop_over_the_seeded_subsets():
  rng = np.random.default_rng(7)
  x = rng.standard_normal((30, 4)).astype(np.float32)
  y = (rng.standard_normal((25, 4)) * 1.5).astype(np.float32)
  mean, std = kid_lib.kid_from_features(x, y, n_subsets=5, subset_size=10, seed=3)
  i1, i2 = kid_lib.subset_indices(jax.random.key(3), 30, 25, 5, 10)
  ref = [_np_mmd2_unbiased(x[a].astype(np.float64), y[b].astype(np.float64))
         for a, b in zip(np.asarray(i1), np.asarray(i2))]
  assert all(len(set(a)) == 10 for a in np.asarray(i1))  # no repeats within a subset
  np.testing.assert_allclose(mean, np.mean(ref), rtol=1e-4)  # float32 vs float64
  np.testing.assert_allclose(std, np.std(ref), rtol=1e-4)
  # Subsets of the whole set all give the full-set estimate.
  mean, std = kid_lib.kid_from_features(x[:25], y, n_subsets=3, subset_size=25)
  np.testing.assert_allclose(mean, _np_mmd2_unbiased(x[:25].astype(np.float64), y), rtol=1e-4)
  assert std < 1e-4 * abs(mean)  # float32 summation order differs between subsets


def test_kid_is_unbiased_for_equal_distributions_where_the_v_statistic_is_not():
  rng = np.random.default_rng(8)
  t, m, d = 2000, 8, 4
  x = jnp.asarray(rng.standard_normal((t, m, d)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((t, m, d)), jnp.float32)
  est = np.asarray(jax.vmap(kid_lib.polynomial_mmd2_unbiased)(x, y), np.float64)
  se = est.std() / np.sqrt(t)
  assert abs(est.mean()) < 4 * se

  def k(a, b):
    return (jnp.einsum("tid,tjd->tij", a, b) / d + 1.0)**3

  biased = np.asarray(k(x, x).mean((1, 2)) + k(y, y).mean((1, 2)) - 2 * k(x, y).mean((1, 2)))
  assert biased.mean() > 10 * se
  shifted = np.asarray(jax.vmap(kid_lib.polynomial_mmd2_unbiased)(x, y + 1.0))
  assert shifted.mean() > 10 * se


def test_kid_rejects_subsets_larger_than_a_set():
  x = np.zeros((10, 3), np.float32)
  with pytest.raises(ValueError, match="subset_size"):
    kid_lib.kid_from_features(x, x, subset_size=11)


# ------------------------------------------------------------------------------------- IS


def _np_inception_score(probs, splits):
  n = len(probs) // splits
  scores = []
  for s in range(splits):
    p = probs[s * n:(s + 1) * n]
    py = p.mean(0, keepdims=True)
    scores.append(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), 1))))
  return np.mean(scores), np.std(scores)


def test_inception_score_matches_numpy_and_drops_the_remainder():
  rng = np.random.default_rng(9)
  logits = 3 * rng.standard_normal((103, 7))
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  want = _np_inception_score(probs[:100], 4)
  np.testing.assert_allclose(is_lib.inception_score_from_logits(logits, splits=4), want,
                             rtol=1e-5)
  np.testing.assert_allclose(is_lib.inception_score_from_probs(probs, splits=4), want, rtol=1e-5)


def test_inception_score_closed_forms():
  k = 6
  uniform = np.full((60, k), 1.0 / k)
  np.testing.assert_allclose(is_lib.inception_score_from_probs(uniform, 3), (1.0, 0.0), atol=1e-6)
  np.testing.assert_allclose(is_lib.inception_score_from_logits(np.zeros((60, k)), 3),
                             (1.0, 0.0), atol=1e-6)
  onehot = np.eye(k)[np.arange(60) % k]  # confident and balanced in every split
  np.testing.assert_allclose(is_lib.inception_score_from_probs(onehot, 5), (k, 0.0), atol=1e-5)
  np.testing.assert_allclose(is_lib.inception_score_from_logits(100 * onehot, 5)[0], k,
                             rtol=1e-5)
  collapsed = np.eye(k)[np.zeros(60, int)]
  np.testing.assert_allclose(is_lib.inception_score_from_probs(collapsed, 2)[0], 1.0, atol=1e-6)


def test_inception_score_rejects_non_probabilities():
  with pytest.raises(ValueError, match="logits"):
    is_lib.inception_score_from_probs(np.ones((10, 3)))
  with pytest.raises(ValueError, match="splits"):
    is_lib.inception_score_from_probs(np.full((4, 2), 0.5), splits=5)


# ---------------------------------------------------------------------- precision / recall


def _np_precision_recall(real, fake, k):
  def radii(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.array([np.sort(np.delete(d[i], i))[k - 1] for i in range(len(x))])

  def coverage(q, c, r):
    return np.mean([any(np.linalg.norm(qi - c[j]) <= r[j] for j in range(len(c))) for qi in q])

  return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


def test_precision_recall_matches_a_brute_force_loop():
  rng = np.random.default_rng(10)
  real = rng.standard_normal((37, 4)).astype(np.float32)
  fake = (0.7 * rng.standard_normal((29, 4)) + 0.6).astype(np.float32)
  for k in (1, 3):
    got = pr_lib.precision_recall_from_features(real, fake, k=k, batch_size=8)
    want = _np_precision_recall(real.astype(np.float64), fake.astype(np.float64), k)
    np.testing.assert_allclose(tuple(got), want, atol=1e-12)
  assert 0 < got.precision < 1 and 0 < got.recall < 1


def test_precision_recall_sanity_cases():
  x = np.random.default_rng(11).standard_normal((50, 8)).astype(np.float32)
  assert tuple(pr_lib.precision_recall_from_features(x, x)) == (1.0, 1.0)
  assert tuple(pr_lib.precision_recall_from_features(x, x + 100.0)) == (0.0, 0.0)
  with pytest.raises(ValueError, match="more than k"):
    pr_lib.precision_recall_from_features(x[:3], x, k=3)


# ------------------------------------------------------------------------ density / coverage


def _np_density_coverage(real, fake, k):
  """Naeem et al. 2020, eqs. 5-6, by loops."""
  d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
  radii = np.array([np.sort(np.delete(d_rr[i], i))[k - 1] for i in range(len(real))])
  inside = np.array([[np.linalg.norm(y - real[i]) <= radii[i] for i in range(len(real))]
                     for y in fake])  # [M, N]
  return inside.sum() / (k * len(fake)), np.mean(inside.any(axis=0))


def test_density_coverage_match_a_brute_force_loop():
  rng = np.random.default_rng(12)
  real = rng.standard_normal((41, 4)).astype(np.float32)
  fake = (0.5 * rng.standard_normal((23, 4)) + 0.3).astype(np.float32)
  for k in (1, 5):
    got = dc_lib.density_coverage_from_features(real, fake, k=k, batch_size=8)
    want = _np_density_coverage(real.astype(np.float64), fake.astype(np.float64), k)
    np.testing.assert_allclose(tuple(got), want, rtol=1e-6)
  # Fakes crowded into the dense centre: density above 1, coverage well below 1.
  assert got.density > 1 and 0 < got.coverage < 1


def test_density_coverage_sanity_cases():
  x = np.random.default_rng(13).standard_normal((60, 8)).astype(np.float32)
  # A set against itself: every ball holds its own centre, so coverage is 1; each point
  # lies in its own ball and those of the points that count it within their k-NN radius.
  dc = dc_lib.density_coverage_from_features(x, x, k=5)
  assert dc.coverage == 1.0 and dc.density >= 1 / 5
  assert tuple(dc_lib.density_coverage_from_features(x, x + 100.0)) == (0.0, 0.0)
  with pytest.raises(ValueError, match="more than k"):
    dc_lib.density_coverage_from_features(x[:5], x, k=5)


# ------------------------------------------------------------------------------- features


def _mean_pool_extractor(traces):
  def apply(_, x):
    traces.append(x.shape)
    f = jnp.mean(x, axis=(1, 2))
    return f, jnp.concatenate([f, -f], -1)

  return features_lib.make_feature_extractor("mean_pool", apply, {}, feature_dim=1,
                                             num_classes=2, channels=1)


def test_batches_are_padded_so_the_feature_fn_compiles_once():
  traces = []
  ex = _mean_pool_extractor(traces)
  rng = np.random.default_rng(12)
  chunks = [rng.integers(0, 256, (n, 5, 5, 1), dtype=np.uint8) for n in (7, 3, 10)]
  feats, logits = features_lib.compute_features(ex, iter(chunks), batch_size=4)
  assert len(traces) == 1 and feats.shape == (20, 1) and logits.shape == (20, 2)
  want = np.concatenate(chunks).astype(np.float32).mean((1, 2)) * (2 / 255) - 1
  np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
  stats = fid_lib.feature_statistics(ex, iter(chunks), batch_size=4)
  np.testing.assert_allclose(stats.covariance(), np.cov(want.astype(np.float64), rowvar=False),
                             rtol=1e-4)
  with pytest.raises(ValueError, match="channels"):
    ex(np.zeros((2, 5, 5, 2), np.uint8))


def _random_inception_variables(seed=0):
  rng = np.random.default_rng(seed)

  def fill(path, sd):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']") or name.endswith("['scale']"):
      return np.ones(sd.shape, np.float32)
    if name.endswith("['mean']") or name.endswith("['bias']"):
      return np.zeros(sd.shape, np.float32)
    fan_in = np.prod(sd.shape[:-1])
    return (rng.standard_normal(sd.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, features_lib.inception_v3_variable_shapes())


def test_inception_v3_has_the_standard_size_and_round_trips_through_npz(tmp_path):
  shapes = features_lib.inception_v3_variable_shapes()
  # torchvision's Inception-v3 without the auxiliary head, with a 1008-way classifier.
  assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"])) == 23_850_960
  variables = _random_inception_variables()
  images = np.random.default_rng(13).integers(0, 256, (2, 75, 75, 1), dtype=np.uint8)
  direct = features_lib.inception_v3_from_variables(variables, image_size=75)
  feats, logits = direct(images)
  assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
  assert np.all(np.isfinite(feats)) and np.all(np.asarray(feats) >= 0)  # pooled ReLUs
  path = str(tmp_path / "inception.npz")
  features_lib.save_variables(path, variables)
  loaded = features_lib.inception_v3_from_file(path, image_size=75)
  np.testing.assert_array_equal(loaded(images)[0], feats)
  small, _ = loaded(images[:, :40, :40])  # resized to 75x75 on the device
  assert small.shape == (2, 2048)


def test_inception_weights_convert_from_a_pytorch_state_dict():
  variables = _random_inception_variables(1)
  flat = {k: np.asarray(v) for k, v in
          jax.tree_util.tree_flatten_with_path(variables)[0]}
  state_dict = {}
  torch_name = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
  for path, v in flat.items():
    keys = [p.key for p in path]
    collection, module, leaf = keys[0], keys[1:-1], keys[-1]
    if leaf == "kernel" and v.ndim == 4:
      state_dict[".".join(module + ["weight"])] = v.transpose(3, 2, 0, 1)
    elif leaf == "kernel":
      state_dict["fc.weight"] = v.T
    elif module == ["fc"]:
      state_dict["fc.bias"] = v
    else:
      state_dict[".".join(module + [torch_name[leaf]])] = v
      if leaf == "mean":
        state_dict[".".join(module + ["num_batches_tracked"])] = np.array(0)
    assert collection in ("params", "batch_stats")
  back = features_lib.inception_variables_from_torch(state_dict)
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, variables))
  del state_dict["fc.bias"]
  with pytest.raises(ValueError, match="missing: params/fc/bias"):
    features_lib.inception_variables_from_torch(state_dict)


def test_a_missing_inception_file_says_how_to_make_one(tmp_path):
  with pytest.raises(FileNotFoundError, match="inception_variables_from_torch") as e:
    features_lib.inception_v3_from_file(str(tmp_path / "nope.npz"))
  assert "pytorch-fid" in str(e.value) and "never downloads" in str(e.value)
  path = str(tmp_path / "bad.npz")
  features_lib.save_variables(path, {"params": {"fc": {"bias": np.zeros(3)}}})
  with pytest.raises(ValueError, match="do not fit"):
    features_lib.inception_v3_from_file(path)


# ------------------------------------------------------------------------- classifier


@pytest.fixture(scope="module")
def digits16():
  images, labels = data.load_digits_images()
  return data.resize_images(images, 16), labels


@pytest.fixture(scope="module")
def trained(digits16):
  images, labels = digits16
  perm = np.random.default_rng(0).permutation(len(images))
  train, test = perm[:1400], perm[1400:]
  clf = classifier_lib.train_classifier(images[train], labels[train], 10, steps=200, seed=0,
                                        name="digits16")
  return clf, test


def test_the_digits_classifier_generalises_and_round_trips(digits16, trained, tmp_path):
  images, labels = digits16
  clf, test = trained
  assert clf.accuracy(images[test], labels[test]) > 0.9
  path = str(tmp_path / "clf.npz")
  classifier_lib.save_classifier(path, clf)
  loaded = features_lib.FEATURE_EXTRACTORS.build("classifier", path=path)
  assert loaded.name == "classifier:digits16" and loaded.feature_dim == 64
  np.testing.assert_allclose(loaded(images[:8])[1], clf.extractor()(images[:8])[1], rtol=1e-6)
  with pytest.raises(ValueError, match="16x16"):
    loaded(np.zeros((2, 8, 8, 1), np.uint8))
  with pytest.raises(FileNotFoundError, match="train_classifier"):
    classifier_lib.load_classifier(str(tmp_path / "none.npz"))


def test_digits_fid_separates_real_halves_from_noise(digits16, trained):
  images, _ = digits16
  clf, _ = trained
  ex = clf.extractor()
  perm = np.random.default_rng(1).permutation(len(images))
  a, b = images[perm[:800]], images[perm[800:1600]]
  noise = np.random.default_rng(2).integers(0, 256, a.shape, dtype=np.uint8)
  real_fid = fid_lib.fid_from_images(ex, a, b, batch_size=200)
  noise_fid = fid_lib.fid_from_images(ex, a, noise, batch_size=200)
  assert noise_fid > 20 * real_fid, (real_fid, noise_fid)
  # Float inputs in [-1, 1] give the same features as the uint8 images.
  f_uint8, _ = ex(a[:16])
  f_float, _ = ex(a[:16].astype(np.float32) / 127.5 - 1.0)
  np.testing.assert_allclose(f_float, f_uint8, rtol=1e-5, atol=1e-5)
  # The other metrics run on the same features: real digits score high, noise low.
  fa, la = features_lib.compute_features(ex, a, 200)
  fb, _ = features_lib.compute_features(ex, b, 200)
  fn, ln = features_lib.compute_features(ex, noise, 200)
  assert is_lib.inception_score_from_logits(la, 4)[0] > 7
  assert is_lib.inception_score_from_logits(ln, 4)[0] < 3
  kid_real, _ = kid_lib.kid_from_features(fa, fb, n_subsets=20, subset_size=200)
  kid_noise, _ = kid_lib.kid_from_features(fa, fn, n_subsets=20, subset_size=200)
  assert kid_noise > 20 * abs(kid_real)
  pr_real = pr_lib.precision_recall_from_features(fa, fb)
  pr_noise = pr_lib.precision_recall_from_features(fa, fn)
  assert min(pr_real) > 0.8 and max(pr_noise) < 0.2, (pr_real, pr_noise)
