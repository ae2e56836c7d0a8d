"""The lifetime of a namespace made by ``unshare(CLONE_NEWNET)`` (net/core/net_namespace.c
``get_net`` / ``put_net`` → ``cleanup_net``; fs/nsfs.c for the bind mount that names it).

On Linux such a namespace lives while anything holds a reference: a process in it, a socket
opened there (``sk_net``), an open nsfs fd, a bind mount of it (``ip netns add NAME``).
``ip netns del NAME`` only unmounts and unlinks the name; the namespace goes with its last
reference, and ``cleanup_net`` then destroys its devices (a veth's peer in another namespace
with it, hardware ports back to init_net: ``default_device_exit_net``).

The emulation counts what the server can see: the bound name, the processes the shim said
moved into it (``netns_unshare``, ``netns_enter``; the server watches them and calls
:func:`process_exit` when one ends) and the open netlink sockets made in it. Not counted,
unlike Linux: a child forked by such a process that never talked to the server and was not
started in it (``kernel.find_processes``: the server looks for processes whose environment
says they are in it, $XFRMD_NETNS, when the last known holder goes). A placeholder fd
(``/proc/self/ns/net``, ``/run/netns/NAME`` opened and kept) is not seen either, so a
process that leaves a namespace by setns/unshare is taken to keep one: the namespace it left
stays held until that process exits (``kernel.pid_held``; ipsec.c's parent opens
/proc/self/ns/net, unshare()s on and setns()es back later). Namespaces of the topology and of ``xfrmd ctl netns add`` are the owner's:
they go only with ``xfrmd ctl netns del``."""
from __future__ import annotations

import errno as E
import itertools
from typing import TYPE_CHECKING

from .errors import KernelError

if TYPE_CHECKING:
    from .kernel import Kernel, NetNamespace

_detached = itertools.count(1)


def in_use(kernel: Kernel, ns: NetNamespace) -> bool:
    """Whether anything the server sees still holds ``ns`` (``refcount_read(&net->ns.count)``)."""
    if not ns.refcounted:
        return True                    # the owner's: topology, `xfrmd ctl netns add`
    if ns.name in kernel.netns_bound:
        return True                    # the bind mount on /run/netns/NAME
    if any(name == ns.name for name in kernel.pid_netns.values()):
        return True                    # a process in it
    if any(ns.name in held for held in kernel.pid_held.values()):
        return True                    # a process that left it and may keep an nsfs fd
    return any(ns.sockets.values())    # an open socket made in it (sk_net)


def put_net(kernel: Kernel, name: str) -> None:
    """``put_net``: a reference to namespace ``name`` went away; the last one destroys it
    (``cleanup_net``: the pernet exits, ``default_device_exit_net``)."""
    ns = kernel.namespaces.get(name)
    if ns is None or in_use(kernel, ns):
        return
    if kernel.find_processes is not None:
        # a process that never talked to the server but was started in it (a forked and
        # exec'd child: `ip netns exec NS sh -c 'daemon &'`) holds it from now on
        names = {ns.name}
        former = ns.former_name
        if former and former not in kernel.namespaces:
            names.add(former)
        found = [(p, s) for p, s in kernel.find_processes(names) if p not in kernel.pid_netns]
        if found:
            for pid, start in found:
                note_pid(kernel, pid, start, ns.name)
            return
    kernel.del_netns(name)


def note_pid(kernel: Kernel, pid: int, start: int, name: str) -> None:
    """Process ``pid`` (started at ``start``) is in namespace ``name`` from now on
    (``switch_task_namespaces``); the one it left loses a reference."""
    old = kernel.pid_netns.get(pid)
    kernel.pid_netns[pid] = name
    kernel.pid_start[pid] = start
    if kernel.watch_process is not None:
        kernel.watch_process(pid, start)
    if old is not None and old != name:
        kernel.pid_held.setdefault(pid, set()).add(old)     # it may keep an fd of it


def process_exit(kernel: Kernel, pid: int) -> None:
    """Process ``pid`` ended (``exit_task_namespaces``): its namespace loses a reference."""
    name = kernel.pid_netns.pop(pid, None)
    kernel.pid_start.pop(pid, None)
    held = kernel.pid_held.pop(pid, set())
    for n in ({name} | held) - {None}:
        put_net(kernel, n)


def netns_umount(kernel: Kernel, name: str) -> None:
    """``ip netns del NAME`` (its ``umount2`` of /run/netns/NAME): the name goes at once; the
    namespace lives on, unnamed, while a process or socket holds it. The owner's namespaces
    are destroyed at once, as ``xfrmd ctl netns del`` does."""
    ns = kernel.namespaces.get(name)
    if ns is None:
        raise KernelError(E.ENOENT, f"no network namespace {name!r}")
    if not ns.refcounted:
        kernel.del_netns(name)
        return
    kernel.netns_bound.discard(name)
    new = f"{kernel.UNNAMED}detached-{next(_detached)}"
    del kernel.namespaces[name]
    ns.name = new
    kernel.set_former_name(ns, name)
    kernel.namespaces[new] = ns
    for pid, n in list(kernel.pid_netns.items()):
        if n == name:
            kernel.pid_netns[pid] = new
    kernel.rename_held(name, new)
    put_net(kernel, new)          # the mount's reference (nsfs_evict → put_net)


def resolve(kernel: Kernel, name: str, pid: int) -> str:
    """The namespace a connection of process ``pid`` naming ``name`` ($XFRMD_NETNS) means: a
    process still in a namespace whose name ``ip netns del`` removed keeps using it, and so
    does a descendant of such a process (``kernel.parent_of``: the server reads
    /proc/PID/stat), which holds the namespace from then on as its ancestor does."""
    if not pid or name not in kernel.former_names:     # kept by Kernel.set_former_name
        return name
    p = pid
    for _ in range(64):
        moved = kernel.pid_netns.get(p)
        if moved is not None:
            ns = kernel.namespaces.get(moved)
            if ns is None or ns.former_name != name:
                return name
            if p != pid:
                note_pid(kernel, pid, 0, moved)
            return moved
        p = kernel.parent_of(p) if kernel.parent_of is not None else 0
        if p <= 1:
            break
    return name
