"""Registries of the parts people swap, one shape for all (as torch-fidelity's ``registry.py``).

Each part registers under a name with a decorator beside its definition::

    @LOSSES.register("hinge")
    class Hinge(GANLoss): ...

and params.yaml names it (``train.loss: hinge``). The config validates every such key against
its registry when it is loaded, so an unknown name fails before any work with one line listing
the valid ones. A registry imports the modules holding its built-in entries the first time it
is asked, so importing a registry costs nothing and a part's module never imports the config.
Outside code adds entries the same way (``LOSSES.register("mine")(MyLoss)``) before loading
the config that names them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from ganpkg.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; ``key`` is the params key that picks one (e.g. train.loss)."""

    def __init__(self, key: str, builtins: tuple[str, ...]):
        self.key = key
        self._builtins = builtins  # modules whose import registers the built-in entries
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a class or function."""
        def add(entry: T) -> T:
            known = self._entries.get(name)
            if known is not None and known is not entry:
                raise ValueError(f"{self.key}: {name!r} is registered already ({known!r})")
            self._entries[name] = entry
            return entry

        return add

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtins:
                importlib.import_module(module)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_builtins()
        return sorted(self._entries)

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name is a UserError listing the valid ones."""
        if name not in self:
            raise UserError(f"{self.key}: {name!r} unknown; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def check(self, name: str) -> str:
        """``name`` if registered (for validators: pydantic turns the ValueError into one line)."""
        if name not in self:
            raise ValueError(f"{name!r} unknown; allowed: {', '.join(self.names())}")
        return name


ARCHITECTURES: Registry = Registry("model.arch", ("ganpkg.networks",))
LOSSES: Registry = Registry("train.loss", ("ganpkg.losses",))
DATA_SOURCES: Registry = Registry("data.source", (
    "ganpkg.data.sources", "ganpkg.data.source_mnist", "ganpkg.data.source_torchvision"))
FEATURE_EXTRACTORS: Registry = Registry("eval.extractor", ("ganpkg.evaluation.extractors",))
