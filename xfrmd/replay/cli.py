"""``xfrmd replay SCRIPT|- [--socket PATH | --topology FILE] [--expect GOLDEN]
[--record GOLDEN] [--stop-on-error] [--json] [--kernel] [--iproute2 6.1|6.15]``."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import Backend

# Start-up time: the replayer (ip's parsers and the codec tables, the client with trio: about
# 0.1 s), the private server (the kernel model) and the host check load when `xfrmd replay`
# runs, not for every `xfrmd` command; so the functions below import them.


def add_replay_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="run an `ip xfrm` command script the way ip would")
    p.add_argument("script", help="script file, or - for standard input")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--socket", help="server socket (default: $XFRMD_SOCKET, else a private "
                                    "server)")
    g.add_argument("--topology", help="topology of the private server (default: default)")
    g.add_argument("--kernel", action="store_true",
                   help="send the requests to the running Linux kernel instead")
    p.add_argument("--netns", default=None, help="emulated namespace (default $XFRMD_NETNS)")
    p.add_argument("--expect", metavar="GOLDEN", help="compare with a golden file")
    p.add_argument("--record", metavar="GOLDEN", help="write the results as a golden file")
    p.add_argument("--stop-on-error", action="store_true", help="stop at the first failure")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--iproute2", choices=("6.1", "6.15"), default="6.1",
                   help="which ip to be: 6.1 (Debian 12, default; newer syntax accepted too) "
                        "or 6.15 (Debian 13: its syntax, messages and output)")
    p.set_defaults(fn=cmd_replay)


@contextlib.contextmanager
def _backend(args: argparse.Namespace) -> Iterator[Backend]:
    from .runner import Backend               # start-up time (top of the file)
    netns = args.netns if args.netns is not None else os.environ.get("XFRMD_NETNS", "")
    if args.kernel:
        b = Backend(kernel=True)
        yield b
        return
    # an explicit --socket beats $XFRMD_SOCKET (as in every subcommand); --topology asks
    # for a private server whatever the environment says
    path = None if args.topology else (args.socket or os.environ.get("XFRMD_SOCKET"))
    if path:
        b = Backend(path=path, netns=netns)
        try:
            yield b
        finally:
            b.close()
        return
    from ..embedded import make_kernel, running_server      # start-up time
    with running_server(make_kernel(args.topology or "default")) as handle:
        b = Backend(path=handle.path, netns=netns)
        try:
            yield b
        finally:
            b.close()


def cmd_replay(args: argparse.Namespace) -> int:
    from .runner import ScriptError, compare_golden, golden_text, run_script  # start-up time
    try:
        text = sys.stdin.read() if args.script == "-" else open(args.script).read()
    except OSError as e:
        print(f"xfrmd replay: {args.script}: {e.strerror}", file=sys.stderr)
        return 1
    if args.kernel:
        _kernel_check(args.script, text)
    results = []
    try:
        with _backend(args) as backend:
            for r in run_script(backend, text, stop_on_error=args.stop_on_error,
                                base_opts={"iproute2": args.iproute2}):
                results.append(r)
                if not args.json:
                    for stream, chunk in r.output:
                        (sys.stdout if stream == "out" else sys.stderr).write(chunk)
                        (sys.stdout if stream == "out" else sys.stderr).flush()
                    if r.status:
                        # what `ip -batch FILE` prints after a failed line (ip.c batch())
                        print(f"Command failed {args.script}:{r.lineno}", file=sys.stderr,
                              flush=True)
    except ScriptError as e:
        print(f"xfrmd replay: {args.script}:{e.lineno}: {e.reason}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"xfrmd replay: cannot reach the kernel: {e}", file=sys.stderr)
        return 1
    if args.json:
        json.dump([{"line": r.lineno, "command": r.command, "status": r.status,
                    "stdout": r.stdout, "stderr": r.stderr} for r in results],
                  sys.stdout, indent=2)
        print()
    if args.record:
        with open(args.record, "w") as f:
            f.write(golden_text(results))
    failed = any(r.status for r in results)
    if args.expect:
        diffs = compare_golden(results, open(args.expect).read(), args.script, args.expect)
        for d in diffs:
            print(f"xfrmd replay: {d}", file=sys.stderr)
        if diffs:
            return 1
        return 0
    return 1 if failed else 0


def _kernel_check(script: str, text: str) -> None:
    """What the running kernel lacks, and the script lines that will differ for it."""
    from .kernel_check import host_lacks, report      # start-up time (top of the file)
    from .runner import ScriptError, read_script
    try:
        lines = read_script(text)
    except ScriptError:
        return                          # reported when the script runs
    lacks, path = host_lacks()
    for line in report(script, lines, lacks, path):
        print(line, file=sys.stderr)
