"""``xfrmd run [--topology NAME|FILE | --socket PATH] [--netns NAME] [--trace FILE]
[--pcap FILE] [--userland NAME|DIR] -- CMD ARGS…`` and ``xfrmd env [--socket PATH]
[--netns NAME]``.

``run`` starts a private server (in this process, on a temporary socket) for CMD and all its
children — or, with ``--socket``, attaches CMD to a server already running there — with the
preload shim in LD_PRELOAD and XFRMD_SOCKET / XFRMD_NETNS exported. The exit status is CMD's
(128+N when a signal N killed it); a private server stops and its socket goes away whatever
happens to CMD. ``env`` prints the same variables as shell exports: ``eval "$(xfrmd env)"``
points every later ``ip``, ``ethtool`` or daemon of that shell at a running ``xfrmd serve``.
With ``--userland`` CMD runs inside that root filesystem (xfrmd.userland, docs/userland.md)."""
from __future__ import annotations

import _socket
import argparse
import contextlib
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType

# Start-up time (`xfrmd run -- true` ≤ 0.1 s, docs/performance.md): this module loads only
# what `run` needs before CMD starts. The rest loads when it is used: the compiler driver
# when the shim must be built, the userland module with --userland, the transport's framing
# (dataclasses, typing: ≈ 20 ms) for `env`, and logging, trio and the kernel model (≈ 0.15 s)
# when the private server loads — once CMD connects, or after LOAD_AFTER (below); `typing`
# only for the type checker. The sockets here are _socket's, the C module under `socket`,
# whose enums cost ≈ 2.5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a command against a private xfrmd server (or a running "
                                   "one: --socket)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--topology", default=None,
                       help="built-in name or TOML file of the private server (default: default)")
    where.add_argument("--socket", default=None, metavar="PATH",
                       help="attach CMD to the server listening on PATH instead of starting one")
    p.add_argument("--netns", default=None,
                   help="emulated namespace the command sees (default: $XFRMD_NETNS, else default)")
    p.add_argument("--trace", default=None, metavar="FILE",
                   help="record the private server's netlink conversation (JSON lines)")
    p.add_argument("--pcap", default=None, metavar="FILE",
                   help="write the private server's netlink pcap (LINKTYPE_NETLINK), as serve does")
    p.add_argument("--userland", default=None, metavar="NAME|DIR",
                   help="run CMD inside a userland (`xfrmd userland list`) or a root "
                        "filesystem directory")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS…")
    p.set_defaults(fn=cmd_run)

    e = sub.add_parser("env", help="print the shell exports that point programs at a running "
                                   "server: eval \"$(xfrmd env)\"")
    e.add_argument("--socket", default=None, metavar="PATH",
                   help="the server's socket (default: $XFRMD_SOCKET, else "
                        "$XDG_RUNTIME_DIR/xfrmd.sock, …)")
    e.add_argument("--netns", default=None,
                   help="emulated namespace (default: $XFRMD_NETNS, else default)")
    e.set_defaults(fn=cmd_env)


