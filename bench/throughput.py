"""TCP throughput between two containers with iperf3, Pontoon network
against a builtin bridge network, interleaved.

The image is the busybox one with Debian's iperf3 and the shared libraries
ldd names copied in (``docker build`` from the local busybox image, so no
registry is involved)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .docker_env import DockerEnv
from .stats import alternating, pair_ratios

IPERF3 = "/usr/bin/iperf3"
SECONDS = 5


def build_image(env: DockerEnv, workdir: Path) -> str:
    tag = "iperf3:local"
    context = workdir / "iperf3-image"
    rootfs = context / "rootfs"
    ldd = subprocess.run(["ldd", IPERF3], capture_output=True, text=True, check=True).stdout
    # "libx.so => /lib/.../libx.so (0x...)" and the loader "/lib64/ld-linux... (0x...)"
    files = [IPERF3] + [word for word in ldd.split() if word.startswith("/")]
    for path in files:
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target, follow_symlinks=True)
    (context / "Dockerfile").write_text(f"FROM {env.image}\nCOPY rootfs/ /\n")
    env.docker("build", "-q", "-t", tag, str(context), timeout=300)
    return tag


def _client(env: DockerEnv, image: str, kind: str, server_ip: str) -> float:
    out = env.docker("run", "--rm", "--network", env.networks[kind], image,
                     "iperf3", "-c", server_ip, "-t", str(SECONDS), "-J", timeout=120).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def run(env: DockerEnv, workdir: Path, pairs: int) -> dict:
    image = build_image(env, workdir)
    servers = {}
    for kind, network in env.networks.items():
        name = env.name(f"iperf-{kind}")
        env.docker("run", "-d", "--name", name, "--network", network, image, "iperf3", "-s")
        servers[kind] = env.docker("inspect", "-f",
                                   "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                                   name).stdout.strip()
    samples = []
    for order in alternating(pairs, "pontoon", "bridge"):
        got = {kind: _client(env, image, kind, servers[kind]) for kind in order}
        samples.append((got["pontoon"], got["bridge"]))
    return pair_ratios(samples)
