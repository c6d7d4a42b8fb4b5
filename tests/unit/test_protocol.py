"""Transport as dockerd does it, and the error envelope."""
import json

import pytest

import spec
from datapath.errors import UnsafeValue


def test_activate_names_both_interfaces(client):
    assert client.ok("Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}


def test_capabilities_with_empty_bodies(client):
    assert client.ok("NetworkDriver.GetCapabilities") == {"Scope": "local", "ConnectivityScope": "local",
                                                        "GwAllocChecker": True}
    assert client.ok("IpamDriver.GetCapabilities") == {"RequiresMACAddress": False, "RequiresRequestReplay": False}
    assert client.ok("IpamDriver.GetDefaultAddressSpaces") == {
        "LocalDefaultAddressSpace": "LocalDefault", "GlobalDefaultAddressSpace": "GlobalDefault"}


def test_no_content_type_and_whitespace_body(plugin):
    resp = plugin.app.test_client().post("/NetworkDriver.GetCapabilities", data=b"  \n")
    assert resp.status_code == 200
    assert resp.content_type == "application/vnd.docker.plugins.v1+json"


def test_unknown_method_is_json_404(refused):
    assert 'unknown method "/NetworkDriver.Frobnicate"' in refused("NetworkDriver.Frobnicate", {}, status=404)


def test_get_is_json_405(plugin):
    resp = plugin.app.test_client().get("/Plugin.Activate")
    assert resp.status_code == 405
    assert "Err" in json.loads(resp.get_data())


def test_nested_path_is_json_404(plugin):
    resp = plugin.app.test_client().post("/a/b", data=b"{}")
    assert resp.status_code == 404
    assert "Err" in json.loads(resp.get_data())


@pytest.mark.parametrize("raw, says", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    # found by tests/reliability/test_hostile.py: was a 500 from SQLite
    (b'{"PoolID": "\\ud800"}', "lone Unicode surrogate"),
])
def test_malformed_bodies(refused, raw, says):
    refused("IpamDriver.RequestPool", raw=raw, says=says)


def test_body_over_one_mib_is_413(refused):
    big = json.dumps({"PoolID": "x" * (1 << 20)}).encode()
    refused("IpamDriver.ReleasePool", raw=big, status=413, says="larger than")


def test_unknown_top_level_fields_are_ignored(client):
    reply = client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "10.1.0.0/24",
                                                 "V6": False, "FieldFromTheFuture": 1})
    assert reply["Pool"] == "10.1.0.0/24"


def test_schema_errors_name_the_field(refused):
    err = refused("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": [{"Pool": 5}]})
    assert "IPv4Data[0].Pool" in err and "5" in err


NETWORK = {"NetworkID": "a" * 64, "Options": {}, "IPv4Data": [{"Pool": "10.5.0.0/24", "Gateway": "10.5.0.1/24"}]}


def test_kernel_failure_is_500_naming_the_step(plugin):
    plugin.links.fail.add("create_bridge")
    status, reply = plugin.client.call("NetworkDriver.CreateNetwork", NETWORK)
    assert status == 500
    assert reply["Err"] == "kernel step failed: create_bridge: injected failure"


@pytest.mark.parametrize("part, step, exc, says", [
    # Unexpected: the message says nothing of the exception's text.
    ("links", "create_bridge", RuntimeError("secret detail in /etc/shadow"),
     "internal error in /NetworkDriver.CreateNetwork (RuntimeError); see the plugin log"),
    # A value the firewall refused to render (datapath/rules.py) is named.
    ("firewall", "add_network", UnsafeValue("pt-x\n-A INPUT -j ACCEPT"),
     "kernel step failed: render firewall rules: refusing 'pt-x\\n-A INPUT -j ACCEPT': "
     "empty, or holds whitespace or a control character"),
])
def test_exceptions_are_500_without_traceback(plugin, part, step, exc, says):
    def boom(*_args, **_options):
        raise exc

    setattr(getattr(plugin, part), step, boom)
    status, reply = plugin.client.call("NetworkDriver.CreateNetwork", NETWORK)
    assert status == 500
    assert reply["Err"] == says


def _with_required():
    return [m for m in spec.methods() if spec.schema(f"{m}.request").get("required")]


@pytest.mark.parametrize("method", _with_required())
def test_every_method_refuses_a_body_without_its_required_fields(refused, method):
    required = spec.schema(f"{method}.request")["required"]
    err = refused(method, {"Unrelated": 1})
    assert f'"{required[0]}"' in err


def test_methods_without_required_fields_take_an_empty_body(client):
    for method in set(spec.methods()) - set(_with_required()):
        client.ok(method, {})


# A valid value for each required field of any method.
SAMPLES = {"NetworkID": "a" * 64, "EndpointID": "b" * 64, "PoolID": "LocalDefault/10.0.0.0/24",
           "Address": "10.0.0.1", "AddressSpace": "LocalDefault", "SandboxKey": "/x", "DiscoveryType": 1}


@pytest.mark.parametrize("method, field", [
    (m, f) for m in _with_required() for f in spec.schema(f"{m}.request")["required"]])
def test_every_required_field_refuses_a_wrong_type(refused, method, field):
    body = {name: SAMPLES[name] for name in spec.schema(f"{method}.request")["required"]}
    body[field] = [["not", "this"]]
    err = refused(method, body)
    assert f'"{field}"' in err and "not" in err

