r"""Trains a GAN from a config file.

  python experiments/train.py --config=experiments/configs/dcgan_digits.py \
      --workdir=runs/digits --config.train.steps=5000

Any config value can be overridden with --config.KEY=VALUE; an unknown key is an error.
Re-running with the same --workdir resumes from its newest checkpoint.

Several processes (one per host, or per accelerator): start the same command in each with
--distributed (and --config.parallel=mesh or pmap). On Cloud TPU, under SLURM or Open MPI JAX
finds the other processes by itself; elsewhere add --coordinator_address=HOST:PORT (process
0's address, the same for all), --num_processes=N and --process_id=I. The work directory must
be one all processes see; see BUILD.md, "Multi-host".
"""

import os
import sys

# Let configs import their siblings as `experiments.configs.*` when run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from gax import cli, parallel, trainer  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.mark_flags_as_required(["config", "workdir"])

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Run as one of several processes (jax.distributed.initialize); "
    "needs --config.parallel=mesh or pmap.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "With --distributed: HOST:PORT of process 0's coordinator, the "
    "same for every process; empty: auto-detected (Cloud TPU, SLURM, Open MPI).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed: the number of processes (default: auto-detected).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --distributed: this process's number in 0..num_processes-1 "
    "(default: auto-detected).")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "With --distributed: comma-separated ids of the local devices "
    "this process uses (default: JAX's choice).")


def distributed_settings() -> dict:
  """The `gax.parallel.initialize_distributed` arguments given by the flags; an error when
  one of them is given without --distributed, where it would silently do nothing."""
  settings = {"coordinator_address": _COORDINATOR.value or None,
              "num_processes": _NUM_PROCESSES.value, "process_id": _PROCESS_ID.value,
              "local_device_ids": _LOCAL_DEVICE_IDS.value or None}
  given = [f"--{k}" for k, v in settings.items() if v is not None]
  if given and not _DISTRIBUTED.value:
    raise app.UsageError(f"{', '.join(given)} only take(s) effect with --distributed.")
  return settings


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  settings = distributed_settings()
  if _DISTRIBUTED.value:  # before any other JAX call
    parallel.initialize_distributed(**settings)
  trainer.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
