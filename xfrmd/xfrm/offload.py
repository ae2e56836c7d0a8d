"""XFRMA_OFFLOAD_DEV: the core offload path of net/xfrm/xfrm_device.c — checks in the
kernel's order, the crypto-offload software fallback, and what reads back.

Interface used by the SAD and SPD (failures raise :class:`~xfrmd.errors.KernelError`):

* ``xfrm_dev_state_add(req, x, xuo)`` — from ``xfrm_state_construct``; returning is success
  (or the silent software fallback of crypto offload, ``x.xso`` left None).
* ``xfrm_dev_state_delete(x)`` / ``xfrm_dev_state_free(x)``.
* ``xfrm_dev_policy_add(req, pol, xuo, dir)`` / ``xfrm_dev_policy_delete`` / ``_free``.
* ``copy_user_offload(obj) -> bytes`` — the XFRMA_OFFLOAD_DEV attribute or b"".
* ``xfrm_dev_state_update_stats(x)`` — from ``copy_to_user_state`` (driver counters).
* ``xfrm_dev_state_acquire(x, pol) -> int`` / ``xfrm_dev_state_acquire_abort(x)`` — for
  ``xfrm_state_find``'s larval state under a packet-offloaded policy.
* ``xfrm_dev_state_lower_handle(x, lower_dev)`` — the proposed LAG helper drivers with
  XFRMDEV_OPS_F_LOWER_HANDLE resolve their hardware handle through
  (``xfrm_dev_lower_dev_handle(x, dev)``: the handle a driver's datapath uses on its port,
  through the helper or, without the flag, ``xso.offload_handle``).
* ``xfrm_dst_offload_ok(x, path_dev, nstates) -> bool`` — may a socket on the bundle keep GSO
  (``sk_setup_caps``); an upper's ``xso.upper_priv`` counts as offload state (RFC patch 1/4).
* ``xfrm_dev_offload_ok(x, path_dev, skb_len, nstates) -> (ok, why not)`` — may a packet of
  ``x`` go out offloaded on the route's device; ``xfrm_dev_state_advance_esn(x)``.

The route to the peer of a request without a device is ``kernel.fib_lookup(ns, dst)``, the
IPv4/IPv6 route lookup the routing side registers on the kernel (``xfrm_policy_afinfo``'s
``dst_lookup``): this module does not import the routing code.
"""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol

from devices.xfrmdev import XFRMDEV_OPS_F_LOWER_HANDLE, OffloadError, XfrmDevOps
from netlink_codec import xfrm as X
from netlink_codec.netlink import RawAttr, nla

from .. import kconfig
from ..errors import KernelError
from ..netlink.core import Reply
from .esp import xfrm_state_mtu

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from .policy import Policy, PolicyWire
    from .request import XfrmRequest
    from .state import SecurityAssociation

XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_OUT, XFRM_DEV_OFFLOAD_FWD = 1, 2, 3
XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET = 1, 2
XFRM_DEV_OFFLOAD_FLAG_ACQ = 1
_KNOWN_FLAGS = X.XFRM_OFFLOAD_IPV6 | X.XFRM_OFFLOAD_INBOUND | X.XFRM_OFFLOAD_PACKET


class UserOffload(NamedTuple):
    """``struct xfrm_user_offload`` as a request carries it (XFRMA_OFFLOAD_DEV)."""
    ifindex: int
    flags: int


_USER_OFFLOAD = struct.Struct("=iB")


def user_offload(buf: bytes | bytearray, ra: RawAttr) -> UserOffload:
    """The XFRMA_OFFLOAD_DEV attribute ``ra`` of ``buf`` (a short one zero-padded, as
    ``nla_data`` reads past a payload the policy let through). Two fields read with one
    struct call: a ctypes structure took half a microsecond per offloaded SA or policy."""
    if ra.end - ra.start >= _USER_OFFLOAD.size:
        return tuple.__new__(UserOffload, _USER_OFFLOAD.unpack_from(buf, ra.start))
    return tuple.__new__(UserOffload, _USER_OFFLOAD.unpack(
        bytes(buf[ra.start:ra.end]).ljust(_USER_OFFLOAD.size, b"\0")))


