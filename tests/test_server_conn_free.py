"""A closed connection is freed when it closes, not left to the collector: under
``tune_gc`` what a collection finds alive is frozen for the server's lifetime, so a
connection still in a reference cycle at a collection would never be freed (each `ip`
command is one connection: a long-running server would grow without bound)."""
from __future__ import annotations

import gc
import time

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from xfrmd import server as S
from xfrmd.embedded import running_server


def _live_connections() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is S.Connection)


def test_closed_connections_are_freed_without_a_collection():
    with running_server() as srv:
        gc.disable()                      # only reference counts may free them
        try:
            before = _live_connections()
            for _ in range(20):
                with srv.netlink(N.NETLINK_XFRM) as s:
                    # a request and its answer: the connection's socket exists and has its
                    # outq probe (a closure over the connection)
                    [m] = s.request(X.XfrmMsg.GETSADINFO, 0, b"\xff" * 4)
                    assert m.attrs
            deadline = time.monotonic() + 5
            while _live_connections() > before and time.monotonic() < deadline:
                time.sleep(0.02)          # the server reads each close on its next round
            assert _live_connections() <= before
        finally:
            gc.enable()
