"""contrib/apt-mirror.sh: which of the machine's apt sources is its Debian
mirror, for contrib/build-rootfs.sh and contrib/fetch-dockerd.sh. Each test
writes a sources tree of its own (APT_SOURCES_ROOT); the hosts are under
.example, so none is a real mirror."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testbed.server import REPO

HELPER = REPO / "contrib" / "apt-mirror.sh"
MIRROR = "http://mirror.example/debian"
SECURITY = "http://security.example/debian-security"


@pytest.fixture
def apt(tmp_path):
    """An empty /etc/apt."""
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    return subprocess.run([str(HELPER), *args], env={**environ, "APT_SOURCES_ROOT": str(root), **env},
                          capture_output=True, text=True, timeout=30)


def mirror(root: Path, codename: str = "bookworm") -> str:
    proc = run(root, codename)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_deb822_skips_the_security_stanza_listed_first(apt):
    (apt / "sources.list.d/debian.sources").write_text(f"""\
Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# a comment inside a stanza does not end it
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main contrib
""")
    assert mirror(apt) == MIRROR


def test_deb822_stanza_must_be_enabled_deb_and_main(apt):
    (apt / "sources.list.d/debian.sources").write_text(f"""\
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://vendor.example/linux/debian
Suites: bookworm
Components: stable

types: deb deb-src
uris: {MIRROR}
suites: bookworm
components: main
""")
    assert mirror(apt) == MIRROR


def test_one_line_with_options_skips_security_listed_first(apt):
    (apt / "sources.list").write_text(f"""\
# deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {SECURITY} bookworm-security main
deb-src {MIRROR}-src bookworm main
deb [ arch=amd64 ] http://vendor.example/linux/debian bookworm stable
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} bookworm contrib main
""")
    assert mirror(apt) == MIRROR


def test_apt_reading_order_across_formats(apt):
    # sources.list comes first, then sources.list.d/ by name, whichever the
    # format; names apt does not read are skipped.
    deb822 = "Types: deb\nURIs: {}\nSuites: bookworm\nComponents: main\n"
    (apt / "sources.list.d/a.list.disabled").write_text("deb http://disabled.example/debian bookworm main\n")
    (apt / "sources.list.d/b.sources").write_text(deb822.format("http://b.example/debian"))
    (apt / "sources.list.d/c.list").write_text("deb http://c.example/debian bookworm main\n")
    assert mirror(apt) == "http://b.example/debian"
    (apt / "sources.list").write_text("deb http://first.example/debian bookworm main\n")
    assert mirror(apt) == "http://first.example/debian"


def test_the_codename_picks_the_release(apt):
    (apt / "sources.list.d/debian.sources").write_text(f"""\
Types: deb
URIs: http://old.example/debian
Suites: bullseye

Types: deb
URIs: {MIRROR}
Suites: bookworm
Components: main
""")
    assert mirror(apt, "bookworm") == MIRROR
    # The first stanza has no main component: no mirror for bullseye.
    assert run(apt, "bullseye").returncode == 1


def test_default_codename_is_the_machines(apt):
    release = Path("/etc/os-release")
    if not release.exists():
        pytest.skip("no /etc/os-release")
    fields = dict(line.split("=", 1) for line in release.read_text().splitlines() if "=" in line)
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if not codename:
        pytest.skip("/etc/os-release names no VERSION_CODENAME")
    (apt / "sources.list").write_text(f"deb {MIRROR} {codename} main\n")
    proc = run(apt)
    assert (proc.returncode, proc.stdout.strip()) == (0, MIRROR)


def test_no_mirror_fails_and_names_the_override(apt):
    (apt / "sources.list.d/debian.sources").write_text(f"Types: deb\nURIs: {SECURITY}\nSuites: bookworm-security\n"
                                               "Components: main\n")
    proc = run(apt, "bookworm")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "DEBIAN_MIRROR" in proc.stderr


def test_debian_mirror_overrides(apt):
    (apt / "sources.list").write_text(f"deb {MIRROR} bookworm main\n")
    proc = run(apt, "bookworm", DEBIAN_MIRROR="http://override.example/debian")
    assert (proc.returncode, proc.stdout) == (0, "http://override.example/debian\n")
