"""Multi-step kernel changes with an undo stack and a fault-injection hook.

Every operation that takes several kernel steps runs them through ``Steps``:

    with Steps(faults) as steps:
        steps.run("add bridge br0", add, undo=delete)
        steps.run("set mtu br0", set_mtu)

If step k raises, steps k-1..1 are undone in reverse order and a
``DatapathError`` naming step k is raised from the original error. A failing
undo is logged and never replaces the original error.

``faults`` is a test hook: a callable receiving each step's name before it
runs, which may raise to simulate the kernel refusing that step. Production
passes ``None``.
"""
from __future__ import annotations

import logging
from typing import Callable

from .errors import DatapathError

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]


class Steps:
    def __init__(self, faults: FaultHook | None = None):
        self._faults = faults
        self._undo: list[tuple[str, Callable[[], object]]] = []

    def run(self, name: str, do: Callable[[], object], undo: Callable[[], object] | None = None):
        try:
            if self._faults is not None:
                self._faults(name)
            result = do()
        except DatapathError:
            raise
        except Exception as exc:  # any kernel or tool error becomes a named step error
            raise DatapathError(name, exc) from exc
        if undo is not None:
            self._undo.append((name, undo))
        return result

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._undo.clear()
            return
        while self._undo:
            name, undo = self._undo.pop()
            try:
                undo()
            except Exception:  # logged, the original error is what the caller sees
                log.exception("undo of step %r failed after %r", name, exc)
