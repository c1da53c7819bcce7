"""MLP GAN on the ring of 8 Gaussians (radius 2, std 0.02).

python experiments/train.py --config=experiments/configs/ring.py --workdir=runs/ring
"""

from gax.builders import base_config


def get_config():
  c = base_config()
  c.data = {"name": "ring", "batch_size": 256, "num_modes": 8, "radius": 2.0, "std": 0.02}
  c.model = {"name": "mlp", "g_hidden": (256, 256, 256), "d_hidden": (256, 256, 256)}
  c.latent.dim = 64
  c.loss = "non_saturating"
  c.optimizer.g.learning_rate = 1e-4
  c.optimizer.d.learning_rate = 1e-4
  c.train.steps = 10000
  c.train.log_every = 500
  c.train.sample_every = 2500
  c.train.checkpoint_every = 2500
  c.train.num_samples = 2500
  return c
