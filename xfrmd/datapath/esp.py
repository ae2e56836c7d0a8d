"""ESP (RFC 4303) with AES-GCM (RFC 4106): encapsulation and decapsulation of one SA.

The crypto is the ``cryptography`` package's AESGCM; this module adds the ESP framing, the
nonce (4-byte salt from the key material + 8-byte IV), the AAD (SPI and sequence number, with
the high 32 bits in ESN mode), the trailer (padding, pad length, next header), sequence
numbers, anti-replay and the lifetime counters the kernel keeps (``xfrm_lifetime_cur``).

The common packet (no ESN, the full ICV, the default seqiv IV; on input a new highest
number of this SA) has a C version, ``_espfast.c``, built by ``python3 -m xfrmd.cext build``:
when it is loaded, each SA's ``encapsulate``, ``encapsulate_batch`` and ``decapsulate`` are
its methods, which hand every other case back to the Python methods below (the reference:
``XFRMD_PURE_PYTHON=1`` runs them alone; tests/test_espfast.py compares the two).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from types import MethodType
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netlink_codec import cext

from ..cext import source
from .replay import ReplayError, ReplayWindow

_C = cext.load("xfrmd.datapath._espfast", source("xfrmd.datapath._espfast"))

_HDR = struct.Struct(">II")
_ESN_AAD = struct.Struct(">III")      # SPI, seq hi, seq lo (RFC 4303 §2.2.1 with ESN)
# ESP trailer per pad length and next header: monotonic padding 1, 2, … then pad len, nh
_TRAILERS = [[bytes(range(1, p + 1)) + bytes((p, nh)) for nh in range(256)] for p in range(4)]


class IntegrityError(Exception):
    """The ICV did not verify (counted in xfrm_stats.integrity_failed)."""


@dataclass(slots=True)
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
    iv_source: Callable[[int], bytes] | None = None   # seq -> 8 bytes; default: seqiv
    replay: ReplayWindow = field(init=False)
    stats: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        if len(self.key) not in (20, 28, 36):
            raise ValueError("rfc4106 key must be 16/24/32 bytes of AES key + 4 bytes of salt")
        if self.icv_len not in (8, 12, 16):
            raise ValueError("ICV must be 8, 12 or 16 bytes")
        # one AEAD object per SA, made once (the tfm esp_init_aead allocates at insert)
        self._aead = AESGCM(self.key[:-4])
        self._salt = self.key[-4:]
        self.replay = ReplayWindow(self.replay_window, self.esn)
        self._min_len = 8 + 8 + self.icv_len + 2
        # ESN (the AAD and the number to infer) and truncated ICVs take the general code
        self._general = self.esn or self.icv_len != 16
        self._ivsalt = None
        if self.iv_source is None:
            # seqiv (crypto/seqiv.c): the IV is the 64-bit sequence number XOR a per-SA salt;
            # computed inline in encapsulate (a call per packet costs as much as the XOR)
            ivsalt = self._ivsalt = int.from_bytes(os.urandom(8), "big")
            self.iv_source = lambda seq: (seq ^ ivsalt).to_bytes(8, "big")
        # what the common packet reads, looked up once (one attribute and one unpack per
        # packet instead of a lookup each): the AEAD's bound method, the salt, the seqiv
        # salt, the SPI, the replay state and the counters. None: ESN, a truncated ICV or (on
        # output) a caller's IV source, which take the general code.
        self._seal: tuple | None = None
        self._open: tuple | None = None
        r = self.replay
        if not self._general:
            self._open = (self._aead.decrypt, self._salt, self.spi, self._min_len, r, r.window,
                          r.mask, self.stats)
            if self._ivsalt is not None:
                self._seal = (self._aead.encrypt, self._salt, self._ivsalt, self.spi, r,
                              self.stats)
            if _C is not None and 0 <= self.spi <= 0xFFFFFFFF:   # else each packet raises
                self._use_c()

    def _use_c(self) -> None:
        """The C versions of the common packet in place of the methods (instance attributes
        shadow the class's functions), each handing the other cases back to the Python
        method of this SA."""
        fast = _C.Esp(self._seal, self._open, MethodType(EspGcmSA.encapsulate, self),
                      MethodType(EspGcmSA.decapsulate, self),
                      MethodType(EspGcmSA.encapsulate_batch, self))
        self.decapsulate = fast.decapsulate                       # type: ignore[method-assign]
        if self._seal is not None:
            self.encapsulate = fast.encapsulate                   # type: ignore[method-assign]
            self.encapsulate_batch = fast.encapsulate_batch       # type: ignore[method-assign]

    def _iv(self, seq: int) -> bytes:
        """The IV of a caller-given ``iv_source`` (the default seqiv is inline)."""
        assert self.iv_source is not None
        return self.iv_source(seq)

    def _aad(self, seq: int) -> bytes:
        if self.esn:
            return _ESN_AAD.pack(self.spi, seq >> 32, seq & 0xFFFFFFFF)
        return _HDR.pack(self.spi, seq)

    def encapsulate(self, payload: bytes, next_header: int, seq: int | None = None) -> bytes:
        """ESP header + IV + ciphertext + ICV for ``payload`` (an IP packet in tunnel mode,
        the transport payload in transport mode)."""
        seal = self._seal
        if seal is None:
            return self._encapsulate_general(payload, next_header, seq)
        encrypt, salt, ivsalt, spi, r, st = seal
        if seq is None:
            seq = r.oseq + 1
            if seq > 0xFFFFFFFF:
                seq = r.next_oseq()        # the wrap error lives there
            r.oseq = seq
        # per packet (docs/performance.md): the IV, the header (the AAD without ESN,
        # RFC 4106 §5), the plaintext with its trailer, the AEAD call, one concatenation
        iv = (seq ^ ivsalt).to_bytes(8, "big")
        hdr = _HDR.pack(spi, seq)
        n = len(payload)
        st.bytes += n
        st.packets += 1
        return hdr + iv + encrypt(salt + iv, payload + _TRAILERS[-(n + 2) & 3][next_header], hdr)

    def _encapsulate_general(self, payload: bytes, next_header: int, seq: int | None) -> bytes:
        """encapsulate with ESN, a truncated ICV or a caller's IV source."""
        if seq is None:
            seq = self.replay.next_oseq()  # the limit and the wrap error live there
        iv = self._iv(seq)
        hdr = _HDR.pack(self.spi, seq & 0xFFFFFFFF)
        sealed = self._aead_seal(iv, payload + _TRAILERS[-(len(payload) + 2) & 3][next_header],
                                 self._aad(seq))
        st = self.stats
        st.bytes += len(payload)
        st.packets += 1
        return hdr + iv + sealed

    def esp_len(self, payload_len: int) -> int:
        """The length of ``encapsulate``'s packet for a payload of ``payload_len`` bytes."""
        return 16 + payload_len + (-(payload_len + 2) & 3) + 2 + self.icv_len

    def encapsulate_batch(self, payloads: list[bytes], next_header: int, first_seq: int,
                          outer: list[bytes] | None = None,
                          inner: list[bytes] | None = None) -> list[bytes]:
        """``encapsulate`` of each payload with the sequence numbers ``first_seq``,
        ``first_seq + 1``, … (the caller numbered them: no wrap check here), the counters
        added once for the batch. With ``inner``, each payload is the header there followed
        by ``payloads[i]`` (a tunnel's inner IP header); with ``outer``, each packet follows
        its header there (the outer IP header): in C the plaintext and the packet are then one
        allocation each. The per-packet work is the IV, the header, two concatenations and
        the AEAD call, with everything else looked up once."""
        if inner is not None:
            payloads = [h + p for h, p in zip(inner, payloads, strict=True)]
        if self.esn or self.icv_len != 16 or self._ivsalt is None:
            out = [self.encapsulate(p, next_header, seq)
                   for seq, p in enumerate(payloads, first_seq)]
        else:
            encrypt, salt, ivsalt, spi = self._aead.encrypt, self._salt, self._ivsalt, self.spi
            pack, trailers = _HDR.pack, _TRAILERS
            out = []
            nbytes = 0
            append = out.append
            for seq, p in enumerate(payloads, first_seq):
                iv = (seq ^ ivsalt).to_bytes(8, "big")
                hdr = pack(spi, seq)
                append(hdr + iv + encrypt(salt + iv, p + trailers[-(len(p) + 2) & 3][next_header],
                                          hdr))
                nbytes += len(p)
            st = self.stats
            st.bytes += nbytes
            st.packets += len(out)
        if outer is not None:
            out = [h + esp for h, esp in zip(outer, out, strict=True)]
        return out

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
            dec = Cipher(algorithms.AES(self.key[:-4]), modes.CTR(self._salt + iv + b"\0\0\0\2")).decryptor()
            plain = dec.update(ct) + dec.finalize()
            if self._aead_seal(iv, plain, self._aad(seq))[-self.icv_len:] != bytes(body[-self.icv_len:]):
                raise InvalidTag()
            return plain
        return self._aead.decrypt(self._salt + iv, body, self._aad(seq))

    def decapsulate(self, packet: bytes) -> tuple[bytes, int, int]:
        """Check and open an ESP packet: returns (payload, next header, sequence number)."""
        op = self._open
        if op is None:
            return self._decapsulate_checked(packet)
        decrypt, salt, spi, min_len, r, window, mask, st = op
        if len(packet) < min_len:
            raise IntegrityError("packet too short for ESP")
        pkt_spi, seq = _HDR.unpack_from(packet)
        top = r.top
        if pkt_spi != spi or not seq > top:
            return self._decapsulate_checked(packet)
        # the common case, inline: a new highest number (nothing to check in the window) and
        # the AAD is the ESP header as received
        try:
            plain = decrypt(salt + packet[8:16], packet[16:], packet[:8])
        except InvalidTag:
            st.integrity_failed += 1
            raise IntegrityError("ICV mismatch") from None
        if window:
            # xfrm_replay_advance: shift the bitmap, the new top is seen
            shift = seq - top
            r.bitmap = ((r.bitmap << shift) | 1) & mask if shift < window else 1
        r.top = seq
        payload = plain[:-2 - plain[-2]]
        st.bytes += len(payload)
        st.packets += 1
        return payload, plain[-1], seq

    def _decapsulate_checked(self, packet: bytes) -> tuple[bytes, int, int]:
        """decapsulate for ESN, truncated ICVs, another SA's SPI and numbers not above the
        window's top."""
        if len(packet) < self._min_len:
            raise IntegrityError("packet too short for ESP")
        spi, seq_lo = _HDR.unpack_from(packet)
        if spi != self.spi:
            raise IntegrityError(f"SPI 0x{spi:08x} is not this SA's")
        r = self.replay
        seq = r.full_seq(seq_lo)
        try:
            r.check(seq)
        except ReplayError:
            self.stats.replay += 1
            raise
        if self.icv_len != 16:
            self.stats.integrity_failed += 1
            raise IntegrityError("truncated GCM ICVs are not modelled on input")
        try:
            plain = self._aead.decrypt(self._salt + packet[8:16], packet[16:], self._aad(seq))
        except InvalidTag:
            self.stats.integrity_failed += 1
            raise IntegrityError("ICV mismatch") from None
        r.advance(seq)
        padlen, nh = plain[-2], plain[-1]
        payload = plain[:-2 - padlen]
        st = self.stats
        st.bytes += len(payload)
        st.packets += 1
        return payload, nh, seq
