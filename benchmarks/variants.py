"""Base configs and the catalogue of trick variants shared by `mode_coverage.py` and
`ablate.py`.

Mixture protocol (`mixture_config`), as in the official PacGAN code (Lin et al. 2018,
github.com/fjxmlzn/PacGAN, `synthetic_data_experiments/*/config.py`): the ring is 8 Gaussians
of std 0.01 on the unit circle, the grid 25 Gaussians of std 0.05 at {-4, -2, 0, 2, 4}^2.
Evaluation follows VEEGAN (Srivastava et al. 2017, sec. 5.1) and PacGAN: 2500 samples, a
sample is high quality within 3 standard deviations of its nearest mode; batch size 100 as
in that code. Two sets of networks and optimiser (`ARCHS`): gax's MLPs
(`experiments/configs/ring.py` without its R1 penalty, widths from the caller), or those of
the PacGAN code (`PACGAN_ARCH`: G 4 x 400 with batch norm, maxout D). The papers' training
length (PacGAN: 400 epochs of 100k points) is beyond a 2-core CPU budget.

Each entry of `VARIANTS` is a switch of one trick on the base config, named after the tip or
technique, with its source in `SOURCES`.
"""

from __future__ import annotations

from typing import Dict, Sequence

import ml_collections

from experiments.configs import dcgan_digits, dcgan_mnist
from gax.builders import base_config
from gax.optimizers import SCHEDULE_DEFAULTS
from gax.sweep import Variant, apply_overrides

MIXTURES = {
    # name: data section
    "ring": {"name": "ring", "num_modes": 8, "radius": 1.0, "std": 0.01},
    "grid": {"name": "grid", "side": 5, "spacing": 2.0, "std": 0.05},
}
IMAGE_DATASETS = ("digits", "mnist")
DATASETS = (*MIXTURES, *IMAGE_DATASETS)


# The networks and optimiser of the official PacGAN mixture code (`pacgan_task.py` and
# `config.py` of `synthetic_data_experiments/2DRing_GAN&PacGAN`): z ~ N(0, I_2); G four
# hidden layers of 400 ReLU units with batch norm (no biases) and a linear output; D three
# maxout layers of 200 units with 5 pieces; every weight N(0, 0.02^2), biases 0; Adam with
# learning rate 1e-4 and beta1 0.8 for both players.
# As overrides of `base_config` (dotted keys, `gax.sweep.apply_overrides`).
PACGAN_ARCH = {
    "model": {"name": "mlp", "g_hidden": (400,) * 4, "g_norm": "batch", "d_hidden": (200,) * 3,
              "d_activation": "maxout", "maxout_pieces": 5, "init_std": 0.02},
    "latent.dim": 2,
    **{f"optimizer.{p}.{k}": v for p in ("g", "d") for k, v in (("learning_rate", 1e-4),
                                                                 ("b1", 0.8))},
}
ARCHS = ("gax", "pacgan")


def mixture_config(dataset: str, steps: int, hidden: Sequence[int] = (128, 128, 128),
                   batch_size: int = 100, evals: int = 4,
                   arch: str = "gax") -> ml_collections.ConfigDict:
  """The plain non-saturating GAN on a mixture of `MIXTURES`, evaluated `evals` times.

  `arch="gax"`: MLPs of widths `hidden` (LeakyReLU D, no batch norm), z of dimension 64,
  Adam 2e-4 / 0.5; `arch="pacgan"`: the PacGAN code's networks and optimiser
  (`PACGAN_ARCH`; `hidden` is not used).
  """
  if dataset not in MIXTURES:
    raise ValueError(f"Unknown mixture {dataset!r}; choose from {sorted(MIXTURES)}.")
  if arch not in ARCHS:
    raise ValueError(f"Unknown architecture {arch!r}; choose from {ARCHS}.")
  c = base_config()
  c.data = {**MIXTURES[dataset], "batch_size": int(batch_size)}
  if arch == "pacgan":
    c = apply_overrides(c, PACGAN_ARCH)
  else:
    c.model = {"name": "mlp", "g_hidden": tuple(hidden), "d_hidden": tuple(hidden)}
    c.latent.dim = 64
  c.loss = "non_saturating"
  _schedule(c, steps, evals)
  c.train.num_samples = 2500
  return c


def image_config(c: ml_collections.ConfigDict, steps: int, evals: int, num_samples: int,
                  classifier_path: str, fraction: float,
                  metrics: Sequence[str]) -> ml_collections.ConfigDict:
  """An image config scheduled for `steps` steps, trained on `fraction` of each class
  (`data.fraction`, set only below 1) and scored by `metrics` with one shared classifier."""
  if float(fraction) != 1.0:
    c.data.fraction = float(fraction)
  _schedule(c, steps, evals)
  c.eval.num_samples = int(num_samples)
  c.eval.metrics = tuple(metrics)
  c.eval.classifier_path = classifier_path
  return c


