#!/bin/sh
# Let a dockerd that panics at start because of a managed plugin start again.
#
# dockerd killed while it restarts a managed plugin (Pontoon's or any other)
# can leave that plugin's containerd shim running, empty: its containerd
# died with dockerd in the middle of creating the task. The next containerd
# takes the shim back, and the next dockerd fails to enable the plugin
# ("task ...: already exists"), keeps it marked enabled with no client, and
# panics with a nil pointer dereference while registering the plugin's
# network and IPAM drivers: at every start, live-restore or not
# (docs/managed-plugin-restart.md).
#
# This removes, with dockerd stopped, every task of the plugins' containerd
# namespace: runc deletes the task's container where there is one (its
# processes are killed), then the shim is ended. dockerd's next start enables the plugins afresh
# from their stored settings; networks and containers are kept.
#
# usage: contrib/recover-managed-plugin.sh   (as root, dockerd stopped)
# env:   DOCKER_EXEC_ROOT          dockerd's --exec-root (default /run/docker)
#        DOCKER_PIDFILE            dockerd's --pidfile (default /var/run/docker.pid)
#        DOCKER_PLUGINS_NAMESPACE  dockerd's --containerd-plugins-namespace
#                                  (default plugins.moby)
set -eu

exec_root=${DOCKER_EXEC_ROOT:-/run/docker}
pidfile=${DOCKER_PIDFILE:-/var/run/docker.pid}
namespace=${DOCKER_PLUGINS_NAMESPACE:-plugins.moby}
# runc's state of dockerd's plugin tasks: <exec root>/runtime-runc/<namespace>
runc_root=$exec_root/runtime-runc/$namespace

[ "$(id -u)" = 0 ] || { echo "$0: needs root" >&2; exit 1; }
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null \
    && grep -q dockerd "/proc/$(cat "$pidfile")/comm" 2>/dev/null; then
    echo "$0: dockerd (PID $(cat "$pidfile")) is running: stop it first" >&2
    exit 1
fi

# The shims of the namespace, as "PID ID" lines: their command line is
# containerd-shim-runc-v2 -namespace NAMESPACE -id ID -address ...
shims=$(ps -eo pid=,args= | awk -v ns="$namespace" '
    $2 ~ /containerd-shim/ { for (i = 3; i < NF; i++) if ($i == "-namespace" && $(i + 1) == ns) keep = 1
                             for (i = 3; i < NF; i++) if ($i == "-id") id = $(i + 1)
                             if (keep && id != "") print $1, id; keep = 0; id = "" }')
# Tasks runc still has a state for, with or without a shim.
states=$(ls "$runc_root" 2>/dev/null || true)

# A shim killed is not yet gone: SIGKILL is delivered when the kernel next
# runs it, and a dockerd started meanwhile would find it and panic again.
# Gone means no process, or a zombie waiting for its parent.
gone() {
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
    case $state in Z*) return 0 ;; esac
    return 1
}
# Waits up to 10 s for PID to be gone; says so if it is not.
wait_gone() {
    tries=100
    while ! gone "$1"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "$0: shim $1 still runs 10 s after SIGKILL" >&2; return 1; }
        sleep 0.1
    done
}

found=0
for id in $(printf '%s\n%s\n' "$(echo "$shims" | awk '{ print $2 }')" "$states" | sort -u); do
    found=1
    if [ -d "$runc_root/$id" ]; then
        runc --root "$runc_root" delete --force "$id" \
            && echo "deleted task $id of namespace $namespace" \
            || echo "$0: runc could not delete task $id" >&2
    fi
    for pid in $(echo "$shims" | awk -v id="$id" '$2 == id { print $1 }'); do
        kill -KILL "$pid" 2>/dev/null && wait_gone "$pid" && echo "ended shim $pid of task $id"
    done
done
[ "$found" = 1 ] || echo "no plugin task of namespace $namespace is left: nothing to do"
