"""The protocol schemas in spec/: well-formed, complete, true to real dockerd traffic."""
import json

import pytest
from jsonschema import Draft202012Validator

import spec
from testbed.server import REPO, fresh_python

SPEC_DIR = REPO / "spec"
TRACES = REPO / "tests" / "fixtures" / "traces"

METHODS = [
    "Plugin.Activate",
    *(
        "NetworkDriver." + m
        for m in (
            "GetCapabilities CreateNetwork DeleteNetwork CreateEndpoint EndpointOperInfo "
            "DeleteEndpoint Join Leave ProgramExternalConnectivity RevokeExternalConnectivity "
            "DiscoverNew DiscoverDelete AllocateNetwork FreeNetwork GwAllocCheck"
        ).split()
    ),
    *(
        "IpamDriver." + m
        for m in (
            "GetCapabilities GetDefaultAddressSpaces RequestPool ReleasePool "
            "RequestAddress ReleaseAddress"
        ).split()
    ),
]
NO_BODY = [
    "Plugin.Activate",
    "NetworkDriver.GetCapabilities",
    "IpamDriver.GetCapabilities",
    "IpamDriver.GetDefaultAddressSpaces",
]
NET = "ce99ae0deb83997e28d1d5e9a25c3008a5882dd9b52f00737c33853bc850029e"
EP = "2bab5479b89611dea0d345f10e4950e904b9f5aadad219f4228e770d9264ffa1"