def digits_config(steps: int, evals: int = 2, num_samples: int = 1000,
                  classifier_path: str = "", fraction: float = 1.0) -> ml_collections.ConfigDict:
  """`experiments/configs/dcgan_digits.py` (DCGAN, 16x16 digits) for `steps` steps on
  `fraction` of each class, scored by FID/IS/precision/recall against all 1797 digits."""
  return image_config(dcgan_digits.get_config(), steps, evals, num_samples, classifier_path,
                       fraction, ("fid", "is", "pr"))


def mnist_config(steps: int, evals: int = 2, num_samples: int = 1000,
                 classifier_path: str = "", fraction: float = 1.0) -> ml_collections.ConfigDict:
  """`experiments/configs/dcgan_mnist.py` (DCGAN, width 32, real MNIST padded to 32x32) for
  `steps` steps on `fraction` of the 4000 training digits (`gax.data.class_fraction`),
  scored by FID/KID/IS/precision/recall against all 4000 with one shared classifier."""
  return image_config(dcgan_mnist.get_config(), steps, evals, num_samples, classifier_path,
                       fraction, ("fid", "kid", "is", "pr"))


def base_for(dataset: str, steps: int, **options) -> ml_collections.ConfigDict:
  """`mixture_config`, `digits_config` or `mnist_config` by name."""
  if dataset == "digits":
    return digits_config(steps, **options)
  if dataset == "mnist":
    return mnist_config(steps, **options)
  return mixture_config(dataset, steps, **options)