class XfrmDevOffload:
    """``struct xfrm_dev_offload``; ``upper_priv`` is the proposed LAG back-reference an
    upper device (the bond) keeps its per-lower instances in."""
    __slots__ = ("dev", "real_dev", "dir", "type", "flags", "offload_handle", "priv",
                 "upper_priv")

    def __init__(self, dev: NetDevice, dir: int, type: int) -> None:
        self.dev = dev
        self.real_dev = dev
        self.dir = dir
        self.type = type
        self.flags = 0
        self.offload_handle = 0
        self.priv: Any = None
        self.upper_priv: Any = None


_new_xso = object.__new__
# xfrm_dev_state_add's constants (twice per offloaded Child SA): no X.… attribute load
_INBOUND = X.XFRM_OFFLOAD_INBOUND        # (_PACKET: below)
_SA_DIR_IN, _SA_DIR_OUT = X.XFRM_SA_DIR_IN, X.XFRM_SA_DIR_OUT
_ESN, _ESP = X.XFRM_STATE_ESN, X.IPPROTO_ESP


class _Offloaded(Protocol):
    """A state (``xso``) or a policy (``xdo``): what ``copy_user_offload`` reads."""
    @property
    def xso(self) -> XfrmDevOffload | None: ...


def _ops(dev: NetDevice) -> XfrmDevOps | None:
    return getattr(dev, "xfrmdev_ops", None)


def _hw_esp(dev: NetDevice) -> bool:
    """NETIF_F_HW_ESP active on the device (``ethtool -k`` esp-hw-offload)."""
    f = getattr(dev, "features", None)
    if f is None:
        return _ops(dev) is not None
    return f.active("esp-hw-offload") if hasattr(f, "active") else "esp-hw-offload" in f


def _route_dev(req: XfrmRequest, x: SecurityAssociation, inbound: bool) -> NetDevice | None:
    """``__xfrm_dst_lookup`` for an offload request without a (known) device: the output
    route to the peer (through the rules and tables: the kernel's ``fib_lookup``)."""
    width = 4 if x.family == X.AF_INET else 16
    daddr = x.saddr if inbound else x.id.daddr
    try:
        dst = ipaddress.ip_address(bytes(daddr[:width]))
    except ValueError:
        return None
    fib_lookup = req.kernel.fib_lookup
    if fib_lookup is None or not hasattr(req.netns, "links"):
        return None
    res = fib_lookup(req.netns, dst)
    return None if isinstance(res, int) else res.dev


