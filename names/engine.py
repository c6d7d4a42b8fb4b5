"""Containers' names from dockerd's Engine API, for dockerds before 29.

A remote driver never hears a container's name (CreateEndpoint and Join
carry none; dockerd 29 alone gives it to IPAM). dockerd's event stream
does tell which container joined which network, and the container's
inspect gives its name, its aliases on each network and the endpoint ID
there: enough to name the endpoint. So, in the cluster worker, a thread:

- follows ``/events`` filtered to network ``connect`` (a ``docker run``, a
  ``docker network connect --alias`` later) and container ``rename``, and
  acts only on networks ``networks()`` gives (the store's cluster
  networks): each such event costs one container inspect, and no other
  container is ever asked about. A disconnect needs nothing here: it is a
  DeleteEndpoint, which takes the record and its names;
- once the stream is open (so nothing falls between), catches up from
  ``GET /networks/<id>`` of those networks alone: the containers that
  joined while it was not following (Pontoon or dockerd restarted);
- starts again, with a growing pause, when dockerd goes (restarts,
  upgrades); a socket path that is there but no socket (the managed
  plugin's default mount, /dev/null) turns it off, logged once.

Each endpoint gets the container's name and, as aliases, its network
aliases and its short ID (12 hex digits), as dockerd's own resolver answers
them; ``give`` (cluster.mode.ClusterMode.give_names) stores them and writes the
endpoint's record again.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import threading
from typing import Callable

from .docker_api import ApiError, DockerApi

log = logging.getLogger("pontoon.names")

PAUSE_S = 1.0
PAUSE_MAX_S = 30.0
SHORT_ID = 12
FILTERS = {"type": ["network", "container"], "event": ["connect", "rename"]}

# (endpoint ID, the container's name, its other names)
Give = Callable[[str, str, list[str]], None]


def container_names(info: dict, networks: set[str]) -> dict[str, tuple[str, list[str]]]:
    """What a container's inspect ``info`` names on ``networks``: endpoint ID
    -> (its name, its aliases there and its short ID), as dockerd has them
    (``give`` checks them). Up to API 1.44 dockerd lists the short ID
    among the aliases itself, from 1.45 in DNSNames only: it is added here."""
    name = str(info.get("Name") or "").lstrip("/")
    short = str(info.get("Id") or "")[:SHORT_ID]
    return {settings["EndpointID"]: (name, [*(settings.get("Aliases") or []), short])
            for settings in ((info.get("NetworkSettings") or {}).get("Networks") or {}).values()
            if settings.get("NetworkID") in networks and settings.get("EndpointID")}


class EngineNames:
    def __init__(self, path: str, networks: Callable[[], set[str]], give: Give):
        self._path = path
        self._networks = networks
        self._give = give
        self._stopped = threading.Event()
        self._api: DockerApi | None = None
        self.followed = threading.Event()  # set while the stream is open and caught up (tests wait for it)
        self._thread = threading.Thread(target=self._run, name="pontoon-engine-names", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        api = self._api
        if api is not None and api.stream is not None:
            try:
                api.stream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def _run(self) -> None:
        pause, said = PAUSE_S, ""
        while not self._stopped.is_set():
            try:
                mode = os.stat(self._path).st_mode
                if not stat.S_ISSOCK(mode):
                    log.info("%s is no socket: names come from dockerd 29's IPAM requests only", self._path)
                    return
                self._api = DockerApi(self._path)
                self._follow(self._api)
                pause, said = PAUSE_S, ""
                why = "dockerd closed the event stream"
            except (OSError, ApiError, ValueError) as exc:
                why = str(exc)
            finally:
                self.followed.clear()
            if why != said and not self._stopped.is_set():  # once per kind of failure, not every retry
                log.warning("names from dockerd's Engine API (%s): %s; trying again", self._path, why)
                said = why
            if self._stopped.wait(pause):
                return
            pause = min(pause * 2, PAUSE_MAX_S)

    def _follow(self, api: DockerApi) -> None:
        events = api.events(FILTERS)
        log.info("following dockerd's network events (API %d.%d) for containers' names", *api.version)
        self._catch_up(api)
        self.followed.set()
        for event in events:
            if self._stopped.is_set():
                return
            self._event(api, event)

    def _catch_up(self, api: DockerApi) -> None:
        for network_id in sorted(self._networks()):
            try:
                containers = api.get(f"/networks/{network_id}").get("Containers") or {}
            except ApiError as exc:
                if exc.status == 404:  # removed meanwhile
                    continue
                raise
            for container_id in containers:
                self._container(api, container_id)

    def _event(self, api: DockerApi, event: dict) -> None:
        actor = event.get("Actor") or {}
        if event.get("Type") == "network" and actor.get("ID") in self._networks():
            self._container(api, (actor.get("Attributes") or {}).get("container", ""))
        elif event.get("Type") == "container":
            self._container(api, actor.get("ID", ""))

    def _container(self, api: DockerApi, container_id: str) -> None:
        if not container_id or not all(c in "0123456789abcdef" for c in container_id):
            return  # a network's Containers lists load-balancer endpoints as "lb-<network>" (swarm)
        try:
            info = api.get(f"/containers/{container_id}/json")
        except ApiError as exc:
            if exc.status == 404:  # gone already: its DeleteEndpoint takes the record
                return
            raise
        for endpoint_id, (name, aliases) in container_names(info, self._networks()).items():
            self._give(endpoint_id, name, aliases)
