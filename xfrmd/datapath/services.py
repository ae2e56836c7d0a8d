"""Service ops of the data path: ``xmit`` (``xfrmd ctl xmit``) sends packets of a flow from
an emulated namespace through its SPD/SAD (and, with ``deliver``, into another namespace's
input path); ``xfrm_stat`` reads a namespace's XFRM MIB. Registered by the package's init
call (:data:`SERVICES`)."""
from __future__ import annotations

import errno as E
import ipaddress
from typing import TYPE_CHECKING, Any, Callable

from ..errors import KernelError
from . import packet as P
from .input import deliver_packets, local_dev
from .mib import xfrm_statistics_seq_show
from .output import xfrm_outer_daddr, xfrm_xmit

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import Kernel, NetNamespace


def _int(req: dict[str, Any], key: str, default: int = 0) -> int:
    v = req.get(key, default)
    return int(v, 0) if isinstance(v, str) else int(v)


def _netns(kernel: Kernel, ns: NetNamespace | None, req: dict[str, Any]) -> NetNamespace:
    """The namespace the request names (``netns``), else the connection's."""
    if req.get("netns"):
        return kernel.netns(req["netns"])
    assert ns is not None
    return ns


def _xmit(kernel: Kernel, ns: NetNamespace | None, req: dict[str, Any]) -> dict[str, Any]:
    ns = _netns(kernel, ns, req)
    try:
        src, dst = str(req["src"]), str(req["dst"])
        if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
            raise KernelError(E.EINVAL, "xfrmd: SRC and DST of different families")
        proto = req.get("proto", "udp")
        proto = P.PROTOS[proto] if proto in P.PROTOS else int(proto)
        count, size = _int(req, "count", 1), _int(req, "size", 64)
        sport, dport = _int(req, "sport", 0), _int(req, "dport", 0)
        if not (0 <= count <= 10_000_000 and 0 <= size <= 65000 and 0 <= sport < 65536
                and 0 <= dport < 65536):
            raise KernelError(E.EINVAL, "xfrmd: count, size or port out of range")
        peer = kernel.netns(req["deliver"]) if req.get("deliver") else None
    except (KeyError, ValueError) as e:
        raise KernelError(E.EINVAL, f"xfrmd: bad xmit request: {e}") from None
    via = _via_slave(ns, peer, src, dst, proto, sport, dport, req.get("via"))
    want_packets = bool(req.get("packets")) or peer is not None
    res = xfrm_xmit(ns, src, dst, proto, sport, dport, size, count,
                    keep_packets=want_packets, spray=bool(req.get("spray")))
    out: dict[str, Any] = {"errno": 0, "netns": ns.name, **res.to_dict()}
    if peer is not None:
        out["deliver"] = deliver_packets(peer, [p for p, _ in res.packets], via=via).to_dict()
        out["deliver"]["netns"] = peer.name
    if req.get("packets"):
        out["packets"] = [p.hex() for p, real in res.packets if real]
    kernel.run_timers()          # a hard byte/packet expiry deletes the state now
    return out


def _via_slave(ns: NetNamespace, peer: NetNamespace | None, src: str, dst: str, proto: int,
               sport: int, dport: int, via: str | None) -> NetDevice | None:
    """``--via SLAVE``: the slave of the receiving bond the packets arrive on, checked before
    anything is sent. The receiving bond holds the packets' outer destination in ``peer``
    (the out policy's tunnel endpoint, else DST)."""
    if not via:
        return None
    if peer is None:
        raise KernelError(E.EINVAL, f"xfrmd: --via {via}: needs --deliver NS (the namespace "
                                    "whose bond receives the packets)")
    outer = xfrm_outer_daddr(ns, src, dst, proto, sport, dport)
    owner = local_dev(peer, outer)
    bond = getattr(owner, "bond", None)
    if owner is None or bond is None:
        where = f"on {owner.name}, not a bond" if owner is not None else "on no device"
        raise KernelError(E.EINVAL, f"xfrmd: --via {via}: the packets to {outer} arrive in "
                                    f"{peer.name} {where}; --via names a slave of the "
                                    "receiving bond")
    dev = peer.links.by_name(via)
    if dev is None or dev.master is not owner:
        allowed = ", ".join(s.name for s in bond.slaves) or "none"
        raise KernelError(E.EINVAL, f"xfrmd: --via {via}: not a slave of {owner.name} (the "
                                    f"bond receiving {outer} in {peer.name}); its slaves: "
                                    f"{allowed}")
    return dev


def _xfrm_stat(kernel: Kernel, ns: NetNamespace | None, req: dict[str, Any]) -> dict[str, Any]:
    return {"errno": 0, "data": xfrm_statistics_seq_show(_netns(kernel, ns, req))}


SERVICES: dict[str, Callable[..., dict[str, Any]]] = {
    "xmit": _xmit,
    "xfrm_stat": _xfrm_stat,
}
