"""Checks of config and flag values shared by the modules, so that one kind of bad value gets
one kind of error message wherever it is given."""

from __future__ import annotations

import numbers
from typing import Any


def integer(value: Any, name: str, minimum: int = 1, note: str = "") -> int:
  """`value` as an `int` when it is an integer (Python or NumPy, not a bool) >= `minimum`;
  otherwise a `ValueError` naming `name`, with `note` (e.g. " (1: off)") after the bound.

  >>> integer(3, "maxout_pieces")
  3
  >>> integer(True, "packing", note=" (1: off)")
  Traceback (most recent call last):
  ...
  ValueError: packing must be an integer >= 1 (1: off), got True.
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}{note}, got {value!r}.")
  return int(value)
