"""MLP GAN on the 5x5 grid of 25 Gaussians (spacing 2, std 0.05).

python experiments/train.py --config=experiments/configs/grid.py --workdir=runs/grid
"""

from experiments.configs import ring  # the launcher puts the repo root on sys.path


def get_config():
  c = ring.get_config()
  c.data = {"name": "grid", "batch_size": 256, "side": 5, "spacing": 2.0, "std": 0.05}
  c.train.steps = 30000
  return c
