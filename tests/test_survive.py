"""The server survives every request (issue 16): timers of any length, a handler's bug costs
one EINVAL answer and one log line (counted in `xfrmd ctl stats`), malformed control frames
close their connection, and each site the fuzz run found answers as Linux does."""
from __future__ import annotations

import errno as E
import json
import logging
import shutil
import socket
import struct
import subprocess

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from netlink_codec.netlink import encode_msg, nla, nla_u32
from xfrmd import transport as T
from xfrmd.client import NetlinkError
from xfrmd.server import MAX_POLL_SECONDS, poll_timeout
from xfrmd.stats import INTERNAL_ERROR
from xfrmd.testing import make_kernel

from .conftest import XFRMD, require, xfrmd_run

REQ_ACK = N.NLM_F_REQUEST | N.NLM_F_ACK
CREATE = REQ_ACK | 0x400 | 0x200
KEY = "0x00112233445566778899aabbccddeeff"


# -- timers of any length ------------------------------------------------------------------

def test_poll_timeout_is_clamped_not_the_deadline():
    assert poll_timeout(None, 5.0) == -1
    assert poll_timeout(4.0, 5.0) == 0.0
    assert poll_timeout(6.5, 5.0) == 1.5
    assert poll_timeout(5.0 + 2592000, 5.0) == MAX_POLL_SECONDS
    assert poll_timeout(2.0 ** 64, 5.0) == MAX_POLL_SECONDS
    # epoll.poll() refuses a wait of 2**31 ms or more; the clamped one it takes (a readable
    # pipe makes it return at once)
    import os
    import select
    ep = select.epoll()
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        ep.register(r, select.EPOLLIN)
        with pytest.raises(OverflowError):
            ep.poll(2592000.0)
        assert ep.poll(poll_timeout(2.0 ** 64, 0.0)) == [(r, select.EPOLLIN)]
    finally:
        ep.close()
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("add, show", [
    (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc 'cbc(aes)' {KEY} "
     "limit time-hard 2592000", "ip xfrm state"),
    ("ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out limit time-hard 2592000",
     "ip xfrm policy"),
    ("ip -6 route add 2001:db8:9::/64 dev lo expires 2592000", "ip -6 route show 2001:db8:9::/64"),
], ids=["sa-lifetime", "policy-lifetime", "route-expires"])
def test_a_30_day_timer_does_not_kill_the_reactor(add, show):
    require(shutil.which("ip") is not None, "needs ip")
    p = xfrmd_run(f"ip link set lo up; {add} && sleep 0.5 && {show} && {show}", topology="bare")
    assert p.returncode == 0, p.stderr
    assert "RunFinishedError" not in p.stderr and "OverflowError" not in p.stderr
    assert ("spi 0x00000100" in p.stdout or "dir out" in p.stdout or "expires" in p.stdout), p.stdout


# -- one place where a handler's failure becomes an answer -------------------------------

def _nl(k, protocol=N.NETLINK_ROUTE):
    s = k.socket(protocol)
    k.bind(s)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    return s


def _answers(k, s):
    out = []
    while (d := k.recv(s)) is not None:
        for h in N.split_messages(d):
            if h.type in (N.NLMSG_ERROR, N.NLMSG_DONE):
                err = struct.unpack_from("=i", d, h.offset + 16)[0]
                out.append((h.type, h.seq, err, b"internal error" in d[h.offset:h.offset + h.len]))
    return out


def test_a_handler_exception_is_one_einval_and_one_log_line(monkeypatch, caplog):
    k = make_kernel("bare")
    s = _nl(k)

    def broken(req):
        raise KeyError("a bug")
    monkeypatch.setitem(k.families[N.NETLINK_ROUTE].doit, 88, broken)    # RTM_NEWNSID
    # two messages in one datagram: the first fails, the second is still handled
    d = encode_msg(88, REQ_ACK, 1, 0, bytes(4)) + encode_msg(18, REQ_ACK, 2, 0, bytes(16))
    caplog.set_level(logging.INFO, logger="xfrmd.server")
    k.deliver(s, d)
    answers = _answers(k, s)
    assert answers[0] == (N.NLMSG_ERROR, 1, -E.EINVAL, True)
    assert [a[1] for a in answers] == [1, 2]
    records = [r for r in caplog.records if r.name == "xfrmd.server"]
    assert len(records) == 1 and records[0].exc_info is None
    assert "KeyError" in records[0].getMessage() and "test_survive.py" in records[0].getMessage()
    assert k.stats.internal_errors == 1
    assert list(k.stats.sites) == [f"KeyError at tests/test_survive.py:{broken.__code__.co_firstlineno + 1}"]


