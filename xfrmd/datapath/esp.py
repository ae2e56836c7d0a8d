"""ESP (RFC 4303) with AES-GCM (RFC 4106): encapsulation and decapsulation of one SA.

The crypto is the ``cryptography`` package's AESGCM; this module adds the ESP framing, the
nonce (4-byte salt from the key material + 8-byte IV), the AAD (SPI and sequence number, with
the high 32 bits in ESN mode), the trailer (padding, pad length, next header), sequence
numbers, anti-replay and the lifetime counters the kernel keeps (``xfrm_lifetime_cur``).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .replay import ReplayError, ReplayWindow

_HDR = struct.Struct(">II")
# ESP trailer per pad length and next header: monotonic padding 1, 2, … then pad len, nh
_TRAILERS = [[bytes(range(1, p + 1)) + bytes((p, nh)) for nh in range(256)] for p in range(4)]


class IntegrityError(Exception):
    """The ICV did not verify (counted in xfrm_stats.integrity_failed)."""


@dataclass
class Counters:
    bytes: int = 0
    packets: int = 0
    replay: int = 0
    integrity_failed: int = 0


@dataclass
class EspGcmSA:
    """One direction of an rfc4106(gcm(aes)) SA. ``key`` is the XFRMA_ALG_AEAD key: the AES key
    followed by the 4-byte salt, as ``ip xfrm`` and IKE daemons give it."""
    spi: int
    key: bytes
    icv_len: int = 16
    replay_window: int = 32
    esn: bool = False
    iv_source: object = None          # callable(seq) -> 8 bytes; default: seqiv
    replay: ReplayWindow = field(init=False)
    stats: Counters = field(default_factory=Counters)

    def __post_init__(self):
        if len(self.key) not in (20, 28, 36):
            raise ValueError("rfc4106 key must be 16/24/32 bytes of AES key + 4 bytes of salt")
        if self.icv_len not in (8, 12, 16):
            raise ValueError("ICV must be 8, 12 or 16 bytes")
        self._aead = AESGCM(self.key[:-4])
        self._salt = self.key[-4:]
        self.replay = ReplayWindow(self.replay_window, self.esn)
        if self.iv_source is None:
            # seqiv (crypto/seqiv.c): the IV is the 64-bit sequence number XOR a per-SA salt
            ivsalt = int.from_bytes(os.urandom(8), "big")
            self.iv_source = lambda seq: ((seq ^ ivsalt) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")

    def _aad(self, seq: int) -> bytes:
        if self.esn:
            return struct.pack(">III", self.spi, seq >> 32, seq & 0xFFFFFFFF)
        return _HDR.pack(self.spi, seq)

    def encapsulate(self, payload: bytes, next_header: int, seq: int | None = None) -> bytes:
        """ESP header + IV + ciphertext + ICV for ``payload`` (an IP packet in tunnel mode,
        the transport payload in transport mode)."""
        if seq is None:
            seq = self.replay.next_oseq()
        padlen = (-(len(payload) + 2)) % 4
        plain = payload + _TRAILERS[padlen][next_header]
        iv = self.iv_source(seq)
        sealed = self._aead_seal(iv, plain, self._aad(seq))
        self.stats.bytes += len(payload)
        self.stats.packets += 1
        return _HDR.pack(self.spi, seq & 0xFFFFFFFF) + iv + sealed

    def _aead_seal(self, iv: bytes, plain: bytes, aad: bytes) -> bytes:
        out = self._aead.encrypt(self._salt + iv, plain, aad)
        if self.icv_len != 16:  # truncated ICV: GCM tag is a prefix of the full tag
            out = out[:len(out) - 16 + self.icv_len]
        return out

    def open_esp(self, packet: bytes, seq: int) -> bytes:
        """Decrypt and verify an ESP packet whose full (64-bit with ESN) sequence number the
        caller inferred: the plaintext with its trailer. InvalidTag on ICV mismatch. The
        caller keeps the replay state (the xfrm_state's)."""
        iv = packet[8:16]
        body = memoryview(packet)[16:]
        if self.icv_len != 16:
            # a truncated GCM tag is a prefix of the full one: recompute and compare
            ct = bytes(body[:len(body) - self.icv_len])
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
            dec = Cipher(algorithms.AES(self.key[:-4]), modes.CTR(self._salt + iv + b"\0\0\0\2")).decryptor()
            plain = dec.update(ct) + dec.finalize()
            if self._aead_seal(iv, plain, self._aad(seq))[-self.icv_len:] != bytes(body[-self.icv_len:]):
                raise InvalidTag()
            return plain
        return self._aead.decrypt(self._salt + iv, body, self._aad(seq))

    def decapsulate(self, packet: bytes) -> tuple[bytes, int, int]:
        """Check and open an ESP packet: returns (payload, next header, sequence number)."""
        if len(packet) < 8 + 8 + self.icv_len + 2:
            raise IntegrityError("packet too short for ESP")
        spi, seq_lo = _HDR.unpack_from(packet)
        if spi != self.spi:
            raise IntegrityError(f"SPI 0x{spi:08x} is not this SA's")
        seq = self.replay.full_seq(seq_lo)
        try:
            self.replay.check(seq)
        except ReplayError:
            self.stats.replay += 1
            raise
        iv = packet[8:16]
        if self.icv_len != 16:
            self.stats.integrity_failed += 1
            raise IntegrityError("truncated GCM ICVs are not modelled on input")
        try:
            plain = self._aead.decrypt(self._salt + iv, memoryview(packet)[16:], self._aad(seq))
        except InvalidTag:
            self.stats.integrity_failed += 1
            raise IntegrityError("ICV mismatch") from None
        self.replay.advance(seq)
        padlen, nh = plain[-2], plain[-1]
        payload = plain[:-2 - padlen]
        self.stats.bytes += len(payload)
        self.stats.packets += 1
        return payload, nh, seq
