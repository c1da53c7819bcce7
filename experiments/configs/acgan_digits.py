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

from gax.builders import base_config


def get_config():
  c = base_config()
  c.data = {"name": "digits", "batch_size": 64, "image_size": 16, "labels": True}
  c.model = {"name": "dcgan", "width": 32, "dtype": "float32", "num_classes": 10,
             "conditioning": "auxiliary", "g_class_dim": 16, "aux_weight": 1.0}
  c.latent.dim = 100
  c.latent.distribution = "gaussian"
  c.loss = "non_saturating"
  # Adam, lr 2e-4, beta1 0.5, as in DCGAN and the AC-GAN paper's appendix.
  c.optimizer.g.learning_rate = 2e-4
  c.optimizer.d.learning_rate = 2e-4
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  c.train.num_samples = 100  # a 10 x 10 grid, one row per digit
  return c