def _schedule(c: ml_collections.ConfigDict, steps: int, evals: int) -> None:
  if steps < 1 or evals < 1:
    raise ValueError(f"steps and evals must be >= 1, got {steps} and {evals}.")
  every = max(int(steps) // int(evals), 1)
  c.train.steps = int(steps)
  c.train.log_every = max(every // 10, 1)
  c.train.sample_every = 0  # no sample grids: the evaluations are the record
  c.train.checkpoint_every = every  # at each evaluation: a stopped sweep resumes from there
  c.eval.every = every


# name -> overrides of the base config.
VARIANTS: Dict[str, Variant] = {v.name: v for v in [
    Variant("baseline", {}),
    # ganhacks (Chintala et al. 2016, "How to Train a GAN?"), by tip number.
    Variant("minimax_loss", {"loss": "minimax"}),  # tip 2 off: the saturating loss
    Variant("uniform_z", {"latent.distribution": "uniform"}),  # tip 3 off
    Variant("g_batch_norm", {"model.g_norm": "batch"}),  # tip 4
    Variant("relu_d", {"model.d_activation": "relu"}),  # tip 5 off: sparse gradients in D
    Variant("label_smoothing", {"tricks.label_smoothing.enabled": True}),  # tip 6; Salimans
    Variant("soft_labels", {"tricks.soft_labels.enabled": True}),  # tip 6
    Variant("noisy_labels", {"tricks.noisy_labels.enabled": True}),  # tip 6
    Variant("experience_replay", {"tricks.experience_replay.enabled": True}),  # tip 8
    Variant("instance_noise", {"tricks.instance_noise.enabled": True}),  # tip 13
    # Tip 9: Adam for G, SGD for D. The tip names no rate; 0.01 without momentum.
    Variant("sgd_d", {"optimizer.d": {"name": "sgd", "learning_rate": 0.01,
                                      **SCHEDULE_DEFAULTS}}),
    Variant("train_d_more", {"n_critic": 5}),  # tip 14 [notsure]
    Variant("g_dropout", {"model.g_dropout": 0.5}),  # tip 17
    # Salimans et al. 2016, "Improved Techniques for Training GANs".
    Variant("feature_matching", {"tricks.feature_matching.enabled": True}),  # sec. 3.1
    Variant("minibatch_discrimination", {"model.minibatch": "discrimination"}),  # sec. 3.2
    Variant("historical_averaging", {"tricks.g_historical_averaging.enabled": True,
                                     "tricks.d_historical_averaging.enabled": True}),  # 3.3
    Variant("virtual_batch_norm", {"model.g_norm": "virtual_batch"}),  # sec. 3.5
    # Packing (Lin et al. 2018): D judges packs of 2 or 4 samples of the batch of 100.
    Variant("pacgan2", {"model.packing": 2}),
    Variant("pacgan4", {"model.packing": 4}),
    # As the PacGAN code (`pacgan_task.py`, `streams.py`) does it: a batch of 100 packs, so D
    # and G see 100 m samples a step (the mixtures' batch of 100 is the base).
    Variant("pacgan2_paper", {"model.packing": 2, "data.batch_size": 200}),
    Variant("pacgan4_paper", {"model.packing": 4, "data.batch_size": 400}),
    # Later regularisers.
    Variant("spectral_norm", {"tricks.spectral_norm.enabled": True}),  # Miyato et al. 2018
    Variant("r1", {"d_penalty.r1": 0.01}),  # Mescheder et al. 2018
    Variant("g_ema", {"tricks.g_ema.enabled": True}),  # Yazici et al. 2019
    # Both learning rates decayed linearly to 0 over the run (decay_steps set by `variant`).
    Variant("lr_decay", {"optimizer.g.schedule": "linear", "optimizer.d.schedule": "linear"}),
    # Top-k training: G learns from the fakes D rates best (decay_every set by `variant`).
    Variant("top_k", {"tricks.top_k.enabled": True}),
    # Two time-scale update rule: D learns 4x faster than G, at SAGAN's rates.
    Variant("ttur", {"optimizer.d.learning_rate": 4e-4, "optimizer.g.learning_rate": 1e-4}),
    # SNGAN's Adam (Miyato et al. 2018, table 1: beta1 0, beta2 0.9, with n_critic = 5 as
    # `train_d_more` in the paper's best CIFAR-10 setting).
    Variant("sngan_adam", {"optimizer.d.b1": 0.0, "optimizer.d.b2": 0.9,
                           "optimizer.g.b1": 0.0, "optimizer.g.b2": 0.9}),
    # The SNGAN recipe: spectral norm in D, hinge loss, and an EMA of G's weights to sample.
    Variant("sn_hinge_ema", {"tricks.spectral_norm.enabled": True, "loss": "hinge",
                             "tricks.g_ema.enabled": True}),
    # The same with the EMA's initial weights divided out (Adam-style bias correction), so
    # that a short run's average is not pulled towards G's initialisation.
    Variant("sn_hinge_ema_debias", {"tricks.spectral_norm.enabled": True, "loss": "hinge",
                                    "tricks.g_ema.enabled": True,
                                    "tricks.g_ema.debias": True}),
    # Data-efficient training (issue 21); images only.
    Variant("diffaugment", {"tricks.diffaugment.enabled": True}),
    Variant("diffaugment_t", {"tricks.diffaugment.enabled": True,
                              "tricks.diffaugment.policy": "translation"}),
    Variant("ada", {"tricks.ada.enabled": True}),  # kimg set by `variant`
    # ADA's pipeline at a fixed p (the paper's fig. 3 sweeps fixed p before adapting it).
    Variant("ada_p02", {"tricks.ada.enabled": True, "tricks.ada.p": 0.2,
                        "tricks.ada.adjust": False}),
    Variant("lecam", {"tricks.lecam.enabled": True}),  # start_step set by `variant`
    Variant("cr", {"tricks.cr.enabled": True}),
    Variant("bcr", {"tricks.bcr.enabled": True}),
    Variant("zcr", {"tricks.zcr.enabled": True}),
]}

SOURCES = {
    "minimax_loss": "ganhacks 2 (switched off)",
    "uniform_z": "ganhacks 3 (switched off)",
    "g_batch_norm": "ganhacks 4",
    "relu_d": "ganhacks 5 (switched off: ReLU units in D)",
    "label_smoothing": "ganhacks 6; Salimans et al. 2016 sec. 3.4 (one-sided, 0.9)",
    "soft_labels": "ganhacks 6",
    "noisy_labels": "ganhacks 6",
    "experience_replay": "ganhacks 8; Shrivastava et al. 2017",
    "sgd_d": "ganhacks 9 (SGD for D at 0.01, Adam for G)",
    "instance_noise": "ganhacks 13; Sønderby et al. 2017 (decayed to 0 over the run)",
    "train_d_more": "ganhacks 14 [notsure] (n_critic = 5)",
    "g_dropout": "ganhacks 17 (p = 0.5, train and sample time)",
    "feature_matching": "Salimans et al. 2016 sec. 3.1",
    "minibatch_discrimination": "Salimans et al. 2016 sec. 3.2; ganhacks 15 [notsure]",
    "historical_averaging": "Salimans et al. 2016 sec. 3.3 (both players)",
    "virtual_batch_norm": "Salimans et al. 2016 sec. 3.5",
    "pacgan2": "Lin et al. 2018 (PacGAN, packing degree 2)",
    "pacgan4": "Lin et al. 2018 (PacGAN, packing degree 4)",
    "pacgan2_paper": "Lin et al. 2018, as in its code: 100 packs of 2 a step (batch 200)",
    "pacgan4_paper": "Lin et al. 2018, as in its code: 100 packs of 4 a step (batch 400)",
    "spectral_norm": "Miyato et al. 2018",
    "r1": "Mescheder et al. 2018 (weight 0.01)",
    "g_ema": "Yazici et al. 2019 (decay 0.999)",
    "lr_decay": "learning rates of both players decayed linearly to 0 over the run",
    "top_k": "Sinha et al. 2020 (gamma 0.99, nu 0.5, k at its floor about half-way)",
    "sngan_adam": "Miyato et al. 2018, table 1 (Adam beta1 0, beta2 0.9)",
    "ttur": "Heusel et al. 2017 (TTUR), at the rates of Zhang et al. 2019 (SAGAN): D 4e-4, "
            "G 1e-4",
    "sn_hinge_ema": "Miyato et al. 2018 (SNGAN: spectral norm, hinge loss) with G's EMA "
                    "(Yazici et al. 2019)",
    "sn_hinge_ema_debias": "sn_hinge_ema with the EMA bias-corrected (debias=True)",
    "diffaugment": "Zhao et al. 2020 (color, translation, cutout)",
    "diffaugment_t": "Zhao et al. 2020 (translation only)",
    "ada_p02": "Karras et al. 2020 (bgc at a fixed p = 0.2)",
    "ada": "Karras et al. 2020 (bgc, target 0.6; p can rise 0 -> 1 in a quarter of the run)",
    "lecam": "Tseng et al. 2021 (weight 0.3, decay 0.9, on from a fifth of the run or step "
             "1000)",
    "cr": "Zhang et al. 2020 (weight 10)",
    "bcr": "Zhao et al. 2021 (bCR, weights 10 and 10)",
    "zcr": "Zhao et al. 2021 (zCR, weights 5 and 0.5, sigma 0.03)",
}

# Variants that do not apply to a dataset's base config (the image DCGANs already have
# batch norm in G, and their convolutional D has no activation option; the `_paper` packings
# are the mixtures' protocol; augmentations and consistency need images).
_IMAGE_ONLY = {"diffaugment", "diffaugment_t", "ada", "ada_p02", "cr", "bcr", "zcr"}
_NOT_FOR_IMAGES = {"g_batch_norm", "relu_d", "pacgan2_paper", "pacgan4_paper"}
NOT_FOR = {"digits": _NOT_FOR_IMAGES, "mnist": _NOT_FOR_IMAGES,
           **{m: _IMAGE_ONLY for m in MIXTURES}}


def inapplicable(name: str, dataset: str) -> list:
  """The parts of `name` (a variant or a `+` combination) that `NOT_FOR` rules out on
  `dataset`."""
  return [p for p in name.split("+") if p in NOT_FOR.get(dataset, ())]


def variant(name: str, dataset: str, steps: int, batch_size: int = 64) -> Variant:
  """`VARIANTS[name]` (or a `+`-joined combination) adapted to a run of `steps` steps of
  `batch_size` reals: instance noise and the learning rates of `lr_decay` decay to 0 over
  the run, top-k's k reaches its floor about half-way, ADA's p can go from 0 to 1 in a
  quarter of the run (the paper's 500k images are longer than these runs), and LeCam's
  penalty starts after a fifth of the run (at most the authors' step 1000)."""
  parts = name.split("+")
  unknown = [p for p in parts if p not in VARIANTS]
  if unknown:
    raise ValueError(f"Unknown variants {unknown}; known: {sorted(VARIANTS)}.")
  bad = inapplicable(name, dataset)
  if bad:
    raise ValueError(f"Variants {bad} do not apply to {dataset!r}.")
  out = VARIANTS[parts[0]]
  for p in parts[1:]:
    out = out + VARIANTS[p]
  overrides = dict(out.overrides)
  if "tricks.instance_noise.enabled" in overrides:
    overrides["tricks.instance_noise.decay_steps"] = int(steps)
  if "tricks.top_k.enabled" in overrides:
    # k shrinks by 0.99 per "epoch" of steps / 138 steps, so that it reaches its floor of
    # half the batch (0.99^69 < 0.5) about half-way through the run, whatever its length.
    overrides["tricks.top_k.decay_every"] = max(int(steps) // 138, 1)
  if "tricks.ada.enabled" in overrides:
    overrides["tricks.ada.kimg"] = max(int(steps) * int(batch_size) / 4 / 1000, 1e-3)
  if "tricks.lecam.enabled" in overrides:
    overrides["tricks.lecam.start_step"] = min(int(steps) // 5, 1000)
  if "optimizer.g.schedule" in overrides:
    # Schedules count each player's own updates: D makes n_critic of them per step.
    n_critic = int(overrides.get("n_critic", 1))
    overrides["optimizer.g.decay_steps"] = int(steps)
    overrides["optimizer.d.decay_steps"] = int(steps) * n_critic
  return Variant(name, overrides)


def changes_base(base: ml_collections.ConfigDict, v: Variant) -> bool:
  """Whether `v` changes `base` at all: `g_batch_norm` does not on `--arch=pacgan`, whose G
  already has batch norm, and its runs would be the baseline's under another name."""
  return apply_overrides(base, v.overrides).to_dict() != base.to_dict()
