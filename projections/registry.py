"""The read models of a process by name: what the runner feeds, what the CLI rebuilds and reports on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from projections.read_model_types import Projection, TrackedReadModel
from projections.status import Source


class UnknownReadModel(LookupError):
    """No tracked read model of that name; the message lists the known ones."""


@dataclass
class ReadModels:
    """In-memory read models (every process builds its own at start) and tracked ones (persistent,
    exactly once, rebuildable), registered by the composition root under unique names."""

    in_memory: dict[str, Projection] = field(default_factory=dict)
    tracked: dict[str, TrackedReadModel] = field(default_factory=dict)

    def add_in_memory(self, name: str, model: Projection) -> None:
        """Register an in-memory read model."""
        self._check_free(name)
        self.in_memory[name] = model

    def add_tracked(self, model: TrackedReadModel) -> None:
        """Register a tracked read model under its own ``name``."""
        self._check_free(model.name)
        self.tracked[model.name] = model

    def tracked_named(self, name: str) -> TrackedReadModel:
        """The tracked read model called ``name``, or :class:`UnknownReadModel`."""
        model = self.tracked.get(name)
        if model is None:
            known = ", ".join(sorted(self.tracked)) or "none"
            raise UnknownReadModel(f"unknown projection '{name}'; tracked projections: {known}")
        return model

    def names(self) -> set[str]:
        """Every registered read model's name."""
        return {*self.in_memory, *self.tracked}

    def sources(self, in_memory_position: Callable[[], int]) -> list[Source]:
        """Status sources: in-memory models at this process's position, tracked ones at their stored one."""
        return [Source(name, "in-memory", in_memory_position) for name in self.in_memory] + [
            Source(name, "tracked", model.stored_position) for name, model in self.tracked.items()
        ]

    def _check_free(self, name: str) -> None:
        if name in self.in_memory or name in self.tracked:
            raise ValueError(f"a read model called {name!r} is already registered")