def xfrm_dev_state_add(req: XfrmRequest, x: SecurityAssociation,
                       xuo: UserOffload) -> None:
    """``xfrm_dev_state_add``. Twice per Child SA of charon with packet offload: the config
    test, the device lookup and the ops test inline (as xfrm_dev_policy_add has them)."""
    ns = req.sock.netns
    cfg = getattr(ns.kernel, "kconfig", None)        # kconfig.enabled
    if cfg is not None and not cfg.values["XFRM_OFFLOAD"]:
        return                      # the !CONFIG_XFRM_OFFLOAD stub: accepted, nothing offloaded
    ifindex, flags = xuo            # (a named tuple's fields are slow attributes on 3.11)
    if flags & ~_KNOWN_FLAGS:
        raise KernelError(E.EINVAL, "Unrecognized flags in offload request")
    inbound = flags & _INBOUND
    # (inbound and dir OUT) or (outbound and dir IN)
    if x.dir == (_SA_DIR_OUT if inbound else _SA_DIR_IN):
        raise KernelError(E.EINVAL, "Mismatched SA and offload direction")
    if inbound and x.if_id:
        raise KernelError(E.EINVAL, "XFRM if_id is not supported in RX path")
    if x.tfcpad:
        raise KernelError(E.EINVAL, "TFC padding can't be offloaded")
    packet = flags & _PACKET
    links = getattr(ns, "links", None)
    dev = links.by_index(ifindex) if links is not None else None
    if dev is None:
        dev = _route_dev(req, x, bool(inbound))
    ops = getattr(dev, "xfrmdev_ops", None) if dev is not None else None
    if dev is None or ops is None:  # no xdo_dev_state_add; the core never looks at features
        if packet:
            raise KernelError(E.EINVAL)
        return
    if not packet and x.flags & _ESN and not ops.has_advance_esn:
        raise KernelError(E.EINVAL, "Device doesn't support offload with ESN")
    if x.id[2] != _ESP:
        raise KernelError(E.EINVAL, "Type doesn't support offload")
    # XfrmDevOffload(dev, dir, type), its fields stored here (no __init__ frame)
    x.xso = xso = _new_xso(XfrmDevOffload)
    xso.dev = xso.real_dev = dev
    xso.dir = XFRM_DEV_OFFLOAD_IN if inbound else XFRM_DEV_OFFLOAD_OUT
    xso.type = XFRM_DEV_OFFLOAD_PACKET if packet else XFRM_DEV_OFFLOAD_CRYPTO
    xso.flags = xso.offload_handle = 0
    xso.priv = xso.upper_priv = None
    xfrm_dev_state_add_driver(req, x, dev, ops, packet)


def xfrm_dev_state_add_driver(req: XfrmRequest, x: SecurityAssociation, dev: NetDevice,
                              ops: XfrmDevOps, packet: int) -> None:
    """The end of ``xfrm_dev_state_add``: ``x.xso`` made, the driver's ``xdo_dev_state_add``
    and what its refusal becomes (the state unbound; an error, or for crypto offload's
    EOPNOTSUPP the software fallback). Also the caller of _sacons.c's binding."""
    try:
        ops.xdo_dev_state_add(dev, x)
    except (OffloadError, KernelError) as e:
        x.xso = None
        if packet or e.errno != E.EOPNOTSUPP:
            raise KernelError(e.errno, _mod(ops, e.msg, e.module)
                              or "Device failed to offload this state") from e
        # crypto offload refused with EOPNOTSUPP: software fallback. The driver's message
        # stays in the extack, so the success ACK carries it (netlink_ack adds _msg whatever
        # the error): `ip` prints it as a Warning
        if e.msg:
            req.warning = Reply(0, _mod(ops, e.msg, e.module))


def _mod(ops: XfrmDevOps, msg: str | None, module: str | None = None) -> str | None:
    """NL_SET_ERR_MSG_MOD: the driver's module name in front of its message (the module
    that set it, when an upper device passes its lower's message through)."""
    module = ops.module if module is None else module
    return f"{module}: {msg}" if msg and module else msg


def _dev_call(xo: XfrmDevOffload | None, call: Callable[[XfrmDevOps, NetDevice], None]) -> None:
    """``call(ops, dev)`` when the binding's device has xfrmdev ops."""
    ops = _ops(xo.dev) if xo is not None else None
    if xo is not None and ops is not None:
        call(ops, xo.dev)


def xfrm_dev_state_delete(x: SecurityAssociation) -> None:
    _dev_call(x.xso, lambda ops, dev: ops.xdo_dev_state_delete(dev, x))


def xfrm_dev_state_free(x: SecurityAssociation) -> None:
    xso = x.xso
    _dev_call(xso, lambda ops, dev: ops.xdo_dev_state_free(dev, x))
    if xso is not None:
        xso.upper_priv = None           # the proposed LAG API clears it with dev
    x.xso = None


