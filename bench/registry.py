"""Registries: a name for each thing a user can choose (a model, a data set, a preset, an evaluator, a table, a
claim, a launcher), one error when the name is unknown, and one way to load a "module:attribute" target.

Every registry of the suite is a `Registry`: a dict whose missing name is a one-line `UnknownName` listing the
names it has, so that an unknown name reads the same wherever it is given.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownName(BenchError, KeyError):
    """A name no registry entry has (a KeyError too, so that `registry.get(name)` still returns its default)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(dict[str, T]):
    """name -> entry, in the order given; `registry[name]` of an unknown name raises `UnknownName`."""

    def __init__(self, kind: str, entries: Mapping[str, T] | Iterable[tuple[str, T]] = (), hint: str = ""):
        super().__init__(entries)
        self.kind, self.hint = kind, hint

    def __missing__(self, name: str) -> T:
        raise UnknownName(f"unknown {self.kind} '{name}'; choose one of {', '.join(self)}{self.hint}")

    def chosen(self, names: Iterable[str] | None) -> list[str]:
        """`names` checked against the registry, in the order given; all of its names when none are named (None or
        empty: a command line's list left out)."""
        if not names:
            return list(self)
        names = list(names)
        for name in names:
            self[name]  # an unknown name raises here
        return names


def load(target: str, what: str) -> object:
    """The attribute named by "package.module:attribute", or a one-line error saying which part is missing; `what`
    names it for the user (e.g. "model 'mine'")."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise BenchError(f"{what} must be given as package.module:Name, not '{target}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BenchError(f"{what}: cannot import module '{module_name}' ({error}); is it on PYTHONPATH?") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise BenchError(f"{what}: module '{module_name}' has no '{attribute}'") from None
