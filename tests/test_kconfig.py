"""The kernel build profile (xfrmd.kconfig): each option changes what a user sees — reply
bytes, errno and extack — exactly where a kernel built without it differs; the [kernel]
topology table; `xfrmd ctl kconfig`."""
from __future__ import annotations

import errno as E
import struct
import sys

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.conftest import require_shim, xfrmd_run
from tests.differential.kconfig_host import (NETLINK_ROUTE, NETLINK_XFRM, EmulatedKernel,
                                             _msg, _policy)
from tests.sad_helpers import A, M, algo, algo2, usersa_id, usersa_info
from xfrmd import kconfig
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.topology import from_dict, load_topology

DUMP = N.NLM_F_REQUEST | N.NLM_F_DUMP
CREATE = N.NLM_F_REQUEST | N.NLM_F_ACK | 0x400 | 0x200


def make(topology="bare", **options) -> EmulatedKernel:
    k = Kernel(ManualClock(), topology=load_topology(topology), seed=1)
    kconfig.configure(k, options)
    return EmulatedKernel(k)


def attr_types(payload: bytes, fixed: int) -> list[int]:
    return [ra.type for ra in N.iter_attrs(payload, fixed, len(payload))]


# -- multicast routing -------------------------------------------------------------------------

def _netconf(nl, family: int, index: int = -1) -> bytes:
    body = struct.pack("=Bxxx", family) + N.nla(1, struct.pack("=i", index))
    ans = nl.ask(NETLINK_ROUTE, _msg(82, body))
    assert ans.errno == 0
    return ans.messages[0]


def test_ipv6_mroute_decides_whether_inet6_netconf_has_mc_forwarding():
    with_, without = make(), make(IPV6_MROUTE=False)
    for index in (1, -1, -2):
        assert attr_types(_netconf(with_, 10, index), 4) == [1, 2, 4, 5, 6]
        assert attr_types(_netconf(without, 10, index), 4) == [1, 2, 5, 6]
        # inet always writes it (devinet.c has no #ifdef there)
        assert _netconf(make(IP_MROUTE=False), 2, index) == _netconf(with_, 2, index)
    dump = without.ask(NETLINK_ROUTE, _msg(82, struct.pack("=Bxxx", 0), DUMP)).messages
    assert [attr_types(m, 4) for m in dump if m[0] == 10] == [[1, 2, 5, 6]] * 3


def _mroute_dump(nl, family: int) -> list[int]:
    nl.ask(NETLINK_ROUTE, _msg(16, struct.pack("=BxHiII", 0, 0, 1, 1, 1)))     # lo up
    ans = nl.ask(NETLINK_ROUTE, _msg(26, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                                     DUMP))
    return [m[0] for m in ans.messages]


def test_without_multicast_routing_an_mroute_dump_is_the_unspec_route_dump():
    assert _mroute_dump(make(), 128) == [] and _mroute_dump(make(), 129) == []
    v4 = _mroute_dump(make(IP_MROUTE=False), 128)
    assert v4 and set(v4) == {2, 10}              # rtnl_dump_all: every family's routes
    assert set(_mroute_dump(make(IPV6_MROUTE=False), 129)) == {2, 10}
    assert _mroute_dump(make(IPV6_MROUTE=False), 128) == []


def _rule_families(nl, family=0):
    ans = nl.ask(NETLINK_ROUTE, _msg(34, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                                     DUMP))
    return ans.errno, [m[0] for m in ans.messages]


def test_multiple_mroute_tables_give_the_multicast_families_their_default_rule():
    assert _rule_families(make()) == (0, [2, 2, 2, 128, 129, 10, 10])
    assert _rule_families(make(IP_MROUTE_MULTIPLE_TABLES=False)) == (0, [2, 2, 2, 129, 10, 10])
    # IP_MROUTE off takes its multiple tables along (kconfig depends on)
    assert _rule_families(make(IP_MROUTE=False, IPV6_MROUTE=False)) == (0, [2, 2, 2, 10, 10])
    assert _rule_families(make(IP_MROUTE=False), 128) == (E.EAFNOSUPPORT, [])
    assert _rule_families(make(), 128) == (0, [128])


# -- link kinds --------------------------------------------------------------------------------

