"""TCP relays between a client and etcd that fail on the wire, from
outside the code under test: one whose open connections go silent (a lost
FIN, a NAT that forgot the connection) while new ones are relayed as ever,
and one that also cuts its client off (REJECT or DROP)."""
from __future__ import annotations

import socket
import threading


class SilentableRelay:
    def __init__(self, target: tuple[str, int]):
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._open: list[threading.Event] = []  # one per relayed connection: set while it may deliver
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def silence_open_connections(self) -> None:
        """Every connection open now delivers nothing more, either way."""
        with self._lock:
            for flowing in self._open:
                flowing.clear()

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        """Relay ``client`` to the target (a subclass may hold or refuse it)."""
        try:
            upstream = socket.create_connection(self._target, timeout=2)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        flowing = threading.Event()
        flowing.set()
        with self._lock:
            self._open.append(flowing)
            self._sockets += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst, flowing), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if flowing.is_set():
                    dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class CuttableRelay(SilentableRelay):
    """A SilentableRelay that can also cut its host off from etcd: open
    connections go silent, and new ones are refused (a firewall's REJECT)
    or accepted and never answered (a DROP, so each call waits for its read
    timeout). A connection etcd refuses (etcd down) is closed rather than
    ending the relay, as the network would reset it."""

    def __init__(self, target):
        self.mode = ""  # "", "reject" or "drop"
        self._held: list[socket.socket] = []  # dropped connections, kept open and unanswered
        super().__init__(target)

    def cut(self, mode: str) -> None:
        self.mode = mode
        self.silence_open_connections()

    def mend(self) -> None:
        self.mode = ""
        for sock in self._held:
            sock.close()
        self._held = []

    def _admit(self, client: socket.socket) -> None:
        if self.mode == "drop":
            self._held.append(client)
        elif self.mode == "reject":
            client.close()
        else:
            super()._admit(client)

    def close(self) -> None:
        self.mend()
        super().close()
