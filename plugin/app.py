"""The Flask app: one POST route per protocol method, one error envelope.

Transport as dockerd does it: no Content-Type on requests, empty bodies for
calls without arguments, unknown top-level fields ignored, errors as
``{"Err": message}`` with a 4xx/5xx status. Nothing answers with a
traceback: an unexpected exception is logged in full and answered with a
short message naming the method.
"""
from __future__ import annotations

import json
import logging
from typing import Callable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import spec
from datapath.errors import DatapathError, InvalidName, NameConflict
from datapath.locks import LockTimeout
from spec.errors import ProtocolError

log = logging.getLogger("pontoon")

CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
MAX_BODY = 1 << 20
# dockerd's bodies nest four levels at most (Options, a portmap, its entries).
MAX_DEPTH = 32
IMPLEMENTS = ["NetworkDriver", "IpamDriver"]

Method = Callable[[dict], dict]


def create_app(methods: dict[str, Method]) -> Flask:
    """``methods`` maps "Interface.Method" to a callable(body) -> reply body."""
    table = {"Plugin.Activate": lambda _body: {"Implements": IMPLEMENTS}, **methods}
    app = Flask("pontoon")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.post("/<method>")
    def dispatch(method: str) -> Response:
        handler = table.get(method)
        if handler is None:
            return _reply(404, {"Err": f'unknown method "/{method}"'})
        body = _read_body()
        spec.validate(f"{method}.request", body)
        return _reply(200, handler(body))

    @app.errorhandler(Exception)
    def on_error(exc: Exception) -> Response:
        status, message = _describe(exc)
        if status >= 500:
            log.error("%s %r failed: %r", request.method, request.path, message, exc_info=exc)
        else:
            # %r: a message quotes request values, and a newline in one
            # must not start a log line of its own.
            log.info("%s %r refused (%d): %r", request.method, request.path, status, message)
        return _reply(status, {"Err": message})

    return app


def _read_body() -> dict:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise spec.SpecError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise spec.SpecError(f"request body must be a JSON object, not {type(body).__name__}")
    # json.loads stops near Python's recursion limit, but what it accepts
    # may still be too deep for jsonschema or json.dumps further down the
    # stack. Every "[" or "{" could open a level, so a body with fewer of
    # them than the limit (every request dockerd sends) skips the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise _too_deep()
    # JSON may escape a lone UTF-16 surrogate ("\ud800"), which Python
    # decodes into a str that SQLite, the kernel and the log cannot encode;
    # only a \u escape can make one (the UTF-8 decoder refuses surrogate
    # bytes), so other bodies skip the check.
    if b"\\u" in raw:
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise spec.SpecError("request body contains a lone Unicode surrogate escape") from None
    return body


def _too_deep() -> spec.SpecError:
    return spec.SpecError(f"request body nests objects or lists deeper than {MAX_DEPTH} levels")


def _depth(body) -> int:
    """How deeply ``body`` nests lists and objects, found without recursion."""
    deepest, stack = 0, [(body, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ProtocolError):
        return exc.status, str(exc)
    if isinstance(exc, spec.SpecError):
        return 400, str(exc)
    if isinstance(exc, InvalidName):
        return 400, str(exc)
    if isinstance(exc, NameConflict):
        return 409, str(exc)
    if isinstance(exc, LockTimeout):
        # Busy, not broken: dockerd shows the message, the user may retry.
        return 503, str(exc)
    if isinstance(exc, DatapathError):
        return 500, f"kernel step failed: {exc}"
    if isinstance(exc, RequestEntityTooLarge):
        return 413, f"request body is larger than {MAX_BODY} bytes"
    if isinstance(exc, HTTPException):
        return exc.code or 500, f"{exc.name} ({request.method} {request.path})"
    return 500, f"internal error in {request.path} ({type(exc).__name__}); see the plugin log"


def _reply(status: int, body: dict) -> Response:
    return Response(json.dumps(body), status=status, content_type=CONTENT_TYPE)