def _newlink(nl, kind: str, name=b"x0", index=0):
    info = N.nla(1, kind.encode() + b"\0")
    body = struct.pack("=BxHiII", 0, 0, index, 0, 0) + N.nla(3, name + b"\0") + N.nla(18 | 0x8000, info)
    ans = nl.ask(NETLINK_ROUTE, _msg(16, body, CREATE if not index else N.NLM_F_REQUEST | N.NLM_F_ACK))
    return ans.errno, ans.extack


@pytest.mark.parametrize("kind,option", [("dummy", "DUMMY"), ("bond", "BONDING"),
                                         ("veth", "VETH"), ("bridge", "BRIDGE")])
def test_a_link_kind_the_kernel_lacks_is_an_unknown_device_type(kind, option):
    assert _newlink(make(), kind) == (0, "")
    assert _newlink(make(**{option: False}), kind) == (E.EOPNOTSUPP, "Unknown device type")


def test_netdevsim_refuses_ip_link_add_only_when_built():
    msg = ('netdevsim: Please use: echo "[ID] [PORT_COUNT] [NUM_QUEUES]" > '
           '/sys/bus/netdevsim/new_device')
    assert _newlink(make(), "netdevsim") == (E.EOPNOTSUPP, msg)
    # nsim_validate runs before the device lookup: naming an existing device fails too
    assert _newlink(make(), "netdevsim", b"lo", index=1) == (E.EOPNOTSUPP, msg)
    off = make(NETDEVSIM=False)
    assert _newlink(off, "netdevsim") == (E.EOPNOTSUPP, "Unknown device type")
    assert _newlink(off, "netdevsim", b"lo", index=1) == (0, "")


def test_no_netdevsim_bus_without_netdevsim():
    from xfrmd import vfs
    for on in (True, False):
        k = make(NETDEVSIM=on).kernel
        ns = k.netns("default")
        assert vfs.write_file(k, ns, "/sys/bus/netdevsim/new_device", "3 1") == (0 if on else E.ENOENT)
        assert (ns.links.by_name("eni3np1") is not None) == on
        assert vfs.list_dir(k, ns, "/sys/bus/netdevsim/devices")[0] == (0 if on else E.ENOENT)


def test_a_topology_cannot_have_a_device_of_a_kind_it_turned_off():
    spec = {"kernel": {"CONFIG_DUMMY": False},
            "netns": [{"name": "default", "device": [{"name": "d0", "kind": "dummy"}]}]}
    with pytest.raises(ValueError, match="kind dummy needs CONFIG_DUMMY"):
        from_dict(spec)


# -- xfrm types and algorithms -----------------------------------------------------------------

V4 = {"src": "192.0.2.1", "dst": "198.51.100.1"}
V6 = {"src": "2001:db8::1", "dst": "2001:db8::2"}
CRYPT = N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16)))
AUTH = N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20)))
COMP = N.nla(A.ALG_COMP, algo("deflate", b""))
TYPES = [("INET_ESP", X.IPPROTO_ESP, CRYPT, V4), ("INET6_ESP", X.IPPROTO_ESP, CRYPT, V6),
         ("INET_AH", X.IPPROTO_AH, AUTH, V4), ("INET6_AH", X.IPPROTO_AH, AUTH, V6),
         ("INET_IPCOMP", X.IPPROTO_COMP, COMP, V4), ("INET6_IPCOMP", X.IPPROTO_COMP, COMP, V6)]


def _sa(nl, proto, alg, addrs, spi=0x100, mode=X.XFRM_MODE_TRANSPORT, extra=b""):
    ans = nl.ask(NETLINK_XFRM, _msg(M.NEWSA, usersa_info(spi=spi, proto=proto, mode=mode, **addrs)
                                    + alg + extra))
    return ans.errno, ans.extack


@pytest.mark.parametrize("option,proto,alg,addrs", TYPES, ids=[t[0] for t in TYPES])
def test_an_xfrm_type_is_per_family(option, proto, alg, addrs):
    other = V6 if addrs is V4 else V4
    nl = make(**{option: False})
    assert _sa(nl, proto, alg, addrs) == (E.EPROTONOSUPPORT, "Requested type not found")
    assert _sa(nl, proto, alg, other) == (0, "")
    assert _sa(make(), proto, alg, addrs) == (0, "")


