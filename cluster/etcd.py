"""etcd through its JSON gateway, on etcd3gw, plus what etcd3gw lacks.

etcd3gw gives HTTP calls for the v3 API (range, txn, put, lease grant and
keep-alive). Written here, once:

- bounded calls: every request has a connect and a read timeout of a few
  seconds and tries the endpoints in turn, so a call that needs etcd fails
  with ``EtcdUnavailable`` (503, naming the endpoints and the cause) while
  etcd is down, instead of hanging a dockerd request;
- chunked prefix reads (``read_prefix``): ``limit`` keys per request, all at
  one revision, so a large prefix is never one huge reply;
- create-if-absent transactions (``create``): the compare on
  ``create_revision == 0`` that every cluster allocation rests on;
- a lease with a keep-alive thread (``Lease``);
- a watch supervisor (``Watch``): read a prefix at revision R, watch from
  R+1, and read again when the stream breaks or etcd says R was compacted.

Keys and values are ``str`` here; the base64 of the gateway stays inside.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw import exceptions as etcd_errors

from spec.errors import ProtocolError

from . import keys

log = logging.getLogger("pontoon.cluster")

# Per HTTP call: connecting to a live etcd takes milliseconds, a commit a
# few; a dockerd call must fail within a few seconds when etcd is gone.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
CHUNK = 500  # keys per range request of a prefix read
RETRY_PAUSE_S = 1.0  # before reading again after a watch broke
MAX_RETRY_PAUSE_S = 8.0
KEEPALIVE_RETRY_S = 0.5  # after a failed keep-alive: the lease's time is running out
# A watch stream silent this long is taken as broken, and one open this
# long is read again in full anyway: a lost FIN, a NAT that forgot the
# connection, or a member cut off from its quorum can leave a stream open
# that never delivers again, and a watch must not be the only thing
# between a host and a stale datapath. (etcd's progress notifications come
# every 10 minutes by default: a busy cluster's streams stay open until the
# age bound; an idle network's record prefix is re-read every few minutes,
# one range read.)
WATCH_SILENCE_S = 120.0
# Asks etcd (its gRPC gateway passes Grpc-Metadata-* on as metadata) to
# cancel the watch when the member it reaches has no leader: such a member
# would serve a stale view.
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


class EtcdUnavailable(ProtocolError):
    """etcd could not be reached or did not answer in time."""

    status = 503


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode()


def prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (etcd's range_end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


def _kv(raw: dict) -> KeyValue:
    return KeyValue(_unb64(raw["key"]), _unb64(raw.get("value")), int(raw.get("create_revision", 0)),
                    int(raw.get("mod_revision", 0)), int(raw.get("lease", 0)))


@dataclass(frozen=True)
class Tls:
    """PEM file paths for https:// endpoints; empty ones are left to requests
    (the system's CAs, no client certificate)."""

    ca: str = ""
    cert: str = ""
    key: str = ""


def session(tls: Tls) -> requests.Session:
    """The HTTP session of one endpoint's client, its watch streams' too.
    (The tests wrap it to pin the TLS version.)"""
    made = requests.Session()
    made.verify = tls.ca or True
    if tls.cert:
        made.cert = (tls.cert, tls.key)
    # Only these settings count: requests would otherwise let
    # REQUESTS_CA_BUNDLE override the CA given here, and send the watch
    # streams through an HTTP proxy named in the environment.
    made.trust_env = False
    return made


class Etcd:
    """One client per endpoint URL; calls stick to the last one that answered."""

    def __init__(self, endpoints: list[str], timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                 tls: Tls = Tls()):
        self.endpoints = list(endpoints)
        # The longest one call can take before it fails: each endpoint tried
        # once, each bounded by its connect and read timeouts.
        self.call_bound = sum(timeout) * len(self.endpoints)
        self._connect_timeout = timeout[0]
        self._clients = []
        for url in self.endpoints:
            parts = urlsplit(url)
            if not parts.hostname:
                raise ValueError(f"etcd endpoint {url!r} names no host")
            # api_path given: etcd3gw would otherwise ask /version on first
            # use, one more round trip. 3.4+ serves /v3/ (the floor).
            client = Etcd3Client(host=parts.hostname, port=parts.port or 2379, protocol=parts.scheme or "http",
                                 # requests takes (connect, read); etcd3gw hands it on as it is
                                 timeout=timeout,  # type: ignore[arg-type]
                                 api_path="/v3/", session=session(tls))
            self._clients.append(client)
        self._current = 0
        self.chunk = CHUNK
        # The highest revision any reply of this client carried: every
        # write this client saw succeed is at or below it, every write made
        # after it was read is above (see cluster.host.ClusterHost.now_or_later).
        self.revision = 0
        self._revision_lock = threading.Lock()
        # Test hook (plugin.testhook), None in production: called with a
        # write's step name (``step_name``) just before it is sent.
        self.faults: Callable[[str], None] | None = None

    def _saw(self, reply) -> None:
        header = reply.get("header") if isinstance(reply, dict) else None
        revision = int((header or {}).get("revision") or 0)
        with self._revision_lock:
            self.revision = max(self.revision, revision)

    def call(self, path: str, body: dict, stream: bool = False, silence: float | None = None):
        """POST one v3 gateway call; the JSON reply, or the open response if
        ``stream`` (whose reads fail after ``silence`` seconds without a byte)."""
        errors = []
        for i in range(len(self._clients)):
            index = (self._current + i) % len(self._clients)
            client = self._clients[index]
            try:
                if stream:
                    resp = client.session.post(client.get_url(path), json=body, stream=True,
                                               timeout=(self._connect_timeout, silence), headers=REQUIRE_LEADER)
                    resp.raise_for_status()
                    result = resp
                else:
                    result = client.post(client.get_url(path), json=body)
                    self._saw(result)
            except (etcd_errors.ConnectionFailedError, etcd_errors.ConnectionTimeoutError,
                    requests.RequestException) as exc:
                certless = client.protocol == "https" and not client.session.cert
                errors.append(f"{self.endpoints[index]}: {_short(exc, certless)}")
                continue
            except etcd_errors.Etcd3Exception as exc:
                raise EtcdUnavailable(f"etcd refused {path}: {_short(exc)}") from None
            self._current = index
            return result
        raise EtcdUnavailable("etcd is unreachable (" + "; ".join(errors) + ")")

    # -- reads ---------------------------------------------------------------
    def get(self, key: str) -> KeyValue | None:
        reply = self.call("/kv/range", {"key": _b64(key)})
        kvs = reply.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def range(self, start: str, end: str, revision: int = 0, keys_only: bool = False) -> list[KeyValue]:
        """One chunk of [start, end): at most ``chunk`` keys."""
        return self._range(start, end, revision, keys_only)[0]

    def _range(self, start: str, end: str, revision: int, keys_only: bool) -> tuple[list[KeyValue], int, bool]:
        body = {"key": _b64(start), "range_end": _b64(end), "limit": self.chunk}
        if revision:
            body["revision"] = revision
        if keys_only:
            body["keys_only"] = True
        reply = self.call("/kv/range", body)
        return [_kv(r) for r in reply.get("kvs") or []], int(reply["header"]["revision"]), bool(reply.get("more"))

    def read_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` at one revision, ``chunk`` keys per call;
        returns them and that revision."""
        out: list[KeyValue] = []
        start, end, revision = prefix, prefix_end(prefix), 0
        while True:
            page, at, more = self._range(start, end, revision, False)
            revision = revision or at
            out += page
            if not more or not page:
                return out, revision
            start = page[-1].key + "\0"

    def counts(self, *prefixes: str) -> list[int]:
        """How many keys are under each prefix, at one revision, in one
        round trip that carries no key."""
        ops = [{"request_range": {"key": _b64(p), "range_end": _b64(prefix_end(p)), "count_only": True}}
               for p in prefixes]
        reply = self.txn([], ops)
        return [int(r["response_range"].get("count") or 0) for r in reply.get("responses") or []]

    # -- writes ----------------------------------------------------------------
    def txn(self, compare: list[dict], success: list[dict], failure: list[dict] | None = None) -> dict:
        if self.faults is not None and _kinds(success):  # a read-only one (``counts``) is no step
            self.faults(step_name("txn", success))
        return self.call("/kv/txn", {"compare": compare, "success": success, "failure": failure or []})

    def put(self, key: str, value: str, lease: int = 0) -> None:
        if self.faults is not None:
            self.faults(step_name("put", [put_op(key, value)]))
        self.call("/kv/put", put_op(key, value, lease)["request_put"])

    def delete(self, key: str) -> None:
        if self.faults is not None:
            self.faults(step_name("delete", [delete_op(key)]))
        self.call("/kv/deleterange", {"key": _b64(key)})


def step_name(op: str, ops: list[dict]) -> str:
    """A write's name for the test hook: ``etcd <op> <kinds>``, the record
    kinds (keys.py) its operations write or delete, in order, once each:
    ``etcd txn addrs held`` is an address claim, ``etcd put endpoints`` a
    publish."""
    return " ".join(["etcd", op, *_kinds(ops)])


def _kinds(ops: list[dict]) -> list[str]:
    out: list[str] = []
    for op in ops:
        inner = op.get("request_put") or op.get("request_delete_range")
        found = [_unb64(inner["key"])] if inner else []
        kinds = _kinds(op["request_txn"]["success"]) if "request_txn" in op else \
            [k.removeprefix(keys.ROOT).split("/")[0] for k in found]
        out += [k for k in kinds if k not in out]
    return out


# -- transaction parts --------------------------------------------------------------
def absent(key: str) -> dict:
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}


def present(key: str) -> dict:
    return {"key": _b64(key), "target": "VERSION", "result": "GREATER", "version": 0}


def unchanged(kv: KeyValue) -> dict:
    return {"key": _b64(kv.key), "target": "MOD", "result": "EQUAL", "mod_revision": kv.mod_revision}


def value_is(key: str, value: str) -> dict:
    return {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(value)}


def created_by(key: str, revision: int) -> dict:
    """``key`` was created at ``revision`` or before (true of a missing key:
    pair it with ``present`` or ``value_is``)."""
    return {"key": _b64(key), "target": "CREATE", "result": "LESS", "create_revision": revision + 1}


def written_by(key: str, revision: int) -> dict:
    """``key`` was last written at ``revision`` or before (true of a
    missing key: pair it with ``present``)."""
    return {"key": _b64(key), "target": "MOD", "result": "LESS", "mod_revision": revision + 1}


def written_by_under(prefix: str, revision: int) -> dict:
    """Every key under ``prefix`` was last written at ``revision`` or before
    (a compare over a range: etcd 3.3+)."""
    return {**written_by(prefix, revision), "range_end": _b64(prefix_end(prefix))}


def txn_op(compare: list[dict], success: list[dict], failure: list[dict] | None = None) -> dict:
    """A transaction inside a transaction's branch (etcd 3.3+)."""
    return {"request_txn": {"compare": compare, "success": success, "failure": failure or []}}


def put_op(key: str, value: str, lease: int = 0) -> dict:
    op: dict[str, str | int] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        op["lease"] = lease
    return {"request_put": op}


def range_op(start: str, end: str, limit: int, keys_only: bool = True) -> dict:
    """A read inside a transaction: the keys of [start, end), at most ``limit``."""
    return {"request_range": {"key": _b64(start), "range_end": _b64(end), "limit": limit, "keys_only": keys_only}}


def ranges(reply: dict) -> list[list[KeyValue]]:
    """The keys each ``range_op`` of a transaction's taken branch read, in order."""
    return [[_kv(r) for r in resp["response_range"].get("kvs") or []]
            for resp in reply.get("responses") or [] if "response_range" in resp]


def delete_op(key: str, prefix: bool = False) -> dict:
    op = {"key": _b64(key)}
    if prefix:
        op["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": op}


# What requests' message says the cause was, most telling first (for causes
# other than TLS errors and refusals, which _short finds in the chain).
_CAUSES = (
    r"\[Errno -?\d+\][^'\")]*",  # [Errno 111] Connection refused
    r"timed out",
)

# How a server that wants a client certificate turns away one that sent
# none: an alert (OpenSSL names every alert it receives "... alert ...":
# "sslv3 alert bad certificate", "tlsv13 alert certificate required"), or
# closing or resetting the connection. Under TLS 1.2 it comes during the
# handshake; under TLS 1.3 the client's side of the handshake is over before
# the server has seen the (missing) certificate, so it comes on the first
# read or write, as any of these.
_HUNG_UP = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it, outermost first. etcd3gw,
    requests and urllib3 each wrap the one below: as ``__context__`` or
    ``__cause__``, as MaxRetryError's ``reason``, or only as an argument
    (urllib3's SSLError(e), ProtocolError("Connection aborted.", e))."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        cause = todo.pop(0)
        if isinstance(cause, BaseException) and all(cause is not seen for seen in found):
            found.append(cause)
            todo += [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *cause.args]
    return found


def _refused(cause: BaseException) -> bool:
    return isinstance(cause, _HUNG_UP) or (isinstance(cause, ssl.SSLError) and "alert" in str(cause).lower())


def _short(exc: Exception, certless: bool = False) -> str:
    """The cause in a few words, not requests' paragraph about connection
    pools. ``certless``: TLS without a client certificate, so a refused
    connection gets the likely reason."""
    causes = _causes(exc)
    verify = [c for c in causes if isinstance(c, ssl.SSLCertVerificationError)]
    if verify:  # this side refused etcd's certificate (a wrong CA): no hint
        return _text(verify[0])
    refused = [c for c in causes if _refused(c)]
    if refused and certless:
        return f"TLS handshake failed: {_text(refused[0])} (does etcd want a client certificate?)"
    told = refused or [c for c in causes if isinstance(c, ssl.SSLError)]
    if told:
        return _text(told[0])
    text = (getattr(exc, "detail_text", None) or str(exc)).strip()
    for pattern in _CAUSES:
        cause = re.search(pattern, text)
        if cause:
            return cause.group(0).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _text(cause: BaseException) -> str:
    """``[SSL: REASON] what``, ``[Errno 104] Connection reset by peer``: the
    message without OpenSSL's source line."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(cause))


class Lease:
    """A lease and the thread that keeps it alive (at a third of its TTL,
    and every KEEPALIVE_RETRY_S after a failure: a host back from a short
    cut must not wait a third of the TTL to refresh a lease the cut has
    already eaten into, or a second short cut ends it, and with the grace
    lease a reclaim frees the addresses of a host that was barely away).

    If etcd stays away longer than the TTL, the lease is gone for good: the
    thread grants a new one and calls ``on_new`` so the keys that rode on
    the old one are written again (the host's liveness and its endpoints).
    """

    def __init__(self, etcd: Etcd, ttl: int, on_new: Callable[[int], None]):
        self._etcd = etcd
        self.ttl = ttl
        self._on_new = on_new
        self.id = 0
        self._stop = threading.Event()
        self._check = threading.Event()  # set: keep alive (or find it gone) now, not at the next tick
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Grant the lease (raising ``EtcdUnavailable``) and start keeping it."""
        self.id = self._grant()
        self._thread = threading.Thread(target=self._run, name="pontoon-lease", daemon=True)
        self._thread.start()
        return self.id

    def _grant(self) -> int:
        return int(self._etcd.call("/lease/grant", {"TTL": self.ttl, "ID": 0})["ID"])

    def _run(self) -> None:
        owed = False  # on_new has yet to succeed for the current lease: tried again each tick
        failed = False
        while not self._stop.is_set():
            self._check.wait(min(self.ttl / 3, KEEPALIVE_RETRY_S) if failed else self.ttl / 3)
            self._check.clear()
            if self._stop.is_set():
                return
            was_failing, failed = failed, False
            try:
                reply = self._etcd.call("/lease/keepalive", {"ID": self.id})
                if int(reply.get("result", {}).get("TTL", 0)) <= 0:
                    log.warning("lease %x expired while etcd was away: granting a new one", self.id)
                    self.id, owed = self._grant(), True
                if owed:
                    self._on_new(self.id)
                    owed = False
            except EtcdUnavailable as exc:
                # Once per outage: the quick retries would flood the log.
                log.log(logging.DEBUG if was_failing else logging.WARNING, "lease keep-alive failed: %s", exc)
                failed = True
            except Exception:
                log.exception("lease keep-alive failed")

    def renewed(self, stale: int, timeout: float) -> int:
        """The lease after ``stale``, which etcd said is gone: the keep-alive
        is asked to find that out now, and this waits up to ``timeout`` for
        its new lease (a call in the gap waits a moment rather than fail)."""
        deadline = time.monotonic() + timeout
        while self.id == stale and time.monotonic() < deadline and not self._stop.is_set():
            self._check.set()
            time.sleep(0.05)
        return self.id

    def stop(self, revoke: bool = True) -> None:
        self._stop.set()
        if revoke and self.id:
            try:
                self._etcd.call("/kv/lease/revoke", {"ID": self.id})
            except EtcdUnavailable:
                pass  # it expires by itself


class Watch:
    """The supervisor of one prefix: ``on_sync`` gets the full set of keys
    after every read (at start and after a break or a compaction), ``on_event``
    each change in between, in revision order. Runs in a thread of its own
    until ``stop``."""

    def __init__(self, etcd: Etcd, prefix: str, on_sync: Callable[[list[KeyValue]], None],
                 on_event: Callable[[str, KeyValue], None]):
        self._etcd = etcd
        self.prefix = prefix
        self._on_sync = on_sync
        self._on_event = on_event
        self._stop = threading.Event()
        self._response = None
        self.resyncs = 0  # reads after the first: tests and inspect see them
        self._thread = threading.Thread(target=self._run, name=f"pontoon-watch {prefix}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        # Closing the response from here would wait for the reader, blocked
        # in recv; shutting the socket down wakes it (it then closes).
        connection = getattr(response.raw, "connection", None) if response is not None else None
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def _run(self) -> None:
        first = True
        pause = RETRY_PAUSE_S
        while not self._stop.is_set():
            try:
                kvs, revision = self._etcd.read_prefix(self.prefix)
                if not first:
                    self.resyncs += 1
                first = False
                pause = RETRY_PAUSE_S
                self._on_sync(kvs)
                self._follow(revision + 1)
            except EtcdUnavailable as exc:
                # Backing off: while etcd is down, one line per network
                # every few seconds, not every second.
                log.warning("watch of %s: %s; again in %.0fs", self.prefix, exc, pause)
                pause = min(pause * 2, MAX_RETRY_PAUSE_S)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("watch of %s broke", self.prefix)
            self._stop.wait(pause)

    def _follow(self, revision: int) -> None:
        """Apply events from ``revision`` on; returns when a read is needed again."""
        body = {"create_request": {"key": _b64(self.prefix), "range_end": _b64(prefix_end(self.prefix)),
                                   "start_revision": revision, "progress_notify": True}}
        self._response = response = self._etcd.call("/watch", body, stream=True, silence=WATCH_SILENCE_S)
        read_again = time.monotonic() + WATCH_SILENCE_S
        try:
            for line in _lines(response):
                if self._stop.is_set() or time.monotonic() > read_again:
                    return
                result = json.loads(line).get("result") or {}
                if int(result.get("compact_revision") or 0):
                    log.info("watch of %s fell behind a compaction: reading again", self.prefix)
                    return
                if result.get("canceled"):
                    return
                for event in result.get("events") or []:
                    self._on_event(event.get("type", "PUT"), _kv(event["kv"]))
        except requests.exceptions.ConnectionError as exc:
            if not self._stop.is_set():  # a read timeout too: silent past the bound
                log.info("watch of %s: stream lost (%s): reading again", self.prefix, _short(exc))
        finally:
            response.close()
            self._response = None


def _lines(response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.strip():
            yield line.decode()

