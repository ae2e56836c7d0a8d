"""A dump read the way `ip` reads it (a MSG_PEEK|MSG_TRUNC with an empty buffer — here 1 byte —, then the
datagram into 32 KiB) gives the kernel's datagram boundaries: netlink_recvmsg runs the next
dump step on every receive, the peek too, sized by max_recvmsg_len as it stands then — so the
second datagram is NLMSG_GOODSIZE, not 32 KiB. Compared with the real kernel in a netns."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from .conftest import require

N = 300
BATCH = "".join(f"xfrm policy add src 10.{i >> 8}.{i & 255}.0/24 dst 198.51.100.0/24 dir out "
                f"priority 100 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel\n"
                for i in range(N))

READER = r"""
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_XFRM)
s.bind((0, 0))
s.send(struct.pack("=IHHII", 16, 0x15, 0x301, 1, 0))   # XFRM_MSG_GETPOLICY, NLM_F_DUMP
sizes = []
while True:
    s.recvmsg(1, 0, socket.MSG_PEEK | socket.MSG_TRUNC)   # as ip's rtnl_recvmsg peeks the size
    d = s.recv(32768)
    sizes.append(len(d))
    if struct.unpack_from("=H", d, 4)[0] == 3:               # NLMSG_DONE
        break
print(*sizes)
"""


def _sizes(prefix: list[str]) -> list[int]:
    p = subprocess.run(prefix + [sys.executable, "-c", READER], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return [int(x) for x in p.stdout.split()]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    require(shutil.which("ip"), "needs ip")
    f = tmp_path_factory.mktemp("peek") / "b.ip"
    f.write_text(BATCH)
    return str(f)


def test_peek_runs_a_dump_step(batch):
    sizes = _sizes([sys.executable, "-m", "xfrmd.cli", "run", "--topology", "bare", "--",
                    "sh", "-c", f'ip -batch {batch} && exec "$0" "$@"'])
    # 264 bytes a policy: NLMSG_GOODSIZE holds 14, SKB_WITH_OVERHEAD(32768) 122
    assert sizes == [14 * 264, 14 * 264, 122 * 264, 122 * 264, 28 * 264, 20]


def test_same_boundaries_as_the_kernel(batch):
    require(os.geteuid() == 0, "needs root for a netns")
    ns = "xfrmd-peek-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-netns", ns, "-batch", batch], check=True)
        kernel = _sizes(["ip", "netns", "exec", ns])
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    emu = _sizes([sys.executable, "-m", "xfrmd.cli", "run", "--topology", "bare", "--",
                  "sh", "-c", f'ip -batch {batch} && exec "$0" "$@"'])
    assert emu == kernel
