"""The ethtool generic-netlink family and nlctrl, byte for byte against the real kernel:
the same requests go to a real veth in a fresh netns (a raw NETLINK_GENERIC socket there)
and to the sans-IO kernel; replies are compared after normalising the port id. Then
pyroute2's genetlink classes decode our replies, and FEATURES_NTF reaches the monitor
group."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from netlink_codec.netlink import NLA_F_NESTED, nla, nla_flag, nla_string, nla_u32

from .conftest import require
from .replay.realip import RealNetns, have_tools

GENL_CTRL, ETHTOOL = 16, 21
HDR = nla(1 | NLA_F_NESTED, nla_string(2, "v0"))
HDR_COMPACT = nla(1 | NLA_F_NESTED, nla_string(2, "v0") + nla_u32(3, 1))


def bit(name: str, on: bool | None = None) -> bytes:
    body = nla_string(2, name) + (nla_flag(3) if on else b"")
    return nla(1 | NLA_F_NESTED, body)


WANTED_VERBOSE = nla(3 | NLA_F_NESTED, nla(3 | NLA_F_NESTED, bit("rx-gro", False)
                                           + bit("tx-checksum-ipv4", True)
                                           + bit("esp-hw-offload", True)))
# (family, cmd, attrs, flags); family "E" is the ethtool family
CASES = {
    "getfamily-ethtool": (GENL_CTRL, 3, nla_string(2, "ethtool"), 5),
    "getfamily-nlctrl": (GENL_CTRL, 3, nla_string(2, "nlctrl"), 5),
    "getfamily-by-id": (GENL_CTRL, 3, nla(1, struct.pack("=H", ETHTOOL)), 5),
    "getfamily-unknown": (GENL_CTRL, 3, nla_string(2, "nosuch"), 5),
    "getfamily-no-attr": (GENL_CTRL, 3, b"", 5),
    "unknown-family": (999, 1, b"", 5),
    "unknown-cmd": (ETHTOOL, 99, b"", 5),
    "features-compact": (ETHTOOL, 11, HDR_COMPACT, 5),
    "features-verbose": (ETHTOOL, 11, HDR, 5),
    "features-by-index": (ETHTOOL, 11, nla(1 | NLA_F_NESTED, nla_u32(1, 2) + nla_u32(3, 1)), 5),
    "features-no-device": (ETHTOOL, 11, nla(1 | NLA_F_NESTED, nla_string(2, "nosuch0")), 5),
    "features-no-header": (ETHTOOL, 11, b"", 5),
    "features-reserved-flag": (ETHTOOL, 11, nla(1 | NLA_F_NESTED, nla_string(2, "v0") + nla_u32(3, 8)), 5),
    "strset-features": (ETHTOOL, 1, nla(1 | NLA_F_NESTED, b"") + nla(2 | NLA_F_NESTED, nla(
        1 | NLA_F_NESTED, nla_u32(1, 4))), 5),
    "linkinfo": (ETHTOOL, 2, HDR, 5),
    "linkmodes": (ETHTOOL, 4, HDR, 5),
    "linkmodes-compact": (ETHTOOL, 4, HDR_COMPACT, 5),
    "linkstate": (ETHTOOL, 6, HDR, 5),
    "wol": (ETHTOOL, 9, HDR, 5),
    "debug": (ETHTOOL, 7, HDR, 5),
    "features-set-verbose": (ETHTOOL, 12, HDR + WANTED_VERBOSE, 5),
    "features-set-compact": (ETHTOOL, 12, HDR_COMPACT + nla(3 | NLA_F_NESTED, nla_u32(2, 64)
                             + nla(4, struct.pack("=II", 0, 1 << 18))
                             + nla(5, struct.pack("=II", 1 << 14, 1 << 18))), 5),
    "features-set-gro-on": (ETHTOOL, 12, HDR_COMPACT + nla(3 | NLA_F_NESTED, nla(
        3 | NLA_F_NESTED, bit("rx-gro", True))), 5),
    "features-set-gro-off-again": (ETHTOOL, 12, HDR_COMPACT + nla(3 | NLA_F_NESTED, nla(
        3 | NLA_F_NESTED, bit("rx-gro", False))), 5),
    "features-set-omit-reply": (ETHTOOL, 12, nla(1 | NLA_F_NESTED, nla_string(2, "v0") + nla_u32(3, 3))
                                + nla(3 | NLA_F_NESTED, nla(3 | NLA_F_NESTED, bit("rx-gro", True))), 5),
    "features-set-unknown-name": (ETHTOOL, 12, HDR + nla(3 | NLA_F_NESTED, nla(
        3 | NLA_F_NESTED, bit("no-such-feature", True))), 5),
    "features-set-no-wanted": (ETHTOOL, 12, HDR, 5),
    "features-set-compact-no-mask": (ETHTOOL, 12, HDR + nla(3 | NLA_F_NESTED, nla_u32(2, 64)
                                     + nla(4, bytes(8))), 5),
}
ORDER = list(CASES)


def _request(seq: int, fam: int, cmd: int, attrs: bytes, flags: int) -> bytes:
    body = struct.pack("=BBH", cmd, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), fam, flags, seq, 0) + body


REQUESTS = [_request(i + 1, *CASES[n]) for i, n in enumerate(ORDER)]

# Run inside the real netns: one NETLINK_GENERIC socket with extended ACKs, a second one in
# the monitor group; every request's datagrams until its ACK, then the notifications.
_REAL = r"""
import json, socket, struct, sys
reqs = [bytes.fromhex(h) for h in json.loads(sys.stdin.read())]
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
s.setsockopt(270, 11, 1)
s.bind((0, 0))
m = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
m.bind((0, 0))
m.setsockopt(270, 1, 6)
out = []
for r in reqs:
    s.send(r)
    got = []
    while True:
        d = s.recv(65536)
        got.append(d.hex())
        if struct.unpack_from("=H", d, 4)[0] == 2:
            break
    out.append(got)
