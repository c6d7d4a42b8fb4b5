"""Settings precedence: flag > environment > YAML file > default."""
import argparse

import pytest

from plugin import config
from testbed.server import fresh_python


def flags(**kw):
    ns = argparse.Namespace(**{name: None for name in config.FIELDS})
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_defaults():
    s = config.load(flags(), {})
    assert (s.name, s.socket_dir, s.state_dir, s.log_level, s.log_format) == (
        "pontoon", "/run/docker/plugins", "/var/lib/pontoon", "info", "text")
    assert s.socket_path == "/run/docker/plugins/pontoon.sock"
    assert str(s.pools(v6=True)[0]) == "fd70:6f6e:746f::/48:64"
    assert s.lock_timeout == 10.0
    assert config.load(flags(lock_timeout="2.5"), {}).lock_timeout == 2.5


def test_precedence(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("name: from-file\nstate-dir: /file\nlog_level: debug\nsocket_dir: /file-sock\n")
    env = {"PONTOON_CONFIG": str(cfg), "PONTOON_STATE_DIR": "/env", "PONTOON_NAME": "from-env"}
    s = config.load(flags(name="from-flag"), env)
    assert (s.name, s.state_dir, s.log_level, s.socket_dir) == ("from-flag", "/env", "debug", "/file-sock")


def test_pools_from_env_and_file(tmp_path):
    s = config.load(flags(), {"PONTOON_DEFAULT_POOLS": "10.200.0.0/16:24, 10.201.0.0/16:24"})
    assert [str(p) for p in s.pools(v6=False)] == ["10.200.0.0/16:24", "10.201.0.0/16:24"]
    cfg = tmp_path / "p.yaml"
    cfg.write_text("default_pools_v6: ['fd12::/56:64']\n")
    assert str(config.load(flags(config=str(cfg)), {}).pools(v6=True)[0]) == "fd12::/56:64"


@pytest.mark.parametrize("kw, env, says", [
    ({"log_level": "loud"}, {}, "log_level"),
    ({"log_format": "xml"}, {}, "log_format"),
    ({}, {"PONTOON_WORKERS": "many"}, "workers"),
    ({}, {"PONTOON_DEFAULT_POOLS": "10.0.0.0/8"}, "CIDR:SIZE"),
    ({}, {"PONTOON_DEFAULT_POOLS": "fd00::/48:64"}, "mixes address families"),
    ({"name": "a/b"}, {}, "name"),
    ({}, {"PONTOON_LOCK_TIMEOUT": "soon"}, "lock_timeout"),
    ({}, {"PONTOON_LOCK_TIMEOUT": "0"}, "lock_timeout"),
    ({}, {"PONTOON_LOCK_TIMEOUT": "inf"}, "lock_timeout"),
    ({"config": "/nonexistent/p.yaml"}, {}, "cannot read config file"),
    ({}, {"PONTOON_DNS_ADDRESS": "fd00::53"}, r"dns_address='fd00::53': an IPv4 address"),
    ({}, {"PONTOON_DNS_ADDRESS": "169.254.53"}, "dns_address"),
])
def test_bad_settings(kw, env, says):
    with pytest.raises(config.ConfigError, match=says):
        config.load(flags(**kw), env)


def test_bad_yaml(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("bogus_setting: 1\n")
    with pytest.raises(config.ConfigError, match="unknown setting"):
        config.load(flags(config=str(cfg)), {})
    cfg.write_text("[not, a, mapping]\n")
    with pytest.raises(config.ConfigError, match="mapping"):
        config.load(flags(config=str(cfg)), {})


def test_no_config_file_no_yaml_import():
    code = ("import sys; from plugin import config; config.load(None, {}); "
            "assert 'yaml' not in sys.modules, 'yaml imported without a config file'")
    fresh_python(code)


@pytest.mark.parametrize("given, means", [("true", True), ("False", False), ("1", True), ("no", False)])
def test_a_boolean_setting_takes_the_usual_words(given, means):
    assert config.load(flags(), {"PONTOON_ENCRYPT": given}).encrypt is means


def test_a_boolean_setting_refuses_anything_else():
    with pytest.raises(config.ConfigError, match="encrypt='maybe' is not true or false"):
        config.load(flags(), {"PONTOON_ENCRYPT": "maybe"})
