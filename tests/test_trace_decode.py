"""Traces that explain a failure: every family decoded by name, and each
NLMSG_ERROR with its errno name, extack message, the attribute its offset points at, and the
request it answers — including the extack a client without NETLINK_EXT_ACK never got."""
from __future__ import annotations

import io
import re
import subprocess

import pytest

from netlink_codec import netlink as N
from xfrmd.trace import TraceWriter, print_trace

from .conftest import XFRMD, require_shim
from .sad_helpers import AEAD, A, M, msg, usersa_info

BAD_DIR = msg(M.NEWSA, usersa_info() + AEAD + N.nla_u8(A.SA_DIR, 3), seq=7)
DIR_AT = 16 + 224 + len(AEAD)          # where XFRMA_SA_DIR starts in the request


def _converse(kernel, tmp_path, datagram, *, ext_ack=True, cap_ack=False) -> list[str]:
    """Send one request in-process with a trace recording, and decode the trace."""
    path = tmp_path / "t.jsonl"
    tracer = TraceWriter.open(str(path), kernel)
    kernel.tracers.append(tracer)
    sock = kernel.socket(N.NETLINK_XFRM, "default", pid=4242)
    sock.ext_ack, sock.cap_ack = ext_ack, cap_ack
    kernel.deliver(sock, datagram)
    tracer.out.close()
    out = io.StringIO()
    print_trace(str(path), out)
    return [ln.split(" ", 3)[3] for ln in out.getvalue().splitlines()]


@pytest.mark.parametrize("cap_ack", [False, True])
def test_an_error_names_errno_extack_attribute_and_request(kernel, tmp_path, cap_ack):
    lines = _converse(kernel, tmp_path, BAD_DIR, cap_ack=cap_ack)
    assert lines[0] == "→ XFRM_MSG_NEWSA flags=0x5 seq=7 pid=0 [XFRMA_ALG_AEAD, XFRMA_SA_DIR]"
    port = kernel.netns("default").sockets[N.NETLINK_XFRM].pop().portid
    # capped: the error echoes only the header; the attribute is found in the traced request
    assert lines[1] == ("← NLMSG_ERROR error -ERANGE (Numerical result out of range) for "
                        f"XFRM_MSG_NEWSA seq=7 port={port}; extack: \"integer out of range\", "
                        f"at offset {DIR_AT} (XFRMA_SA_DIR), policy: u8 in 1..2")


def test_an_extack_the_client_did_not_ask_for_is_shown_as_not_delivered(kernel, tmp_path):
    lines = _converse(kernel, tmp_path, BAD_DIR, ext_ack=False)
    assert lines[1].endswith("; extack: \"integer out of range\", at offset "
                             f"{DIR_AT} (XFRMA_SA_DIR), policy: u8 in 1..2 (not delivered: the socket "
                             "did not set "
                             "NETLINK_EXT_ACK)")


def test_an_ack_says_what_it_acknowledges(kernel, tmp_path):
    lines = _converse(kernel, tmp_path, msg(M.NEWSA, usersa_info() + AEAD, seq=9))
    assert re.fullmatch(r"← NLMSG_ERROR ack for XFRM_MSG_NEWSA seq=9 port=\d+", lines[1])


def test_rtnetlink_and_ethtool_are_decoded_by_name(tmp_path):
    require_shim("ip", "ethtool")
    trace = tmp_path / "t.jsonl"
    xfrmd_run_traced(trace, "ip link set nosuch up; ip addr add 10.9.9.9/24 dev dummy0; "
                            "ethtool -K nsim0 esp-hw-offload on")
    out = io.StringIO()
    print_trace(str(trace), out)
    text = out.getvalue()
    assert re.search(r'→ RTM_GETLINK flags=0x1 seq=\d+ pid=0 family=0 ifindex=0 '
                     r'\[IFLA_EXT_MASK, IFLA_IFNAME="nosuch"\]', text), text
    assert re.search(r"← NLMSG_ERROR error -ENODEV \(No such device\) for RTM_GETLINK "
                     r"seq=\d+ port=\d+", text), text
    assert re.search(r"→ RTM_NEWADDR flags=0x605 seq=\d+ pid=0 family=2 prefixlen=24 "
                     r"ifindex=2 \[IFA_LOCAL, IFA_ADDRESS\]", text), text
    assert re.search(r"→ ethtool flags=0x5 seq=\d+ pid=0 ETHTOOL_MSG_FEATURES_SET "
                     r"\[ETHTOOL_A_FEATURES_HEADER, ETHTOOL_A_FEATURES_WANTED\]", text), text
    assert re.search(r"← NLMSG_ERROR ack for ethtool ETHTOOL_MSG_FEATURES_SET seq=\d+", text)
    assert "bytes>" not in text                      # nothing left undecoded


def xfrmd_run_traced(trace, script):
    return subprocess.run(XFRMD + ["run", "--trace", str(trace), "--", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
