"""The lifetime of an unshare()d namespace in the model (xfrmd/net_namespace.py): the name,
a process and a socket each hold it; the last one to go destroys it."""
from __future__ import annotations

from netlink_codec.netlink import NETLINK_ROUTE

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
