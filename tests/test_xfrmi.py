"""XFRM interfaces (link kind ``xfrm``): this machine's kernel has no CONFIG_XFRM_INTERFACE,
so the expected answers follow xfrm_interface_core.c (6.18): ``xfrmi_newlink``'s checks and
extack ("if_id must be non zero", "link and if_id must be zero", EEXIST for a taken if_id
or a second collect_md interface), ``xfrmi_changelink``'s ("collect_md can't be changed",
"device can't be changed to collect_md", EINVAL for a different link),
``xfrmi_dev_setup`` (ARPHRD_NONE, NOARP, no hardware address) and ``xfrmi_fill_info`` as
iproute2 6.1 prints it."""
from __future__ import annotations

import errno as E
import struct

from netlink_codec import netlink as N
from netlink_codec.netlink import nla, nla_u32

from .conftest import require_shim, xfrmd_run
from .test_rtnl import CREATE, Rt, ifinfo, linkinfo

RTM_NEWLINK, RTM_GETLINK = 16, 18


def _add(rt, name, data, flags=CREATE, index=0):
    return rt.req(RTM_NEWLINK, flags, ifinfo(index) + nla(3, name.encode() + b"\0")
                  + linkinfo("xfrm", data))


def test_newlink_and_changelink_checks():
    rt = Rt()
    lo = rt.links.by_name("lo").ifindex
    assert _add(rt, "x0", nla_u32(1, lo)) == (-E.EINVAL, "if_id must be non zero")
    assert _add(rt, "x0", nla_u32(1, lo) + nla_u32(2, 5)) == (0, None)
    assert _add(rt, "x1", nla_u32(2, 5)) == (-E.EEXIST, None)               # xfrmi_locate
    assert _add(rt, "x1", nla(3, b"") + nla_u32(2, 7)) == (-E.EINVAL, "link and if_id must be zero")
    assert _add(rt, "x1", nla(3, b"")) == (0, None)
    assert _add(rt, "x2", nla(3, b"")) == (-E.EEXIST, None)                 # one collect_md
    assert rt.links.by_name("x2") is None
    x0 = rt.links.by_name("x0")
    change = N.NLM_F_REQUEST | N.NLM_F_ACK
    assert _add(rt, "x0", nla_u32(2, 9), change, x0.ifindex) == (-E.EINVAL, None)  # link differs
    assert _add(rt, "x0", nla_u32(1, lo) + nla_u32(2, 9), change, x0.ifindex) == (0, None)
    assert x0.xfrmi.if_id == 9
    x1 = rt.links.by_name("x1")
    assert _add(rt, "x1", nla(3, b"") + nla_u32(2, 3), change, x1.ifindex) == \
        (-E.EINVAL, "collect_md can't be changed")
    assert _add(rt, "x0", nla(3, b"") + nla_u32(2, 9), change, x0.ifindex) == \
        (-E.EINVAL, "collect_md can't be changed")
    assert _add(rt, "x0", nla_u32(1, lo), change, x0.ifindex) == \
        (-E.EINVAL, "if_id must be non zero")
    assert _add(rt, "x1", b"", change, x1.ifindex) == (0, None)   # no IFLA_INFO_DATA: no call
    assert _add(rt, "x1", nla_u32(2, 9), change, x1.ifindex) == (-E.EEXIST, None)  # x0's


def test_changelink_of_the_collect_md_interface_follows_xfrmi_update():
    """xfrmi_changelink on the collect_md interface: xfrmi_locate finds no interface with the
    if_id, so xfrmi_update gives it the if_id, keeps collect_md and links it on the if_id
    hash; the same change again then finds it there and is refused."""
    rt = Rt()
    assert _add(rt, "x1", nla(3, b"")) == (0, None)
    x1 = rt.links.by_name("x1")
    change = N.NLM_F_REQUEST | N.NLM_F_ACK
    assert _add(rt, "x1", nla_u32(2, 3), change, x1.ifindex) == (0, None)
    assert (x1.xfrmi.if_id, x1.xfrmi.collect_md) == (3, True)
    assert _add(rt, "x1", nla_u32(2, 3), change, x1.ifindex) == \
        (-E.EINVAL, "device can't be changed to collect_md")
    assert _add(rt, "x2", nla_u32(2, 3)) == (-E.EEXIST, None)     # on the hash now
    assert _add(rt, "x2", nla(3, b"")) == (-E.EEXIST, None)       # still the collect_md one
    assert _add(rt, "x1", nla_u32(1, 1) + nla_u32(2, 4), change, x1.ifindex) == \
        (-E.EINVAL, None)                                         # xfrmi_change: link differs
    assert x1.xfrmi.if_id == 3