def test_a_dump_that_raises_ends_with_einval_in_done(monkeypatch):
    k = make_kernel("bare")
    s = _nl(k)

    def dump(req):
        def gen():
            yield encode_msg(16, N.NLM_F_MULTI, req.hdr.seq, 0, bytes(16))
            raise struct.error("a bug")
        return req.start_dump(gen())
    monkeypatch.setitem(k.families[N.NETLINK_ROUTE].dumpit, 18, dump)
    k.deliver(s, encode_msg(18, N.NLM_F_REQUEST | N.NLM_F_DUMP, 7, 0, bytes(16)))
    assert _answers(k, s) == [(N.NLMSG_DONE, 7, -E.EINVAL, True)]
    assert k.stats.internal_errors == 1


# -- the server side: frames, stats, the client's errors -----------------------------------

@pytest.mark.parametrize("kind, payload", [
    (T.F_SETSOCKOPT, b"\1\0"), (T.F_BIND, b"\0"), (T.F_BIND_AUTO, b""), (T.F_RECVD, b"\1"),
    (T.F_NETNS_FD, b""), (T.F_BATCH, b"\xff\0\0\0x"), (T.F_HELLO, b"\0\0"),
])
def test_a_truncated_control_frame_closes_only_its_connection(xfrmd_server, kind, payload):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.settimeout(5)
    c.connect(xfrmd_server.path)
    if kind != T.F_HELLO:
        c.send(T.hello(N.NETLINK_XFRM, 3, ""))
    c.send(T.frame(kind, payload))
    assert c.recv(100) == b""                                   # closed, nothing else
    c.close()
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:          # the server still serves
        assert nl.request(X.XfrmMsg.GETSPDINFO, 0, struct.pack("=I", 0xFFFFFFFF))
    with xfrmd_server.service() as svc:
        st = svc.query("stats")
    assert st["bad_frames"] == 1 and st["internal_errors"] == 0


def test_ctl_stats_text_and_json(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_ROUTE) as nl:
        nl.request(18, N.NLM_F_DUMP, bytes(16))
    env = {"PATH": "/usr/bin:/bin", **xfrmd_server.env}
    import os
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    text = subprocess.run(XFRMD + ["ctl", "stats"], capture_output=True, text=True, env=env, timeout=30)
    assert text.returncode == 0, text.stderr
    lines = dict(line.split(" ", 1) for line in text.stdout.splitlines() if not line.startswith(" "))
    assert int(lines["datagrams"]) >= 1 and lines["internal-errors"] == "0"
    assert lines["rss"].endswith("KiB")
    js = subprocess.run(XFRMD + ["ctl", "stats", "--json"], capture_output=True, text=True, env=env,
                        timeout=30)
    d = json.loads(js.stdout)
    assert d["internal_errors"] == 0 and d["internal_error_sites"] == {} and d["rss_kib"] > 0


def test_route_socket_errors_raise_netlink_error(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_ROUTE) as nl:
        with pytest.raises(NetlinkError) as ei:
            nl.request(16, N.NLM_F_ACK, struct.pack("=BxHiII", 0, 0, 999, 0, 0))   # NEWLINK
        assert ei.value.errno == E.ENODEV
        with pytest.raises(NetlinkError) as ei:
            nl.request(20, N.NLM_F_ACK | 0x600, struct.pack("=BBBBI", 2, 33, 0, 0, 1)
                       + nla(2, bytes(4)))
        assert (ei.value.errno, ei.value.extack) == (E.EINVAL, "ipv4: Invalid prefix length")


# -- the sites the fuzz run found, each as Linux answers (tests/differential has the oracle)

