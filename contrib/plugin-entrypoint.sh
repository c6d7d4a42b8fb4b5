#!/bin/sh
# Entrypoint of the managed plugin (config.json). dockerd mounts /proc/sys
# read-only in a plugin, as in any unprivileged container, but Pontoon writes
# per-bridge sysctls under /proc/sys/net (route_localnet for published ports
# on 127.0.0.1, disable_ipv6 for IPv6 bridges). So /proc/sys/net alone is
# made writable here, which needs CAP_SYS_ADMIN; that capability is then
# dropped from the bounding set, so Pontoon itself runs without it.
set -eu
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
exec setpriv --bounding-set -sys_admin --inh-caps -sys_admin -- \
    /opt/pontoon/bin/python -m plugin serve "$@"
