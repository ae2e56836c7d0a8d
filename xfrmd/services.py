"""Answers to what libc and programs learn outside netlink (the shim's service connection,
docs/protocol.md) and the ``xfrmd ctl`` verbs. Subsystems register their ops here."""
from __future__ import annotations

import errno as E
import sys
from typing import Callable

from . import ioctl, vfs
from .capability import NONROOT_RECV_PROTOCOLS, ROOT, service_allowed
from .errors import KernelError
from .kconfig import kconfig_service
from .net_namespace import netns_umount, note_pid, resolve
from .stats import stats_service

# ops that do not act on the connection's namespace (knobs of the whole kernel, or ops that
# name their namespace in the request): they work whatever namespace the HELLO named, so
# `xfrmd ctl clock advance` reaches a server whose topology has no "default"
KERNEL_WIDE_OPS = frozenset({"clock_advance", "netns_add", "netns_del", "netns_list", "capable",
                             "netns_unshare", "netns_bind", "netns_umount", "netns_enter", "netns_pid",
                             "nlsock_state",
                             "xfrm_type", "crypto_alg", "genetlink",
                             "fault_add", "fault_list", "fault_clear"})


def handle(kernel, netns_name: str, request: dict, *, uid: int = 0, pid: int = 0,
           cred=None) -> dict:
    """``cred`` (the peer's :class:`~xfrmd.capability.Credentials`; None in-process, where
    everything is allowed) decides which ops the caller may use (docs/security.md)."""
    op = request.get("op")
    fn = kernel.services.get(op)
    if fn is None:
        return {"errno": E.EOPNOTSUPP, "error": f"xfrmd: unknown service op {op!r}"}
    if cred is not None:
        why = service_allowed(op, request, cred)
        if why is not None:
            return {"errno": E.EPERM, "error": f"xfrmd: {why}"}
    try:
        # never creates a namespace: only `netns add` and the topology do
        ns = kernel.netns(resolve(kernel, netns_name, pid), create=False)
    except Exception as e:  # noqa: BLE001 - reported to the caller
        if not (op in KERNEL_WIDE_OPS or op in ("xmit", "xfrm_stat") and request.get("netns")):
            return {"errno": getattr(e, "errno", E.ENOENT), "error": str(e)}
        ns = None           # the op does not use the connection's namespace
    try:
        if op == "capable":
            return fn(kernel, ns, request, cred)
        return fn(kernel, ns, request)
    except KernelError as e:        # the one conversion of a model error for this entry point
        return e.service()


def _ping(kernel, ns, request) -> dict:
    return {"errno": 0, "netns": ns.name}


def _capable(kernel, ns, request, cred=None) -> dict:
    """What the caller may do, for the shim's local socket options: CAP_NET_ADMIN in the
    emulated namespaces (group joins of protocols without NL_CFG_F_NONROOT_RECV) and in
    the init user namespace (SO_RCVBUFFORCE); ``nonroot_recv``: bit p set for protocol p
    whose groups anyone may join."""
    c = cred or ROOT
    return {"errno": 0, "net_admin": int(c.net_admin), "net_admin_init": int(c.net_admin_init),
            "nonroot_recv": sum(1 << p for p in NONROOT_RECV_PROTOCOLS)}


def _netns_list(kernel, ns, request) -> dict:
    return {"errno": 0, "namespaces": sorted(kernel.namespaces)}


def _netns_add(kernel, ns, request) -> dict:
    kernel.add_netns(request["name"])
    return {"errno": 0}


def _netns_del(kernel, ns, request) -> dict:
    kernel.del_netns(request["name"])
    return {"errno": 0}


def _netns_umount(kernel, ns, request) -> dict:
    """The shim's ``umount2`` of /run/netns/NAME (``ip netns del``): the name goes; an
    unshare()d namespace lives on while held (xfrmd/net_namespace.py)."""
    netns_umount(kernel, str(request["name"]))
    return {"errno": 0}


def _netns_unshare(kernel, ns, request) -> dict:
    """The shim's ``unshare(CLONE_NEWNET)``: a fresh unnamed namespace for that process."""
    new = kernel.unshare_netns(int(request["pid"]), int(request.get("start", 0)))
    return {"errno": 0, "name": new.name}


def _netns_bind(kernel, ns, request) -> dict:
    """The shim's bind mount of /proc/PID/ns/net onto /run/netns/NAME: the namespace process
    PID is in takes NAME."""
    pid, name = int(request["pid"]), str(request["name"])
    current = kernel.pid_netns.get(pid)
    if current is None:
        return {"errno": E.EOPNOTSUPP, "error": f"xfrmd: process {pid} did not unshare() its "
                "network namespace; naming a namespace that has a name is not emulated"}
    kernel.rename_netns(current, name)
    return {"errno": 0}


def _netns_enter(kernel, ns, request) -> dict:
    """The shim's ``setns()`` into /run/netns/NAME: that process is in NAME from now on."""
    name = str(request["name"])
    kernel.netns(name, create=False)
    note_pid(kernel, int(request["pid"]), int(request.get("start", 0)), name)
    return {"errno": 0}


def run_netns_entries(kernel, ns, path: str) -> list[tuple[str, str]]:
    """/run/netns as ``ip netns list`` reads it: the names ``ip netns add`` bound there."""
    if path not in ("/run/netns", "/var/run/netns"):
        raise FileNotFoundError(path)
    return [(n, "file") for n in sorted(kernel.netns_bound) if n in kernel.namespaces]


