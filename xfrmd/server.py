"""The only module that does I/O: a trio server on an AF_UNIX SOCK_SEQPACKET socket.

Each connection is one emulated netlink socket (or a service connection, see
docs/protocol.md). Records from the client go to :meth:`Kernel.deliver`; what the kernel
queues on sockets is written back by one writer task per connection; a timer task sleeps
until the kernel's next deadline.
"""
from __future__ import annotations

import collections
import errno as E
import json
import logging
import os
import socket as pysocket
import struct

import trio

from . import services, transport as T
from .kernel import Kernel, KernelError

log = logging.getLogger("xfrmd.server")

SO_PEERCRED = 17
SNDBUF = 256 * 1024


class Connection:
    def __init__(self, server: "Server", tsock, pid: int, uid: int):
        self.server = server
        self.tsock = tsock
        self.pid = pid
        self.uid = uid
        self.sock = None            # the kernel's NetlinkSocket
        self.wake = trio.Event()
        self.closed = False
        self.drain_inline = False   # this connection's own answers are queued
        self.backlog = collections.deque()   # answers the inline path could not send yet
        self.raw = None             # a blocking-free handle on the same socket (inline sends)


class Server:
    def __init__(self, kernel: Kernel, path: str):
        self.kernel = kernel
        self.path = path
        self.conns: dict[object, Connection] = {}   # NetlinkSocket → Connection
        self.timers_changed = trio.Event()
        self._last_deadline = None
        self.listener = None
        self.ready = trio.Event()

    # -- listening ---------------------------------------------------------------------

    def _prepare_path(self) -> None:
        """Refuse a path a live server serves; replace a stale socket file."""
        if not os.path.exists(self.path):
            return
        probe = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_SEQPACKET)
        try:
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)  # stale
            return
        except OSError as e:
            if e.errno in (E.ECONNREFUSED, E.ENOTSOCK, E.EPROTOTYPE):
                os.unlink(self.path)
                return
            raise
        finally:
            probe.close()
        raise SystemExit(f"xfrmd: another server is already listening on {self.path}")

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._prepare_path()
        listener = trio.socket.socket(pysocket.AF_UNIX, pysocket.SOCK_SEQPACKET)
        await listener.bind(self.path)
        os.chmod(self.path, 0o666)
        listener.listen(256)
        self.listener = listener
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._timer_task)
                task_status.started(self)
                self.ready.set()
                while True:
                    conn_sock, _ = await listener.accept()
                    nursery.start_soon(self._connection, conn_sock)
        finally:
            listener.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    # -- connections -------------------------------------------------------------------

    async def _connection(self, tsock) -> None:
        creds = tsock.getsockopt(pysocket.SOL_SOCKET, SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        conn = Connection(self, tsock, pid, uid)
        try:
            with tsock:
                first = await tsock.recv(T.MAX_RECORD)
                if not first or not T.is_frame(first):
                    return
                version, kind, payload = T.parse_frame(first)
                if version != T.PROTOCOL_VERSION or kind != T.F_HELLO:
                    log.warning("connection from pid %d: bad hello (version %d kind %d)", pid, version, kind)
                    return
                protocol, sock_type, netns = T.parse_hello(payload)
                if protocol == T.SERVICE_PROTOCOL:
                    await self._service_loop(conn, netns)
                elif protocol == T.FILE_WRITE_PROTOCOL:
                    await self._file_write_loop(conn, netns, T.hello_extra(payload))
                else:
                    await self._netlink_loop(conn, protocol, sock_type, netns)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionResetError, BrokenPipeError):
            pass
        finally:
            conn.closed = True
            if conn.raw is not None:
                conn.raw.close()
            if conn.sock is not None:
                self.conns.pop(conn.sock, None)
                self.kernel.close(conn.sock)

    async def _service_loop(self, conn: Connection, netns: str) -> None:
        while True:
            rec = await conn.tsock.recv(T.MAX_RECORD)
            if not rec:
                return
            if not T.is_frame(rec):
                continue
            _, kind, payload = T.parse_frame(rec)
            if kind != T.F_QUERY:
                continue
            try:
                request = json.loads(payload)
                result = services.handle(self.kernel, netns, request, uid=conn.uid, pid=conn.pid)
            except Exception as e:  # never let a bad query kill the server
                log.exception("service query failed")
                result = {"errno": E.EINVAL, "error": f"xfrmd: {e}"}
            self._after_kernel_work()
            await conn.tsock.send(T.answer(result))

    async def _file_write_loop(self, conn: Connection, netns: str, path: str) -> None:
        """A virtual file opened for writing: every record is data; when the program's last
        reference closes (EOF), the whole text is written (service op ``write_file``)."""
        chunks = []
        while True:
            rec = await conn.tsock.recv(T.MAX_RECORD)
            if not rec:
                break
            chunks.append(rec)
        data = b"".join(chunks).decode("utf-8", "replace")
        try:
            res = services.handle(self.kernel, netns, {"op": "write_file", "path": path,
                                                       "data": data}, uid=conn.uid, pid=conn.pid)
            if res.get("errno"):
                log.info("write to %s failed: %s", path, res)
        except Exception:
            log.exception("write to %s failed", path)
        self._after_kernel_work()

    async def _netlink_loop(self, conn: Connection, protocol: int, sock_type: int, netns: str) -> None:
        kernel = self.kernel
        open_error = 0
        try:
            sock = kernel.socket(protocol, netns, pid=conn.pid, uid=conn.uid, sock_type=sock_type)
        except KernelError as e:
            sock = None
            open_error = e.errno
        conn.sock = sock
        if sock is not None:
            self.conns[sock] = conn
            conn.raw = pysocket.socket(fileno=os.dup(conn.tsock.fileno()))
        async with trio.open_nursery() as nursery:
            # the writer task delivers what other connections or timers queue on this socket
            # (events, later dump parts); answers to this connection's own requests are
            # sent inline below, without a task switch
            if sock is not None:
                nursery.start_soon(self._writer, conn)
            while True:
                rec = await conn.tsock.recv(T.MAX_RECORD)
                if not rec:
                    nursery.cancel_scope.cancel()
                    return
                if sock is None:
                    # the socket could not be created (e.g. unknown namespace): every
                    # binding request reports why; datagrams go nowhere
                    if T.is_frame(rec) and T.parse_frame(rec)[1] in (T.F_BIND, T.F_AUTOBIND):
                        await conn.tsock.send(T.bind_reply(-open_error, 0, 0))
                    continue
                if T.is_frame(rec):
                    reply = self._control(sock, rec)
                    if reply is not None:
                        await conn.tsock.send(reply)
                else:
                    try:
                        kernel.deliver(sock, rec)
                    except Exception:
                        # a bug in a handler must not take the server down; the kernel
                        # would have answered, so answer EINVAL rather than hang the client
                        log.exception("handler failed on a datagram from pid %d", conn.pid)
                        self._internal_error(sock, rec)
                self._after_kernel_work(current=conn)
                if conn.drain_inline:
                    self._send_inline(conn)

    def _internal_error(self, sock, rec: bytes) -> None:
        from netlink_codec.netlink import ExtAck, encode_ack, kernel_messages
        for hdr in kernel_messages(rec):
            self.kernel.unicast(sock, encode_ack(rec, hdr, -E.EINVAL, sock.portid, cap_ack=sock.cap_ack,
                                                 ext_ack=sock.ext_ack,
                                                 ext=ExtAck("xfrmd: internal error, see the server log")))
            break

    def _control(self, sock, rec: bytes) -> bytes | None:
        version, kind, payload = T.parse_frame(rec)
        k = self.kernel
        if kind in (T.F_BIND, T.F_AUTOBIND):
            was_bound = sock.bound
            try:
                if kind == T.F_BIND:
                    portid, groups = struct.unpack_from("=II", payload)
                    k.bind(sock, portid, groups)
                else:
                    k.autobind(sock)
                err = 0
            except KernelError as e:
                err = -e.errno
            if was_bound and kind == T.F_BIND and err == 0:
                return None  # later binds only update groups; the shim does not wait
            return T.bind_reply(err, sock.portid, sock.groups)
        if kind == T.F_SETSOCKOPT:
            level, optname, value = struct.unpack_from("=IIi", payload)
            try:
                k.setsockopt(sock, level, optname, value)
            except KernelError:
                pass  # the shim checked what it could; the kernel would have said EINVAL
            return None
        if kind == T.F_RECVD:
            (buflen,) = struct.unpack_from("=I", payload)
            k.recvd(sock, buflen)
            return None
        log.warning("unknown control frame kind %d", kind)
        return None

    def _after_kernel_work(self, current=None) -> None:
        k = self.kernel
        if current is not None:
            current.drain_inline = False
        if k.dirty:
            for s in k.dirty:
                c = self.conns.get(s)
                if c is current and c is not None:
                    c.drain_inline = True      # its own answers: sent by the caller
                elif c is not None:
                    c.wake.set()
            k.dirty.clear()
        # wake the timer task only when the earliest deadline moved
        deadline = k.next_deadline()
        if deadline != self._last_deadline:
            self._last_deadline = deadline
            self.timers_changed.set()

    def _send_inline(self, conn: Connection) -> None:
        """Send this connection's own answers without a task switch, but never block: what
        the peer's buffer cannot take now waits in the backlog for the writer task, so a
        client that writes without reading cannot stall the server (its emulated socket
        overruns and gets ENOBUFS, as on Linux)."""
        sock = conn.sock
        if conn.backlog:
            conn.wake.set()
            return
        raw = conn.raw
        while True:
            d = sock.pop()
            if d is None:
                return
            try:
                raw.send(d, pysocket.MSG_DONTWAIT)
            except BlockingIOError:
                conn.backlog.append(d)
                conn.wake.set()
                return
            except OSError:
                return                  # the peer went away; the read loop will notice

    async def _writer(self, conn: Connection) -> None:
        sock = conn.sock
        while True:
            await conn.wake.wait()
            conn.wake = trio.Event()
            while conn.backlog:
                await conn.tsock.send(conn.backlog.popleft())
            while True:
                d = sock.pop()
                if d is None:
                    break
                await conn.tsock.send(d)

    async def _timer_task(self) -> None:
        k = self.kernel
        while True:
            self.timers_changed = trio.Event()
            deadline = k.next_deadline()
            if deadline is None:
                await self.timers_changed.wait()
                continue
            delay = deadline - k.clock.now()
            if delay > 0:
                with trio.move_on_after(delay):
                    await self.timers_changed.wait()
                    continue
            k.run_timers()
            self._after_kernel_work()


async def serve(kernel: Kernel, path: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    server = Server(kernel, path)
    await server.serve(task_status=task_status)
