"""Pause a request at a named point until the test releases it, so a test
can run another request to its end meanwhile and force an interleaving
without sleeping (tests/reliability/test_races.py). The points are the
crash hook's (plugin.testhook): the kernel and firewall steps, ``commit``,
and the network driver's own (``veth made``). For an app built in the
test's own process (``build(hook=...)``, and the fault hook of Links and
Firewall)."""
from __future__ import annotations

import threading


class Pause:
    """One request to stop at the first step of ``method`` whose name starts with ``step``."""

    # A paused request that is never released fails rather than hanging the suite.
    TIMEOUT_S = 60

    def __init__(self, method: str, step: str):
        self.method, self.step = method, step
        self._reached, self._go = threading.Event(), threading.Event()

    def wait_reached(self) -> None:
        if not self._reached.wait(self.TIMEOUT_S):
            raise TimeoutError(f"{self.method} never reached {self.step!r}")

    def release(self) -> None:
        self._go.set()

    def _stop(self) -> None:
        self._reached.set()
        if not self._go.wait(self.TIMEOUT_S):
            raise TimeoutError(f"{self.method} was paused at {self.step!r} and never released")


class Pauses:
    """A hook (``build(hook=...)``, and the fault hook of Links and
    Firewall) that pauses requests where ``at`` says, once each."""

    def __init__(self):
        self._waiting: list[Pause] = []
        self._lock = threading.Lock()

    def at(self, method: str, step: str) -> Pause:
        pause = Pause(method, step)
        with self._lock:
            self._waiting.append(pause)
        return pause

    def __call__(self, name: str) -> None:
        from flask import has_request_context, request

        if not has_request_context():
            return
        with self._lock:
            pause = next((p for p in self._waiting
                          if request.path == f"/{p.method}" and name.startswith(p.step)), None)
            if pause is not None:
                self._waiting.remove(pause)
        if pause is not None:
            pause._stop()
