"""Run an ``ip -batch``-style script line by line against a kernel (xfrmd or Linux).

Unlike ip 6.1 (whose xfrm commands exit the whole batch on a kernel error, even with
``-force``), every line runs and gets its own result; ``stop_on_error`` ends at the first
failing line instead."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from netlink_codec.netlink import NETLINK_ROUTE, NETLINK_XFRM

from ..client import Service
from .args import AF_INET, AF_INET6, AF_UNSPEC, IpExit, matches
from .iplink import do_ipaddr, do_iplink
from .ipxfrm import Ctx
from .rtnl import KernelSocket, Talker, XfrmdSocket
from .xfrm_policy import do_xfrm_policy
from .xfrm_state import do_xfrm_state


@dataclass
class LineResult:
    lineno: int
    command: str
    status: int
    output: list = field(default_factory=list)   # [("out"|"err", text), …] in order
    sent: list = field(default_factory=list)     # request datagrams (bytes)

    @property
    def stdout(self) -> str:
        return "".join(t for s, t in self.output if s == "out")

    @property
    def stderr(self) -> str:
        return "".join(t for s, t in self.output if s == "err")


class ScriptError(Exception):
    """A script ip would not read (an unterminated quote, a missing continuation line);
    ``lineno`` is where, ``reason`` what."""

    def __init__(self, reason: str, lineno: int = 0):
        super().__init__(f"line {lineno}: {reason}" if lineno else reason)
        self.reason, self.lineno = reason, lineno


def read_script(text: str) -> list[tuple[int, list[str], str]]:
    """getcmdline + makeargs: '#' starts a comment, a trailing backslash continues a line,
    quotes group words. Returns (line number, words, source text) for non-blank lines."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i].split("#", 1)[0]
        i += 1
        while line.endswith("\\") and i <= len(lines):
            if i == len(lines):
                raise ScriptError("Missing continuation line", start)
            line = line[:-1] + lines[i].split("#", 1)[0]
            i += 1
        words = makeargs(line, start)
        if words:
            out.append((start, words, " ".join(words)))
    return out


def makeargs(line: str, lineno: int) -> list[str]:
    ws = " \t\r\n"
    words, j, n = [], 0, len(line)
    while j < n:
        while j < n and line[j] in ws:
            j += 1
        if j >= n:
            break
        if line[j] in "'\"":
            q = line[j]
            k = line.find(q, j + 1)
            if k < 0:
                raise ScriptError("Unterminated quoted string", lineno)
            words.append(line[j + 1:k])
            j = k + 1
        else:
            k = j
            while k < n and line[k] not in ws:
                k += 1
            words.append(line[j:k])
            j = k + 1
    return words


class Backend:
    """Where requests go: an xfrmd server (``path``, ``netns``) or the Linux kernel."""

    def __init__(self, *, path: str | None = None, netns: str = "", kernel: bool = False):
        self.path, self.netns, self.kernel = path, netns, kernel
        self._svc = None

    def open(self, protocol: int):
        if self.kernel:
            return KernelSocket(protocol)
        return XfrmdSocket(protocol, self.path, self.netns)

    def name_to_index(self, name: str) -> int:
        if self.kernel:
            try:
                return socket.if_nametoindex(name)
            except OSError:
                return 0
        res = self._service().query("if_nametoindex", name=name)
        return int(res.get("index", 0)) if not res.get("errno") else 0

    def index_to_name(self, index: int) -> str | None:
        if self.kernel:
            try:
                return socket.if_indextoname(index)
            except OSError:
                return None
        res = self._service().query("if_indextoname", index=index)
        return None if res.get("errno") else res.get("name")

    def _service(self) -> Service:
        if self._svc is None:
            self._svc = Service(self.netns, path=self.path)
        return self._svc

    def close(self) -> None:
        if self._svc is not None:
            self._svc.close()


OPTIONS = {"-4": ("family", AF_INET), "-6": ("family", AF_INET6),
           "-s": ("stats", 1), "-stats": ("stats", 1), "-statistics": ("stats", 1),
           "-o": ("oneline", True), "-oneline": ("oneline", True)}