def test_fill_info_and_device_setup():
    rt = Rt()
    lo = rt.links.by_name("lo").ifindex
    assert _add(rt, "x0", nla_u32(1, lo) + nla_u32(2, 5)) == (0, None)
    x0 = rt.links.by_name("x0")
    rt.k.deliver(rt.s, N.encode_msg(RTM_GETLINK, N.NLM_F_REQUEST, 50, 0, ifinfo(x0.ifindex)))
    d = rt.k.recv(rt.s)
    fam, typ, idx, flags, _ = struct.unpack_from("=BxHiII", d, 16)
    assert (typ, flags & 0x80) == (65534, 0x80)                 # ARPHRD_NONE, IFF_NOARP
    attrs = {ra.type: bytes(d[ra.start:ra.end]) for ra in N.iter_attrs(d, 32, len(d))}
    assert 1 not in attrs and 2 not in attrs                    # no address: addr_len 0
    assert struct.unpack("=I", attrs[5])[0] == lo               # IFLA_LINK: xfrmi_get_iflink
    li = attrs[18]
    info = {ra.type: bytes(li[ra.start:ra.end]) for ra in N.iter_attrs(li, 0, len(li))}
    assert info[1] == b"xfrm\0"
    assert info[2] == nla_u32(1, lo) + nla_u32(2, 5)


def test_fill_info_of_the_collect_md_interface():
    """xfrmi_fill_info: IFLA_XFRM_LINK 0 and IFLA_XFRM_IF_ID 0 are always written, then the
    IFLA_XFRM_COLLECT_METADATA flag (an empty attribute); no IFLA_LINK (xfrmi_get_iflink 0)."""
    rt = Rt()
    assert _add(rt, "x1", nla(3, b"")) == (0, None)
    x1 = rt.links.by_name("x1")
    rt.k.deliver(rt.s, N.encode_msg(RTM_GETLINK, N.NLM_F_REQUEST, 51, 0, ifinfo(x1.ifindex)))
    d = rt.k.recv(rt.s)
    attrs = {ra.type: bytes(d[ra.start:ra.end]) for ra in N.iter_attrs(d, 32, len(d))}
    assert 5 not in attrs
    li = attrs[18]
    info = {ra.type: bytes(li[ra.start:ra.end]) for ra in N.iter_attrs(li, 0, len(li))}
    assert info[2] == bytes.fromhex("0800 0100 00000000 0800 0200 00000000 0400 0300")


def test_ip_d_link_show_prints_the_interface():
    require_shim("ip")
    p = xfrmd_run("ip link add x0 type xfrm dev lo if_id 5 && ip link add x1 type xfrm external"
                  " && ip -d link show x0 && ip -d link show x1 && ip link add x2 type xfrm if_id 5;"
                  " ip link set x0 type xfrm dev lo if_id 0x20 && ip -d -o link show x0", "bare")
    out = p.stdout
    assert "x0@lo: <NOARP,M-DOWN> mtu 1500 qdisc noop state DOWN" in out
    assert "    link/none  promiscuity 0" in out
    assert "    xfrm if_id 0x5 " in out and "    xfrm external " in out
    assert "RTNETLINK answers: File exists" in p.stderr
    assert "xfrm if_id 0x20 " in out.splitlines()[-1]


# -- the data path: a route through the interface selects policies and states by its if_id

def _route(rt, dst: str, plen: int, oif: int):
    import ipaddress
    body = struct.pack("=BBBBBBBBI", 2, plen, 0, 0, 254, 3, 253, 1, 0)
    body += nla(1, ipaddress.ip_address(dst).packed) + nla_u32(4, oif)
    return rt.req(24, CREATE, body)