def _clock_advance(kernel, ns, request) -> dict:
    ran = kernel.advance(float(request["seconds"]))
    return {"errno": 0, "timers_run": ran}


def _read_file(kernel, ns, request) -> dict:
    err, text = vfs.read_file(kernel, ns, request["path"])
    return {"errno": err, "data": text} if not err else {"errno": err}


def _write_file(kernel, ns, request) -> dict:
    return {"errno": vfs.write_file(kernel, ns, request["path"], request.get("data", ""))}


def _stat_file(kernel, ns, request) -> dict:
    err, kind, mode = vfs.stat(kernel, ns, request["path"])
    if err:
        return {"errno": err}
    answer = {"errno": 0, "dir": int(kind == "dir"), "mode": mode,
              "path": vfs.realpath(kernel, ns, request["path"])}
    lerr, target = vfs.readlink(kernel, ns, request["path"])
    if not lerr:
        answer["link"] = target          # the path itself is a link: what lstat/readlink see
    return answer


def _list_dir(kernel, ns, request) -> dict:
    err, entries = vfs.list_dir(kernel, ns, request["path"])
    kinds = {"file": 0, "dir": 1, "link": 2}
    return {"errno": err, "entries": [[n, kinds.get(k, 0)] for n, k in entries]} if not err else {"errno": err}


SIOCETHTOOL, ETHTOOL_GFEATURES = 0x8946, 0x3A


def _ioctl(kernel, ns, request) -> dict:
    err, out = ioctl.handle(kernel, ns, int(request["request"]), request.get("ifname", ""),
                            bytes.fromhex(request.get("data", "")))
    if err:
        return {"errno": err}
    answer = {"errno": 0, "data": out.hex()}
    # a bond's GFEATURES is recomputed from its slaves when asked (bond_compute_features):
    # not an answer the shim may keep on the link generation (docs/protocol.md)
    if int(request["request"]) == SIOCETHTOOL and out[:4] == ETHTOOL_GFEATURES.to_bytes(4, sys.byteorder):
        dev = ns.links.by_name(request.get("ifname", "")) if hasattr(ns, "links") else None
        if dev is None or dev.bond is not None:
            answer["keep"] = 0
    return answer


def _nlsock_state(kernel, ns, request) -> dict:
    """A program that inherited a netlink fd across exec (no FD_CLOEXEC) brings no shim state
    with it: the shim finds its socket again by the inode of its end of the connection (sent
    in HELLO) and rebuilds what getsockname/getsockopt answer from this."""
    ino = int(request.get("ino", 0))
    for n in kernel.namespaces.values():
        for socks in n.sockets.values():
            for s in socks:
                if ino and s.client_ino == ino and not s.closed:
                    return {"errno": 0, "protocol": s.protocol, "type": s.sock_type,
                            "bound": int(s.bound), "portid": s.portid, "groups": s.groups & 0xFFFFFFFF,
                            "ext_ack": int(s.ext_ack), "cap_ack": int(s.cap_ack),
                            "strict_chk": int(s.strict_chk), "no_enobufs": int(s.no_enobufs),
                            "rcvbuf": s.rcvbuf}
    return {"errno": E.ENOENT}


def _fault_add(kernel, ns, request) -> dict:
    """Arm a fault rule (xfrmd/fault.py); the answer carries its id."""
    fields = {k: v for k, v in request.items() if k != "op"}
    try:
        rule = kernel.faults.add(fields)
    except ValueError as e:
        return {"errno": E.EINVAL, "error": f"fault: {e}"}
    return {"errno": 0, "id": rule.id, "fault": rule.as_dict()}


def _fault_list(kernel, ns, request) -> dict:
    return {"errno": 0, "faults": kernel.faults.listing()}


def _fault_clear(kernel, ns, request) -> dict:
    rid = request.get("id")
    try:
        n = kernel.faults.clear(None if rid is None else int(str(rid), 10))
    except ValueError:
        return {"errno": E.EINVAL, "error": f"fault: clear takes a fault id, not {rid!r}"}
    if rid is not None and not n:
        return {"errno": E.ENOENT, "error": f"fault: no fault {rid}"}
    return {"errno": 0, "cleared": n}


CORE_SERVICES: dict[str, Callable] = {
    "ping": _ping,
    "capable": _capable,
    "netns_list": _netns_list,
    "netns_add": _netns_add,
    "netns_del": _netns_del,
    "netns_umount": _netns_umount,
    "netns_unshare": _netns_unshare,
    "netns_bind": _netns_bind,
    "netns_enter": _netns_enter,
    "clock_advance": _clock_advance,
    "read_file": _read_file,
    "write_file": _write_file,
    "stat_file": _stat_file,
    "list_dir": _list_dir,
    "ioctl": _ioctl,
    "nlsock_state": _nlsock_state,
    "fault_add": _fault_add,
    "fault_list": _fault_list,
    "fault_clear": _fault_clear,
    "kconfig": kconfig_service,
    "stats": stats_service,
}


def init(kernel) -> None:
    """The core service ops and the /run/netns listing (each subsystem registers its own
    ops in its own init call)."""
    kernel.services.update(CORE_SERVICES)
    kernel.vfs.register_dir("/run/netns", run_netns_entries)
    kernel.vfs.register_dir("/var/run/netns", run_netns_entries)
