"""A BigGAN-style class-conditional GAN (Brock et al. 2019; `gax.models.biggan`) on the
scikit-learn digits resized to 32x32, with the digit as the class.

python experiments/train.py --config=experiments/configs/biggan_digits.py --workdir=runs/biggan

The pair: a shared class embedding and a hierarchical latent (z of 120 = 4 chunks of 30,
one for G's input layer and one per up-block), conditional batch norm in G, the projection
discriminator on SNGAN's ResNet D, SAGAN's self-attention at 16x16 in both. The BigGAN
recipe around it: hinge loss, spectral norm in D (its class matrix included), orthogonal
regularisation of G (strength 1e-4, sec. 3.1), an EMA of G's weights for sampling (decay
0.999), Adam with beta1 = 0 and beta2 = 0.999 and two D steps per G step, the settings of
the BigGAN authors' CIFAR runs, at a learning rate of 2e-4 for both players. Sample with the
truncation trick: `experiments/sample.py --truncation=0.5`; the FID-versus-threshold curve:
`experiments/evaluate.py --truncations=2,1,0.5`.

Channel multiplier 16 (4 x 16 = 64 channels throughout) instead of BigGAN's 64 or more, to
fit the project's 2-core CPU; `--config.model.width=64` is the authors' CIFAR width.
"""

from gax.builders import base_config, with_data


def get_config(data: str = ""):
  c = base_config()
  c.data = {"name": "digits", "batch_size": 64, "image_size": 32, "labels": True}
  c.model = {"name": "biggan", "width": 16, "num_classes": 10, "conditioning": "projection",
             "shared_dim": 32, "attention": 16, "dtype": "float32", "conv_impl": "auto"}
  c.latent.dim = 120
  c.latent.distribution = "gaussian"
  c.loss = "hinge"
  c.n_critic = 2
  for player in ("g", "d"):
    c.optimizer[player].learning_rate = 2e-4
    c.optimizer[player].b1 = 0.0
    c.optimizer[player].b2 = 0.999
  c.tricks.spectral_norm.enabled = True
  c.tricks.g_orthogonal_regularization.enabled = True
  c.tricks.g_ema.enabled = True
  c.tricks.g_ema.decay = 0.999
  c.train.steps = 5000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  c.train.num_samples = 100  # a 10 x 10 grid, one row per digit
  return with_data(c, data)
