"""netlink_overrun on the model's socket: a multicast that does not fit the receive buffer
is dropped and sets the socket error, which the next read reports before the datagrams that
are still queued (``__skb_try_recv_datagram`` checks ``sock_error`` first)."""
from __future__ import annotations

import struct

from xfrmd.netlink.socket import F_SOCK_ERROR, NetlinkSocket


def test_overrun_error_comes_first_then_the_queue():
    s = NetlinkSocket(6, None, rcvbuf=100)
    assert s.queue_multicast(b"a" * 60) and not s.queue_multicast(b"b" * 60)
    assert not s.queue_multicast(b"c" * 60)          # congested: dropped, no second error
    first = s.pop()
    assert struct.unpack_from("=IHH", first)[2] == F_SOCK_ERROR
    assert struct.unpack_from("=i", first, 8)[0] == -105
    assert s.pop() == b"a" * 60 and s.pop() is None
    assert s.rx_bytes == 0 and not s.congested


def test_no_enobufs_option_drops_silently():
    s = NetlinkSocket(6, None, rcvbuf=100, no_enobufs=True)
    s.queue_multicast(b"a" * 60)
    s.queue_multicast(b"b" * 60)
    assert s.pop() == b"a" * 60 and s.pop() is None