def test_ipcomp_tunnel_mode_needs_the_tunnel_type():
    for tunnel, addrs in (("INET_XFRM_TUNNEL", V4), ("INET6_XFRM_TUNNEL", V6)):
        assert _sa(make(**{tunnel: False}), X.IPPROTO_COMP, COMP, addrs, mode=X.XFRM_MODE_TUNNEL) \
            == (E.EINVAL, "Kernel error: failed to initialize the associated state")
        assert _sa(make(**{tunnel: False}), X.IPPROTO_COMP, COMP, addrs) == (0, "")


def test_a_crypto_option_removes_its_algorithms():
    gcm = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 128))
    gmac = N.nla(A.ALG_AEAD, algo2("rfc4543(gcm(aes))", bytes(20), 128))
    ccm = N.nla(A.ALG_AEAD, algo2("rfc4309(ccm(aes))", bytes(19), 128))
    nl = make(CRYPTO_GCM=False)
    assert _sa(nl, X.IPPROTO_ESP, gcm, V4) == (E.ENOSYS, "Requested AEAD algorithm not found")
    assert _sa(nl, X.IPPROTO_ESP, gmac, V4, spi=0x101) == (E.ENOSYS, "Requested AEAD algorithm not found")
    assert _sa(nl, X.IPPROTO_ESP, ccm, V4, spi=0x102) == (0, "")
    assert _sa(make(), X.IPPROTO_ESP, gcm, V4) == (0, "")
    # the algorithm lookup comes before the type lookup
    assert _sa(make(CRYPTO_SHA1=False, INET_AH=False), X.IPPROTO_AH, AUTH, V4) == \
        (E.ENOSYS, "Requested AUTH algorithm not found")
    assert _sa(make(CRYPTO_DEFLATE=False), X.IPPROTO_COMP, COMP, V4) == \
        (E.ENOSYS, "Requested COMP algorithm not found")


def test_without_xfrm_iptfs_an_iptfs_sa_keeps_no_iptfs_settings():
    def iptfs_attrs(nl):
        extra = N.nla(A.SA_DIR, bytes([X.XFRM_SA_DIR_OUT])) + N.nla_u32(A.IPTFS_PKT_SIZE, 1400)
        ans = nl.ask(NETLINK_XFRM, _msg(M.NEWSA, usersa_info(mode=X.XFRM_MODE_IPTFS, replay_window=0,
                                                             **V4) + CRYPT + extra))
        assert ans.errno == 0
        sa = nl.ask(NETLINK_XFRM, _msg(M.GETSA, usersa_id(dst=V4["dst"]))).messages[0]
        return sorted(t for t in (ra.type for ra in N.iter_attrs(sa, 224, len(sa))) if 36 <= t <= 41)
    assert iptfs_attrs(make()) == [39, 40, 41]      # an outbound SA: the egress settings
    assert iptfs_attrs(make(XFRM_IPTFS=False)) == []


# -- XFRM_OFFLOAD ------------------------------------------------------------------------------

def _offloaded_sa(nl) -> tuple[int, list[int], list]:
    k = nl.kernel
    nsim = k.netns("default").links.by_name("nsim0")
    off = N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", nsim.ifindex, 0))
    err, _ = _sa(nl, X.IPPROTO_ESP, N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 128)),
                 V4, extra=off)
    got = nl.ask(NETLINK_XFRM, _msg(M.GETSA, usersa_id(spi=0x100, **{"dst": V4["dst"]})))
    sa = got.messages[0]
    return err, [ra.type for ra in N.iter_attrs(sa, 224, len(sa))], nsim.xfrmdev_ops.table(nsim)


