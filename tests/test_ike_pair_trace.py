"""The kernel pair records its netlink conversation and prints it, decoded, when the test
inside it fails — so a red IKE test in CI shows what the daemons told the kernel."""
from __future__ import annotations

import os

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.client import NetlinkSocket
from xfrmd.ike.pair import KernelPair

from .ike_helpers import require_root


def test_a_failure_inside_the_pair_prints_the_decoded_conversation(capsys):
    require_root()
    with pytest.raises(AssertionError, match="the daemon's test failed"):
        with KernelPair() as kp:
            path = kp.trace_path
            with NetlinkSocket(N.NETLINK_XFRM, "left", path=kp.handle.path) as nl:
                list(nl.request(X.XfrmMsg.GETSADINFO, 0, b"\xff" * 4))
            raise AssertionError("the daemon's test failed")
    err = capsys.readouterr().err
    assert "the kernel pair's netlink conversation" in err
    lines = [ln for ln in err.splitlines() if " left sock" in ln]
    assert any("→ XFRM_MSG_GETSADINFO" in ln for ln in lines), err
    assert any("← XFRM_MSG_NEWSADINFO flags=0x0 seq=1" in ln for ln in lines), err
    assert not os.path.exists(path)                  # removed unless XFRMD_KEEP_TRACE


def test_a_passing_test_prints_nothing(capsys):
    require_root()
    with KernelPair() as kp:
        with NetlinkSocket(N.NETLINK_XFRM, "right", path=kp.handle.path) as nl:
            list(nl.request(X.XfrmMsg.GETSADINFO, 0, b"\xff" * 4))
    assert "netlink conversation" not in capsys.readouterr().err