class Rt:
    def __init__(self):
        self.k = make_kernel("bare")
        self.s = _nl(self.k)
        self.seq = 0

    def req(self, t, flags, body):
        """(errno, extack message, offset) of the answer."""
        self.seq += 1
        self.k.deliver(self.s, encode_msg(t, flags, self.seq, 0, body))
        res = None
        while (d := self.k.recv(self.s)) is not None:
            for h in N.split_messages(d):
                if h.type == N.NLMSG_ERROR and h.seq == self.seq:
                    err = struct.unpack_from("=i", d, h.offset + 16)[0]
                    msg = off = None
                    olen = struct.unpack_from("=I", d, h.offset + 20)[0] if err else 16
                    for ra in N.iter_attrs(d, h.offset + 20 + olen, h.offset + h.len):
                        if ra.type == N.NLMSGERR_ATTR_MSG:
                            msg = bytes(d[ra.start:ra.end]).rstrip(b"\0").decode()
                        elif ra.type == N.NLMSGERR_ATTR_OFFS:
                            off = struct.unpack_from("=I", d, ra.start)[0]
                    res = (err, msg, off)
        assert self.k.stats.internal_errors == 0
        return res


def ifa(fam, plen, idx=1):
    return struct.pack("=BBBBI", fam, plen, 0, 0, idx)


def rtm(fam, dl, sl=0):
    return struct.pack("=BBBBBBBBI", fam, dl, sl, 0, 254, 3, 0, 1, 0)


def frh(fam, dl, sl):
    return struct.pack("=BBBBBBBBI", fam, dl, sl, 0, 100, 0, 0, 1, 0)


V4, V6 = bytes([10, 0, 0, 1]), bytes.fromhex("20010db8000000000000000000000001")
JUNK = b"\x07\x00\x01"          # a trailing attribute whose length runs past the end
LEFTOVER = "bytes leftover after parsing attributes"
POLICY = "Attribute failed policy validation"


def test_address_prefix_lengths_and_policy():
    rt = Rt()
    assert rt.req(20, CREATE, ifa(2, 33) + nla(2, V4)) == (-E.EINVAL, "ipv4: Invalid prefix length", None)
    assert rt.req(20, CREATE, ifa(10, 129) + nla(2, V6)) == (-E.EINVAL, "ipv6: Invalid prefix length", None)
    assert rt.req(21, REQ_ACK, ifa(10, 129) + nla(2, V6)) == (-E.EINVAL, "ipv6: Invalid prefix length", None)
    assert rt.req(20, CREATE, ifa(2, 24)) == (-E.EINVAL, "ipv4: Local address is not supplied", None)
    assert rt.req(20, CREATE, ifa(2, 24, 99) + nla(2, V4)) == (-E.ENODEV, "ipv4: Device not found", None)
    assert rt.req(20, CREATE, ifa(10, 64, 99) + nla(2, V6)) == \
        (-E.ENODEV, "ipv6: Unable to find the interface", None)
    assert rt.req(20, CREATE, ifa(2, 24) + nla(2, V4[:2])) == (-E.ERANGE, POLICY, 24)
    assert rt.req(20, CREATE, ifa(10, 64) + nla(2, V4)) == (-E.ERANGE, POLICY, 24)
    assert rt.req(20, CREATE, ifa(2, 24) + nla(2, V4) + nla(3, b"a" * 20 + b"\0")) == (-E.ERANGE, POLICY, 32)
    assert rt.req(20, CREATE, ifa(7, 24) + nla(2, V4)) == (-E.EOPNOTSUPP, None, None)
    # a malformed trailing attribute: ignored, with the warning on the ACK
    assert rt.req(20, CREATE, ifa(2, 24) + nla(2, V4) + JUNK) == (0, LEFTOVER, None)
    assert rt.req(21, REQ_ACK, ifa(2, 33) + nla(2, V4)) == (0, None, None)   # IFA_LOCAL only


def test_route_prefix_lengths_and_policy():
    rt = Rt()
    rt.req(16, REQ_ACK, struct.pack("=BxHiII", 0, 0, 1, 1, 1))               # lo up
    oif = nla_u32(4, 1)
    assert rt.req(24, CREATE, rtm(2, 33) + nla(1, V4) + oif) == (-E.EINVAL, "Invalid prefix length", None)
    assert rt.req(24, CREATE, rtm(10, 129) + nla(1, V6) + oif) == (-E.EINVAL, None, None)
    assert rt.req(24, CREATE, rtm(10, 129) + oif) == (-E.EINVAL, "Invalid prefix length", None)
    assert rt.req(24, CREATE, rtm(10, 0, 129) + oif) == (-E.EINVAL, "Invalid source address length", None)
    assert rt.req(24, CREATE, rtm(2, 8) + nla(1, V4[:2]) + oif) == (-E.ERANGE, POLICY, 28)
    assert rt.req(24, CREATE, rtm(2, 8) + nla(1, V4) + nla(4, b"\1\0")) == (-E.ERANGE, POLICY, 36)
    assert rt.req(24, CREATE, rtm(10, 64) + nla(1, V4) + oif) == (-E.EINVAL, None, None)
    assert rt.req(24, CREATE, rtm(2, 8) + nla(1, V4) + struct.pack("=HH", 300, 4) + b"\1\0\0\0") == \
        (-E.EINVAL, "Invalid prefix for given prefix length", None)
    assert rt.req(24, CREATE, rtm(2, 8) + nla(1, bytes([10, 0, 0, 0])) + oif + JUNK) == (0, LEFTOVER, None)
    assert rt.req(26, REQ_ACK, rtm(10, 128) + nla(1, V4)) == (-E.EINVAL, None, None)


