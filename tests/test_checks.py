"""gax.checks: one error message for one kind of bad value, wherever it is given."""

import doctest
import re

import numpy as np
import pytest

from gax import checks, evaluation, optimizers, sweep
from gax.metrics import features, kid
from gax.models import conditioning


def test_integer_accepts_python_and_numpy_integers_at_or_above_the_minimum():
  assert checks.integer(1, "n") == 1
  assert checks.integer(0, "n", minimum=0) == 0
  assert checks.integer(-5, "n", minimum=None) == -5
  value = checks.integer(np.int64(7), "n")
  assert value == 7 and type(value) is int


@pytest.mark.parametrize("value", [0, -3, True, False, 2.0, "2", None, np.float32(3)])
def test_integer_refuses_bools_floats_strings_and_small_values_naming_the_option(value):
  with pytest.raises(ValueError, match=rf"^top_k\.decay_every must be an integer >= 1, got "
                                       rf"{re.escape(repr(value))}\.$"):
    checks.integer(value, "top_k.decay_every")


def test_integer_puts_the_note_after_the_bound():
  with pytest.raises(ValueError, match=r"^packing must be an integer >= 1 \(1: off\), got 0\.$"):
    checks.integer(0, "packing", note=" (1: off)")


def test_the_modules_share_the_message():
  for call, message in [
      (lambda: sweep.seed_range(0), "--seeds must be an integer >= 1, got 0."),
      (lambda: conditioning.check_conditioning(-1, "none"),
       "model.num_classes must be an integer >= 0 (0: unconditional), got -1."),
      (lambda: optimizers.learning_rate_schedule(1e-3, warmup_steps=True),
       "warmup_steps must be an integer >= 0, got True."),
      (lambda: evaluation.EvalSettings.from_config({"num_samples": 5}),
       "config.eval.num_samples must be an integer >= 10, got 5."),
      (lambda: evaluation.EvalSettings.from_config({"batch_size": 2.0}),
       "config.eval.batch_size must be an integer >= 1, got 2.0."),
      (lambda: evaluation.EvalSettings.from_config({"every": 1.5}),
       "config.eval.every must be an integer, got 1.5."),
      (lambda: conditioning.check_sizes(8, 0, "nearest"),
       "model.d_class_dim must be an integer >= 1, got 0."),
      (lambda: kid.kid_from_features(np.zeros((4, 2)), np.zeros((4, 2)), subset_size=2,
                                     n_subsets=1.5),
       "KID: n_subsets must be an integer >= 1, got 1.5."),
      (lambda: features.compute_features(None, np.zeros((2, 1, 1, 1)), batch_size=False),
       "batch_size must be an integer >= 1, got False."),
  ]:
    with pytest.raises(ValueError) as e:
      call()
    assert str(e.value) == message


def test_doctests():
  assert doctest.testmod(checks).failed == 0
