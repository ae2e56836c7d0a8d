"""Who may do what: the capability checks of the emulated kernel (docs/security.md).

The emulated kernel behaves as a user namespace owned by the server's user, whose parent is
the server's own user namespace (the emulated "init" user namespace):

* a peer whose effective uid is the owner's has every capability in it, as the creator of a
  user namespace has (``cap_capable``: ``ns->parent == cred->user_ns && ns->owner == euid``);
* any other peer has what its effective capability set says, and only if it lives in the
  server's user namespace — a capability held in a namespace of its own counts for nothing
  here, as a sibling namespace's would not on Linux.

Linux checks the opener's credentials (``netlink_ns_capable`` looks at the socket's file
credentials, ``sk_ns_capable`` at ``sk->sk_socket->file->f_cred``); here they are read once,
when the peer connects, from SO_PEERCRED and the peer's effective capability set
(``capget(2)``, or ``/proc/<pid>/status``; the server does that I/O and hands the set to
:func:`credentials`, the text to :func:`peer_credentials`).

Which check lives where (each cites the kernel function):

* ``xfrm_user_rcv_msg``: every XFRM message needs CAP_NET_ADMIN, GETs included;
* ``rtnetlink_rcv_msg``: every message kind other than GET needs CAP_NET_ADMIN;
* ``genl_family_rcv_msg``: ops with GENL_UNS_ADMIN_PERM need it in the netns's user
  namespace, ops with GENL_ADMIN_PERM in the init user namespace;
* ``netlink_bind`` / ``netlink_setsockopt(NETLINK_ADD_MEMBERSHIP)``: joining a group needs
  it unless the protocol's kernel socket was made with NL_CFG_F_NONROOT_RECV (rtnetlink and
  genetlink are, NETLINK_XFRM is not) — ``netlink_allowed``;
* ``sk_setsockopt(SO_RCVBUFFORCE)``: CAP_NET_ADMIN in the init user namespace.
"""
from __future__ import annotations

from dataclasses import dataclass

CAP_NET_ADMIN = 12

# protocols whose kernel socket has NL_CFG_F_NONROOT_RECV in netlink_kernel_cfg.flags:
# anyone may join their groups (rtnetlink_net_init, genl_pernet_init set it;
# xfrm_user_net_init does not)
NONROOT_RECV_PROTOCOLS = frozenset({0, 16})     # NETLINK_ROUTE, NETLINK_GENERIC


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the emulated kernel knows of a peer (``struct cred`` of the opener)."""
    pid: int = 0
    uid: int = 0
    gid: int = 0
    owner: bool = True           # effective uid is the server's owner's (or root's)
    net_admin: bool = True       # CAP_NET_ADMIN in the emulated namespaces' user namespace
    net_admin_init: bool = True  # CAP_NET_ADMIN in the init user namespace


# what an in-process kernel (tests, replay) grants: everything
ROOT = Credentials()


def cap_effective(status: str) -> tuple[int | None, int]:
    """(effective uid, CapEff mask) from a ``/proc/<pid>/status`` text; (None, 0) when the
    text has no such lines (the process is gone or the file is not what it should be)."""
    euid, caps = None, 0
    i = status.find("\nUid:")
    if i >= 0:
        parts = status[i + 5:status.find("\n", i + 5)].split()
        if len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit():
            euid = int(parts[1])
    i = status.find("\nCapEff:")
    if i >= 0:
        try:
            caps = int(status[i + 8:status.find("\n", i + 8)].strip() or "0", 16)
        except ValueError:
            caps = 0
    return euid, caps


def peer_credentials(pid: int, uid: int, gid: int, *, owner_uid: int, status: str | None,
                     same_userns: bool) -> Credentials:
    """The capabilities a peer has, decided as ``cap_capable`` would.

    ``uid`` is SO_PEERCRED's (the effective uid at connect time); ``status`` the peer's
    ``/proc/<pid>/status`` read right after accept (None if it could not be read: the peer
    then has only what its uid gives); ``same_userns`` whether the peer lives in the
    server's user namespace."""
    caps = 0
    if status is not None and same_userns:
        euid, mask = cap_effective(status)
        if euid == uid:            # not another process that got the pid in the meantime
            caps = mask
    return credentials(pid, uid, gid, owner_uid=owner_uid, caps=caps)