def test_rule_prefix_lengths_and_policy():
    rt = Rt()
    prio = nla_u32(6, 1000)
    assert rt.req(32, CREATE, frh(2, 0, 33) + nla(2, V4) + prio) == (-E.EINVAL, "Invalid source address", None)
    assert rt.req(32, CREATE, frh(2, 33, 0) + nla(1, V4) + prio) == (-E.EINVAL, "Invalid dst address", None)
    assert rt.req(32, CREATE, frh(10, 0, 129) + nla(2, V6)) == (-E.EINVAL, "Invalid source address", None)
    assert rt.req(32, CREATE, frh(2, 0, 8) + prio) == (-E.EINVAL, "Invalid source address", None)
    assert rt.req(32, CREATE, frh(2, 0, 8) + nla(2, V4[:2])) == (-E.EINVAL, "Invalid source address", None)
    # the parser's failure keeps its offset, fib_nl_newrule replaces the message
    assert rt.req(32, CREATE, frh(2, 0, 8) + nla(2, V4) + nla(6, b"\1\0"))[:3] == (-E.ERANGE, "Error parsing msg", 36)
    assert rt.req(32, CREATE, frh(2, 0, 8) + nla(2, bytes([10, 0, 0, 0])) + prio + JUNK) == (0, LEFTOVER, None)


def test_netconf_policy():
    rt = Rt()
    nc = lambda fam: struct.pack("=Bxxx", fam)        # noqa: E731
    for fam in (2, 10):
        assert rt.req(82, REQ_ACK, nc(fam) + nla(1, struct.pack("=i", 1)) + JUNK) == (0, LEFTOVER, None)
        assert rt.req(82, REQ_ACK, nc(fam) + nla(1, b"\1\0")) == (-E.ERANGE, POLICY, 20)
    # the attribute lost to a lying length: EINVAL, the warning is all the extack says
    assert rt.req(82, REQ_ACK, nc(2) + struct.pack("=HH", 100, 1) + b"\1\0\0\0") == (-E.EINVAL, LEFTOVER, None)


@pytest.mark.parametrize("mtu", [2 ** 31, 2 ** 32 - 1])
def test_setlink_mtu_above_int_max_is_refused_and_not_stored(mtu):
    rt = Rt()
    ifi = struct.pack("=BxHiII", 0, 0, 1, 0, 0)
    assert rt.req(19, REQ_ACK, ifi + nla_u32(4, mtu)) == (-E.EINVAL, "mtu less than device minimum", None)
    assert rt.k.netns("default").links.by_index(1).mtu == 65536
    rt.k.deliver(rt.s, encode_msg(18, N.NLM_F_REQUEST | N.NLM_F_DUMP, 99, 0, bytes(16)))
    assert (N.NLMSG_DONE, 99, 0, False) in _answers(rt.k, rt.s)


def test_ethtool_header_ifindex_of_the_wrong_length():
    """ethnl_parse_header_dev_get: a DEV_INDEX that is not a u32 fails the header policy."""
    from netlink_codec.genl import ETHTOOL_GENL_ID
    k = make_kernel("default")
    s = _nl(k, N.NETLINK_GENERIC)
    header = nla(1 | N.NLA_F_NESTED, nla(1, b"\1\0"))           # DEV_INDEX of 2 bytes
    body = struct.pack("=BBH", 1, 1, 0) + header                   # ETHTOOL_MSG_STRSET_GET
    k.deliver(s, encode_msg(ETHTOOL_GENL_ID, REQ_ACK, 5, 0, body))
    (answer,) = _answers(k, s)
    assert answer == (N.NLMSG_ERROR, 5, -E.EINVAL, False)
    assert k.stats.internal_errors == 0


