"""Differential at the text level: each `ip xfrm state …` line runs with the real `ip` in a
fresh kernel netns, and through xfrmd's `ip` replayer (byte-equal with ip 6.1, see
docs/replay.md) against an xfrmd built like the running kernel (its xfrm types and crypto
algorithms: tests/differential/kconfig_host.py). stdout, stderr and exit status must be
identical."""
from __future__ import annotations

import pytest

from tests.differential.ip_text import script_lines, text_tests

pytestmark = pytest.mark.netns

KEY16 = "0x00112233445566778899aabbccddeeff"
KEY20 = "0x00112233445566778899aabbccddeeff00112233"
SCRIPT = f"""
xfrm state list
xfrm state count
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x100 mode tunnel enc aes {KEY16} auth sha1 {KEY20}
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x101 mode tunnel aead rfc4106(gcm(aes)) {KEY20} 128
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x102 mode tunnel enc foo {KEY16}
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x103 mode tunnel auth-trunc hmac(sha256) {KEY16} 300 enc aes {KEY16}
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto ah spi 0x104 mode transport enc aes {KEY16}
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto ah spi 0x105 mode transport
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x106 mode beet enc aes {KEY16} sel src 10.0.0.0/40
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto comp spi 0x20000 mode transport comp deflate
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x107 mode transport enc aes {KEY16} replay-window 64 flag esn
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x108 mode tunnel enc aes {KEY16} if_id 5 encap espinudp 4500 4500 0.0.0.0
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto ah spi 0x10d mode tunnel auth sha1 {KEY20} encap espinudp 4500 4500 0.0.0.0
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x109 mode transport enc aes {KEY16} tfcpad 100
xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x10a mode ro enc aes {KEY16}
xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x10b mode ro enc aes {KEY16}
xfrm state update src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x10c mode tunnel enc aes {KEY16}
xfrm state allocspi src 192.0.2.1 dst 198.51.100.1 proto esp mode tunnel reqid 7 min 0x300 max 0x300
xfrm state allocspi src 192.0.2.1 dst 198.51.100.2 proto esp mode tunnel reqid 8 min 0x300 max 0x300
xfrm state allocspi src 2001:db8::1 dst 2001:db8::2 proto ah mode transport reqid 9 mark 7 mask 0xff min 0x400 max 0x400
xfrm state allocspi src 192.0.2.1 dst 198.51.100.1 proto comp mode tunnel reqid 10 min 0x500 max 0x500
xfrm state allocspi src 192.0.2.1 dst 198.51.100.1 proto esp min 9 max 8
xfrm state list
xfrm state get src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x300
xfrm state get src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x999
xfrm state list proto ah
xfrm state list src 192.0.2.1
xfrm state count
xfrm state delete src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x300
xfrm state delete src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x300
xfrm state deleteall proto comp
xfrm state list
xfrm state flush proto ah
xfrm state list
xfrm state flush
xfrm state count
"""

LINES = script_lines(SCRIPT)      # test_sa_ip_shim.py runs them too
real_ns, fake_results, test_ip_xfrm_state_text_matches_the_kernel = text_tests(SCRIPT)