def _trace_requests():
    params = []
    for file in sorted(TRACES.glob("*.jsonl")):
        for n, line in enumerate(file.read_text().splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                params.append(pytest.param(rec["path"].lstrip("/"), rec["request"],
                                           id=f"{file.stem}:{n}"))
    return params


# --- the files themselves

@pytest.mark.parametrize("path", sorted(SPEC_DIR.glob("*.json")), ids=lambda p: p.name)
def test_schema_file_is_valid_draft_2020_12(path):
    body = json.loads(path.read_text())
    assert body["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(body)


def test_exactly_one_request_and_response_schema_per_method_plus_error():
    expected = {f"{m}.{kind}.json" for m in METHODS for kind in ("request", "response")}
    expected.add("Error.response.json")
    assert {p.name for p in SPEC_DIR.glob("*.json")} == expected


def test_methods_lists_all_22():
    assert spec.methods() == sorted(METHODS)
    assert len(spec.methods()) == 22


def test_response_schemas_are_strict():
    for path in SPEC_DIR.glob("*.response.json"):
        assert json.loads(path.read_text())["additionalProperties"] is False, path.name


# --- API

def test_schema_is_loaded_once_and_unknown_names_raise_lookuperror():
    assert spec.schema("IpamDriver.RequestPool.response") is spec.schema(
        "IpamDriver.RequestPool.response")
    for bad in ("NetworkDriver.Nope.request", "NetworkDriver.CreateNetwork",
                "../pyproject", "spec/Error.response", ""):
        with pytest.raises(LookupError):
            spec.schema(bad)
    with pytest.raises(LookupError):
        spec.validate("NetworkDriver.Nope.request", {})


def test_validators_are_cached():
    name = "NetworkDriver.Join.request"
    assert spec._validator(name) is spec._validator(name)


def test_import_does_not_load_jsonschema():
    code = "import sys, spec; spec.methods(); spec.schema('Error.response'); " \
           "assert 'jsonschema' not in sys.modules, 'jsonschema imported eagerly'"
    fresh_python(code)


def test_bodyless_calls_do_not_load_jsonschema():
    code = ("import sys, spec\n"
            f"for method in {NO_BODY!r}: spec.validate(method + '.request', {{}})\n"
            "assert 'jsonschema' not in sys.modules, 'jsonschema imported for a bodyless call'")
    fresh_python(code)


@pytest.mark.parametrize("method", NO_BODY)
def test_bodyless_schemas_still_refuse_a_non_object(method):
    with pytest.raises(spec.SpecError, match="not of type"):
        spec.validate(f"{method}.request", [])


def test_specerror_is_valueerror():
    assert issubclass(spec.SpecError, ValueError)


# --- requests: every body real dockerd sent must pass

@pytest.mark.parametrize("method,body", _trace_requests())
def test_trace_request_matches_schema(method, body):
    assert method in spec.methods()
    spec.validate(f"{method}.request", body)


def test_traces_cover_the_main_methods():
    seen = {json.loads(l)["path"].lstrip("/") for f in TRACES.glob("*.jsonl")
            for l in f.read_text().splitlines() if l.strip()}
    assert {"NetworkDriver.CreateNetwork", "NetworkDriver.Join",
            "IpamDriver.RequestPool", "IpamDriver.RequestAddress"} <= seen


@pytest.mark.parametrize("method", NO_BODY)
def test_bodyless_requests_accept_empty_object(method):
    spec.validate(f"{method}.request", {})


def test_requests_tolerate_unknown_fields_and_nulls():
    spec.validate("NetworkDriver.CreateNetwork.request",
                  {"NetworkID": NET, "Options": None, "IPv4Data": None, "IPv6Data": None,
                   "SomethingNew": [1, 2]})
    spec.validate("NetworkDriver.CreateNetwork.request", {"NetworkID": NET})
    spec.validate("NetworkDriver.CreateEndpoint.request",
                  {"NetworkID": NET, "EndpointID": EP, "Interface": None, "Options": None})
    spec.validate("IpamDriver.RequestPool.request", {"AddressSpace": "LocalDefault"})
    spec.validate("NetworkDriver.DiscoverNew.request",
                  {"DiscoveryType": 1, "DiscoveryData": {"Address": "x", "self": True}})
    spec.validate("NetworkDriver.AllocateNetwork.request",
                  {"NetworkID": "n1", "IPv4Data": [{"Pool": "10.0.0.0/24"}], "Options": {}})


def test_requests_do_not_check_address_formats():
    # format errors are the drivers' job: they give more precise messages
    spec.validate("NetworkDriver.CreateNetwork.request",
                  {"NetworkID": NET, "IPv4Data": [{"Pool": "not-a-cidr",
                                                   "Gateway": "nope",
                                                   "AuxAddresses": {"h": "bad"}}]})
    spec.validate("IpamDriver.RequestAddress.request", {"PoolID": "p", "Address": "x.y"})


BAD_REQUESTS = [
    ("NetworkDriver.CreateNetwork",
     {"NetworkID": NET, "IPv4Data": [{"Pool": 5}]},
     'field "IPv4Data[0].Pool": 5 is not of type "string"'),
    ("NetworkDriver.CreateNetwork", {"Options": {}}, 'field "NetworkID" is missing'),
    ("NetworkDriver.CreateNetwork",
     {"NetworkID": NET, "IPv6Data": [{"Gateway": "fd00::1/64"}]},
     'field "IPv6Data[0].Pool" is missing'),
    ("NetworkDriver.CreateNetwork",
     {"NetworkID": NET, "IPv4Data": [{"Pool": "10.0.0.0/24", "AuxAddresses": {"h": 1}}]},
     'field "IPv4Data[0].AuxAddresses.h": 1 is not of type "string"'),
    ("NetworkDriver.CreateNetwork", {"NetworkID": NET, "Options": []},
     'field "Options": [] is not of type "object" or "null"'),
    ("NetworkDriver.CreateNetwork", {"NetworkID": ""}, 'field "NetworkID": "" must not be empty'),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "../../etc"},
     'field "NetworkID": "../../etc" does not match'),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "a" * 129},
     'field "NetworkID": "aaaa'),
    ("NetworkDriver.CreateNetwork", [], 'body: [] is not of type "object"'),
    ("NetworkDriver.CreateEndpoint",
     {"NetworkID": NET, "EndpointID": EP, "Interface": {"MacAddress": 2}},
     'field "Interface.MacAddress": 2 is not of type "string"'),
    ("NetworkDriver.Join", {"NetworkID": NET, "EndpointID": EP},
     'field "SandboxKey" is missing'),
    ("NetworkDriver.Leave", {"NetworkID": NET}, 'field "EndpointID" is missing'),
    ("NetworkDriver.DiscoverNew", {"DiscoveryType": "1"},
     'field "DiscoveryType": "1" is not of type "integer"'),
    ("IpamDriver.RequestPool", {"AddressSpace": "l", "V6": "true"},
     'field "V6": "true" is not of type "boolean"'),
    ("IpamDriver.RequestPool", {"Pool": "10.0.0.0/8"}, 'field "AddressSpace" is missing'),
    ("IpamDriver.RequestAddress", {"Address": ""}, 'field "PoolID" is missing'),
    ("IpamDriver.ReleaseAddress", {"PoolID": "p"}, 'field "Address" is missing'),
    ("IpamDriver.ReleasePool", {"PoolID": None}, 'field "PoolID": null is not of type "string"'),
    ("Plugin.Activate", None, 'body: null is not of type "object"'),
]