def _server_listens(path: str) -> bool:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def cmd_env(args: argparse.Namespace) -> int:
    from . import shim                      # start-up time (top of the file)
    from . import transport as T
    path = os.path.abspath(args.socket or T.default_socket_path())
    try:
        preload = shim.path()
    except shim.ShimError as e:
        print(e, file=sys.stderr)
        return 1
    netns = args.netns or os.environ.get("XFRMD_NETNS") or "default"
    print(f"export XFRMD_SOCKET={shlex.quote(path)}")
    print(f"export XFRMD_NETNS={shlex.quote(netns)}")
    # prepended at eval time, so the shell's own LD_PRELOAD (if any) is kept
    print(f'export LD_PRELOAD={shlex.quote(preload)}"${{LD_PRELOAD:+ $LD_PRELOAD}}"')
    if not _server_listens(path):
        print(f"xfrmd env: no server listens on {path} yet (start one: xfrmd serve"
              f"{' --socket ' + shlex.quote(path) if args.socket else ''})", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import shim                      # start-up time (top of the file)
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print("usage: xfrmd run [--topology T | --socket PATH] [--netns N] -- CMD ARGS…",
              file=sys.stderr)
        return 2
    if args.socket and (args.trace or args.pcap):
        print("xfrmd run: --trace and --pcap record a private server; with --socket, start "
              "the server with `xfrmd serve --trace/--pcap` instead", file=sys.stderr)
        return 2
    try:
        preload = shim.path()
    except shim.ShimError as e:
        print(e, file=sys.stderr)
        return 1
    root = None
    if args.userland:
        from .userland import UserlandError, resolve      # start-up time (top of the file)
        try:
            root = resolve(args.userland)
        except UserlandError as e:
            print(e, file=sys.stderr)
            return 1
    with _server(args) as path, _userland_stage(root) as stage:
        if path is None:
            return 1
        if root:
            from .userland import entry_argv
            command = entry_argv(root, stage, command, shim=preload,
                                 binds=(os.path.dirname(path),))
        env = dict(os.environ)
        env["XFRMD_SOCKET"] = path
        env["XFRMD_NETNS"] = args.netns or env.get("XFRMD_NETNS") or "default"
        env["LD_PRELOAD"] = (preload + " " + env["LD_PRELOAD"]) if env.get("LD_PRELOAD") else preload
        # `ip netns exec NAME` of a namespace only the host has would leave netlink in the
        # emulated one: refused with ENOENT unless the caller chose otherwise
        # (docs/protocol.md "Host namespaces")
        env.setdefault("XFRMD_HOST_NETNS", "refuse")
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as e:
            print(f"xfrmd run: {command[0]}: {e.strerror}", file=sys.stderr)
            return 127 if isinstance(e, FileNotFoundError) else 126

        def forward(signum: int, frame: FrameType | None) -> None:
            if child.poll() is None:
                child.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            rc = child.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    return 128 - rc if rc < 0 else rc


@contextlib.contextmanager
def _userland_stage(root: str | None) -> Iterator[str | None]:
    """An empty directory for the entry's overlay (xfrmd.userland.enter) when CMD runs in a
    userland, removed afterwards (the mounts in it live in CMD's own mount namespace and go
    with it)."""
    if not root:
        yield None
        return
    stage = _mkdtemp("xfrmd-userland-")
    try:
        yield stage
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(stage)


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[str | None]:
    """The socket path CMD talks to: the running server's (--socket; None and a message
    when nothing listens there), else a private server's for the duration of the block."""
    if args.socket:
        path = os.path.abspath(args.socket)
        if not _server_listens(path):
            print(f"xfrmd run: no server listens on {path} (start one: xfrmd serve --socket "
                  f"{shlex.quote(path)})", file=sys.stderr)
            yield None
            return
        yield path
        return
    name = args.topology or "default"
    if not (args.trace or args.pcap) and (name == "bare" or (name == "default"
                                                            and not os.path.exists(name))):
        with _early_server(name, args.netns) as path:
            yield path
        return
    # start-up time (top of the file): the private server and its trace writers load only
    # when one starts, not for `xfrmd env`, `run --socket` or `--help`
    _configure_logging()
    from .embedded import make_kernel, running_server, tune_gc
    from .pcap import PcapWriter
    from .trace import TraceWriter
    try:
        kernel = make_kernel(args.topology or "default")
    except ValueError as e:
        # a missing topology or a refused line of one: that line, as `xfrmd serve` prints it
        print(f"xfrmd run: {e}", file=sys.stderr)
        yield None
        return
    tune_gc()
    if args.trace:
        kernel.tracers.append(TraceWriter.open(args.trace, kernel))
    if args.pcap:
        kernel.tracers.append(PcapWriter.open(args.pcap, kernel))
    netns = args.netns or os.environ.get("XFRMD_NETNS") or "default"
    if netns not in kernel.namespaces:
        # the owner makes it, as `xfrmd ctl netns add` would: a HELLO cannot
        kernel.add_netns(netns)
    try:
        with running_server(kernel) as srv:
            yield srv.path
    finally:
        for tracer in kernel.tracers:
            if tracer.out not in (sys.stdout, sys.stderr):      # --trace - writes to stderr
                tracer.out.close()


# How long the private server waits for CMD's first connect before it loads the kernel model
# anyway: a CMD that exits sooner without talking to the kernel (`xfrmd run -- true`) never
# pays for the model, and one that starts slowly (charon, a Python script) still finds it
# loaded, or loading, when it connects.
LOAD_AFTER = 0.05


@contextlib.contextmanager
def _early_server(topology: str, netns: str | None) -> Iterator[str]:
    """A private server whose socket listens before CMD starts and whose kernel model
    (≈ 0.15 s of imports and set-up) loads in a thread when CMD first connects, or after
    LOAD_AFTER, while CMD runs: a connect waits in the listen backlog and its first request
    is answered once the model is there. Only for the built-in topologies, which cannot
    fail to load (a topology file's error is reported before CMD runs, on the other path)."""
    tmpdir = _mkdtemp("xfrmd-")
    path = os.path.join(tmpdir, "xfrmd.sock")
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o600)       # as Server._restrict_path, in a directory only we can use
    listener.listen(256)
    ready, stop = threading.Event(), threading.Event()

    def load_and_serve() -> None:
        sock = None
        try:
            # readable: a connect is in the backlog (not accepted here: the server does)
            select.select([listener], [], [], LOAD_AFTER)
            if stop.is_set():
                return
            _configure_logging()
            # start-up time: trio and the kernel model (≈ 0.15 s) load once CMD connects
            from .embedded import make_kernel, running_server, tune_gc
            kernel = make_kernel(topology)
            tune_gc()
            name = netns or os.environ.get("XFRMD_NETNS") or "default"
            if name not in kernel.namespaces:
                kernel.add_netns(name)
            if stop.is_set():
                return
            # start-up time: socket.py's enums (≈ 2.5 ms) only once the server loads
            import socket                           # the server accepts on a socket.socket
            sock = socket.socket(fileno=listener.detach())
            with running_server(kernel, path, listener=sock):
                ready.set()
                stop.wait()
        except BaseException as e:  # noqa: BLE001 - CMD's connects are refused from here on
            if not stop.is_set():
                print(f"xfrmd run: the private server failed: {e!r}", file=sys.stderr)
            listener.close()
            if sock is not None:
                sock.close()

    loader = threading.Thread(target=load_and_serve, name="xfrmd-load", daemon=True)
    loader.start()
    try:
        yield path
    finally:
        stop.set()
        if ready.is_set():
            loader.join(10)     # the server stops and unlinks its socket
        else:
            listener.close()    # waiting or loading: nothing to stop, the thread ends with us
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(tmpdir)


def _configure_logging() -> None:
    from .cli import configure_logging      # start-up time: logging loads with the server
    configure_logging()


def _mkdtemp(prefix: str) -> str:
    """``tempfile.mkdtemp(prefix=prefix)`` in $TMPDIR or /tmp — a new 0700 directory with
    a random name — without loading tempfile (start-up time: random, hashlib, shutil)."""
    base = os.path.abspath(os.environ.get("TMPDIR") or "/tmp")
    for _ in range(100):
        path = os.path.join(base, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
        except OSError:
            break
    # start-up time: tempfile only when $TMPDIR is unusable
    import tempfile         # an unusable $TMPDIR: tempfile's search of the usual places
    return tempfile.mkdtemp(prefix=prefix)
