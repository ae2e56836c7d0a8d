"""The only module that does I/O: the server on an AF_UNIX SOCK_SEQPACKET socket.

Each connection is one emulated netlink socket, a service connection or a virtual file
opened for writing (docs/protocol.md). One reactor thread serves them all from an epoll set:
records go to :meth:`Kernel.deliver`, what the kernel queues on any socket is sent right
after without blocking, and the epoll timeout is the kernel's next deadline.

trio owns the server's life: :meth:`Server.serve` is a trio task that starts the reactor and
stops it when cancelled. The reactor itself does not wake through trio: a wake-up through
trio's scheduler costs about 40 µs more than a blocking ``epoll_wait`` (a 200-byte echo
round trip: 59 µs vs 19 µs here), and `ip -batch` pays it three times per command.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import errno as E
import fcntl
import gc
import json
import logging
import os
import resource
import select
import signal
import socket as pysocket
import stat
import struct
import threading
import time

import trio

from netlink_codec import cext
from netlink_codec.netlink import ExtAck, encode_ack, kernel_messages

from . import services, transport as T
from .cext import source
from .capability import CAP_NET_ADMIN, credentials, peer_credentials
from .inet import raw as inet_raw
from .inet import udp as inet_udp
from .kernel import Kernel, KernelError, reopen_c
from .linkgen_page import LinkgenPage
from .net_namespace import process_exit
from .netlink.socket import NetlinkSocket, rcvbuf_for, sock_error_frame
from .stats import INTERNAL_ERROR

_BATCH_KIND = struct.pack("=H", T.F_BATCH)
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")

_SETSOCKOPT = struct.Struct("=IIi")
_BIND = struct.Struct("=II")
_UCRED = struct.Struct("3i")             # struct ucred: pid, uid, gid

# the opening frames of a kept connection, as Server._replay applies them
_F_SETSOCKOPT = T.F_SETSOCKOPT
_REOPEN = -1                   # RELEASE then HELLO: the line's new socket replaces the last
_SOL_SOCKET, _SO_RCVBUF = 1, 8
_SOL_NETLINK, _NETLINK_EXT_ACK = 270, 11


def _fuse_reopen(ops: list) -> list | None:
    """The noted opening frames as :meth:`Server._replay` applies them; None if a RELEASE
    is not followed by a HELLO (the batch has no socket left to replay on: it is not noted).

    Each RELEASE and the HELLO after it are one REOPEN (``Kernel.reopen``), which also takes
    what directly follows it on every `ip` line:

    * SO_RCVBUF and NETLINK_EXT_ACK, as the values ``Kernel.setsockopt`` would write to the
      socket's fields: they depend on nothing but the option's value (``rcvbuf_for``,
      ``bool``), neither can fail, and nothing reads them before the request;
    * then a group-less BIND_AUTO, whose port id the REOPEN binds at once when it is the
      process's (the options do not depend on the binding); a socket left unbound takes the
      BIND_AUTO's usual way (``_bind_auto``).

    The REOPEN's arguments: protocol, type, namespace, inode (the HELLO's), then the
    BIND_AUTO's (port id, groups) or None, sk_rcvbuf or 0, the EXT_ACK flag or None."""
    out: list = []
    i = 0
    while i < len(ops):
        kind, args, end = ops[i]
        if kind == T.F_HELLO:
            return None                # a HELLO is noted only after a RELEASE
        if kind != T.F_RELEASE:
            out.append(ops[i])
            i += 1
            continue
        if i + 1 == len(ops) or ops[i + 1][0] != T.F_HELLO:
            return None
        _, protocol, sock_type, netns, ino = ops[i + 1][1]
        end = ops[i + 1][2]
        bind, rcvbuf, ext_ack = None, 0, None
        i += 2
        while i < len(ops) and ops[i][0] == _F_SETSOCKOPT:
            level, optname, value = ops[i][1]
            if level == _SOL_SOCKET and optname == _SO_RCVBUF:
                rcvbuf = rcvbuf_for(value, False)
            elif level == _SOL_NETLINK and optname == _NETLINK_EXT_ACK:
                ext_ack = bool(value)
            else:
                break
            end = ops[i][2]
            i += 1
        if i < len(ops) and ops[i][0] == T.F_BIND_AUTO and ops[i][1][1] == 0:
            bind = ops[i][1]
            end = ops[i][2]
            i += 1
        out.append((_REOPEN, (protocol, sock_type, netns, ino, bind, rcvbuf, ext_ack), end))
    return out


log = logging.getLogger("xfrmd.server")

# the C half of the reactor round (None: _reactor_py, XFRMD_PURE_PYTHON or not built)
_transport = cext.load("xfrmd._transport", source("xfrmd._transport"))

SO_PEERCRED = 17
# how long the reactor polls for the next request before it sleeps (0 on one CPU, where it
# would only keep the client from running)
SPIN_SECONDS = (float(os.environ.get("XFRMD_SPIN_US", "150")) / 1e6
                if len(os.sched_getaffinity(0)) > 1 else 0.0)
# a poll that found the next request only after this long cost more CPU than the sleep and
# wake-up it saved (30-60 µs on a VM): polling goes off for the next rounds, as when it
# found nothing. `ip -batch`'s next line comes within ~20 µs; a daemon's next request (charon
# between two Child SA messages) after 100 µs or more, and polling for it was 2 points of
# xfrmd's share of the CPU in the charon pair (docs/performance.md)
SPIN_WORTH = float(os.environ.get("XFRMD_SPIN_WORTH_US", "50")) / 1e6
SPIN_SKIP = 32              # rounds without polling after a poll that did not pay
# a young collection every this many rounds: under churn (a rekey adds an SA and deletes an
# old one) CPython 3.11 counts each deallocation against an allocation, so the young count
# stays flat while the young generation grows, and no collection comes until one walks all
# of it (56 ms after 100k rekeys on a 100k SAD, docs/performance.md "The collector")
GC_YOUNG_EVERY = 4096


def _collect_young() -> None:
    """The reactor's periodic young collection (GC_YOUNG_EVERY); none when the process
    turned the collector off."""
    if gc.isenabled():
        gc.collect(0)


def _in_step(conn: Connection, sock, drops: int) -> bool:
    """Whether a connection's turn ends, without asking for another record, after one whose
    READ moved its count (the caller checked that): the program had read every datagram
    this connection sent it when it wrote the record (the READ left nothing unread, nothing
    waits here for room), and the record's answers dropped nothing (``sock.drops`` as
    before it). Such a program reads each answer before it asks again (charon, which puts a
    READ ahead of every request), so the recv() that asks for more would find EAGAIN: a
    syscall per request for nothing. If more is queued after all, epoll (level-triggered)
    reports it next round, after this record's answers went out; as between records of
    two rounds, an overrun the next one causes is then reported after these answers
    (docs/protocol.md, "Flow control", Order). A burst that overruns still goes on in one
    turn: its ENOBUFS comes first and once (tests/test_flow_control.py)."""
    return (sock is not None and conn.sock is sock and conn.sent_ts is not None
            and not conn.sent_unread and not conn.pending and sock.drops == drops)


def _spin(poll0, spin_until: float):
    """The reactor's poll for the next request: ``poll0()`` (epoll with timeout 0), yielding
    the CPU in between, until it returns something or ``spin_until`` passes. Returns what it
    returned (falsy when nothing came) and whether polling paid: something came, within
    SPIN_WORTH of the start."""
    clock, start = time.perf_counter, spin_until - SPIN_SECONDS
    while True:
        now = clock()
        if now >= spin_until:
            return None, False
        os.sched_yield()
        got = poll0()
        if got:
            return got, now - start <= SPIN_WORTH
NETLINK, SERVICE, FILE_WRITE, INET = "netlink", "service", "file", "inet"
SIOCOUTQ = 0x5411          # TIOCOUTQ: what the peer has not read yet (unix_outq_len)
SENT_TRACK_MAX = 8192       # unreported datagrams after which a peer counts as not reporting
HELLO_TIMEOUT = 5.0        # seconds a connection may stay without its first HELLO
ACCEPT_BACKOFF = 1.0       # seconds the listener rests after accept() ran out of fds
FD_RESERVE = 64            # fds kept for the server's own files (trace, pcap, pipes, epoll)
FILE_WRITE_MAX_RECORD, FILE_WRITE_MAX_RECORDS = 4096, 256   # a virtual file's write: 1 MiB
NETNS_FDS_MAX = 256        # namespace fds remembered per socket (the shim sends at most 16)
FRAMES_UNREAD_MAX = 4096   # answers to frames (queries, SYNC) a peer may leave unread
QUERY_CACHE_MAX, QUERY_CACHE_BYTES = 256, 512   # parsed service queries kept (see _query)


