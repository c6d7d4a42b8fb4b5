"""Durable state in SQLite: networks, endpoints, published ports, pools, addresses.

One database file under the state dir. Every request that changes state
commits in one ``BEGIN IMMEDIATE`` transaction before the reply leaves:
writers queue on a lock of the threads and processes (see ``Store.__init__``),
then take SQLite's write lock, and WAL with ``synchronous=FULL`` makes a
commit survive ``kill -9`` and power loss. Readers never block writers. Every
wait for a lock is bounded (``lock_timeout``) and ends in ``LockTimeout``.

The state dir is 0700 and its files 0600, whatever they were before
(``initialise``): a user who can open the database reads every network, and
one who can open a lock file can hold it and stop every request.

The network and IPAM drivers never import this module: ``plugin.app``
hands them a ``Store`` and they use the methods of the transaction object,
which together implement ``network_driver.store.NetworkStore`` and
``ipam_driver.store.IpamStore``.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sqlite3
import threading
from functools import lru_cache
from typing import Callable, Iterator, TypeVar

from datapath.locks import DEFAULT_TIMEOUT_S, FileLock, LockTimeout
from datapath.model import VETH_HOST_PREFIX
from datapath.names import tags
from spec.stored import AskerNetwork, StoredEndpoint, StoredNetwork, missing_endpoint_fields, missing_network_fields

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    bridge TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints (network_id);
-- A new network's tag and a new endpoint's veth name are picked among those
-- no stored one holds (datapath.names.tags): one indexed lookup each.
CREATE INDEX IF NOT EXISTS networks_by_tag ON networks (json_extract(data, '$.tag'));
CREATE INDEX IF NOT EXISTS endpoints_by_veth ON endpoints (json_extract(data, '$.host_veth'));
-- The endpoints of one container (its sandbox): every DNS query asks which
-- networks the asking container is on (Transaction.asker_networks).
CREATE INDEX IF NOT EXISTS endpoints_by_sandbox ON endpoints (json_extract(data, '$.sandbox'));
-- Which endpoint holds an address of a network: CreateEndpoint refuses an
-- address in use with one lookup rather than reading every endpoint.
CREATE TABLE IF NOT EXISTS endpoint_ips (
    network_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    PRIMARY KEY (network_id, ip)
) WITHOUT ROWID;
-- And of any network: a query to the host-wide DNS address names no network.
CREATE INDEX IF NOT EXISTS endpoint_ips_by_ip ON endpoint_ips (ip);
CREATE TABLE IF NOT EXISTS ports (
    proto TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    host_ip TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    PRIMARY KEY (proto, host_port, host_ip)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ports_by_endpoint ON ports (endpoint_id);
CREATE TABLE IF NOT EXISTS pools (
    id TEXT PRIMARY KEY,
    space TEXT NOT NULL,
    v6 INTEGER NOT NULL,
    -- first and last address as fixed-width hex, so that text order is
    -- numeric order and overlap is two comparisons on an index
    lo TEXT NOT NULL,
    hi TEXT NOT NULL,
    data TEXT NOT NULL,
    -- lower bound of the lowest free address of the default range: keeps
    -- "lowest free" from rescanning the allocated prefix of the pool
    hint TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pools_by_range ON pools (v6, lo, hi);
CREATE TABLE IF NOT EXISTS addresses (
    pool_id TEXT NOT NULL,
    addr TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (pool_id, addr)
) WITHOUT ROWID;
-- The container name dockerd 29 gives with an address (RequestAddress's
-- com.docker.network.endpoint.name), until CreateEndpoint takes it into the
-- endpoint. A table of its own rather than a column: no migration, and an
-- older database simply has no names.
CREATE TABLE IF NOT EXISTS address_names (
    pool_id TEXT NOT NULL,
    addr TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (pool_id, addr)
) WITHOUT ROWID;
"""

DB_NAME = "pontoon.db"
R = TypeVar("R")


def hexaddr(value: int) -> str:
    """An address as 32 hex digits: v4 and v6 sort numerically as text."""
    return f"{value:032x}"


