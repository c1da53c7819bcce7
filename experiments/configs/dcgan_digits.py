"""DCGAN (Radford et al. 2016) on the handwritten digits shipped with scikit-learn,
resized to 16x16: the offline default image run.

python experiments/train.py --config=experiments/configs/dcgan_digits.py --workdir=runs/digits

The same GAN on another data source: name it after the file, and set its options, e.g.
--config=experiments/configs/dcgan_digits.py:array --config.data.path=images.npz
(`gax.builders.with_data`; the section then holds every option of that source).
"""

from gax.builders import base_config, with_data


def get_config(data: str = ""):
  c = base_config()
  c.data = {"name": "digits", "batch_size": 64, "image_size": 16}
  c.model = {"name": "dcgan", "width": 32, "dtype": "float32", "conv_impl": "auto"}
  c.latent.dim = 100
  c.latent.distribution = "gaussian"
  c.loss = "non_saturating"
  # DCGAN's optimizer: Adam, lr 2e-4, beta1 0.5 (Radford et al. 2016, sec. 4).
  c.optimizer.g.learning_rate = 2e-4
  c.optimizer.d.learning_rate = 2e-4
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.checkpoint_every = 1000
  c.train.num_samples = 64
  return with_data(c, data)
