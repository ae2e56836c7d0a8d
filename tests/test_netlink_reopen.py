"""``Kernel.reopen`` (a kept connection's RELEASE, HELLO and BIND_AUTO, once per `ip -batch`
line) reuses the old socket object when nothing can tell: whatever the old socket's state and
whatever is asked, the kernel afterwards must be what ``close`` + ``socket`` (+ ``bind``) make
of it — the same socket ids, port ids, queues, options, listeners masks, namespaces, errors."""
from __future__ import annotations

import errno
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netlink_codec import netlink as N

from xfrmd.capability import Credentials
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel, KernelError
from xfrmd.netlink.socket import DumpState, NetlinkSocket
from xfrmd.topology import load_topology

PID = 4242


def kernel() -> Kernel:
    k = Kernel(ManualClock(), topology=load_topology("bare"), seed=7, admin_uids={0})
    k.add_netns("blue")
    return k


def view(k: Kernel) -> dict:
    """Everything a user of the kernel can see of its sockets: the open ones by id with every
    field, the port tables and listeners masks by socket id, the queued datagrams, what
    is dirty, the namespaces, and the id the next socket gets."""
    socks = {}
    for name, ns in sorted(k.namespaces.items()):
        for proto, ss in ns.sockets.items():
            for s in ss:
                d = {f: getattr(s, f) for f in NetlinkSocket.__slots__
                     if f not in ("netns", "rx", "rx_truesize", "dump", "outq_probe")}
                d.update(netns=name, rx=list(s.rx), rx_truesize=list(s.rx_truesize),
                         dump=s.dump is not None, probe=s.outq_probe is not None)
                socks[s.id] = d
    ports = {(name, p): {port: s.id for port, s in t.items()}
             for name, ns in k.namespaces.items() for p, t in ns.ports.items()}
    listeners = {name: dict(ns.listeners) for name, ns in k.namespaces.items()}
    return dict(socks=socks, ports=ports, listeners=listeners, dirty=sorted(s.id for s in k.dirty),
                namespaces=sorted(k.namespaces), next_id=next(k._sock_ids))


setup_op = st.one_of(
    st.tuples(st.just("queue"), st.binary(min_size=16, max_size=300)),
    st.tuples(st.just("error"), st.just(0)),
    st.tuples(st.just("opt"), st.sampled_from([
        (1, 8, 4096), (1, 8, 1 << 20), (1, 33, 1 << 22), (270, 11, 1), (270, 10, 1),
        (270, 12, 1), (270, 5, 1), (270, 1, 3), (270, 2, 3)])),
    st.tuples(st.just("bind"), st.sampled_from([PID, 77, 0])),
    st.tuples(st.just("field"), st.sampled_from(["outq", "drops", "client_ino", "max_recvmsg_len"])),
    st.tuples(st.just("dump"), st.just(0)),
    st.tuples(st.just("netns_fds"), st.just(0)),
    st.tuples(st.just("dirty"), st.just(0)),
)


def prepare(k: Kernel, old_args: tuple, other: str | None, ops: list) -> NetlinkSocket:
    protocol, netns, pid, uid, stype = old_args
    if other is not None:             # another socket of the process, holding an id
        o = k.socket(N.NETLINK_XFRM, "default", pid=PID)
        k.bind(o, PID if other == "pid" else 0)
    s = k.socket(protocol, netns, pid=pid, uid=uid, sock_type=stype)
    for kind, arg in ops:
        try:
            if kind == "queue":
                s.queue(arg)
            elif kind == "error":
                s.set_error(errno.ENOBUFS)
            elif kind == "opt":
                k.setsockopt(s, *arg)
            elif kind == "bind":
                k.bind(s, arg)
            elif kind == "field":
                setattr(s, arg, 1234)
            elif kind == "dump":
                s.dump = DumpState(seq=1, iterator=iter(()))
            elif kind == "netns_fds":
                s.netns_fds = {3: "blue"}
            else:
                k.dirty.add(s)
        except KernelError:
            pass
    return s


args = st.tuples(st.sampled_from([N.NETLINK_XFRM, N.NETLINK_ROUTE]),
                 st.sampled_from(["default", "blue"]), st.sampled_from([PID, 0, 99]),
                 st.sampled_from([0, 1000]), st.sampled_from([3, 2]))


@settings(max_examples=300, deadline=None)
@given(old=args, same=st.booleans(), new=args, other=st.sampled_from([None, "pid", "auto"]),
       ops=st.lists(setup_op, max_size=8), portid=st.sampled_from([PID, 0, 77]),
       cred=st.sampled_from([None, Credentials(net_admin=False, net_admin_init=False)]))
def test_reopen_is_close_then_socket_then_bind(old, same, new, other, ops, portid, cred):
    protocol, netns, pid, uid, stype = old if same else new
    ref, k = kernel(), kernel()
    a = prepare(ref, old, other, ops)
    b = prepare(k, old, other, ops)
    assert view(ref) == view(k)
    ref.close(a)
    try:
        s = ref.socket(protocol, netns, pid=pid, uid=uid, sock_type=stype, cred=cred, create=False)
        if portid:
            try:
                ref.bind(s, portid)
            except KernelError:
                pass
        want = None
    except KernelError as e:
        want = e.errno
    try:
        k.reopen(b, protocol, netns, pid, uid, stype, cred, portid)
        got = None
    except KernelError as e:
        got = e.errno
    assert got == want
    assert view(k) == view(ref)


