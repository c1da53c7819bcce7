"""Name -> factory registries: how a config string becomes a loss, model, optimizer or trick.

Every switchable piece of gax is registered under a name; configs hold names and keyword
arguments only. An unknown name is an error that lists the known ones, never a silent default.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Generic, Iterator, TypeVar

T = TypeVar("T")


class BadArguments(TypeError, ValueError):
  """A registered factory was called with arguments it does not take (a config error, so also
  a `ValueError`)."""


class Registry(Generic[T]):
  """A mapping from names to objects (usually factories) of one kind.

  >>> losses = Registry("loss")
  >>> @losses.register("hinge")
  ... def hinge(): ...
  >>> losses.get("hinge") is hinge
  True
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, T] = {}

  def register(self, name: str, obj: T | None = None) -> Any:
    """Registers `obj` under `name`; usable as a decorator when `obj` is omitted."""

    def _add(o: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered")
      self._entries[name] = o
      return o

    return _add if obj is None else _add(obj)

  def get(self, name: str) -> T:
    """Returns the entry for `name`, or raises a `KeyError` naming the known entries."""
    try:
      return self._entries[name]
    except KeyError:
      close = difflib.get_close_matches(str(name), self._entries, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise KeyError(
          f"Unknown {self.kind} {name!r}.{hint} Known {self.kind} names: "
          f"{', '.join(sorted(self._entries))}."
      ) from None

  def build(self, name: str, **kwargs: Any) -> Any:
    """Calls the factory registered as `name` with `kwargs`, reporting bad arguments by name."""
    factory: Callable[..., Any] = self.get(name)  # type: ignore[assignment]
    try:
      return factory(**kwargs)
    except TypeError as e:
      raise BadArguments(f"Bad arguments for {self.kind} {name!r}: {e}") from e

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(sorted(self._entries))

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._entries)

  def names_in_order(self) -> list[str]:
    """The registered names in registration order."""
    return list(self._entries)


__all__ = ["BadArguments", "Registry"]