@pytest.mark.parametrize("method,body,message", BAD_REQUESTS,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_REQUESTS)])
def test_bad_request_names_field_and_value(method, body, message):
    with pytest.raises(spec.SpecError) as info:
        spec.validate(f"{method}.request", body)
    assert str(info.value).startswith(message), str(info.value)


def test_long_values_are_truncated_in_messages():
    with pytest.raises(spec.SpecError) as info:
        spec.validate("NetworkDriver.CreateNetwork.request", {"NetworkID": "x" * 10_000})
    assert len(str(info.value)) < 200


# --- responses: what a good plugin answers

GOOD_RESPONSES = [
    ("Plugin.Activate", {"Implements": ["NetworkDriver", "IpamDriver"]}),
    ("NetworkDriver.GetCapabilities", {"Scope": "local", "ConnectivityScope": "local"}),
    ("NetworkDriver.GetCapabilities", {"Scope": "global"}),
    ("NetworkDriver.GetCapabilities", {"Scope": "local", "GwAllocChecker": True}),
    ("NetworkDriver.GwAllocCheck", {"SkipIPv4": False, "SkipIPv6": True}),
    ("NetworkDriver.CreateNetwork", {}),
    ("NetworkDriver.CreateEndpoint", {}),
    ("NetworkDriver.CreateEndpoint", {"Interface": {"MacAddress": "02:42:0a:63:00:c8"}}),
    ("NetworkDriver.CreateEndpoint",
     {"Interface": {"MacAddress": "02:42:0a:63:00:c8", "Address": "", "AddressIPv6": ""}}),
    ("NetworkDriver.EndpointOperInfo",
     {"Value": {"com.docker.network.portmap": [], "com.docker.network.endpoint.exposedports": []}}),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "vc2bab547", "DstPrefix": "eth"}, "Gateway": "10.77.0.1"}),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "pt2bab547", "DstPrefix": "eth"},
      "Gateway": "10.77.0.1", "GatewayIPv6": "fd00:99::1",
      "StaticRoutes": [{"Destination": "10.1.0.0/16", "RouteType": 0, "NextHop": "10.77.0.254"},
                       {"Destination": "10.2.0.0/16", "RouteType": 1}],
      "DisableGatewayService": True}),
    ("NetworkDriver.Leave", {}),
    ("NetworkDriver.DeleteEndpoint", {}),
    ("NetworkDriver.RevokeExternalConnectivity", {}),
    ("IpamDriver.GetCapabilities", {"RequiresMACAddress": False, "RequiresRequestReplay": True}),
    ("IpamDriver.GetDefaultAddressSpaces",
     {"LocalDefaultAddressSpace": "pontoon-local", "GlobalDefaultAddressSpace": "pontoon-global"}),
    ("IpamDriver.RequestPool", {"PoolID": "pontoon-local/10.77.0.0/24", "Pool": "10.77.0.0/24",
                                "Data": {}}),
    ("IpamDriver.RequestPool", {"PoolID": "p6", "Pool": "fd00:99::/64", "Data": {"k": "v"}}),
    ("IpamDriver.RequestAddress", {"Address": "10.77.0.2/24", "Data": {}}),
    ("IpamDriver.RequestAddress", {"Address": "fd00:99::200/64", "Data": {}}),
    ("IpamDriver.ReleaseAddress", {}),
    ("Error", {"Err": 'network "n1": pool 10.77.0.0/24 is already in use'}),
]


@pytest.mark.parametrize("method,body", GOOD_RESPONSES,
                         ids=[f"{m}-{i}" for i, (m, _) in enumerate(GOOD_RESPONSES)])
def test_good_response_passes(method, body):
    spec.validate(f"{method}.response", body)


