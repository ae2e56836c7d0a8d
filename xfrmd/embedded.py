"""A server inside this process: :func:`running_server` runs one in a background thread for
the duration of a ``with`` block (``xfrmd run``, the IKE kernel pair, tests). Kept apart from
:mod:`xfrmd.testing` so that ``xfrmd run`` does not import pytest (a third of its start-up)."""
from __future__ import annotations

import contextlib
import functools
import gc
import os
import select
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import trio

from .client import NetlinkSocket, Service, TrioNetlinkSocket
from . import hugeheap
from .clock import SystemClock
from .kernel import Kernel
from .capability import credentials
from .server import Connection, Server
from .topology import load_topology


class ServerHandle:
    def __init__(self, kernel: Kernel, path: str):
        self.kernel = kernel
        self.path = path
        self.env = {"XFRMD_SOCKET": path}

    def netlink(self, protocol: int, netns: str = "", **kw: Any) -> NetlinkSocket:
        return NetlinkSocket(protocol, netns, path=self.path, **kw)

    async def trio_netlink(self, protocol: int, netns: str = "", **kw: Any) -> TrioNetlinkSocket:
        return await TrioNetlinkSocket.open(protocol, netns, path=self.path, **kw)

    def service(self, netns: str = "") -> Service:
        return Service(netns, path=self.path)


def tune_gc() -> None:
    """For a process whose job is the server (``xfrmd serve``, ``xfrmd run``): what exists
    at start-up is kept out of the collector, and so is whatever survives a collection
    (``freeze_survivors``). The kernel model's objects (states, policies, sockets) live long
    and seldom form cycles: without this a full collection walks every SA (a dozen objects
    each), seconds at a million of them. A collection comes every 10,000 net allocations of
    tracked objects and walks only what was made since the previous one: no collection walks
    more than ≈ 10,000 objects, whatever the table's size (tests/test_gc_pause.py). Loading
    1M SAs or policies the longest pause is ≈ 1 ms of CPU, the collector's total time 40 %
    less than when only gen≥1 survivors were frozen — those collections walked three young
    generations, ≈ 40,000 objects, 4–5 ms, up to 17 ms on a loaded machine
    (docs/performance.md, "The collector at a million entries"; ``python3 -m benchmarks gc``).
    The price: a cycle alive at a collection that becomes garbage later is not collected
    (the model breaks its cycles when it deletes an entry: timers are cancelled and dropped).

    Not bounded by this: a container made young with a million references in it is walked
    whole by the next collection, ≈ 20–30 ms (a dump's snapshot of a large SAD is frozen
    when it is made for that reason: ``xfrm_dump_sa``).

    The heap too: the objects made from now on go to huge pages (:mod:`xfrmd.hugeheap`; a
    lookup in a table of a million entries reads five or so objects at random, each a TLB
    miss with 4 KiB pages)."""
    hugeheap.install()
    gc.freeze()
    gc.set_threshold(10_000, 2, 100)
    if freeze_survivors not in gc.callbacks:
        gc.callbacks.append(freeze_survivors)


def freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """``gc.callbacks``: after every collection, what survived it goes to the permanent
    generation, which no later collection walks. (Freezing only after collections of
    generation 1 or 2 let the survivors of three young collections pile up in generation 1,
    each walked twice: ≈ 40,000 objects per collection of it, 4–17 ms at a million SAs.)
    ``gc.freeze`` also zeroes the counts, so every collection is a young one."""
    if phase == "stop":
        gc.freeze()


def make_kernel(topology: str | None = "bare") -> Kernel:
    topo = load_topology(topology) if topology is not None else None
    return Kernel(SystemClock(), topology=topo)


@contextlib.contextmanager
def running_server(kernel: Kernel | None = None, path: str | None = None,
                   listener: socket.socket | None = None) -> Iterator[ServerHandle]:
    """Run a server in a background thread for the duration of the block (on
    ``listener`` when given: a socket already listening on ``path``)."""
    kernel = kernel or make_kernel()
    tmpdir = None
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="xfrmd-")
        path = os.path.join(tmpdir, "xfrmd.sock")
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        state["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            state["nursery"] = nursery
            server = Server(kernel, path)
            await nursery.start(functools.partial(server.serve, listener=listener))
            started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            state["error"] = e
            started.set()

    t = threading.Thread(target=run, name="xfrmd-server", daemon=True)
    t.start()
    started.wait(10)
    if "error" in state:
        raise state["error"]
    try:
        yield ServerHandle(kernel, path)
    finally:
        trio.from_thread.run_sync(state["nursery"].cancel_scope.cancel, trio_token=state["token"])
        t.join(10)
        if tmpdir:
            with contextlib.suppress(OSError):
                os.rmdir(tmpdir)


class DrivenServer:
    """A Server that never listens or serves on its own: one connection on a socketpair
    (``client`` is the peer's end), its rounds driven by the caller (``pump.round`` /
    ``pump.end`` in C, or :meth:`py_round`). For tests and benchmarks of the reactor round
    (tests/test_transport_parity.py, benchmarks/bench_transport.py)."""

    def __init__(self, kernel: Kernel, pid: int, c: bool = True):
        self.kernel = kernel
        # the path is never bound: the server does not listen
        self.server = srv = Server(kernel, "unbound.sock")
        srv.ep = select.epoll()
        srv._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        srv.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)   # never listens
        a, self.client = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.conn = conn = Connection(a, pid, os.geteuid())
        conn.cred = credentials(pid, os.geteuid(), os.getegid(), owner_uid=srv.owner_uid, caps=0)
        srv.by_fd[conn.fd] = conn
        srv.ep.register(conn.fd, select.EPOLLIN)
        self.pump = srv.make_pump() if c else None

    def py_round(self) -> None:
        """One round of the Python reactor: this round's events, then its end."""
        srv = self.server
        srv._serve_events(srv.ep.poll(0, 256))
        srv._round_end(srv._after_kernel_work)

    def close(self) -> None:
        self.client.close()
        self.conn.s.close()
        self.server.listener.close()
        self.server.ep.close()
        os.close(self.server._wake_r)
        os.close(self._wake_w)
