"""The digits DCGAN with the SNGAN recipe: spectral normalisation in D (replacing its batch
norm), hinge loss and an exponential moving average of G's weights for sampling.

python experiments/train.py --config=experiments/configs/dcgan_digits_sn.py --workdir=runs/digits_sn

Optimizer: Adam lr 2e-4, beta1 0.5, beta2 0.999, one D step per G step: setting C of Miyato
et al. 2018 (table 1). EMA decay 0.999 over G's weights (Yazici et al. 2019).
"""

from experiments.configs import dcgan_digits


def get_config(data: str = ""):
  c = dcgan_digits.get_config(data)
  c.model.d_norm = "none"  # SNGAN's D has no batch norm (Miyato et al. 2018, appendix B)
  c.loss = "hinge"
  c.tricks.spectral_norm.enabled = True
  c.tricks.g_ema.enabled = True
  c.tricks.g_ema.decay = 0.999
  return c
