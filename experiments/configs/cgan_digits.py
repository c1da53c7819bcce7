"""Conditional GAN (Mirza & Osindero 2014, "Conditional generative adversarial nets") on the
scikit-learn handwritten digits at 16x16, with the digit as the class.

python experiments/train.py --config=experiments/configs/cgan_digits.py --workdir=runs/cgan

Both players see the digit: G through a learned class embedding appended to z, D through a
learned 4x4 map per digit, upsampled to 16x16 (nearest neighbour) and appended to the image
as `d_class_dim` extra channels. D scores real digits with their labels and fakes with the
labels they were generated for. The sample grids have 10 rows of 10: row i shows digit i.
"""

from gax.builders import base_config


def get_config():
  c = base_config()
  c.data = {"name": "digits", "batch_size": 64, "image_size": 16, "labels": True}
  c.model = {"name": "dcgan", "width": 32, "dtype": "float32", "num_classes": 10,
             "conditioning": "concat", "g_class_dim": 16, "d_class_dim": 4,
             "class_map_resize": "nearest"}
  c.latent.dim = 100
  c.latent.distribution = "gaussian"
  c.loss = "non_saturating"
  c.optimizer.g.learning_rate = 2e-4
  c.optimizer.d.learning_rate = 2e-4
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  c.train.num_samples = 100  # a 10 x 10 grid, one row per digit
  return c
