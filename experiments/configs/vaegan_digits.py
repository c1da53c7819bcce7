"""VAE-GAN on the 16x16 scikit-learn digits (experiments/train_vaegan.py).

The VAE-GAN of Larsen, Sønderby, Larochelle & Winther 2016, "Autoencoding beyond pixels using
a learned similarity metric" (ICML): a DCGAN encoder, the DCGAN generator as the decoder and
the DCGAN discriminator, trained with `gax.vaegan.vaegan_train_step`. The weights are those of
`gax.vaegan.VAEGAN` (see its module docstring for the losses they scale);
`feature_recon_weight > 0` adds Larsen et al.'s feature-space reconstruction term.

  python experiments/train_vaegan.py --config=experiments/configs/vaegan_digits.py \
      --workdir=runs/vaegan_digits
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = ml_collections.ConfigDict({"name": "digits", "batch_size": 64, "image_size": 16})
  c.model = ml_collections.ConfigDict({"width": 32})
  c.latent_dim = 32
  c.vaegan = ml_collections.ConfigDict({
      "kl_weight": 1.0,
      "recon_weight": 1.0,
      "feature_recon_weight": 0.0,
      "gamma": 2.0,
      "gan_weight": 1.0,
  })
  adam = {"name": "adam", "learning_rate": 2e-4, "b1": 0.5, "b2": 0.999}
  c.optimizer = ml_collections.ConfigDict({"e": dict(adam), "g": dict(adam), "d": dict(adam)})
  c.train = ml_collections.ConfigDict({
      "steps": 2000,
      "log_every": 100,
      "sample_every": 500,
      "checkpoint_every": 500,
      "keep_checkpoints": 3,
      "num_samples": 64,
  })
  return c
