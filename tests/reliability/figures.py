"""Figures the reliability tests measure, collected for docs/reliability.md.

Only when ``PONTOON_RELIABILITY_FIGURES`` names a JSON file (the
``make reliability`` script sets it); otherwise recording does nothing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "PONTOON_RELIABILITY_FIGURES"


def _update(change) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    file = Path(path)
    figures = json.loads(file.read_text()) if file.exists() else {}
    change(figures)
    file.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def record(name: str, value) -> None:
    _update(lambda figures: figures.__setitem__(name, value))


def append(name: str, value) -> None:
    _update(lambda figures: figures.setdefault(name, []).append(value))
