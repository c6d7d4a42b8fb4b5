"""The pure side of the firewall: rendering, parsing, planning. No root."""

import pytest

from datapath import rules as R
from datapath.errors import DatapathError
from datapath.model import EndpointPorts, NetworkRules, PortBinding

NET = NetworkRules("0123456789abcdef", "pt-a", ("10.9.0.0/24",), ("fd00:9::/64",))
NCHAIN = "PONTOON-N-0123456789ab"
EP = EndpointPorts(
    "fedcba9876543210", NET.network_id, "pt-a",
    (
        PortBinding("tcp", "", 8080, "10.9.0.2", 80),
        PortBinding("udp", "192.0.2.7", 53, "10.9.0.2/24", 5353),
        PortBinding("tcp", "::", 8080, "fd00:9::2", 80),
    ),
)
ECHAIN = "PONTOON-E-fedcba987654"


def save_text(ruleset: R.Ruleset, hooked: bool = True) -> str:
    """What iptables-save prints after our restore (builtins first)."""
    out = []
    for table in R.TABLES:
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c, _ in R.DEFAULT.hooks()[table]]
        out += [f":{c} - [0:0]" for c in ruleset[table]]
        if hooked:
            out += [f"-A {c} {j}" for c, j in R.DEFAULT.hooks()[table]]
        for c, rules in ruleset[table].items():
            out += [f"-A {c} {r}" for r in rules]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def test_icc_on_accepts_and_off_drops_bridge_to_bridge():
    on = R.network_fragment(NET, "ipv4").own["filter"][NCHAIN]
    off = R.network_fragment(NetworkRules(NET.network_id, "pt-a", icc=False), "ipv4").own["filter"][NCHAIN]
    assert "-i pt-a -o pt-a -j ACCEPT" in on
    assert "-i pt-a -o pt-a -j DROP" in off
    assert "-i pt-a ! -o pt-a -j ACCEPT" in off  # still reaches the outside


def test_isolation_comes_before_any_accept():
    rules = R.network_fragment(NET, "ipv4").own["filter"][NCHAIN]
    assert rules[:2] == ["-i pt-a ! -o pt-a -j PONTOON-ISOL-OUT", "! -i pt-a -o pt-a -j PONTOON-ISOL-IN"]
    assert rules[-1] == "-o pt-a -j DROP"
    shared = R.network_fragment(NET, "ipv4").shared["filter"]
    assert shared[R.DEFAULT.isol_out] == ["-o pt-a -j DROP"]
    assert shared[R.DEFAULT.isol_in] == ["-i pt-a -j DROP"]
    base = R.DEFAULT.base_chains()["filter"]
    assert "-o docker0 -j DROP" in base[R.DEFAULT.isol_out] and "-o br-+ -j DROP" in base[R.DEFAULT.isol_out]
    assert "-i docker0 -j DROP" in base[R.DEFAULT.isol_in] and "-i br-+ -j DROP" in base[R.DEFAULT.isol_in]


def test_masquerade_per_family_and_off():
    v4 = R.network_fragment(NET, "ipv4").own["nat"][NCHAIN]
    v6 = R.network_fragment(NET, "ipv6").own["nat"][NCHAIN]
    assert "-s 10.9.0.0/24 ! -o pt-a -j MASQUERADE" in v4
    assert "-s fd00:9::/64 ! -o pt-a -j MASQUERADE" in v6
    assert "-s 127.0.0.0/8 -o pt-a -j MASQUERADE" in v4
    assert not any("127.0.0.0" in r for r in v6)
    off = NetworkRules(NET.network_id, "pt-a", ("10.9.0.0/24",), masquerade=False)
    assert not any("! -o pt-a -j MASQUERADE" in r for r in R.network_fragment(off, "ipv4").own["nat"][NCHAIN])


def test_internal_drops_both_ways_and_never_masquerades():
    net = NetworkRules(NET.network_id, "pt-a", ("10.9.0.0/24",), internal=True)
    frag = R.network_fragment(net, "ipv4")
    f = frag.own["filter"][NCHAIN]
    assert "-i pt-a ! -o pt-a -j DROP" in f and "! -i pt-a -o pt-a -j DROP" in f
    assert "-i pt-a ! -o pt-a -j ACCEPT" not in f
    assert not any("ctstate RELATED" in r for r in f)
    assert frag.own["nat"][NCHAIN] == []


