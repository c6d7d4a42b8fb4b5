"""The path of a user with a registry: push, install, use, upgrade.

Debian's docker-registry on loopback stands in for Docker Hub; dockerd
treats 127.0.0.0/8 registries as insecure, so no TLS is involved.
"""

import pytest

from testbed.plugins import VERSION, ManagedPontoon
from tests.e2e.helpers import (
    CAP_NET_ADMIN, DOCKER_DEFAULT_CAPS, Scene, http_get, managed_plugin_capabilities, published_port,
    random_subnet_v4,
)

pytestmark = pytest.mark.e2e


def test_push_install_and_upgrade_keep_the_network(dockerd, busybox, plugin_dir, registry,
                                                   workdir, uid):
    first = f"{registry.addr}/pontoon:{VERSION}"
    # The "new version": the same rootfs under another tag is enough for
    # dockerd to go through a real pull and swap.
    second = f"{registry.addr}/pontoon:{VERSION}-next"
    for ref in (first, second):
        dockerd.docker("plugin", "create", ref, plugin_dir, timeout=300)
        dockerd.docker("plugin", "push", ref, timeout=300)
        dockerd.docker("plugin", "rm", ref, timeout=60)

    base = workdir / f"registry-plugin-{uid}"
    base.mkdir()
    plugin = ManagedPontoon(dockerd, base, plugin_dir, ref=first)
    plugin.state_dir.mkdir()
    dockerd.docker("plugin", "install", "--grant-all-permissions", "--disable", first,
                   timeout=300)
    scene = Scene(dockerd, busybox, plugin, uid)
    try:
        plugin.configure()
        plugin.enable()
        # It runs, and the smoke case below passes, with nothing beyond
        # dockerd's default set but CAP_NET_ADMIN (config.json).
        caps = managed_plugin_capabilities()
        assert caps and all(c - set(DOCKER_DEFAULT_CAPS) == {CAP_NET_ADMIN} for c in caps), caps
        net = scene.network("--subnet", random_subnet_v4())
        a = scene.container(net, "-p", "80")
        b = scene.container(net)
        assert scene.pings(b, a)
        _, port = published_port(scene, a)
        assert http_get(dockerd, "127.0.0.1", port) == "pontoon-e2e\n"

        # Upgrade needs the plugin disabled; -f because a network uses it.
        dockerd.docker("plugin", "disable", "-f", first, timeout=60)
        dockerd.docker("plugin", "upgrade", "--grant-all-permissions", first, second,
                       input="y\n", timeout=300)
        # dockerd 20.10 resets the plugin's settings to the new config's
        # defaults on upgrade, so the state mount is pointed back here.
        plugin.configure()
        plugin.enable()
        upgraded = dockerd.inspect("plugin", first)
        assert upgraded["PluginReference"] == second

        assert scene.pings(b, a)
        assert scene.pings(a, b)
        assert http_get(dockerd, "127.0.0.1", port) == "pontoon-e2e\n"
        c = scene.container(net)
        assert scene.pings(c, a)
    finally:
        scene.teardown()
        plugin.stop()
