"""Conditional GAN (Mirza & Osindero 2014, "Conditional generative adversarial nets") on the
scikit-learn handwritten digits at 16x16, with the digit as the class.

python experiments/train.py --config=experiments/configs/cgan_digits.py --workdir=runs/cgan

Both players see the digit: G through a learned class embedding appended to z, D through a
learned 4x4 map per digit, upsampled to 16x16 (nearest neighbour) and appended to the image
as `d_class_dim` extra channels. D scores real digits with their labels and fakes with the
labels they were generated for. The sample grids have 10 rows of 10: row i shows digit i.
"""

from experiments.configs import dcgan_digits


def get_config(data: str = ""):
  c = dcgan_digits.get_config(data)
  c.data.labels = True
  c.model.num_classes = 10
  c.model.conditioning = "concat"
  c.model.g_class_dim = 16
  c.model.d_class_dim = 4
  c.model.class_map_resize = "nearest"
  c.train.num_samples = 100  # a 10 x 10 grid, one row per digit
  return c