def test_subnets_are_normalised():
    net = NetworkRules(NET.network_id, "pt-a", ("10.9.0.5/24",))
    assert "-s 10.9.0.0/24 ! -o pt-a -j MASQUERADE" in R.network_fragment(net, "ipv4").own["nat"][NCHAIN]


def test_ports_render_dnat_and_accept_per_family():
    v4 = R.ports_fragment(EP, "ipv4")
    assert v4.own["nat"][ECHAIN] == [
        "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.9.0.2:80",
        "-d 192.0.2.7/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.9.0.2:5353",
    ]
    assert v4.own["filter"][ECHAIN] == [
        "-d 10.9.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT",
        "-d 10.9.0.2/32 -p udp -m udp --dport 5353 -j ACCEPT",
    ]
    assert v4.shared["filter"][R.DEFAULT.ports] == [f"-o pt-a -j {ECHAIN}"]
    assert v4.shared["nat"][R.DEFAULT.published] == [f"-j {ECHAIN}"]
    v6 = R.ports_fragment(EP, "ipv6")
    assert v6.own["nat"][ECHAIN] == ["-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:9::2]:80"]


def test_ports_without_bindings_in_a_family_add_nothing():
    ep = EndpointPorts("e" * 16, NET.network_id, "pt-a", (PortBinding("tcp", "", 1, "10.9.0.2", 1),))
    frag = R.ports_fragment(ep, "ipv6")
    assert frag.own == {"filter": {}, "nat": {}} and frag.shared == {"filter": {}, "nat": {}}


@pytest.mark.parametrize("binding", [
    PortBinding("icmp", "", 1, "10.9.0.2", 1),
    PortBinding("tcp", "fd00::1", 1, "10.9.0.2", 1),
])
def test_bad_bindings_are_refused(binding):
    with pytest.raises(ValueError):
        R.ports_fragment(EndpointPorts("e" * 16, "n", "pt-a", (binding,)), "ipv4")


def test_plan_from_nothing_creates_chains_then_jumps_first():
    text, changes = R.plan(R.parse_save(""), R.desired([NET], [EP], "ipv4"), "ipv4")
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert "-I FORWARD 1 -j PONTOON-FORWARD" in lines
    assert "-I PREROUTING 1 -m addrtype --dst-type LOCAL -j PONTOON-DNAT" in lines
    assert "-I OUTPUT 1 -m addrtype --dst-type LOCAL -j PONTOON-DNAT" in lines
    # In each table every chain is declared before any rule can jump to it.
    for section in text.split("COMMIT\n")[:-1]:
        kinds = [l[0] for l in section.splitlines()[1:]]
        assert kinds == sorted(kinds, key=lambda k: k != ":")
    assert f"ipv4 filter: create chain {NCHAIN}" in changes


def test_plan_of_what_is_there_is_empty():
    state = R.desired([NET], [EP], "ipv4")
    assert R.plan(R.parse_save(save_text(state)), state, "ipv4") == ("", [])


def test_plan_moves_our_jump_back_to_the_top():
    state = R.desired([], [], "ipv4")
    saved = R.parse_save(save_text(state))
    saved.builtin["filter"]["FORWARD"][:0] = ["-j DOCKER-USER"]
    text, changes = R.plan(saved, state, "ipv4")
    assert "-D FORWARD -j PONTOON-FORWARD\n-I FORWARD 1 -j PONTOON-FORWARD" in text
    assert changes == ["ipv4 filter: restore jump FORWARD -> PONTOON-FORWARD"]


def test_plan_rewrites_a_flushed_chain_whole():
    state = R.desired([NET], [], "ipv4")
    saved = R.parse_save(save_text(state))
    saved.ours["filter"][NCHAIN] = []
    text, changes = R.plan(saved, state, "ipv4")
    assert text.splitlines()[1] == f":{NCHAIN} - [0:0]"
    assert changes == [f"ipv4 filter: rewrite chain {NCHAIN}"]


def test_removal_deletes_own_chains_and_shared_entries():
    state = R.desired([NET], [EP], "ipv4")
    after = R.without(R.without(state, R.ports_fragment(EP, "ipv4")), R.network_fragment(NET, "ipv4"))
    assert after == R.desired([], [], "ipv4")
    text, _ = R.plan(R.parse_save(save_text(state)), after, "ipv4")
    assert f"-X {NCHAIN}" in text and f"-X {ECHAIN}" in text
    assert "pt-a" not in text


