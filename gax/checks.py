"""Checks of config and flag values shared by the modules, so that one kind of bad value gets
one kind of error message wherever it is given."""

from __future__ import annotations

import numbers
from typing import Any, Optional


def integer(value: Any, name: str, minimum: Optional[int] = 1, note: str = "") -> int:
  """`value` as an `int` when it is an integer (Python or NumPy, not a bool) >= `minimum`
  (None: no bound); otherwise a `ValueError` naming `name`, with `note` (e.g. " (1: off)")
  after the bound.

  >>> integer(3, "maxout_pieces")
  3
  >>> integer(True, "packing", note=" (1: off)")
  Traceback (most recent call last):
  ...
  ValueError: packing must be an integer >= 1 (1: off), got True.
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
      minimum is not None and value < minimum):
    bound = "" if minimum is None else f" >= {minimum}"
    raise ValueError(f"{name} must be an integer{bound}{note}, got {value!r}.")
  return int(value)


__all__ = ["integer"]