def default_max_clients() -> int:
    """Connections served at once: what RLIMIT_NOFILE leaves after the server's own fds."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - FD_RESERVE)
# epoll_wait takes its timeout in int milliseconds: Python refuses more than 2**31 - 1 ms
# (OverflowError), and the kernel accepts lifetimes of 2**64 - 1 seconds. The reactor wakes
# at least this often and looks at the deadline again; a 30-day SA lifetime simply costs a
# few idle wake-ups.
MAX_POLL_SECONDS = 3600.0


def poll_timeout(deadline: float | None, now: float) -> float:
    """epoll's timeout for the kernel's next ``deadline``: -1 (none), else the wait in
    seconds, never negative and never past :data:`MAX_POLL_SECONDS`."""
    if deadline is None:
        return -1
    return min(max(0.0, deadline - now), MAX_POLL_SECONDS)


SO_PEERPIDFD = 77
_SELF_USERNS = None


def _userns_same(pid: int) -> bool:
    """Whether the peer lives in this server's user namespace. The namespace link needs
    ptrace access; without it, the uid maps (readable by anyone, and shown relative to the
    reader's namespace) tell: a process of another namespace shows another map."""
    global _SELF_USERNS
    try:
        if _SELF_USERNS is None:
            _SELF_USERNS = os.readlink("/proc/self/ns/user")
        return os.readlink(f"/proc/{pid}/ns/user") == _SELF_USERNS
    except PermissionError:
        pass
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/uid_map") as a, open("/proc/self/uid_map") as b:
            return a.read() == b.read()
    except OSError:
        return False


def _capget(pid: int) -> int | None:
    """The effective capability set of process ``pid`` by ``capget(2)`` (``cap_get_target_pid``
    reads the same ``cred->cap_effective`` that /proc/PID/status prints as CapEff), None if
    the call fails (the process is gone, an LSM refuses it, no libc)."""
    global _CAPGET
    if _CAPGET is None:
        try:
            _CAPGET = ctypes.CDLL(None, use_errno=True).capget
        except (OSError, AttributeError):
            _CAPGET = False
    if not _CAPGET:
        return None
    head, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid), (_CapData * 2)()
    if _CAPGET(ctypes.byref(head), data) != 0:
        return None
    return data[0].effective | data[1].effective << 32


class _CapHeader(ctypes.Structure):         # struct __user_cap_header_struct
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):           # struct __user_cap_data_struct
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAPGET = None


def _peer_credentials(s: pysocket.socket, pid: int, uid: int, gid: int, owner_uid: int):
    """A peer's capabilities (xfrmd/capability.py), read as the connection is accepted.

    Its effective set comes from ``capget(2)``: one system call where /proc/PID/status is
    an open, the kernel's formatting of 50 lines, a read, a close and their parsing (about
    a third of the cost; this runs for every connection, two per `ip` command). The pid
    may name another process by now; it only matters when the set holds CAP_NET_ADMIN (the
    one capability the emulated kernel asks about: without it the answer is "none" whoever
    holds the pid). Then the peer's pidfd (SO_PEERPIDFD) must still name a live process
    after the reads — so the pid was not reused between connect and here — and the peer
    must share the server's user namespace. Without pidfds (kernels before 6.5) or capget,
    /proc/PID/status is read as before, its effective uid standing in for the pidfd."""
    caps = _capget(pid)
    if caps is not None and not caps >> CAP_NET_ADMIN & 1:
        return credentials(pid, uid, gid, owner_uid=owner_uid, caps=0)
    pidfd = -1
    try:
        pidfd = s.getsockopt(pysocket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:
        pass                       # kernels before 6.5: the uid in the status must match
    try:
        if caps is not None and pidfd >= 0:
            if not _userns_same(pid):
                caps = 0
            return credentials(pid, uid, gid, owner_uid=owner_uid,
                               caps=caps if _alive(pidfd) else 0)
        status = None
        try:   # os.read: a third of what open().read() costs
            fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
            try:
                status = os.read(fd, 8192).decode("ascii", "replace")
            finally:
                os.close(fd)
        except OSError:
            pass
        same = status is not None and _userns_same(pid)
        if pidfd >= 0 and status is not None and not _alive(pidfd):
            status = None          # gone: the pid may name another process by now
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return peer_credentials(pid, uid, gid, owner_uid=owner_uid, status=status, same_userns=same)


def _pid_free(sock) -> int:
    """BIND_REPLY's fourth word (docs/protocol.md): when an autobind gave the socket its
    process's id, the protocols (bit N: protocol N < 32) in whose table of the namespace no
    socket holds that id now — what the shim's optimistic autobind of that process's first
    socket of another protocol predicts from (`ip` opens NETLINK_ROUTE, then NETLINK_XFRM:
    one round trip less per command). 0 when the socket got another id."""
    pid = sock.pid & 0xFFFFFFFF
    if sock.portid != pid:
        return 0
    free = 0xFFFFFFFF
    for protocol, table in sock.netns.ports.items():
        if protocol < 32 and pid in table:
            free &= ~(1 << protocol)
    return free


def _alive(pidfd: int) -> bool:
    """Whether the process of ``pidfd`` has not exited (``pidfd_send_signal`` of signal 0)."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except PermissionError:
        pass                       # alive, another user's
    except OSError:
        return False
    return True


def _proc_stat(pid: int, field: int) -> int:
    """Field ``field`` (1-based, as proc(5) counts) of /proc/PID/stat, 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[field - 3])
    except (OSError, IndexError, ValueError):
        return 0


def _proc_start(pid: int) -> int:
    return _proc_stat(pid, 22)       # starttime, clock ticks since boot


def _proc_ppid(pid: int) -> int:
    return _proc_stat(pid, 4)


