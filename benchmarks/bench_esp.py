"""Emulated ESP (rfc4106(gcm(aes)), 1400-byte payload): encapsulate + decapsulate per packet,
against bare ``cryptography`` AESGCM encrypt + decrypt of the same payload in the same run.

The ratio is throughput relative to the bare calls (bar ≥ 0.25×, goal ≥ 0.6×)."""
from __future__ import annotations

import os
import statistics
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xfrmd.datapath.esp import EspGcmSA

KEY = os.urandom(16) + os.urandom(4)
PAYLOAD = os.urandom(1400)


def _per_call(fn, n: int, rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def run(quick: bool = False) -> list[dict]:
    n = 2000 if quick else 20000
    out_sa = EspGcmSA(0x100, KEY, replay_window=0)
    in_sa = EspGcmSA(0x100, KEY, replay_window=64)

    def emulated():
        in_sa.decapsulate(out_sa.encapsulate(PAYLOAD, 4))

    aead = AESGCM(KEY[:16])
    nonce = KEY[16:] + bytes(8)
    aad = bytes(8)

    def bare():
        aead.decrypt(nonce, aead.encrypt(nonce, PAYLOAD, aad), aad)

    ours = _per_call(emulated, n)
    ref = _per_call(bare, n)
    return [{"name": "esp_gcm128_1400B_encrypt_decrypt", "value": ours * 1e6, "unit": "µs/packet",
             "reference": ref * 1e6, "ratio": ref / ours, "bar": ">= 0.25 (throughput vs bare AESGCM)"}]


if __name__ == "__main__":
    for row in run():
        print(row)
