"""How the etcd client names a TLS connection the server turned away.

A server that wants a client certificate and got none says so with an alert
(during the handshake under TLS 1.2, after the client's side of it under
TLS 1.3), or just closes or resets the connection; the 503 must give the
likely reason whichever it was. A one-shot server on 127.0.0.1 reads the
ClientHello and answers it each of these ways, so the exceptions are the
ones ssl, urllib3, requests and etcd3gw really raise and wrap, not copies.
(The real etcd, with both TLS versions: tests/multihost/test_etcd_tls.py.)
"""
from __future__ import annotations

import socket
import struct
import threading

import pytest
import requests

from cluster.etcd import Etcd, EtcdUnavailable, _short

HINT = "(does etcd want a client certificate?)"


def _alert(code: int):
    def send(conn: socket.socket) -> None:
        conn.sendall(bytes([0x15, 3, 3, 0, 2, 2, code]))  # a TLS record: a fatal alert
    return send


def _close(conn: socket.socket) -> None:
    pass  # closed on return: the client reads EOF in the middle of the protocol


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


ANSWERS = {"alert bad certificate (TLS 1.2)": _alert(42), "alert certificate required (TLS 1.3)": _alert(116),
           "alert handshake failure": _alert(40), "close": _close, "reset": _reset}


@pytest.fixture
def refusing():
    """Starts a server that answers its one connection with ``answer``; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads = []

    def start(answer) -> int:
        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                answer(conn)
        threads.append(threading.Thread(target=serve, daemon=True))
        threads[-1].start()
        return listener.getsockname()[1]

    yield start
    for thread in threads:
        thread.join(5)
    listener.close()


@pytest.mark.parametrize("answer", ANSWERS)
def test_a_refusal_of_tls_without_a_client_certificate_gets_the_hint(refusing, answer):
    url = f"https://127.0.0.1:{refusing(ANSWERS[answer])}"
    with pytest.raises(EtcdUnavailable) as refused:
        Etcd([url]).get("k")
    assert f"({url}: TLS handshake failed: " in str(refused.value) and str(refused.value).endswith(f"{HINT})")


@pytest.mark.parametrize("answer", ANSWERS)
def test_with_a_client_certificate_the_same_refusal_says_only_its_cause(refusing, answer):
    with pytest.raises(requests.ConnectionError) as refused:
        requests.post(f"https://127.0.0.1:{refusing(ANSWERS[answer])}", timeout=5)
    said = _short(refused.value, certless=False)
    assert HINT not in said and "TLS handshake" not in said
    assert said == _short(refused.value, certless=True).removeprefix("TLS handshake failed: ").removesuffix(f" {HINT}")


def test_a_reset_of_plain_http_gets_no_hint(refusing):
    url = f"http://127.0.0.1:{refusing(_reset)}"
    with pytest.raises(EtcdUnavailable) as refused:
        Etcd([url]).get("k")
    assert HINT not in str(refused.value) and "TLS" not in str(refused.value)
