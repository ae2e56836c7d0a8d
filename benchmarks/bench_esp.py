"""Emulated ESP (rfc4106(gcm(aes)), 1400-byte payload): encapsulate + decapsulate per packet,
against bare ``cryptography`` AESGCM encrypt + decrypt of the same payload in the same run.

The ratio is throughput relative to the bare calls (bar ≥ 0.25×, goal ≥ 0.6×)."""
from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xfrmd.datapath.esp import EspGcmSA

KEY = os.urandom(16) + os.urandom(4)
PAYLOAD = os.urandom(1400)


def _best(fn, ref, n: int, rounds: int = 9) -> tuple[float, float]:
    """CPU seconds per call of ``fn`` and of ``ref``, their rounds interleaved, the best round
    of each (process time, the minimum: the machine may be shared; both sides of every ratio
    here are CPU-bound in this process)."""
    ours, theirs = [], []
    for _ in range(rounds):
        for f, out in ((fn, ours), (ref, theirs)):
            t0 = time.process_time()
            for _ in range(n):
                f()
            out.append((time.process_time() - t0) / n)
    return min(ours), min(theirs)


def run(quick: bool = False) -> list[dict]:
    n = 1000 if quick else 10000
    out_sa = EspGcmSA(0x100, KEY, replay_window=0)
    in_sa = EspGcmSA(0x100, KEY, replay_window=64)

    def emulated():
        in_sa.decapsulate(out_sa.encapsulate(PAYLOAD, 4))

    aead = AESGCM(KEY[:16])
    nonce = KEY[16:] + bytes(8)
    aad = bytes(8)

    def bare():
        aead.decrypt(nonce, aead.encrypt(nonce, PAYLOAD, aad), aad)

    ours, ref = _best(emulated, bare, n)
    rows = [{"name": "esp_gcm128_1400B_encrypt_decrypt", "value": ours * 1e6, "unit": "µs/packet",
             "reference": ref * 1e6, "ratio": ref / ours, "bar": ">= 0.25 (throughput vs bare AESGCM)",
             "goal": ">= 0.6x", "gate": "higher"}]
    rows.append(_output_path(quick))
    return rows


def _output_path(quick: bool) -> dict:
    """The whole software output path (``xfrmd ctl xmit``'s, sans-IO): route, SPD, SAD,
    xfrm_output_one accounting, IP + ESP, per packet — in packets/s, as a ratio to bare
    ``EspGcmSA.encapsulate`` of the same 1400-byte payload."""
    import struct

    from netlink_codec import netlink as N
    from netlink_codec import xfrm as X
    from xfrmd.clock import ManualClock
    from xfrmd.datapath.output import xfrm_xmit
    from xfrmd.kernel import Kernel
    from xfrmd.topology import load_topology
    k = Kernel(ManualClock(), topology=load_topology("default"))
    sock = k.socket(N.NETLINK_XFRM)
    k.bind(sock)
    a, b = bytes([198, 51, 100, 1]) + bytes(12), bytes([198, 51, 100, 2]) + bytes(12)
    inf = X.XFRM_INF
    sel = struct.pack("=16s16sHHHHHBBB3xiI", b, a, 0, 0, 0, 0, 2, 32, 32, 0, 0, 0)
    info = struct.pack("=56s16s4sB3x16s8Q4Q3III HBBB7x".replace(" ", ""), bytes(56), b,
                       struct.pack(">I", 0x1000), 50, a, inf, inf, inf, inf, 0, 0, 0, 0,
                       0, 0, 0, 0, 0, 0, 0, 0, 1, 2, X.XFRM_MODE_TUNNEL, 0, 0)
    aead = b"rfc4106(gcm(aes))".ljust(64, b"\0") + struct.pack("=II", 160, 128) + KEY
    k.deliver(sock, N.encode_msg(X.XfrmMsg.NEWSA, N.NLM_F_REQUEST, 1, 0,
                                 info + N.nla(X.Xfrma.ALG_AEAD, aead)))
    pol = sel + struct.pack("=8Q4QIIBBBB4x", inf, inf, inf, inf, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                            X.XFRM_POLICY_OUT, 0, 0, 0)
    tmpl = struct.pack("=16s4sB3xH2x16sIBBBxIII", b, bytes(4), 50, 2, a, 1, X.XFRM_MODE_TUNNEL,
                       0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    k.deliver(sock, N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST, 2, 0,
                                 pol + N.nla(X.Xfrma.TMPL, tmpl)))
    ns = k.netns("default")
    n = 500 if quick else 5000
    res = xfrm_xmit(ns, "198.51.100.1", "198.51.100.2", 17, 1, 2, 1400, 10)
    assert res.sent == 10, res.to_dict()
    sa = EspGcmSA(0x1000, KEY, replay_window=0)

    def bare_n():
        for _ in range(n):
            sa.encapsulate(PAYLOAD, 4)
    # one round: one xmit of n packets against n bare encapsulations
    per_call, ref_call = _best(lambda: xfrm_xmit(ns, "198.51.100.1", "198.51.100.2", 17, 1, 2,
                                                 1400, n), bare_n, 1, 7 if quick else 9)
    per_pkt, ref = per_call / n, ref_call / n
    return {"name": "xmit_software_path_1400B", "value": 1 / per_pkt, "unit": "packets/s",
            "reference": 1 / ref, "ratio": ref / per_pkt,
            "bar": "(figure) vs bare EspGcmSA.encapsulate", "goal": ">= 0.5x",
            "gate": "higher"}


if __name__ == "__main__":
    for row in run():
        print(row)
