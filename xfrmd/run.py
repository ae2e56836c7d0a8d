"""``xfrmd run [--topology NAME|FILE] [--netns NAME] [--trace FILE] -- CMD ARGS…``

A private server (in this process, on a temporary socket) for CMD and all its children, with
the preload shim in LD_PRELOAD and XFRMD_SOCKET / XFRMD_NETNS exported. The exit status is
CMD's (128+N when a signal N killed it); the server stops and the socket goes away whatever
happens to CMD."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="run a command against a private xfrmd server")
    p.add_argument("--topology", default=None, help="built-in name or TOML file (default: default)")
    p.add_argument("--netns", default=None, help="emulated namespace the command sees")
    p.add_argument("--trace", default=None, help="record the netlink conversation (JSON lines)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS…")
    p.set_defaults(fn=cmd_run)


def cmd_run(args) -> int:
    from . import shim
    from .embedded import make_kernel, running_server, tune_gc
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print("usage: xfrmd run [--topology T] [--netns N] -- CMD ARGS…", file=sys.stderr)
        return 2
    try:
        preload = shim.path()
    except shim.ShimError as e:
        print(e, file=sys.stderr)
        return 1
    kernel = make_kernel(args.topology or "default")
    tune_gc()
    if args.trace:
        from .trace import TraceWriter
        kernel.tracers.append(TraceWriter.open(args.trace, kernel))
    with running_server(kernel) as srv:
        env = dict(os.environ)
        env["XFRMD_SOCKET"] = srv.path
        env["XFRMD_NETNS"] = args.netns or env.get("XFRMD_NETNS") or "default"
        env["LD_PRELOAD"] = (preload + " " + env["LD_PRELOAD"]) if env.get("LD_PRELOAD") else preload
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as e:
            print(f"xfrmd run: {command[0]}: {e.strerror}", file=sys.stderr)
            return 127 if isinstance(e, FileNotFoundError) else 126

        def forward(signum, frame):
            if child.poll() is None:
                child.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            rc = child.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    return 128 - rc if rc < 0 else rc
