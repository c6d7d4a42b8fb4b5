"""The Docker plugin protocols as data: one JSON Schema (draft 2020-12) per body.

Files are named ``<Interface>.<Method>.request.json`` / ``.response.json``,
plus ``Error.response.json``.  ``jsonschema`` is imported only on the first
``validate`` call that needs it, so importing this module costs next to
nothing, and neither do the bodyless calls (see ``_accepts_any_object``).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["SpecError", "methods", "schema", "validate"]

_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+){1,2}$")
_MAX_VALUE = 80  # characters of an offending value quoted in a message


class SpecError(ValueError):
    """A body does not match its schema; the message names field path and value."""


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """Schema ``name`` (e.g. ``"IpamDriver.RequestPool.request"``), loaded once.

    The returned dict is shared: do not modify it.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise LookupError(f"no schema named {name!r}")
    path = _DIR / f"{name}.json"
    if not path.is_file():
        raise LookupError(f"no schema named {name!r}")
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _methods() -> tuple[str, ...]:
    suffix = ".request.json"
    return tuple(sorted(p.name[: -len(suffix)] for p in _DIR.glob("*" + suffix)))


def methods() -> list[str]:
    """Every ``<Interface>.<Method>`` that has a request schema, sorted."""
    return list(_methods())


# Keywords that describe a schema without constraining what it accepts.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples"})


@lru_cache(maxsize=None)
def _accepts_any_object(name: str) -> bool:
    """Whether schema ``name`` asks nothing of a body but to be an object:
    the calls dockerd makes without a body (Plugin.Activate first of all).
    Answering them without jsonschema keeps its import (about 50 ms) off
    the first request a fresh server gets."""
    constraints = {k: v for k, v in schema(name).items() if k not in _ANNOTATIONS}
    return constraints == {"type": "object"}


@lru_cache(maxsize=1)
def _validator_class():
    """Draft 2020-12 with "pattern" as a full match.

    jsonschema runs "pattern" under ``re.search``, where "$" also matches
    before a final newline: "^[a-z]+$" let "abc\n" through as an ID. A full
    match leaves no such gap whatever anchors a schema writes.
    """
    from jsonschema import Draft202012Validator, validators  # lazy: keeps the idle footprint small
    from jsonschema.exceptions import ValidationError

    def pattern(_validator, regex, instance, _schema):
        if isinstance(instance, str) and _compiled(regex).fullmatch(instance) is None:
            yield ValidationError(f"{instance!r} does not match {regex!r}")

    return validators.extend(Draft202012Validator, {"pattern": pattern})


@lru_cache(maxsize=None)
def _compiled(regex: str) -> re.Pattern:
    return re.compile(regex)


@lru_cache(maxsize=None)
def _validator(name: str):
    return _validator_class()(schema(name))


def validate(name: str, body) -> None:
    """Raise SpecError if ``body`` does not match schema ``name``."""
    if isinstance(body, dict) and _accepts_any_object(name):
        return
    from jsonschema.exceptions import best_match

    error = best_match(_validator(name).iter_errors(body))
    if error is not None:
        raise SpecError(_message(error)) from None


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _value(value) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _field(parts) -> str:
    return f'field "{_path(parts)}"' if parts else "body"


def _message(error) -> str:
    parts, value = list(error.absolute_path), error.instance
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        missing = next(k for k in expected if k not in value)
        return f"{_field(parts + [missing])} is missing"
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = sorted(k for k in value if k not in known)[0]
        return f"{_field(parts + [extra])} is not allowed"
    if kind == "not":  # {"not": {}} marks a field that must be absent
        return f"{_field(parts)} is not allowed here"
    head = f"{_field(parts)}: {_value(value)}"
    if kind == "type":
        types = [expected] if isinstance(expected, str) else expected
        return head + " is not of type " + " or ".join(f'"{t}"' for t in types)
    if kind == "enum":
        return head + " is not one of " + ", ".join(_value(v) for v in expected)
    if kind == "const":
        return head + f" is not {_value(expected)}"
    if kind == "pattern":
        return head + f" does not match {expected}"
    if kind in ("minLength", "minItems") and expected == 1:
        return head + " must not be empty"
    if kind in ("minLength", "maxLength", "minItems", "maxItems"):
        unit = "characters" if "Length" in kind else "items"
        bound = "at least" if kind.startswith("min") else "at most"
        return head + f" must have {bound} {expected} {unit}"
    if kind == "uniqueItems":
        return head + " has duplicate items"
    return head + f" is invalid ({error.message})"
