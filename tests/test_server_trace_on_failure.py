"""The ``xfrmd_server`` fixture prints the decoded netlink conversation of a failed test
(checked with pytester: an inner test fails on purpose, its report shows the conversation)."""
from __future__ import annotations

pytest_plugins = ["pytester"]

INNER = '''
from netlink_codec import netlink as N
from netlink_codec import xfrm as X

pytest_plugins = ["xfrmd.testing"]


def test_fails(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:
        list(nl.request(X.XfrmMsg.GETSADINFO, 0, b"\\xff" * 4))
    assert False, "on purpose"


def test_passes(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:
        list(nl.request(X.XfrmMsg.GETSADINFO, 0, b"\\xff" * 4))
'''


def test_a_failed_test_shows_its_conversation(pytester):
    pytester.makepyfile(test_inner=INNER)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:trio")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "the test's netlink conversation" in out
    assert "→ XFRM_MSG_GETSADINFO" in out and "← XFRM_MSG_NEWSADINFO" in out
    assert out.count("the test's netlink conversation") == 1     # not for the passing test
