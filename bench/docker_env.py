"""A private dockerd with the busybox image, a Pontoon process it discovers,
and one network of each driver, reusing the end-to-end tier's helpers."""
from __future__ import annotations

import secrets
from pathlib import Path

from testbed.dockerd import Dockerd, build_busybox_image
from testbed.plugins import ProcessPontoon

from .subnets import Subnets


class DockerEnv:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.token = secrets.token_hex(3)
        self.dockerd = Dockerd(workdir / "dockerd")
        self.pontoon = ProcessPontoon(self.dockerd, workdir / "pontoon")
        self.image = ""
        self.networks: dict[str, str] = {}  # "pontoon" / "bridge" -> network name

    def start(self) -> None:
        self.dockerd.start()
        self.image = build_busybox_image(self.dockerd, self.workdir)
        (self.workdir / "pontoon").mkdir()
        self.pontoon.start()
        subnets = Subnets()
        for kind, driver, ipam in (("pontoon", self.pontoon.driver, self.pontoon.driver),
                                   ("bridge", "bridge", "default")):
            name = f"ptb-{self.token}-{kind}"
            # /22: room for a burst of 30 and then some.
            self.docker("network", "create", "-d", driver, "--ipam-driver", ipam,
                        "--subnet", subnets.next(22), name)
            self.networks[kind] = name

    def docker(self, *args, timeout: float = 120, check: bool = True):
        return self.dockerd.docker(*args, timeout=timeout, check=check)

    def name(self, what: str) -> str:
        return f"ptb-{self.token}-{what}"

    def stop(self) -> None:
        """Networks first (Pontoon deletes its bridge), then the plugin, then dockerd."""
        if self.dockerd.proc is not None:
            self.docker("rm", "-f", *self._containers(), check=False)
            for name in self.networks.values():
                self.docker("network", "rm", name, check=False)
        self.pontoon.stop()
        self.dockerd.stop()

    def _containers(self) -> list[str]:
        out = self.docker("ps", "-aq", "--filter", f"name=ptb-{self.token}-", check=False).stdout
        return out.split() or ["-"]
