"""``xfrmd serve | run | replay | ctl | trace`` (docs/README.md; each has ``--help``)."""
from __future__ import annotations

import argparse
import grp
import os
import signal
import sys
from collections.abc import Iterator


def cmd_serve(args: argparse.Namespace) -> int:
    # start-up time: trio, the kernel model and the server (about 0.15 s), the topology
    # parser and the trace writers load only for the command that runs them, so that
    # `xfrmd --help`, `xfrmd env` and the like answer at once
    import trio

    from . import transport as T
    from .clock import SystemClock
    from .embedded import tune_gc
    from .kernel import Kernel
    from .pcap import PcapWriter
    # start-up time: (as above) the server, topology parser and trace writers
    from .server import Server
    from .topology import load_topology
    from .trace import TraceWriter
    try:
        topo = load_topology(args.topology or "default")
    except ValueError as e:
        print(f"xfrmd: {e}", file=sys.stderr)
        return 2
    kernel = Kernel(SystemClock(), topology=topo)
    tune_gc()
    if args.trace:
        kernel.tracers.append(TraceWriter.open(args.trace, kernel))
    if args.pcap:
        kernel.tracers.append(PcapWriter.open(args.pcap, kernel))
    path = args.socket or T.default_socket_path()
    gid = None
    if args.group is not None:
        try:
            gid = int(args.group) if args.group.isdigit() else grp.getgrnam(args.group).gr_gid
        except KeyError:
            print(f"xfrmd: no group {args.group!r}", file=sys.stderr)
            return 2

    async def main() -> None:
        server = Server(kernel, path, max_clients=args.max_clients,
                        hello_timeout=args.hello_timeout)
        server.group = gid
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                if not args.quiet:
                    print(f"xfrmd: serving on {path}", file=sys.stderr, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    try:
        trio.run(main)
    except (SystemExit, BaseExceptionGroup) as e:
        refusal = _system_exit(e)
        if refusal is None:
            raise
        print(refusal, file=sys.stderr)
        return 1
    if not args.quiet:
        print("xfrmd: stopped", file=sys.stderr)
    return 0


def _system_exit(e: BaseException) -> SystemExit | None:
    """The server refuses to start (socket busy, …) with a SystemExit; trio ≥ 0.25 hands it
    out of the nursery wrapped in an ExceptionGroup. The refusal, or None for anything else."""
    if isinstance(e, SystemExit):
        return e
    if isinstance(e, BaseExceptionGroup):
        match, rest = e.split(SystemExit)
        if match is not None and rest is None:
            leaf = next(iter(_leaves(match)))
            return leaf if isinstance(leaf, SystemExit) else None
    return None


def _leaves(group: BaseExceptionGroup) -> Iterator[BaseException]:
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def cmd_ctl(args: argparse.Namespace) -> int:
    # start-up time: the verb tables import every subsystem's ctl module and the client
    # imports trio (together about 0.1 s), which the other commands do not need
    from . import transport as T
    from .service_client import ServerRefused, Service
    from .ctl import run_ctl, usage

    if not args.verb or args.verb[0] in ("help", "-h", "--help"):
        return run_ctl(None, [])                 # the list of verbs needs no server
    if any(a in ("-h", "--help") for a in args.verb[1:]):
        return usage(args.verb[0])
    try:
        with Service(args.netns or "", args.socket) as svc:
            return run_ctl(svc, args.verb)
    except ServerRefused as e:
        print(e.strerror, file=sys.stderr)
        return 1
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"xfrmd: no server on {args.socket or T.default_socket_path()}", file=sys.stderr)
        return 1


def cmd_trace(args: argparse.Namespace) -> int:
    from .trace import print_trace        # start-up time: the decoder loads the codec tables
    return print_trace(args.file, sys.stdout)


# the tool commands: name -> (module, its parser adder); `run` adds `env` as well
_TOOLS = {"run": ("run", "add_run_parser"), "env": ("run", "add_run_parser"),
          "replay": ("replay.cli", "add_replay_parser"),
          "userland": ("userland.cli", "add_userland_parser"),
          "lag-report": ("lagreport.cli", "add_lagreport_parser"),
          "suites": ("suites.cli", "add_suites_parser")}


