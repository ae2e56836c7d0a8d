"""The lifetime of an unshare()d namespace in the model (xfrmd/net_namespace.py): the name,
a process and a socket each hold it; the last one to go destroys it."""
from __future__ import annotations

import errno

import pytest
from netlink_codec.netlink import NETLINK_ROUTE

from xfrmd.errors import KernelError
from xfrmd.net_namespace import netns_umount, note_pid, process_exit, resolve


def test_the_name_a_process_and_a_socket_each_hold_the_namespace(kernel):
    ns = kernel.unshare_netns(100)
    kernel.rename_netns(ns.name, "blue")          # ip netns add blue
    sock = kernel.socket(NETLINK_ROUTE, "blue", pid=100)
    netns_umount(kernel, "blue")                  # ip netns del blue
    assert "blue" not in kernel.namespaces and ns.name in kernel.namespaces
    assert resolve(kernel, "blue", 100) == ns.name   # its XFRMD_NETNS still says blue
    process_exit(kernel, 100)
    assert ns.name in kernel.namespaces           # the socket holds it
    kernel.close(sock)
    assert ns.name not in kernel.namespaces and getattr(ns, "dying", False)


def test_a_descendant_reaches_the_namespace_of_a_deleted_name(kernel):
    ns = kernel.unshare_netns(100)
    kernel.rename_netns(ns.name, "red")
    netns_umount(kernel, "red")
    kernel.parent_of = {201: 200, 200: 100}.get
    assert resolve(kernel, "red", 201) == ns.name
    assert kernel.pid_netns[201] == ns.name       # and holds it from now on
    process_exit(kernel, 100)
    assert ns.name in kernel.namespaces
    process_exit(kernel, 201)
    assert ns.name not in kernel.namespaces
    assert resolve(kernel, "red", 300) == "red"   # anyone else: the name as given


def test_owner_namespaces_go_at_once_and_unnamed_ones_with_their_process(kernel):
    kernel.add_netns("topo")
    kernel.pid_netns[5] = "topo"
    netns_umount(kernel, "topo")                  # not unshare()d: destroyed at once
    assert "topo" not in kernel.namespaces
    ns = kernel.unshare_netns(7)
    process_exit(kernel, 7)
    assert ns.name not in kernel.namespaces


def test_a_namespace_left_by_setns_stays_until_the_process_exits(kernel):
    """ipsec.c's parent: unshare() (A), keep /proc/self/ns/net's fd, setns() back, unshare()
    again (B), setns() back, and later setns() into A and B through the kept fds. The fds are
    not seen by the server, so a namespace a process left stays held until it exits."""
    a = kernel.unshare_netns(300)
    note_pid(kernel, 300, 0, "default")           # setns(original fd)
    b = kernel.unshare_netns(300)
    note_pid(kernel, 300, 0, "default")
    assert a.name in kernel.namespaces and b.name in kernel.namespaces
    note_pid(kernel, 300, 0, a.name)              # setns(fd of A) works
    process_exit(kernel, 300)
    assert a.name not in kernel.namespaces and b.name not in kernel.namespaces


def test_a_namespace_deleted_under_two_names_answers_to_the_last_one(kernel):
    """``kernel.former_names`` (what socket() looks in before resolve) follows a namespace
    that loses a second name: the first no longer leads to it."""
    ns = kernel.unshare_netns(100)
    kernel.rename_netns(ns.name, "a")             # ip netns add a
    netns_umount(kernel, "a")                     # ip netns del a: process 100 still in it
    assert kernel.socket(NETLINK_ROUTE, "a", pid=100).netns is ns
    kernel.rename_netns(ns.name, "b")             # ip netns attach b 100
    netns_umount(kernel, "b")
    assert kernel.socket(NETLINK_ROUTE, "b", pid=100).netns is ns
    with pytest.raises(KernelError) as e:
        kernel.socket(NETLINK_ROUTE, "a", pid=100, create=False)
    assert e.value.errno == errno.ENOENT
    assert kernel.former_names == {"b": 1}


def test_once_the_namespace_is_gone_its_former_name_is_only_a_name(kernel):
    ns = kernel.unshare_netns(100)
    kernel.rename_netns(ns.name, "red")
    netns_umount(kernel, "red")
    process_exit(kernel, 100)                     # the last holder: destroyed
    assert ns.name not in kernel.namespaces and kernel.former_names == {}
    again = kernel.unshare_netns(100)             # the pid reused, `ip netns add red` again
    kernel.rename_netns(again.name, "red")
    sock = kernel.socket(NETLINK_ROUTE, "red", pid=100)
    assert sock.netns is again
    kernel.close(sock)
    assert again.name in kernel.namespaces        # still bound and its process in it


def test_a_closed_socket_gives_back_its_port_and_leaves_the_namespace(kernel):
    """netlink_release → netlink_remove: the port id is free for the next socket (each
    `ip` line of `ip -batch` opens one with the same id), and a multicast no longer
    reaches it."""
    first = kernel.socket(NETLINK_ROUTE, "default", pid=4242)
    kernel.bind(first, 4242, 1)
    with pytest.raises(KernelError) as e:
        kernel.bind(kernel.socket(NETLINK_ROUTE, "default", pid=4242), 4242)
    assert e.value.errno == errno.EADDRINUSE
    kernel.close(first)
    second = kernel.socket(NETLINK_ROUTE, "default", pid=4242)
    kernel.bind(second, 4242)
    assert (second.portid, second.bound, second.groups, second.rcvbuf) == (4242, True, 0, 212992)
    assert first not in kernel.namespaces["default"].sockets[NETLINK_ROUTE]
    kernel.multicast(kernel.namespaces["default"], NETLINK_ROUTE, 1, b"\0" * 16)
    assert first.pop() is None
