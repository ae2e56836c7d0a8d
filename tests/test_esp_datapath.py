"""The emulated ESP data path: interoperates with scapy's independent ESP implementation,
and keeps sequence numbers, anti-replay and counters as the kernel does."""
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation

from xfrmd.datapath.esp import EspGcmSA, IntegrityError
from xfrmd.datapath.replay import ReplayError, ReplayWindow, SequenceOverflow

KEY = bytes(range(16)) + b"\xde\xad\xbe\xef"   # AES-128 key + salt, as XFRMA_ALG_AEAD carries it
SPI = 0x1000


def scapy_sa(esn=False):
    return SecurityAssociation(ESP, spi=SPI, crypt_algo="AES-GCM", crypt_key=KEY,
                               auth_algo="NULL", auth_key=None, esn_en=esn)


def test_our_packet_decrypts_with_scapy():
    inner = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=1, dport=2) / (b"x" * 1400))
    sa = EspGcmSA(SPI, KEY, iv_source=lambda seq: b"\x01" * 8)
    esp = sa.encapsulate(inner, next_header=4)       # tunnel mode: IPIP
    outer = IP(src="192.0.2.1", dst="198.51.100.1", proto=50) / esp
    clear = scapy_sa().decrypt(IP(bytes(outer)))
    assert bytes(clear.payload) == inner              # outer IP / the inner packet, intact
    assert sa.stats.packets == 1 and sa.stats.bytes == len(inner)


def test_scapy_packet_decrypts_with_ours_and_replay_is_refused():
    pkt = IP(src="192.0.2.1", dst="198.51.100.1") / UDP(sport=500, dport=500) / b"hello"
    enc = scapy_sa().encrypt(pkt, seq_num=5)
    esp_bytes = bytes(enc[ESP])
    sa = EspGcmSA(SPI, KEY)
    payload, nh, seq = sa.decapsulate(esp_bytes)
    assert (nh, seq) == (17, 5) and payload.endswith(b"hello")
    with pytest.raises(ReplayError):
        sa.decapsulate(esp_bytes)
    assert sa.stats.replay == 1 and sa.stats.packets == 1


def test_tampered_icv_counts_integrity_failure():
    sa_out = EspGcmSA(SPI, KEY)
    sa_in = EspGcmSA(SPI, KEY)
    pkt = bytearray(sa_out.encapsulate(b"payload", 17))
    pkt[-1] ^= 1
    with pytest.raises(IntegrityError):
        sa_in.decapsulate(bytes(pkt))
    assert sa_in.stats.integrity_failed == 1
    # the failed packet did not move the window: the genuine one is still accepted
    pkt[-1] ^= 1
    assert sa_in.decapsulate(bytes(pkt))[0] == b"payload"


def test_window_accepts_reordering_and_rejects_left_of_window():
    w = ReplayWindow(32)
    for s in (1, 3, 2, 40):
        w.check(s)
        w.advance(s)
    with pytest.raises(ReplayError):
        w.check(8)      # 40 - 8 = 32: left of a 32-packet window
    w.check(9)          # 40 - 9 = 31: inside, never seen
    with pytest.raises(ReplayError):
        w.check(40)
    with pytest.raises(ReplayError):
        w.check(0)      # sequence 0 is never valid without ESN


def test_esn_infers_high_bits_across_the_boundary():
    w = ReplayWindow(64, esn=True)
    w.advance(0xFFFFFFF0)
    assert w.full_seq(0x00000005) == 0x1_00000005     # wrapped: next block
    assert w.full_seq(0xFFFFFFE0) == 0xFFFFFFE0       # inside the window: same block
    w.advance(0x1_00000005)
    assert w.full_seq(0xFFFFFFF8) == 0xFFFFFFF8       # window straddles: previous block


def test_esn_interoperates_with_scapy():
    """The high 32 bits are authenticated (AAD) but not sent: scapy must be told them."""
    udp = bytes(UDP(sport=7, dport=9) / b"abc")
    sa = EspGcmSA(SPI, KEY, esn=True)
    sa.replay.oseq = 0x1_FFFFFFFF
    esp = sa.encapsulate(udp, 17)                     # seq 0x2_00000000: low bits 0 on the wire
    assert esp[4:8] == b"\0\0\0\0"
    wire = IP(bytes(IP(src="1.1.1.1", dst="2.2.2.2", proto=50) / esp))
    clear = SecurityAssociation(ESP, spi=SPI, crypt_algo="AES-GCM", crypt_key=KEY, auth_algo="NULL",
                                auth_key=None, esn_en=True, esn=2).decrypt(wire)
    assert bytes(clear.payload) == udp
    with pytest.raises(Exception):                    # wrong high bits → tag mismatch
        SecurityAssociation(ESP, spi=SPI, crypt_algo="AES-GCM", crypt_key=KEY, auth_algo="NULL",
                            auth_key=None, esn_en=True, esn=1).decrypt(wire)


def test_outbound_counter_refuses_to_wrap():
    w = ReplayWindow(0)
    w.oseq = 0xFFFFFFFE
    assert w.next_oseq() == 0xFFFFFFFF
    with pytest.raises(SequenceOverflow):
        w.next_oseq()