def proc_comm(pid: int) -> str | None:
    """The command name of a peer process (its ``task->comm``)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


class Connection:
    """One accepted unix connection; its kind is known once its HELLO arrived."""
    __slots__ = ("s", "fd", "pid", "uid", "kind", "netns", "sock", "open_error", "pending",
                 "pending_ts", "pending_frames", "out", "path", "chunks", "greeted", "born",
                 "cred", "sent_ts", "sent_unread", "read_n", "inet", "hello", "probe",
                 "prefix", "prefix_ops", "poller")

    def __init__(self, s: pysocket.socket, pid: int, uid: int):
        self.s = s
        self.fd = s.fileno()
        self.pid = pid
        self.uid = uid
        self.kind = None            # NETLINK, SERVICE, FILE_WRITE after HELLO
        self.netns = ""
        self.sock = None            # the kernel's NetlinkSocket
        self.open_error = 0         # why kernel.socket() refused (answered on BIND)
        self.pending = collections.deque()   # records the peer's buffer could not take yet
        self.pending_ts = 0         # what they are charged to the emulated socket (truesize)
        self.pending_frames = 0     # how many of them are not charged (answers to frames)
        self.greeted = False        # a HELLO arrived at some time (idle timeout)
        self.born = time.monotonic()
        self.out = False            # registered for EPOLLOUT
        self.path = ""              # FILE_WRITE: the virtual file
        self.chunks = []            # FILE_WRITE: what was written
        self.cred = None            # capability.Credentials, read at accept
        # what each charged datagram sent since the last READ report is charged (None: the
        # peer does not report its reads); see _unread
        self.sent_ts = collections.deque()
        self.sent_unread = 0        # their sum
        self.read_n = 0             # datagrams the peer said it has read (READ)
        self.inet: inet_udp.UdpSock | None = None   # INET: the emulated UDP socket
        # a kept connection's HELLOs repeat (one per `ip -batch` line): the last one's
        # payload and what it says, and the outq probe its sockets share
        self.hello: tuple | None = None
        self.probe = None
        self.prefix: bytes | None = None   # a kept connection's opening frames (Server._batch)
        self.prefix_ops: list = []
        self.poller = None                 # select.poll of this connection (Server._readable)

    def reads_reset(self) -> None:
        """A new emulated socket on this connection: the shim counts its reads from 0."""
        if self.sent_ts is not None:
            self.sent_ts.clear()
        else:
            self.sent_ts = collections.deque()
        self.sent_unread = 0
        self.read_n = 0

    def sent(self, ts: int) -> None:
        """A charged datagram went out; until a READ report covers it, it may be unread. A
        peer that never reports (a Python client) stops being tracked once the count is
        past anything a receive buffer could hold unread."""
        q = self.sent_ts
        if q is None:
            return
        q.append(ts)
        self.sent_unread += ts
        if len(q) > SENT_TRACK_MAX:
            self.sent_ts = None

    def read(self, n: int) -> None:
        """READ: the program has taken ``n`` datagrams (mod 2**32) off the connection."""
        q = self.sent_ts
        if q is None:
            return
        k = (n - self.read_n) & 0xFFFFFFFF
        self.read_n = n
        if k > len(q):               # not counts this connection's datagrams can explain
            self.sent_ts = None
            return
        for _ in range(k):
            self.sent_unread -= q.popleft()


# Server._replay's REOPEN op in C (None: the Python, XFRMD_PURE_PYTHON or not built)
replay_reopen = (reopen_c.replay_reopen if reopen_c is not None
                 and reopen_c.setup_conn(Connection, NETLINK, collections.deque) else None)


class Server:
    # whose server this is: that uid (and root) has CAP_NET_ADMIN and may use `xfrmd ctl`
    owner_uid = os.geteuid()
    group: int | None = None      # `serve --group`: the socket is 0660 with this group

    def __init__(self, kernel: Kernel, path: str, *, max_clients: int | None = None,
                 hello_timeout: float = HELLO_TIMEOUT):
        self.kernel = kernel
        kernel.faults.comm_of = proc_comm     # `xfrmd ctl fault … comm NAME` matches by it
        self.max_clients = max_clients or default_max_clients()
        self.hello_timeout = hello_timeout      # 0: never close a silent connection
        self._unhello: collections.deque = collections.deque()  # accept order = deadline order
        self._accept_resume = 0.0   # listener out of the epoll set until then (EMFILE)
        self._accept_failing = False
        self._refusing = False
        self.path = path
        self.conns: dict[object, Connection] = {}   # NetlinkSocket → Connection
        self.by_fd: dict[int, Connection] = {}
        self.listener = None
        self.ep = None
        self.ready = trio.Event()
        self._wake_r = self._wake_w = -1
        self._closing: list[pysocket.socket] = []
        self._sends = 0             # answers sent by _send (see _readable)
        # a program asks the same few questions again and again (charon: if_nametoindex and
        # ETHTOOL_GFEATURES of one port per SA): the text of a query → its parsed request
        self._parsed: dict[bytes, dict] = {}
        # processes in an unshare()d namespace (net_namespace.note_pid): pidfd → pid, and
        # the ones found gone while a request was handled
        self._pidfds: dict[int, int] = {}
        self._exited: list[int] = []
        self._pump = None           # the C round (serve), None: _reactor_py

    # -- listening ---------------------------------------------------------------------

    def _prepare_path(self) -> None:
        """Refuse a path a live server serves, or one that is not ours (a socket, file or
        symlink another user planted: binding there would fail, or hand our clients to
        them); replace a stale socket of our own. The default per-user directory is made
        0700, and must be ours alone (docs/security.md)."""
        me = os.geteuid()
        parent = os.path.dirname(os.path.abspath(self.path))
        if parent == T.private_dir():
            try:
                os.mkdir(parent, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(parent)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != me or st.st_mode & 0o077:
                raise SystemExit(f"xfrmd: refusing {parent}: not a directory only uid {me} can use "
                                 f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")
        else:
            try:
                st = os.stat(parent)
            except FileNotFoundError:
                raise SystemExit(f"xfrmd: cannot serve on {self.path}: {parent} does not exist") from None
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                # anyone could replace our socket there
                raise SystemExit(f"xfrmd: refusing {self.path}: {parent} is writable by others")
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            # bind() would not follow it (EADDRINUSE), and it is nobody's socket
            raise SystemExit(f"xfrmd: refusing {self.path}: it is a symbolic link (owned by uid "
                             f"{st.st_uid}), not a socket of this server's user")
        if st.st_uid != me:
            what = "a socket" if stat.S_ISSOCK(st.st_mode) else "a file"
            raise SystemExit(f"xfrmd: refusing {self.path}: it is {what} owned by uid {st.st_uid}, "
                             f"not by this server's user (uid {me})")
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

    def _restrict_path(self, path: str) -> None:
        """The socket is the owner's alone (0600), or 0660 with ``group``. Done before
        listen(): until then a connect is refused whatever the mode."""
        try:
            if self.group is not None:
                os.chown(path, -1, self.group, follow_symlinks=False)
                os.chmod(path, 0o660)
            else:
                os.chmod(path, 0o600)
        except OSError as e:          # e.g. a group the server's user is not a member of
            os.unlink(path)
            raise SystemExit(f"xfrmd: cannot give {self.path} to group {self.group}: "
                             f"{e.strerror}") from None

    def _listen(self) -> pysocket.socket:
        """The listening socket, whose path appears only once it listens: a client — or a
        harness that waits for the file to exist — never finds a socket that refuses. It is
        bound under a hidden name next to ``path``, restricted, set listening, then linked
        to ``path`` (link(2) fails if the name exists: a server that started meanwhile is
        never replaced, as bind() would not have replaced it)."""
        d, base = os.path.split(os.path.abspath(self.path))
        tmp = os.path.join(d, f".{base}.{os.getpid()}")
        s = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_SEQPACKET)
        try:
            if len(os.fsencode(tmp)) >= 108:      # sun_path
                raise OSError(E.ENAMETOOLONG, tmp)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)                    # a crashed server's with our pid
            s.bind(tmp)
        except OSError:
            # no hidden name to be had (too long, another user's file in a sticky
            # directory): bind the name itself, as before
            s.bind(self.path)
            self._restrict_path(self.path)
            s.listen(256)
            return s
        try:
            self._restrict_path(tmp)
            s.listen(256)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                s.close()
                raise SystemExit(f"xfrmd: another server is already listening on {self.path}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return s

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED,
                    listener: pysocket.socket | None = None) -> None:
        """Serve until cancelled. ``listener``: a socket already listening on ``self.path``
        (``xfrmd run`` binds its private socket before the kernel model has loaded)."""
        if listener is None:
            self._prepare_path()
            listener = self._listen()
        listener.setblocking(False)
        self.listener = listener
        # the shim's cached link answers stay valid while this page's generation does
        self.linkgen = LinkgenPage(self.path)
        self.linkgen.open()
        self.ep = select.epoll()
        self.ep.register(listener.fileno(), select.EPOLLIN)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ep.register(self._wake_r, select.EPOLLIN)
        self._pump = self.make_pump()
        self.kernel.watch_process = self._watch_process
        self.kernel.parent_of = _proc_ppid
        self.kernel.find_processes = self._processes_in
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        failure: list[BaseException] = []

        def reactor():
            try:
                self._reactor()
            except BaseException as e:  # noqa: BLE001 - re-raised in serve()
                failure.append(e)
            finally:
                os.write(done_w, b"x")

        thread = threading.Thread(target=reactor, name="xfrmd-reactor", daemon=True)
        thread.start()
        try:
            task_status.started(self)
            self.ready.set()
            await trio.lowlevel.wait_readable(done_r)   # returns only if the reactor died
            if failure:
                raise failure[0]
        finally:
            os.write(self._wake_w, b"q")
            thread.join(10)
            self._pump = None           # it holds the server: no cycle left behind
            self.linkgen.close()
            for conn in list(self.by_fd.values()):
                self._close(conn)
            while self._closing:
                self._closing.pop().close()
            self.kernel.watch_process = self.kernel.parent_of = self.kernel.find_processes = None
            for fd in [self._wake_r, self._wake_w, done_r, done_w, *self._pidfds]:
                os.close(fd)
            self._pidfds.clear()
            self.ep.close()
            listener.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    # -- the reactor (its own thread; the only code that touches the kernel while serving)
    #
    # Sends never block: what the peer's buffer cannot take waits in ``pending``
    # (EPOLLOUT). Until the client has read it, a datagram stays charged to its emulated
    # socket's receive buffer, so a client that writes without reading overruns the socket
    # and gets ENOBUFS as on Linux: what waits here is bounded by that buffer, and nobody
    # else stalls.

    def _reactor(self) -> None:
        pump = self._pump
        if pump is None:
            self._reactor_py()
        else:
            self._reactor_c(pump)

    def make_pump(self):
        """The C half of the reactor round (xfrmd/_transport.c) over this server's epoll set,
        listener and wake pipe; None when it is not built (or XFRMD_PURE_PYTHON)."""
        if _transport is None:
            return None
        return _transport.Pump(
            self, self.kernel, self.ep.fileno(), self.listener.fileno(), self._wake_r, NETLINK,
            KernelError, Connection, NetlinkSocket, T.MAX_RECORD, SENT_TRACK_MAX, MAX_POLL_SECONDS,
            replay_reopen)

    def _reactor_py(self) -> None:
        """The reactor in Python: the reference of _reactor_c and xfrmd/_transport.c."""
        ep = self.ep
        k = self.kernel
        timeout = self._io_timeout(poll_timeout(k.next_deadline(), k.clock.now()))
        spin_until, spin_skip, rounds = 0.0, 0, GC_YOUNG_EVERY
        clock = time.perf_counter
        flush = self._after_kernel_work

        def poll0() -> list:
            return ep.poll(0, 256)

        while True:
            # a client that just got its answer usually sends its next request within tens
            # of microseconds (`ip -batch`): polling for it, rather than sleeping, saves the
            # cross-CPU wake-up that costs this much again on a VM (docs/architecture.md).
            # Yield while polling (the client may share this CPU); a poll that found nothing
            # turns polling off for the next rounds.
            events = ep.poll(0, 256) if spin_until else None
            if not events and spin_until:
                events, paid = _spin(poll0, spin_until)
                if not paid:
                    spin_skip = SPIN_SKIP
            if not events:
                events = ep.poll(timeout, 256)
            if events and SPIN_SECONDS and spin_skip <= 0:
                spin_until = clock() + SPIN_SECONDS
            else:
                spin_until = 0.0
                spin_skip -= 1
            if self._serve_events(events):
                return
            timeout = self._round_end(flush)
            rounds -= 1
            if not rounds:
                rounds = GC_YOUNG_EVERY
                _collect_young()

    def _reactor_c(self, pump) -> None:
        """_reactor_py with its round in C (xfrmd/_transport.c): ``pump.round`` waits as
        ``ep.poll`` does and serves the events itself — a bound netlink connection's records
        of the shapes the shim sends for a request in C, everything else by the same Python
        (_accept, _event, _slow_record) — and ``pump.end`` is _round_end with ``pump.flush``
        for _after_kernel_work (docs/architecture.md, "The reactor round in C")."""
        k = self.kernel
        timeout = self._io_timeout(poll_timeout(k.next_deadline(), k.clock.now()))
        spin_until, spin_skip, rounds = 0.0, 0, GC_YOUNG_EVERY
        clock = time.perf_counter
        serve, end = pump.round, pump.end

        def serve0() -> int:
            return serve(0.0)

        while True:
            n = serve(0.0) if spin_until else 0       # as _reactor_py's spin
            if not n and spin_until:
                n, paid = _spin(serve0, spin_until)
                if not paid:
                    spin_skip = SPIN_SKIP
            if not n:
                n = serve(timeout)
            if n < 0:
                return                                # the wake pipe
            if n and SPIN_SECONDS and spin_skip <= 0:
                spin_until = clock() + SPIN_SECONDS
            else:
                spin_until = 0.0
                spin_skip -= 1
            timeout = end()               # _round_end with Pump.flush
            rounds -= 1
            if not rounds:
                rounds = GC_YOUNG_EVERY
                _collect_young()

    def _serve_events(self, events: list) -> bool:
        """One round's events, in epoll's order; True when the wake pipe says stop."""
        lfd, wake = self.listener.fileno(), self._wake_r
        for fd, ev in events:
            if fd == lfd:
                self._accept()
                continue
            if fd == wake:
                return True
            conn = self.by_fd.get(fd)
            if conn is not None:
                self._event(conn, ev)
            elif fd in self._pidfds:
                self._process_exited(fd)
        return False

    def _round_end(self, flush) -> float:
        """What follows a round's events: exited processes, due timers, ``flush`` (what
        the kernel queued goes out), silent and closed connections. Returns the next
        round's epoll timeout (:meth:`_timeout`; the clock is read once, before the flush,
        which makes the wait longer by the flush's microseconds: epoll counts in ms)."""
        k = self.kernel
        while self._exited:
            process_exit(k, self._exited.pop())
        # what this round's requests changed: k.next_deadline(), without its call when
        # the first timer is live
        timers = k._timers
        deadline = timers[0][0] if timers and not timers[0][2].cancelled else k.next_deadline()
        now = 0.0
        if deadline is not None:
            now = k.clock.now()
            if deadline <= now:
                try:
                    k.run_timers()
                except Exception as e:   # one line and a count, as a handler's bug
                    k.stats.internal_error(e, "a kernel timer")
                deadline = k.next_deadline()
                now = k.clock.now()
        flush()
        return self._round_after(deadline, now)

    def _round_after(self, deadline: float | None, now: float) -> float:
        """The end of :meth:`_round_end`, after the flush (``Pump.end`` calls it when a
        connection is silent or closed, or the listener rests): the next round's epoll
        timeout."""
        if self._unhello:
            self._close_silent()
        closed = False
        if self._closing:
            closed = True
            while self._closing:
                self._closing.pop().close()
        if self._accept_resume:
            self._resume_accept(closed)
        # poll_timeout and _io_timeout, inline
        timeout = -1.0 if deadline is None else min(max(0.0, deadline - now), MAX_POLL_SECONDS)
        if self._accept_resume or self._unhello:
            timeout = self._io_timeout(timeout)
        return timeout

    def _watch_process(self, pid: int, start: int) -> None:
        """A process moved into an emulated namespace: its pidfd joins the epoll set, and
        its exit (the pidfd readable) is ``net_namespace.process_exit``. ``start`` (its
        /proc/PID/stat start time) keeps a process that reused the pid from being watched."""
        if pid <= 0 or pid in self._pidfds.values():
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._exited.append(pid)            # gone already
            return
        except OSError:
            return                              # no pidfd: it stays until the server stops
        if start and _proc_start(pid) != start:
            os.close(fd)
            return
        self._pidfds[fd] = pid
        self.ep.register(fd, select.EPOLLIN)

    def _processes_in(self, names: set[str]) -> list[tuple[int, int]]:
        """Live processes (pid, start) started in one of the emulated namespaces ``names``:
        /proc/PID/environ (what they were exec'd with) has XFRMD_NETNS=one of them and
        XFRMD_SOCKET naming this server. Zombies (an empty environ) and other users'
        processes (unreadable) are not found."""
        mine, out = os.path.realpath(self.path), []
        wanted = {b"XFRMD_NETNS=" + n.encode() for n in names}
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if not wanted.intersection(env):
                continue
            sock = next((e[13:] for e in env if e.startswith(b"XFRMD_SOCKET=")), None)
            if sock is not None and os.path.realpath(os.fsdecode(sock)) == mine:
                out.append((int(d), _proc_start(int(d))))
        return out

    def _process_exited(self, fd: int) -> None:
        pid = self._pidfds.pop(fd)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        os.close(fd)
        self._exited.append(pid)

    def _event(self, conn: Connection, ev: int, drain: bool = False) -> None:
        try:
            if ev & select.EPOLLOUT:
                self._flush(conn)
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                self._readable(conn, drain)
        except Exception as e:
            self._event_error(conn, e)

    def _event_error(self, conn: Connection, e: Exception) -> None:
        """What a connection's record raised: it costs the connection, not the server."""
        if isinstance(e, OSError):
            self._close(conn)
        elif isinstance(e, (struct.error, T.FrameError)):
            # a control frame shorter than its kind's payload, a bad BATCH: the connection is
            # closed (docs/protocol.md), the server goes on
            self.kernel.stats.bad_frame(conn.pid, str(e))
            self._close(conn)
        else:                    # a bug costs one connection, not the server
            self.kernel.stats.internal_error(e, f"a record from pid {conn.pid}")
            self._close(conn)

    def _other_event(self, fd: int) -> None:
        """An event of an fd that is no connection (the C round's fallback)."""
        if fd in self._pidfds:
            self._process_exited(fd)

    def _slow_record(self, conn: Connection, rec: bytes) -> bool:
        """A record the C turn does not take (xfrmd/_transport.c): :meth:`_dispatch` with
        :meth:`_event`'s error handling; whether the turn goes on (:meth:`_readable`)."""
        sends = self._sends
        sock, read_n = conn.sock, conn.read_n
        drops = sock.drops if sock is not None else 0
        try:
            if not self._dispatch(conn, rec):
                return False
        except Exception as e:
            self._event_error(conn, e)
            return False
        return self._sends == sends and not (conn.read_n != read_n and
                                             _in_step(conn, sock, drops))

    def _accept(self) -> None:
        """One connection per event: the listener is level-triggered, so another one that
        waits is reported on the next round (accepting until EAGAIN cost a failing accept4
        and its exception per connection: `ip` commands connect one at a time)."""
        try:
            # listener._accept: socket.accept() also converts the listener's family and
            # type to AddressFamily and SocketKind enums for the new socket object
            fd, _ = self.listener._accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            # EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog and
            # the listener stays readable; polling it now would spin. Rest it until a
            # connection closes or ACCEPT_BACKOFF passed; say so once per episode.
            self._accept_pause(e)
            return
        s = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_SEQPACKET, 0, fd)
        if self._accept_failing:
            self._accept_failing = False
            log.warning("accept works again (%d connections)", len(self.by_fd) + 1)
        if len(self.by_fd) >= self.max_clients:
            # refused: closed before anything is read (the client's first call fails,
            # the shim says it cannot reach the server)
            if not self._refusing:
                self._refusing = True
                log.warning("%d connections (--max-clients): refusing new ones",
                            len(self.by_fd))
            s.close()
            return
        self._refusing = False
        pid, uid, gid = _UCRED.unpack(s.getsockopt(pysocket.SOL_SOCKET, SO_PEERCRED, _UCRED.size))
        # left blocking: every recv and send says MSG_DONTWAIT (one syscall less here)
        conn = Connection(s, pid, uid)
        # what the peer may do, read once now as Linux checks the opener's credentials
        conn.cred = _peer_credentials(s, pid, uid, gid, self.owner_uid)
        self.by_fd[conn.fd] = conn
        self.ep.register(conn.fd, select.EPOLLIN)
        if self.hello_timeout:
            self._unhello.append(conn)
        # a client writes its HELLO right after connect(): read it now rather than on
        # the next wake-up
        self._event(conn, select.EPOLLIN)

    def _accept_pause(self, e: OSError) -> None:
        if not self._accept_failing:
            self._accept_failing = True
            log.warning("accept: %s (%d connections): not accepting for up to %g s at a time",
                        e.strerror or e, len(self.by_fd), ACCEPT_BACKOFF)
        if not self._accept_resume:
            self.ep.unregister(self.listener.fileno())
        self._accept_resume = time.monotonic() + ACCEPT_BACKOFF

    # -- I/O timers: the silent-connection timeout and the accept back-off ------------

    def _io_timeout(self, timeout: float) -> float:
        """The epoll timeout, shortened to the next I/O timer."""
        now = None
        if self._accept_resume:
            now = time.monotonic()
            t = max(0.0, self._accept_resume - now)
            timeout = t if timeout < 0 else min(timeout, t)
        if self._unhello:
            now = now or time.monotonic()
            t = max(0.0, self._unhello[0].born + self.hello_timeout - now)
            timeout = t if timeout < 0 else min(timeout, t)
        return timeout

    def _resume_accept(self, closed: bool) -> None:
        if closed or time.monotonic() >= self._accept_resume:
            self._accept_resume = 0.0      # an fd was freed, or time to try again
            self.ep.register(self.listener.fileno(), select.EPOLLIN)

    def _close_silent(self) -> None:
        """Close the connections that sent no HELLO within ``hello_timeout``."""
        limit = time.monotonic() - self.hello_timeout
        q = self._unhello
        while q and (q[0].greeted or q[0].fd not in self.by_fd or q[0].born <= limit):
            c = q.popleft()
            if not c.greeted and self.by_fd.get(c.fd) is c:
                log.info("closing a connection from pid %d: no HELLO in %g s", c.pid,
                         self.hello_timeout)
                self._close(c)

    def _close(self, conn: Connection) -> None:
        if self.by_fd.pop(conn.fd, None) is None:
            return
        # the fd itself is closed after this round's answers went out: closing a unix
        # socket is a slow syscall, and the next command's client is waiting for its ACK.
        # Its close also takes it out of the epoll set (the server holds the only reference
        # to the file: accept4 gives it CLOEXEC, it is never passed on), so no EPOLL_CTL_DEL;
        # what this round's events still say of the fd finds no connection in by_fd.
        self._closing.append(conn.s)
        if conn.sock is not None:
            self.conns.pop(conn.sock, None)
            self.kernel.close(conn.sock)
            conn.sock.outq_probe = None
            conn.sock = None
        # the outq probe is a closure over the connection (a cycle): broken here, so the
        # connection is freed when it goes, not left to a collection that tune_gc's
        # freezing may have made it miss (it would stay for the server's lifetime)
        conn.probe = None
        if conn.kind == FILE_WRITE:
            self._file_written(conn)
        if conn.inet is not None:
            inet_udp.close(conn.inet)
            conn.inet = None

    def _readable(self, conn: Connection, drain: bool = False) -> None:
        """What the client has written, up to a few records (epoll is level-triggered: the
        rest is reported on the next round), so one busy client cannot starve the others.

        A record answered by a frame (a service query, a BIND or SYNC reply) ends the turn
        unless ``drain``: the shim waits for that answer before it writes again, so the next
        recv() would almost always find nothing (EAGAIN), a syscall per query for nothing;
        if more is queued after all, epoll reports it on the next round. Netlink datagrams
        are read on: their answers are admitted against the socket's receive buffer, and
        what a program writes without reading is judged as one burst (tests/test_flow_control.py);
        whether more is there is asked with poll(0), not with a recv() that fails — except
        after a datagram answered in step (:func:`_in_step`: charon's every request)."""
        for i in range(16):
            sends = self._sends
            if conn.fd not in self.by_fd:
                return
            if i:
                # is there more? A poll(0) of this connection answers for a third of what
                # a recv() that fails with EAGAIN costs in Python (the exception)
                poller = conn.poller
                if poller is None:
                    poller = conn.poller = select.poll()
                    poller.register(conn.fd, select.POLLIN)
                if not poller.poll(0):
                    return
            sock, read_n = conn.sock, conn.read_n
            drops = sock.drops if sock is not None else 0
            if not self._record(conn):
                return
            if drain:
                continue
            if self._sends != sends or (conn.read_n != read_n and _in_step(conn, sock, drops)):
                return

    def _record(self, conn: Connection) -> bool:
        try:
            rec = conn.s.recv(T.MAX_RECORD, pysocket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        if not rec:
            self._close(conn)
            return False
        return self._dispatch(conn, rec)

    def _dispatch(self, conn: Connection, rec: bytes) -> bool:
        """One record: a frame, a datagram, or a BATCH of them (docs/protocol.md)."""
        if rec[:4] == b"\0\0\0\0" and len(rec) >= 8 and rec[6:8] == _BATCH_KIND:
            return self._batch(conn, rec)
        return self._one(conn, rec)

    def _batch(self, conn: Connection, rec: bytes) -> bool:
        """The records of a BATCH, in order (docs/protocol.md). The frames a netlink socket's
        batches carry every time — SETSOCKOPT, READ — are applied here without cutting
        them out (one `ip -batch` line or charon request is one batch: this is its cost).

        A kept connection opens each new socket with the same frames (`ip -batch`: RELEASE,
        HELLO, SETSOCKOPT, SETSOCKOPT, BIND_AUTO, then the request): what they say is noted
        the first time (``conn.prefix``) and a batch starting with the same bytes has them
        applied without parsing them again (:meth:`_replay`)."""
        one, by_fd, k = self._one, self.by_fd, self.kernel
        o, n = 8, len(rec)
        if conn.prefix is not None and conn.sock is not None and rec.startswith(conn.prefix):
            o = self._replay(conn)
            if o < 0:
                return False
            # what usually follows: the one request of an `ip` line, as _one takes it
            sock = conn.sock
            if sock is not None and o + 4 <= n and _U32.unpack_from(rec, o)[0] == n - o - 4 \
                    and not rec.startswith(b"\0\0\0\0", o + 4):
                self._deliver(conn, sock, rec[o + 4:])
                return True
        # the opening frames are noted only from a bound state the replay can check
        ops: list | None = [] if o == 8 and conn.sock is not None else None
        while o < n:
            if o + 4 > n:
                raise T.FrameError("truncated batch")
            (length,) = _U32.unpack_from(rec, o)
            o += 4
            end = o + length
            if end > n:
                raise T.FrameError("truncated batch")
            op = None
            if rec.startswith(b"\0\0\0\0", o):
                if length >= 8:
                    kind = _U16.unpack_from(rec, o + 6)[0]
                    if kind == T.F_BATCH:
                        raise T.FrameError("nested batch")
                    sock = conn.sock
                    if sock is not None:
                        if kind == T.F_SETSOCKOPT and length >= 20:
                            args = _SETSOCKOPT.unpack_from(rec, o + 8)
                            try:
                                k.setsockopt(sock, *args)
                            except KernelError:
                                pass   # the shim checked what it could (see _control)
                            if ops is not None:
                                ops.append((T.F_SETSOCKOPT, args, end))
                            o = end
                            continue
                        if kind == T.F_READ and length >= 12:
                            conn.read(_U32.unpack_from(rec, o + 8)[0])
                            ops = None             # its count moves: never the same bytes
                            o = end
                            continue
                        if kind == T.F_BIND_AUTO and length >= 16:
                            op = (kind, _BIND.unpack_from(rec, o + 8), end)
                        elif kind == T.F_RELEASE:
                            op = (kind, None, end)
                    elif kind == T.F_HELLO and conn.kind is None:
                        op = (kind, None, end)
            elif ops:
                fused = _fuse_reopen(ops)
                if fused is not None:
                    conn.prefix, conn.prefix_ops = rec[:o - 4], fused
                ops = None
            if ops is not None and op is None:
                ops = None
            if not one(conn, rec[o:end]) or conn.fd not in by_fd:
                return False
            if ops is not None:
                if op[0] == T.F_HELLO:
                    if conn.sock is None:
                        ops = None                 # what an unknown namespace does: as sent
                    else:
                        op = (op[0], conn.hello, end)
                if ops is not None:
                    ops.append(op)
            o = end
        return True

    def _replay(self, conn: Connection) -> int:
        """Apply the opening frames noted in ``conn.prefix_ops`` (:func:`_fuse_reopen`) as
        :meth:`_one` would apply them; the offset of the first record left to read, or -1 if
        the connection closed. RELEASE+HELLO is :meth:`_release` and :meth:`_hello_netlink`
        inline, the socket's close and open (and the usual bind) one ``Kernel.reopen``: one
        `ip -batch` line is one of these replays, and their calls and the bookkeeping between
        them were half of its cost."""
        k = self.kernel
        for kind, args, end in conn.prefix_ops:
            if kind == _REOPEN:
                # the usual line, the whole op in C (xfrmd/netlink/_reopen.c: what follows,
                # with the socket reopened in place and its port id kept); else as follows
                if replay_reopen is not None and replay_reopen(
                        conn, args, k.namespaces, k.families, k.former_names, k.dirty,
                        k._sock_ids, k.admin_uids):
                    continue
                # _release: the old socket goes (netlink_release). A replay starts bound
                # (_batch checks conn.sock), and a noted HELLO made the connection greeted
                # and its probe: conn.greeted and conn.probe need no update.
                if conn.pending:
                    conn.pending.clear()
                conn.pending_ts = conn.pending_frames = 0
                # _hello_netlink: the new one, with what the noted HELLO said
                protocol, sock_type, conn.netns, ino, bind, rcvbuf, ext_ack = args
                conn.kind = NETLINK
                # reads_reset, inline
                q = conn.sent_ts
                if q is None:
                    conn.sent_ts = collections.deque()
                elif q:
                    q.clear()
                conn.sent_unread = conn.read_n = 0
                pid = conn.pid
                # BIND_AUTO's usual case: the process's id (another: _bind_auto's autobind)
                portid = bind[0] if bind is not None and bind[0] == pid & 0xFFFFFFFF else 0
                old = conn.sock
                try:
                    sock = k.reopen(old, protocol, conn.netns, pid, conn.uid, sock_type,
                                    conn.cred, portid)
                except KernelError as e:
                    # the namespace went away: as _hello_netlink, then the rest as sent
                    # (the options and BIND_AUTO this REOPEN took do nothing without a
                    # socket, _one: its end is where the rest starts)
                    self.conns.pop(old, None)
                    conn.sock = None
                    conn.open_error = e.errno
                    if e.errno == E.ENOENT:
                        log.info("pid %d asked for network namespace %r, which does not exist",
                                 conn.pid, conn.netns)
                    return end
                conn.open_error = 0
                sock.client_ino = ino
                sock.outq_probe = conn.probe
                if sock is not old:
                    conns = self.conns
                    conns.pop(old, None)
                    conns[sock] = conn
                    conn.sock = sock
                if rcvbuf:
                    sock.rcvbuf = rcvbuf         # setsockopt(SO_RCVBUF), see _fuse_reopen
                if ext_ack is not None:
                    sock.ext_ack = ext_ack       # setsockopt(NETLINK_EXT_ACK)
                if bind is None or sock.bound:
                    continue
                if self._replay_bind(conn, sock, *bind) < 0:
                    return -1
            elif kind == _F_SETSOCKOPT:
                level, optname, value = args
                try:
                    k.setsockopt(conn.sock, level, optname, value)
                except KernelError:
                    pass
            elif self._replay_bind(conn, conn.sock, *args) < 0:     # BIND_AUTO
                return -1
        return len(conn.prefix)

    def _replay_bind(self, conn: Connection, sock, portid: int, groups: int) -> int:
        """A replayed BIND_AUTO, as _one applies it (``_bind_auto``); -1 if the connection
        closed."""
        if sock.bound:
            return 0                         # bound by the REOPEN (or before): nothing to do
        # _bind_auto's usual case: the process's id, which nobody holds
        # (a port someone holds is EADDRINUSE from bind: no need to look first)
        if portid == conn.pid & 0xFFFFFFFF:
            try:
                self.kernel.bind(sock, portid, groups)
                return 0
            except KernelError:
                pass                         # _bind_auto says why
        reply = self._bind_auto(sock, conn, portid, groups)
        if reply is not None:
            self._flush(conn)
            self._send(conn, reply)
        return -1 if conn.fd not in self.by_fd else 0

    def _one(self, conn: Connection, rec: bytes) -> bool:
        kind = conn.kind
        if kind is None:
            return self._hello(conn, rec)
        if kind == SERVICE:
            self._query(conn, rec)
            return True
        if kind == INET:
            self._inet(conn, rec)
            return True
        if kind == FILE_WRITE:
            # what a sysfs/debugfs file takes is small (kernfs stores one page per write):
            # a writer that never stops must not grow the server
            if len(conn.chunks) < FILE_WRITE_MAX_RECORDS:
                conn.chunks.append(rec[:FILE_WRITE_MAX_RECORD])
            return True
        sock = conn.sock
        if sock is None:
            # the socket could not be created (e.g. unknown namespace): every binding
            # request reports why; datagrams go nowhere
            if T.is_frame(rec):
                fkind = T.parse_frame(rec)[1]
                if fkind in (T.F_BIND, T.F_AUTOBIND):
                    self._send(conn, T.bind_reply(-conn.open_error, 0, 0))
                elif fkind == T.F_RELEASE:
                    self._release(conn)
            elif conn.open_error:
                # a datagram after an optimistic bind: its read fails with the reason
                self._send(conn, sock_error_frame(conn.open_error))
            return True
        if rec[:4] == b"\0\0\0\0" and len(rec) >= 8:
            reply = self._control(sock, rec, conn)
            if reply is not None:
                self._flush(conn)          # keep the order of what is already queued
                self._send(conn, reply)
            return True
        self._deliver(conn, sock, rec)
        return True

    def _deliver(self, conn: Connection, sock, rec: bytes) -> None:
        """A netlink datagram to the kernel (sendmsg); its answers go out at the end of the
        round (_after_kernel_work)."""
        try:
            self.kernel.deliver(sock, rec)
        except Exception as e:
            self._deliver_failed(conn, sock, rec, e)

    def _deliver_failed(self, conn: Connection, sock, rec: bytes, e: Exception) -> None:
        # a bug outside the handlers (which netlink_rcv_skb guards) must not take the
        # server down; the kernel would have answered, so answer EINVAL rather than hang
        self.kernel.stats.internal_error(e, f"a datagram from pid {conn.pid}")
        self._internal_error(sock, rec)

    def _hello(self, conn: Connection, rec: bytes) -> bool:
        if not T.is_frame(rec):
            self._close(conn)
            return False
        version, kind, payload = T.parse_frame(rec)
        if version != T.PROTOCOL_VERSION or kind != T.F_HELLO:
            log.warning("connection from pid %d: bad hello (version %d kind %d)", conn.pid, version, kind)
            self._close(conn)
            return False
        conn.greeted = True
        h = conn.hello
        if h is not None and h[0] == payload:
            _, protocol, sock_type, conn.netns, ino = h
            return self._hello_netlink(conn, protocol, sock_type, ino)
        protocol, sock_type, conn.netns = T.parse_hello(payload)
        if protocol == T.SERVICE_PROTOCOL:
            conn.kind = SERVICE
            return True
        if protocol == T.FILE_WRITE_PROTOCOL:
            conn.kind = FILE_WRITE
            conn.path = T.hello_extra(payload)
            return True
        if protocol == T.INET_PROTOCOL:
            return self._hello_inet(conn, payload)
        ino = T.hello_ino(payload)
        conn.hello = (payload, protocol, sock_type, conn.netns, ino)
        return self._hello_netlink(conn, protocol, sock_type, ino)

    def _hello_netlink(self, conn: Connection, protocol: int, sock_type: int, ino: int) -> bool:
        conn.kind = NETLINK
        try:
            # a HELLO never makes a namespace: only `xfrmd ctl netns add` or the topology
            # does (docs/security.md); an unknown one is ENOENT on the first BIND
            conn.sock = self.kernel.socket(protocol, conn.netns, pid=conn.pid, uid=conn.uid,
                                           sock_type=sock_type, cred=conn.cred, create=False)
        except KernelError as e:
            conn.open_error = e.errno
            if e.errno == E.ENOENT:
                log.info("pid %d asked for network namespace %r, which does not exist "
                         "(create it with `xfrmd ctl netns add`)", conn.pid, conn.netns)
            return True
        conn.sock.client_ino = ino
        conn.reads_reset()
        if conn.probe is None:
            conn.probe = lambda: self._unread(conn)
        conn.sock.outq_probe = conn.probe
        self.conns[conn.sock] = conn
        return True

    def _hello_inet(self, conn: Connection, payload: bytes) -> bool:
        """An emulated UDP socket (docs/protocol.md, "INET connection"). An unknown namespace
        or an unsupported family/protocol closes the connection (the shim then keeps the
        program's real socket, as it does when the first BIND fails)."""
        family, ipproto = T.hello_inet(payload)
        (stype,) = struct.unpack_from("=I", payload, 4)     # SOCK_DGRAM, or SOCK_RAW (ICMP)
        try:
            ns = self.kernel.netns(conn.netns, create=False)
        except KernelError:
            ns = None
        ping = {inet_udp.AF_INET: inet_udp.IPPROTO_ICMP,
                inet_udp.AF_INET6: inet_udp.IPPROTO_ICMPV6}.get(family)
        if ns is None or ping is None or ipproto not in (0, inet_udp.IPPROTO_UDP, ping) \
                or stype not in (inet_raw.SOCK_DGRAM, inet_raw.SOCK_RAW) \
                or (stype == inet_raw.SOCK_RAW and ipproto != ping):
            log.info("pid %d: INET connection refused (netns %r, family %d, protocol %d)",
                     conn.pid, conn.netns, family, ipproto)
            self._close(conn)
            return False
        conn.kind = INET
        conn.inet = inet_udp.UdpSock(ns, family, lambda rec: self._push(conn, rec),
                                     ipproto or inet_udp.IPPROTO_UDP, stype)
        return True

    def _inet(self, conn: Connection, rec: bytes) -> None:
        if conn.inet is None:
            return
        reply = inet_udp.handle(conn.inet, rec)
        if reply is not None:
            self._send(conn, reply)

    def _push(self, conn: Connection, rec: bytes) -> bool:
        """A datagram for an emulated UDP socket: queued on its connection, or dropped when
        the program's end is full (the socket's receive buffer, ``__udp_enqueue_schedule_skb``
        drops then too)."""
        if conn.fd not in self.by_fd:
            return False
        if conn.pending:
            return False
        try:
            conn.s.send(rec, pysocket.MSG_DONTWAIT)
        except OSError:
            return False
        return True

    # -- service queries and virtual files ---------------------------------------------

    def _query(self, conn: Connection, rec: bytes) -> None:
        if not T.is_frame(rec):
            return
        _, kind, payload = T.parse_frame(rec)
        if kind != T.F_QUERY:
            return
        parsed = self._parsed
        request = parsed.get(payload)
        if request is None:
            try:
                request = json.loads(payload.decode())
                if not isinstance(request, dict):
                    raise ValueError("a query is a JSON object")
            except ValueError as e:    # UnicodeDecodeError included
                self._send(conn, T.answer({"errno": E.EINVAL, "error": f"xfrmd: malformed query: {e}"}))
                return
            if len(payload) <= QUERY_CACHE_BYTES:
                if len(parsed) >= QUERY_CACHE_MAX:
                    parsed.clear()
                parsed[payload] = request
        # a copy: what a handler does with its request never reaches the next identical query
        request = dict(request)
        try:
            if request.get("op") == "nlsock_state":
                self._read_socket_of(request.get("ino"))
                self._adopted_by(conn, request.get("ino"))
            result = services.handle(self.kernel, conn.netns, request, uid=conn.uid, pid=conn.pid,
                                     cred=conn.cred)
        except Exception as e:  # never let a bad query kill the server: one line, counted
            self.kernel.stats.internal_error(e, f"service op {str(request.get('op'))[:40]!r}")
            result = {"errno": E.EINVAL, "error": f"xfrmd: {type(e).__name__}: {e}"}
        self._send(conn, T.answer(result))

    def _read_socket_of(self, ino) -> None:
        """A program after exec asks what its inherited netlink fd is: what the old image
        sent on it (a SETSOCKOPT, say) is in that connection's buffer, on another connection
        than this question, so read it first, as Linux applied it before exec returned."""
        for c in list(self.conns.values()):
            if c.sock is not None and c.sock.client_ino == ino and c.fd in self.by_fd:
                self._event(c, select.EPOLLIN, drain=True)
                return
        # a socket passed by SCM_RIGHTS right after socket(): its HELLO may be unread yet
        for c in [c for c in self.by_fd.values() if c.kind is None]:
            if c.fd in self.by_fd:
                self._event(c, select.EPOLLIN, drain=True)

    def _adopted_by(self, asker: Connection, ino) -> None:
        """A process took over a netlink socket another one opened (SCM_RIGHTS): while it is
        unbound, its binding is that process's (``netlink_autobind`` takes the pid of the
        process that binds, not of the one that opened the socket)."""
        for c in self.conns.values():
            if c.sock is not None and ino and c.sock.client_ino == ino:
                if not c.sock.bound and c.pid != asker.pid:
                    c.pid = c.sock.pid = asker.pid
                return

    def _file_written(self, conn: Connection) -> None:
        """A virtual file opened for writing: when the program's last reference closes
        (EOF), the whole text is written (service op ``write_file``)."""
        data = b"".join(conn.chunks).decode("utf-8", "replace")
        try:
            res = services.handle(self.kernel, conn.netns, {"op": "write_file", "path": conn.path,
                                                            "data": data}, uid=conn.uid, pid=conn.pid,
                                  cred=conn.cred)
            if res.get("errno"):
                log.info("write to %s failed: %s", conn.path, res)
        except Exception:
            log.exception("write to %s failed", conn.path)

    # -- sending -----------------------------------------------------------------------

    def _send(self, conn: Connection, data: bytes) -> None:
        self._sends += 1
        if conn.pending:
            self._hold(conn, data, 0)
            return
        try:
            conn.s.send(data, pysocket.MSG_DONTWAIT)
        except BlockingIOError:
            self._hold(conn, data, 0)
            self._want_out(conn, True)
        except OSError:
            pass                        # the peer went away; the read side will notice

    def _hold(self, conn: Connection, data: bytes, truesize: int) -> None:
        if not truesize:
            # an answer to a frame (a service query, SYNC, BIND) is not charged to a
            # receive buffer; the shim waits for each, so only a peer that asks without
            # ever reading piles them up: it loses its connection instead
            conn.pending_frames += 1
            if conn.pending_frames > FRAMES_UNREAD_MAX:
                log.warning("closing a connection from pid %d: %d answers unread", conn.pid,
                            conn.pending_frames)
                self._close(conn)
                return
        conn.pending.append((data, truesize))
        conn.pending_ts += truesize

    def _unread(self, conn: Connection) -> int:
        """What the emulated socket's reader has not read (docs/protocol.md, "Flow
        control"): the records in the client's receive queue, and those still waiting here.
        The first part is the smaller of two upper bounds: the host kernel's count of what
        our end sent and the peer has not freed (SIOCOUTQ), and what was sent since the
        shim's last READ report. SIOCOUTQ alone lags: skbs the peer has already read are
        still counted for milliseconds (on 6.18 up to 31 of them were seen), so a program
        that read everything and then asks got its answer dropped as if it had not."""
        try:
            buf = fcntl.ioctl(conn.fd, SIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return conn.pending_ts
        outq = struct.unpack("=i", buf)[0]
        if conn.sent_ts is not None and conn.sent_unread < outq:
            outq = conn.sent_unread
        return outq + conn.pending_ts

    def _flush(self, conn: Connection) -> None:
        """Send what is pending, then what the emulated socket has queued, until the peer's
        buffer is full. Every datagram taken from the socket stays charged to it (``outq``)
        until the client has read it: the socket's receive buffer bounds what waits here."""
        s = conn.s
        pending = conn.pending
        sock = conn.sock
        if pending and sock is not None and sock.rx and sock.rx_truesize[0] == 0:
            # an sk_err frame (the only record charged nothing) is reported before what is
            # queued: it goes ahead of what still waits here too
            pending.appendleft(sock.pop_skb())
            conn.pending_frames += 1
        try:
            while pending:
                s.send(pending[0][0], pysocket.MSG_DONTWAIT)
                ts = pending.popleft()[1]
                conn.pending_ts -= ts
                if ts:
                    conn.sent(ts)
                else:
                    conn.pending_frames -= 1
            if sock is not None:
                pop = sock.pop_skb
                while True:
                    r = pop()
                    if r is None:
                        break
                    sock.outq += r[1]
                    try:
                        s.send(r[0], pysocket.MSG_DONTWAIT)
                    except BlockingIOError:
                        self._hold(conn, r[0], r[1])
                        raise
                    if r[1]:
                        conn.sent(r[1])
        except BlockingIOError:
            self._want_out(conn, True)
            return
        except OSError:
            return                      # the peer went away; the read side will notice
        if conn.out:
            self._want_out(conn, False)

    def _want_out(self, conn: Connection, on: bool) -> None:
        if conn.out != on and conn.fd in self.by_fd:
            conn.out = on
            self.ep.modify(conn.fd, select.EPOLLIN | (select.EPOLLOUT if on else 0))

    # -- kernel glue -------------------------------------------------------------------

    def _internal_error(self, sock, rec: bytes) -> None:
        for hdr in kernel_messages(rec):
            self.kernel.unicast(sock, encode_ack(rec, hdr, -E.EINVAL, sock.portid, cap_ack=sock.cap_ack,
                                                 ext_ack=sock.ext_ack, ext=ExtAck(INTERNAL_ERROR)))
            break

    def _control(self, sock, rec: bytes, conn: Connection) -> bytes | None:
        kind = _U16.unpack_from(rec, 6)[0]
        payload = rec[8:]
        k = self.kernel
        if kind == T.F_SETSOCKOPT:
            level, optname, value = struct.unpack_from("=IIi", payload)
            try:
                k.setsockopt(sock, level, optname, value)
            except KernelError:
                pass  # the shim checked what it could; the kernel would have said EINVAL
            return None
        if kind == T.F_BIND_AUTO:
            return self._bind_auto(sock, conn, *struct.unpack_from("=II", payload))
        if kind == T.F_NETNS_FD:
            # `ip link set DEV netns NAME` opened /var/run/netns/NAME: the shim says which
            # emulated namespace that fd stands for, ahead of the request that carries it
            fd = struct.unpack_from("=I", payload)[0]
            name = payload[4:].split(b"\0", 1)[0].decode("utf-8", "replace")
            if sock.netns_fds is None:
                sock.netns_fds = {}
            elif len(sock.netns_fds) >= NETNS_FDS_MAX and fd not in sock.netns_fds:
                del sock.netns_fds[next(iter(sock.netns_fds))]   # the oldest: bounded
            sock.netns_fds[fd] = name
            return None
        if kind == T.F_RELEASE:
            # close() of the emulated socket (netlink_release); the shim keeps the connection
            # for its next socket(), whose HELLO follows
            self._release(conn)
            return None
        if kind == T.F_SYNC:
            # what the earlier records produced is queued already (deliver is synchronous);
            # the caller flushes it before this reply
            return T.frame(T.F_SYNC_REPLY, payload[:4])
        if kind in (T.F_BIND, T.F_AUTOBIND):
            was_bound = sock.bound
            try:
                if kind == T.F_BIND:
                    portid, groups = struct.unpack_from("=II", payload)
                    k.bind(sock, portid, groups)
                else:
                    # the process's id may still be held by its previous socket, whose
                    # close is unread on another connection: read that first (_bind_auto)
                    self._drain_holder(sock, conn, sock.pid & 0xFFFFFFFF)
                    k.autobind(sock)
                err = 0
            except KernelError as e:
                err = -e.errno
            if was_bound and kind == T.F_BIND and err == 0:
                return None  # later binds only update groups; the shim does not wait
            return T.bind_reply(err, sock.portid, sock.groups,
                                0 if err or was_bound else _pid_free(sock))
        if kind == T.F_READ:
            # the shim's count of datagrams read, sent ahead of its next request: what the
            # request's answers are admitted against (netlink_rcv_wake ran on those reads)
            conn.read(struct.unpack_from("=I", payload)[0])
            return None
        if kind == T.F_RECVD:
            (buflen,) = struct.unpack_from("=I", payload)
            k.recvd(sock, buflen)
            return None
        log.warning("unknown control frame kind %d", kind)
        return None

    def _release(self, conn: Connection) -> None:
        if conn.sock is not None:
            self.conns.pop(conn.sock, None)
            self.kernel.close(conn.sock)
            conn.sock = None
        conn.kind = None
        conn.open_error = 0
        conn.pending.clear()
        conn.pending_ts = 0
        conn.pending_frames = 0
        conn.reads_reset()

    def _drain_holder(self, sock, conn: Connection, portid: int) -> None:
        """Read the connection of the socket of the same process that holds ``portid``."""
        holder = sock.netns.ports.get(sock.protocol, {}).get(portid)
        if holder is not None:
            hc = self.conns.get(holder)
            if hc is not None and hc.pid == conn.pid and hc is not conn:
                self._event(hc, select.EPOLLIN, drain=True)

    def _bind_auto(self, sock, conn: Connection, portid: int, groups: int) -> bytes | None:
        """The shim predicted that ``netlink_autobind`` gives this socket its process id
        (the process has no other socket holding it) and did not wait. The id may still be
        held by the process's previous socket whose close this loop has not read yet (another
        connection, so no order between the two): read that connection first. Only if the id
        is really taken does the socket get what autobind gives, and the shim is told."""
        k = self.kernel
        if sock.bound:
            return None
        self._drain_holder(sock, conn, portid)
        if portid == conn.pid & 0xFFFFFFFF:
            try:
                k.bind(sock, portid, groups)
                return None
            except KernelError:
                pass
        k.autobind(sock)
        try:
            k.bind(sock, 0, groups)
        except KernelError as e:       # a group the peer may not join (the shim checks first)
            return T.bind_reply(-e.errno, sock.portid, sock.groups)
        return T.bind_reply(0, sock.portid, sock.groups)

    def _after_kernel_work(self) -> None:
        """Send what the kernel queued on any socket."""
        k = self.kernel
        if k.dirty:
            dirty = list(k.dirty)
            k.dirty.clear()
            for s in dirty:
                c = self.conns.get(s)
                if c is not None and not c.out:
                    self._flush(c)

async def serve(kernel: Kernel, path: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    server = Server(kernel, path)
    await server.serve(task_status=task_status)
