"""pyroute2 through ``xfrmd.pyroute2`` (no shim): what pyroute2 users see equals what the real
``ip`` sees through the shim on the same server; raw XFRM requests through pyroute2's own
netlink socket classes; events, errors, namespaces, the server gone."""
from __future__ import annotations

import asyncio
import errno as E
import json
import os
import shutil
import socket
import struct
import subprocess

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nlmsg
from pyroute2.netlink.exceptions import NetlinkError

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.client import NetlinkSocket as XfrmdClient
from xfrmd.pyroute2 import AsyncIPRoute, IPRoute, IPRSocket, XfrmdSocket, XfrmSocket
from xfrmd.testing import make_kernel, running_server

from .conftest import require


@pytest.fixture
def srv():
    with running_server(make_kernel("default")) as h:
        yield h


def real_ip(srv, *args) -> object:
    """``ip -j ARGS`` (the real program) through the shim on the same server."""
    from xfrmd import shim
    require(shutil.which("ip"), "needs ip")
    env = dict(os.environ, LD_PRELOAD=shim.path(), XFRMD_SOCKET=srv.path, XFRMD_NETNS="default")
    p = subprocess.run(["ip", "-j", *args], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class userpolicy(nlmsg):
    """xfrm_userpolicy_info for pyroute2's marshal (pyroute2 has no XFRM classes)."""
    fields = (("sel", "56s"), ("lft", "64s"), ("curlft", "32s"), ("priority", "I"),
              ("index", "I"), ("dir", "B"), ("action", "B"), ("flags", "B"), ("share", "B"),
              ("pad", "4x"))


def policy(i: int, direction: int = 1) -> bytes:
    p = X.XfrmUserpolicyInfo()
    p.sel.family = socket.AF_INET
    p.sel.daddr = X.XfrmAddress.of(bytes([10, 0, i >> 8 & 255, i & 255]))
    p.sel.prefixlen_d = 32
    p.dir = direction
    p.priority = 1000 + i
    for f in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
        setattr(p.lft, f, X.XFRM_INF)
    return bytes(p)


def _ack_error(d: bytes) -> int:
    assert N.split_messages(d)[0].type == N.NLMSG_ERROR
    return struct.unpack_from("=i", d, 16)[0]


# -- rtnetlink: the same answers as ip gets --------------------------------------------------

def test_get_links_as_ip_sees_them(srv):
    with IPRoute(path=srv.path) as ipr:
        mine = [(m["index"], m.get("ifname"), m.get("mtu"), m.get("address"))
                for m in ipr.get_links()]
        assert ipr.link_lookup(ifname="eth0") == [3]
    ip = [(l["ifindex"], l["ifname"], l["mtu"], l["address"]) for l in real_ip(srv, "link", "show")]
    assert mine == ip
    assert [n for _, n, _, _ in mine][:3] == ["lo", "dummy0", "eth0"]


def test_get_addr_as_ip_sees_them(srv):
    with IPRoute(path=srv.path) as ipr:
        mine = sorted((m["index"], m.get("address"), m["prefixlen"]) for m in ipr.get_addr())
    ip = sorted((l["ifindex"], a["local"], a["prefixlen"])
                for l in real_ip(srv, "addr", "show") for a in l["addr_info"])
    assert mine == ip and ("192.0.2.1", 25) in [(a, p) for _, a, p in mine]


def test_get_routes_as_ip_sees_them(srv):
    with IPRoute(path=srv.path) as ipr:
        names = {m["index"]: m.get("ifname") for m in ipr.get_links()}
        mine = sorted((f"{m.get('dst')}/{m['dst_len']}" if m.get("dst") else "default",
                       m.get("gateway"), names[m.get("oif")])
                      for m in ipr.get_routes(family=socket.AF_INET, table=254))
    ip = sorted((r["dst"], r.get("gateway"), r["dev"]) for r in real_ip(srv, "route", "show"))
    assert mine == ip and ("default", "198.51.100.254", "eth2") in mine


def test_kernel_errors_reach_pyroute2_as_netlink_errors(srv):
    with IPRoute(path=srv.path) as ipr:
        with pytest.raises(NetlinkError) as e:
            ipr.link("get", index=4242)
        assert e.value.code == E.ENODEV


def test_async_iproute(srv):
    async def main():
        async with AsyncIPRoute(path=srv.path) as ipr:
            return [m.get("ifname") async for m in await ipr.link("dump")]
    assert asyncio.run(main())[:3] == ["lo", "dummy0", "eth0"]


def test_raw_iprsocket_put_then_get(srv):
    with IPRSocket(path=srv.path) as s:
        s.put(None, msg_type=18, msg_flags=NLM_F_REQUEST | NLM_F_DUMP)   # RTM_GETLINK
        got = []
        while not any(m["header"]["type"] == N.NLMSG_DONE for m in got):
            got.extend(s.get())
        assert [m.get("ifname") for m in got if m["header"]["type"] == 16][:2] == ["lo", "dummy0"]


# -- XFRM through pyroute2's generic NetlinkSocket --------------------------------------------

def test_raw_xfrm_requests_and_a_dump_decoded_by_pyroute2(srv):
    """300 NEWPOLICY requests sent and acknowledged with plain send()/recv() on pyroute2's
    (non-blocking) socket — each ACK is there when recv() is called, as with the kernel —
    then a dump reassembled by pyroute2 across datagrams, equal to xfrmd.client's dump."""
    with XfrmSocket(path=srv.path) as xs:
        assert xs.asyncore.socket.type == socket.SOCK_DGRAM
        assert xs.asyncore.socket.gettimeout() == 0.0           # asyncio made it non-blocking
        for i in range(300):
            xs.send(N.encode_msg(X.XfrmMsg.NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK, i + 1, 0, policy(i)))
            d = xs.recv(65536)
            assert _ack_error(d) == 0 and N.split_messages(d)[0].seq == i + 1
        with pytest.raises(BlockingIOError):
            xs.recv(65536)                                      # nothing more to read
        xs.send(N.encode_msg(X.XfrmMsg.NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK, 999, 0, policy(0)))
        assert _ack_error(xs.recv(65536)) == -E.EEXIST
        xs.register_policy({X.XfrmMsg.NEWPOLICY: userpolicy})
        dump = list(xs.nlm_request(nlmsg(), msg_type=X.XfrmMsg.GETPOLICY,
                                   msg_flags=NLM_F_REQUEST | NLM_F_DUMP))
        mine = [m["priority"] for m in dump]
        assert all(m["header"]["type"] == X.XfrmMsg.NEWPOLICY for m in dump)
    with XfrmdClient(N.NETLINK_XFRM, path=srv.path) as c:
        theirs = [m.fixed.priority for m in c.request(X.XfrmMsg.GETPOLICY, N.NLM_F_DUMP)
                  if m.type == X.XfrmMsg.NEWPOLICY]
    assert len(mine) == 300 and mine == theirs


def test_xfrm_events_to_a_pyroute2_listener(srv):
    group = 1 << (X.XfrmNlGrp.POLICY - 1)
    with XfrmSocket(path=srv.path) as xs:
        xs.bind(groups=group)
        portid, groups = xs.asyncore.socket.getsockname()
        assert groups == group and portid == xs.asyncore.epid   # pyroute2's chosen port id
        xs.register_policy({X.XfrmMsg.NEWPOLICY: userpolicy})
        with XfrmdClient(N.NETLINK_XFRM, path=srv.path) as c:
            c.request(X.XfrmMsg.NEWPOLICY, N.NLM_F_ACK, policy(7), seq=5)
        (ev,) = xs.get()
        assert ev["header"]["type"] == X.XfrmMsg.NEWPOLICY and ev["priority"] == 1007
        assert ev["header"]["sequence_number"] == 5


def test_namespaces_and_unread_listener_overrun(srv):
    with XfrmdClient(N.NETLINK_XFRM, path=srv.path) as c:
        c.request(X.XfrmMsg.NEWPOLICY, N.NLM_F_ACK, policy(1))
    srv.kernel.add_netns("other")       # the owner makes namespaces; a HELLO cannot
    with XfrmSocket(path=srv.path, netns="other", rcvbuf=1024) as xs:
        xs.bind(groups=1 << (X.XfrmNlGrp.POLICY - 1))   # before any send, as on Linux
        xs.register_policy({X.XfrmMsg.NEWPOLICY: userpolicy})
        dump = xs.nlm_request(nlmsg(), msg_type=X.XfrmMsg.GETPOLICY,
                              msg_flags=NLM_F_REQUEST | NLM_F_DUMP)
        assert list(dump) == []                           # "other" has its own SPD
        with XfrmdClient(N.NETLINK_XFRM, "other", path=srv.path) as c:
            for i in range(200):
                c.request(X.XfrmMsg.NEWPOLICY, N.NLM_F_ACK, policy(i))
        s = xs.asyncore.socket
        s.settimeout(5)                                   # the server may still be writing
        with pytest.raises(OSError) as e:                 # as pyroute2 documents for Linux
            for _ in range(300):
                s.recv(65536)
        assert e.value.errno == E.ENOBUFS


def test_server_gone(tmp_path):
    with pytest.raises(ConnectionRefusedError) as e:
        IPRoute(path=str(tmp_path / "none.sock"))
    assert "cannot reach the xfrmd server" in str(e.value)


def test_socket_alone_behaves_like_netlink(srv):
    s = XfrmdSocket(N.NETLINK_XFRM, path=srv.path)
    try:
        assert s.getsockname() == (0, 0)                  # unbound
        s.sendto(N.encode_msg(X.XfrmMsg.GETSADINFO, NLM_F_REQUEST, 1, 0, b"\xff" * 4), (0, 0))
        assert s.getsockname()[0] == os.getpid()          # autobound by the send
        d, addr = s.recvfrom(16, socket.MSG_PEEK | socket.MSG_TRUNC)
        assert addr == (0, 0) and len(d) > 16
        data, _ = s.recvfrom(65536)
        assert data == d and N.split_messages(data)[0].type == X.XfrmMsg.NEWSADINFO
        with pytest.raises(OSError) as e:
            s.bind((12345, 0))                            # netlink_bind: another port id
        assert e.value.errno == E.EINVAL
        s.setsockopt(270, 11, 1)
        assert s.getsockopt(270, 11) == 1
    finally:
        s.close()


def test_nlethtool_through_the_adapter(srv):
    from xfrmd.pyroute2 import NlEthtool
    with NlEthtool(path=srv.path) as eth:
        assert eth.is_nlethtool_in_kernel()              # CTRL_CMD_GETFAMILY "ethtool"
    with NlEthtool(path=srv.path) as eth:
        # STRSET_GET, what `ethtool -k` asks first: the feature names, esp-hw-offload among them
        assert "esp-hw-offload" in str(eth.get_stringset(ifname="eth0"))