def _with_if_id(message: bytes, if_id: int) -> bytes:
    from .sad_helpers import A
    t = struct.unpack_from("=H", message, 4)[0]
    return N.encode_msg(t, N.NLM_F_REQUEST | N.NLM_F_ACK, 1, 0,
                        message[16:] + nla_u32(A.IF_ID, if_id))


def test_traffic_routed_through_the_interface_uses_its_if_id():
    from netlink_codec import xfrm as X
    from xfrmd.datapath.output import xfrm_xmit
    from .datapath_helpers import TUNNEL, Nl, policy, sa
    L, R, INNER = "198.51.100.1", "198.51.100.2", "10.9.0.5"
    rt = Rt("default")
    eth2 = rt.links.by_name("eth2").ifindex
    assert _add(rt, "x0", nla_u32(1, eth2) + nla_u32(2, 7)) == (0, None)
    x0 = rt.links.by_name("x0")
    assert rt.req(RTM_NEWLINK, N.NLM_F_REQUEST | N.NLM_F_ACK, ifinfo(x0.ifindex, 1, 1)) == (0, None)
    assert _route(rt, "10.9.0.0", 24, x0.ifindex) == (0, None)
    nl = Nl(rt.k)
    nl.ok(_with_if_id(sa(L, R, 0x1000), 7))
    nl.ok(_with_if_id(policy(L, INNER, X.XFRM_POLICY_OUT, [(L, R, 1, TUNNEL)]), 7))
    ns = rt.k.netns("default")
    res = xfrm_xmit(ns, L, INNER, 17, sport=1, dport=2, size=50).to_dict()
    [b] = res["batches"]
    assert b["result"] == "sent" and b["xfrm_dev"] == "x0" and b["out_dev"] == "eth2"
    assert b["sas"][0]["spi"] == "0x00001000"
    # the same flow's policy without the if_id does not serve the interface's traffic …
    assert _add(rt, "x0", nla_u32(1, eth2) + nla_u32(2, 8), N.NLM_F_REQUEST | N.NLM_F_ACK,
                x0.ifindex) == (0, None)
    [b] = xfrm_xmit(ns, L, INNER, 17, sport=1, dport=2, size=50).to_dict()["batches"]
    assert b["result"] == "dropped" and "no policy for if_id 8" in b["reason"]
    # … and the if_id policy does not catch traffic routed elsewhere
    nl.ok(_with_if_id(policy(L, R, X.XFRM_POLICY_OUT, [(L, R, 1, TUNNEL)]), 8))
    [b] = xfrm_xmit(ns, L, R, 17, sport=1, dport=2, size=50).to_dict()["batches"]
    assert b["result"] == "sent" and b.get("path") == "clear"


def _pair_with_if_id_7():
    """The data path's two namespaces (tests/test_datapath_input.py) with an ESP tunnel
    left → right whose right-side SA and IN policy carry if_id 7."""
    from netlink_codec import xfrm as X
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    from xfrmd.topology import from_dict
    from .datapath_helpers import TUNNEL, policy, sa
    from .test_datapath_input import PAIR, L, R, nl
    k = Kernel(ManualClock(), topology=from_dict(PAIR))
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(L, R, 0x1000))
    left.ok(policy(L, R, X.XFRM_POLICY_OUT, [(L, R, 1, TUNNEL)]))
    right.ok(_with_if_id(sa(L, R, 0x1000), 7))
    right.ok(_with_if_id(policy(L, R, X.XFRM_POLICY_IN, [(L, R, 1, TUNNEL)]), 7))
    return k


