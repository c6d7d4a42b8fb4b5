"""The floor for Pontoon's idle footprint: a bare Flask app answering every
POST with ``{}``, served by gunicorn on a Unix socket with Pontoon's worker
settings (gthread, 1 worker, 8 threads, same umask, no control socket).

``python -m bench.floor_app SOCKET_PATH``
"""
from __future__ import annotations

import sys

from flask import Flask
from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, app, options: dict):
        self._app, self._options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app


def main(socket_path: str) -> None:
    app = Flask("floor")

    @app.post("/<method>")
    def dispatch(method: str):
        return {}

    _Gunicorn(app, {
        "bind": [f"unix:{socket_path}"], "umask": 0o117, "workers": 1, "threads": 8,
        "worker_class": "gthread", "timeout": 120, "graceful_timeout": 30,
        "accesslog": None, "control_socket_disable": True,
    }).run()


if __name__ == "__main__":
    main(sys.argv[1])
