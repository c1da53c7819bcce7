r"""Trains a GAN from a config file.

  python experiments/train.py --config=experiments/configs/dcgan_digits.py \
      --workdir=runs/digits --config.train.steps=5000

Any config value can be overridden with --config.KEY=VALUE; an unknown key is an error.
Re-running with the same --workdir resumes from its newest checkpoint.
"""

import os
import sys

# Let configs import their siblings as `experiments.configs.*` when run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from gax import trainer  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  trainer.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
