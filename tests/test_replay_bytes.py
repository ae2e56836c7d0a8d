"""The replayer sends, for every command form ip 6.1 accepts, the bytes real `ip` 6.1 sends
(captured with strace in a real network namespace), and for forms ip rejects while parsing
it prints ip's message and exits with ip's status without sending anything."""
from __future__ import annotations

import json
import shlex
import struct
import subprocess

import pytest

from netlink_codec.netlink import NLMSG_DONE, NLMSG_ERROR
from xfrmd.replay.runner import Backend, run_line

from .conftest import closing_fixture, require
from .replay.forms import (LINK_FORMS, LINK_PARSE_ERRORS, PARSE_ERRORS, POLICY_FORMS,
                          STATE_FORMS)
from .replay.realip import RealNetns, have_tools


class _RecordingSocket:
    """Answers every request with ENOENT (dumps with DONE) and remembers what was sent."""

    def __init__(self):
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        _, t, flags, seq, _ = struct.unpack_from("<IHHII", data)
        if flags & 0x300 == 0x300:   # NLM_F_DUMP
            self.pending.append(struct.pack("<IHHIIi", 20, NLMSG_DONE, 2, seq, 0, 0))
        else:
            self.pending.append(struct.pack("<IHHIIi", 36, NLMSG_ERROR, 0x100, seq, 0, -2)
                                + data[:16])

    def recv(self) -> bytes:
        return self.pending.pop(0)

    def recv_nowait(self):
        return self.pending.pop(0) if self.pending else None

    def close(self) -> None:
        pass


class RecordingBackend(Backend):
    def __init__(self):
        super().__init__()
        self.sockets: list[_RecordingSocket] = []

    def open(self, protocol):
        s = _RecordingSocket()
        self.sockets.append(s)
        return s

    def name_to_index(self, name):
        return {"lo": 1}.get(name, 0)

    def index_to_name(self, index):
        return {1: "lo"}.get(index)


def _norm(datagram: bytes) -> bytes:
    """seq and pid differ between runs."""
    return datagram[:8] + bytes(8) + datagram[16:]


realns = closing_fixture(RealNetns, have_tools, "needs root, ip and strace")


def _replay(cmd: str):
    b = RecordingBackend()
    r = run_line(b, shlex.split(cmd))
    sent = [d for s in b.sockets for d in s.sent]
    return sent, r


@pytest.mark.parametrize("cmd", STATE_FORMS + POLICY_FORMS)
def test_request_bytes_equal_real_ip(realns, cmd):
    real, _, _, _ = realns.ip(cmd, trace=True)
    assert real, f"strace saw no NETLINK_XFRM datagram from ip for {cmd!r}"
    ours, _ = _replay(cmd)
    assert ours, "the replayer sent nothing"
    assert _norm(ours[0]).hex() == _norm(real[0]).hex()


def test_enough_forms():
    assert len(STATE_FORMS) + len(POLICY_FORMS) >= 60


@pytest.mark.parametrize("cmd", PARSE_ERRORS)
def test_parse_errors_match_real_ip(realns, cmd):
    real, out, err, rc = realns.ip(cmd, trace=True)
    ours, r = _replay(cmd)
    assert (r.stdout, r.stderr, r.status) == (out, err, rc)
    assert ours == [] and real == []


_RTM_CHANGES = (16, 17, 20, 21)   # RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR


class _LinkBackend(RecordingBackend):
    """Name lookups answered from the links the real netns has at that point."""

    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def name_to_index(self, name):
        return self.names.get(name, 0)


def _real_links(ns) -> dict:
    out = subprocess.run(["ip", "-netns", ns.name, "-j", "link", "show"], capture_output=True,
                         text=True).stdout
    return {d["ifname"]: d["ifindex"] for d in json.loads(out or "[]")}


def test_link_and_addr_requests_equal_real_ip():
    require(have_tools(), "needs root, ip and strace")
    ns = RealNetns()
    try:
        for cmd in LINK_FORMS:
            names = _real_links(ns)
            real, _, err, _ = ns.ip(cmd, trace=True, protocol="NETLINK_ROUTE")
            real = [d for d in real if struct.unpack_from("<H", d, 4)[0] in _RTM_CHANGES]
            assert len(real) >= 1 + cmd.startswith("link"), (cmd, err)   # link: probe + request
            b = _LinkBackend(names)
            r = run_line(b, shlex.split(cmd))
            ours = [d for s in b.sockets for d in s.sent
                    if struct.unpack_from("<H", d, 4)[0] in _RTM_CHANGES]
            assert [_norm(d).hex() for d in ours] == [_norm(d).hex() for d in real], (cmd, err)
    finally:
        ns.close()


def test_link_parse_errors_match_real_ip():
    require(have_tools(), "needs root, ip and strace")
    ns = RealNetns()
    try:
        subprocess_names = _real_links(ns)
        for cmd in LINK_PARSE_ERRORS:
            _, out, err, rc = ns.ip(cmd)
            r = run_line(_LinkBackend(subprocess_names), shlex.split(cmd))
            assert (r.stdout, r.stderr, r.status) == (out, err, rc), cmd
    finally:
        ns.close()
