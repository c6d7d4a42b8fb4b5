"""Container start on a real dockerd, one at a time and in a burst of 30,
Pontoon network against a builtin bridge network, interleaved in pairs."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .docker_env import DockerEnv
from .stats import alternating, pair_ratios

PING_TIMEOUT_S = 60


def start_one(env: DockerEnv, kind: str) -> float:
    begin = time.perf_counter()
    env.docker("run", "--rm", "--network", env.networks[kind], env.image, "true")
    return time.perf_counter() - begin


def single(env: DockerEnv, pairs: int) -> dict:
    for kind in ("pontoon", "bridge"):
        start_one(env, kind)  # warm: image layers, first netns, ARP
    samples = []
    for order in alternating(pairs, "pontoon", "bridge"):
        got = {kind: start_one(env, kind) for kind in order}
        samples.append((got["pontoon"], got["bridge"]))
    return pair_ratios(samples)


def _pings(env: DockerEnv, address: str) -> bool:
    # From dockerd's network namespace (testbed/dockerd.py runs it in a private one):
    # from the bench's own namespace no container is reachable.
    deadline = time.monotonic() + PING_TIMEOUT_S
    while time.monotonic() < deadline:
        if env.dockerd.host("ping", "-c1", "-W1", address, check=False).returncode == 0:
            return True
    return False


def burst_once(env: DockerEnv, kind: str, round_: int, size: int) -> float:
    """Seconds from starting ``size`` containers at once until every one is
    running and answers a ping from the host (dockerd's namespace)."""
    names = [env.name(f"b{round_}{kind[0]}{i}") for i in range(size)]
    network = env.networks[kind]
    with ThreadPoolExecutor(size) as pool:
        begin = time.perf_counter()
        list(pool.map(lambda n: env.docker("run", "-d", "--name", n, "--network", network,
                                           env.image, "sleep", "600"), names))
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        addresses = env.docker("inspect", "-f", fmt, *names).stdout.split()
        reached = list(pool.map(lambda a: _pings(env, a), addresses))
        took = time.perf_counter() - begin
    env.docker("rm", "-f", *names, timeout=300)
    if len(addresses) != size or not all(reached):
        raise RuntimeError(f"burst on {kind}: {reached.count(True)} of {size} answered")
    return took


def burst(env: DockerEnv, pairs: int, size: int) -> dict:
    samples = []
    for round_, order in enumerate(alternating(pairs, "pontoon", "bridge")):
        got = {kind: burst_once(env, kind, round_, size) for kind in order}
        samples.append((got["pontoon"], got["bridge"]))
    return pair_ratios(samples)
