"""The wireguard generic-netlink family without its link kind (xfrmd/genl/wireguard.py):
the name resolves as on a kernel with CONFIG_WIREGUARD (pyroute2's test fixtures open a
WireGuard socket before anything else), and every device request answers as
``lookup_interface`` does for a kernel whose devices are all of other kinds."""
from __future__ import annotations

import errno
import struct

from netlink_codec.netlink import nla, nla_string, nla_u32

GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME = 16, 3, 2
WG_ID = 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300


def _request(seq: int, fam: int, cmd: int, attrs: bytes, flags: int) -> bytes:
    body = struct.pack("=BBH", cmd, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), fam, flags, seq, 0) + body


def _kernel_socket():
    from xfrmd.kernel import Kernel
    from xfrmd.topology import load_topology
    k = Kernel(topology=load_topology("default"), admin_uids={0})
    s = k.socket(16, "default", pid=4242)
    k.bind(s)
    return k, s


def _answers(k, s, req: bytes) -> list[bytes]:
    k.deliver(s, req)
    out = []
    while (d := s.pop()) is not None:
        out.append(d)
    return out


def _errno(msg: bytes) -> int:
    length, typ = struct.unpack_from("=IH", msg)
    assert typ == 2, typ                   # NLMSG_ERROR
    (err,) = struct.unpack_from("=i", msg, 16)
    return -err


def test_the_family_resolves_by_name_with_its_two_commands():
    k, s = _kernel_socket()
    [msg] = _answers(k, s, _request(1, GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                                    nla_string(CTRL_ATTR_FAMILY_NAME, "wireguard"),
                                    NLM_F_REQUEST))
    from pyroute2.netlink import ctrlmsg
    m = ctrlmsg(msg)
    m.decode()
    assert (m.get_attr("CTRL_ATTR_FAMILY_NAME"), m.get_attr("CTRL_ATTR_FAMILY_ID"),
            m.get_attr("CTRL_ATTR_VERSION"), m.get_attr("CTRL_ATTR_MAXATTR")) == (
        "wireguard", WG_ID, 1, 8)
    # WG_CMD_GET_DEVICE: dump only; WG_CMD_SET_DEVICE: do only; both GENL_UNS_ADMIN_PERM
    # (0x10) with a policy (0x08)
    ops = {op.get_attr("CTRL_ATTR_OP_ID"): op.get_attr("CTRL_ATTR_OP_FLAGS")
           for op in m.get_attr("CTRL_ATTR_OPS")}
    assert ops == {0: 0x10 | 0x08 | 0x04, 1: 0x10 | 0x08 | 0x02}


def test_device_requests_answer_as_lookup_interface():
    k, s = _kernel_socket()
    dump = NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP
    cases = {
        "an existing device is of another kind": (0, nla_string(2, "eth2"), dump,
                                                  errno.EOPNOTSUPP),
        "by ifindex too": (0, nla_u32(1, 1), dump, errno.EOPNOTSUPP),
        "no such device": (0, nla_string(2, "wg0"), dump, errno.ENODEV),
        "no such index": (0, nla_u32(1, 999), dump, errno.ENODEV),
        "neither index nor name": (0, b"", dump, errno.EBADR),
        "both index and name": (0, nla_u32(1, 1) + nla_string(2, "lo"), dump, errno.EBADR),
        "SET_DEVICE on a device of another kind": (1, nla_string(2, "lo"),
                                                   NLM_F_REQUEST | NLM_F_ACK, errno.EOPNOTSUPP),
        "GET_DEVICE has no doit": (0, nla_string(2, "lo"), NLM_F_REQUEST | NLM_F_ACK,
                                   errno.EOPNOTSUPP),
        "a short ifindex fails the policy": (0, nla(1, b"\x01\x00"), dump, errno.EINVAL),
    }
    got = {}
    for seq, (why, (cmd, attrs, flags, _)) in enumerate(cases.items(), 1):
        [msg] = _answers(k, s, _request(seq, WG_ID, cmd, attrs, flags))
        got[why] = _errno(msg)
    assert got == {why: c[3] for why, c in cases.items()}


def test_wireguard_link_kind_stays_unknown():
    """The family is there, the link kind is not: ``ip link add wg0 type wireguard`` is the
    kernel's "Unknown device type" (rtnl_newlink without the kind's ops)."""
    from netlink_codec.netlink import nla_nested
    k, s0 = _kernel_socket()
    s = k.socket(0, "default", pid=4243)
    k.bind(s)
    body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla_string(3, "wg0") + nla_nested(
        18, nla_string(1, "wireguard"))
    req = struct.pack("=IHHII", 16 + len(body), 16, NLM_F_REQUEST | NLM_F_ACK | 0x400 | 0x200,
                      1, 0) + body
    [msg] = _answers(k, s, req)
    assert _errno(msg) == errno.EOPNOTSUPP