def test_without_xfrm_offload_an_offload_request_is_accepted_and_ignored():
    err, attrs, hw = _offloaded_sa(make("default"))
    assert err == 0 and A.OFFLOAD_DEV in attrs and len(hw) == 1
    err, attrs, hw = _offloaded_sa(make("default", XFRM_OFFLOAD=False))
    assert err == 0 and A.OFFLOAD_DEV not in attrs and hw == []
    # a policy: xfrm_dev_policy_add's flag check, or the stub's silence
    bad = _policy(N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", 1, 0)))
    on = make().ask(NETLINK_XFRM, bad)
    assert (on.errno, on.extack) == (E.EINVAL, "Unrecognized flags in offload request")
    off = make(XFRM_OFFLOAD=False)
    assert off.ask(NETLINK_XFRM, bad).errno == 0
    dumped = off.ask(NETLINK_XFRM, _msg(M.GETPOLICY, b"", DUMP)).messages
    assert len(dumped) == 1 and A.OFFLOAD_DEV not in attr_types(dumped[0], 168)


# -- the profile itself, the [kernel] table ----------------------------------------------------

def test_dependencies_follow_kconfig():
    cfg = kconfig.KernelConfig()
    cfg.set("IPV6_MROUTE", False)
    assert not cfg.enabled("IPV6_MROUTE_MULTIPLE_TABLES")
    with pytest.raises(ValueError, match="depends on CONFIG_IPV6_MROUTE"):
        cfg.set("IPV6_MROUTE_MULTIPLE_TABLES", True)
    cfg.update({"CONFIG_IPV6_MROUTE_MULTIPLE_TABLES": True, "IPV6_MROUTE": True})   # any order
    assert cfg.enabled("IPV6_MROUTE_MULTIPLE_TABLES")
    with pytest.raises(ValueError, match="unknown kernel option 'CONFIG_NOPE'"):
        cfg.set("CONFIG_NOPE", True)


def test_parse_config_reads_dot_config_lines():
    text = ("CONFIG_XFRM=y\n# CONFIG_IP_MROUTE is not set\nCONFIG_DUMMY=m\n"
            'CONFIG_LOCALVERSION=""\nCONFIG_NR_CPUS=64\n# a comment\n')
    sym = kconfig.parse_config(text)
    assert sym == {"XFRM": True, "IP_MROUTE": False, "DUMMY": True, "LOCALVERSION": True,
                   "NR_CPUS": True}
    opts = kconfig.from_config(sym)
    assert opts["DUMMY"] and not opts["IP_MROUTE"] and not opts["BONDING"]   # absent: off


def _topo(tmp_path, table: str):
    p = tmp_path / "t.toml"
    p.write_text(table + '\n[[netns]]\nname = "default"\n')
    return str(p)


def test_the_kernel_table_of_a_topology(tmp_path):
    t = load_topology(_topo(tmp_path, '[kernel]\nCONFIG_IPV6_MROUTE = false\nINET_ESP = "n"\n'
                                      'CONFIG_DUMMY = "m"\n'))
    k = Kernel(ManualClock(), topology=t)
    assert kconfig.of(k).off() == ["IPV6_MROUTE", "IPV6_MROUTE_MULTIPLE_TABLES", "INET_ESP"]
    for text, problem in (('CONFIG_NOPE = false', ":2: [kernel]: unknown kernel option"),
                          ('CONFIG_DUMMY = "maybe"', ":2: [kernel]: kernel option value"),
                          ('CONFIG_IP_MROUTE = false\nCONFIG_IP_MROUTE_MULTIPLE_TABLES = true',
                           "depends on CONFIG_IP_MROUTE")):
        with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
            load_topology(_topo(tmp_path, "[kernel]\n" + text))


def test_ctl_kconfig_shows_and_sets_the_profile(tmp_path):
    require_shim("ip")
    topo = _topo(tmp_path, "[kernel]\nCONFIG_DUMMY = false\n")
    ctl = f"{sys.executable} -m xfrmd.cli ctl"
    p = xfrmd_run(f"{ctl} kconfig show DUMMY BONDING; ip link add d0 type dummy; "
                  f"{ctl} kconfig set CONFIG_DUMMY=y BONDING=n && ip link add d0 type dummy && "
                  f"ip link add b0 type bond; {ctl} kconfig show DUMMY BONDING; "
                  f"{ctl} kconfig set IP_MROUTE=n IP_MROUTE_MULTIPLE_TABLES=y; "
                  f"{ctl} kconfig show IP_MROUTE", topo)
    assert p.stdout == ("# CONFIG_DUMMY is not set\nCONFIG_BONDING=y\n"
                        "CONFIG_DUMMY=y\n# CONFIG_BONDING is not set\nCONFIG_IP_MROUTE=y\n")
    assert p.stderr == ("Error: Unknown device type.\nError: Unknown device type.\n"
                        "xfrmd ctl: xfrmd: CONFIG_IP_MROUTE_MULTIPLE_TABLES depends on "
                        "CONFIG_IP_MROUTE, which is off\n")
