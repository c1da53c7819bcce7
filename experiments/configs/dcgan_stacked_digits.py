"""DCGAN on stacked digits (1000 modes): the Stacked-MNIST mode-count experiment of Metz et
al. 2017 (Unrolled GAN), Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN) on
gax's offline digits (`gax.data.stacked_digits`, 16x16x3).

python experiments/train.py --config=experiments/configs/dcgan_stacked_digits.py \\
  --workdir=runs/stacked

Every evaluation counts the modes (digit triples) of `eval.num_samples` = 25,600 samples, the
papers' count, with a digits classifier applied to each channel, and reports the reverse KL
over the 1000 modes beside FID; `best/` keeps the step with the most modes.
"""

from experiments.configs import dcgan_digits  # the launcher puts the repo root on sys.path


def get_config():
  c = dcgan_digits.get_config()
  c.data = {"name": "stacked_digits", "batch_size": 64, "image_size": 16}
  c.eval.num_samples = 25600
  c.eval.best_metric = "modes_covered"
  return c