def test_without_networks_nothing_of_ours_is_left():
    state = R.desired([NET], [], "ipv4")
    empty = R.pruned(R.without(state, R.network_fragment(NET, "ipv4")))
    assert empty == {"filter": {}, "nat": {}}
    text, changes = R.plan(R.parse_save(save_text(state)), empty, "ipv4")
    assert "-D FORWARD -j PONTOON-FORWARD" in text and "-X PONTOON-FORWARD" in text
    assert "-I " not in text
    assert "ipv4 filter: remove jump FORWARD -> PONTOON-FORWARD" in changes
    assert R.pruned(state) == state


def test_removal_finds_chains_of_a_renamed_bridge():
    state = R.desired([NET], [], "ipv4")
    renamed = NetworkRules(NET.network_id, "pt-b", NET.subnets_v4)
    after = R.without(state, R.network_fragment(renamed, "ipv4"))
    assert not any(NCHAIN in r for rules in after["filter"].values() for r in rules)
    assert NCHAIN not in after["filter"] and NCHAIN not in after["nat"]


def test_adding_twice_keeps_one_copy():
    once = R.including(R.with_base({}), R.network_fragment(NET, "ipv4"))
    assert R.including(once, R.network_fragment(NET, "ipv4")) == once


def test_parse_keeps_only_our_chains_and_hooked_builtins():
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:PONTOON-X - [0:0]\n"
        "-A FORWARD -j DOCKER-USER\n-A FORWARD -j PONTOON-FORWARD\n-A DOCKER -j RETURN\n"
        "-A PONTOON-X -j DROP\nCOMMIT\n*mangle\n:PONTOON-Y - [0:0]\nCOMMIT\n"
    )
    saved = R.parse_save(text.replace("-A DOCKER -j RETURN\n", "-A DOCKER -j RETURN\n-A FORWARD\n"))
    assert saved.ours["filter"] == {"PONTOON-X": ["-j DROP"]}
    # "-A FORWARD": a rule with neither match nor target, a user's counter.
    assert saved.builtin["filter"]["FORWARD"] == ["-j DOCKER-USER", "-j PONTOON-FORWARD", ""]
    assert "PONTOON-Y" not in str(saved.ours)


def test_reconcile_target_drops_orphans():
    state = R.desired([NET], [EP], "ipv4")
    text, changes = R.plan(R.parse_save(save_text(state)), R.desired([], [], "ipv4"), "ipv4")
    assert f"ipv4 filter: delete chain {NCHAIN}" in changes
    assert f"ipv4 nat: delete chain {ECHAIN}" in changes


def test_a_jump_to_another_pontoons_chain_may_stay_above_ours():
    state = R.desired([], [], "ipv4")
    saved = R.parse_save(save_text(state))
    saved.builtin["filter"]["FORWARD"][:0] = ["-j PONTOONT1234-FORWARD"]
    assert R.plan(saved, state, "ipv4") == ("", [])


def test_names_follow_the_prefix_and_fit_iptables():
    names = R.Names("PONTOONT1234")
    assert names.network("f" * 64) == "PONTOONT1234-N-ffffffffffff"
    assert len(names.network("f" * 64)) <= 28
    assert names.owns("PONTOONT1234-DNAT") and not names.owns("PONTOON-DNAT")
    assert not R.DEFAULT.owns("PONTOONT1234-DNAT")
    for bad in ("DOCKER", "PONTOON-TOO-LONG"):
        with pytest.raises(ValueError):
            R.Names(bad)


def test_order_of_entries_in_base_chains_is_no_change():
    other = NetworkRules("9" * 16, "pt-b", ("10.8.0.0/24",))
    state = R.desired([NET, other], [], "ipv4")
    assert R.plan(R.parse_save(save_text(R.desired([other, NET], [], "ipv4"))), state, "ipv4") == ("", [])
    # but the order inside a network's own chain matters
    saved = R.parse_save(save_text(state))
    saved.ours["filter"][NCHAIN].reverse()
    assert R.plan(saved, state, "ipv4")[1] == [f"ipv4 filter: rewrite chain {NCHAIN}"]


