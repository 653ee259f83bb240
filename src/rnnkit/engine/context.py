"""The engine's context: one scope for how scans run, ``with engine.options(...):``.

Code above the engine never sets a kernel, a global flag or a layer's ``backend`` to change how
recurrences run; it asks the engine for a scope instead:

  backend        a kernel name, or names in order of preference (``("native", "reference")``):
                 every scan in the scope takes the first of them that supports it, whatever the
                 layers' own ``backend``; None keeps each layer's choice.
  packed_on_cpu  whether the native kernel takes masks on CPU as packed sequences (its backward
                 there costs O(T²), so by default it declines them: ``native.PACKED_ON_CPU``);
                 export turns it on, since a traced packed sequence keeps the mask in the graph.
  observe        an Observer (see ``engine.observe``): every scan in the scope runs the reference
                 loop, the oracle, and hands the observer each step's state and the gate values
                 the cell's own ``step`` reports. Diagnosis sees inside layers this way.

Scopes nest; an option left out keeps the enclosing scope's value. The scope belongs to the
current thread (a ``contextvars`` variable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

from ..errors import ConfigError


@dataclass(frozen=True)
class Options:
    backend: str | tuple[str, ...] | None = None
    packed_on_cpu: bool | None = None
    observe: object | None = None  # an engine.observe.Observer


_DEFAULTS = Options()  # frozen: safe to share as the variable's default
_CURRENT: ContextVar[Options] = ContextVar("rnnkit_engine_options", default=_DEFAULTS)
_KEEP = object()


def current() -> Options:
    """The options in force here (the defaults outside every scope)."""
    return _CURRENT.get()


@contextlib.contextmanager
def options(*, backend=_KEEP, packed_on_cpu=_KEEP, observe=_KEEP) -> Iterator[Options]:
    """A scope in which every scan runs with these options (see the module docstring)."""
    given = {k: v for k, v in (("backend", backend), ("packed_on_cpu", packed_on_cpu),
                               ("observe", observe)) if v is not _KEEP}
    if isinstance(given.get("backend"), list):
        given["backend"] = tuple(given["backend"])
    if given.get("backend") == ():
        raise ConfigError("engine.options: backend needs at least one kernel name")
    token = _CURRENT.set(replace(current(), **given))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)


def backend_for(layer_backend: str) -> str | tuple[str, ...]:
    """The backend a scan uses: the scope's, else the layer's own."""
    chosen = current().backend
    return layer_backend if chosen is None else chosen
