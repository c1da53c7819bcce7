"""README's two commands are the ones CI and newcomers run."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*path):
  with open(os.path.join(ROOT, *path)) as f:
    return f.read()


def _first_block():
  return re.search(r"```(?:bash|sh)?\n(.*?)```", _read("README.md"), re.S).group(1)


def test_readme_starts_with_the_install_and_run_command_and_the_test_command():
  lines = [l for l in _first_block().splitlines() if l.strip() and not l.startswith("#")]
  assert len(lines) == 2, lines
  install_and_run, test = lines
  assert install_and_run.startswith("pip install -e '.[test]' && python experiments/train.py")
  assert "--config=experiments/configs/" in install_and_run
  assert test.startswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
  test = [l for l in _first_block().splitlines() if l.startswith("python -m pytest")][0]
  ci_lines = [l.strip() for l in _read(".ci", "run").splitlines()]
  assert test.strip() in ci_lines


def test_the_readme_config_exists():
  cmd = _first_block().splitlines()
  cfg = re.search(r"--config=(\S+)", "\n".join(cmd)).group(1)
  assert os.path.exists(os.path.join(ROOT, cfg))