def _ethtool(k, s, cmd, body, seq=6):
    from netlink_codec.genl import ETHTOOL_GENL_ID
    k.deliver(s, encode_msg(ETHTOOL_GENL_ID, REQ_ACK, seq, 0, struct.pack("=BBH", cmd, 1, 0) + body))
    return _answers(k, s)


def test_ethtool_nested_u32s_of_the_wrong_length():
    """A bitset's SIZE and a bit's INDEX (FEATURES_SET), a string set's ID (STRSET_GET): each
    is a strictly validated NLA_U32 — EINVAL, never a struct.error."""
    k = make_kernel("default")
    s = _nl(k, N.NETLINK_GENERIC)
    hdr = nla(1 | N.NLA_F_NESTED, nla(2, b"eth0\0"))
    nest = lambda t, *a: nla(t | N.NLA_F_NESTED, b"".join(a))   # noqa: E731
    bit = nest(3, nest(1, nla(1, b"\3\0")))                          # BITS { BIT { INDEX: 2 bytes } }
    compact = nla(2, b"\1") + nla(4, bytes(4)) + nla(5, bytes(4))    # SIZE of 1 byte
    for wanted in (bit, compact):
        k.stats.datagrams = 0
        answers = _ethtool(k, s, 12, hdr + nest(3, wanted))              # FEATURES_SET, WANTED
        assert answers == [(N.NLMSG_ERROR, 6, -E.EINVAL, False)]
    strset = nest(2, nest(1, nla(1, b"\4")))                          # STRINGSETS { STRINGSET { ID } }
    assert _ethtool(k, s, 1, hdr + strset) == [(N.NLMSG_ERROR, 6, -E.EINVAL, False)]
    assert k.stats.internal_errors == 0


@pytest.mark.parametrize("expires", [2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1])
def test_route_expires_beyond_int_ticks_still_dumps(expires):
    """rtnl_put_cacheinfo caps the expiry at INT_MAX clock ticks (the dump raised
    struct.error); 0xFFFFFFFF is addrconf's infinite lifetime."""
    rt = Rt()
    rt.req(16, REQ_ACK, struct.pack("=BxHiII", 0, 0, 1, 1, 1))               # lo up
    assert rt.req(24, CREATE, rtm(10, 64) + nla(1, bytes.fromhex("20010db8000900000000000000000000"))
                  + nla_u32(4, 1) + nla_u32(23, expires)) == (0, None, None)
    rt.k.deliver(rt.s, encode_msg(26, N.NLM_F_REQUEST | N.NLM_F_DUMP, 50, 0, rtm(10, 0)))
    expiry = None
    while (d := rt.k.recv(rt.s)) is not None:
        for h in N.split_messages(d):
            assert h.type != N.NLMSG_DONE or struct.unpack_from("=i", d, h.offset + 16)[0] == 0
            if h.type == 24:
                for ra in N.iter_attrs(d, h.offset + 28, h.offset + h.len):
                    if ra.type == 1 and d[ra.start:ra.start + 6] == bytes.fromhex("20010db80009"):
                        expiry = [struct.unpack_from("=i", d, a.start + 8)[0]
                                  for a in N.iter_attrs(d, h.offset + 28, h.offset + h.len) if a.type == 12]
    assert expiry == [0x7FFFFFFF if expires < 2 ** 32 - 1 else 0]
    assert rt.k.stats.internal_errors == 0


def test_a_malformed_service_query_is_answered(xfrmd_server):
    """Service connections too: bad JSON is EINVAL; a query an op cannot take (a missing
    field) is EINVAL, one log line and one count; the connection and server go on."""
    with xfrmd_server.service() as svc:
        svc.sock.send(T.frame(T.F_QUERY, b"{not json"))
        _, _, payload = T.parse_frame(svc.sock.recv(T.MAX_RECORD))
        assert json.loads(payload)["errno"] == E.EINVAL
        res = svc.query("netns_add")                                 # no "name"
        assert res["errno"] == E.EINVAL and "KeyError" in res["error"]
        st = svc.query("stats")
    assert st["internal_errors"] == 1 and list(st["internal_error_sites"])[0].startswith("KeyError at xfrmd/")
