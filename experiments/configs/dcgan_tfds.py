"""DCGAN on a TFDS dataset prepared in a local directory (nothing is downloaded).

python experiments/train.py --config=experiments/configs/dcgan_tfds.py:mnist \\
    --config.data.data_dir=/data/tfds --workdir=runs/mnist

The part after the colon names the dataset: mnist, fashion_mnist (32x32 grey), cifar10
(32x32 RGB) or celeb_a (centre-cropped to 64x64 RGB). README's "Datasets" section says how
to prepare one.
"""

from gax.builders import base_config

# dataset -> (image_size, centre crop first); MNIST's 28x28 goes to 32x32 for the DCGAN.
_SHAPES = {"mnist": (32, False), "fashion_mnist": (32, False), "cifar10": (32, False),
           "celeb_a": (64, True)}


def get_config(dataset: str = "mnist"):
  if dataset not in _SHAPES:
    raise ValueError(f"dcgan_tfds.py knows {sorted(_SHAPES)}; got {dataset!r}. For another "
                     "dataset set config.data.dataset and config.data.image_size yourself.")
  size, crop = _SHAPES[dataset]
  c = base_config()
  # Labels (unused by the unconditional DCGAN) let the evaluation train its digits-FID-style
  # classifier on the data; celeb_a has none, so it is evaluated only with Inception-v3
  # weights (--config.eval.every=0 --config.eval.features=inception_v3
  # --config.eval.inception_path=...).
  labelled = dataset != "celeb_a"
  c.data = {"name": "tfds", "dataset": dataset, "data_dir": "", "split": "train",
            "batch_size": 64, "image_size": size, "crop": crop, "cache": False,
            "labels": labelled}
  c.model = {"name": "dcgan", "width": 64, "dtype": "float32", "conv_impl": "auto"}
  c.latent.dim = 100
  c.loss = "non_saturating"
  c.train.steps = 20000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  if not labelled:
    c.eval.every = -1
  return c
