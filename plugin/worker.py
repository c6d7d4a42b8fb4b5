"""gunicorn's threaded worker, reading each request in its event loop.

Why: gunicorn's gthread worker gives a connection to a thread as soon as it
is accepted (27.0 waits there up to 5 s for a first byte), and the thread
reads the request head and body with blocking ``recv()`` on a socket that
has no timeout. gunicorn's ``timeout`` does not help: the arbiter watches
only the worker's main loop, which stays alive meanwhile. So a client that
sends half a request and then nothing holds a thread for ever, ``threads``
such clients stop every dockerd call, and dockerd's plugin client has no
timeout of its own: ``docker run`` hangs.

Here a connection, new or kept alive, waits in the worker's poller, holding
no thread, until a whole request has arrived, read without blocking as it
comes; only then does a thread take it, and it finds the bytes already in
gunicorn's parser. A connection without a whole request within
``REQUEST_READ_S`` is closed by the loop (gunicorn's own reaper of pending
connections, which runs at least once a second).

What a thread still reads from the socket (the rest of a request longer than
``BUFFER_LIMIT``; dockerd's are a few KiB) and everything it writes is
bounded by kernel socket timeouts set on every accepted connection
(``SO_RCVTIMEO``/``SO_SNDTIMEO``): a blocking call then fails with EAGAIN
after ``SOCKET_TIMEOUT_S`` instead of waiting for ever.

Written against gunicorn 27's ``ThreadWorker`` (its ``enqueue_req``,
``pending_conns`` and ``TConn``), hence the version bound in pyproject.toml;
tests/reliability/test_freeze.py checks the behaviour with real sockets.
"""
from __future__ import annotations

import logging
import os
import re
import selectors
import socket
import struct
import time
from functools import partial

from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.gthread import ThreadWorker

# A whole request must arrive within this long of the connection being
# accepted, or of a kept-alive one becoming readable; dockerd writes a request
# at once, so anything slower is a stalled or hostile client.
REQUEST_READ_S = 3.0
SOCKET_TIMEOUT_S = 3.0
# At most this much of a request is buffered in the loop per connection, so
# the most a connection costs before it has a thread stays small.
BUFFER_LIMIT = 64 * 1024

_HEAD_END = b"\r\n\r\n"
# Every header line follows a CRLF (the request line comes first), and the
# head is searched with its last CRLF kept, so a value ends at a CR.
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*\r", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r]*chunked", re.IGNORECASE)
_LAST_CHUNK = b"0\r\n\r\n"
# A client that asks first waits for "100 Continue" (which the thread's
# gunicorn sends) before it sends the body.
_EXPECT = re.compile(rb"\r\nexpect[ \t]*:", re.IGNORECASE)


def whole_request(buf: bytes) -> bool:
    """Whether ``buf`` holds a whole request, or all of one worth buffering.
    gunicorn's parser judges the request itself: a wrong guess here only
    gives a thread a request that is not all there yet, which the socket
    timeout bounds."""
    end = buf.find(_HEAD_END)
    if end < 0:
        return len(buf) >= BUFFER_LIMIT  # a head this long is refused anyway
    head = buf[:end + 2]
    if _EXPECT.search(head):
        return True
    if _CHUNKED.search(head):
        return buf.endswith(_LAST_CHUNK) or len(buf) >= BUFFER_LIMIT
    length = _CONTENT_LENGTH.search(head)
    size = end + len(_HEAD_END) + (int(length.group(1)) if length else 0)
    return len(buf) >= min(size, BUFFER_LIMIT)


class Worker(ThreadWorker):
    def init_signals(self) -> None:
        super().init_signals()
        # A SIGTERM the master sent between the fork and here met the
        # master's own handler, inherited with the fork, and was lost: the
        # master would then wait graceful_timeout (30 s) for this worker.
        # The master unlinks its socket before it signals the workers, so a
        # socket file already gone means it is stopping: stop as well.
        if any(not os.path.exists(b[len("unix:"):]) for b in self.cfg.bind if b.startswith("unix:")):
            self.alive = False

    def enqueue_req(self, conn) -> None:
        """Runs in the main loop, for a connection just accepted or kept
        alive and readable again: wait there for its request."""
        if conn.parser is not None and conn.parser.unreader.buf.getvalue():
            # The last request's body drain read into a pipelined next one,
            # which a thread reads on (under the socket timeouts).
            super().enqueue_req(conn)
            return
        if not conn.initialized:
            timeval = struct.pack("ll", int(SOCKET_TIMEOUT_S), int(SOCKET_TIMEOUT_S % 1 * 1e6))
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        conn.request_bytes = bytearray()
        conn.sock.setblocking(False)
        # Mostly the request is there already (the connection became readable,
        # or the client wrote as soon as it connected): then it goes to a
        # thread without a round trip through the poller.
        if self._receive(conn):
            self._dispatch(conn)
            return
        # The pending queue stays ordered by deadline: everything in it waits
        # for the same REQUEST_READ_S (gunicorn adds to it only connections
        # its handle() gave back without data, which ours never are).
        conn.timeout = time.monotonic() + REQUEST_READ_S
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _sock) -> None:
        if self._receive(conn):
            self.poller.unregister(conn.sock)
            self.pending_conns.remove(conn)
            self._dispatch(conn)

    @staticmethod
    def _receive(conn) -> bool:
        """Read what has arrived; whether the connection is done waiting: a
        whole request is in ``request_bytes``, or the client is gone (None)."""
        try:
            data = conn.sock.recv(BUFFER_LIMIT)
        except BlockingIOError:
            return False
        except OSError:  # reset by the client
            data = b""
        if not data:
            conn.request_bytes = None
            return True
        conn.request_bytes += data
        return whole_request(conn.request_bytes)

    def _dispatch(self, conn) -> None:
        if conn.request_bytes is None:  # gone before sending a whole request
            self.nr_conns -= 1
            conn.close()
            return
        conn.init()  # blocking again, with gunicorn's parser (no TLS here)
        conn.parser.unreader.unread(bytes(conn.request_bytes))
        conn.request_bytes = None
        conn.data_ready = True
        super().enqueue_req(conn)


class Logger(GunicornLogger):
    """gunicorn's logger, building a request's access log line only when
    the access log would take it. Given a logging config, gunicorn builds
    every response's log atoms (its headers, the time formatted twice)
    before the logger drops them, and plugin.logs sets "gunicorn.access" to
    WARNING, below which gunicorn logs every request: about 30 us a request
    (make bench's profile), a tenth of what gunicorn itself costs one."""

    def access(self, resp, req, environ, request_time) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)
