"""Regenerate tests/vectors/xfrm.jsonl: request bytes real `ip` 6.1 sends (strace in a fresh
network namespace) and the real kernel's replies to them, for the codec vector test.

    python3 tools/capture_vectors.py      # needs root, ip, strace
"""
from __future__ import annotations

import json
import os
import select
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.differential.test_sa_validation import RealXfrm  # noqa: E402
from tests.replay.realip import RealNetns  # noqa: E402

FORMS = [
    "xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 5 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel reqid 3",
    "xfrm policy add src 2001:db8::/64 dst 2001:db8:1::/64 proto tcp sport 22 dir in action block mark 7 mask 0xff if_id 9",
    "xfrm policy get src 10.0.0.0/24 dst 10.0.1.0/24 dir out",
    "xfrm policy list",
    "xfrm policy flush ptype sub",
    "xfrm policy count",
    "xfrm policy setdefault in block",
    "xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 offload dev lo dir out",
    "xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1001 enc 'cbc(aes)' 0x0102030405060708090a0b0c0d0e0f10 auth-trunc 'hmac(sha256)' 0x0102030405060708090a0b0c0d0e0f100102030405060708090a0b0c0d0e0f10 128 replay-window 128 flag esn",
    "xfrm state allocspi src 10.0.0.1 dst 10.0.0.2 proto esp min 0x200 max 0x200",
    "xfrm state list",
    "xfrm state flush",
    "xfrm state count",
    "xfrm state delete src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x200",
]


def main() -> int:
    ns = RealNetns()
    out = []
    try:
        for cmd in FORMS:
            sent, _, _, _ = ns.ip(cmd, trace=True)
            out.append({"name": cmd, "kind": "request", "hex": sent[0].hex()})
        # the kernel's replies to the same requests, replayed on a raw socket in a fresh netns
        real = RealXfrm()
        try:
            for rec in [r for r in out if r["kind"] == "request"]:
                for d in real.send(bytes.fromhex(rec["hex"])):
                    out.append({"name": rec["name"], "kind": "reply", "hex": d.hex()})
        finally:
            real.close()
    finally:
        ns.close()
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "vectors", "xfrm.jsonl")
    with open(path, "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    print(f"{len(out)} vectors written to {os.path.normpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