def test_the_common_case_reuses_the_object_under_a_new_id():
    """What `ip -batch` does on every line: the same socket object, a new id, the port id
    kept, the options and the queue back to a new socket's."""
    k = kernel()
    s = k.socket(N.NETLINK_XFRM, "default", pid=PID)
    k.bind(s, PID)
    k.setsockopt(s, 1, 8, 4096)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    s.queue(b"x" * 40)
    first = s.id
    r = k.reopen(s, N.NETLINK_XFRM, "default", PID, 0, 3, None, PID)
    assert r is s and r.id > first and not r.closed
    assert r.portid == PID and r.bound and k.netns("default").ports[N.NETLINK_XFRM][PID] is r
    assert not r.ext_ack and r.rcvbuf == 212992 and not r.rx and r.rx_bytes == 0


def test_a_socket_in_a_group_is_closed_and_the_listeners_mask_follows():
    k = kernel()
    s = k.socket(N.NETLINK_XFRM, "default", pid=PID)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 3)
    ns = k.netns("default")
    assert ns.listeners[N.NETLINK_XFRM] == 4
    r = k.reopen(s, N.NETLINK_XFRM, "default", PID, 0, 3, None, PID)
    assert r is not s and s.closed and ns.listeners[N.NETLINK_XFRM] == 0
    assert r.groups == 0 and r.portid == PID


def test_a_namespace_that_went_away_is_enoent_and_the_old_socket_closed():
    k = kernel()
    s = k.socket(N.NETLINK_XFRM, "blue", pid=PID)
    k.bind(s, PID)
    k.del_netns("blue")
    with pytest.raises(KernelError) as e:
        k.reopen(s, N.NETLINK_XFRM, "blue", PID, 0, 3, None, PID)
    assert e.value.errno == errno.ENOENT and s.closed


def _in_place(k: Kernel, s: NetlinkSocket, cred=None, portid: int = PID) -> bool:
    from xfrmd import kernel as K
    return K.reopen_in_place(s, N.NETLINK_XFRM, "default", PID, 0, 3, cred, portid,
                             k.namespaces, k.families, k.former_names, k.dirty, k._sock_ids,
                             k.admin_uids)


def test_the_c_in_place_path_is_taken_when_built():
    """Server._replay calls the C half directly: built, it must take `ip`'s usual line
    (else every line silently pays the Python again)."""
    from xfrmd import kernel as K
    if K.reopen_c is None:
        pytest.skip("C extensions not built (or XFRMD_PURE_PYTHON)")
    assert K.reopen_in_place is not None
    k = kernel()
    s = k.socket(N.NETLINK_XFRM, "default", pid=PID)
    k.bind(s, PID)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    first = s.id
    assert _in_place(k, s, Credentials(net_admin=True, net_admin_init=True))
    assert s.id > first and s.bound and s.portid == PID and not s.ext_ack
    assert s.cap_net_admin and k.netns("default").ports[N.NETLINK_XFRM][PID] is s


@pytest.mark.parametrize("setup", ["queue", "dump", "group", "subclass", "refcounted"])
def test_what_the_c_path_refuses_it_leaves_untouched(setup):
    """A queue to purge, a dump to drop, a group, a subclass, a refcounted namespace: the
    C half says no and changes nothing (Kernel.reopen's Python decides)."""
    from xfrmd import kernel as K
    if K.reopen_c is None:
        pytest.skip("C extensions not built (or XFRMD_PURE_PYTHON)")
    k = kernel()
    if setup == "subclass":
        class Sub(NetlinkSocket):
            __slots__ = ()
        s = Sub(N.NETLINK_XFRM, k.netns("default"), PID, 0, 3, 999)
    else:
        s = k.socket(N.NETLINK_XFRM, "default", pid=PID)
    k.bind(s, PID)
    if setup == "queue":
        s.queue(b"y" * 40)
    elif setup == "dump":
        s.dump = DumpState(seq=1, iterator=iter(()))
    elif setup == "group":
        k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 3)
    elif setup == "refcounted":
        k.netns("default").refcounted = True
    before = view(k)                           # takes the next id: 500 after it
    k._sock_ids = itertools.count(500)
    fields = {f: getattr(s, f) for f in NetlinkSocket.__slots__}
    assert not _in_place(k, s)
    assert {f: getattr(s, f) for f in NetlinkSocket.__slots__} == fields
    after = view(k)
    assert after.pop("next_id") == 500
    before.pop("next_id")
    assert after == before


def test_setup_learns_only_a_class_whose_slots_are_its_own():
    """The C half learns which slots NetlinkSocket.fresh sets by probing the class's own
    __slots__: a subclass (its slots a base's, found by xfrmd/_slots.h's slot_offset) is
    declined, as fresh() would set slots the probe never saw; NetlinkSocket itself is
    learned again."""
    from xfrmd import kernel as K
    if K.reopen_c is None:
        pytest.skip("C extensions not built (or XFRMD_PURE_PYTHON)")

    class Sub(NetlinkSocket):
        __slots__ = ()
    try:
        assert K.reopen_c.setup(Sub) is False
    finally:
        assert K.reopen_c.setup(NetlinkSocket) is True
