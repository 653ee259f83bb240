"""Objects described by their ``get_config()``: initializers and constraints (Keras's way)."""

from __future__ import annotations

from typing import Self


class Configured:
    """Equal when of the same class with the same config, hashed and shown by it, rebuilt from
    it by ``from_config``: subclasses define ``get_config`` (the constructor's arguments)."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Self:
        return cls(**config)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
