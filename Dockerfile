# Root filesystem of the managed plugin, for those with access to a registry.
# contrib/build-rootfs.sh builds the same layout (a venv at /opt/pontoon,
# iptables, conntrack, nft, wg, wireguard-go and ip on PATH) with debootstrap and no image at all.
#
#   docker build -t pontoon-rootfs .
#   id=$(docker create pontoon-rootfs true)
#   mkdir -p build/plugin/rootfs && docker export "$id" | tar -x -C build/plugin/rootfs
#   docker rm "$id" && cp config.json build/plugin/
#   docker plugin create pontoon:0.1.0 build/plugin
# BASE: any Debian 12 image with python3 and python3-venv.
ARG BASE=python:3.11-slim
FROM ${BASE}

# iptables-restore programs the firewall, conntrack flushes stale flows;
# nft guards the cluster's VXLAN; wg, wireguard-go and ip encrypt it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables conntrack nftables wireguard-tools wireguard-go iproute2 \
 && rm -rf /var/lib/apt/lists/*

COPY . /src
RUN python3 -m venv /opt/pontoon \
 && /opt/pontoon/bin/pip install --no-cache-dir /src \
 && rm -rf /src \
 && mkdir -p /run/docker/plugins /var/lib/pontoon

# config.json's entrypoint is what dockerd runs; this one only documents it.
ENTRYPOINT ["/opt/pontoon/bin/python", "-m", "plugin", "serve", "--socket-dir", "/run/docker/plugins", "--state-dir", "/var/lib/pontoon"]
