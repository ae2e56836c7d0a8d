"""Real network namespaces joined by a veth pair (needs root and iproute2)."""
from __future__ import annotations

import subprocess
import uuid

LEFT_ADDR, RIGHT_ADDR, PREFIX = "192.0.2.1", "192.0.2.2", 24


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class RealPair:
    """``left`` and ``right`` real netns; ``veth-l`` (192.0.2.1/24) in left is joined to
    ``veth-r`` (192.0.2.2/24) in right. Removed (with everything in them) by close()."""

    def __init__(self, prefix: str = "xfrmd"):
        tag = uuid.uuid4().hex[:6]
        self.ns = {"left": f"{prefix}-l-{tag}", "right": f"{prefix}-r-{tag}"}
        self.dev = {"left": "veth-l", "right": "veth-r"}
        self.addr = {"left": LEFT_ADDR, "right": RIGHT_ADDR}
        self.prefixlen = PREFIX
        created = []
        try:
            for side in ("left", "right"):
                _ip("netns", "add", self.ns[side])
                created.append(side)
            _ip("-n", self.ns["left"], "link", "add", "veth-l", "type", "veth", "peer", "name",
                "veth-r", "netns", self.ns["right"])
            for side in ("left", "right"):
                n = self.ns[side]
                _ip("-n", n, "addr", "add", f"{self.addr[side]}/{PREFIX}", "dev", self.dev[side])
                _ip("-n", n, "link", "set", self.dev[side], "up")
                _ip("-n", n, "link", "set", "lo", "up")
        except Exception:
            for side in created:
                subprocess.run(["ip", "netns", "del", self.ns[side]], check=False)
            raise

    def exec_argv(self, side: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side], *argv]

    def close(self) -> None:
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], check=False, capture_output=True)
