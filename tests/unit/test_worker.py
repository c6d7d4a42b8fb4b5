"""plugin.worker.whole_request: when the event loop may give a connection
to a thread. The slow-client behaviour itself is tested with real sockets
against the real server in tests/reliability/test_freeze.py."""
import pytest

from plugin.worker import BUFFER_LIMIT, whole_request
from tests.reliability.hostile import HALF_REQUESTS

HEAD = b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("buf", [
    HEAD + b"\r\n",
    HEAD + b"Content-Length: 2\r\n\r\n{}",
    HEAD + b"content-length:2\r\n\r\n{}",
    HEAD + b"Content-Length: 2\r\nAccept: x\r\n\r\n{}",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    HEAD + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n",  # the body follows the 100
    HEAD + b"Content-Length: 999999999\r\n\r\n" + b"x" * BUFFER_LIMIT,  # the rest read by the thread
    b"x" * BUFFER_LIMIT,  # a head too long for gunicorn's parser: it refuses it
])
def test_whole(buf):
    assert whole_request(buf)


@pytest.mark.parametrize("buf", [
    *HALF_REQUESTS,
    HEAD + b"Content-Length: 2\r\n\r\n{",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
    HEAD + b"X-Content-Length: 0\r\nContent-Length: 2\r\n\r\n{",
])
def test_not_yet(buf):
    assert not whole_request(buf)
