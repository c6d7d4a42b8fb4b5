"""Nothing of ours outlives the test run: a pytest plugin (registered by
tests/conftest.py) that fails the run if it does.

At session start (as root only: without root the tests can leave nothing)
it surveys what already exists; at session end, after the session
fixtures' teardown, it surveys again and reports every item that is new
and ours, then sets the exit status to "tests failed". An item is reported
only if it is still there after a grace of up to 10 s (something stopping
in a teardown may take a moment), polled every half second. What it checks,
all in the machine's own namespaces:

- processes: any that carries this run's mark in its environment,
  ``PT_TEST_RUN=<random>``, set at session start, so every process the
  tests start inherits it (dockerd, its containerd and shims, Pontoon
  servers and their gunicorn workers, etcd, docker-registry, the firewall
  lab's test servers, the two-host e2e mount-namespace holder...). A mark
  names its run: another engineer's run on this machine is never blamed.
  What runc starts gets an environment of its own, and so would the shims
  of the machine's own containerd: a ``runc`` (``runc init``) or
  ``containerd-shim-runc-v2`` without a mark counts when its command line
  or environment names an e2e containerd namespace, ``pe2e-<hex>`` or
  ``pe2e-<hex>-plugins`` (testbed/dockerd.py), that nothing named at
  session start. Processes inside containers (busybox, the managed
  plugin) are not looked at themselves: their shim is.
- network namespaces (``/run/netns``) named with a prefix the tests use:
  ``pe2e-`` (testbed/dockerd.py), ``ptns`` (testbed/sandbox.py),
  ``ptu`` and ``pth`` (testbed/underlay.py), ``pt-test-``
  (tests/datapath, tests/reliability/test_ownership.py), ``fwt-``
  (tests/datapath/firewall_env.py), ``ptf`` (test_fuzz.py), ``ptsoak``
  (test_longrun.py), ``ptports`` (tests/harness/test_host_ports.py); unless
  a process that is not ours runs in it (another run's daemon).
- links whose alias is ``pontoon:<instance>`` (every link Pontoon makes)
  or whose name starts with ``pt`` (Pontoon's own names, ``pt-``, ``ptv``,
  ``ptc``, ``ptx``, and those the tests make by hand) or ``fwt`` (the
  firewall lab's bridges and veths), from ``ip -d -j link``.
- iptables and ip6tables chains, of every table, named ``PONTOON...``
  (``PONTOON-``, ``PONTOONxxxx-``, the firewall tests' ``PONTOONTxxxx-``),
  from ``iptables-save`` and ``ip6tables-save``.
- mounts (``/proc/self/mountinfo``) under a test temp dir created during
  the run: ``pontoon-e2e-*`` (the e2e work dir: dockerd bind-mounts its
  data root), ``ptmh-*`` (the two-host e2e daemons), ``pontoon-perm-*``
  (test_freeze.py) or pytest's own ``pytest-of-*/pytest-N``; unless a
  process that is not ours names that dir (another run's dockerd, by its
  ``--data-root``). A netns mount is reported as its netns.
- plugin sockets ``/run/docker/plugins/pe2e*.sock`` (testbed/plugins.py)
  that nobody listens on.

A run of the suites that someone started during ours, without the mark
(older code), can still be blamed for its namespaces, links, chains and
mounts that outlive the grace: the report names each item so that a person
can tell.
"""
from __future__ import annotations

import glob
import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_ENV = "PT_TEST_RUN"  # not PONTOON_*: the e2e tier drops those from Pontoon's environment
GRACE = 10.0
NETNS = re.compile(r"^(pe2e-|ptns|ptu|pth|pt-test-|fwt-|ptf|ptsoak|ptports)[0-9a-f]")
LINK = re.compile(r"^(pt|fwt)")
E2E_NS = re.compile(r"pe2e-([0-9a-f]{6})")
RUNTIMES = ("containerd-shim-runc-v2", "runc")
TEMP_DIR = re.compile(r"^(.*?/(?:pontoon-e2e-|ptmh-|pontoon-perm-)[^/]+|.*?/pytest-of-[^/]+/pytest-\d+)(?:/|$)")
SOCKETS = "/run/docker/plugins/pe2e*.sock"


@dataclass
class Proc:
    pid: int
    start: str  # clock ticks after boot: with the PID, names the process even if the PID is reused
    argv: list[str]
    environ: list[str]
    net: str  # "net:[inode]"