BAD_RESPONSES = [
    ("Plugin.Activate", {}, 'field "Implements" is missing'),
    ("Plugin.Activate", {"Implements": []}, 'field "Implements": [] must not be empty'),
    ("Plugin.Activate", {"Implements": ["VolumeDriver"]},
     'field "Implements[0]": "VolumeDriver" is not one of "NetworkDriver", "IpamDriver"'),
    ("NetworkDriver.GwAllocCheck", {"SkipIPv4": True}, 'field "SkipIPv6" is missing'),
    ("NetworkDriver.GwAllocCheck", {"SkipIPv4": "yes", "SkipIPv6": False},
     'field "SkipIPv4": "yes" is not of type "boolean"'),
    ("NetworkDriver.GetCapabilities", {"Scope": "swarm"},
     'field "Scope": "swarm" is not one of "local", "global"'),
    ("NetworkDriver.CreateNetwork", {"Err": ""}, 'field "Err" is not allowed'),
    ("NetworkDriver.CreateEndpoint", {"Interface": {"Address": "10.77.0.2/24"}},
     'field "Interface.Address": "10.77.0.2/24" is not ""'),
    ("NetworkDriver.CreateEndpoint", {"Interface": {"MacAddress": "zz"}},
     'field "Interface.MacAddress": "zz" does not match'),
    ("NetworkDriver.CreateEndpoint", {"Interface": {"Mac": "02:42:0a:63:00:c8"}},
     'field "Interface.Mac" is not allowed'),
    ("NetworkDriver.EndpointOperInfo", {}, 'field "Value" is missing'),
    ("NetworkDriver.Join", {"Gateway": "10.77.0.1"}, 'field "InterfaceName" is missing'),
    ("NetworkDriver.Join", {"InterfaceName": {"SrcName": "veth0"}},
     'field "InterfaceName.DstPrefix" is missing'),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "a-very-long-interface", "DstPrefix": "eth"}},
     'field "InterfaceName.SrcName": "a-very-long-interface" must have at most 15 characters'),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "v0", "DstPrefix": "eth"}, "Gateway": "10.77.0.1/24"},
     'field "Gateway": "10.77.0.1/24" does not match'),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "v0", "DstPrefix": "eth"},
      "StaticRoutes": [{"Destination": "0.0.0.0/0", "RouteType": 0}]},
     'field "StaticRoutes[0].NextHop" is missing'),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "v0", "DstPrefix": "eth"},
      "StaticRoutes": [{"Destination": "10.2.0.0/16", "RouteType": 1, "NextHop": "10.0.0.1"}]},
     'field "StaticRoutes[0].NextHop" is not allowed here'),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "v0", "DstPrefix": "eth"},
      "StaticRoutes": [{"Destination": "10.2.0.0/16", "RouteType": 2}]},
     'field "StaticRoutes[0].RouteType": 2 is not one of 0, 1'),
    ("NetworkDriver.Join",
     {"InterfaceName": {"SrcName": "v0", "DstPrefix": "eth"}, "DisableGatewayService": 1},
     'field "DisableGatewayService": 1 is not of type "boolean"'),
    ("IpamDriver.GetCapabilities", {"RequiresMACAddress": False},
     'field "RequiresRequestReplay" is missing'),
    ("IpamDriver.GetDefaultAddressSpaces",
     {"LocalDefaultAddressSpace": "", "GlobalDefaultAddressSpace": "g"},
     'field "LocalDefaultAddressSpace": "" must not be empty'),
    ("IpamDriver.RequestPool", {"PoolID": "p", "Pool": "10.77.0.0", "Data": {}},
     'field "Pool": "10.77.0.0" does not match'),
    ("IpamDriver.RequestPool", {"PoolID": "p", "Pool": "10.77.0.0/24"}, 'field "Data" is missing'),
    ("IpamDriver.RequestPool", {"PoolID": "p", "Pool": "10.77.0.0/24", "Data": {"n": 1}},
     'field "Data.n": 1 is not of type "string"'),
    ("IpamDriver.RequestAddress", {"Address": "10.77.0.2", "Data": {}},
     'field "Address": "10.77.0.2" does not match'),
    ("IpamDriver.ReleasePool", {"PoolID": "p"}, 'field "PoolID" is not allowed'),
    ("Error", {"Err": ""}, 'field "Err": "" must not be empty'),
    ("Error", {}, 'field "Err" is missing'),
    ("Error", {"Err": "x", "Error": "x"}, 'field "Error" is not allowed'),
]


@pytest.mark.parametrize("method,body,message", BAD_RESPONSES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_RESPONSES)])
def test_bad_response_names_field_and_value(method, body, message):
    with pytest.raises(spec.SpecError) as info:
        spec.validate(f"{method}.response", body)
    assert str(info.value).startswith(message), str(info.value)