def run_line(backend: Backend, words: list[str], lineno: int = 0,
             base_opts: dict | None = None) -> LineResult:
    """Run one command: optional leading ``ip`` and options, then OBJECT ARGS…"""
    opts = {"family": AF_UNSPEC, "stats": 0, "oneline": False, **(base_opts or {})}
    res = LineResult(lineno, " ".join(words), 0)
    w = list(words)
    if w and w[0] == "ip":
        w = w[1:]
    while w and w[0].startswith("-") and w[0] != "-":
        key = w.pop(0)
        if key in OPTIONS:
            name, val = OPTIONS[key]
            opts[name] = opts[name] + 1 if name == "stats" else val
        else:
            res.output.append(("err", f'Option "{key}" is unknown, try "ip -help".\n'))
            res.status = 255
            return res
    ctx = Ctx(preferred_family=opts["family"], show_stats=opts["stats"],
              oneline=opts["oneline"], name_to_index=backend.name_to_index,
              index_to_name=backend.index_to_name, iproute2=opts.get("iproute2", "6.1"))
    talker = None
    try:
        if not w:
            raise IpExit("Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n", -1)
        obj, rest = w[0], w[1:]
        if matches(obj, "xfrm"):
            if not rest:
                raise IpExit("Usage: ip xfrm XFRM-OBJECT { COMMAND | help }\n"
                             "where  XFRM-OBJECT := state | policy | monitor\n", -1)
            sub = rest[0]
            talker = Talker(backend.open(NETLINK_XFRM), ctx.err)
            if matches(sub, "state") or matches(sub, "sa"):
                res.status = do_xfrm_state(ctx, talker, rest[1:])
            elif matches(sub, "policy"):
                res.status = do_xfrm_policy(ctx, talker, rest[1:])
            elif matches(sub, "monitor"):
                raise IpExit("xfrmd replay: \"ip xfrm monitor\" runs forever; use "
                             "`xfrmd run -- ip xfrm monitor` instead\n", 1)
            else:
                raise IpExit(f'xfrm Object "{sub}" is unknown.\n', -1)
        elif matches(obj, "address") or matches(obj, "link"):
            talker = Talker(backend.open(NETLINK_ROUTE), ctx.err)
            res.status = (do_ipaddr if matches(obj, "address") else do_iplink)(
                ctx, talker, rest)
        else:
            raise IpExit(f'xfrmd replay: object "{obj}" is not supported by the replayer '
                         "(supported: xfrm state, xfrm policy, link, address)\n", 1)
    except IpExit as e:
        if e.stderr:
            ctx.err(e.stderr)
        res.status = e.status
    except OSError as e:
        # rtnl_open failing: perror("Cannot open netlink socket"), exit(1)
        ctx.err(f"Cannot open netlink socket: {os.strerror(e.errno or 0)}\n")
        res.status = 1
    finally:
        if talker is not None:
            res.sent = talker.sent
            talker.close()
    res.output = ctx.out
    return res


def run_script(backend: Backend, text: str, *, stop_on_error: bool = False,
               base_opts: dict | None = None):
    """Yield a LineResult per command line."""
    for lineno, words, _ in read_script(text):
        r = run_line(backend, words, lineno, base_opts)
        yield r
        if r.status and stop_on_error:
            return


# -- golden files ------------------------------------------------------------------------

def golden_text(results: list[LineResult]) -> str:
    """One block per command: '$ command', stdout lines, stderr lines prefixed '! ',
    and '? status' when it is not 0."""
    out = []
    for r in results:
        out.append(f"$ {r.command}\n")
        for stream, text in _lines(r.output):
            out.append(("! " if stream == "err" else "") + text)
        if r.status:
            out.append(f"? {r.status}\n")
    return "".join(out)


def _lines(output):
    """Split the interleaved output into whole lines, keeping the stream of each."""
    pending = {"out": "", "err": ""}
    order = []
    for stream, text in output:
        pending[stream] += text
        while "\n" in pending[stream]:
            line, pending[stream] = pending[stream].split("\n", 1)
            order.append((stream, line + "\n"))
    for stream in ("out", "err"):
        if pending[stream]:
            order.append((stream, pending[stream] + "\n"))
    return order


def compare_golden(results: list[LineResult], golden: str, script: str = "script",
                   golden_name: str = "golden") -> list[str]:
    """The first difference of each command, as messages (empty when identical), each
    starting with ``SCRIPT:LINE`` of the command and ending with ``GOLDEN:LINE`` of the
    expected line, so an editor jumps to both."""
    want = _golden_blocks(golden, numbered=True)
    got = _golden_blocks(golden_text(results))
    diffs = []
    for i in range(max(len(want), len(got))):
        w = want[i] if i < len(want) else None
        g = got[i] if i < len(got) else None
        if w is not None and g is not None and [ln for ln, _ in w] == g:
            continue
        where = f"{script}:{results[i].lineno}" if i < len(results) else f"{script}:end"
        if w is None or g is None:
            diffs.append(f"{where}: unexpected extra command {g[0][2:].rstrip()!r}" if w is None
                         else f"{where}: missing command {w[0][0][2:].rstrip()!r} "
                              f"({golden_name}:{w[0][1]})")
            continue
        for j in range(max(len(w), len(g))):
            wl, gline = w[j] if j < len(w) else ("<nothing>", w[-1][1] + 1)
            gl = g[j] if j < len(g) else "<nothing>"
            if wl != gl:
                diffs.append(f"{where}: {w[0][0][2:].rstrip()}: expected {wl.rstrip()!r}, "
                             f"got {gl.rstrip()!r} ({golden_name}:{gline})")
                break
    return diffs


def _golden_blocks(text: str, numbered: bool = False) -> list[list]:
    """The blocks of a golden text (one per ``$ command``): lists of lines, or of
    (line, line number) pairs when ``numbered``."""
    blocks: list[list] = []
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        item = (line, n) if numbered else line
        if line.startswith("$ "):
            blocks.append([item])
        elif blocks:
            blocks[-1].append(item)
    return blocks