def test_inbound_packets_arrive_on_the_interface_of_their_sas_if_id():
    """xfrmi_rcv_cb / xfrmi_decode_session: the right side's SA and IN policy carry if_id 7;
    the packet is accepted while the running interface with if_id 7 exists, and fails the
    policy check (no IN policy for if_id 0 after a tunnel SA) when the interface is down."""
    from xfrmd.datapath.input import deliver_packets
    from xfrmd.datapath.output import xfrm_xmit
    from .test_datapath_input import L, R
    k = _pair_with_if_id_7()
    rs = k.socket(N.NETLINK_ROUTE, "right")
    k.bind(rs)

    def rtnl(body, flags=CREATE):
        k.deliver(rs, N.encode_msg(RTM_NEWLINK, flags, 1, 0, body))
        d = k.recv(rs)
        return struct.unpack_from("=i", d, 16)[0]
    assert rtnl(ifinfo() + nla(3, b"x0\0") + linkinfo("xfrm", nla_u32(2, 7))) == 0
    x0 = k.netns("right").links.by_name("x0")
    assert rtnl(ifinfo(x0.ifindex, 1, 1), N.NLM_F_REQUEST | N.NLM_F_ACK) == 0

    def go():
        res = xfrm_xmit(k.netns("left"), L, R, 17, sport=1, dport=2, size=20, keep_packets=True)
        return deliver_packets(k.netns("right"), [p for p, _ in res.packets]).to_dict()["batches"][0]
    b = go()
    assert b["result"] == "delivered" and b["xfrm_dev"] == "x0"
    assert rtnl(ifinfo(x0.ifindex, 0, 1), N.NLM_F_REQUEST | N.NLM_F_ACK) == 0   # down
    b = go()
    assert b["result"] == "dropped" and b["reason"] == "XfrmInNoPols"


def test_collect_md_interface_in_the_data_path():
    """Out: xfrmi_xmit2 needs the packet's xfrm metadata (set by tc/BPF, which xfrmd does not
    model) and drops it with EINVAL. In: xfrmi_lookup falls back to the running collect_md
    interface for an SA whose if_id has no interface of its own (xfrmi_rcv_cb)."""
    from xfrmd.datapath.input import deliver_packets
    from xfrmd.datapath.output import xfrm_xmit
    from .test_datapath_input import L, R
    k = _pair_with_if_id_7()

    def rtnl(ns, body, flags=CREATE):
        s = k.socket(N.NETLINK_ROUTE, ns)
        k.bind(s)
        k.deliver(s, N.encode_msg(RTM_NEWLINK, flags, 1, 0, body))
        return struct.unpack_from("=i", k.recv(s), 16)[0]
    up = N.NLM_F_REQUEST | N.NLM_F_ACK
    for ns in ("left", "right"):
        assert rtnl(ns, ifinfo() + nla(3, b"ipsec0\0") + linkinfo("xfrm", nla(3, b""))) == 0
        dev = k.netns(ns).links.by_name("ipsec0")
        assert rtnl(ns, ifinfo(dev.ifindex, 1, 1), up) == 0
    res = xfrm_xmit(k.netns("left"), L, R, 17, sport=1, dport=2, size=20, keep_packets=True)
    b = deliver_packets(k.netns("right"), [p for p, _ in res.packets]).to_dict()["batches"][0]
    assert b["result"] == "delivered" and b["xfrm_dev"] == "ipsec0"
    rt = Rt("default")
    assert _add(rt, "ipsec0", nla(3, b"")) == (0, None)
    x = rt.links.by_name("ipsec0")
    assert rt.req(RTM_NEWLINK, up, ifinfo(x.ifindex, 1, 1)) == (0, None)
    assert _route(rt, "10.9.0.0", 24, x.ifindex) == (0, None)
    [b] = xfrm_xmit(rt.k.netns("default"), "198.51.100.1", "10.9.0.5", 17, sport=1, dport=2,
                    size=50).to_dict()["batches"]
    assert b["result"] == "dropped" and b["reason"].startswith("xfrm interface ipsec0: ")
    assert "no xfrm metadata" in b["reason"] and "tc/BPF" in b["reason"]


def test_ip_link_set_on_the_collect_md_interface():
    """iproute2 refuses `external` with an if_id itself; the kernel gives the collect_md
    interface an if_id once (`ip -d link` still prints only `external`, as iproute2 returns
    after it) and refuses the same change again with its extack."""
    require_shim("ip")
    p = xfrmd_run("ip link add x1 type xfrm external; ip link set x1 type xfrm if_id 3;"
                  " ip -d link show x1; ip link set x1 type xfrm if_id 3;"
                  " ip link add x2 type xfrm if_id 3", "bare")
    assert "    xfrm external addrgenmode" in p.stdout and "if_id" not in p.stdout
    assert p.stderr.splitlines() == ["Error: device can't be changed to collect_md.",
                                     "RTNETLINK answers: File exists"]