def xfrm_dev_state_acquire(x: SecurityAssociation, pol: Policy | PolicyWire) -> int:
    """``xfrm_state_find``: the larval (ACQ) state of a flow hitting a packet-offloaded
    policy is bound to the policy's device, flagged XFRM_DEV_OFFLOAD_FLAG_ACQ, and handed to
    the driver with no extack. 0, or the driver's negative errno (the caller then kills the
    larval state and sends no ACQUIRE)."""
    xdo = pol.xdo
    ops = _ops(xdo.dev) if xdo is not None else None
    if xdo is None or xdo.type != XFRM_DEV_OFFLOAD_PACKET or ops is None:
        return 0
    x.xso = XfrmDevOffload(xdo.dev, xdo.dir, XFRM_DEV_OFFLOAD_PACKET)
    x.xso.flags = XFRM_DEV_OFFLOAD_FLAG_ACQ
    try:
        ops.xdo_dev_state_add(xdo.dev, x)
    except (OffloadError, KernelError) as e:
        x.xso = None
        return -e.errno
    return 0


def xfrm_dev_state_acquire_abort(x: SecurityAssociation) -> None:
    """``xfrm_state_find`` when km_query finds no key manager: a packet-offloaded larval
    state is deleted and freed on the device before it dies."""
    if x.xso is not None and x.xso.type == XFRM_DEV_OFFLOAD_PACKET:
        xfrm_dev_state_delete(x)
        xfrm_dev_state_free(x)


def xfrm_dev_state_lower_handle(x: SecurityAssociation, lower_dev: NetDevice | None) -> int:
    """``xfrm_dev_state_lower_handle`` of the proposed LAG offload API (docs/bonding.md):
    the handle ``lower_dev`` uses for ``x``.
    The state's own device → its offload_handle; an upper device with the op (the bond)
    maps it; a state bound through ``real_dev`` → offload_handle; anything else → 0."""
    xso = getattr(x, "xso", None)
    if xso is None or xso.dev is None or lower_dev is None:
        return 0
    if xso.dev is lower_dev:
        return int(xso.offload_handle)
    ops = _ops(xso.dev)
    if ops is not None and getattr(ops, "has_lower_handle", False):
        return int(ops.xdo_dev_state_lower_handle(xso.dev, x, lower_dev))
    if xso.real_dev is lower_dev:
        return int(xso.offload_handle)
    return 0


def xfrm_dev_lower_dev_handle(x: SecurityAssociation, dev: NetDevice | None) -> int:
    """The handle a lower driver's datapath uses for ``x`` on its port ``dev``: a driver
    with ``XFRMDEV_OPS_F_LOWER_HANDLE`` asks :func:`xfrm_dev_state_lower_handle` (RFC patch
    1/4: "helper-aware lower drivers can resolve the handle for the lower device they are
    transmitting or receiving on"); one without reads ``xso.offload_handle`` as upstream
    drivers do (under an upper device that holds it only when the upper put the lower's own
    handle there: active-backup)."""
    xso = getattr(x, "xso", None)
    ops = _ops(dev) if dev is not None else None
    if xso is None or ops is None:
        return 0
    if ops.flags & XFRMDEV_OPS_F_LOWER_HANDLE:
        return xfrm_dev_state_lower_handle(x, dev)
    return int(xso.offload_handle)


def xfrm_dst_offload_ok(x: SecurityAssociation | None, path_dev: NetDevice | None,
                        nstates: int) -> bool:
    """``xfrm_dst_offload_ok`` (include/net/xfrm.h) on a bundle whose outermost state is
    ``x``, routed out of ``path_dev``, with ``nstates`` transforms: may a socket on it keep
    GSO (``sk_setup_caps``)? A state without offload state and alone in the bundle: yes (the
    stack segments before ESP). A state with offload state: only on its own device, alone.
    Offload state is ``xso.offload_handle`` or — RFC patch 1/4 — ``xso.upper_priv``: a state
    a bond replicated over its slaves keeps no handle of its own (real_dev none) and still
    counts."""
    if x is None or x.id.proto != X.IPPROTO_ESP:           # !x->type_offload
        return False
    xso = x.xso
    if nstates != 1:                                       # xdst->child->xfrm
        return False
    if xso is None or not (xso.offload_handle or xso.upper_priv is not None):
        return True                                        # no offload state
    return xso.dev is path_dev


