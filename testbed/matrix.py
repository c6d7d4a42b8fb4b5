"""The dockerds the end-to-end suite runs every case on: Debian 12's own
(20.10) and the newer ones `make dockerds` unpacks from later Debian suites
under build/dockerd/<version>/ (contrib/fetch-dockerd.sh).

Each comes with the docker CLI, docker-proxy and docker-init of its own
package. The CLI must match: a newer CLI refuses some flags against an older
daemon. The proxy too: from 28.0 dockerd binds the host port itself and hands
the socket to docker-proxy (`-use-listen-fd`, moby
daemon/libnetwork/portmapper/proxy_linux.go), which an older docker-proxy
does not know ("failed to start docker-proxy, check that the current version
is in your $PATH"). All of them run on this machine's containerd and runc.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .server import REPO

FETCHED = REPO / "build/dockerd"


@dataclass(frozen=True)
class Build:
    """One dockerd and the binaries that go with it."""

    version: str        # as `dockerd --version` says it, e.g. "28.5.2"
    dockerd: str
    docker: str
    proxy: str          # --userland-proxy-path
    init: str           # --init-path
    origin: str         # where it came from, for the report

    @property
    def id(self):
        """The test id: the major.minor release, e.g. dockerd-28.5."""
        return "dockerd-" + ".".join(self.version.split(".")[:2])

    def missing(self):
        """What keeps this build from running here, or None."""
        for path in (self.dockerd, self.docker, self.proxy, self.init):
            if not Path(path).exists():
                return f"{path} is missing ({self.origin})"
        return None


def _version(dockerd):
    # "Docker version 20.10.24+dfsg1, build 5d6db84"
    out = subprocess.run([dockerd, "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    match = re.search(r"version (\d+\.\d+\.\d+)", out)
    return match.group(1) if match else "unknown"


SYSTEM = Build(version=_version("/usr/sbin/dockerd") if Path("/usr/sbin/dockerd").exists()
               else "system", dockerd="/usr/sbin/dockerd", docker="/usr/bin/docker",
               proxy="/usr/sbin/docker-proxy", init="/usr/bin/docker-init",
               origin="Debian 12 docker.io: apt-get install docker.io")


def _fetched(root):
    return Build(version=root.name, dockerd=str(root / "usr/sbin/dockerd"),
                 docker=str(root / "usr/bin/docker"),
                 proxy=str(root / "usr/sbin/docker-proxy"),
                 init=str(root / "usr/bin/docker-init"),
                 origin=f"{root}: make dockerds")


def _release(build):
    return tuple(int(part) for part in build.version.split("."))


def builds():
    """Debian 12's dockerd, then the fetched ones, oldest first."""
    fetched = [_fetched(root) for root in FETCHED.iterdir()
               if re.fullmatch(r"\d+\.\d+\.\d+", root.name)] if FETCHED.is_dir() else []
    return [SYSTEM, *sorted(fetched, key=_release)]

