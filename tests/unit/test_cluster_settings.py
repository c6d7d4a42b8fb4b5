"""Cluster settings, and the single-host plugin left as it was without them."""
import json

import pytest

from cluster import identity
from plugin import config
from testbed.server import REPO, fresh_python

from .test_config import flags


def test_cluster_settings_from_env_and_flags():
    env = {"PONTOON_ETCD_ENDPOINTS": "http://10.0.0.5:2379, http://10.0.0.6:2379",
           "PONTOON_ADVERTISE_ADDR": "10.0.0.7", "PONTOON_HOST_ID": "from-env"}
    s = config.load(flags(host_id="from-flag"), env)
    assert s.clustered and s.etcd_endpoints == ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]
    assert (s.advertise_addr, s.host_id) == ("10.0.0.7", "from-flag")
    assert not config.load(flags(), {}).clustered


@pytest.mark.parametrize("kw, says", [
    ({"etcd_endpoints": "10.0.0.5:2379"}, "not an http"),
    ({"etcd_endpoints": "http://e:2379", "workers": "2"}, "workers=2"),
    ({"etcd_endpoints": "http://e:2379", "advertise_addr": "eth0"}, "advertise_addr='eth0'"),
    ({"etcd_endpoints": "http://e:2379", "host_id": "a/b"}, "host_id 'a/b'"),
    ({"etcd_endpoints": "http://e:2379", "lease_ttl": "1"}, "lease_ttl=1"),
    ({"etcd_endpoints": "http://e:2379", "lease_ttl": "10", "reclaim_grace": "20"}, "reclaim_grace=20"),
    ({"etcd_endpoints": "https://e:2379,http://f:2379", "etcd_ca": __file__},
     "etcd_endpoints mix http:// and https://: https://e:2379, http://f:2379"),
    ({"etcd_endpoints": "https://e:2379,http://f:2379"}, "etcd_endpoints mix http:// and https://"),
    ({"etcd_endpoints": "http://e:2379", "etcd_ca": __file__},
     "etcd_ca given, but not every etcd endpoint is https://: http://e:2379"),
    ({"etcd_endpoints": "https://e:2379", "etcd_cert": __file__}, "etcd_cert and etcd_key go together"),
    ({"etcd_endpoints": "https://e:2379", "etcd_ca": "/nonexistent/ca.pem"},
     "etcd_ca '/nonexistent/ca.pem' is not a readable file"),
])
def test_bad_cluster_settings(kw, says):
    with pytest.raises(config.ConfigError, match=says):
        config.load(flags(**kw), {})


def test_tls_files_from_env_with_https_endpoints():
    env = {"PONTOON_ETCD_ENDPOINTS": "https://10.0.0.5:2379", "PONTOON_ETCD_CA": __file__,
           "PONTOON_ETCD_CERT": __file__, "PONTOON_ETCD_KEY": __file__}
    s = config.load(flags(), env)
    assert (s.etcd_ca, s.etcd_cert, s.etcd_key) == (__file__,) * 3


def test_managed_plugin_can_set_the_cluster_settings():
    env = {e["name"]: e for e in json.loads((REPO / "config.json").read_text())["env"]}
    cluster = [name for name in config.FIELDS if name.startswith("etcd_")] + [
        "advertise_addr", "host_id", "lease_ttl", "reclaim_grace"]
    for name in (f"PONTOON_{field.upper()}" for field in cluster):
        assert env[name]["settable"] == ["value"] and env[name]["value"] == ""


def test_host_id_is_made_once_and_kept(tmp_path):
    first = identity.host_id(str(tmp_path))
    assert first and first == identity.host_id(str(tmp_path))
    (tmp_path / "other").mkdir()
    assert identity.host_id(str(tmp_path / "other")) != first


def test_advertise_addr_is_the_source_of_the_route_to_etcd():
    assert identity.advertise_addr("http://127.0.0.1:2379") == "127.0.0.1"


def test_single_host_build_loads_nothing_of_the_cluster(tmp_path):
    """Without --etcd-endpoints: no cluster module, no etcd3gw, as today."""
    code = (
        "import sys\n"
        "from plugin import config, wiring, server, cli\n"
        f"s = config.load(None, {{'PONTOON_STATE_DIR': {str(tmp_path)!r}}})\n"
        "wiring.build_network_driver(s, wiring.Store(s.state_dir), links=object(), firewall=object())\n"
        "loaded = [m for m in sys.modules if m == 'etcd3gw' or m.startswith(('etcd3gw.', 'cluster'))]\n"
        "assert not loaded, loaded\n"
    )
    fresh_python(code)


def test_host_token_is_made_once_private_and_kept(tmp_path):
    import os
    import stat

    first = identity.host_token(str(tmp_path))
    assert len(first) >= 32 and first == identity.host_token(str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / identity.HOST_TOKEN_FILE).st_mode) == 0o600
    (tmp_path / "other").mkdir()
    assert identity.host_token(str(tmp_path / "other")) != first