def xfrm_dev_offload_ok(x: SecurityAssociation, path_dev: NetDevice, skb_len: int,
                        nstates: int) -> tuple[bool, str]:
    """``xfrm_dev_offload_ok``: (ok, why not). The core checks: a type with offload (ESP),
    the state's device is the route's path device and the bundle has one transform, the
    packet fits the state's MTU; then the driver's ``xdo_dev_offload_ok`` if it has one."""
    xso = x.xso
    if x.id.proto != X.IPPROTO_ESP:
        return False, "type has no offload"
    if xso is None and x.encap is not None:
        return False, "no offload and NAT-T"
    dev = xso.dev if xso is not None else None
    if dev is not None and dev is not path_dev:
        return False, f"route leaves through {getattr(path_dev, 'name', None)}, not {dev.name}"
    if nstates != 1:
        return False, "bundle of more than one transform"
    mtu = xfrm_state_mtu(x, getattr(path_dev, "mtu", 1500))
    if skb_len > mtu:
        return False, f"{skb_len} bytes exceed the state's MTU {mtu}"
    if dev is None:
        return True, ""
    ops = _ops(dev)
    if ops is not None and ops.has_offload_ok and not ops.xdo_dev_offload_ok(x):
        return False, f"{ops.name}: xdo_dev_offload_ok refused"
    return True, ""


def xfrm_dev_state_advance_esn(x: SecurityAssociation) -> None:
    """``xfrm_dev_state_advance_esn``: the state's device's op, if it has one."""
    xso = x.xso
    ops = _ops(xso.dev) if xso is not None and xso.dev is not None else None
    if ops is not None and ops.has_advance_esn:
        ops.xdo_dev_state_advance_esn(x)


def xfrm_dev_state_update_stats(x: SecurityAssociation) -> None:
    """``xfrm_dev_state_update_stats``: a driver with the op refreshes ``x.curlft`` and
    ``x.stats`` from its hardware counters before they are reported."""
    xso = x.xso
    ops = _ops(xso.dev) if xso is not None and xso.dev is not None else None
    if ops is not None and ops.has_update_stats:
        ops.xdo_dev_state_update_stats(x)


def xfrm_dev_policy_add(req: XfrmRequest, pol: Policy, xuo: UserOffload,
                        dir: int) -> None:
    """``xfrm_dev_policy_add``. Once per offloaded policy (twice per Child SA of charon with
    packet offload): the config test, the device lookup and the ops test inline."""
    ns = req.sock.netns
    cfg = getattr(ns.kernel, "kconfig", None)        # kconfig.enabled
    if cfg is not None and not cfg.values["XFRM_OFFLOAD"]:
        return                      # the !CONFIG_XFRM_OFFLOAD stub, as for states
    if xuo.flags != _PACKET:
        raise KernelError(E.EINVAL, "Unrecognized flags in offload request")
    links = getattr(ns, "links", None)
    dev = links.by_index(xuo.ifindex) if links is not None else None
    if dev is None:
        raise KernelError(E.EINVAL)
    ops = getattr(dev, "xfrmdev_ops", None)
    if ops is None or not ops.has_policy_ops:
        raise KernelError(E.EINVAL, "Policy offload is not supported")
    if dir > X.XFRM_POLICY_FWD:
        raise KernelError(E.EINVAL, "Unrecognized offload direction")
    # XFRM_POLICY_IN/OUT/FWD -> XFRM_DEV_OFFLOAD_IN/OUT/FWD
    pol.xdo = XfrmDevOffload(dev, _DEV_DIR[dir], XFRM_DEV_OFFLOAD_PACKET)
    try:
        ops.xdo_dev_policy_add(dev, pol)
    except (OffloadError, KernelError) as e:
        xfrm_dev_policy_refused(pol, ops, e)