def test_adding_checks_the_hooks_first_and_deletes_nothing():
    text = R.adding(R.network_fragment(NET, "ipv4"))
    sections = [s.splitlines() for s in text.split("COMMIT\n")[:-1]]
    assert [s[0] for s in sections] == ["*filter", "*nat", "*filter", "*nat"]
    assert sections[0][1:] == ["-C FORWARD -j PONTOON-FORWARD", "-C INPUT -j PONTOON-INPUT"]
    assert all(line.startswith("-C ") for s in sections[:2] for line in s[1:])
    changes = sections[2][1:]
    # The chain is made before anything jumps to it; "-N" refuses a second add.
    assert changes[0] == f"-N {NCHAIN}"
    assert changes.index(f"-A PONTOON-BRIDGES -i pt-a -j {NCHAIN}") > changes.index(f"-N {NCHAIN}")
    assert not any(line.startswith(("-D", "-F", "-X", ":")) for line in text.splitlines())


def test_removing_takes_what_adding_added_and_the_base_only_when_last():
    frag = R.network_fragment(NET, "ipv4")
    added = [line for line in R.adding(frag).splitlines() if line.startswith("-A ")]
    lines = R.removing(frag).splitlines()
    entries = [line for line in added if not line.startswith(f"-A {NCHAIN} ")]
    assert sorted(line.replace("-D ", "-A ", 1) for line in lines if line.startswith("-D ")) == sorted(entries)
    assert f"-X {NCHAIN}" in lines and "-X PONTOON-FORWARD" not in lines
    last = R.removing(frag, prune=True).splitlines()
    for chain, jump in R.DEFAULT.hooks()["filter"]:
        assert f"-D {chain} {jump}" in last
    for chain in R.DEFAULT.base_chains()["filter"]:
        assert f"-X {chain}" in last
    assert last.index("-D PONTOON-FORWARD -j PONTOON-BRIDGES") < last.index("-X PONTOON-BRIDGES")


def test_ports_render_nothing_in_a_family_without_bindings():
    ep = EndpointPorts("e" * 16, NET.network_id, "pt-a", (PortBinding("tcp", "", 1, "10.9.0.2", 1),))
    frag = R.ports_fragment(ep, "ipv6")
    assert frag.empty() and R.adding(frag) == "" and R.removing(frag) == ""


def test_hooked_chains_do_not_grow_with_networks():
    """Every add checks the hooks, and iptables-nft reads all rules of the
    chain a checked jump goes to."""
    other = NetworkRules("9" * 16, "pt-b", ("10.8.0.0/24",))
    state = R.desired([NET, other], [EP], "ipv4")
    for table, hooks in R.DEFAULT.hooks().items():
        for _, jump in hooks:
            assert len(state[table][jump.split()[-1]]) == 1


# Defence in depth: whatever got past input validation, no value splits
# into tokens or lines of its own in iptables-restore input.
UNSAFE = ["pt-a\n-A INPUT -j ACCEPT", "pt a", "pt-a\t", "pt-a\r", "", "pt\x00a", "pt\u2028a", "pt\x85a"]


@pytest.mark.parametrize("bridge", UNSAFE)
def test_an_unsafe_bridge_name_is_refused_while_rendering(bridge):
    net = NetworkRules(NET.network_id, bridge, NET.subnets_v4, NET.subnets_v6)
    for family in R.FAMILIES:
        with pytest.raises(R.UnsafeValue, match="render firewall rules") as caught:
            R.adding(R.network_fragment(net, family))
        assert repr(bridge) in str(caught.value)
    ports = EndpointPorts(EP.endpoint_id, NET.network_id, bridge, EP.bindings)
    with pytest.raises(R.UnsafeValue):
        R.ports_fragment(ports, "ipv4")


@pytest.mark.parametrize("address", ["fd00:9::2%eth0\n-A INPUT", "fd00:9::2%a b"])
def test_an_unsafe_address_is_refused_while_rendering(address):
    zoned = EndpointPorts(EP.endpoint_id, NET.network_id, "pt-a", (PortBinding("tcp", "", 8080, address, 80),))
    with pytest.raises(R.UnsafeValue):
        R.ports_fragment(zoned, "ipv6")
    net = NetworkRules(NET.network_id, "pt-a", (), (address.replace("::2", "::") + "/64",))
    with pytest.raises(R.UnsafeValue):
        R.network_fragment(net, "ipv6")


@pytest.mark.parametrize("field", [{"trusted_interfaces": ("eth1\n-A INPUT -j ACCEPT",)},
                                   {"host_ipv4": "192.0.2.1 -j ACCEPT"}])
def test_unsafe_gateway_option_values_are_refused_while_rendering(field):
    net = NetworkRules(NET.network_id, "pt-a", NET.subnets_v4, NET.subnets_v6, **field)
    with pytest.raises(R.UnsafeValue):
        R.network_fragment(net, "ipv4")


