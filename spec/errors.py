"""The error envelope of both protocols.

dockerd reads ``{"Err": message}`` from any non-200 reply and shows the
message to the user, so each message names the field or object and the
value. Drivers raise these; ``plugin.app`` turns them into replies.
"""


class ProtocolError(Exception):
    status = 500


class BadRequest(ProtocolError):
    status = 400


class NotFound(ProtocolError):
    status = 404


class Conflict(ProtocolError):
    status = 409


def found(obj, message: str):
    """``obj``, or a 404 saying ``message`` when the lookup found nothing."""
    if obj is None:
        raise NotFound(message)
    return obj