def _add_tool_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
                      command: str | None) -> None:
    """The run/replay/userland/lag-report/suites command lines: only the one ``command``
    names, else (``xfrmd --help``, a misspelt command) all of them, in the order of _TOOLS.
    Start-up time: each imports its runner (the userland builder, the replay engine…), and
    `xfrmd run -- true` (goal ≤ 0.1 s, docs/performance.md) needs only its own; `xfrmd
    ctl`, which scripts call dozens of times, needs none of them."""
    # start-up time: only the named tool's parser module is imported
    import importlib
    wanted = [_TOOLS[command]] if command in _TOOLS else list(dict.fromkeys(_TOOLS.values()))
    for module, adder in wanted:
        getattr(importlib.import_module(f".{module}", __package__), adder)(sub)


def configure_logging() -> None:
    """The kernel model's and the server's warnings on stderr as ``xfrmd: …``. Called for
    every command but ctl, which logs nothing, and run/env, whose private server calls it
    when it loads (start-up time: logging's imports, ≈ 7 ms)."""
    # start-up time: logging (≈ 7 ms) loads only for the commands that log
    import logging
    logging.basicConfig(level=logging.WARNING, format="xfrmd: %(message)s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xfrmd", description="A fake Linux kernel for IPsec control planes.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--socket", help="listening socket path (default: $XFRMD_SOCKET, else "
                   "$XDG_RUNTIME_DIR/xfrmd.sock, else /tmp/xfrmd-UID/xfrmd.sock)")
    s.add_argument("--group", help="make the socket 0660 with this group (default: 0600, "
                   "the owner's alone); its members connect without CAP_NET_ADMIN")
    s.add_argument("--topology", help="built-in topology name or TOML file (default: default)")
    s.add_argument("--trace", metavar="FILE|-", help="record every netlink datagram")
    s.add_argument("--pcap", metavar="FILE", help="write a netlink pcap (LINKTYPE_NETLINK)")
    s.add_argument("--max-clients", type=int, metavar="N",
                   help="connections served at once; more are closed at once "
                        "(default: RLIMIT_NOFILE less 64)")
    s.add_argument("--hello-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="close a connection that sent nothing for this long (0: never; default 5)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_serve)

    first = next(iter(sys.argv[1:] if argv is None else argv), None)
    if first not in ("run", "env", "ctl"):
        configure_logging()
    if first != "ctl":
        _add_tool_parsers(sub, first)      # a ctl call neither shows nor parses them

    c = sub.add_parser("ctl", help="what a kernel needs root or hardware for (see `xfrmd ctl help`)")
    c.add_argument("--socket")
    c.add_argument("--netns")
    c.add_argument("verb", nargs=argparse.REMAINDER)
    c.set_defaults(fn=cmd_ctl)

    t = sub.add_parser("trace", help="decode a recorded trace like ip monitor")
    t.add_argument("file")
    t.set_defaults(fn=cmd_trace)

    args = p.parse_args(argv)
    try:
        status: int = args.fn(args)
    except KeyboardInterrupt:          # Ctrl-C before a command set up its own handling
        return 130
    except BrokenPipeError:            # `xfrmd ctl help | head`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    if argv is None and args.command in _LEAVE_AT_ONCE:
        _leave(status)
    return status


# Commands after which the process has nothing left to tidy: their sockets are closed, a
# private server has stopped and its socket is gone, their files are closed. Called as the
# program (argv None: the console script, `python -m xfrmd`), they leave with os._exit and
# skip the interpreter's finalization — tearing down every module and collecting the heap,
# ≈ 5 ms of the ≈ 60 ms of `xfrmd run -- true` and of a ctl call (docs/performance.md).
_LEAVE_AT_ONCE = ("run", "env", "ctl")


def _leave(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a reader that left, a stream closed
            pass
    os._exit(status & 0xff)


if __name__ == "__main__":
    sys.exit(main())