def test_every_restore_line_is_checked():
    frag = R.network_fragment(NET, "ipv4")
    frag.own["filter"][NCHAIN].append("-j ACCEPT\n-A INPUT -j ACCEPT")
    with pytest.raises(R.UnsafeValue, match="INPUT"):
        R.adding(frag)


def test_unsafe_values_are_datapath_errors():
    """Which the app answers with a 500 naming the value (tests/unit/test_protocol.py)."""
    assert issubclass(R.UnsafeValue, DatapathError)


def _filter(net, family="ipv4"):
    return R.network_fragment(net, family).own["filter"][NCHAIN]


def _nat(net, family="ipv4"):
    return R.network_fragment(net, family).own["nat"][NCHAIN]


def test_nat_mode_lets_only_dnated_connections_reach_published_ports():
    f = _filter(NET)
    assert f"! -i pt-a -o pt-a -m conntrack --ctstate DNAT -j {R.DEFAULT.ports}" in f
    assert f"! -i pt-a -o pt-a -j {R.DEFAULT.ports}" not in f
    assert "-o pt-a -m conntrack --ctorigdst 127.0.0.0/8 -j DROP" in f
    assert "-o pt-a -m conntrack --ctorigdst ::1 -j DROP" in _filter(NET, "ipv6")


def test_trusted_interfaces_reach_the_published_ports_before_the_dnat_check():
    f = _filter(NetworkRules(NET.network_id, "pt-a", NET.subnets_v4, trusted_interfaces=("eth1", "vpn0")))
    dnat = f.index(f"! -i pt-a -o pt-a -m conntrack --ctstate DNAT -j {R.DEFAULT.ports}")
    assert f.index(f"-i eth1 -o pt-a -j {R.DEFAULT.ports}") < dnat
    assert f.index(f"-i vpn0 -o pt-a -j {R.DEFAULT.ports}") < dnat


def test_nat_unprotected_accepts_every_port_and_still_masquerades():
    net = NetworkRules(NET.network_id, "pt-a", NET.subnets_v4, gateway_mode_v4="nat-unprotected")
    assert "! -i pt-a -o pt-a -j ACCEPT" in _filter(net)
    assert "-s 10.9.0.0/24 ! -o pt-a -j MASQUERADE" in _nat(net)


def test_routed_mode_per_family_no_nat_ports_and_icmp_in():
    net = NetworkRules(NET.network_id, "pt-a", NET.subnets_v4, NET.subnets_v6, gateway_mode_v6="routed")
    assert _nat(net, "ipv6") == []
    assert "-s 10.9.0.0/24 ! -o pt-a -j MASQUERADE" in _nat(net)
    f6 = _filter(net, "ipv6")
    assert f"! -i pt-a -o pt-a -j {R.DEFAULT.ports}" in f6 and "-o pt-a -p ipv6-icmp -j ACCEPT" in f6
    ep = EndpointPorts(EP.endpoint_id, NET.network_id, "pt-a", EP.bindings, routed=("ipv6",))
    v6 = R.ports_fragment(ep, "ipv6")
    assert ECHAIN not in v6.own["nat"] and v6.own["filter"][ECHAIN] == ["-d fd00:9::2/128 -p tcp -m tcp --dport 80 -j ACCEPT"]
    assert R.ports_fragment(ep, "ipv4").own["nat"][ECHAIN]  # IPv4 is still mapped


def test_host_addresses_replace_masquerade_with_snat():
    net = NetworkRules(NET.network_id, "pt-a", NET.subnets_v4, NET.subnets_v6,
                       host_ipv4="192.0.2.1", host_ipv6="2001:db8::1")
    assert "-s 10.9.0.0/24 ! -o pt-a -j SNAT --to-source 192.0.2.1" in _nat(net)
    assert "-s fd00:9::/64 ! -o pt-a -j SNAT --to-source 2001:db8::1" in _nat(net, "ipv6")


def test_ipv6_only_network_closes_ipv4():
    net = NetworkRules(NET.network_id, "pt-a", (), NET.subnets_v6, ipv4=False)
    f = _filter(net)
    assert "-i pt-a ! -o pt-a -j DROP" in f and "-i pt-a ! -o pt-a -j ACCEPT" not in f
    assert _nat(net) == [] and R.network_fragment(net, "ipv4").shared["filter"].get(R.DEFAULT.loopback) is None
    assert "-i pt-a ! -o pt-a -j ACCEPT" in _filter(net, "ipv6")
