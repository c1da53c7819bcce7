"""MLP GAN on the ring of 8 Gaussians (radius 2, std 0.02).

python experiments/train.py --config=experiments/configs/ring.py --workdir=runs/ring

The non-saturating GAN with these networks collapses to 1-2 modes here (measured, see
README); a small R1 penalty on D (Mescheder et al. 2018) keeps every mode.
"""

from gax.builders import base_config


def get_config():
  c = base_config()
  c.data = {"name": "ring", "batch_size": 256, "num_modes": 8, "radius": 2.0, "std": 0.02}
  c.model = {"name": "mlp", "g_hidden": (256, 256, 256), "d_hidden": (256, 256, 256)}
  c.latent.dim = 64
  c.loss = "non_saturating"
  c.d_penalty.r1 = 0.01  # weight of E||grad_x D(x)||^2 on real data, i.e. gamma = 0.02
  c.optimizer.g.learning_rate = 2e-4
  c.optimizer.d.learning_rate = 2e-4
  c.train.steps = 30000
  c.train.log_every = 500
  c.train.sample_every = 5000
  c.train.checkpoint_every = 5000
  c.train.num_samples = 2500
  return c
