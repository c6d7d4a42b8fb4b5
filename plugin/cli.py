"""Command line: ``python -m plugin serve``, ``inspect`` and ``rotate-key``."""
from __future__ import annotations

import argparse
import gc
import logging.config
import os
import sys
import time

from . import config, logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pontoon", description="Docker network and IPAM plugin")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve both protocols on the plugin socket")
    config.add_arguments(serve)
    inspect = commands.add_parser("inspect", help="show the stored networks, endpoints, pools and addresses")
    inspect.add_argument("view", nargs="?", choices=["ports"],
                         help="ports: only the published ports, each with its endpoint")
    inspect.add_argument("--state-dir", help="(env PONTOON_STATE_DIR)")
    inspect.add_argument("--config", help="(env PONTOON_CONFIG)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.add_argument("--etcd-endpoints", help="also show the cluster (env PONTOON_ETCD_ENDPOINTS)")
    for name in ("ca", "cert", "key"):
        inspect.add_argument(f"--etcd-{name}", help=f"for a TLS etcd, as serve's (env PONTOON_ETCD_{name.upper()})")
    rotate = commands.add_parser("rotate-key", help="a new WireGuard key for this host, put in use by the "
                                                    "running server and published to the other hosts")
    rotate.add_argument("--state-dir", help="(env PONTOON_STATE_DIR)")
    rotate.add_argument("--config", help="(env PONTOON_CONFIG)")
    args = parser.parse_args(argv)
    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        print(f"pontoon: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        # Start-up allocates what lives as long as the process (modules,
        # classes, the app): collections meanwhile would walk it again and
        # again and free nothing, about 10 ms before listening. serve()
        # turns the collector back on before the first request.
        gc.disable()
        logging.config.dictConfig(logs.config_dict(settings.log_level, settings.log_format))
        from .server import serve as run  # gunicorn and flask only when serving
        run(settings)
        return 0
    if args.command == "rotate-key":
        return _rotate_key(settings.state_dir)
    return _inspect(settings, args.view, args.json)


ROTATE_WAIT_S = 10  # for the running server to take the new key (it looks twice a second)


def _rotate_key(state_dir: str) -> int:
    from datapath import wireguard
    from datapath.errors import DatapathError

    try:
        key = wireguard.offer_key(state_dir)
    except FileExistsError:
        print(f"pontoon: a new key waits already ({wireguard.NEXT_KEY_FILE} in {state_dir}): another rotate-key "
              f"is under way", file=sys.stderr)
        return 1
    except (OSError, DatapathError) as exc:
        print(f"pontoon: cannot make a new key in {state_dir}: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + ROTATE_WAIT_S
    while os.path.exists(os.path.join(state_dir, wireguard.NEXT_KEY_FILE)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if wireguard.withdraw_key(state_dir):
        print(f"pontoon: no server took the new key within {ROTATE_WAIT_S} s (is one running in cluster mode on "
              f"{state_dir}, with WireGuard?); the key in use is unchanged", file=sys.stderr)
        return 1
    print(key)
    return 0


def _inspect(settings: config.Settings, section: str | None, as_json: bool) -> int:
    from . import inspect
    from .store import DB_NAME, Store

    if not os.path.exists(os.path.join(settings.state_dir, DB_NAME)):
        print(f"pontoon: no state in {settings.state_dir}", file=sys.stderr)
        return 1
    state = inspect.collect(Store(settings.state_dir))
    if section == "ports":
        sys.stdout.write(inspect.to_json(inspect.published(state)) if as_json
                         else inspect.render_ports(state))
        return 0
    text = "" if as_json else inspect.render(state)
    if settings.clustered:
        from cluster import view
        from cluster.etcd import Etcd, EtcdUnavailable

        from datapath import wireguard
        from datapath.vxlanguard import VxlanGuard

        from cluster.mode import etcd_tls

        # Read in this network namespace: run inspect where the server runs.
        state["between_hosts"] = {"dropped": VxlanGuard(settings.name).dropped(),
                                  "wireguard": wireguard.in_force(settings.name)}
        text += "" if as_json else "\n" + inspect.render_between_hosts(state["between_hosts"])
        try:
            state["cluster"] = view.collect(Etcd(settings.etcd_endpoints, tls=etcd_tls(settings)))
        except EtcdUnavailable as exc:
            print(f"pontoon: cluster not shown: {exc}", file=sys.stderr)
        else:
            text += "" if as_json else "\n" + inspect.render_cluster(state["cluster"])
    sys.stdout.write(inspect.to_json(state) if as_json else text)
    return 0
