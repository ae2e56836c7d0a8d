"""XFRM interfaces (link kind ``xfrm``): this machine's kernel has no CONFIG_XFRM_INTERFACE,
so the expected answers follow xfrm_interface_core.c (6.18): ``xfrmi_newlink``'s checks and
extack ("if_id must be non zero", "link and if_id must be zero", EEXIST for a taken if_id
or a second collect_md interface), ``xfrmi_changelink``'s ("collect_md can't be changed",
EINVAL for a different link), ``xfrmi_dev_setup`` (ARPHRD_NONE, NOARP, no hardware
address) and ``xfrmi_fill_info`` as iproute2 6.1 prints it."""
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
    assert _add(rt, "x1", nla_u32(2, 3), change, x1.ifindex) == \
        (-E.EINVAL, "collect_md can't be changed")
    assert _add(rt, "x0", nla_u32(1, lo), change, x0.ifindex) == \
        (-E.EINVAL, "if_id must be non zero")
    assert _add(rt, "x1", b"", change, x1.ifindex) == (0, None)   # no IFLA_INFO_DATA: no call


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