def credentials(pid: int, uid: int, gid: int, *, owner_uid: int, caps: int) -> Credentials:
    """The same decision from ``caps``: the peer's effective capability set as it counts in
    the server's user namespace (0 when the peer lives in another one, or the set could not
    be read or not be trusted to be the peer's)."""
    held = bool(caps >> CAP_NET_ADMIN & 1)
    owner = uid == owner_uid or uid == 0
    # the owner's uid has every capability in the namespace it owns; root is the owner of
    # everything in practice (the init namespace's owner), but only with its capabilities
    # does it hold CAP_NET_ADMIN in the init namespace itself
    net_admin = uid == owner_uid or held
    return Credentials(pid=pid, uid=uid, gid=gid, owner=owner, net_admin=net_admin,
                       net_admin_init=held)


def netlink_allowed(protocol: int, cred: Credentials) -> bool:
    """``netlink_allowed(sock, NL_CFG_F_NONROOT_RECV)``: may this socket join groups?"""
    return protocol in NONROOT_RECV_PROTOCOLS or cred.net_admin


# dev_ethtool: "Allow some commands to be done by anyone" — the ETHTOOL_G* commands below
# (for ETHTOOL_PERQUEUE, its sub-command); every other command needs CAP_NET_ADMIN in the
# netns's user namespace
ETHTOOL_PERQUEUE = 0x4B
ETHTOOL_ANYONE = frozenset({
    0x01, 0x03, 0x07, 0x0A, 0x0E, 0x10, 0x12, 0x14, 0x16, 0x18, 0x37, 0x1B, 0x1D, 0x4A, 0x1E,
    0x20, 0x21, 0x23, 0x2B, 0x25, 0x27, 0x29, 0x2D, 0x2E, 0x2F, 0x30, 0x38, 0x46, 0x3A, 0x3C,
    0x41, 0x44, 0x48, 0x4E, 0x4C, 0x50})
SIOCSIFFLAGS, SIOCETHTOOL = 0x8914, 0x8946


def ioctl_allowed(request: int, data: bytes, cred: Credentials) -> bool:
    """``dev_ioctl``: SIOCSIF* need CAP_NET_ADMIN; ``dev_ethtool`` as above."""
    if cred.net_admin:
        return True
    if request == SIOCSIFFLAGS:
        return False
    if request == SIOCETHTOOL and len(data) >= 4:
        cmd = int.from_bytes(data[:4], "little")
        if cmd == ETHTOOL_PERQUEUE and len(data) >= 8:
            cmd = int.from_bytes(data[4:8], "little")
        return cmd in ETHTOOL_ANYONE
    return True


# Service ops (docs/protocol.md) anyone who may connect can use: what libc and programs
# learn without privilege on Linux (interface names and addresses, the readable virtual
# files, the read ioctls) and the server's own bookkeeping. Every other op is an `xfrmd ctl`
# verb — a hardware event or a root-only knob of the emulated machine — and needs the
# server's owner (or root); a new op is owner-only unless listed here.
OPEN_SERVICE_OPS = frozenset({
    "ping", "netns_list", "if_nametoindex", "if_indextoname", "if_nameindex", "getifaddrs",
    "read_file", "stat_file", "list_dir", "ioctl", "nlsock_state", "capable", "links",
    "netns_pid",
    "inet_send_check",
})
# writes to /proc/sys/net/… (net_ctl_permissions: CAP_NET_ADMIN in the netns's user
# namespace gives the owner's write bit)
NET_ADMIN_SERVICE_OPS = frozenset({"write_file"})


def service_allowed(op: str, request: dict, cred: Credentials | None) -> str | None:
    """None if ``cred`` may run service op ``op``, else why not (the EPERM's text)."""
    if cred is None or cred.owner or op in OPEN_SERVICE_OPS and op != "ioctl":
        return None
    if op == "ioctl":
        try:
            ok = ioctl_allowed(int(request.get("request", 0)), bytes.fromhex(request.get("data", "")), cred)
        except (TypeError, ValueError):
            return None          # the handler answers the malformed request
        return None if ok else "ioctl needs CAP_NET_ADMIN"
    if op in NET_ADMIN_SERVICE_OPS:
        return None if cred.net_admin else f"{op} needs CAP_NET_ADMIN"
    return f"`xfrmd ctl` ({op}) needs the server's owner or root (you are uid {cred.uid})"