class Store:
    def __init__(self, state_dir: str, before_commit: Callable[[], None] | None = None,
                 lock_timeout: float = DEFAULT_TIMEOUT_S):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, DB_NAME)
        self.lock_timeout = lock_timeout
        # Writers queue on this lock rather than in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms: with 16 concurrent
        # requests some waited seconds while later ones got the write lock
        # first. The threads of a process queue on its threading lock, the
        # gunicorn workers on its flock of a file beside the database.
        self._writer = FileLock(self.path + ".writer", "the store's write lock", lock_timeout)
        # Connections are kept open and reused: opening and closing one per
        # transaction was a fifth of a request's CPU under load, and when the
        # last connection to a WAL database closes SQLite checkpoints the WAL
        # into the database file (more fsyncs) and deletes it. A pool rather
        # than one per thread: as many as requests ran at once, so sequential
        # requests keep reusing one however many threads gunicorn has used.
        self._idle: list[sqlite3.Connection] = []
        self._idle_pid = os.getpid()
        self._idle_lock = threading.Lock()
        # Test hook (plugin.testhook): runs after a request's work and just
        # before its COMMIT. Production passes None.
        self._before_commit = before_commit

    def initialise(self) -> None:
        """Create the state dir and tables, and take the dir and its files
        from other users; called once by the server at start."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        restrict(self.state_dir)
        with contextlib.closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            _migrate(db)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """An idle connection of this process, or a new one, for one
        transaction. A connection must not be used across fork: a gunicorn
        worker starts its own pool and leaves the inherited one untouched."""
        with self._idle_lock:
            if self._idle_pid != os.getpid():
                self._idle, self._idle_pid = [], os.getpid()
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
            db.execute("PRAGMA synchronous=FULL")
        try:
            yield db
        finally:
            with self._idle_lock:
                self._idle.append(db)

    def _connect(self) -> sqlite3.Connection:
        # SQLite makes the -wal and -shm files with the database's mode, and
        # the database itself with the umask's: 0600 either way (see restrict).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        # The busy timeout bounds a wait for SQLite's own lock, which only a
        # process outside our queue (another tool on the database) can hold.
        return sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None,
                               check_same_thread=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Transaction"]:
        """A write transaction: committed on normal exit, rolled back on error."""
        with self._writer.held(), self._connection() as db:
            self._begin(db)
            try:
                yield Transaction(db)
                if self._before_commit is not None:
                    self._before_commit()
                db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT: the connection is kept, and must
                # not stay inside a transaction.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _begin(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            raise LockTimeout(f"SQLite's write lock ({self.path})", self.lock_timeout) from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Transaction"]:
        """A read-only view, for answers that change nothing."""
        with self._connection() as db:
            db.execute("BEGIN")
            try:
                yield Transaction(db)
            finally:
                db.execute("ROLLBACK")


class Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    # -- networks -----------------------------------------------------------
    def get_network(self, network_id: str) -> StoredNetwork | None:
        return self._one(_parsed_network, "SELECT data FROM networks WHERE id = ?", network_id)

    def network_by_bridge(self, bridge: str) -> StoredNetwork | None:
        return self._one(_parsed_network, "SELECT data FROM networks WHERE bridge = ?", bridge)

    def network_by_tag(self, tag: str) -> StoredNetwork | None:
        return self._one(_parsed_network, "SELECT data FROM networks WHERE json_extract(data, '$.tag') = ?", tag)

    def put_network(self, network: StoredNetwork) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO networks (id, bridge, data) VALUES (?, ?, ?)",
            (network.id, network.bridge, json.dumps(network.to_json())),
        )

    def delete_network(self, network_id: str) -> None:
        self._db.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    def list_networks(self) -> list[StoredNetwork]:
        return [StoredNetwork.from_json(n) for n in self._all("SELECT data FROM networks ORDER BY id")]

    # -- endpoints ----------------------------------------------------------
    def get_endpoint(self, endpoint_id: str) -> StoredEndpoint | None:
        return self._one(_parsed_endpoint, "SELECT data FROM endpoints WHERE id = ?", endpoint_id)

    def endpoint_by_veth(self, host_veth: str) -> StoredEndpoint | None:
        return self._one(_parsed_endpoint, "SELECT data FROM endpoints WHERE json_extract(data, '$.host_veth') = ?", host_veth)

    def add_endpoint(self, endpoint: StoredEndpoint) -> None:
        """A new endpoint, with its addresses claimed in its network."""
        self.put_endpoint(endpoint)
        _claim_ips(self._db, endpoint.network_id, endpoint.id, endpoint.addresses)

    def put_endpoint(self, endpoint: StoredEndpoint) -> None:
        """Store a changed endpoint (its addresses never change)."""
        self._db.execute(
            "INSERT OR REPLACE INTO endpoints (id, network_id, data) VALUES (?, ?, ?)",
            (endpoint.id, endpoint.network_id, json.dumps(endpoint.to_json())),
        )

    def address_holder(self, network_id: str, ip: str) -> str | None:
        """The endpoint of ``network_id`` that holds ``ip`` (bare), if any."""
        row = self._db.execute(
            "SELECT endpoint_id FROM endpoint_ips WHERE network_id = ? AND ip = ?", (network_id, ip)
        ).fetchone()
        return None if row is None else row[0]

    def asker_networks(self, ip: str, network_id: str | None) -> list[AskerNetwork]:
        """The networks of the container whose address (bare) on network
        ``network_id`` is ``ip``: every network its sandbox is on (its own
        alone while it is not joined). ``network_id`` None: on whichever
        network holds ``ip``, and none when two do (neither container's).
        Every DNS query asks (cluster.mode.ClusterMode._askers): one query,
        on the indexes of addresses and sandboxes, reading the few fields it
        needs rather than parsing the records."""
        rows = self._db.execute("""
            WITH holder AS (SELECT endpoint_id FROM endpoint_ips WHERE ip = :ip
                                AND (:network_id IS NULL OR network_id = :network_id)),
                 asker AS (SELECT network_id, json_extract(data, '$.sandbox') AS sandbox FROM endpoints
                           WHERE id = (SELECT endpoint_id FROM holder) AND (SELECT count(*) FROM holder) = 1),
                 mine AS (SELECT network_id FROM asker
                          UNION SELECT network_id FROM endpoints
                          WHERE json_extract(data, '$.sandbox') = (SELECT sandbox FROM asker WHERE sandbox != ''))
            SELECT id, json_extract(data, '$.cluster.pool'), json_extract(data, '$.cluster.lost') FROM networks
            WHERE id IN (SELECT network_id FROM mine)""", {"ip": ip, "network_id": network_id})
        return [AskerNetwork(network, pool, bool(lost)) for network, pool, lost in rows]

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._db.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
        self._db.execute("DELETE FROM endpoint_ips WHERE endpoint_id = ?", (endpoint_id,))
        self._db.execute("DELETE FROM ports WHERE endpoint_id = ?", (endpoint_id,))

    def list_endpoints(self, network_id: str | None = None) -> list[StoredEndpoint]:
        if network_id is None:
            found = self._all("SELECT data FROM endpoints ORDER BY id")
        else:
            found = self._all("SELECT data FROM endpoints WHERE network_id = ? ORDER BY id", network_id)
        return [StoredEndpoint.from_json(e) for e in found]

    # -- published host ports -------------------------------------------------
    def ports_in_use(self, proto: str) -> list[tuple[int, str, str]]:
        """(host_port, host_ip, endpoint_id) of every published port of ``proto``."""
        rows = self._db.execute(
            "SELECT host_port, host_ip, endpoint_id FROM ports WHERE proto = ?", (proto,)
        )
        return [tuple(r) for r in rows]

    def add_port(self, proto: str, host_port: int, host_ip: str, endpoint_id: str) -> None:
        self._db.execute(
            "INSERT INTO ports (proto, host_port, host_ip, endpoint_id) VALUES (?, ?, ?, ?)",
            (proto, host_port, host_ip, endpoint_id),
        )

    def delete_ports(self, endpoint_id: str) -> None:
        self._db.execute("DELETE FROM ports WHERE endpoint_id = ?", (endpoint_id,))

    # -- IPAM pools ---------------------------------------------------------
    def get_pool(self, pool_id: str) -> dict | None:
        row = self._db.execute("SELECT data, hint FROM pools WHERE id = ?", (pool_id,)).fetchone()
        if row is None:
            return None
        pool = json.loads(row[0])
        pool["hint"] = int(row[1], 16)
        return pool

    def overlapping_pools(self, v6: bool, first: int, last: int, space: str | None = None) -> list[dict]:
        sql = "SELECT data FROM pools WHERE v6 = ? AND lo <= ? AND hi >= ?"
        args: list = [int(v6), hexaddr(last), hexaddr(first)]
        if space is not None:
            sql += " AND space = ?"
            args.append(space)
        return [json.loads(r[0]) for r in self._db.execute(sql, args)]

    def add_pool(self, pool: dict, first: int, last: int, hint: int) -> None:
        data = {k: v for k, v in pool.items() if k != "hint"}
        self._db.execute(
            "INSERT INTO pools (id, space, v6, lo, hi, data, hint) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (pool["id"], pool["space"], int(pool["v6"]), hexaddr(first), hexaddr(last),
             json.dumps(data), hexaddr(hint)),
        )

    def set_pool_hint(self, pool_id: str, hint: int) -> None:
        self._db.execute("UPDATE pools SET hint = ? WHERE id = ?", (hexaddr(hint), pool_id))

    def delete_pool(self, pool_id: str) -> None:
        self._db.execute("DELETE FROM addresses WHERE pool_id = ?", (pool_id,))
        self._db.execute("DELETE FROM address_names WHERE pool_id = ?", (pool_id,))
        self._db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))

    def list_pools(self) -> list[dict]:
        return self._all("SELECT data FROM pools ORDER BY space, v6, lo")

    # -- IPAM addresses -------------------------------------------------------
    def address_taken(self, pool_id: str, addr: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM addresses WHERE pool_id = ? AND addr = ?", (pool_id, hexaddr(addr))
        ).fetchone()
        return row is not None

    def add_address(self, pool_id: str, addr: int, kind: str) -> None:
        self._db.execute(
            "INSERT INTO addresses (pool_id, addr, kind) VALUES (?, ?, ?)",
            (pool_id, hexaddr(addr), kind),
        )

    def delete_address(self, pool_id: str, addr: int) -> bool:
        self._db.execute("DELETE FROM address_names WHERE pool_id = ? AND addr = ?", (pool_id, hexaddr(addr)))
        cur = self._db.execute(
            "DELETE FROM addresses WHERE pool_id = ? AND addr = ?", (pool_id, hexaddr(addr))
        )
        return cur.rowcount > 0

    def name_address(self, pool_id: str, addr: int, name: str) -> None:
        """Give an allocated address the name of the container it is for."""
        self._db.execute("INSERT OR REPLACE INTO address_names (pool_id, addr, name) VALUES (?, ?, ?)",
                         (pool_id, hexaddr(addr), name))

    def address_name(self, space: str, ip: str) -> str | None:
        """The name given with address ``ip`` (bare) of a pool of ``space``
        (pools of one space never overlap), if any."""
        parsed = ipaddress.ip_address(ip)
        row = self._db.execute(
            "SELECT n.name FROM address_names n JOIN pools p ON p.id = n.pool_id "
            "WHERE p.space = ? AND p.v6 = ? AND n.addr = ? AND p.lo <= ? AND p.hi >= ?",
            (space, int(parsed.version == 6), hexaddr(int(parsed)), hexaddr(int(parsed)), hexaddr(int(parsed))),
        ).fetchone()
        return None if row is None else row[0]

    def taken_from(self, pool_id: str, start: int) -> Iterator[int]:
        """Allocated addresses of the pool from ``start`` upwards, in order, lazily."""
        rows = self._db.execute(
            "SELECT addr FROM addresses WHERE pool_id = ? AND addr >= ? ORDER BY addr",
            (pool_id, hexaddr(start)),
        )
        return (int(r[0], 16) for r in rows)

    def list_addresses(self, pool_id: str) -> list[tuple[int, str]]:
        rows = self._db.execute(
            "SELECT addr, kind FROM addresses WHERE pool_id = ? ORDER BY addr", (pool_id,)
        )
        return [(int(a, 16), k) for a, k in rows]

    # -- helpers --------------------------------------------------------------
    # Networks and endpoints are typed here, where they leave SQLite (spec.stored).
    def _one(self, parse: Callable[[str], R], sql: str, *args) -> R | None:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else parse(row[0])

    def _all(self, sql: str, *args) -> list[dict]:
        return [json.loads(r[0]) for r in self._db.execute(sql, args)]


# A record parsed strictly costs several times its json.loads, and a
# container's start reads its network three times and its endpoint twice
# or more. The stored text is the key, so a changed record is a new key and
# nothing needs invalidating; the records are frozen, and one that does not
# parse raises again at every read (lru_cache keeps no exceptions).
# Readers share one object: a record's dicts (aux, adopted, exposed, the
# Program request) are never changed in place, only replaced (dataclasses.replace).
# Bounded, as a host's records are not: a few hundred KiB at most.
@lru_cache(maxsize=128)
def _parsed_network(data: str) -> StoredNetwork:
    return StoredNetwork.from_json(json.loads(data))


@lru_cache(maxsize=128)
def _parsed_endpoint(data: str) -> StoredEndpoint:
    return StoredEndpoint.from_json(json.loads(data))


def restrict(state_dir: str) -> None:
    """The state dir 0700 and every file in it 0600, whatever they were
    (``mkdir -p`` leaves a dir 0755, a managed plugin's mount is the host's).
    Files made later are 0600 by their own open modes and the umask."""
    os.chmod(state_dir, 0o700)
    with os.scandir(state_dir) as entries:
        for entry in entries:
            # A symlink is not followed: chmod would change its target.
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o600)


def _claim_ips(db: sqlite3.Connection, network_id: str, endpoint_id: str, addresses) -> None:
    for address in addresses:
        db.execute(
            "INSERT INTO endpoint_ips (network_id, ip, endpoint_id) VALUES (?, ?, ?)",
            (network_id, address.split("/")[0], endpoint_id),
        )


def _tag_records(db: sqlite3.Connection) -> None:
    """Give networks and endpoints stored before tags their tag: an
    endpoint's is in its veth name already; a network's is its ID's first
    12 characters, which named its chain, unless an earlier network (by ID)
    holds them, and then its next choice: two such networks shared a chain,
    and now the start-up reconcile gives the second one of its own."""
    held: set[str] = set()
    for (data,) in db.execute("SELECT data FROM networks ORDER BY id").fetchall():
        network = json.loads(data)
        network["tag"] = next(t for t in tags(network["id"]) if t not in held)
        # How an adopted bridge was before went unrecorded: its release
        # takes our gateway addresses off and changes nothing else.
        network.setdefault("adopted", None)
        held.add(network["tag"])
        db.execute("UPDATE networks SET data = ? WHERE id = ?", (json.dumps(network), network["id"]))
    for (data,) in db.execute("SELECT data FROM endpoints").fetchall():
        endpoint = json.loads(data)
        endpoint["tag"] = endpoint["host_veth"][len(VETH_HOST_PREFIX):]
        db.execute("UPDATE endpoints SET data = ? WHERE id = ?", (json.dumps(endpoint), endpoint["id"]))


def _index_endpoint_ips(db: sqlite3.Connection) -> None:
    """Fill endpoint_ips for endpoints stored before it existed."""
    for (data,) in db.execute("SELECT data FROM endpoints").fetchall():
        endpoint = json.loads(data)
        _claim_ips(db, endpoint["network_id"], endpoint["id"],
                   [a for a in (endpoint.get("address"), endpoint.get("address_v6")) if a])


def _fill_defaults(db: sqlite3.Connection) -> None:
    """Give networks and endpoints stored by earlier versions the fields
    those left out, with their defaults (spec.stored: gateway modes,
    trusted interfaces, masquerade addresses, IPv4, encryption; a port
    generation), so that the records are read strictly."""
    for table, fill in (("networks", missing_network_fields), ("endpoints", missing_endpoint_fields)):
        for record_id, data in db.execute(f"SELECT id, data FROM {table}").fetchall():
            record = json.loads(data)
            filled = fill(record)
            if filled != record:
                db.execute(f"UPDATE {table} SET data = ? WHERE id = ?", (json.dumps(filled), record_id))


# PRAGMA user_version n means MIGRATIONS[:n] have run on the database.
MIGRATIONS = (_index_endpoint_ips, _tag_records, _fill_defaults)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring records stored by an earlier version up to date, once, in one
    transaction: a crash half-way leaves the old version to migrate again."""
    db.execute("BEGIN IMMEDIATE")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for step in MIGRATIONS[version:]:
        step(db)
    db.execute(f"PRAGMA user_version = {max(version, len(MIGRATIONS))}")
    db.execute("COMMIT")
