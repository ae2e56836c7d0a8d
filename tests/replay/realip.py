"""Run the real `ip` 6.1 in a real network namespace and capture what it sends on its
NETLINK_XFRM socket (strace's full hex dump of sendmsg), its stdout, stderr and status."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid

_SOCKET = re.compile(r"^\d+\s+socket\(AF_NETLINK, [^,]+, (\w+)\) = (\d+)")
_SENDMSG = re.compile(r"^\d+\s+(?:sendmsg|sendto)\((\d+),")
_HEX = re.compile(r"^ \| [0-9a-f]{5}  ")


def have_tools() -> bool:
    return bool(shutil.which("ip") and shutil.which("strace")) and os.geteuid() == 0


def run_in_fresh_netns(argv: list[str], **kw):
    """``argv`` run (:meth:`RealNetns.run_in`) in a fresh real network namespace, which is
    removed afterwards."""
    ns = RealNetns()
    try:
        return ns.run_in(argv, **kw)
    finally:
        ns.close()


class RealNetns:
    def __init__(self):
        self.name = "xfrmd-t-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def ip(self, cmd: str, *, trace: bool = False, protocol: str = "NETLINK_XFRM"):
        """(xfrm datagrams sent, stdout, stderr, status) of `ip -netns NS <cmd>`."""
        argv = ["ip", "-netns", self.name] + shlex.split(cmd)
        if not trace:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return [], p.stdout, p.stderr, p.returncode
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
            p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=socket,sendmsg,sendto",
                                "-e", "write=3,4,5,6,7,8,9", "-o", log.name] + argv,
                               capture_output=True, text=True, timeout=30)
            return parse_strace(log.read(), protocol), p.stdout, p.stderr, p.returncode

    def run_in(self, argv: list[str], **kw):
        return subprocess.run(["ip", "netns", "exec", self.name] + argv, capture_output=True,
                              text=True, timeout=60, **kw)


def parse_strace(text: str, protocol: str = "NETLINK_XFRM") -> list[bytes]:
    """The datagrams sent on sockets of ``protocol``, in order."""
    xfrm_fds: set[int] = set()
    out: list[bytes] = []
    current: bytearray | None = None
    for line in text.splitlines():
        m = _SOCKET.match(line)
        if m:
            fd = int(m.group(2))
            if m.group(1) == protocol:
                xfrm_fds.add(fd)
            else:
                xfrm_fds.discard(fd)
            current = None
            continue
        m = _SENDMSG.match(line)
        if m:
            current = bytearray() if int(m.group(1)) in xfrm_fds else None
            if current is not None:
                out.append(current)
            continue
        m = _HEX.match(line)
        if m and current is not None:
            current += bytes.fromhex(line[10:59].replace(" ", ""))
    return [bytes(b) for b in out]
