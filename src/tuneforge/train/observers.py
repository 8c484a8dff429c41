"""Extra Trainer callbacks for the runs started inside a block: how a driver (the sweep's pruner) watches the
ordinary `run_training` without a second code path through the stages."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_OBSERVERS: contextvars.ContextVar[tuple] = contextvars.ContextVar("tuneforge_run_observers", default=())


@contextlib.contextmanager
def observe(*callbacks) -> Iterator[None]:
    """Every Trainer built by `train.common.callbacks` inside this block also gets `callbacks`."""
    token = _OBSERVERS.set((*_OBSERVERS.get(), *callbacks))
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


def observers() -> list:
    return list(_OBSERVERS.get())
