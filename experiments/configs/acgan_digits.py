"""AC-GAN (Odena, Olah & Shlens 2017, "Conditional image synthesis with auxiliary classifier
GANs") on the scikit-learn handwritten digits at 16x16, with the digit as the class.

python experiments/train.py --config=experiments/configs/acgan_digits.py --workdir=runs/acgan

G is the DCGAN generator with a learned class embedding appended to z; D is the DCGAN
discriminator with an auxiliary classifier on its last hidden features. D minimises its
adversarial loss plus `aux_weight` times the class cross-entropy on real and generated
digits, G its adversarial loss plus `aux_weight` times the class cross-entropy of its own
samples (paper sec. 3). The sample grids have 10 rows of 10: row i shows digit i.

  python experiments/sample.py --workdir=runs/acgan --num=100 --label=3 --out=threes.npy
"""

from experiments.configs import dcgan_digits


def get_config(data: str = ""):
  c = dcgan_digits.get_config(data)
  # Adam, lr 2e-4, beta1 0.5 (dcgan_digits), as in the AC-GAN paper's appendix.
  c.data.labels = True
  c.model.num_classes = 10
  c.model.conditioning = "auxiliary"
  c.model.g_class_dim = 16
  c.model.aux_weight = 1.0
  c.train.num_samples = 100  # a 10 x 10 grid, one row per digit
  return c
