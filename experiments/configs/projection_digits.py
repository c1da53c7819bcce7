"""SNGAN-projection (Miyato & Koyama 2018, "cGANs with projection discriminator") on the
scikit-learn digits at 16x16, with the digit as the class.

python experiments/train.py --config=experiments/configs/projection_digits.py \
    --workdir=runs/projection

The SNGAN recipe of `dcgan_digits_sn.py` (spectral normalisation in a D without batch norm,
hinge loss, G's EMA for sampling) with `model.conditioning="projection"`: D's logit adds
the inner product of its last hidden features with a learned (spectrally normalised)
vector per digit, and G's batch norms are conditional, a gain and bias per digit, as in that
paper's experiments. The sample grids have 10 rows of 10: row i shows digit i.
"""

from experiments.configs import dcgan_digits_sn


def get_config(data: str = ""):
  c = dcgan_digits_sn.get_config(data)
  c.data.labels = True
  c.model.num_classes = 10
  c.model.conditioning = "projection"
  c.train.num_samples = 100  # a 10 x 10 grid, one row per digit
  return c
