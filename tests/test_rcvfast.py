"""xfrmd/netlink/_rcvfast.c, an XFRM request's framework in C (Kernel.deliver's common case:
netlink_rcv_skb, netlink_rcv_msg, xfrm_user_rcv_msg's checks, the ACK and its queueing)
against the Python it stands for. Each sequence of datagrams, generated from the requests
charon sends and mutated (flags, type, length, bytes, a second message), is delivered to two
kernels, one with the C receive and one without; what a user can see must be the same: every
datagram queued on every socket (errno, echoed request, extack), what each socket was
charged and dropped, what the tracers saw, the counters, and the SAD and SPD dumped after."""
from __future__ import annotations

import errno as E
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import bench_charon_mix as B
from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.errors import KernelError
from xfrmd.xfrm import user

if cext.pure_python():
    pytest.skip("the pure-Python run: nothing to compare", allow_module_level=True)

needs_c = pytest.mark.skipif(user._rcvfast is None,
                             reason="the C receive is not built (python3 -m xfrmd.cext build)")
M = X.XfrmMsg
IFINDEX = 2
F_REQ, F_ACK, F_ECHO = N.NLM_F_REQUEST, N.NLM_F_ACK, N.NLM_F_ECHO


def bases() -> list[bytes]:
    """charon's requests for one Child SA (bench_charon_mix), and a few others."""
    return [B.allocspi(11), B.updsa(12, 1, 0xC0000001, IFINDEX), B.newsa(13, 1, IFINDEX),
            B.newpolicy(14, 1, X.XFRM_POLICY_IN, IFINDEX),
            B.newpolicy(15, 1, X.XFRM_POLICY_FWD, IFINDEX),
            B.newpolicy(16, 1, X.XFRM_POLICY_OUT, IFINDEX),
            N.encode_msg(M.GETSADINFO, F_REQ, 17, 0, b"\xff" * 4),
            N.encode_msg(M.GETSPDINFO, F_REQ | F_ACK, 18, 0, b"\xff" * 4),
            N.encode_msg(M.FLUSHSA, F_REQ | F_ACK, 19, 0, b"\0" * 4)]


class Side:
    """A kernel with one bound XFRM socket, a listener of every XFRM group and a tracer."""

    def __init__(self, c: bool):
        self.k, self.s, _ = B.kernel()
        if not c:
            vars(self.k).pop("deliver")           # Kernel.deliver, the Python reference
        assert (type(self.k.deliver).__name__ == "Deliver") == c
        self.listener = self.k.socket(N.NETLINK_XFRM)
        self.k.bind(self.listener)
        self.listener.groups = (1 << X.XFRMNLGRP_MAX) - 1
        self.socks = [self.s, self.listener]
        self.seen: list = []
        self.k.tracers.append(lambda what, sock, d: self.seen.append((what, sock.id, bytes(d))))

    def op(self, op) -> None:
        kind, arg = op
        s = self.socks[0]
        if kind == "send":
            self.k.deliver(s, arg)
        elif kind == "socket":        # a new socket, unbound: the next send autobinds it
            s = self.k.socket(N.NETLINK_XFRM)
            self.socks.insert(0, s)
        else:
            setattr(s, kind, arg)

    def view(self) -> tuple:
        socks = tuple((s.portid, s.bound, list(s.rx), list(s.rx_truesize), s.rx_bytes, s.drops,
                       s.congested, s.reply_dropped) for s in self.socks)
        st_ = self.k.stats
        return socks, st_.datagrams, st_.internal_errors, list(self.seen)

    def model(self) -> list[bytes]:
        """The SAD and the SPD dumped through a fresh socket."""
        s = self.k.socket(N.NETLINK_XFRM)
        self.k.bind(s)
        out = []
        for t in (M.GETSA, M.GETPOLICY):
            self.k.deliver(s, N.encode_msg(t, F_REQ | N.NLM_F_DUMP, 1, 0, b""))
            while (d := s.pop()) is not None:
                out.append(d)
        return out


def mutate(d: bytes, how) -> bytes:
    kind, a, b = how
    b16 = struct.pack("=H", b & 0xFFFF)
    if kind == "flags":
        return d[:6] + b16 + d[8:]
    if kind == "type":
        return d[:4] + struct.pack("=H", a) + d[6:]
    if kind == "len":                   # nlmsg_len claims another length
        return struct.pack("=I", b % (len(d) + 40)) + d[4:]
    if kind == "cut":                   # the datagram (and its nlmsg_len) shortened
        n = max(16, len(d) - 1 - b % len(d))
        return struct.pack("=I", n) + d[4:n]
    if kind == "byte" and len(d) > 16:  # a byte of the payload changed
        i = 16 + a % (len(d) - 16)
        return d[:i] + bytes([b & 0xFF]) + d[i + 1:]
    if kind == "tail":                  # bytes after the message (too few for another)
        return d + bytes(b % 16)
    if kind == "two":                   # a second message in the datagram
        return d + d
    return d


