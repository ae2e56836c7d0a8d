"""Inbound anti-replay and outbound sequence numbers (net/xfrm/xfrm_replay.c semantics).

Window positions are tracked as a set of recently seen sequence numbers relative to the
highest one, which is what the kernel's bitmap encodes (``xfrm_replay_check_bmp`` /
``xfrm_replay_advance_bmp``; with ESN the 64-bit number is reconstructed from the low 32 bits
as RFC 4303 Appendix A describes, ``xfrm_replay_seqhi``).
"""
from __future__ import annotations


class ReplayError(Exception):
    """The packet is a replay or left of the window (counted in xfrm_stats.replay)."""


class SequenceOverflow(Exception):
    """The outbound counter would wrap (``xfrm_output``'s XFRM_MODE_SKB_CB seq overflow)."""


class ReplayWindow:
    # slots: the C fast path of esp.py (_espfast.c) reads and writes top, bitmap and oseq
    __slots__ = ("window", "mask", "esn", "top", "bitmap", "oseq")

    def __init__(self, window: int, esn: bool = False):
        self.window = window        # in packets; 0 disables the check
        self.mask = (1 << window) - 1
        self.esn = esn
        self.top = 0                # highest sequence number accepted (64-bit with ESN)
        self.bitmap = 0             # bit i set = (top - i) was seen
        self.oseq = 0               # last outbound sequence number used

    # -- outbound -------------------------------------------------------------------

    def next_oseq(self, may_wrap: bool = False) -> int:
        limit = (1 << 64) - 1 if self.esn else 0xFFFFFFFF
        if self.oseq >= limit and not may_wrap:
            raise SequenceOverflow("sequence number would wrap")
        self.oseq = (self.oseq + 1) & limit
        return self.oseq

    # -- inbound --------------------------------------------------------------------

    def full_seq(self, seq_lo: int) -> int:
        """The 64-bit number an ESN receiver infers from the 32 low bits on the wire
        (RFC 4303 Appendix A; ``xfrm_replay_seqhi``)."""
        if not self.esn:
            return seq_lo
        w = max(self.window, 1)
        top_lo, top_hi = self.top & 0xFFFFFFFF, self.top >> 32
        bottom = (top_lo - w + 1) & 0xFFFFFFFF
        if top_lo >= w - 1:      # the window lies within one 2^32 block
            hi = top_hi if seq_lo >= bottom else top_hi + 1
        else:                    # the window straddles a block boundary
            hi = top_hi - 1 if seq_lo >= bottom else top_hi
        return (max(hi, 0) << 32) | seq_lo

    def check(self, seq: int) -> None:
        """Raise ReplayError if ``seq`` (full number) may not be accepted."""
        if not self.window:
            return
        if seq == 0 and not self.esn:
            raise ReplayError("sequence number 0")
        if seq > self.top:
            return
        diff = self.top - seq
        if diff >= self.window:
            raise ReplayError(f"sequence {seq} is left of the window (top {self.top})")
        if self.bitmap >> diff & 1:
            raise ReplayError(f"sequence {seq} was already received")

    def advance(self, seq: int) -> None:
        """Record an authenticated packet (called only after the ICV checked out)."""
        if not self.window:
            self.top = max(self.top, seq)
            return
        if seq > self.top:
            shift = seq - self.top
            self.bitmap = ((self.bitmap << shift) | 1) & self.mask if shift < self.window else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
