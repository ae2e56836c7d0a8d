"""Differential at the text level for policies: each `ip xfrm policy …` line runs with the
real `ip` in a fresh kernel netns and through xfrmd's `ip` replayer (byte-equal with ip 6.1,
docs/replay.md) against xfrmd. stdout, stderr and exit status must be identical."""
from __future__ import annotations

import pytest

from tests.differential.ip_text import text_tests

pytestmark = pytest.mark.netns

T = "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel"
SCRIPT = f"""
xfrm policy list
xfrm policy count
xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 10 {T}
xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 10 {T}
xfrm policy add src 10.0.1.0/24 dst 10.0.0.0/24 dir in {T} level use
xfrm policy add src 10.0.1.0/24 dst 10.0.0.0/24 dir fwd {T} reqid 5
xfrm policy add src 10.0.0.1/32 dst 10.0.1.1/32 proto tcp sport 22 dport 80 dir out action block
xfrm policy add src 10.0.0.1/32 dst 10.0.1.1/32 proto icmp type 8 code 0 dir out
xfrm policy add src 2001:db8::/64 dst 2001:db8:1::/64 dir out ptype sub tmpl src 2001:db8::1 dst 2001:db8::2 proto esp mode tunnel
xfrm policy add src 10.0.2.0/24 dst 10.0.3.0/24 dir out mark 7 mask 0xff if_id 3 {T}
xfrm policy add src 10.0.4.0/24 dst 10.0.5.0/24 dir out index 0x101 {T}
xfrm policy add src 10.0.4.0/24 dst 10.0.5.0/24 dir out index 0x100 {T}
xfrm policy add src 10.0.6.0/24 dst 10.0.7.0/24 dir out flag localok flag icmp tmpl proto esp mode transport tmpl proto comp mode transport
xfrm policy add src 10.0.8.0/33 dst 10.0.9.0/24 dir out
xfrm policy add src 10.0.8.0/24 dst 10.0.9.0/24 dir out limit time-soft 100 limit time-hard 200 limit use-hard 50
xfrm policy list
xfrm policy list dir in
xfrm policy list ptype sub
xfrm policy list priority 10
xfrm policy list action block
xfrm policy count
xfrm policy get src 10.0.0.0/24 dst 10.0.1.0/24 dir out
xfrm policy get src 10.0.0.0/24 dst 10.0.1.0/24 dir in
xfrm policy get index 0x101 dir out
xfrm policy get src 10.0.2.0/24 dst 10.0.3.0/24 dir out
xfrm policy get src 10.0.2.0/24 dst 10.0.3.0/24 dir out mark 7 mask 0xff if_id 3
xfrm policy update src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 3 {T} reqid 9
xfrm policy update src 10.0.10.0/24 dst 10.0.11.0/24 dir in priority 3
xfrm policy list
xfrm policy delete src 10.0.1.0/24 dst 10.0.0.0/24 dir in
xfrm policy delete src 10.0.1.0/24 dst 10.0.0.0/24 dir in
xfrm policy delete index 0x101 dir out
xfrm policy deleteall dir fwd
xfrm policy list
xfrm policy flush ptype sub
xfrm policy list
xfrm policy set hthresh4 28 28 hthresh6 120 120
xfrm policy count
xfrm policy flush
xfrm policy list
xfrm policy count
"""

real_ns, fake_results, test_ip_xfrm_policy_text_matches_the_kernel = text_tests(SCRIPT)
