"""An undo stack spanning the kernel, the firewall and the store.

``datapath.steps`` undoes the steps inside one kernel operation; this undoes
whole operations (bridge, then firewall, then the store commit) when a later
one fails. An undo that fails is logged and never hides the original error.
"""
from __future__ import annotations

import contextlib
import logging

log = logging.getLogger(__name__)


class Rollback(contextlib.ExitStack):
    def undo(self, what: str, fn, *args) -> None:
        def quietly():
            try:
                fn(*args)
            except Exception:
                log.exception("rollback: %r failed", what)

        self.callback(quietly)

    def commit(self) -> None:
        """Everything succeeded: forget the undos."""
        self.pop_all()