def parse_mountinfo(text: str) -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) of each line of a mountinfo file."""
    mounts = []
    for line in text.splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, source = (tail.split() + ["", ""])[:2]
        mounts.append((_unescape(fields.split()[4]), fstype, _unescape(source)))
    return mounts


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def parse_chains(saved: str) -> list[tuple[str, str]]:
    """(table, chain) of every chain in iptables-save output."""
    chains, table = [], ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chains.append((table, line[1:].split()[0]))
    return chains


def parse_links(out: str) -> list[tuple[str, str, str]]:
    """(name, kind, alias) of each link in ``ip -d -j link`` output."""
    return [(link["ifname"], link.get("linkinfo", {}).get("info_kind", link.get("link_type", "")),
             link.get("ifalias", "")) for link in json.loads(out or "[]")]


def _output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:  # no such tool: then the tests made nothing of that kind
        return ""


def _processes():
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            environ = (entry / "environ").read_bytes().decode(errors="replace").split("\0")
            net = os.readlink(entry / "ns/net")
        except OSError:  # gone meanwhile
            continue
        yield Proc(int(entry.name), stat.rsplit(")", 1)[1].split()[19], argv, environ, net)


def _netns() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except FileNotFoundError:
        return []


def _held(name: str, nets: set[str]) -> bool:
    """Whether a process of ``nets`` (their "net:[inode]"s) runs in netns ``name``."""
    try:
        return f"net:[{os.stat(f'/run/netns/{name}').st_ino}]" in nets
    except OSError:  # deleted meanwhile: nothing left to report
        return True


def _temp_dirs() -> set[str]:
    tmp = tempfile.gettempdir()
    return {m[1] for path in glob.glob(f"{tmp}/*") + glob.glob(f"{tmp}/pytest-of-*/*")
            if (m := TEMP_DIR.match(path + "/"))}


def _served(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


class Leaks:
    """What exists at construction is never reported; ``check`` lists what
    is new and ours. ``run`` is the mark processes of this run carry."""

    def __init__(self, run: str):
        self.mark = f"{RUN_ENV}={run}"
        self.temp_dirs = _temp_dirs()
        self.e2e_seen = {h for p in _processes() for h in E2E_NS.findall(" ".join(p.argv + p.environ))}
        self.e2e_seen |= {h for name in _netns() for h in E2E_NS.findall(name)}
        self.before = set(self.survey())

    def _ours(self, p: Proc) -> str | None:
        """Why process ``p`` is this run's, or None."""
        if self.mark in p.environ:
            return f"carries {self.mark}"
        if any(var.startswith(RUN_ENV + "=") for var in p.environ) or p.pid == os.getpid():
            return None
        if p.argv and os.path.basename(p.argv[0]) in RUNTIMES:
            new = set(E2E_NS.findall(" ".join(p.argv + p.environ))) - self.e2e_seen
            if new:
                return f"runs containers of this run's e2e containerd namespace pe2e-{min(new)}"
        return None

    def survey(self) -> dict[tuple[str, str], str]:
        """{(kind, identity): what it is and why it is ours} of everything of
        ours there is now."""
        # Another run's live processes: the namespaces they run in and the
        # command lines naming its temp dirs (dockerd's --data-root).
        found, their_nets, their_argv = {}, set(), []
        for p in _processes():
            why = self._ours(p)
            if why:
                found["process", f"{p.pid}@{p.start}"] = f"pid {p.pid}: {' '.join(p.argv)[:300]} ({why})"
            else:
                their_nets.add(p.net)
                their_argv.append(" ".join(p.argv))
        their_argv = "\n".join(their_argv)
        for name in _netns():
            m = NETNS.match(name)
            if m and not _held(name, their_nets):
                found["netns", name] = f"{name} (a test namespace name, prefix {m[1]})"
        for name, kind, alias in parse_links(_output("ip", "-d", "-j", "link", "show")):
            if alias.startswith("pontoon:") or LINK.match(name):
                found["link", name] = f"{name} ({kind or 'link'}, alias {alias!r})"
        for family, save in (("ipv4", "iptables-save"), ("ipv6", "ip6tables-save")):
            for table, chain in parse_chains(_output(save)):
                if chain.startswith("PONTOON"):
                    ident = f"{family} {table} {chain}"
                    found["chain", ident] = f"{ident} (a Pontoon chain name)"
        for point, fstype, source in parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
            m = TEMP_DIR.match(point + "/")
            if m and m[1] not in self.temp_dirs and m[1] + "/" not in their_argv:
                found["mount", point] = f"{point} ({fstype} from {source}; under {m[1]}, made by this run)"
        for path in glob.glob(SOCKETS):
            if not _served(path):
                found["socket", path] = f"{path} (an e2e plugin socket nobody listens on)"
        return found

    def check(self, grace: float = GRACE) -> dict[tuple[str, str], str]:
        """What is new and ours, and still there after up to ``grace`` s."""
        left = {k: v for k, v in self.survey().items() if k not in self.before}
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.survey()
            # Only what stays all along: not a thing that is still stopping,
            # nor one that another run makes and removes meanwhile.
            left = {k: v for k, v in left.items() if k in now}
        return left


_LEAKS = pytest.StashKey[Leaks]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        return
    run = secrets.token_hex(8)
    os.environ[RUN_ENV] = run  # every process the tests start inherits it
    session.config.stash[_LEAKS] = Leaks(run)


# trylast: after pytest's own sessionfinish, which tears the session fixtures down.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    leaks = session.config.stash.get(_LEAKS, None)
    if leaks is None:
        return
    left = leaks.check()
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    write("")
    write(f"LEAKS: {len(left)} thing(s) of this test run outlived it (see tests/leaks.py):")
    for (kind, _), what in sorted(left.items()):
        write(f"  {kind:8} {what}")
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
