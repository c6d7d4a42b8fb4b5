#!/bin/sh
# Build the managed plugin's directory (config.json + rootfs/) without pulling
# any image: a Debian bookworm minbase from debootstrap, cached between runs,
# plus a venv at /opt/pontoon holding the project wheel and its dependencies.
# The Dockerfile at the repository root produces the same layout from
# python:3.11-slim for those who have a registry.
#
# usage: contrib/build-rootfs.sh OUTDIR
#   OUTDIR/config.json and OUTDIR/rootfs/ are (re)created.
# env:   PONTOON_ROOTFS_CACHE  cached debootstrap tree (default build/rootfs-base)
#        DEBIAN_MIRROR         (default: the mirror of this machine's apt sources,
#                              see contrib/apt-mirror.sh)
#        PYTHON                host python that builds and fetches wheels (default python3)
set -eu

out=${1:?usage: $0 OUTDIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${PONTOON_ROOTFS_CACHE:-$repo/build/rootfs-base}
python=${PYTHON:-python3}

[ "$(id -u)" = 0 ] || { echo "$0: debootstrap and chroot need root" >&2; exit 1; }

# iptables and conntrack: the datapath programs the firewall with
# iptables-restore and flushes stale flows with conntrack; nftables: the
# cluster's VXLAN guard (datapath/vxlanguard.py); wireguard-tools,
# wireguard-go and iproute2 (its address and MTU): encrypted cluster
# networks (datapath/wireguard.py);
# python3-venv brings ensurepip so the venv gets its own pip without apt.
# The cached base records its package list: a changed list builds it again.
packages=python3,python3-venv,iptables,conntrack,nftables,wireguard-tools,wireguard-go,iproute2,ca-certificates
if [ "$(cat "$cache/.complete" 2>/dev/null)" != "$packages" ]; then
    # Asked only when debootstrap runs: a cached tree needs no mirror.
    mirror=$("$repo/contrib/apt-mirror.sh")
    rm -rf "$cache"
    mkdir -p "$(dirname "$cache")"
    debootstrap --variant=minbase \
        --include="$packages" \
        bookworm "$cache" "$mirror"
    # Apt's archives are only needed to build the tree, not to run it.
    chroot "$cache" apt-get clean
    echo "$packages" > "$cache/.complete"
fi

# Wheels are fetched on the host, where pip's index settings live, for the
# rootfs's interpreter (Debian 12: CPython 3.11, glibc 2.36) whatever Python
# the host runs; the chroot then installs from that folder only.
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$python" -m pip wheel -q --no-deps -w "$wheels" "$repo"
arch=$(uname -m)
"$python" -m pip download -q -d "$wheels" --only-binary=:all: \
    --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
    --platform "manylinux_2_36_$arch" --platform "manylinux_2_28_$arch" \
    --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
    --platform any "$wheels"/pontoon-*.whl

rm -rf "$out/rootfs"
mkdir -p "$out"
cp -a "$cache" "$out/rootfs"
rm -f "$out/rootfs/.complete"
mkdir -p "$out/rootfs/tmp/wheels"
cp "$wheels"/*.whl "$out/rootfs/tmp/wheels/"
# A clean environment: the host's PIP_* settings point at host paths.
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$out/rootfs" "$@"; }
in_root python3 -m venv /opt/pontoon
in_root /opt/pontoon/bin/pip install -q --no-index --no-cache-dir \
    --disable-pip-version-check --find-links /tmp/wheels pontoon
# Nothing at run time reads documentation or apt's package lists; dropping
# them halves what `docker plugin push` has to compress and send.
rm -rf "$out/rootfs/tmp/wheels" "$out/rootfs/var/lib/apt/lists" \
    "$out/rootfs/var/cache/apt" "$out/rootfs/usr/share/doc" \
    "$out/rootfs/usr/share/man" "$out/rootfs/usr/share/locale" \
    "$out/rootfs/usr/share/info"
# dockerd bind-mounts the plugin socket directory and the state directory
# here, and the host's /proc/sys/net (see config.json); creating the mount
# points keeps them independent of the host.
mkdir -p "$out/rootfs/run/docker/plugins" "$out/rootfs/var/lib/pontoon" "$out/rootfs/host/proc/sys/net"
cp "$repo/config.json" "$out/config.json"