def xfrm_dev_policy_refused(pol: Policy, ops: XfrmDevOps,
                            e: OffloadError | KernelError) -> None:
    """The driver's xdo_dev_policy_add failed: the binding undone, its error raised (the
    driver's message, else the core's NL_SET_ERR_MSG_WEAK)."""
    pol.xdo = None
    raise KernelError(e.errno, _mod(ops, e.msg, e.module)
                      or "Device failed to offload this policy") from e


_PACKET = X.XFRM_OFFLOAD_PACKET
_DEV_DIR = {X.XFRM_POLICY_IN: XFRM_DEV_OFFLOAD_IN, X.XFRM_POLICY_OUT: XFRM_DEV_OFFLOAD_OUT,
            X.XFRM_POLICY_FWD: XFRM_DEV_OFFLOAD_FWD}


def xfrm_dev_policy_delete(pol: Policy) -> None:
    _dev_call(pol.xdo, lambda ops, dev: ops.xdo_dev_policy_delete(dev, pol))


def xfrm_dev_policy_free(pol: Policy) -> None:
    _dev_call(pol.xdo, lambda ops, dev: ops.xdo_dev_policy_free(dev, pol))
    pol.xdo = None
    pol.invalidate()          # the cached dump body carried XFRMA_OFFLOAD_DEV


def xfrm_dev_state_release(x: SecurityAssociation) -> None:
    """A state leaving the SAD gives its hardware state back: delete, then free."""
    if x.xso is not None:
        xfrm_dev_state_delete(x)
        xfrm_dev_state_free(x)


def xfrm_dev_policy_release(pol: Policy) -> None:
    """A policy leaving the SPD (or never entering it) gives its hardware state back."""
    if pol.xdo is not None:
        xfrm_dev_policy_delete(pol)
        xfrm_dev_policy_free(pol)


def copy_user_offload(obj: SecurityAssociation | Policy) -> bytes:
    """``copy_user_offload``: {bound ifindex, INBOUND if dir IN, PACKET if packet type}."""
    xso = getattr(obj, "xso", None) or getattr(obj, "xdo", None)
    if xso is None or xso.dev is None:
        return b""
    flags = 0
    if xso.dir == XFRM_DEV_OFFLOAD_IN:
        flags |= X.XFRM_OFFLOAD_INBOUND
    if xso.type == XFRM_DEV_OFFLOAD_PACKET:
        flags |= X.XFRM_OFFLOAD_PACKET
    return nla(X.Xfrma.OFFLOAD_DEV, struct.pack("=iB3x", xso.dev.ifindex, flags))


def xfrm_dev_flush(dev: NetDevice) -> None:
    """``xfrm_dev_state_flush`` + ``xfrm_dev_policy_flush``: every state and policy offloaded
    to ``dev`` leaves the SAD/SPD. No XFRM_MSG_DELSA/DELPOLICY goes to key managers (those
    come from the netlink delete paths only). Also called by drivers (airoha on FEAT_CHANGE)."""
    ns = dev.netns
    xnet = getattr(ns, "xfrm", None) if ns is not None else None
    if xnet is None:
        return
    xnet.sad.dev_flush(dev)
    xnet.spd.dev_flush(dev)


def xfrm_dev_event(event: str, dev: NetDevice, **info: Any) -> None:
    """``xfrm_dev_event``: NETDEV_DOWN / NETDEV_UNREGISTER → ``xfrm_dev_down``, which flushes
    only while NETIF_F_HW_ESP is on. NETDEV_REGISTER / FEAT_CHANGE only run
    ``xfrm_api_check`` (a veto on inconsistent ESP features, which the feature code already
    prevents): the core flushes nothing when esp-hw-offload is turned off."""
    if event in ("NETDEV_DOWN", "NETDEV_UNREGISTER") and _hw_esp(dev):
        xfrm_dev_flush(dev)


_xfrm_dev_event = xfrm_dev_event   # the name before the notifier was registered by init