MUTATION = st.tuples(st.sampled_from(["none", "flags", "type", "len", "cut", "byte", "tail",
                                      "two"]),
                     st.integers(0x10, 0x30), st.integers(0, 0xFFFF))
FLAGS = st.sampled_from([F_REQ, F_REQ | F_ACK, F_ACK, F_REQ | F_ACK | F_ECHO, 0,
                         F_REQ | N.NLM_F_DUMP, F_REQ | F_ACK | N.NLM_F_ROOT])
SEND = st.builds(lambda i, f, m: ("send", mutate(mutate(bases()[i], ("flags", 0, f)), m)),
                 st.integers(0, len(bases()) - 1), FLAGS, MUTATION)
SETTING = st.one_of(
    st.tuples(st.sampled_from(["cap_ack", "ext_ack", "cap_net_admin"]), st.booleans()),
    st.tuples(st.just("rcvbuf"), st.sampled_from([0, 900, 2000, 4000, 212992])),
    st.tuples(st.just("socket"), st.none()))
OPS = st.lists(st.one_of(SEND, SEND, SEND, SETTING), min_size=1, max_size=14)


def run_both(ops) -> tuple[Side, Side]:
    c, py = Side(True), Side(False)
    for op in ops:
        errs = []
        for side in (c, py):
            try:
                side.op(op)
                errs.append(None)
            except Exception as exc:        # noqa: BLE001 - compared below
                errs.append(type(exc))
        assert errs[0] == errs[1], op
        assert c.view() == py.view(), op
    return c, py


@needs_c
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_generated_datagrams_give_what_the_python_gives(ops):
    c, py = run_both(ops)
    assert c.model() == py.model()


@needs_c
def test_charon_mix_takes_the_c_path_and_answers_alike(monkeypatch):
    """The requests of a Child SA (with ACKs asked and not, a socket with CAP_ACK and one
    with EXT_ACK, a success and an error): the same answers, SAD and SPD; the C path took
    every one of them (the Python's netlink_rcv_skb ran only for the other kernel)."""
    from xfrmd import kernel as K
    ran = []
    real = K.netlink_rcv_skb

    def spy(kernel, *a):
        ran.append(kernel)
        return real(kernel, *a)
    monkeypatch.setattr(K, "netlink_rcv_skb", spy)
    ops = [("send", d) for d in bases()[:6]]
    ops += [("cap_ack", True), ("send", bases()[5]), ("ext_ack", True), ("send", bases()[1])]
    c, py = run_both(ops)
    assert c.k not in ran and ran.count(py.k) == 8
    errnos = [struct.unpack_from("=i", d, 16)[0] for d in c.s.rx
              if struct.unpack_from("=H", d, 4)[0] == N.NLMSG_ERROR]
    assert errnos == [-E.ESRCH, 0, 0, 0, 0, -E.EEXIST, -E.ESRCH]
    assert c.model() == py.model()


@needs_c
def test_a_full_receive_buffer_is_left_to_the_python_and_drops_alike():
    """An ACK that does not fit: Kernel.unicast decides (overrun, ENOBUFS frame, EAGAIN)."""
    ops = [("rcvbuf", 0), ("send", bases()[3]), ("send", bases()[4]), ("send", bases()[5]),
           ("send", bases()[7])]
    c, py = run_both(ops)
    assert c.s.drops == py.s.drops >= 1


@needs_c
@pytest.mark.parametrize("exc, errno", [(RuntimeError("boom"), -E.EINVAL),
                                        (KernelError(E.EEXIST, "it is there"), -E.EEXIST)])
def test_a_handler_that_raises_is_answered_as_netlink_rcv_msg_answers(monkeypatch, exc, errno):
    """The C receive hands the exception to core.handler_failed: EINVAL and an internal
    error counted for a bug, the KernelError's errno and extack for a model error."""
    def boom(req):
        raise exc
    monkeypatch.setitem(user.HANDLERS, int(M.NEWPOLICY), boom)
    c, py = run_both([("ext_ack", True), ("send", bases()[3])])
    [ack] = c.s.rx
    assert struct.unpack_from("=i", ack, 16)[0] == errno
    assert c.k.stats.internal_errors == py.k.stats.internal_errors == (errno == -E.EINVAL)


@needs_c
def test_a_replaced_rcv_msg_is_called(monkeypatch):
    """A family whose rcv_msg was replaced (a test's, a fault's) gets every request."""
    calls = []

    def rcv_msg(self, req):
        calls.append(req.hdr.type)
        return user.Reply(-E.ENOSYS)
    monkeypatch.setattr(user.XfrmUser, "rcv_msg", rcv_msg)
    c, py = run_both([("send", bases()[3])])
    assert calls == [M.NEWPOLICY, M.NEWPOLICY]
    assert struct.unpack_from("=i", c.s.rx[0], 16)[0] == -E.ENOSYS