m.setblocking(False)
ntf = []
try:
    while True:
        ntf.append(m.recv(65536).hex())
except BlockingIOError:
    pass
print(json.dumps([out, ntf]))
"""


def _normalise(d: bytes) -> bytes:
    """The port id the kernel gave the socket (nlmsg_pid of unicast replies) differs."""
    out = bytearray(d)
    if len(out) >= 16 and struct.unpack_from("=I", out, 12)[0]:
        struct.pack_into("=I", out, 12, 0x1234)
    return bytes(out)


def ours(requests: list[bytes]) -> tuple[list[list[bytes]], list[bytes]]:
    from xfrmd.kernel import Kernel
    from xfrmd.topology import from_dict
    k = Kernel(topology=from_dict({"netns": [{"name": "default", "device": [
        {"name": "v0", "kind": "veth", "up": False}]}]}))
    s = k.socket(16, "default", pid=4242)
    k.bind(s)
    s.ext_ack = True
    m = k.socket(16, "default", pid=4243)
    k.bind(m)
    k.setsockopt(m, 270, 1, 6)
    out = []
    for r in requests:
        k.deliver(s, r)
        got = []
        while (d := s.pop()) is not None:
            got.append(d)
        out.append(got)
    ntf = []
    while (d := m.pop()) is not None:
        ntf.append(d)
    return out, ntf


def real(requests: list[bytes]) -> tuple[list[list[bytes]], list[bytes]]:
    ns = RealNetns()
    try:
        subprocess.run(["ip", "-n", ns.name, "link", "add", "v0", "index", "2", "type", "veth",
                        "peer", "name", "v1", "index", "3"], check=True)
        p = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", _REAL],
                           input=json.dumps([r.hex() for r in requests]), capture_output=True,
                           text=True, timeout=60, check=True)
    finally:
        ns.close()
    out, ntf = json.loads(p.stdout)
    return [[bytes.fromhex(h) for h in got] for got in out], [bytes.fromhex(h) for h in ntf]


@pytest.fixture(scope="module")
def both():
    require(have_tools(), "needs root, ip and strace")
    return ours(REQUESTS), real(REQUESTS)


@pytest.mark.parametrize("case", ORDER)
def test_reply_bytes_equal_the_real_kernel(both, case):
    (o, _), (r, _) = both
    i = ORDER.index(case)
    assert [_normalise(d).hex() for d in o[i]] == [_normalise(d).hex() for d in r[i]]


def test_features_ntf_equal_the_real_kernel(both):
    """Each FEATURES_SET that changed something sent one FEATURES_NTF to "monitor"."""
    (_, o), (_, r) = both
    assert len(r) == 3

    def rebase(ntfs):      # ethnl_bcast_seq is global to the kernel: compare its steps
        first = struct.unpack_from("=I", ntfs[0], 8)[0]
        out = []
        for d in ntfs:
            d = bytearray(d)
            struct.pack_into("=I", d, 8, struct.unpack_from("=I", d, 8)[0] - first)
            out.append(bytes(d).hex())
        return out
    assert rebase(o) == rebase(r)


def test_pyroute2_decodes_our_replies():
    from pyroute2.netlink import ctrlmsg, genlmsg, nla as pnla
    from pyroute2.netlink.generic.ethtool import (ethtool_linkinfo_msg, ethtool_linkmode_msg,
                                                  ethtool_linkstate_msg, ethtool_strset_msg,
                                                  ethtoolbitset, ethtoolheader)

    class features_msg(genlmsg):
        nla_map = (("ETHTOOL_A_FEATURES_UNSPEC", "none"),
                   ("ETHTOOL_A_FEATURES_HEADER", "ethtoolheader"),
                   ("ETHTOOL_A_FEATURES_HW", "ethtoolbitset"),
                   ("ETHTOOL_A_FEATURES_WANTED", "ethtoolbitset"),
                   ("ETHTOOL_A_FEATURES_ACTIVE", "ethtoolbitset"),
                   ("ETHTOOL_A_FEATURES_NOCHANGE", "ethtoolbitset"))
    features_msg.ethtoolheader = ethtoolheader
    features_msg.ethtoolbitset = ethtoolbitset

    o, _ = ours(REQUESTS)

    def decode(cls, case):
        m = cls(o[ORDER.index(case)][0])
        m.decode()
        return m

    fam = decode(ctrlmsg, "getfamily-ethtool")
    assert fam.get_attr("CTRL_ATTR_FAMILY_NAME") == "ethtool"
    assert fam.get_attr("CTRL_ATTR_FAMILY_ID") == ETHTOOL
    assert [g.get_attr("CTRL_ATTR_MCAST_GRP_NAME") for g in fam.get_attr("CTRL_ATTR_MCAST_GROUPS")] == ["monitor"]
    assert len(fam.get_attr("CTRL_ATTR_OPS")) == 50
    feat = decode(features_msg, "features-verbose")
    assert feat.get_attr("ETHTOOL_A_FEATURES_HEADER").get_attr("ETHTOOL_A_HEADER_DEV_NAME") == "v0"
    active = feat.get_attr("ETHTOOL_A_FEATURES_ACTIVE")
    names = [b.get_attr("ETHTOOL_A_BITSET_BIT_NAME")
             for b in active.get_attr("ETHTOOL_A_BITSET_BITS").get_attrs("ETHTOOL_A_BITSET_BITS_BIT")]
    assert "tx-checksum-ip-generic" in names and "esp-hw-offload" not in names
    strings = decode(ethtool_strset_msg, "strset-features")
    sset = strings.get_attr("ETHTOOL_A_STRSET_STRINGSETS").get_attr("ETHTOOL_A_STRINGSETS_STRINGSET")
    assert sset.get_attr("ETHTOOL_A_STRINGSET_COUNT") == 64
    values = [s.get_attr("ETHTOOL_A_STRING_VALUE") for s in
              sset.get_attr("ETHTOOL_A_STRINGSET_STRINGS").get_attrs("ETHTOOL_A_STRINGS_STRING")]
    assert values[50] == "esp-hw-offload"
    assert decode(ethtool_linkmode_msg, "linkmodes").get_attr("ETHTOOL_A_LINKMODES_SPEED") == 10000
    assert decode(ethtool_linkinfo_msg, "linkinfo").get_attr("ETHTOOL_A_LINKINFO_TRANSCEIVER") == 0
    assert decode(ethtool_linkstate_msg, "linkstate").get_attr("ETHTOOL_A_LINKSTATE_LINK") == 0
    del pnla


def test_set_needs_cap_net_admin():
    from xfrmd.kernel import Kernel
    from xfrmd.topology import load_topology
    k = Kernel(topology=load_topology("default"), admin_uids={0})
    s = k.socket(16, "default", pid=77, uid=1000)
    k.bind(s)
    k.deliver(s, _request(1, ETHTOOL, 12, nla(1 | NLA_F_NESTED, nla_string(2, "soe2"))
                          + nla(3 | NLA_F_NESTED, nla(3 | NLA_F_NESTED, bit("esp-hw-offload"))), 5))
    (err,) = struct.unpack_from("=i", s.pop(), 16)
    assert err == -1          # EPERM
    assert k.netns("default").links.by_name("soe2").features.active("esp-hw-offload")
